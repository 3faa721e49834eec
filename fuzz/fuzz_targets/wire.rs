//! The embedded adapter's HTTP/1.1 response reader (`credflow_embedded::wire::read_response`,
//! public only with the adapter's `__fuzzing` feature): the head (`httparse`, interim 1xx
//! skipped), the body's framing, the in-place chunked decoder, and `ResponseHeaders` over the
//! head it leaves in the buffer, fed through an in-memory connection in pieces the fuzzer
//! chooses (a streaming parser's bugs hide at its split points).
//!
//! Input: a mode byte, the buffer size (u16 little-endian: `1 + v % 4096` bytes), a flags byte
//! (bit 0: the request was `HEAD`; bit 1: the connection is reset instead of closed at the end
//! of the input; bit 2: in the chunked mode, an error status instead of 200), a piece count
//! (`% 16`) and that many piece lengths (`1 + p` bytes each; after them, reads take all the
//! room they offer), then the bytes the server sends:
//! - even mode: the whole response, as is;
//! - odd mode: the body of a chunked response, behind a fixed head (differential against
//!   [`dechunk`], a reference decoder over the whole slice).
//!
//! Checked, besides no panic: the reader never waits (a `Pending` with in-memory input is a
//! hang), never reads into no room nor after the end of the stream; the end of the input is an
//! error unless the body runs until close; head and body lie within the buffer and the body is
//! never longer than it; only error answers are truncated, and never reused; the body is the
//! bytes the framing names (`Content-Length`, until close, or the chunked coding decoded as
//! the reference decodes it) and the head is bytes the server sent; `BodyTooLarge` only for
//! 2xx, naming a size beyond the buffer; in the chunked mode, the outcome (body, `InvalidChunk`,
//! closed early, too large or truncated) is exactly the one the reference predicts for that
//! buffer; header look-ups agree with the field list; the core classifies what was read.
#![no_main]

use credflow_core::classify::classify_response;
use credflow_core::http::Headers;
use credflow_embedded::wire::{ReadError, Received, read_response};
use credflow_embedded::{HttpError, MAX_INTERIM, ResponseHeaders};
use credflow_fuzz::wire::{Outcome, Wire, block_on, dechunk};
use credflow_fuzz::{KNOWN_HEADERS, REFERENCE, show};
use embedded_io_async::ErrorKind;
use libfuzzer_sys::fuzz_target;

/// Largest receive buffer tried.
const MAX_BUFFER: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, lo, hi, flags, pieces], rest)) = data.split_first_chunk::<5>() else {
        return;
    };
    let cap = 1 + usize::from(u16::from_le_bytes([lo, hi])) % MAX_BUFFER;
    let pieces = usize::from(pieces % 16).min(rest.len());
    let (pieces, sent) = rest.split_at(pieces);
    let head_request = flags & 1 != 0;
    let reset = flags & 2 != 0;
    if mode % 2 == 0 {
        check(sent, &read(sent, pieces, reset, cap, head_request), head_request, cap);
    } else {
        let status = if flags & 4 == 0 { 200 } else { 503 };
        chunked(status, sent, pieces, reset, cap);
    }
});

/// What one read left: the result, the buffer, and what the connection saw.
struct Read {
    result: Result<Received, ReadError>,
    buf: Vec<u8>,
    /// Bytes the connection handed over.
    delivered: usize,
    /// The connection reported the end of the stream (or the reset).
    ended: bool,
}

/// Reads one response from `sent` into a `cap`-byte buffer.
fn read(sent: &[u8], pieces: &[u8], reset: bool, cap: usize, head_request: bool) -> Read {
    let mut wire = Wire::new(sent, pieces, reset);
    let mut buf = vec![0u8; cap];
    let result = block_on(read_response(&mut wire, &mut buf, head_request));
    Read { result, buf, delivered: wire.delivered, ended: wire.ended }
}

/// Checks one raw response's outcome against what the input allows.
fn check(sent: &[u8], read: &Read, head_request: bool, cap: usize) {
    let buf = &read.buf[..];
    match read.result {
        Ok(r) => {
            assert!(r.head_len > 0 && r.head_len <= cap, "head {} in {cap}", r.head_len);
            assert!(
                r.body_len <= cap - r.head_len,
                "body {} after head {}",
                r.body_len,
                r.head_len
            );
            // Three digits, any (httparse): the core classifies codes outside 100..=599 as
            // permanent failures.
            assert!(r.status < 1000, "status {}", r.status);
            assert!(r.status == 101 || !(100..200).contains(&r.status), "interim {}", r.status);
            assert!(!(r.truncated && (200..300).contains(&r.status)), "a 2xx body was cut");
            assert!(
                !(r.truncated && r.reusable),
                "a truncated response left a reusable connection"
            );
            let (headers, body) = r.parts(buf);
            assert_eq!(body.len(), r.body_len);
            let head = &buf[..r.head_len];
            let fields: Vec<(&str, &[u8])> = headers.iter().collect();
            check_headers(&headers, &fields, head);
            let _ = classify_response(r.status, &headers, body, Some(REFERENCE));
            let framing = framing(r.status, &fields, head_request);
            check_body(sent, head, body, &r, &fields, framing, read.ended, cap);
        }
        Err(ReadError::BodyTooLarge { status, head_len, needed }) => {
            assert!((200..300).contains(&status), "only a 2xx body is refused for its size");
            assert!(head_len > 0 && head_len <= cap);
            assert!(needed.is_none_or(|n| n > cap), "needs {needed:?}, has {cap}");
            assert!(find(sent, &buf[..head_len]).next().is_some(), "a head the server never sent");
        }
        Err(ReadError::Closed { idle }) => {
            assert!(read.ended, "closed, but the stream had not ended");
            assert_eq!(idle, read.delivered == 0, "idle iff nothing was received");
        }
        Err(ReadError::Io(kind)) => {
            assert!(read.ended && read.delivered > 0, "an I/O error that did not happen");
            assert_eq!(kind, ErrorKind::ConnectionReset);
        }
        Err(ReadError::HeadTooLarge) => assert!(read.delivered >= cap, "the head fit"),
        Err(ReadError::Http(HttpError::TooManyInterim)) => {
            // Each head ends with a line break and an empty line (CRLF or a bare LF each).
            let heads = find(sent, b"\n\r\n").count() + find(sent, b"\n\n").count();
            assert!(heads > usize::from(MAX_INTERIM), "{heads} heads are not too many");
        }
        Err(ReadError::Http(e)) => {
            let _ = show(&e);
        }
    }
}

/// How the head says its body is delimited (RFC 9112 §6.3), read from its fields.
#[derive(Debug, PartialEq)]
enum Framing {
    Empty,
    Chunked,
    Length(usize),
    UntilClose,
}

fn framing(status: u16, headers: &[(&str, &[u8])], head_request: bool) -> Framing {
    let named = |name: &'static str| {
        headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    };
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Framing::Empty;
    }
    // The last coding of the last Transfer-Encoding field decides.
    if let Some(te) = named("transfer-encoding").next_back() {
        let last = te.rsplit(|&b| b == b',').next().unwrap_or_default();
        return if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
    }
    let digits = |v: &[u8]| std::str::from_utf8(v.trim_ascii()).unwrap().parse::<usize>().unwrap();
    let mut lengths = named("content-length").flat_map(|v| v.split(|&b| b == b',')).map(digits);
    match lengths.next() {
        Some(len) => {
            assert!(lengths.all(|other| other == len), "conflicting lengths accepted");
            Framing::Length(len)
        }
        None => Framing::UntilClose,
    }
}

/// The body is what the framing names, taken from the bytes right after the head.
#[allow(clippy::too_many_arguments)]
fn check_body(
    sent: &[u8],
    head: &[u8],
    body: &[u8],
    r: &Received,
    fields: &[(&str, &[u8])],
    framing: Framing,
    ended: bool,
    cap: usize,
) {
    let room = cap - head.len();
    // Where the final head may start in what was sent (interim heads come before it).
    let mut starts = find(sent, head).peekable();
    assert!(starts.peek().is_some(), "a head the server never sent");
    let after = |start: usize| &sent[start + head.len()..];
    if ended {
        // The input ended: only a body that runs until close ends with it.
        assert_eq!(framing, Framing::UntilClose, "the end of the input was not an error");
    }
    match framing {
        Framing::Empty => assert!(body.is_empty() && !r.truncated),
        Framing::Length(len) => {
            assert_eq!((r.body_len, r.truncated), (len.min(room), len > room));
            assert!(starts.any(|s| after(s).starts_with(body)), "not the bytes after the head");
        }
        Framing::UntilClose => {
            assert!(!r.reusable, "a body delimited by the close left the connection reusable");
            let whole = starts.any(|s| after(s) == body);
            let cut = r.truncated && body.len() == room;
            assert!(whole || cut, "until close: not the rest of the stream");
        }
        Framing::Chunked => {
            let decodes = |s: usize| {
                let (decoded, outcome) = dechunk(after(s));
                match r.truncated {
                    false => matches!(outcome, Outcome::Complete { .. }) && decoded == body,
                    true => body.len() == room && decoded.starts_with(body),
                }
            };
            assert!(starts.any(decodes), "the chunked body is not the reference's");
        }
    }
    if r.reusable {
        let connection = fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case("connection"));
        let close = connection
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        assert!(!close, "reused after Connection: close");
        let has = |name: &str| fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        assert!(!(has("transfer-encoding") && has("content-length")), "reused after both framings");
    }
}

/// Look-ups agree with the field list: the first field of a name wins, case-insensitively,
/// values come trimmed; `Debug` names the fields and shows no value.
fn check_headers(headers: &ResponseHeaders<'_>, fields: &[(&str, &[u8])], head: &[u8]) {
    for (name, value) in fields {
        assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
        assert_eq!(value.trim_ascii(), *value, "untrimmed value of {name}");
        let first = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
        assert_eq!(headers.get(&name.to_ascii_uppercase()), first);
    }
    for name in KNOWN_HEADERS {
        let first = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
        assert_eq!(headers.get(name), first);
    }
    let shown = format!("{headers:?}");
    assert_eq!(shown.matches('"').count(), 2 * fields.len(), "{shown}");
    assert!(head.ends_with(b"\n"));
}

/// Every position where `needle` occurs in `haystack`.
fn find<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len().max(1))
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

/// The chunked mode: a fixed head and the fuzzer's body; the outcome must be exactly the one
/// the reference decoder predicts for this buffer.
fn chunked(status: u16, coded: &[u8], pieces: &[u8], reset: bool, cap: usize) {
    let head = format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    let sent = [&head[..], coded].concat();
    let read = read(&sent, pieces, reset, cap, false);
    check(&sent, &read, false, cap);
    let Read { result, buf, delivered, .. } = read;
    if cap < head.len() {
        assert!(
            result == Err(ReadError::HeadTooLarge) || matches!(result, Err(ReadError::Http(_))),
            "{result:?}"
        );
        return;
    }
    let room = cap - head.len();
    let (decoded, outcome) = dechunk(coded);
    let ended = match reset {
        false => ReadError::Closed { idle: false },
        true => ReadError::Io(ErrorKind::ConnectionReset),
    };
    if decoded.len() >= room {
        // The body (so far) fills the buffer before the coding ends.
        if status == 200 {
            assert_eq!(
                result,
                Err(ReadError::BodyTooLarge { status, head_len: head.len(), needed: None })
            );
        } else {
            let r = result.expect("an error body is cut, not refused");
            assert!(r.truncated && !r.reusable && r.body_len == room);
            assert_eq!(r.parts(&buf).1, &decoded[..room]);
        }
        return;
    }
    match outcome {
        Outcome::Complete { consumed } => {
            let r = result.expect("a complete chunked body that fits");
            assert!(!r.truncated);
            assert_eq!(r.parts(&buf).1, &decoded[..]);
            if r.reusable {
                // Nothing after the coding was received (it would be the next answer's).
                assert!(delivered <= head.len() + consumed, "reused with extra bytes");
            }
        }
        Outcome::Invalid => assert_eq!(result, Err(ReadError::Http(HttpError::InvalidChunk))),
        Outcome::Incomplete => assert_eq!(result, Err(ended)),
    }
}
