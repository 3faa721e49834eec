//! HTTP/1.1 on the wire (RFC 9112), client side, into caller-owned buffers.
//!
//! - [`RequestHead`] writes a request head: request line (§3), `Host` (RFC 9110 §7.2),
//!   `Authorization: Bearer` (RFC 6750 §2.1), `Content-Length` (RFC 9110 §8.6),
//!   `Connection: keep-alive`, then the caller's header fields, each checked for CR, LF and NUL
//!   so nothing the caller passes can split the request.
//! - [`read_response`] reads one response: the head with `httparse` (1xx interim responses
//!   skipped, RFC 9110 §15.2), then the body framed as RFC 9112 §6.3 says: none for `HEAD`,
//!   1xx, 204 and 304; chunked when the last transfer coding is `chunked` (§7.1, decoded in place
//!   by `Dechunker`, trailers discarded); `Content-Length` otherwise (conflicting values are
//!   refused); else until the server closes the connection.
//! - [`ResponseHeaders`] answers header look-ups over the validated head bytes, case-insensitively.
//!
//! Every count the server sends is checked: a body or head that does not fit the caller's
//! buffer is an error that says how much room was needed, never a panic or an overflow. A
//! non-2xx body that does not fit is cut to the buffer instead (the core classifies errors from
//! their first bytes; the truncation is reported) and the connection is not reused.

// The request writer and the response reader are `pub` for the fuzz targets (see the crate
// root); the module is private otherwise.
#![cfg_attr(not(feature = "__fuzzing"), allow(unreachable_pub))]

use core::fmt;

use credflow_core::http::Headers;
use embedded_io_async::{ErrorKind, Read, Write};

use crate::error::HttpError;

/// Header fields `httparse` may see in one response head; more is [`HttpError::TooManyHeaders`].
pub const MAX_HEADERS: usize = 32;

/// Most interim (1xx) responses read before the final one (`100 Continue`, `103 Early Hints`):
/// one more is [`HttpError::TooManyInterim`]. Without a bound, a server streaming interim heads
/// over a connection that always has bytes ready would keep a read from ever reaching its
/// deadline.
pub const MAX_INTERIM: u8 = 8;

/// The most bytes of chunk extensions and trailer fields a chunked response may carry, in all
/// (credflow reads neither): past it the response is refused, [`HttpError::InvalidChunk`].
pub const MAX_SKIPPED: usize = 4096;

/// Field names the adapter writes itself and callers may not pass.
const RESERVED: [&str; 5] =
    ["host", "authorization", "content-length", "transfer-encoding", "connection"];

/// A request head being written into a buffer; keeps counting past the end so a too-small
/// buffer can be reported with the exact size needed.
pub(crate) struct HeadWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> HeadWriter<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        HeadWriter { buf, len: 0 }
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
        }
        self.len = end;
    }

    pub(crate) fn put_decimal(&mut self, value: usize) {
        let value = u64::try_from(value).unwrap_or(u64::MAX);
        self.put(credflow_core::http::Decimal::new(value).as_bytes());
    }

    pub(crate) fn field(&mut self, name: &str, value: &[u8]) {
        self.put(name.as_bytes());
        self.put(b": ");
        self.put(value);
        self.put(b"\r\n");
    }

    /// The length written, or the length needed when the buffer was too small.
    pub(crate) fn finish(self) -> Result<usize, usize> {
        if self.len <= self.buf.len() { Ok(self.len) } else { Err(self.len) }
    }
}

/// What goes into an API request head, besides what the adapter adds.
pub struct RequestHead<'a> {
    /// The method, as sent.
    pub method: &'a str,
    /// The origin-form path (checked by [`validate`]).
    pub path: &'a str,
    /// `Host` value: host, `:port` when not the default.
    pub host: &'a str,
    /// The host is an IPv6 literal: bracket it.
    pub bracket: bool,
    /// The port, when not the scheme's default.
    pub port: Option<u16>,
    /// The access token.
    pub bearer: &'a str,
    /// The `User-Agent` value.
    pub user_agent: &'a str,
    /// The caller's header fields (checked by [`validate`]).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body's length, when the request has one.
    pub body_len: Option<usize>,
}

/// Checks the parts of a request head a caller supplies: an origin-form `path` (RFC 9112
/// §3.2.1) and `headers` whose names are tokens and values without CR, LF, NUL or other
/// controls but tab. (The parts alone: no [`RequestHead`] is built to check them.)
pub fn validate(path: &str, headers: &[(&str, &str)]) -> Result<(), HttpError> {
    let path = path.as_bytes();
    let path_ok = path.first() == Some(&b'/') && path.iter().all(u8::is_ascii_graphic);
    if !path_ok {
        return Err(HttpError::InvalidPath);
    }
    for (name, value) in headers {
        let name_ok = !name.is_empty() && name.bytes().all(is_tchar);
        let value_ok = value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if !name_ok || !value_ok {
            return Err(HttpError::InvalidHeader);
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(HttpError::ReservedHeader);
        }
    }
    Ok(())
}

impl RequestHead<'_> {
    /// Writes the head into `out`: its length, or the length needed.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, usize> {
        let mut w = HeadWriter::new(out);
        w.put(self.method.as_bytes());
        w.put(b" ");
        w.put(self.path.as_bytes());
        w.put(b" HTTP/1.1\r\nHost: ");
        if self.bracket {
            w.put(b"[");
        }
        w.put(self.host.as_bytes());
        if self.bracket {
            w.put(b"]");
        }
        if let Some(port) = self.port {
            w.put(b":");
            w.put_decimal(usize::from(port));
        }
        // Fixed text in as few pieces as it takes: each `put` is a call.
        w.put(b"\r\nAuthorization: Bearer ");
        w.put(self.bearer.as_bytes());
        w.put(b"\r\nUser-Agent: ");
        w.put(self.user_agent.as_bytes());
        w.put(b"\r\n");
        if !self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("accept")) {
            w.put(b"Accept: application/json\r\n");
        }
        if let Some(len) = self.body_len {
            w.put(b"Content-Length: ");
            w.put_decimal(len);
            w.put(b"\r\n");
        }
        w.put(b"Connection: keep-alive\r\n");
        for (name, value) in self.headers {
            w.field(name, value.as_bytes());
        }
        w.put(b"\r\n");
        w.finish()
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(usize),
    /// Chunked transfer coding.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// One response read into the caller's buffer: the head at `[..head_len]`, the decoded body
/// right after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The final status code (interim 1xx responses skipped).
    pub status: u16,
    /// The length of the head, at the start of the buffer.
    pub head_len: usize,
    /// The length of the decoded body, right after the head.
    pub body_len: usize,
    /// The body was cut to fit the buffer (non-2xx answers only).
    pub truncated: bool,
    /// The connection can carry the next request.
    pub reusable: bool,
}

impl Received {
    /// The head's fields and the body, in the buffer the response was read into.
    pub fn parts<'b>(&self, buf: &'b [u8]) -> (ResponseHeaders<'b>, &'b [u8]) {
        let (head, rest) = buf.split_at_checked(self.head_len).unwrap_or_default();
        (ResponseHeaders::new(head), rest.get(..self.body_len).unwrap_or_default())
    }
}

/// Why a response could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection failed.
    Io(ErrorKind),
    /// The server closed the connection; `idle`: before sending a single byte (a kept-alive
    /// connection it had already given up on).
    Closed { idle: bool },
    /// The response is not valid HTTP/1.1.
    Http(HttpError),
    /// The head does not fit the buffer.
    HeadTooLarge,
    /// A 2xx body does not fit: the whole response needs `needed` bytes (when known).
    BodyTooLarge { status: u16, head_len: usize, needed: Option<usize> },
}

/// What [`read_response`] is reading.
enum Phase {
    /// The head (interim 1xx responses are skipped).
    Head,
    /// A body of exactly `len` bytes, of which the first `want` fit the buffer.
    Length { len: usize, want: usize },
    /// A body that ends when the server closes the connection.
    UntilClose,
    /// A chunked body: `raw` is the next undecoded byte, `out` the end of the decoded body
    /// (`out <= raw <= have`), both relative to the body's start.
    Chunked { dechunker: Dechunker, raw: usize, out: usize },
}

/// Reads one response from `conn` into `buf`. `head_request`: the request was `HEAD`, so the
/// response has no body whatever its headers say.
///
/// One loop with one read for every phase (head, then the body by its framing): each `.await`
/// in an `async fn` is code in its state machine, for every transport it is built with.
pub async fn read_response<R: Read>(
    conn: &mut R,
    buf: &mut [u8],
    head_request: bool,
) -> Result<Received, ReadError> {
    let mut filled = 0usize;
    let mut received_any = false;
    let mut phase = Phase::Head;
    let mut interim = 0u8;
    // Set with the head: status, head length, keep-alive.
    let (mut status, mut head_len, mut keep_alive) = (0u16, 0usize, false);
    loop {
        let have = filled.saturating_sub(head_len);
        // A 2xx: a body that does not fit is an error, not cut.
        let success = (200..300).contains(&status);
        // (Copies of the head's values: the head phase sets them and uses neither.)
        let done = move |body_len, truncated, reusable| {
            Ok(Received { status, head_len, body_len, truncated, reusable })
        };
        let too_large = move |needed| Err(ReadError::BodyTooLarge { status, head_len, needed });
        // Make progress on what is buffered; then `start` is where the next read goes, and
        // `end` how far it may fill.
        let (start, end) = match &mut phase {
            Phase::Head => match parse_head(buf.get(..filled).unwrap_or_default(), head_request)? {
                Some((code, len, _, _)) if (100..200).contains(&code) && code != 101 => {
                    interim = interim.saturating_add(1);
                    if interim > MAX_INTERIM {
                        return Err(ReadError::Http(HttpError::TooManyInterim));
                    }
                    move_down(buf, len..filled, 0);
                    filled = filled.saturating_sub(len);
                    continue;
                }
                Some((code, len, framing, alive)) => {
                    (status, head_len, keep_alive) = (code, len, alive);
                    let room = buf.len().saturating_sub(len);
                    let Some(body) = body_phase(framing, status, head_len, room)? else {
                        let reusable = keep_alive && filled == len;
                        let (body_len, truncated) = (0, false);
                        return Ok(Received { status, head_len, body_len, truncated, reusable });
                    };
                    phase = body;
                    continue;
                }
                None if filled < buf.len() => (filled, buf.len()),
                None => return Err(ReadError::HeadTooLarge),
            },
            Phase::Length { len, want } => {
                let (len, want) = (*len, *want);
                if have >= want {
                    return done(want, want < len, keep_alive && want == len && have == len);
                }
                (filled, head_len.saturating_add(want))
            }
            Phase::UntilClose if filled < buf.len() => (filled, buf.len()),
            Phase::UntilClose if success => return too_large(None),
            Phase::UntilClose => return done(have, true, false),
            Phase::Chunked { dechunker, raw, out } => {
                let body = buf.get_mut(head_len..).unwrap_or_default();
                let Some(kept) = dechunk(body, dechunker, raw, out, have)? else {
                    return done(*out, false, keep_alive && *raw == have);
                };
                filled = head_len.saturating_add(kept);
                if filled >= buf.len() {
                    if success {
                        return too_large(None);
                    }
                    return done(*out, true, false);
                }
                (filled, buf.len())
            }
        };
        let room = buf.get_mut(start..end).unwrap_or_default();
        // What the end of the stream and an error mean depends on the phase.
        let n = match conn.read(room).await {
            Ok(0) if matches!(phase, Phase::UntilClose) => return done(have, false, false),
            Ok(n) if n > 0 => n,
            read => {
                let error = read.err().map(|e| embedded_io_async::Error::kind(&e));
                return Err(read_failure(error, &phase, received_any));
            }
        };
        received_any = true;
        filled = filled.saturating_add(n);
    }
}

/// How the body after a head with `status` (`head_len` bytes) is read, given `room` bytes
/// for it. `None`: there is no body.
fn body_phase(
    framing: Framing,
    status: u16,
    head_len: usize,
    room: usize,
) -> Result<Option<Phase>, ReadError> {
    Ok(Some(match framing {
        Framing::Empty => return Ok(None),
        Framing::Length(body) if body > room && (200..300).contains(&status) => {
            let needed = head_len.checked_add(body);
            return Err(ReadError::BodyTooLarge { status, head_len, needed });
        }
        Framing::Length(body) => Phase::Length { len: body, want: body.min(room) },
        Framing::UntilClose => Phase::UntilClose,
        Framing::Chunked => Phase::Chunked { dechunker: Dechunker::new(), raw: 0, out: 0 },
    }))
}

/// Decodes what is buffered of a chunked body (`body[..have]`, see [`Phase::Chunked`]) and,
/// when the buffer is full, moves the decoded bytes' tail down over spent chunk framing.
/// `None`: the body is complete; else how many bytes of `body` are still in use.
fn dechunk(
    body: &mut [u8],
    dechunker: &mut Dechunker,
    raw: &mut usize,
    out: &mut usize,
    mut have: usize,
) -> Result<Option<usize>, ReadError> {
    if dechunker.decode(body, raw, have, out).map_err(ReadError::Http)? {
        return Ok(None);
    }
    if *raw == have {
        (*raw, have) = (*out, *out);
    } else if have == body.len() && *raw > *out {
        move_down(body, *raw..have, *out);
        have = have.saturating_sub(raw.saturating_sub(*out));
        *raw = *out;
    }
    Ok(Some(have))
}

/// What the end of the stream (`error` `None`) or a failed read means while reading `phase`.
fn read_failure(error: Option<ErrorKind>, phase: &Phase, received_any: bool) -> ReadError {
    // Before any byte of the response, the server had already given up on the connection.
    let idle = matches!(phase, Phase::Head) && !received_any;
    match error {
        None => ReadError::Closed { idle },
        // A reset before the first byte is such a connection too; running out of memory (a
        // TLS record larger than the connection's record buffer) is not, and a new connection
        // would not fix it.
        Some(kind) if idle && kind != ErrorKind::OutOfMemory => ReadError::Closed { idle: true },
        Some(kind) => ReadError::Io(kind),
    }
}

type ParsedHead = (u16, usize, Framing, bool);

/// Parses a complete head: status, head length, body framing, keep-alive. `None`: incomplete.
fn parse_head(bytes: &[u8], head_request: bool) -> Result<Option<ParsedHead>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Http(HttpError::TooManyHeaders));
        }
        Err(_) => return Err(ReadError::Http(HttpError::MalformedHead)),
    };
    let status = response.code.unwrap_or(0);
    let mut keep_alive = response.version == Some(1);
    let mut chunked = None;
    let mut length: Option<usize> = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(trim(last).eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            // A list of identical values is one value (RFC 9110 §8.6).
            for item in header.value.split(|&b| b == b',') {
                let value = parse_length(trim(item))
                    .ok_or(ReadError::Http(HttpError::InvalidContentLength))?;
                if length.is_some_and(|l| l != value) {
                    return Err(ReadError::Http(HttpError::InvalidContentLength));
                }
                length = Some(value);
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && response.version == Some(0) {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(len)) => Framing::Length(len),
            (None, None) => Framing::UntilClose,
        }
    };
    // A body delimited by both: the sender may be smuggling; do not reuse (RFC 9112 §6.3).
    if chunked.is_some() && length.is_some() {
        keep_alive = false;
    }
    Ok(Some((status, head_len, framing, keep_alive)))
}

/// Moves `buf[from]` down to start at `to` (`to <= from.start`: the bytes go towards the
/// front, so copying front to back is overlap-safe). A byte loop rather than
/// `<[u8]>::copy_within`, which links `memmove` (large Cortex-M code) for the few short
/// moves a response needs (an interim head, chunk framing). Out-of-range bytes are skipped.
fn move_down(buf: &mut [u8], from: core::ops::Range<usize>, to: usize) {
    let mut dst = to;
    for src in from {
        let Some(&byte) = buf.get(src) else { break };
        if let Some(slot) = buf.get_mut(dst) {
            *slot = byte;
        }
        dst = dst.saturating_add(1);
    }
}

fn parse_length(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &b| {
        let d = b.is_ascii_digit().then(|| usize::from(b.wrapping_sub(b'0')))?;
        acc.checked_mul(10)?.checked_add(d)
    })
}

/// A value or list item without the optional whitespace around it (RFC 9110 §5.6.3: spaces
/// and tabs). `trim_ascii` also strips CR, LF and form feed, which cannot occur here: every
/// value comes from a head `httparse` accepted, whose values hold no controls but tab (a line's
/// CR is stripped with it); and the core links `trim_ascii` already. Always inlined, so the
/// callers call that one copy (out of line, this function became a second copy of it).
#[inline(always)]
fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// The value of hexadecimal digit `b` (RFC 9112 §7.1 chunk sizes).
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b.wrapping_sub(b'0')),
        b'a'..=b'f' | b'A'..=b'F' => Some((b | 0x20).wrapping_sub(b'a' - 10)),
        _ => None,
    }
}

/// Where the chunked decoder is in the coding (RFC 9112 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a chunk size; `digits` so far.
    Size { digits: u8 },
    /// Skipping a chunk extension up to the line end.
    Extension,
    /// Expecting the LF that ends a size line.
    SizeLf,
    /// Copying chunk data; bytes left in the chunk (saturated at `usize::MAX`: larger than
    /// any buffer, so such a chunk overflows the buffer exactly as its true size would).
    Data(usize),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// In the trailer section; `line_start`: nothing read on the current line yet.
    Trailer { line_start: bool },
    /// Expecting the LF of the final empty line.
    TrailerLf,
    /// The last chunk and trailers were read.
    Done,
}

/// Decodes the chunked transfer coding in place: decoded data is moved down over the framing,
/// so the body needs no second buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dechunker {
    state: Chunk,
    size: usize,
    /// Bytes of chunk extensions and trailer fields read so far (see [`MAX_SKIPPED`]).
    skipped: usize,
}

impl Dechunker {
    pub(crate) fn new() -> Self {
        Dechunker { state: Chunk::Size { digits: 0 }, size: 0, skipped: 0 }
    }

    /// Consumes `buf[*raw..filled]`, appending decoded data at `buf[*out..]` (`*out <= *raw`).
    /// Returns whether the body is complete.
    pub(crate) fn decode(
        &mut self,
        buf: &mut [u8],
        raw: &mut usize,
        filled: usize,
        out: &mut usize,
    ) -> Result<bool, HttpError> {
        while *raw < filled {
            if let Chunk::Data(left) = self.state {
                let avail = filled.saturating_sub(*raw);
                let n = left.min(avail);
                let end = raw.saturating_add(n);
                move_down(buf, *raw..end, *out);
                *raw = end;
                *out = out.saturating_add(n);
                let left = left.saturating_sub(n);
                self.state = if left == 0 { Chunk::DataCr } else { Chunk::Data(left) };
                continue;
            }
            let b = *buf.get(*raw).ok_or(HttpError::InvalidChunk)?;
            *raw = raw.saturating_add(1);
            self.state = self.step(b)?;
            if self.state == Chunk::Done {
                return Ok(true);
            }
        }
        Ok(self.state == Chunk::Done)
    }

    fn step(&mut self, b: u8) -> Result<Chunk, HttpError> {
        // Chunk extensions and trailer fields are read and dropped: they fill no buffer, so a
        // server sending them without end, over a connection that always has bytes ready,
        // would keep a read from ever reaching its deadline.
        if matches!(self.state, Chunk::Extension | Chunk::Trailer { .. }) {
            self.skipped = self.skipped.saturating_add(1);
            if self.skipped > MAX_SKIPPED {
                return Err(HttpError::InvalidChunk);
            }
        }
        let end_of_size_line = |size: usize| {
            if size == 0 { Chunk::Trailer { line_start: true } } else { Chunk::Data(size) }
        };
        Ok(match self.state {
            Chunk::Size { digits } => match hex_digit(b) {
                Some(d) => {
                    // More than 16 hex digits (a `u64`) is refused; a size past `usize::MAX`
                    // saturates (native-width arithmetic: 64-bit is costly on 32-bit cores).
                    if digits >= 16 {
                        return Err(HttpError::InvalidChunk);
                    }
                    self.size = self.size.saturating_mul(16).saturating_add(usize::from(d));
                    Chunk::Size { digits: digits.saturating_add(1) }
                }
                None => match b {
                    _ if digits == 0 => return Err(HttpError::InvalidChunk),
                    b';' | b' ' | b'\t' => Chunk::Extension,
                    b'\r' => Chunk::SizeLf,
                    b'\n' => end_of_size_line(core::mem::take(&mut self.size)),
                    _ => return Err(HttpError::InvalidChunk),
                },
            },
            Chunk::Extension => match b {
                b'\r' => Chunk::SizeLf,
                b'\n' => end_of_size_line(core::mem::take(&mut self.size)),
                _ => Chunk::Extension,
            },
            Chunk::SizeLf => match b {
                b'\n' => end_of_size_line(core::mem::take(&mut self.size)),
                _ => return Err(HttpError::InvalidChunk),
            },
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                b'\n' => Chunk::Size { digits: 0 },
                _ => return Err(HttpError::InvalidChunk),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size { digits: 0 },
                _ => return Err(HttpError::InvalidChunk),
            },
            Chunk::Trailer { line_start } => match (b, line_start) {
                (b'\r', true) => Chunk::TrailerLf,
                (b'\n', true) => Chunk::Done,
                (b'\n', false) => Chunk::Trailer { line_start: true },
                _ => Chunk::Trailer { line_start: false },
            },
            Chunk::TrailerLf => match b {
                b'\n' => Chunk::Done,
                _ => return Err(HttpError::InvalidChunk),
            },
            // Data is handled by the caller; bytes after the end are not ours.
            Chunk::Data(_) | Chunk::Done => self.state,
        })
    }
}

/// The header fields of a response, over the head bytes `read_response` validated.
///
/// Implements the core's [`Headers`]: names match case-insensitively, values come without
/// surrounding whitespace, the first field of a name wins.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeaders<'b> {
    head: &'b [u8],
}

impl<'b> ResponseHeaders<'b> {
    pub(crate) fn new(head: &'b [u8]) -> Self {
        ResponseHeaders { head }
    }

    /// Every field, in order: name and value (without surrounding whitespace).
    pub fn iter(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + use<'b> {
        self.fields().filter_map(|(name, value)| Some((core::str::from_utf8(name).ok()?, value)))
    }

    /// Every field as bytes. (`httparse` accepted the head: names are ASCII tokens.)
    fn fields(&self) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + use<'b> {
        let mut lines = self.head.split(|&b| b == b'\n');
        // The status line: the first that is not empty (`httparse` skips empty lines before
        // it, and a colon in its reason phrase must not make it a field).
        let _status = lines.find(|line| !matches!(line, [] | [b'\r']));
        lines.filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at_checked(colon)?;
            Some((name, trim(value.get(1..)?)))
        })
    }
}

impl Headers for ResponseHeaders<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        // Bytes, not `str`: a name that is not UTF-8 cannot equal `name` anyway.
        self.fields().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }
}

impl fmt::Debug for ResponseHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: values may carry cookies or tokens.
        f.debug_list().entries(self.iter().map(|(n, _)| n)).finish()
    }
}

/// Writes all of `bytes`; a connection that accepts nothing is an error, not a panic.
pub async fn write_all<W: Write>(conn: &mut W, mut bytes: &[u8]) -> Result<(), ErrorKind> {
    while !bytes.is_empty() {
        match conn.write(bytes).await {
            Ok(0) => return Err(ErrorKind::WriteZero),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) => return Err(embedded_io_async::Error::kind(&e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// `move_down` is `copy_within` for moves towards the front, overlapping or not, and
    /// skips what lies out of range instead of panicking.
    #[test]
    fn move_down_matches_copy_within() {
        for len in 0..8usize {
            for start in 0..=len {
                for end in start..=len {
                    for to in 0..=start {
                        let mut ours: Vec<u8> = (0..len as u8).collect();
                        let mut theirs = ours.clone();
                        move_down(&mut ours, start..end, to);
                        theirs.copy_within(start..end, to);
                        assert_eq!(ours, theirs, "{start}..{end} -> {to} in {len}");
                    }
                }
            }
        }
        let mut short = [1u8, 2, 3];
        move_down(&mut short, 1..9, 0);
        assert_eq!(short, [2, 3, 3]);
        move_down(&mut short, 0..3, 2);
        assert_eq!(short, [2, 3, 2]);
    }

    /// A connection that replays `chunks` (one per read, split further by the reader's room).
    struct Script {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl embedded_io_async::ErrorType for Script {
        type Error = ErrorKind;
    }

    impl Read for Script {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn read(raw: &[u8], step: usize, cap: usize) -> (Result<Received, ReadError>, Vec<u8>) {
        let mut conn = Script { data: raw.to_vec(), pos: 0, step };
        let mut buf = std::vec![0u8; cap];
        let result = block_on(read_response(&mut conn, &mut buf, false));
        (result, buf)
    }

    fn block_on<F: core::future::Future>(f: F) -> F::Output {
        let mut f = core::pin::pin!(f);
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        loop {
            if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    fn body<'a>(r: &Received, buf: &'a [u8]) -> &'a [u8] {
        &buf[r.head_len..r.head_len + r.body_len]
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";

    /// A connection is reused only when the response ended exactly where its framing says:
    /// bytes past the end (a stray or pipelined answer) make it unusable, whatever the read size.
    #[test]
    fn a_connection_is_reusable_only_after_an_exact_end() {
        for step in [1, 3, 64] {
            let exact = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            let r = read(exact, step, 256).0.unwrap();
            assert!(r.reusable && r.body_len == 2, "step {step}");
            let extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
            assert!(!read(extra, 64, 256).0.unwrap().reusable);
            let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
            let r = read(empty, step, 256).0.unwrap();
            assert!(r.reusable && r.body_len == 0 && r.status == 204, "step {step}");
            let empty_extra = b"HTTP/1.1 204 No Content\r\n\r\nX";
            assert!(!read(empty_extra, 64, 256).0.unwrap().reusable);
            let mut chunked_extra = CHUNKED.to_vec();
            chunked_extra.extend_from_slice(b"HTTP");
            assert!(!read(&chunked_extra, 64, 256).0.unwrap().reusable);
            // Closed mid-body: a reset, never an idle close.
            let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok";
            assert_eq!(read(cut, step, 256).0, Err(ReadError::Closed { idle: false }));
        }
    }

    #[test]
    fn chunked_body_is_decoded_at_any_read_size() {
        for step in 1..CHUNKED.len() {
            let (r, buf) = read(CHUNKED, step, 256);
            let r = r.unwrap();
            assert_eq!(body(&r, &buf), b"Wikipedia in\r\n\r\nchunks.", "step {step}");
            assert!(r.reusable && !r.truncated);
        }
    }

    #[test]
    fn chunked_body_compacts_when_the_buffer_is_tight() {
        // Head 47 bytes, decoded body 23: the framing needs compaction to fit in 80.
        let (r, buf) = read(CHUNKED, 7, 80);
        let r = r.unwrap();
        assert_eq!(body(&r, &buf), b"Wikipedia in\r\n\r\nchunks.");
    }

    #[test]
    fn chunked_body_larger_than_the_buffer_is_a_typed_error() {
        let (r, _) = read(CHUNKED, 64, 60);
        assert!(matches!(r, Err(ReadError::BodyTooLarge { status: 200, needed: None, .. })));
    }

    #[test]
    fn hex_digits_are_exactly_the_sixteen_and_their_capitals() {
        for b in 0..=u8::MAX {
            let expected = char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
            assert_eq!(hex_digit(b), expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn the_largest_chunk_size_is_sixteen_hex_digits() {
        let mut d = Dechunker::new();
        for &b in b"FFFFFFFFFFFFFFFF\r" {
            assert!(d.step(b).is_ok_and(|next| {
                d.state = next;
                true
            }));
        }
        assert_eq!(d.step(b'\n'), Ok(Chunk::Data(usize::MAX)));
        let mut d = Dechunker::new();
        d.state = Chunk::Size { digits: 16 };
        assert_eq!(d.step(b'0'), Err(HttpError::InvalidChunk));
    }

    /// A chunk larger than any buffer (a size that saturates on a 32-bit target) overflows the
    /// buffer: a 2xx is refused as too large, an error body is cut.
    #[test]
    fn a_huge_chunk_overflows_the_buffer() {
        let ok = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n";
        let ok = [&ok[..], &[b'x'; 64]].concat();
        let (r, _) = read(&ok, 100, 80);
        assert!(matches!(r, Err(ReadError::BodyTooLarge { status: 200, needed: None, .. })));
        let err = b"HTTP/1.1 500 No\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n";
        let err = [&err[..], &[b'x'; 64]].concat();
        let (r, _) = read(&err, 100, 80);
        let r = r.unwrap();
        assert!(r.truncated && !r.reusable && r.body_len > 0);
    }

    #[test]
    fn hostile_chunk_sizes_are_refused() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX",
        ] {
            let (r, _) = read(bad, 100, 256);
            assert_eq!(r, Err(ReadError::Http(HttpError::InvalidChunk)));
        }
    }

    #[test]
    fn content_length_body_exactly_fits_and_one_more_does_not() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let head = raw.len() - 5;
        let (r, buf) = read(raw, 3, head + 5);
        assert_eq!(body(&r.unwrap(), &buf), b"hello");
        let (r, _) = read(raw, 3, head + 4);
        assert_eq!(
            r,
            Err(ReadError::BodyTooLarge { status: 200, head_len: head, needed: Some(head + 5) })
        );
    }

    #[test]
    fn error_bodies_are_truncated_not_refused() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\n0123456789";
        let head = raw.len() - 10;
        let (r, buf) = read(raw, 100, head + 4);
        let r = r.unwrap();
        assert_eq!((body(&r, &buf), r.truncated, r.reusable), (&b"0123"[..], true, false));
    }

    #[test]
    fn conflicting_content_lengths_are_refused_and_lists_of_one_value_accepted() {
        let (r, _) =
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 9, 99);
        assert_eq!(r, Err(ReadError::Http(HttpError::InvalidContentLength)));
        let (r, buf) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nab", 9, 99);
        assert_eq!(body(&r.unwrap(), &buf), b"ab");
        let (r, _) =
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", 9, 99);
        assert_eq!(r, Err(ReadError::Http(HttpError::InvalidContentLength)));
    }

    #[test]
    fn until_close_bodies_and_connection_close() {
        let (r, buf) = read(b"HTTP/1.0 200 OK\r\n\r\nall of it", 4, 99);
        let r = r.unwrap();
        assert_eq!((body(&r, &buf), r.reusable), (&b"all of it"[..], false));
        let (r, _) = read(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", 4, 99);
        assert!(!r.unwrap().reusable);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (r, buf) = read(raw, 5, 99);
        let r = r.unwrap();
        assert_eq!((r.status, body(&r, &buf)), (200, &b"ok"[..]));
    }

    /// A few interim responses are skipped; one more than `MAX_INTERIM` ends the read (a
    /// server streaming them would otherwise hold it as long as it keeps sending).
    #[test]
    fn interim_responses_are_bounded() {
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        let last = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let raw = |n: u8| [interim.repeat(usize::from(n)), last.to_vec()].concat();
        let (r, buf) = read(&raw(MAX_INTERIM), 7, 99);
        let r = r.unwrap();
        assert_eq!((r.status, body(&r, &buf)), (200, &b"ok"[..]));
        let (r, _) = read(&raw(MAX_INTERIM + 1), 7, 99);
        assert_eq!(r, Err(ReadError::Http(HttpError::TooManyInterim)));
    }

    /// Chunk extensions and trailer fields, dropped as they are read, are bounded in all: a
    /// server sending them without end would otherwise hold a read as long as it keeps sending.
    #[test]
    fn chunk_extensions_and_trailers_are_bounded() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let with = |extension: usize, trailer: usize| {
            let size_line = std::format!("2;{}\r\n", "x".repeat(extension));
            let trailer = std::format!("T: {}\r\n", "y".repeat(trailer));
            [&head[..], size_line.as_bytes(), b"ok\r\n0\r\n", trailer.as_bytes(), b"\r\n"].concat()
        };
        let (r, buf) = read(&with(100, 100), 7, 64);
        let r = r.unwrap();
        assert_eq!((r.status, body(&r, &buf)), (200, &b"ok"[..]));
        let (r, _) = read(&with(MAX_SKIPPED, 0), 7, 64);
        assert_eq!(r, Err(ReadError::Http(HttpError::InvalidChunk)), "an endless extension");
        let (r, _) = read(&with(0, MAX_SKIPPED), 7, 64);
        assert_eq!(r, Err(ReadError::Http(HttpError::InvalidChunk)), "endless trailers");
    }

    #[test]
    fn a_closed_idle_connection_is_told_apart_from_a_reset() {
        assert_eq!(read(b"", 5, 99).0, Err(ReadError::Closed { idle: true }));
        assert_eq!(read(b"HTTP/1.1 2", 5, 99).0, Err(ReadError::Closed { idle: false }));
        let (r, _) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 5, 99);
        assert_eq!(r, Err(ReadError::Closed { idle: false }));
    }

    /// A connection whose first read fails with `kind`.
    struct Failing(ErrorKind);

    impl embedded_io_async::ErrorType for Failing {
        type Error = ErrorKind;
    }

    impl Read for Failing {
        async fn read(&mut self, _: &mut [u8]) -> Result<usize, ErrorKind> {
            Err(self.0)
        }
    }

    #[test]
    fn a_connection_out_of_memory_is_not_taken_for_a_closed_idle_one() {
        let mut buf = [0u8; 64];
        let reset =
            block_on(read_response(&mut Failing(ErrorKind::ConnectionReset), &mut buf, false));
        assert_eq!(reset, Err(ReadError::Closed { idle: true }));
        let oom = block_on(read_response(&mut Failing(ErrorKind::OutOfMemory), &mut buf, false));
        assert_eq!(oom, Err(ReadError::Io(ErrorKind::OutOfMemory)));
    }

    #[test]
    fn a_head_larger_than_the_buffer_is_a_typed_error() {
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaa\r\n\r\n", 5, 20).0,
            Err(ReadError::HeadTooLarge)
        );
    }

    #[test]
    fn headers_are_found_case_insensitively_and_trimmed() {
        let head = b"HTTP/1.1 429 Too Many\r\nRetry-After:  3 \r\ninin-ratelimit-count: 7\r\n\r\n";
        let h = ResponseHeaders::new(head);
        assert_eq!(h.get("retry-after"), Some(&b"3"[..]));
        assert_eq!(h.get("ININ-RateLimit-Count"), Some(&b"7"[..]));
        assert_eq!(h.get("date"), None);
    }

    /// httparse skips empty lines before the status line; the field list must too, or a status
    /// line with a colon in it reads as a field (found by the `wire` fuzz target).
    #[test]
    fn empty_lines_before_the_status_line_are_not_fields() {
        let raw = b"\r\n\nHTTP/1.1 200 Note: this\r\nA: 1\r\nContent-Length: 0\r\n\r\n";
        let (r, buf) = read(raw, 4, 99);
        let (headers, _) = r.unwrap().parts(&buf);
        let fields: Vec<_> = headers.iter().collect();
        assert_eq!(fields, [("A", &b"1"[..]), ("Content-Length", &b"0"[..])]);
    }

    const PATH: &str = "/api/v2/things?x=1";

    fn head<'a>(headers: &'a [(&'a str, &'a str)], body_len: Option<usize>) -> RequestHead<'a> {
        RequestHead {
            method: "POST",
            path: PATH,
            host: "api.example.com",
            bracket: false,
            port: Some(8443),
            bearer: "tok",
            user_agent: "ua",
            headers,
            body_len,
        }
    }

    #[test]
    fn request_heads_are_complete_and_size_exactly() {
        let h = head(&[("Content-Type", "application/json")], Some(12));
        validate(h.path, h.headers).unwrap();
        let mut out = [0u8; 512];
        let n = h.write(&mut out).unwrap();
        let text = core::str::from_utf8(&out[..n]).unwrap();
        assert_eq!(
            text,
            "POST /api/v2/things?x=1 HTTP/1.1\r\nHost: api.example.com:8443\r\n\
             Authorization: Bearer tok\r\nUser-Agent: ua\r\nAccept: application/json\r\n\
             Content-Length: 12\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n\r\n"
        );
        assert_eq!(h.write(&mut out[..n]), Ok(n));
        assert_eq!(h.write(&mut out[..n - 1]), Err(n));
    }

    #[test]
    fn caller_headers_cannot_split_or_override_the_request() {
        assert_eq!(validate(PATH, &[("X-A", "1\r\nEvil: 1")]), Err(HttpError::InvalidHeader));
        assert_eq!(validate(PATH, &[("X A", "1")]), Err(HttpError::InvalidHeader));
        assert_eq!(validate(PATH, &[("authorization", "x")]), Err(HttpError::ReservedHeader));
        let mut h = head(&[], None);
        h.path = "/a b";
        assert_eq!(validate(h.path, h.headers), Err(HttpError::InvalidPath));
    }

    /// The token goes only to the API host: a request names a path on the connection to it,
    /// never a URL, and `Host` is the adapter's.
    #[test]
    fn a_request_cannot_name_another_host() {
        for absolute in [
            "http://evil.example.invalid/x",
            "https://evil.example.invalid/x",
            "evil.example.invalid/x",
            "@evil.example.invalid/x",
            "\\\\evil.example.invalid/x",
            "*",
        ] {
            assert_eq!(validate(absolute, &[]), Err(HttpError::InvalidPath), "{absolute}");
        }
        assert_eq!(
            validate(PATH, &[("HOST", "evil.example.invalid")]),
            Err(HttpError::ReservedHeader)
        );
        // A path that a URL parser would read as a host is only a path here: it goes to the
        // API host, on its connection, under its `Host`.
        let mut h = head(&[], None);
        h.path = "//evil.example.invalid/x";
        validate(h.path, h.headers).unwrap();
        let mut out = [0u8; 512];
        let n = h.write(&mut out).unwrap();
        let text = core::str::from_utf8(&out[..n]).unwrap();
        assert!(text.starts_with(
            "POST //evil.example.invalid/x HTTP/1.1\r\nHost: api.example.com:8443\r\n"
        ));
    }

    #[test]
    fn decimal_writer_covers_zero_and_the_widest_value() {
        let mut out = [0u8; 32];
        let mut w = HeadWriter::new(&mut out);
        w.put_decimal(0);
        w.put(b" ");
        w.put_decimal(usize::MAX);
        let n = w.finish().unwrap();
        assert_eq!(core::str::from_utf8(&out[..n]).unwrap(), std::format!("0 {}", usize::MAX));
    }
}
