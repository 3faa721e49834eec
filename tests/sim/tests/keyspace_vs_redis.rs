//! The simulator's Redis (its keyspace and its Lua scripting) against a real `redis-server`,
//! started here on 127.0.0.1 on an ephemeral port: random sequences of the commands the
//! `credflow-redis` scripts use, and of small scripts that exercise Redis's conversions between
//! Lua values and replies, must get the same replies from both.
//!
//! Replies are compared exactly, but errors by their code (`ERR`, `WRONGTYPE`, …: the texts of
//! script errors name Redis's internals), and a positive `PTTL` within the time the test has
//! run (the real server's clock moves; the simulator's stands still, and every time to live
//! here is long enough that nothing expires during the test).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use credflow_sim::redis::{Redis, Reply};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// A `redis-server` on 127.0.0.1, without persistence, stopped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install -y redis-server)");
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.connect().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        let mut con = client.get_connection()?;
        redis::cmd("PING").query::<String>(&mut con)?;
        Ok(con)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reply as both sides are compared: errors by code.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Seen>),
    Status(String),
    Error(String),
}

fn code(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("").to_owned()
}

fn from_sim(reply: Reply) -> Seen {
    match reply {
        Reply::Int(n) => Seen::Int(n),
        Reply::Bulk(b) => Seen::Bulk(b),
        Reply::Nil => Seen::Nil,
        Reply::Array(items) => Seen::Array(items.into_iter().map(from_sim).collect()),
        Reply::Status(s) => Seen::Status(s),
        Reply::Error(e) => Seen::Error(code(&e)),
    }
}

fn from_real(value: redis::Value) -> Seen {
    use redis::Value;
    match value {
        Value::Int(n) => Seen::Int(n),
        Value::BulkString(b) => Seen::Bulk(b),
        Value::Nil => Seen::Nil,
        Value::Array(items) => Seen::Array(items.into_iter().map(from_real).collect()),
        Value::Okay => Seen::Status("OK".into()),
        Value::SimpleString(s) => Seen::Status(s),
        Value::ServerError(e) => Seen::Error(e.code().to_owned()),
        other => panic!("a RESP2 server does not send {other:?}"),
    }
}

/// Small scripts, each run with one key and one argument: what Redis's scripting converts.
const SCRIPTS: [&str; 21] = [
    "return tonumber(ARGV[1])",
    "return {1, 'a', false, nil, 5}",
    "return false",
    "return true",
    "return nil",
    "redis.call('SET', KEYS[1], tonumber(ARGV[1])) return redis.call('GET', KEYS[1])",
    "return redis.status_reply(ARGV[1])",
    "return redis.error_reply('MY ' .. ARGV[1])",
    "return redis.pcall('GET', KEYS[1])",
    "return redis.call('HMGET', KEYS[1], 'f', 'g')",
    "return {redis.call('GET', KEYS[1])}",
    "return #redis.call('TIME')",
    "return type(redis.call('TIME')[1])",
    "return undefined_global",
    "created = 1 return 1",
    "return redis.call('ZCARD', KEYS[1]) + 0.9",
    "return {ARGV[1], {1, {2}}}",
    "return redis.call('SET', KEYS[1], ARGV[1], 'NX')",
    "return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))",
    "return redis.call('DEL', KEYS[1], KEYS[1])",
    "return redis.call('GET', KEYS[1], 'extra')",
];

/// One command line (`argv`), or a script (`EVAL`).
#[derive(Clone, Debug)]
enum Op {
    Command(Vec<String>),
    Script { index: usize, key: String, arg: String },
}

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(items).prop_map(str::to_owned)
}

fn op() -> impl Strategy<Value = Op> {
    let key = || pick(&["a", "b", "c"]);
    let value = || pick(&["v", "0", "12", "-3"]);
    let field = || pick(&["f", "g", "h"]);
    let score = || pick(&["1", "2.5", "-3", "inf", "-inf", "x"]);
    let bound = || pick(&["-inf", "+inf", "1", "(1", "2.5", "(2.5", "x"]);
    let set_options = proptest::collection::vec(
        pick(&["NX", "XX", "PX 100000", "EX 100", "PX 0", "PX -5", "PX 1.5", "KEEPTTL"]),
        0..3,
    );
    let command = prop_oneof![
        key().prop_map(|k| vec!["GET".into(), k]),
        (
            key(),
            pick(&["0", "1", "-1", "-2", "5", "-9", "x"]),
            pick(&["0", "1", "-1", "2", "-3", "9"])
        )
            .prop_map(|(k, start, end)| vec!["GETRANGE".into(), k, start, end]),
        (key(), value(), set_options).prop_map(|(k, v, options)| {
            let mut argv = vec!["SET".into(), k, v];
            argv.extend(options.iter().flat_map(|o| o.split(' ').map(str::to_owned)));
            argv
        }),
        proptest::collection::vec(key(), 1..4)
            .prop_map(|keys| { std::iter::once("DEL".to_owned()).chain(keys).collect() }),
        key().prop_map(|k| vec!["PTTL".into(), k]),
        (key(), pick(&["100000", "0", "-1", "1.5"])).prop_map(|(k, ms)| vec![
            "PEXPIRE".into(),
            k,
            ms
        ]),
        (key(), proptest::collection::vec((field(), value()), 0..3)).prop_map(|(k, pairs)| {
            let mut argv = vec!["HSET".into(), k];
            argv.extend(pairs.into_iter().flat_map(|(f, v)| [f, v]));
            argv
        }),
        (key(), field()).prop_map(|(k, f)| vec!["HGET".into(), k, f]),
        (key(), proptest::collection::vec(field(), 1..3)).prop_map(|(k, fields)| {
            std::iter::once("HMGET".to_owned()).chain(std::iter::once(k)).chain(fields).collect()
        }),
        (key(), proptest::collection::vec((score(), pick(&["m", "n"])), 1..3)).prop_map(
            |(k, pairs)| {
                let mut argv = vec!["ZADD".into(), k];
                argv.extend(pairs.into_iter().flat_map(|(s, m)| [s, m]));
                argv
            }
        ),
        key().prop_map(|k| vec!["ZCARD".into(), k]),
        (key(), bound(), bound()).prop_map(|(k, min, max)| vec![
            "ZREMRANGEBYSCORE".into(),
            k,
            min,
            max
        ]),
    ];
    let arg = pick(&["3.7", "-3.7", "1e3", "0.1", "100000", "-0", "x", "123456789012345678"]);
    prop_oneof![
        3 => command.prop_map(Op::Command),
        2 => (0..SCRIPTS.len(), key(), arg).prop_map(|(index, key, arg)| Op::Script {
            index,
            key,
            arg
        }),
    ]
}

fn real(con: &mut redis::Connection, op: &Op) -> Seen {
    let cmd = match op {
        Op::Command(argv) => {
            let mut cmd = redis::cmd(&argv[0]);
            cmd.arg(&argv[1..]);
            cmd
        }
        Op::Script { index, key, arg } => {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(SCRIPTS[*index]).arg(1).arg(key).arg(arg);
            cmd
        }
    };
    match cmd.query::<redis::Value>(con) {
        Ok(value) => from_real(value),
        Err(e) => Seen::Error(e.code().unwrap_or("?").to_owned()),
    }
}

fn simulated(redis: &mut Redis, op: &Op) -> Seen {
    from_sim(match op {
        Op::Command(argv) => {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            redis.command(0, &argv)
        }
        Op::Script { index, key, arg } => redis.script(0, SCRIPTS[*index], &[key], &[arg]),
    })
}

#[test]
fn the_simulated_keyspace_answers_as_redis_server_does() {
    let server = Server::start();
    let con = std::cell::RefCell::new(server.connect().expect("a connection"));
    let started = Instant::now();
    let mut runner = TestRunner::new(Config::default());
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        let mut con = con.borrow_mut();
        redis::cmd("FLUSHALL").query::<()>(&mut *con).expect("FLUSHALL");
        let mut sim = Redis::new();
        for (step, op) in ops.iter().enumerate() {
            let (want, got) = (real(&mut con, op), simulated(&mut sim, op));
            // A time to live read back: the real one has run down since it was set.
            let ran = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            let same = match (&want, &got) {
                (Seen::Int(w), Seen::Int(g))
                    if *g > 0 && matches!(op, Op::Command(a) if a[0] == "PTTL") =>
                {
                    w <= g && *w >= g - ran - 1
                }
                _ => want == got,
            };
            if !same {
                return Err(TestCaseError::fail(format!(
                    "step {step}, {op:?}: redis-server {want:?}, simulated {got:?}"
                )));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
