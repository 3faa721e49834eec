//! The embedded adapter's request writer (`credflow_embedded::wire`, public only with the
//! adapter's `__fuzzing` feature): `validate` on the caller's path and header fields, then
//! `RequestHead::write` into a buffer of any size, then `write_all` through a connection that
//! takes the bytes in pieces. What the caller passes may come from anyone (a path built from
//! user input, a forwarded header): nothing in it may split the request or smuggle a field.
//!
//! Input: method (`% 6`), host (`% 4`, one an IPv6 literal), port (u16 little-endian, 0 for
//! none), body length (u16, 0xFFFF for none), output buffer size (u16, `% 1024`), then
//! length-prefixed (one byte) strings: the token, the path, and up to 8 header fields (a count
//! `% 9`, then name and value each), all UTF-8; then the write pieces (`1 + p` bytes each; a
//! piece of 254 is a connection reset, one of 255 a connection that accepts nothing).
//!
//! Checked: `validate` refuses exactly the paths that are not origin-form visible ASCII, the
//! names that are not tokens, the values with controls other than tab, and the fields the
//! adapter sets itself (first offending field decides; invalid before reserved); an accepted
//! head parses back with `httparse` to exactly the method, path and fields given, in order,
//! after the adapter's own (`Host`, `Authorization`, `User-Agent`, `Accept` unless given,
//! `Content-Length` when there is a body, `Connection`), and ends where `write` said; a buffer
//! too small is refused with the exact size needed; `write_all` delivers every byte, or fails
//! with the connection's error, or `WriteZero` on a connection that takes none.
#![no_main]

use credflow_embedded::HttpError;
use credflow_embedded::wire::{RequestHead, validate, write_all};
use credflow_fuzz::wire::block_on;
use embedded_io_async::{ErrorKind, ErrorType, Write};
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
/// Host, bracketed (IPv6), as `Target` gives them.
const HOSTS: [(&str, bool); 4] = [
    ("api.mypurecloud.com", false),
    ("127.0.0.1", false),
    ("::1", true),
    ("login.example.invalid", false),
];
const RESERVED: [&str; 5] =
    ["host", "authorization", "content-length", "transfer-encoding", "connection"];

/// What one input asks for.
struct Input<'a> {
    method: u8,
    host: u8,
    port: Option<u16>,
    body_len: Option<u16>,
    out: u16,
    token: &'a [u8],
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    pieces: &'a [u8],
}

/// Reads an input; `None` if it ends early or a string is not UTF-8.
fn input(data: &[u8]) -> Option<Input<'_>> {
    let (&[method, host, p0, p1, b0, b1, o0, o1], mut rest) = data.split_first_chunk::<8>()?;
    let token = bytes(&mut rest)?;
    let path = text(&mut rest)?;
    let (&count, tail) = rest.split_first().unwrap_or((&0, rest));
    rest = tail;
    let mut headers = Vec::new();
    for _ in 0..count % 9 {
        headers.push((text(&mut rest)?, text(&mut rest)?));
    }
    let port = u16::from_le_bytes([p0, p1]);
    let body_len = u16::from_le_bytes([b0, b1]);
    Some(Input {
        method,
        host,
        port: (port != 0).then_some(port),
        body_len: (body_len != u16::MAX).then_some(body_len),
        out: u16::from_le_bytes([o0, o1]),
        token,
        path,
        headers,
        pieces: rest,
    })
}

/// A length-prefixed byte string.
fn bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&len, tail) = rest.split_first()?;
    let (value, tail) = tail.split_at_checked(usize::from(len))?;
    *rest = tail;
    Some(value)
}

/// A length-prefixed UTF-8 string.
fn text<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(bytes(rest)?).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input(data) else { return };
    let headers = input.headers.clone();
    let result = validate(input.path, &headers);
    assert_eq!(result, model(input.path, &headers), "{:?} {headers:?}", input.path);
    if result.is_err() {
        return;
    }
    // The token comes from the core's `AccessToken`: visible ASCII only.
    let bearer: String = input.token.iter().map(|b| char::from(33 + b % 94)).collect();
    let (host, bracket) = HOSTS[usize::from(input.host) % HOSTS.len()];
    let head = RequestHead {
        method: METHODS[usize::from(input.method) % METHODS.len()],
        path: input.path,
        host,
        bracket,
        port: input.port,
        bearer: &bearer,
        user_agent: "credflow-embedded/0.1",
        headers: &headers,
        body_len: input.body_len.map(usize::from),
    };
    let mut out = vec![0u8; usize::from(input.out % 1024)];
    let len = match head.write(&mut out) {
        Ok(len) => len,
        Err(needed) => {
            assert!(needed > out.len(), "refused {needed} bytes in {}", out.len());
            out = vec![0u8; needed];
            head.write(&mut out).expect("the size it said it needed")
        }
    };
    assert!(len <= out.len());
    if len > 0 {
        assert_eq!(head.write(&mut vec![0u8; len - 1]), Err(len), "not the exact size");
    }
    let written = &out[..len];
    parses_back(&head, written);
    sent_whole(written, input.pieces);
});

/// `validate` as its documentation reads.
fn model(path: &str, headers: &[(&str, &str)]) -> Result<(), HttpError> {
    let path = path.as_bytes();
    if path.first() != Some(&b'/') || !path.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(HttpError::InvalidPath);
    }
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    for (name, value) in headers {
        let controls = value.bytes().any(|b| b != b'\t' && (b < 0x20 || b == 0x7f));
        if name.is_empty() || !name.bytes().all(tchar) || controls {
            return Err(HttpError::InvalidHeader);
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(HttpError::ReservedHeader);
        }
    }
    Ok(())
}

/// The head parses as exactly one request with exactly these parts.
fn parses_back(head: &RequestHead<'_>, written: &[u8]) {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut fields);
    let status = request.parse(written).expect("the written head does not parse");
    assert_eq!(status, httparse::Status::Complete(written.len()), "the head ends early");
    assert_eq!(request.method, Some(head.method));
    assert_eq!(request.path, Some(head.path));
    assert_eq!(request.version, Some(1));
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    let mut host = match head.bracket {
        true => format!("[{}]", head.host),
        false => head.host.to_owned(),
    };
    if let Some(port) = head.port {
        host.push_str(&format!(":{port}"));
    }
    expected.push(("Host".into(), host.into_bytes()));
    expected.push(("Authorization".into(), format!("Bearer {}", head.bearer).into_bytes()));
    expected.push(("User-Agent".into(), head.user_agent.as_bytes().to_vec()));
    if !head.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("accept")) {
        expected.push(("Accept".into(), b"application/json".to_vec()));
    }
    if let Some(len) = head.body_len {
        expected.push(("Content-Length".into(), len.to_string().into_bytes()));
    }
    expected.push(("Connection".into(), b"keep-alive".to_vec()));
    for (name, value) in head.headers {
        expected.push(((*name).to_owned(), value.as_bytes().to_vec()));
    }
    // Optional whitespace around a value is not part of it (RFC 9110 §5.5).
    let trim = |v: &[u8]| v.trim_ascii().to_vec();
    let got: Vec<(String, Vec<u8>)> =
        request.headers.iter().map(|h| (h.name.to_owned(), trim(h.value))).collect();
    let expected: Vec<(String, Vec<u8>)> =
        expected.into_iter().map(|(n, v)| (n, trim(&v))).collect();
    assert_eq!(got, expected, "the fields read back are not the ones written");
}

/// A connection that takes `1 + p` bytes per write for each piece `p`, fails on a 254, takes
/// nothing on a 255.
struct Pieces<'a> {
    pieces: &'a [u8],
    got: Vec<u8>,
}

impl ErrorType for Pieces<'_> {
    type Error = ErrorKind;
}

impl Write for Pieces<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        assert!(!buf.is_empty(), "a write of nothing");
        let n = match self.pieces.split_first() {
            Some((&254, _)) => return Err(ErrorKind::ConnectionReset),
            Some((&255, _)) => 0,
            Some((&p, rest)) => {
                self.pieces = rest;
                1 + usize::from(p)
            }
            None => usize::MAX,
        };
        let n = n.min(buf.len());
        self.got.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

fn sent_whole(written: &[u8], pieces: &[u8]) {
    let mut conn = Pieces { pieces, got: Vec::new() };
    // How the writer fails, if it does before the head is through: a piece of 254 is a
    // reset, one of 255 a connection that takes nothing.
    let mut need = written.len();
    let mut fails = None;
    for &p in pieces {
        if need == 0 {
            break;
        }
        match p {
            254 => fails = Some(ErrorKind::ConnectionReset),
            255 => fails = Some(ErrorKind::WriteZero),
            _ => need = need.saturating_sub(1 + usize::from(p)),
        }
        if fails.is_some() {
            break;
        }
    }
    match block_on(write_all(&mut conn, written)) {
        Ok(()) => {
            assert_eq!(fails, None, "a failing connection did not fail the write");
            assert_eq!(conn.got, written);
        }
        Err(kind) => {
            assert_eq!(Some(kind), fails);
            assert!(written.starts_with(&conn.got));
        }
    }
}
