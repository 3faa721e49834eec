//! A Redis keyspace on a virtual clock: the commands the `credflow-redis` scripts call, with
//! Redis 7's semantics for them (argument parsing, replies, type errors, key expiry).
//!
//! Keys expire lazily, as Redis sees them: a key whose expiry is at or before the clock does not
//! exist (Redis checks `now > when` in microseconds of `mstime()`; a millisecond clock makes
//! "at" and "past" the same instant here). The clock is set by the caller and does not move
//! while a script runs, as in Redis 7, where a script sees one time for key expiry.
//!
//! Commands: `GET`, `GETRANGE`, `SET` (`NX`, `XX`, `PX`, `EX`, `KEEPTTL`), `DEL`, `PTTL`,
//! `PEXPIRE`, `TIME`, `HGET`, `HSET`, `HMGET`, `ZADD`, `ZCARD`, `ZREMRANGEBYSCORE`. Any other is
//! an error reply, as an unknown command is: a script calling one fails loudly, not silently.
//! `tests/keyspace_vs_redis.rs` checks the replies against a real `redis-server`.

use std::collections::{BTreeMap, HashMap};

/// A Redis reply (RESP2).
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `:n`
    Int(i64),
    /// `$…` (a bulk string)
    Bulk(Vec<u8>),
    /// `$-1` / `*-1`
    Nil,
    /// `*…`
    Array(Vec<Reply>),
    /// `+…`
    Status(String),
    /// `-…`
    Error(String),
}

/// A hash's fields.
type Fields = BTreeMap<Vec<u8>, Vec<u8>>;

/// What a key holds.
#[derive(Clone, Debug, PartialEq)]
enum Data {
    String(Vec<u8>),
    Hash(Fields),
    /// Members with their scores, in no particular order (only counted and removed here).
    SortedSet(Vec<(f64, Vec<u8>)>),
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    data: Data,
    /// Absolute expiry, ms on the keyspace's clock.
    expires_at: Option<u64>,
}

/// The keys, and the clock they expire on (ms since the Unix epoch, as `TIME` tells it).
#[derive(Debug, Default)]
pub(crate) struct Keyspace {
    entries: HashMap<Vec<u8>, Entry>,
    /// Now, in ms since the Unix epoch.
    pub(crate) now: u64,
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const NOT_FLOAT: &str = "ERR min or max is not a float";
const SYNTAX: &str = "ERR syntax error";

fn arity(name: &str) -> Reply {
    Reply::Error(format!("ERR wrong number of arguments for '{name}' command"))
}

/// Redis's `string2ll`: an optional `-`, then digits without leading zeros, nothing else.
fn parse_int(arg: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(arg).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if canonical { text.parse().ok() } else { None }
}

/// A score or range bound as `ZADD` and `ZREMRANGEBYSCORE` read one (`strtod`, plus `inf`).
fn parse_float(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    let value = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        _ if text.trim() != text || text.is_empty() => return None,
        _ => text.parse::<f64>().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

/// A `ZREMRANGEBYSCORE` bound: its value, and whether it is exclusive (`(x`).
fn parse_bound(arg: &[u8]) -> Option<(f64, bool)> {
    match arg.strip_prefix(b"(") {
        Some(rest) => parse_float(rest).map(|v| (v, true)),
        None => parse_float(arg).map(|v| (v, false)),
    }
}

fn upper(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

impl Keyspace {
    /// Runs one command (`argv[0]` its name, case-insensitive) at [`now`](Self::now).
    pub(crate) fn command(&mut self, argv: &[Vec<u8>]) -> Reply {
        let Some((name, args)) = argv.split_first() else {
            return Reply::Error("ERR empty command".into());
        };
        let name = upper(name);
        match name.as_str() {
            "GET" => self.get(args),
            "GETRANGE" => self.getrange(args),
            "SET" => self.set(args),
            "DEL" => self.del(args),
            "PTTL" => self.pttl(args),
            "PEXPIRE" => self.pexpire(args),
            "TIME" => self.time(args),
            "HGET" | "HMGET" | "HSET" => self.hash(&name, args),
            "ZADD" | "ZCARD" | "ZREMRANGEBYSCORE" => self.sorted_set(&name, args),
            _ => Reply::Error(format!("ERR unknown command '{name}'")),
        }
    }

    /// The live entry under `key` (an expired one is removed first, as Redis's lazy expiry).
    fn live(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let now = self.now;
        if self.entries.get(key).is_some_and(|e| e.expires_at.is_some_and(|at| at <= now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn get(&mut self, args: &[Vec<u8>]) -> Reply {
        let [key] = args else { return arity("get") };
        match self.live(key).map(|e| &e.data) {
            None => Reply::Nil,
            Some(Data::String(value)) => Reply::Bulk(value.clone()),
            Some(_) => Reply::Error(WRONGTYPE.into()),
        }
    }

    /// `GETRANGE key start end`: the bytes from `start` to `end` inclusive, negative indexes
    /// counted from the end, clamped to the value; an empty string for a missing key or an
    /// empty range (Redis 7's `getrangeCommand`, step by step).
    fn getrange(&mut self, args: &[Vec<u8>]) -> Reply {
        let [key, start, end] = args else { return arity("getrange") };
        let (Some(mut start), Some(mut end)) = (parse_int(start), parse_int(end)) else {
            return Reply::Error(NOT_INTEGER.into());
        };
        let value = match self.live(key).map(|e| &e.data) {
            None => return Reply::Bulk(Vec::new()),
            Some(Data::String(value)) => value,
            Some(_) => return Reply::Error(WRONGTYPE.into()),
        };
        if start < 0 && end < 0 && start > end {
            return Reply::Bulk(Vec::new());
        }
        let len = i64::try_from(value.len()).unwrap_or(i64::MAX);
        if start < 0 {
            start = len.saturating_add(start);
        }
        if end < 0 {
            end = len.saturating_add(end);
        }
        // An empty value clamps `end` to -1: an empty range, as any start past the end.
        let (start, end) = (start.max(0), end.max(0).min(len - 1));
        if start > end {
            return Reply::Bulk(Vec::new());
        }
        // 0 <= start <= end < len here.
        let range = usize::try_from(start).unwrap_or(0)..=usize::try_from(end).unwrap_or(0);
        Reply::Bulk(value.get(range).unwrap_or_default().to_vec())
    }

    /// `SET key value [NX|XX] [EX s|PX ms|KEEPTTL]`. As in Redis, an option may repeat (the
    /// last expiry given counts), and the expiry is checked once all options are read.
    fn set(&mut self, args: &[Vec<u8>]) -> Reply {
        let [key, value, options @ ..] = args else { return arity("set") };
        let (mut nx, mut xx, mut keep) = (false, false, false);
        let mut expire: Option<(&str, &[u8])> = None;
        let mut options = options.iter();
        while let Some(option) = options.next() {
            match upper(option).as_str() {
                "NX" if !xx => nx = true,
                "XX" if !nx => xx = true,
                "KEEPTTL" if expire.is_none() => keep = true,
                "PX" if !keep && expire.is_none_or(|(unit, _)| unit == "PX") => {
                    let Some(n) = options.next() else { return Reply::Error(SYNTAX.into()) };
                    expire = Some(("PX", n));
                }
                "EX" if !keep && expire.is_none_or(|(unit, _)| unit == "EX") => {
                    let Some(n) = options.next() else { return Reply::Error(SYNTAX.into()) };
                    expire = Some(("EX", n));
                }
                _ => return Reply::Error(SYNTAX.into()),
            }
        }
        let ttl = match expire {
            None => None,
            Some((unit, n)) => {
                let Some(n) = parse_int(n) else { return Reply::Error(NOT_INTEGER.into()) };
                let ms = if unit == "EX" { n.checked_mul(1000) } else { Some(n) };
                match ms.filter(|&ms| ms > 0).and_then(|ms| u64::try_from(ms).ok()) {
                    Some(ms) => Some(ms),
                    None => return Reply::Error("ERR invalid expire time in 'set' command".into()),
                }
            }
        };
        let now = self.now;
        let old = self.live(key).map(|e| e.expires_at);
        if (nx && old.is_some()) || (xx && old.is_none()) {
            return Reply::Nil;
        }
        let expires_at = match ttl {
            Some(ms) => Some(now.saturating_add(ms)),
            None if keep => old.flatten(),
            None => None,
        };
        self.entries.insert(key.clone(), Entry { data: Data::String(value.clone()), expires_at });
        Reply::Status("OK".into())
    }

    fn del(&mut self, keys: &[Vec<u8>]) -> Reply {
        if keys.is_empty() {
            return arity("del");
        }
        let mut removed = 0;
        for key in keys {
            if self.live(key).is_some() {
                self.entries.remove(key);
                removed += 1;
            }
        }
        Reply::Int(removed)
    }

    fn pttl(&mut self, args: &[Vec<u8>]) -> Reply {
        let [key] = args else { return arity("pttl") };
        let now = self.now;
        Reply::Int(match self.live(key) {
            None => -2,
            Some(Entry { expires_at: None, .. }) => -1,
            Some(Entry { expires_at: Some(at), .. }) => {
                i64::try_from(at.saturating_sub(now)).unwrap_or(i64::MAX)
            }
        })
    }

    /// `PEXPIRE key ms` (no `NX`/`XX`/`GT`/`LT`: the scripts send none). A time at or before now
    /// deletes the key, as in Redis.
    fn pexpire(&mut self, args: &[Vec<u8>]) -> Reply {
        let [key, ms] = args else {
            return match args.len() {
                0..=1 => arity("pexpire"),
                _ => Reply::Error("ERR Unsupported option".into()),
            };
        };
        let Some(ms) = parse_int(ms) else { return Reply::Error(NOT_INTEGER.into()) };
        let now = self.now;
        let Some(entry) = self.live(key) else { return Reply::Int(0) };
        match u64::try_from(ms).ok().filter(|&ms| ms > 0) {
            Some(ms) => entry.expires_at = Some(now.saturating_add(ms)),
            None => {
                self.entries.remove(key);
            }
        }
        Reply::Int(1)
    }

    /// `TIME`: seconds and microseconds, as two bulk strings.
    fn time(&mut self, args: &[Vec<u8>]) -> Reply {
        if !args.is_empty() {
            return arity("time");
        }
        let (secs, micros) = (self.now / 1000, self.now % 1000 * 1000);
        Reply::Array(vec![
            Reply::Bulk(secs.to_string().into_bytes()),
            Reply::Bulk(micros.to_string().into_bytes()),
        ])
    }

    /// The hash under `key`, created empty when `create`; `Err` a type error reply.
    fn hash_at(&mut self, key: &[u8], create: bool) -> Result<Option<&mut Fields>, Reply> {
        if create && self.live(key).is_none() {
            let entry = Entry { data: Data::Hash(BTreeMap::new()), expires_at: None };
            self.entries.insert(key.to_vec(), entry);
        }
        match self.live(key).map(|e| &mut e.data) {
            None => Ok(None),
            Some(Data::Hash(hash)) => Ok(Some(hash)),
            Some(_) => Err(Reply::Error(WRONGTYPE.into())),
        }
    }

    fn hash(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let lower = name.to_ascii_lowercase();
        let (key, fields) = match args.split_first() {
            Some((key, fields)) if !fields.is_empty() => (key, fields),
            _ => return arity(&lower),
        };
        let valid = match name {
            "HGET" => fields.len() == 1,
            "HSET" => fields.len() % 2 == 0,
            _ => true,
        };
        if !valid {
            return arity(&lower);
        }
        let hash = match self.hash_at(key, name == "HSET") {
            Ok(hash) => hash,
            Err(e) => return e,
        };
        let read = |field: &Vec<u8>| {
            hash.as_ref().and_then(|h| h.get(field)).map_or(Reply::Nil, |v| Reply::Bulk(v.clone()))
        };
        match name {
            "HGET" => read(&fields[0]),
            "HMGET" => Reply::Array(fields.iter().map(read).collect()),
            _ => {
                let Some(hash) = hash else { return Reply::Error("ERR no hash".into()) };
                let mut added = 0;
                for pair in fields.chunks(2) {
                    if hash.insert(pair[0].clone(), pair[1].clone()).is_none() {
                        added += 1;
                    }
                }
                Reply::Int(added)
            }
        }
    }

    fn sorted_set(&mut self, name: &str, args: &[Vec<u8>]) -> Reply {
        let lower = name.to_ascii_lowercase();
        let Some((key, rest)) = args.split_first() else { return arity(&lower) };
        let valid = match name {
            "ZCARD" => rest.is_empty(),
            "ZADD" => !rest.is_empty() && rest.len() % 2 == 0,
            _ => rest.len() == 2,
        };
        if !valid {
            return match name {
                "ZADD" if !rest.is_empty() => Reply::Error(SYNTAX.into()),
                _ => arity(&lower),
            };
        }
        let mut parsed = Vec::new();
        if name == "ZADD" {
            for pair in rest.chunks(2) {
                let Some(score) = parse_float(&pair[0]) else {
                    return Reply::Error("ERR value is not a valid float".into());
                };
                parsed.push((score, pair[1].clone()));
            }
        }
        let bounds = match name {
            "ZREMRANGEBYSCORE" => match (parse_bound(&rest[0]), parse_bound(&rest[1])) {
                (Some(min), Some(max)) => Some((min, max)),
                _ => return Reply::Error(NOT_FLOAT.into()),
            },
            _ => None,
        };
        if name == "ZADD" && self.live(key).is_none() {
            let entry = Entry { data: Data::SortedSet(Vec::new()), expires_at: None };
            self.entries.insert(key.clone(), entry);
        }
        let set = match self.live(key).map(|e| &mut e.data) {
            None => return Reply::Int(0),
            Some(Data::SortedSet(set)) => set,
            Some(_) => return Reply::Error(WRONGTYPE.into()),
        };
        let count = |n: usize| Reply::Int(i64::try_from(n).unwrap_or(i64::MAX));
        match (name, bounds) {
            ("ZCARD", _) => count(set.len()),
            ("ZADD", _) => {
                let mut added = 0;
                for (score, member) in parsed {
                    match set.iter_mut().find(|(_, m)| *m == member) {
                        Some(existing) => existing.0 = score,
                        None => {
                            set.push((score, member));
                            added += 1;
                        }
                    }
                }
                count(added)
            }
            (_, Some(((min, min_open), (max, max_open)))) => {
                let before = set.len();
                let inside = |s: f64| {
                    (if min_open { s > min } else { s >= min })
                        && (if max_open { s < max } else { s <= max })
                };
                set.retain(|&(score, _)| !inside(score));
                let removed = before - set.len();
                if set.is_empty() {
                    self.entries.remove(key);
                }
                count(removed)
            }
            _ => Reply::Error(SYNTAX.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(k: &mut Keyspace, line: &str) -> Reply {
        let argv: Vec<Vec<u8>> = line.split(' ').map(|a| a.as_bytes().to_vec()).collect();
        k.command(&argv)
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn getrange_clamps_and_counts_negative_indexes_from_the_end() {
        let mut k = Keyspace::default();
        assert_eq!(run(&mut k, "GETRANGE a 0 10"), bulk(""), "a missing key");
        run(&mut k, "SET a hello");
        assert_eq!(run(&mut k, "GETRANGE a 0 2"), bulk("hel"));
        assert_eq!(run(&mut k, "GETRANGE a 1 100"), bulk("ello"));
        assert_eq!(run(&mut k, "GETRANGE a -3 -1"), bulk("llo"));
        assert_eq!(run(&mut k, "GETRANGE a -100 1"), bulk("he"));
        assert_eq!(run(&mut k, "GETRANGE a 3 1"), bulk(""));
        assert_eq!(run(&mut k, "GETRANGE a -1 -3"), bulk(""));
        assert_eq!(run(&mut k, "GETRANGE a x 1"), Reply::Error(NOT_INTEGER.into()));
        run(&mut k, "HSET h f 1");
        assert_eq!(run(&mut k, "GETRANGE h 0 1"), Reply::Error(WRONGTYPE.into()));
    }

    #[test]
    fn strings_expire_at_their_time_to_live() {
        let mut k = Keyspace { now: 1_000, ..Keyspace::default() };
        assert_eq!(run(&mut k, "SET a 1 NX PX 100"), Reply::Status("OK".into()));
        assert_eq!(run(&mut k, "SET a 2 NX PX 100"), Reply::Nil, "NX on a live key");
        assert_eq!(run(&mut k, "PTTL a"), Reply::Int(100));
        k.now = 1_099;
        assert_eq!(run(&mut k, "GET a"), bulk("1"));
        k.now = 1_100;
        assert_eq!(run(&mut k, "GET a"), Reply::Nil, "expired at T exactly");
        assert_eq!(run(&mut k, "PTTL a"), Reply::Int(-2));
        assert_eq!(run(&mut k, "SET a 3"), Reply::Status("OK".into()));
        assert_eq!(run(&mut k, "PTTL a"), Reply::Int(-1), "SET without PX clears the expiry");
        assert_eq!(
            run(&mut k, "SET a 3 PX 0"),
            Reply::Error("ERR invalid expire time in 'set' command".into())
        );
        assert_eq!(run(&mut k, "SET a 3 PX 1.5"), Reply::Error(NOT_INTEGER.into()));
        assert_eq!(run(&mut k, "SET a 3 PX 100 EX 1"), Reply::Error(SYNTAX.into()));
        assert_eq!(
            run(&mut k, "SET a 3 PX 0 PX 100"),
            Reply::Status("OK".into()),
            "the last counts"
        );
        assert_eq!(run(&mut k, "PTTL a"), Reply::Int(100));
        assert_eq!(run(&mut k, "DEL a b"), Reply::Int(1));
        assert_eq!(run(&mut k, "HSET a f"), arity("hset"));
    }

    #[test]
    fn hashes_and_their_expiry() {
        let mut k = Keyspace::default();
        assert_eq!(run(&mut k, "HMGET h x y"), Reply::Array(vec![Reply::Nil, Reply::Nil]));
        assert_eq!(run(&mut k, "PEXPIRE h 10"), Reply::Int(0), "no key, no expiry");
        assert_eq!(run(&mut k, "HSET h x 1 y 2"), Reply::Int(2));
        assert_eq!(run(&mut k, "HSET h x 3"), Reply::Int(0), "updated, not added");
        assert_eq!(run(&mut k, "HMGET h x z"), Reply::Array(vec![bulk("3"), Reply::Nil]));
        assert_eq!(run(&mut k, "HGET h y"), bulk("2"));
        assert_eq!(run(&mut k, "GET h"), Reply::Error(WRONGTYPE.into()));
        assert_eq!(run(&mut k, "PEXPIRE h 10"), Reply::Int(1));
        assert_eq!(run(&mut k, "HSET h x 4"), Reply::Int(0));
        assert_eq!(run(&mut k, "PTTL h"), Reply::Int(10), "HSET keeps the expiry");
        assert_eq!(run(&mut k, "PEXPIRE h 1e3"), Reply::Error(NOT_INTEGER.into()));
        assert_eq!(run(&mut k, "PEXPIRE h -5"), Reply::Int(1));
        assert_eq!(run(&mut k, "HGET h x"), Reply::Nil, "a past expiry deletes");
    }

    #[test]
    fn sorted_sets_count_and_drop_by_score() {
        let mut k = Keyspace::default();
        assert_eq!(run(&mut k, "ZCARD z"), Reply::Int(0));
        assert_eq!(run(&mut k, "ZADD z 5 a 7 b 9 c"), Reply::Int(3));
        assert_eq!(run(&mut k, "ZADD z 6 a"), Reply::Int(0), "a new score, not a new member");
        assert_eq!(run(&mut k, "ZREMRANGEBYSCORE z -inf (7"), Reply::Int(1));
        assert_eq!(run(&mut k, "ZREMRANGEBYSCORE z -inf 7"), Reply::Int(1));
        assert_eq!(run(&mut k, "ZCARD z"), Reply::Int(1));
        assert_eq!(run(&mut k, "ZREMRANGEBYSCORE z x 7"), Reply::Error(NOT_FLOAT.into()));
        assert_eq!(
            run(&mut k, "ZADD z x a"),
            Reply::Error("ERR value is not a valid float".into())
        );
        assert_eq!(run(&mut k, "ZREMRANGEBYSCORE z 0 +inf"), Reply::Int(1));
        assert_eq!(run(&mut k, "PTTL z"), Reply::Int(-2), "an emptied set is no key");
    }

    #[test]
    fn time_is_the_virtual_clock() {
        let mut k = Keyspace { now: 1_700_000_000_123, ..Keyspace::default() };
        assert_eq!(run(&mut k, "TIME"), Reply::Array(vec![bulk("1700000000"), bulk("123000")]));
        assert!(matches!(run(&mut k, "EVAL x"), Reply::Error(_)));
    }
}
