//! Redis's Lua scripting, over the simulated [`Keyspace`]: Lua 5.1 (the version Redis embeds)
//! with the environment `EVALSHA` gives a script, and Redis 7.0's conversions between Lua values
//! and Redis replies.
//!
//! - **Environment.** The base, `table`, `string` and `math` libraries, `KEYS` and `ARGV` (tables
//!   of strings), and `redis.call` / `redis.pcall` / `redis.error_reply` / `redis.status_reply`.
//!   Globals are protected as in Redis: reading an undefined one or creating one is an error.
//!   Redis also loads `cjson`, `cmsgpack`, `struct` and `bit`; the scripts of `credflow-redis` use
//!   none of them, and one that did would fail here on the undefined global, not silently.
//! - **Arguments** (Lua → Redis): strings as they are; numbers formatted with `%.17g`, as
//!   Redis 7.0 does; anything else is an error.
//! - **Command replies** (Redis → Lua): integer → number; bulk string → string; nil → `false`;
//!   array → table (its nils `false`); status → `{ok = …}`; error → `{err = …}`, returned by
//!   `redis.pcall` and raised by `redis.call` (a script failing so answers that error reply,
//!   `WRONGTYPE …` say; one failing otherwise answers `ERR` and Lua's message).
//! - **Script results** (Lua → Redis): number → integer, truncated toward zero; string → bulk;
//!   `true` → 1; `false` and `nil` → nil; a table with `err` → error, with `ok` → status, else
//!   an array of its elements up to the first nil.

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

use super::keyspace::{Keyspace, Reply};

/// Redis's global protection (`scriptingEnableGlobalsProtection`): after setup, a script can
/// neither read an undefined global nor create one. `KEYS` and `ARGV` are set with `rawset`.
const PROTECT_GLOBALS: &str = r#"
local mt = {}
setmetatable(_G, mt)
mt.__newindex = function(t, n, v)
  error("Script attempted to create global variable '" .. tostring(n) .. "'", 2)
end
mt.__index = function(t, n)
  error("Script attempted to access nonexistent global variable '" .. tostring(n) .. "'", 2)
end
"#;

/// `redis.call`: `redis.pcall`, raising an error reply as Redis does (the error table itself,
/// so that its code reaches the caller).
const CALL: &str = r"
local pcall_ = redis.pcall
redis.call = function(...)
  local reply = pcall_(...)
  if type(reply) == 'table' and reply.err then error(reply) end
  return reply
end
";

/// Runs a script as `EVALSHA` does: `true` and its result, or `false` and the error reply, the
/// raised error table's text (a failed `redis.call`: `WRONGTYPE …`) or an `ERR` with Lua's
/// message (a runtime error).
const RUN: &str = r"
return function(f)
  local ok, result = pcall(f)
  if ok then return true, result end
  if type(result) == 'table' and type(result.err) == 'string' then return false, result.err end
  return false, 'ERR ' .. tostring(result)
end
";

/// The Lua state and the keyspace its `redis.call` reaches.
pub(crate) struct Engine {
    lua: Lua,
    keyspace: Rc<RefCell<Keyspace>>,
    /// [`RUN`].
    run: Function,
}

/// A script loaded (`SCRIPT LOAD`): its body compiled as the function Redis makes of it.
pub(crate) struct Script {
    function: Function,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("keyspace", &self.keyspace).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script")
    }
}

/// `%.17g`, as Redis 7.0 formats a Lua number it passes to a command.
fn format_g17(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.into();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // 17 significant digits: d.dddddddddddddddde±x.
    let sci = format!("{n:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim(mantissa), exp.abs());
    }
    let decimals = usize::try_from(16 - exp).unwrap_or(0);
    trim(&format!("{n:.decimals$}"))
}

/// A `redis.call` argument as Redis receives it.
fn argument(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(i) => Some(format_g17(*i as f64).into_bytes()),
        Value::Number(n) => Some(format_g17(*n).into_bytes()),
        _ => None,
    }
}

/// A command's reply as the script sees it; `Err` the error reply.
fn to_lua(lua: &Lua, reply: Reply) -> mlua::Result<Result<Value, String>> {
    Ok(Ok(match reply {
        Reply::Int(n) => Value::Number(n as f64),
        Reply::Bulk(bytes) => Value::String(lua.create_string(bytes)?),
        Reply::Nil => Value::Boolean(false),
        Reply::Status(status) => {
            let table = lua.create_table()?;
            table.raw_set("ok", status)?;
            Value::Table(table)
        }
        Reply::Error(e) => return Ok(Err(e)),
        Reply::Array(items) => {
            let table = lua.create_table()?;
            for (i, item) in items.into_iter().enumerate() {
                let value = match to_lua(lua, item)? {
                    Ok(value) => value,
                    Err(e) => {
                        let err = lua.create_table()?;
                        err.raw_set("err", e)?;
                        Value::Table(err)
                    }
                };
                table.raw_set(i + 1, value)?;
            }
            Value::Table(table)
        }
    }))
}

/// A script's result as the caller receives it.
fn from_lua(value: Value) -> mlua::Result<Reply> {
    Ok(match value {
        // `(long long)lua_tonumber`: truncated toward zero (saturating here, undefined in C).
        Value::Integer(i) => Reply::Int(i),
        Value::Number(n) => Reply::Int(n as i64),
        Value::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        Value::Boolean(true) => Reply::Int(1),
        Value::Table(table) => table_reply(&table)?,
        _ => Reply::Nil,
    })
}

fn table_reply(table: &Table) -> mlua::Result<Reply> {
    if let Value::String(e) = table.raw_get::<Value>("err")? {
        return Ok(Reply::Error(e.to_string_lossy()));
    }
    if let Value::String(ok) = table.raw_get::<Value>("ok")? {
        return Ok(Reply::Status(ok.to_string_lossy()));
    }
    let mut items = Vec::new();
    for i in 1.. {
        match table.raw_get::<Value>(i)? {
            Value::Nil => break,
            value => items.push(from_lua(value)?),
        }
    }
    Ok(Reply::Array(items))
}

impl Engine {
    /// A Lua 5.1 state set up as Redis sets one up for scripts, over `keyspace`.
    pub(crate) fn new(keyspace: Rc<RefCell<Keyspace>>) -> mlua::Result<Self> {
        let lua =
            Lua::new_with(StdLib::TABLE | StdLib::STRING | StdLib::MATH, LuaOptions::default())?;
        let redis = lua.create_table()?;
        let keys = Rc::clone(&keyspace);
        let pcall = lua.create_function(move |lua, args: MultiValue| {
            let argv: Option<Vec<Vec<u8>>> = args.iter().map(argument).collect();
            let reply = match argv {
                Some(argv) if !argv.is_empty() => keys.borrow_mut().command(&argv),
                Some(_) => Reply::Error(
                    "ERR Please specify at least one argument for this redis lib call".into(),
                ),
                None => Reply::Error(
                    "ERR Lua redis lib command arguments must be strings or integers".into(),
                ),
            };
            match to_lua(lua, reply)? {
                Ok(value) => Ok(value),
                Err(e) => {
                    let table = lua.create_table()?;
                    table.raw_set("err", e)?;
                    Ok(Value::Table(table))
                }
            }
        })?;
        redis.raw_set("pcall", pcall)?;
        for field in ["err", "ok"] {
            let reply = lua.create_function(move |lua, text: mlua::LuaString| {
                let table = lua.create_table()?;
                table.raw_set(field, text)?;
                Ok(table)
            })?;
            let name = if field == "err" { "error_reply" } else { "status_reply" };
            redis.raw_set(name, reply)?;
        }
        lua.globals().raw_set("redis", redis)?;
        lua.load(CALL).set_name("redis.call").exec()?;
        let run = lua.load(RUN).set_name("run").eval::<Function>()?;
        lua.load(PROTECT_GLOBALS).set_name("globals protection").exec()?;
        Ok(Engine { lua, keyspace, run })
    }

    /// Compiles `body` as Redis does (`function f_<sha>() <body> end`).
    pub(crate) fn load(&self, name: &str, body: &str) -> mlua::Result<Script> {
        let source = format!("return function() {body}\nend");
        let function = self.lua.load(source).set_name(name).eval::<Function>()?;
        Ok(Script { function })
    }

    /// `EVALSHA` at the keyspace's current time: the script's result, or `Err` the error reply
    /// of a script that failed (a `redis.call` refused, a runtime error).
    pub(crate) fn eval(
        &self,
        script: &Script,
        keys: &[&[u8]],
        argv: &[&[u8]],
    ) -> Result<Reply, String> {
        let run = || -> mlua::Result<Result<Reply, String>> {
            let globals = self.lua.globals();
            let strings = |items: &[&[u8]]| -> mlua::Result<Table> {
                let table = self.lua.create_table()?;
                for (i, item) in items.iter().enumerate() {
                    table.raw_set(i + 1, self.lua.create_string(item)?)?;
                }
                Ok(table)
            };
            globals.raw_set("KEYS", strings(keys)?)?;
            globals.raw_set("ARGV", strings(argv)?)?;
            let (ok, result) = self.run.call::<(bool, Value)>(&script.function)?;
            if ok {
                return from_lua(result).map(Ok);
            }
            Ok(Err(match result {
                Value::String(text) => text.to_string_lossy(),
                other => format!("ERR {other:?}"),
            }))
        };
        run().unwrap_or_else(|e| Err(format!("ERR Error running script: {e}")))
    }

    /// The keyspace, for commands sent outside scripts.
    pub(crate) fn keyspace(&self) -> std::cell::RefMut<'_, Keyspace> {
        self.keyspace.borrow_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let engine = Engine::new(Rc::new(RefCell::new(Keyspace::default()))).expect("a Lua state");
        engine.keyspace().now = 5_000_250;
        engine
    }

    fn eval(e: &Engine, body: &str, argv: &[&str]) -> Result<Reply, String> {
        let script = e.load("test", body).expect("compiles");
        let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        e.eval(&script, &[b"k"], &argv)
    }

    #[test]
    fn numbers_reach_commands_as_redis_formats_them() {
        for (n, text) in [
            (1.0, "1"),
            (-3.0, "-3"),
            (0.5, "0.5"),
            (0.1, "0.10000000000000001"),
            (1e15, "1000000000000000"),
            (1e17, "1e+17"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (1e-5, "1.0000000000000001e-05"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(format_g17(n), text, "{n}");
        }
        let e = engine();
        let set = "redis.call('SET', KEYS[1], tonumber(ARGV[1])) return redis.call('GET', KEYS[1])";
        assert_eq!(eval(&e, set, &["2.5"]), Ok(Reply::Bulk(b"2.5".to_vec())));
        assert_eq!(eval(&e, set, &["1e16"]), Ok(Reply::Bulk(b"10000000000000000".to_vec())));
    }

    #[test]
    fn results_convert_as_in_redis() {
        let e = engine();
        assert_eq!(eval(&e, "return 3.99", &[]), Ok(Reply::Int(3)), "truncated");
        assert_eq!(eval(&e, "return -3.99", &[]), Ok(Reply::Int(-3)), "toward zero");
        assert_eq!(eval(&e, "return false", &[]), Ok(Reply::Nil));
        assert_eq!(eval(&e, "return true", &[]), Ok(Reply::Int(1)));
        assert_eq!(
            eval(&e, "return {1, 'a', false, nil, 5}", &[]),
            Ok(Reply::Array(vec![Reply::Int(1), Reply::Bulk(b"a".to_vec()), Reply::Nil])),
            "up to the first nil"
        );
        assert_eq!(
            eval(&e, "return redis.status_reply('FINE')", &[]),
            Ok(Reply::Status("FINE".into()))
        );
        assert_eq!(
            eval(&e, "return redis.error_reply('ERR no')", &[]),
            Ok(Reply::Error("ERR no".into()))
        );
        assert_eq!(
            eval(&e, "return redis.call('SET', KEYS[1], 'v')", &[]),
            Ok(Reply::Status("OK".into()))
        );
        assert_eq!(eval(&e, "return redis.call('GET', 'none') == false", &[]), Ok(Reply::Int(1)));
        assert_eq!(
            eval(&e, "local t = redis.call('TIME') return {t[1], t[2]}", &[]),
            Ok(Reply::Array(vec![Reply::Bulk(b"5000".to_vec()), Reply::Bulk(b"250000".to_vec())]))
        );
    }

    #[test]
    fn errors_raise_and_globals_are_protected() {
        let e = engine();
        let raised =
            eval(&e, "redis.call('HSET', KEYS[1], 'f', 1) return redis.call('GET', KEYS[1])", &[]);
        assert!(raised.as_ref().is_err_and(|e| e.contains("WRONGTYPE")), "{raised:?}");
        assert_eq!(
            eval(&e, "return redis.pcall('GET', KEYS[1])['err']", &[]),
            Ok(Reply::Bulk(
                b"WRONGTYPE Operation against a key holding the wrong kind of value".to_vec()
            ))
        );
        let created = eval(&e, "x = 1 return 1", &[]);
        assert!(created.as_ref().is_err_and(|e| e.contains("create global")), "{created:?}");
        let read = eval(&e, "return cjson.encode({})", &[]);
        assert!(read.as_ref().is_err_and(|e| e.contains("nonexistent global")), "{read:?}");
        let bad = eval(&e, "return redis.call('GET', {})", &[]);
        assert!(bad.as_ref().is_err_and(|e| e.contains("strings or integers")), "{bad:?}");
        let unknown = eval(&e, "return redis.call('FLUSHALL')", &[]);
        assert!(unknown.as_ref().is_err_and(|e| e.contains("unknown command")), "{unknown:?}");
    }
}
