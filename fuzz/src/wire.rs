//! What the `wire` target needs besides the adapter: a connection that hands the fuzzer's
//! bytes over in pieces of the fuzzer's choosing, a `block_on` that refuses to wait, and a
//! reference decoder of the chunked transfer coding written over a whole slice, as RFC 9112
//! §7.1 reads (with the leniencies the adapter documents: a bare LF ends a line, anything from
//! `;`, space or tab to the line end is an extension, trailer lines are skipped unread).

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embedded_io_async::{ErrorKind, ErrorType, Read};
use credflow_embedded::MAX_SKIPPED;

/// An in-memory connection: `data` handed over in `pieces` (each at most the reader's room),
/// then as much as the reader has room for, then the end of the stream (`Ok(0)`), or a
/// connection reset when `reset_at_end`.
///
/// It asserts what a real connection cannot answer sensibly: a read into no room (an `Ok(0)`
/// then would be the end of the stream), and a read after the end (a reader that loops on a
/// closed connection hangs the device).
pub struct Wire<'a> {
    data: &'a [u8],
    pieces: &'a [u8],
    reset_at_end: bool,
    /// Bytes handed over so far.
    pub delivered: usize,
    /// The end of the stream (or the reset) was reported.
    pub ended: bool,
}

impl<'a> Wire<'a> {
    /// A connection that will deliver `data`: the first reads take `1 + p` bytes for each
    /// byte `p` of `pieces` (or less, if the reader has less room).
    pub fn new(data: &'a [u8], pieces: &'a [u8], reset_at_end: bool) -> Self {
        Wire { data, pieces, reset_at_end, delivered: 0, ended: false }
    }
}

impl ErrorType for Wire<'_> {
    type Error = ErrorKind;
}

impl Read for Wire<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        assert!(!buf.is_empty(), "read into no room: its Ok(0) would mean the end of the stream");
        assert!(!self.ended, "read after the end of the stream: a loop on a closed connection");
        if self.data.is_empty() {
            self.ended = true;
            return if self.reset_at_end { Err(ErrorKind::ConnectionReset) } else { Ok(0) };
        }
        let piece = match self.pieces.split_first() {
            Some((&p, rest)) => {
                self.pieces = rest;
                1 + usize::from(p)
            }
            None => usize::MAX,
        };
        let n = piece.min(buf.len()).min(self.data.len());
        let (now, later) = self.data.split_at(n);
        buf[..n].copy_from_slice(now);
        self.data = later;
        self.delivered += n;
        Ok(n)
    }
}

/// Runs `future` to completion in one poll: with an in-memory connection every read is ready,
/// so a `Pending` can only be a reader waiting for something that will never come (a hang on a
/// device), and panics.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the reader returned Pending on an in-memory connection: a hang"),
    }
}

/// How the chunked coding of a byte string ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The last chunk and the trailer section were read; `consumed` bytes, the rest is not
    /// the body's.
    Complete { consumed: usize },
    /// The bytes are not the chunked coding.
    Invalid,
    /// The bytes stop before the end of the coding.
    Incomplete,
}

/// The reference decoder: the data of every chunk before the coding ended (completely, at an
/// invalid byte, or at the end of `coded`), and how it ended.
pub fn dechunk(coded: &[u8]) -> (Vec<u8>, Outcome) {
    let mut body = Vec::new();
    let mut at = 0usize;
    // Bytes of extensions and trailer fields: past `MAX_SKIPPED` the coding is refused.
    let mut skipped = 0usize;
    let outcome = loop {
        let rest = &coded[at..];
        // The size: 1 to 16 hex digits (a u64).
        let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            break if rest.is_empty() { Outcome::Incomplete } else { Outcome::Invalid };
        }
        if digits > 16 {
            break Outcome::Invalid;
        }
        if digits == rest.len() {
            break Outcome::Incomplete;
        }
        let hex = core::str::from_utf8(&rest[..digits]).unwrap();
        let size = usize::try_from(u64::from_str_radix(hex, 16).unwrap()).unwrap_or(usize::MAX);
        at += digits;
        // An extension runs to the line end, which must be a line end. What follows the
        // separator is skipped, the line end's first byte included.
        if matches!(coded[at], b';' | b' ' | b'\t') {
            match coded[at..].iter().position(|&b| b == b'\r' || b == b'\n') {
                Some(end) => {
                    skipped += end;
                    if skipped > MAX_SKIPPED {
                        break Outcome::Invalid;
                    }
                    at += end;
                }
                None => {
                    skipped += coded.len() - at - 1;
                    break if skipped > MAX_SKIPPED { Outcome::Invalid } else { Outcome::Incomplete };
                }
            }
        }
        match line_end(&coded[at..]) {
            Ok(n) => at += n,
            Err(outcome) => break outcome,
        }
        if size == 0 {
            break trailers(coded, at, skipped);
        }
        let rest = &coded[at..];
        if rest.len() < size {
            body.extend_from_slice(rest);
            break Outcome::Incomplete;
        }
        body.extend_from_slice(&rest[..size]);
        at += size;
        match line_end(&coded[at..]) {
            Ok(n) => at += n,
            Err(outcome) => break outcome,
        }
    };
    (body, outcome)
}

/// CRLF or a bare LF: its length; anything else there is invalid.
fn line_end(rest: &[u8]) -> Result<usize, Outcome> {
    match rest {
        [] | [b'\r'] => Err(Outcome::Incomplete),
        [b'\n', ..] => Ok(1),
        [b'\r', b'\n', ..] => Ok(2),
        _ => Err(Outcome::Invalid),
    }
}

/// The trailer section from `at`: lines up to an empty one (CRLF or LF), each skipped whole,
/// and the empty line's first byte; `skipped` bytes of extensions before it. Past
/// `MAX_SKIPPED` in all, the coding is refused.
fn trailers(coded: &[u8], mut at: usize, mut skipped: usize) -> Outcome {
    loop {
        let rest = &coded[at..];
        match rest.first() {
            None => return Outcome::Incomplete,
            Some(b'\r' | b'\n') => {
                if skipped + 1 > MAX_SKIPPED {
                    return Outcome::Invalid;
                }
                return match line_end(rest) {
                    Ok(n) => Outcome::Complete { consumed: at + n },
                    Err(outcome) => outcome,
                };
            }
            Some(_) => match rest.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    skipped += end + 1;
                    if skipped > MAX_SKIPPED {
                        return Outcome::Invalid;
                    }
                    at += end + 1;
                }
                None => {
                    skipped += rest.len();
                    return if skipped > MAX_SKIPPED {
                        Outcome::Invalid
                    } else {
                        Outcome::Incomplete
                    };
                }
            },
        }
    }
}

/// Encodes `chunks` in the chunked coding (with a trailer field), as a server would.
pub fn chunked(chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend(format!("{:x}\r\n", chunk.len()).bytes());
        out.extend_from_slice(chunk);
        out.extend(b"\r\n");
    }
    out.extend(b"0\r\nX-Trailer: 1\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_and_trailers_are_bounded_as_the_adapter_bounds_them() {
        let ext = |n: usize| format!("2;{}\r\nok\r\n0\r\n\r\n", "x".repeat(n)).into_bytes();
        // The separator is not counted; the extension and its CR are; and the empty line's CR.
        assert!(matches!(dechunk(&ext(MAX_SKIPPED - 2)).1, Outcome::Complete { .. }));
        assert_eq!(dechunk(&ext(MAX_SKIPPED - 1)).1, Outcome::Invalid);
        let trailer = |n: usize| format!("0\r\nT: {}\r\n\r\n", "y".repeat(n)).into_bytes();
        // "T: " and CR LF around the value, then the empty line's CR.
        assert!(matches!(dechunk(&trailer(MAX_SKIPPED - 6)).1, Outcome::Complete { .. }));
        assert_eq!(dechunk(&trailer(MAX_SKIPPED - 5)).1, Outcome::Invalid);
        assert_eq!(dechunk(&ext(MAX_SKIPPED + 10)[..MAX_SKIPPED + 3]).1, Outcome::Invalid);
        assert_eq!(dechunk(&ext(MAX_SKIPPED)[..MAX_SKIPPED]).1, Outcome::Incomplete);
    }

    #[test]
    fn the_reference_decodes_rfc_9112_examples_and_its_leniencies() {
        let coded =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX: 1\r\n\r\nNEXT";
        let (body, outcome) = dechunk(coded);
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(outcome, Outcome::Complete { consumed: coded.len() - 4 });
        assert_eq!(dechunk(b"2\nab\n0\n\n").1, Outcome::Complete { consumed: 8 });
        assert_eq!(dechunk(b"2 x\r\nab\r\n0\t\r\n\r\n").0, b"ab");
        assert_eq!(
            dechunk(&chunked(&[b"abc", b"", b"de"])),
            (b"abcde".to_vec(), Outcome::Complete { consumed: chunked(&[b"abc", b"de"]).len() })
        );
    }

    #[test]
    fn the_reference_tells_invalid_from_incomplete() {
        for invalid in
            [&b"\r\n"[..], b"x", b"2\rab", b"2\r\nabc", b"0\r\n\rx", b"12345678901234567\r\n"]
        {
            assert_eq!(dechunk(invalid).1, Outcome::Invalid, "{:?}", invalid.escape_ascii());
        }
        for incomplete in [&b""[..], b"2", b"2;ext", b"2\r", b"2\r\na", b"2\r\nab\r", b"0\r\nX: 1"]
        {
            assert_eq!(
                dechunk(incomplete).1,
                Outcome::Incomplete,
                "{:?}",
                incomplete.escape_ascii()
            );
        }
        assert_eq!(dechunk(b"3\r\nab").0, b"ab");
        assert_eq!(dechunk(b"FFFFFFFFFFFFFFFF\r\nab").0, b"ab");
    }

    #[test]
    fn the_wire_hands_over_pieces_then_what_fits() {
        let mut wire = Wire::new(b"abcdefgh", &[0, 2], false);
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        while let Ok(n @ 1..) = block_on(wire.read(&mut buf)) {
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, [&b"a"[..], b"bcd", b"efgh"]);
        assert!(wire.ended && wire.delivered == 8);
    }
}
