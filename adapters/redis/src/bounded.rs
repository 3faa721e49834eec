//! A bound on what one Redis connection may make this process hold: every byte read is framed
//! here as RESP before the `redis` crate's parser sees it, and a reply larger than any credflow
//! asks for fails the read.
//!
//! The `redis` crate keeps reading a reply of whatever length it announces, and of whatever
//! length it turns out to be, until it is complete: a peer that announces `$999999999` and
//! streams, or sends an array or a status line without end, makes the process buffer it. A
//! command's response timeout does not stop that: the connection is not replaced on a
//! timeout, and its reader goes on buffering after the caller gave up. So the bound is enforced
//! below the parser, on the bytes, with an I/O error that the `redis` crate and this crate both
//! read as a dropped connection (`ConnectionAborted`): the call fails as for a reset
//! connection, the store goes to degraded mode, and the next call connects afresh.
//!
//! The bound is per reply, not per connection or per command written: the parser holds at most
//! the one reply it is reading (the replies before it were handed to their callers or dropped),
//! so however many commands are in flight on the multiplexed connection, and however their
//! replies arrive together, what the connection holds is at most one reply under
//! [`MAX_REPLY_LEN`] plus the read buffer's next chunk. The values the parser builds from those
//! bytes take more room than the bytes (each value some tens of bytes, from as few as three
//! bytes sent; each aggregate's elements set aside when it is announced, at most
//! [`MAX_ELEMENTS`]): a few MiB at worst for one reply, bounded all the same.
//!
//! What credflow asks Redis for is small: the token value, read with `GETRANGE` only as far as
//! [`at_rest::MAX_VALUE_LEN`](crate::at_rest::MAX_VALUE_LEN) + 1 bytes; the scripts' answers,
//! arrays of at most four integers; `SCRIPT LOAD`'s 40-character hash; a status or an error
//! line; and, when the URL asks for RESP3, `HELLO`'s map of the server's properties and
//! modules. The limits below leave a wide margin over all of them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::at_rest::MAX_VALUE_LEN;

/// The most bytes one reply may take, type bytes, lengths and line ends included: 64 KiB, about
/// eight times the longest token value credflow reads (its own longest token, encrypted), and
/// hundreds of times a script's answer or an error line.
pub(crate) const MAX_REPLY_LEN: usize = 64 * 1024;

// The longest reply credflow asks for, its bulk header and line ends with it, is well inside.
const _: () = assert!(MAX_VALUE_LEN + 1 + 32 < MAX_REPLY_LEN / 4);

/// The most elements one array, set, push or map (keys and values) may announce. The scripts
/// answer at most four; `HELLO`'s map has seven pairs. The parser sets room aside for the
/// elements an aggregate announces (up to 4,096 per level), before they arrive: the count is
/// bounded here, at its header.
pub(crate) const MAX_ELEMENTS: i64 = 256;

/// The deepest nesting of aggregates: credflow's replies are flat; `HELLO`'s modules are four
/// levels deep.
pub(crate) const MAX_DEPTH: usize = 8;

/// The longest length line (`$`, `*`, ...): a 64-bit integer is 20 characters.
const MAX_HEADER_LEN: usize = 32;

/// Why a reply was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Longer than [`MAX_REPLY_LEN`], announced or sent.
    TooLong,
    /// An aggregate announcing more than [`MAX_ELEMENTS`].
    TooManyElements,
    /// Aggregates nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A length line (`$`, `*`, ...) longer than [`MAX_HEADER_LEN`]: the parser would read one
    /// padded with whitespace (it trims the line), which Redis never sends.
    LongLengthLine,
    /// Not RESP as the `redis` crate reads it (which would fail on it too).
    Malformed,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the Redis server sent a reply ")?;
        match self {
            Refused::TooLong => write!(f, "longer than {} KiB", MAX_REPLY_LEN / 1024)?,
            Refused::TooManyElements => {
                write!(f, "with an aggregate of more than {MAX_ELEMENTS} elements")?;
            }
            Refused::TooDeep => write!(f, "with aggregates nested more than {MAX_DEPTH} deep")?,
            Refused::LongLengthLine => {
                write!(f, "with a length line longer than {MAX_HEADER_LEN} bytes")?;
            }
            Refused::Malformed => f.write_str("that is not RESP")?,
        }
        f.write_str(", more than credflow's replies ever take; the connection is dropped")
    }
}

impl std::error::Error for Refused {}

/// Where in a reply the next byte falls.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// A type byte: a new value starts.
    Type,
    /// A line whose content does not matter here (status, error, integer, null, double,
    /// boolean, big number), up to its CRLF.
    Line { cr: bool },
    /// A length line (`kind` is its type byte), kept to be read.
    Length { kind: u8, len: usize, cr: bool },
    /// A blob's bytes and its CRLF: `left` counts both.
    Body { left: usize },
}

/// RESP framing, fed the bytes as they arrive (split anywhere): where each reply ends, and
/// whether it stays within the bounds. It holds no reply, only counts.
#[derive(Debug)]
pub(crate) struct ReplyBound {
    mode: Mode,
    /// The elements still to come in each open aggregate, outermost first.
    open: Vec<usize>,
    /// Bytes of the reply being read.
    taken: usize,
    header: [u8; MAX_HEADER_LEN],
    refused: Option<Refused>,
}

impl Default for ReplyBound {
    fn default() -> Self {
        ReplyBound {
            mode: Mode::Type,
            open: Vec::with_capacity(MAX_DEPTH),
            taken: 0,
            header: [0; MAX_HEADER_LEN],
            refused: None,
        }
    }
}

impl ReplyBound {
    /// Takes `bytes`, the next ones read. Once refused, refuses everything after.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), Refused> {
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        for &b in bytes {
            if let Err(refused) = self.step(b) {
                self.refused = Some(refused);
                return Err(refused);
            }
        }
        Ok(())
    }

    /// Whether the bytes so far end on a reply's end.
    #[cfg(any(test, feature = "__fuzzing"))]
    pub(crate) fn between_replies(&self) -> bool {
        matches!(self.mode, Mode::Type) && self.open.is_empty() && self.taken == 0
    }

    fn step(&mut self, b: u8) -> Result<(), Refused> {
        self.taken += 1;
        if self.taken > MAX_REPLY_LEN {
            return Err(Refused::TooLong);
        }
        match self.mode {
            Mode::Type => {
                self.mode = match b {
                    b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Mode::Line { cr: false },
                    b'$' | b'!' | b'=' | b'*' | b'~' | b'%' | b'|' | b'>' => {
                        Mode::Length { kind: b, len: 0, cr: false }
                    }
                    _ => return Err(Refused::Malformed),
                };
            }
            // A line ends at its first CRLF, as the parser's `take_until_bytes("\r\n")` finds it.
            Mode::Line { cr } => {
                if cr && b == b'\n' {
                    self.value_done();
                } else {
                    self.mode = Mode::Line { cr: b == b'\r' };
                }
            }
            Mode::Length { kind, len, cr } => {
                if cr && b == b'\n' {
                    // The parser reads the line as UTF-8, trimmed, as an i64; without its `\r`.
                    let line = &self.header[..len - 1];
                    let n = std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .ok_or(Refused::Malformed)?;
                    self.length(kind, n)?;
                } else {
                    if len == MAX_HEADER_LEN {
                        return Err(Refused::LongLengthLine);
                    }
                    self.header[len] = b;
                    self.mode = Mode::Length { kind, len: len + 1, cr: b == b'\r' };
                }
            }
            Mode::Body { left } => match left {
                2 if b != b'\r' => return Err(Refused::Malformed),
                1 if b != b'\n' => return Err(Refused::Malformed),
                1 => self.value_done(),
                _ => self.mode = Mode::Body { left: left - 1 },
            },
        }
        Ok(())
    }

    /// A length line read: `n` after the type byte `kind`, as the parser reads each.
    fn length(&mut self, kind: u8, n: i64) -> Result<(), Refused> {
        match kind {
            // Blobs: a negative bulk string is nil; a negative blob error or verbatim string
            // would be read as one of 2^64 bytes.
            b'$' | b'!' | b'=' => {
                if n < 0 && kind != b'$' {
                    return Err(Refused::Malformed);
                }
                if n < 0 {
                    self.value_done();
                    return Ok(());
                }
                let body = usize::try_from(n).map_err(|_| Refused::TooLong)?;
                // Refused as soon as announced: the bytes need not arrive to be too many.
                if body > MAX_REPLY_LEN || self.taken + body + 2 > MAX_REPLY_LEN {
                    return Err(Refused::TooLong);
                }
                self.mode = Mode::Body { left: body + 2 };
                Ok(())
            }
            // Arrays and sets: negative is nil. Pushes: not positive is an empty push.
            b'*' | b'~' | b'>' => {
                let empty = if kind == b'>' { n <= 0 } else { n < 0 };
                if empty {
                    self.value_done();
                    return Ok(());
                }
                self.aggregate(n)
            }
            // Maps: n pairs; attributes: n pairs, then the value they describe. A negative
            // count fails the parser.
            b'%' | b'|' => {
                if n < 0 {
                    return Err(Refused::Malformed);
                }
                if n > MAX_ELEMENTS / 2 {
                    return Err(Refused::TooManyElements);
                }
                self.aggregate(if kind == b'%' { 2 * n } else { 2 * n + 1 })
            }
            _ => Err(Refused::Malformed),
        }
    }

    /// An aggregate of `n` (not negative) elements starts.
    fn aggregate(&mut self, n: i64) -> Result<(), Refused> {
        if n > MAX_ELEMENTS {
            return Err(Refused::TooManyElements);
        }
        if n == 0 {
            self.value_done();
            return Ok(());
        }
        if self.open.len() == MAX_DEPTH {
            return Err(Refused::TooDeep);
        }
        // Not negative, at most MAX_ELEMENTS.
        self.open.push(usize::try_from(n).unwrap_or(usize::MAX));
        self.mode = Mode::Type;
        Ok(())
    }

    /// A value ended: it was an element of the innermost open aggregate, or a whole reply.
    fn value_done(&mut self) {
        self.mode = Mode::Type;
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.open.pop();
        }
        self.taken = 0;
    }
}

/// A connection's byte stream, its reads framed by a [`ReplyBound`]: a read that takes a reply
/// past the bounds fails with `ConnectionAborted` (the `redis` crate then drops the connection)
/// and hands none of its bytes on.
pub(crate) struct Bounded<S> {
    inner: S,
    bound: ReplyBound,
}

impl<S> Bounded<S> {
    pub(crate) fn new(inner: S) -> Self {
        Bounded { inner, bound: ReplyBound::default() }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(refused) = this.bound.refused {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, refused)));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Err(refused) = this.bound.feed(&buf.filled()[before..]) {
            buf.set_filled(before);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, refused)));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply credflow can be sent (and what RESP3 adds), each fed whole, byte by byte
    /// and split at every point: all accepted, each ending where the parser's does.
    #[test]
    fn the_replies_credflow_gets_pass_however_they_are_split() {
        let token = format!("${}\r\n{}\r\n", MAX_VALUE_LEN + 1, "x".repeat(MAX_VALUE_LEN + 1));
        let hello = "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n\
                     $5\r\nproto\r\n:3\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
                     $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*1\r\n%4\r\n$4\r\nname\r\n\
                     $6\r\nsearch\r\n$3\r\nver\r\n:1\r\n$4\r\npath\r\n$1\r\n/\r\n$4\r\nargs\r\n\
                     *0\r\n";
        let replies: Vec<String> = vec![
            "+OK\r\n".into(),
            "*2\r\n:1\r\n:0\r\n".into(),
            "*4\r\n:1\r\n:250\r\n:0\r\n:-1\r\n".into(),
            ":1\r\n".into(),
            "$0\r\n\r\n".into(),
            "$-1\r\n".into(),
            "*-1\r\n".into(),
            "$40\r\n0123456789012345678901234567890123456789\r\n".into(),
            "-NOSCRIPT No matching script. Please use EVAL.\r\n".into(),
            "-ERR user_script:5: Script attempted to access a non local key\r\n".into(),
            token,
            hello.into(),
            "_\r\n".into(),
            ",1.5\r\n".into(),
            "#t\r\n".into(),
            "(12345678901234567890\r\n".into(),
            "!5\r\nERR x\r\n".into(),
            "=7\r\ntxt:abc\r\n".into(),
            ">3\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n:1\r\n".into(),
            ">0\r\n".into(),
            "|1\r\n+key\r\n+value\r\n:42\r\n".into(),
            "~2\r\n:1\r\n:2\r\n".into(),
            "%0\r\n".into(),
            // A line with a lone CR inside ends at its CRLF.
            "+a\rb\r\r\n".into(),
        ];
        for reply in &replies {
            let bytes = reply.as_bytes();
            // The `redis` crate's own parser takes it as one reply, and none of its prefixes.
            assert!(redis::parse_redis_value(bytes).is_ok(), "{reply:?}");
            for cut in 0..bytes.len().min(200) {
                assert!(redis::parse_redis_value(&bytes[..cut]).is_err(), "{reply:?} cut at {cut}");
            }
            let mut whole = ReplyBound::default();
            assert_eq!(whole.feed(bytes), Ok(()), "{reply:?}");
            assert!(whole.between_replies(), "{reply:?} ends where a reply ends");
            let mut bytewise = ReplyBound::default();
            for (i, b) in bytes.iter().enumerate() {
                assert_eq!(bytewise.feed(std::slice::from_ref(b)), Ok(()), "{reply:?}");
                // Nothing ends early: only the last byte closes the reply.
                assert_eq!(bytewise.between_replies(), i + 1 == bytes.len(), "{reply:?} at {i}");
            }
            for cut in 0..bytes.len().min(200) {
                let mut split = ReplyBound::default();
                assert_eq!(split.feed(&bytes[..cut]), Ok(()));
                assert_eq!(split.feed(&bytes[cut..]), Ok(()));
                assert!(split.between_replies(), "{reply:?} cut at {cut}");
            }
        }
        // Many replies back to back, as pipelined commands' answers arrive together: each is
        // counted on its own, so their sum may pass the bound.
        let all: String = replies.concat().repeat(16);
        assert!(all.len() > MAX_REPLY_LEN);
        let mut bound = ReplyBound::default();
        assert_eq!(bound.feed(all.as_bytes()), Ok(()));
        assert!(bound.between_replies());
    }

    /// A random RESP value within the bounds, `depth` levels below the top, written to `out`.
    fn random_value(rng: &mut u64, depth: usize, out: &mut Vec<u8>) {
        let mut next = |n: u64| {
            // xorshift64: deterministic, no dependency.
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng % n
        };
        // Bytes for lines: lone CRs and LFs included, never CRLF.
        let line = |next: &mut dyn FnMut(u64) -> u64| -> Vec<u8> {
            let len = next(12);
            let mut text: Vec<u8> =
                (0..len).map(|_| [b'a', b'\r', b'\n', b' ', b'z'][next(5) as usize]).collect();
            while text.windows(2).any(|w| w == b"\r\n") || text.last() == Some(&b'\r') {
                text.pop();
            }
            text
        };
        let aggregate = depth + 1 < MAX_DEPTH;
        let kind = next(if aggregate { 16 } else { 11 });
        match kind {
            0 => out.extend([b"+".as_slice(), &line(&mut next), b"\r\n"].concat()),
            1 => out.extend([b"-ERR ".as_slice(), &line(&mut next), b"\r\n"].concat()),
            2 => out.extend(format!(":{}\r\n", next(1 << 40) as i64 - (1 << 39)).bytes()),
            3 | 4 => {
                let body: Vec<u8> = (0..next(300))
                    .map(|_| [b'\r', b'\n', b'$', b'*', b'x'][next(5) as usize])
                    .collect();
                out.extend(format!("${}\r\n", body.len()).bytes());
                out.extend(body);
                out.extend(b"\r\n");
            }
            5 => out.extend(b"$-1\r\n"),
            6 => out.extend(b"_\r\n"),
            7 => out.extend(format!(",{}.5\r\n", next(1000)).bytes()),
            8 => out.extend(if next(2) == 0 { b"#t\r\n" } else { b"#f\r\n" }),
            9 => out.extend(format!("({}\r\n", next(u64::MAX)).bytes()),
            10 => {
                let text = format!("txt:{}", "v".repeat(next(20) as usize));
                out.extend(format!("={}\r\n{text}\r\n", text.len()).bytes());
            }
            11 | 12 => {
                let n = next(6);
                out.extend(format!("{}{n}\r\n", if kind == 11 { '*' } else { '~' }).bytes());
                for _ in 0..n {
                    random_value(rng, depth + 1, out);
                }
            }
            13 => {
                let n = next(4);
                out.extend(format!("%{n}\r\n").bytes());
                for _ in 0..2 * n {
                    random_value(rng, depth + 1, out);
                }
            }
            14 => {
                let n = next(3);
                out.extend(format!("|{n}\r\n").bytes());
                for _ in 0..2 * n + 1 {
                    random_value(rng, depth + 1, out);
                }
            }
            _ => {
                let n = next(4) + 1;
                out.extend(format!(">{n}\r\n$7\r\nmessage\r\n").bytes());
                for _ in 1..n {
                    random_value(rng, depth + 1, out);
                }
            }
        }
    }

    /// Random replies within the bounds, back to back, fed a byte at a time: a reply ends, as
    /// the framing sees it, exactly where the `redis` crate's parser ends it.
    #[test]
    fn the_framing_ends_each_random_reply_where_the_parser_does() {
        let mut rng = 0x9e37_79b9_7f4a_7c15;
        let mut bound = ReplyBound::default();
        for _ in 0..2000 {
            let mut reply = Vec::new();
            random_value(&mut rng, 0, &mut reply);
            // The parser takes the whole reply, and needs its last byte.
            let shown = String::from_utf8_lossy(&reply).into_owned();
            assert!(redis::parse_redis_value(&reply).is_ok(), "{shown:?}");
            assert!(redis::parse_redis_value(&reply[..reply.len() - 1]).is_err(), "{shown:?}");
            for (i, b) in reply.iter().enumerate() {
                assert_eq!(bound.feed(std::slice::from_ref(b)), Ok(()));
                let end = i + 1 == reply.len();
                assert_eq!(bound.between_replies(), end, "{shown:?} at {i}");
            }
        }
    }

    #[test]
    fn replies_past_the_bounds_are_refused() {
        let refused = |bytes: &[u8]| {
            let mut bound = ReplyBound::default();
            let first = bound.feed(bytes).err();
            // Refused for good: nothing after is taken.
            assert_eq!(bound.feed(b"+OK\r\n").err(), first.or(Some(Refused::Malformed)));
            first
        };
        // Announced lengths, refused at their line, before any of their bytes.
        assert_eq!(refused(b"$999999999\r\n"), Some(Refused::TooLong));
        assert_eq!(refused(b"$9223372036854775807\r\n"), Some(Refused::TooLong));
        assert_eq!(refused(format!("${}\r\n", MAX_REPLY_LEN).as_bytes()), Some(Refused::TooLong));
        assert_eq!(refused(b"*2\r\n:1\r\n$70000\r\n"), Some(Refused::TooLong));
        assert_eq!(refused(b"*999999999\r\n"), Some(Refused::TooManyElements));
        assert_eq!(refused(b"*257\r\n"), Some(Refused::TooManyElements));
        assert_eq!(refused(b"%129\r\n"), Some(Refused::TooManyElements));
        assert_eq!(refused(b"|128\r\n"), Some(Refused::TooManyElements));
        assert_eq!(refused(&b"*1\r\n".repeat(MAX_DEPTH + 1)), Some(Refused::TooDeep));
        // Sent lengths: a line, or elements within their count, past the bound.
        let endless_line = [b"+".as_slice(), &vec![b'a'; MAX_REPLY_LEN]].concat();
        assert_eq!(refused(&endless_line), Some(Refused::TooLong));
        let wide = b"*256\r\n$300\r\n";
        let mut bound = ReplyBound::default();
        assert_eq!(bound.feed(wide), Ok(()));
        let element = format!("{}\r\n$300\r\n", "y".repeat(300));
        let mut result = Ok(());
        for _ in 0..255 {
            result = bound.feed(element.as_bytes());
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Refused::TooLong));
        // What the parser would fail on too.
        for bad in
            [&b"?\r\n"[..], b"$abc\r\n", b"$-2x\r\n", b"!-1\r\n", b"%-1\r\n", b"$1\r\nab\r\n"]
        {
            assert_eq!(refused(bad), Some(Refused::Malformed), "{bad:?}");
            assert!(redis::parse_redis_value(bad).is_err(), "{bad:?}");
        }
        assert_eq!(refused(&[b'$'; 40]), Some(Refused::LongLengthLine));
        // Padded with whitespace, as the parser would still read it (it trims a length line):
        // not what Redis sends, refused by its length.
        let padded = [&b"$-1"[..], &[b'\n'; 40], b"\r\n"].concat();
        assert!(redis::parse_redis_value(&padded).is_ok());
        assert_eq!(refused(&padded), Some(Refused::LongLengthLine));
        // The biggest reply that fits, and one byte more.
        let fits = MAX_REPLY_LEN - "$65527\r\n".len() - 2;
        let mut bound = ReplyBound::default();
        let reply = format!("${fits}\r\n{}\r\n", "z".repeat(fits));
        assert_eq!(reply.len(), MAX_REPLY_LEN);
        assert_eq!(bound.feed(reply.as_bytes()), Ok(()));
        let over = format!("${}\r\n", fits + 1);
        assert_eq!(ReplyBound::default().feed(over.as_bytes()), Err(Refused::TooLong));
    }

    /// The stream wrapper hands on what is within the bound, and fails the read that passes
    /// it, as a connection aborted, handing none of its bytes on, then every read after.
    #[tokio::test]
    async fn the_wrapper_fails_the_read_that_passes_the_bound() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut peer, ours) = tokio::io::duplex(1 << 20);
        let mut ours = Bounded::new(ours);
        peer.write_all(b"*2\r\n:1\r\n:0\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = ours.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"*2\r\n:1\r\n:0\r\n");
        ours.write_all(b"PING\r\n").await.unwrap();
        let mut echoed = [0u8; 6];
        peer.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"PING\r\n");
        peer.write_all(b"+OK\r\n$1000000000\r\nxxxx").await.unwrap();
        let e = ours.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        assert!(e.to_string().contains("64 KiB"), "{e}");
        // The redis crate reads an aborted connection as dropped: it replaces it.
        assert!(redis::RedisError::from(io::Error::new(e.kind(), "x")).is_unrecoverable_error());
        peer.write_all(b"+OK\r\n").await.unwrap();
        let again = ours.read(&mut buf).await.unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::ConnectionAborted);
    }
}
