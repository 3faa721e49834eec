//! A Redis peer that misbehaves on the wire, not in its keys (a compromised server, or a
//! `redis://` URL pointing at something else): a reply far longer than any credflow asks for,
//! announced or just sent without end. The store's connection reads each reply only up to a
//! bound (`src/bounded.rs`), then drops the connection: the call fails at once as for a reset
//! connection (the store goes to degraded mode), the process does not buffer the stream, and
//! the next call connects afresh.
//!
//! The peer stops after a cap of its own and then holds the connection open, so that a client
//! without the bound (which reads on, and never lets the connection go) shows it by the bytes
//! taken and its memory, without taking the machine's.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{RedisServer, scope_of, store_at};
use credflow_redis::RedisConfig;
use credflow_reqwest::shared::{SharedStore, StoreError};

/// What the peer sent of its hostile reply: bytes the kernel took, and whether a write failed
/// (the client closed the connection) before the cap.
#[derive(Debug)]
struct Outcome {
    sent: usize,
    cut_off: bool,
}

/// The hold script's answer: no hold.
const NO_HOLD: &[u8] = b"*2\r\n:0\r\n:0\r\n";

/// A peer listening on 127.0.0.1 (an ephemeral port): each connection it accepts is served by
/// `serve` on a thread of its own, given the connection's number (0 for the first). Returns the
/// peer's URL and how many connections it accepted so far.
fn peer(serve: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let number = count.fetch_add(1, Ordering::SeqCst);
            let serve = Arc::clone(&serve);
            std::thread::spawn(move || serve(stream, number));
        }
    });
    (url, accepted)
}

/// A peer on 127.0.0.1 speaking just enough RESP for the store. The first script call is
/// answered `head`, then `unit` repeated up to `cap` bytes; every later one, on any
/// connection, is answered [`NO_HOLD`]. Reports the hostile reply's [`Outcome`].
fn hostile_peer(
    head: &'static [u8],
    unit: &'static [u8],
    cap: usize,
) -> (String, mpsc::Receiver<Outcome>) {
    let (url, outcome, _) = hostile_peer_counted(head, unit, cap);
    (url, outcome)
}

/// [`hostile_peer`], and how many connections it accepted so far.
fn hostile_peer_counted(
    head: &'static [u8],
    unit: &'static [u8],
    cap: usize,
) -> (String, mpsc::Receiver<Outcome>, Arc<AtomicUsize>) {
    let armed = AtomicBool::new(true);
    let (report, outcome) = mpsc::channel();
    let (url, accepted) = peer(move |stream, _| {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        while let Some(name) = command(&mut reader) {
            let reply = match &name[..] {
                b"EVALSHA" | b"EVAL" if armed.swap(false, Ordering::SeqCst) => {
                    let outcome = stream_out(&mut writer, head, unit, cap);
                    let cut_off = outcome.cut_off;
                    let _ = report.send(outcome);
                    if !cut_off {
                        // Held open, as an endless stream would be.
                        std::thread::sleep(Duration::from_secs(120));
                    }
                    return;
                }
                b"EVALSHA" | b"EVAL" => NO_HOLD,
                _ => b"+OK\r\n",
            };
            if writer.write_all(reply).is_err() {
                return;
            }
        }
    });
    (url, outcome, accepted)
}

/// The next command's name (upper case), `None` once the connection is closed.
fn command(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let mut len = String::new();
        reader.read_line(&mut len).ok()?;
        let len: usize = len.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0u8; len + 2];
        reader.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    args.first().map(|name| name.to_ascii_uppercase())
}

/// Writes `head`, then `unit` again and again up to `cap` bytes or the first failed write.
fn stream_out(writer: &mut TcpStream, head: &[u8], unit: &[u8], cap: usize) -> Outcome {
    let chunk: Vec<u8> =
        unit.iter().copied().cycle().take(unit.len() * (64 * 1024 / unit.len())).collect();
    if writer.write_all(head).is_err() {
        return Outcome { sent: 0, cut_off: true };
    }
    let mut sent = head.len();
    while sent < cap {
        match writer.write(&chunk[..chunk.len().min(cap - sent)]) {
            Ok(n) => sent += n,
            Err(_) => return Outcome { sent, cut_off: true },
        }
    }
    Outcome { sent, cut_off: false }
}

/// The process's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .map(|n| n.trim().parse().unwrap())
        .unwrap();
    kb * 1024
}

/// The most the process's peak memory may grow while a hostile reply is sent: far below what
/// the peer sends, far above the bound on one reply (64 KiB) and the socket's buffers.
const GROWTH_ALLOWED: usize = 32 << 20;

/// Runs a store call against a peer answering it `head` then `unit` up to `cap` bytes, and
/// checks the store (see [`cut_off`]).
async fn a_hostile_reply_is_cut_off(head: &'static [u8], unit: &'static [u8], cap: usize) {
    let (url, outcome) = hostile_peer(head, unit, cap);
    cut_off(&String::from_utf8_lossy(head), url, |_| {}, outcome, cap).await;
}

/// A store call on `url` (its configuration tuned by `tune`), answered by a hostile peer that
/// reports `outcome`, sending at most `cap` bytes: the call fails as for a dropped connection,
/// naming the bound, well before the response timeout; the peer is cut off; the process's peak
/// memory does not grow past [`GROWTH_ALLOWED`]; the next call is answered on a new connection.
async fn cut_off(
    what: &str,
    url: String,
    tune: impl FnOnce(&mut RedisConfig),
    outcome: mpsc::Receiver<Outcome>,
    cap: usize,
) {
    // Long: a call that failed only at its timeout would not do, the bound must fail it first;
    // how much sooner is not measured (a busy machine may take a while to read the bound's
    // worth), only that it is not the timeout.
    let response_timeout = Duration::from_secs(20);
    let store = store_at(url, |c| {
        c.response_timeout = response_timeout;
        tune(c);
    });
    let scope = scope_of("hostile-peer");
    let peak_before = peak_rss();
    let started = Instant::now();
    let failed = store.hold(&scope).await;
    let took = started.elapsed();
    let outcome = outcome.recv_timeout(Duration::from_secs(30)).expect("the peer reports");
    let grown = peak_rss().saturating_sub(peak_before);
    eprintln!("{what:?}: failed after {took:?}, peak memory +{} KiB, {outcome:?}", grown >> 10);
    assert!(
        grown < GROWTH_ALLOWED,
        "peak memory grew {} MiB while the peer sent {} MiB ({outcome:?})",
        grown >> 20,
        outcome.sent >> 20
    );
    assert!(outcome.cut_off && outcome.sent < cap, "the client read on: {outcome:?}");
    match failed {
        Err(StoreError::Unavailable(why)) => {
            assert!(why.contains("more than credflow's replies ever take"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(took < response_timeout / 2, "the call failed after {took:?}, at its timeout");
    // The connection was let go: the next call connects again, and the peer answers it.
    let next = tokio::time::timeout(Duration::from_secs(5), store.hold(&scope)).await;
    assert_eq!(next.expect("answered in time"), Ok(None));
}

/// Set in the process [`alone`] starts.
const CHILD: &str = "CREDFLOW_HOSTILE_PEER_CASE";

/// Runs `case` in a process of its own (this test binary, running the test `name` only): the
/// peak memory measured is then that case's, not another test's, nor one left by a test
/// before it.
fn alone<F: std::future::Future<Output = ()>>(name: &str, case: impl FnOnce() -> F) {
    if std::env::var_os(CHILD).is_some() {
        return runtime().block_on(case());
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("1 passed"), "{name} failed in its process");
}

/// A bulk string announced at 1 GB whose bytes keep coming: refused at its length line.
#[test]
fn a_bulk_string_announced_at_a_gigabyte_is_refused_at_once() {
    alone("a_bulk_string_announced_at_a_gigabyte_is_refused_at_once", || {
        a_hostile_reply_is_cut_off(b"$1000000000\r\n", b"x", 128 << 20)
    });
}

/// An array announced with a billion elements, its elements (bulk strings) coming: refused
/// at its header.
#[test]
fn an_array_of_a_billion_elements_is_refused_at_once() {
    let element = format!("$1000\r\n{}\r\n", "e".repeat(1000)).into_bytes().leak();
    alone("an_array_of_a_billion_elements_is_refused_at_once", || {
        a_hostile_reply_is_cut_off(b"*1000000000\r\n", element, 128 << 20)
    });
}

/// A status line that never ends: nothing is announced, the bytes alone pass the bound.
#[test]
fn a_status_line_without_end_is_cut_at_the_bound() {
    alone("a_status_line_without_end_is_cut_at_the_bound", || {
        a_hostile_reply_is_cut_off(b"+", b"a", 128 << 20)
    });
}

/// Within the bounds, an array of 200 integers is read as any reply: not the answer the store
/// expects (refused, as a type error), not a dropped connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_within_the_bounds_is_read_as_any_other() {
    let (url, outcome) = hostile_peer(b"*200\r\n", b":1\r\n", 6 + 200 * 4);
    let store = store_at(url, |_| {});
    let scope = scope_of("within-bound");
    let answered = store.hold(&scope).await;
    let outcome = outcome.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(!outcome.cut_off, "{outcome:?}");
    assert!(matches!(answered, Err(StoreError::Refused(_))), "{answered:?}");
}

/// A peer whose first script call gets the first element of a two-element array, then nothing
/// (it holds the connection open); later calls, on other connections, are answered.
fn stalling_peer() -> (String, mpsc::Receiver<Outcome>) {
    let (url, outcome, _) = stalling_peer_counted();
    (url, outcome)
}

/// [`stalling_peer`], and how many connections it accepted so far.
fn stalling_peer_counted() -> (String, mpsc::Receiver<Outcome>, Arc<AtomicUsize>) {
    const HEAD: &[u8] = b"*2\r\n:0\r\n";
    hostile_peer_counted(HEAD, b":", HEAD.len())
}

/// A reply that stops coming (a peer gone silent mid-reply, with no reset: a partition, a
/// failover) fails its call at the response timeout, and so does the next call on that
/// connection (a lone timeout does not let it go); then the connection is let go, and the
/// call after is answered on a new one, not left to time out on the stalled one for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reply_fails_at_the_timeout_and_the_next_call_connects_afresh() {
    let (url, outcome) = stalling_peer();
    let store = store_at(url, |c| c.response_timeout = Duration::from_millis(300));
    let scope = scope_of("stalled-peer");
    let stalled = store.hold(&scope).await;
    assert!(matches!(stalled, Err(StoreError::Unavailable(_))), "{stalled:?}");
    let outcome = outcome.recv_timeout(Duration::from_secs(5)).expect("the peer reports");
    assert!(!outcome.cut_off, "{outcome:?}");
    let again = store.hold(&scope).await;
    assert!(matches!(again, Err(StoreError::Unavailable(_))), "{again:?}");
    let next = tokio::time::timeout(Duration::from_secs(5), store.hold(&scope)).await;
    assert_eq!(next.expect("answered in time"), Ok(None));
}

/// A peer whose connections answer their first command (the handshake) only after `delay` of
/// their number (0 for the first), then as [`hostile_peer`]'s later ones do; returns its URL and
/// the connections it accepted.
fn slow_handshake_peer(
    delay: impl Fn(usize) -> Duration + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    peer(move |stream, number| {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut first = true;
        while let Some(name) = command(&mut reader) {
            if std::mem::take(&mut first) {
                std::thread::sleep(delay(number));
            }
            let reply = match &name[..] {
                b"EVALSHA" | b"EVAL" => NO_HOLD,
                _ => b"+OK\r\n",
            };
            if writer.write_all(reply).is_err() {
                return;
            }
        }
    })
}

/// A connection whose handshake takes longer than the caller's limit on a call (the client
/// bounds each store call) is not cut short with that call: it completes on its own, and the
/// next call is answered on it at once. Cut with the first caller, each call began its own
/// connection anew and none ever completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_slower_than_a_call_completes_for_the_next_call() {
    let (url, accepted) = slow_handshake_peer(|_| Duration::from_millis(600));
    let store = store_at(url, |c| {
        c.connect_timeout = Duration::from_secs(5);
        c.response_timeout = Duration::from_secs(5);
    });
    let scope = scope_of("slow-handshake");
    let limit = Duration::from_millis(200);
    let first = tokio::time::timeout(limit, store.hold(&scope)).await;
    assert!(first.is_err(), "the first call outlasted its limit: {first:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let next = tokio::time::timeout(limit, store.hold(&scope)).await;
    assert_eq!(next.expect("answered within the limit"), Ok(None));
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, made once");
}

/// A peer whose first connection's handshake is not answered (for a minute), and whose later
/// connections are answered at once.
fn first_handshake_stalls() -> (String, Arc<AtomicUsize>) {
    slow_handshake_peer(|number| if number == 0 { Duration::from_secs(60) } else { Duration::ZERO })
}

/// A tokio runtime of its own (two worker threads), as a test or an application that makes one
/// per task has.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Waits (at most 5 s) until `peer` accepted `n` connections.
fn until_accepted(peer: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while peer.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "the peer accepted {peer:?} connections, not {n}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One store used from two runtimes in turn (one store shared by tests that each make a
/// runtime, or an application's runtime shut down between calls): a connection attempt begun
/// on the first, cut off in its handshake when that runtime shuts down (its task dropped
/// without an outcome), is not kept as the attempt under way: the call on the second runtime
/// connects anew and is answered. The abandoned attempt was kept, and every later call failed
/// with "the connection attempt was abandoned", for as long as the store lived.
#[test]
fn an_attempt_cut_off_with_its_runtime_is_not_kept_for_later_calls() {
    let (url, accepted) = first_handshake_stalls();
    // Long: the stalled attempt must not end on its own (and be tried again) before the test
    // cuts it off, however slow the machine.
    let store = store_at(url, |c| c.connect_timeout = Duration::from_secs(30));
    let scope = scope_of("attempt-cut-off");
    let first = runtime();
    let call = first.block_on(async {
        tokio::time::timeout(Duration::from_millis(200), store.hold(&scope)).await
    });
    assert!(call.is_err(), "answered before its handshake: {call:?}");
    until_accepted(&accepted, 1);
    // Its tasks are dropped, the connection attempt's among them, mid-handshake.
    drop(first);
    let second = runtime();
    let next = second
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), store.hold(&scope)).await });
    assert_eq!(next.expect("answered in time"), Ok(None));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one connection anew");
}

/// A caller waiting for a connection attempt that another runtime began, when that runtime
/// shuts down (the attempt's task dropped without an outcome), begins one anew on its own
/// runtime and is answered, rather than failing (which put the process in degraded mode for
/// nothing Redis did).
#[test]
fn a_caller_waiting_on_an_attempt_cut_off_with_its_runtime_connects_anew() {
    let (url, accepted) = first_handshake_stalls();
    let store = store_at(url, |c| c.connect_timeout = Duration::from_secs(30));
    let scope = scope_of("waiter-of-cut-off");
    let first = runtime();
    first.spawn({
        let (store, scope) = (Arc::clone(&store), scope.clone());
        async move { store.hold(&scope).await }
    });
    until_accepted(&accepted, 1);
    let second = runtime();
    let answered = second.block_on(async {
        let mut call = std::pin::pin!(store.hold(&scope));
        let waiting = tokio::time::timeout(Duration::from_millis(100), &mut call).await;
        assert!(waiting.is_err(), "answered before the handshake: {waiting:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "the caller waits for the attempt");
        first.shutdown_background();
        tokio::time::timeout(Duration::from_secs(5), call).await
    });
    assert_eq!(answered.expect("answered in time"), Ok(None));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one connection anew");
}

/// A connection attempt begun on a current-thread runtime that is then not run (alive, between
/// two `block_on`s: its attempt neither goes on nor ends) does not hold the callers on another
/// runtime until it runs again: once that attempt is older than the connect timeout, a caller
/// on another runtime begins one of its own, and is answered (a redis-server on 127.0.0.1).
/// When the first runtime runs again and its attempt ends, the connection in use stays the
/// second runtime's, whose task is run: calls there are still answered. Every such caller waited
/// for the attempt until the first runtime ran again (here: its call's limit, every time).
#[test]
fn an_attempt_on_a_runtime_not_run_does_not_hold_callers_on_another() {
    let redis = RedisServer::start();
    let store = store_at(redis.url(), |c| c.connect_timeout = Duration::from_millis(500));
    let scope = scope_of("runtime-not-run");
    let idle = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // A call polled once: its connection attempt is begun (a task spawned on `idle`), then left
    // as `block_on` returns, the runtime alive and not run.
    idle.block_on(async {
        let mut call = std::pin::pin!(store.hold(&scope));
        std::future::poll_fn(|cx| {
            assert!(call.as_mut().poll(cx).is_pending(), "answered without connecting");
            std::task::Poll::Ready(())
        })
        .await;
    });
    let driven = runtime();
    // Generous bounds: they tell a call answered from one held until the first runtime runs.
    let limit = Duration::from_secs(10);
    for call in 0..2 {
        let answered =
            driven.block_on(async { tokio::time::timeout(limit, store.hold(&scope)).await });
        let answered = answered.expect("answered, not held by the attempt of a runtime not run");
        assert_eq!(answered, Ok(None), "call {call}");
    }
    // The first runtime runs again, long enough for its attempt to end (a handshake on
    // 127.0.0.1), and is left again.
    idle.block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });
    let answered = driven.block_on(async { tokio::time::timeout(limit, store.hold(&scope)).await });
    assert_eq!(answered.expect("answered in time"), Ok(None), "on the second runtime's connection");
}

/// A connection made on a runtime that then shuts down (its reading and writing task dropped
/// with it) is replaced by the next call, on another runtime.
#[test]
fn a_connection_whose_runtime_shut_down_is_replaced() {
    let (url, accepted) = slow_handshake_peer(|_| Duration::ZERO);
    let store = store_at(url, |_| {});
    let scope = scope_of("runtime-gone");
    for call in 0..2 {
        // Dropped at the end of the round, with its tasks: the connection's among them.
        let runtime = runtime();
        let answered = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), store.hold(&scope)).await
        });
        assert_eq!(answered.expect("answered in time"), Ok(None), "call {call}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a connection per runtime");
}

/// A reply that stalls, its calls given up by their caller before the response timeout (the
/// client's bound on a store call, shorter than a long `response_timeout`): once the response
/// timeout has passed since they were sent, two such calls in a row let the connection go, as
/// two timeouts do, and the next call is answered on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_given_up_on_a_stalled_reply_let_the_connection_go() {
    let (url, _outcome, accepted) = stalling_peer_counted();
    let response_timeout = Duration::from_secs(1);
    let store = store_at(url, |c| c.response_timeout = response_timeout);
    let scope = scope_of("stalled-peer-given-up");
    let limit = Duration::from_millis(300);
    for call in ["first", "second"] {
        let stalled = tokio::time::timeout(limit, store.hold(&scope)).await;
        assert!(stalled.is_err(), "the {call} call was answered: {stalled:?}");
    }
    tokio::time::sleep(response_timeout + Duration::from_millis(500)).await;
    let next = tokio::time::timeout(Duration::from_secs(5), store.hold(&scope)).await;
    assert_eq!(next.expect("answered in time"), Ok(None));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a connection anew");
}

/// A peer that answers every script call `delay` late (each connection's in turn, as Redis
/// does), and the rest at once; returns its URL and the connections it accepted.
fn slow_peer(delay: Duration) -> (String, Arc<AtomicUsize>) {
    peer(move |stream, _| {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        while let Some(name) = command(&mut reader) {
            let reply = match &name[..] {
                b"EVALSHA" | b"EVAL" => {
                    std::thread::sleep(delay);
                    NO_HOLD
                }
                _ => b"+OK\r\n",
            };
            if writer.write_all(reply).is_err() {
                return;
            }
        }
    })
}

/// Calls given up by their callers early (the client's bound on a store call, shorter than a
/// long `response_timeout`), on a Redis that answers slowly but within the response timeout,
/// do not let the connection go: each command counts as unanswered only once the response
/// timeout has passed since it was sent, and these are answered before. Counted as unanswered
/// when dropped, two such calls in a row made the next call connect anew, and so on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_given_up_before_a_slow_reply_keep_the_connection() {
    let (url, accepted) = slow_peer(Duration::from_millis(300));
    let store = store_at(url, |c| c.response_timeout = Duration::from_secs(5));
    let scope = scope_of("slow-peer-given-up");
    for call in 0..4 {
        let given_up = tokio::time::timeout(Duration::from_millis(100), store.hold(&scope)).await;
        assert!(given_up.is_err(), "call {call} was answered: {given_up:?}");
    }
    let answered = tokio::time::timeout(Duration::from_secs(5), store.hold(&scope)).await;
    assert_eq!(answered.expect("answered in time"), Ok(None));
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, kept");
}

/// A peer that closes each connection after answering one script call (a Redis restarted, a
/// proxy's idle timeout): the connection's task ends with it, and the next call connects
/// afresh instead of failing on the closed one first (which put the process in degraded mode
/// for a call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_between_calls_is_replaced_before_the_next() {
    let (url, _) = peer(|stream, _| {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        while let Some(name) = command(&mut reader) {
            let script = matches!(&name[..], b"EVALSHA" | b"EVAL");
            let reply = if script { NO_HOLD } else { b"+OK\r\n" };
            if writer.write_all(reply).is_err() || script {
                return;
            }
        }
    });
    let store = store_at(url, |_| {});
    let scope = scope_of("closing-after-each");
    for call in 0..3 {
        assert_eq!(store.hold(&scope).await, Ok(None), "call {call}");
        // The close reaches the client (its connection's task ends).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A peer whose first connection is to a demoted primary (a replica now, after a failover): the
/// handshake is answered, then every script call `reply` (`-READONLY …`, `-MASTERDOWN …`);
/// later connections (to the new primary) are answered as a primary answers.
fn demoted_primary_peer(reply: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    peer(move |stream, number| {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        while let Some(name) = command(&mut reader) {
            let reply = match &name[..] {
                b"EVALSHA" | b"EVAL" if number == 0 => reply,
                b"EVALSHA" | b"EVAL" => NO_HOLD,
                _ => b"+OK\r\n",
            };
            if writer.write_all(reply).is_err() {
                return;
            }
        }
    })
}

/// After a failover, a connection to the demoted primary (it answers every write `READONLY`,
/// and keeps the connection open) is let go after that answer: the next call connects afresh
/// and reaches the new primary. The answer counted as any other, the connection was kept and
/// every call (each degraded-mode probe among them) was refused on it, for as long as the
/// server kept it open. The same for `MASTERDOWN` (a replica that lost its primary), and for
/// the `ERR` a Redis before 7.0 answers a script whose write a replica refused, quoting the
/// `READONLY` refusal (`scripting.c`'s form, as 6.2 sends it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_a_demoted_primary_is_replaced_by_the_next_call() {
    for reply in [
        &b"-READONLY You can't write against a read only replica.\r\n"[..],
        b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
        b"-ERR Error running script (call to f_3b5d2e7c9a1f4e6b8d0c2a4e6f8b0d2c4e6a8c0e): \
          @user_script:5: @user_script: 5: -READONLY You can't write against a read only \
          replica.\r\n",
    ] {
        let what = String::from_utf8_lossy(reply);
        let (url, accepted) = demoted_primary_peer(reply);
        let store = store_at(url, |_| {});
        let scope = scope_of("demoted-primary");
        let refused = store.hold(&scope).await;
        assert!(refused.is_err(), "{what}: {refused:?}");
        let next = tokio::time::timeout(Duration::from_secs(5), store.hold(&scope)).await;
        assert_eq!(next.expect("answered in time"), Ok(None), "{what}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "{what}: a connection anew");
    }
}

/// A peer that closes every connection at once: callers arriving while one connects wait for
/// that attempt (and its one retry) and share its failure, rather than each connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_share_one_failed_connection_attempt() {
    let (url, accepted) = peer(|stream, _| drop(stream));
    let store = store_at(url, |_| {});
    let scope = scope_of("closing-peer");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (store, scope) = (Arc::clone(&store), scope.clone());
            tokio::spawn(async move { store.hold(&scope).await })
        })
        .collect();
    for call in calls {
        assert!(matches!(call.await.unwrap(), Err(StoreError::Unavailable(_))));
    }
    let accepted = accepted.load(Ordering::SeqCst);
    assert!((1..=2).contains(&accepted), "{accepted} connections for 8 callers");
}

/// `rediss://`: a TLS front on 127.0.0.1 (certificate from a throwaway CA) for a plain peer,
/// each connection's plaintext relayed both ways. Returns the URL and the CA's PEM.
#[cfg(feature = "tls")]
async fn tls_front(plain_url: &str) -> (String, Vec<u8>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let dir = common::temp_dir("hostile-tls");
    let ca = common::make_ca(&dir, "hostile-ca");
    common::make_server_cert(&dir, "hostile-ca");
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config =
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("rediss://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let upstream = plain_url.trim_start_matches("redis://").to_owned();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (url, ca)
}

/// Over `rediss://` too: the bound reads the plaintext, above TLS.
#[cfg(feature = "tls")]
#[test]
fn over_tls_a_bulk_string_announced_at_a_gigabyte_is_refused_at_once() {
    alone("over_tls_a_bulk_string_announced_at_a_gigabyte_is_refused_at_once", || async {
        let (plain_url, outcome) = hostile_peer(b"$1000000000\r\n", b"x", 128 << 20);
        let (url, ca) = tls_front(&plain_url).await;
        cut_off("rediss", url, |c| c.root_ca_pem = Some(ca), outcome, 128 << 20).await;
    });
}
