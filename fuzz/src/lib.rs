//! Helpers shared by the fuzz targets: turning fuzzer bytes into HTTP-shaped
//! inputs, so that seeds can be written as plain text.
//!
//! The text formats are deliberately close to HTTP/1.1 so that a real response pasted into a
//! seed file is a meaningful input as it is:
//!
//! ```text
//! HTTP/1.1 429 Too Many Requests     <- status line: the first run of digits after a space
//! Retry-After: 42                    <- header lines, `name: value`, until an empty line
//! inin-ratelimit-count: 181
//!                                    <- empty line
//! {"message":"…"}                    <- the body: everything after it
//! ```
//!
//! Lines end with `\n` (a `\r` before it is dropped). A header name of exactly one byte is
//! replaced by one of the [`KNOWN_HEADERS`] (chosen by that byte), so a one-byte mutation can
//! steer the fuzzer onto a field the core actually reads, whatever the value.

use credflow_core::UnixTime;

/// Every header field name the core reads, in one table: the rate-limit dialects, the waits,
/// the challenge and the correlation ids.
pub const KNOWN_HEADERS: [&str; 20] = [
    "RateLimit",
    "RateLimit-Policy",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "inin-ratelimit-count",
    "inin-ratelimit-allowed",
    "inin-ratelimit-reset",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-Rate-Limit-Limit",
    "X-Rate-Limit-Remaining",
    "X-Rate-Limit-Reset",
    "Retry-After",
    "Date",
    "WWW-Authenticate",
    "ININ-Correlation-Id",
    "X-Request-Id",
    "Content-Type",
];

/// Most header fields kept from one input (the rest are ignored).
pub const MAX_HEADERS: usize = 64;

/// A reference wall-clock time used when an input does not carry its own: 2023-11-14T22:13:20Z.
pub const REFERENCE: UnixTime = UnixTime::from_secs(1_700_000_000);

/// The key the `snapshot` target unseals raw inputs under (and the `session` target seals with).
pub const SNAPSHOT_KEY: &[u8] = b"fuzz-device-key-0123456789abcdef";

/// The wall-clock time the `snapshot` target unseals raw inputs at.
pub const SNAPSHOT_NOW: UnixTime = REFERENCE;

/// The credential the `snapshot` and `session` targets use: client id and secret.
pub const CLIENT: (&str, &str) = ("client", "secret");

/// Header fields as the core's `Headers` impl for `[(&str, &[u8])]` takes them.
pub type HeaderList<'a> = Vec<(&'a str, &'a [u8])>;

/// Splits off the next line (without its `\n` and a trailing `\r`).
pub fn next_line<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    if data.is_empty() {
        return None;
    }
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (*data, &[][..]),
    };
    *data = rest;
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// Reads header lines up to an empty line (consumed) or the end; returns them and the rest.
///
/// A line without a colon, or whose name is not UTF-8, is skipped. Values are raw bytes with
/// optional whitespace around them removed.
pub fn header_lines(mut data: &[u8]) -> (HeaderList<'_>, &[u8]) {
    let mut headers = Vec::new();
    while let Some(line) = next_line(&mut data) {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let name = match name {
            [b] => KNOWN_HEADERS[usize::from(*b) % KNOWN_HEADERS.len()],
            _ => match core::str::from_utf8(name) {
                Ok(name) => name,
                Err(_) => continue,
            },
        };
        if headers.len() < MAX_HEADERS {
            headers.push((name, value));
        }
    }
    (headers, data)
}

/// Reads an HTTP/1.1-shaped response: the status line, the header lines, and the body.
///
/// The status is the first run of digits in the status line that follows a space or starts
/// the line (saturating at `u16::MAX`); `0` if there is none.
pub fn response(mut data: &[u8]) -> (u16, HeaderList<'_>, &[u8]) {
    let status = next_line(&mut data).map_or(0, status_of);
    let (headers, body) = header_lines(data);
    (status, headers, body)
}

fn status_of(line: &[u8]) -> u16 {
    let start = line
        .iter()
        .enumerate()
        .position(|(i, b)| b.is_ascii_digit() && (i == 0 || line[i - 1] == b' '));
    let Some(start) = start else { return 0 };
    line[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u16, |acc, b| acc.saturating_mul(10).saturating_add(u16::from(b - b'0')))
}

/// Formats `value` with `Display`: the formatting code is part of what is fuzzed.
pub fn show(value: &dyn core::fmt::Display) -> String {
    value.to_string()
}

pub mod wire;

#[cfg(test)]
mod seeds;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_response() {
        let (status, headers, body) =
            response(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 42\r\n\x0e: 7\r\n\r\n{}");
        assert_eq!(status, 429);
        assert_eq!(headers, [("Retry-After", &b"42"[..]), ("Retry-After", &b"7"[..])]);
        assert_eq!(body, b"{}");
        assert_eq!(response(b"503\n").0, 503);
        assert_eq!(response(b"HTTP/1.1 99999\n").0, u16::MAX);
        assert_eq!(response(b"HTTP/2x200\n").0, 0);
    }
}
