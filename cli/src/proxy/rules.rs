//! The proxy's own decisions about what a local client sent: which headers go on, the
//! priority it asks for, whether it holds the local key, and whether its body is buffered
//! (replayable) or streamed. Pure functions over bytes, without I/O or dependencies, so that the
//! fuzz target `proxy_headers` runs exactly this code (it includes this file by path).
//!
//! Everything here reads bytes a local process controls; hyper has already parsed the request
//! line and the header block (RFC 9112), these functions decide what the values mean.

/// The header a local client names its priority in (`critical`, `normal` or `background`,
/// ASCII case-insensitive); stripped before the request goes upstream.
pub(crate) const PRIORITY_HEADER: &str = "x-credflow-priority";

/// The header a local client may present the local key in (instead of `Authorization: Bearer
/// <key>`); stripped before the request goes upstream.
pub(crate) const KEY_HEADER: &str = "x-credflow-key";

/// The headers of one hop only (RFC 9110 §7.6.1), plus `Proxy-Authorization`/`-Authenticate`
/// (meant for this proxy) and `Keep-Alive` (RFC 2068 §19.7.1, still sent): never forwarded in
/// either direction. Headers named in `Connection` are removed too ([`connection_names`]).
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
];

/// The priority a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Priority {
    /// Goes first, and through a rate-limit hold.
    Critical,
    /// The default.
    Normal,
    /// Yields to the others.
    Background,
}

/// A priority header that is not one of the three names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadPriority;

/// The priority of a request whose priority headers have these values (`None`: no header,
/// [`Priority::Normal`]). Two headers, or a value other than the three names (surrounding
/// whitespace allowed), are refused: a clear error beats a request paced at a priority its
/// sender did not ask for.
pub(crate) fn parse_priority<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
) -> Result<Priority, BadPriority> {
    let Some(value) = values.next() else {
        return Ok(Priority::Normal);
    };
    if values.next().is_some() {
        return Err(BadPriority);
    }
    let value = value.trim_ascii();
    if value.eq_ignore_ascii_case(b"critical") {
        Ok(Priority::Critical)
    } else if value.eq_ignore_ascii_case(b"normal") {
        Ok(Priority::Normal)
    } else if value.eq_ignore_ascii_case(b"background") {
        Ok(Priority::Background)
    } else {
        Err(BadPriority)
    }
}

/// Whether `name` (lowercase, as hyper gives header names) is removed before a request goes
/// upstream: hop-by-hop, `Host` (the upstream's is set from its URL), `Authorization` (replaced
/// with the proxy's token), `Content-Length` (set from the body sent), `Expect` (the proxy
/// answered `100-continue` itself when it read the body), `Accept-Encoding` (credflow reads
/// error bodies to classify them and masks what goes back: they must come uncompressed, and the
/// proxy asks for `identity` instead), and credflow's own headers.
pub(crate) fn strip_inbound(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
        || matches!(
            name,
            "host" | "authorization" | "content-length" | "upgrade" | "expect" | "accept-encoding"
        )
        || name == PRIORITY_HEADER
        || name == KEY_HEADER
}

/// Whether `name` (lowercase) of an upstream response is removed before it goes back:
/// hop-by-hop (a body the proxy replaces also loses its `Content-Length`; a streamed one keeps
/// it, since its bytes go back as they came).
pub(crate) fn strip_outbound(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || name == "upgrade"
}

/// The header names listed in `Connection` header values (RFC 9110 §7.6.1: they are hop-by-hop
/// too), as sent (not lowercased), all of them: nothing is allocated, and a list is as long as
/// the head that carries it, which is bounded. Names that are not tokens are skipped.
pub(crate) fn connection_names<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|value| value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|name| !name.is_empty() && name.iter().all(|&b| is_tchar(b)))
}

/// What a message's `Transfer-Encoding` values say of its body's transfer codings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransferCoding {
    /// No transfer coding is named.
    None,
    /// Only `chunked` (hyper removes it: the body arrives as it was sent).
    Chunked,
    /// Another coding (`gzip`, `deflate`, `compress`, an extension) or a member that is not a
    /// token: hyper removes only `chunked`, so the body would be passed on still coded, with
    /// nothing left to say so once `Transfer-Encoding` (hop-by-hop) is dropped.
    Other,
}

/// The transfer codings these `Transfer-Encoding` values name (RFC 9112 §6.1,
/// case-insensitive). [`TransferCoding::Chunked`] only for exactly one member, `chunked`, which
/// is what hyper reads as chunked (it looks at the last member only): `chunked,` (an empty
/// last member) or `chunked, chunked` are framed otherwise by hyper, so they are
/// [`TransferCoding::Other`] here. No value at all is [`TransferCoding::None`].
pub(crate) fn transfer_coding<'a>(values: impl Iterator<Item = &'a [u8]>) -> TransferCoding {
    let mut members = values.flat_map(|value| value.split(|&b| b == b',')).map(<[u8]>::trim_ascii);
    match (members.next(), members.next()) {
        (None, _) => TransferCoding::None,
        (Some(only), None) if only.eq_ignore_ascii_case(b"chunked") => TransferCoding::Chunked,
        _ => TransferCoding::Other,
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The key a local client presented, from `X-Credflow-Key` or else `Authorization: Bearer`
/// (the placeholder token an SDK got from the proxy's `/oauth/token`). `None` if neither.
pub(crate) fn presented_key<'a>(
    key_header: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    if let Some(key) = key_header {
        return Some(key.trim_ascii());
    }
    let value = authorization?.trim_ascii();
    let (scheme, rest) = split_once(value, b' ')?;
    scheme.eq_ignore_ascii_case(b"bearer").then(|| rest.trim_ascii())
}

/// The secret a token request authenticates with: the password of HTTP Basic credentials
/// (RFC 7617: base64 of `id:secret`; RFC 6749 §2.3.1 form-encodes both first, decoded here), or
/// else a `client_secret` form parameter (RFC 6749 §2.3.1, `client_secret_post`). `None` if the
/// request carries neither, or they do not decode. [`decode_token_request_secret`] into a
/// buffer of its own: the fuzz target's and the tests' way in (the proxy decodes into a buffer
/// it wipes).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn token_request_secret(authorization: Option<&[u8]>, form: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    decode_token_request_secret(authorization, form, &mut out).then_some(out)
}

/// [`token_request_secret`], decoded into `out` (what it held is dropped): `false` if there is
/// none. Every step happens in `out`, and it is allocated once: the base64 of `id:secret` is
/// decoded into it, then the secret's form encoding decoded in place to its front; a
/// `client_secret` value is copied into it and decoded in place. So a caller that wipes `out`
/// (all its capacity: the proxy's is a `Zeroizing`) leaves no copy of the credentials behind,
/// whether they decoded or not.
pub(crate) fn decode_token_request_secret(
    authorization: Option<&[u8]>,
    form: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if let Some(value) = authorization {
        let Some((scheme, rest)) = split_once(value.trim_ascii(), b' ') else { return false };
        if !scheme.eq_ignore_ascii_case(b"basic") || !base64_decode(rest.trim_ascii(), out) {
            return false;
        }
        let Some(colon) = out.iter().position(|&b| b == b':') else { return false };
        return percent_decode_in_place(out, colon.saturating_add(1));
    }
    // Room for any value of the form: `out` never grows (which would free a copy).
    out.reserve(form.len());
    for pair in form.split(|&b| b == b'&') {
        match split_once(pair, b'=') {
            Some((name, value)) if name == b"client_secret" => {
                out.clear();
                out.extend_from_slice(value);
                if percent_decode_in_place(out, 0) {
                    return true;
                }
            }
            _ => {}
        }
    }
    out.clear();
    false
}

/// Compares a presented key with the local key in time that does not depend on where they
/// differ (only on their lengths).
pub(crate) fn key_matches(presented: &[u8], key: &[u8]) -> bool {
    if presented.len() != key.len() {
        return false;
    }
    presented.iter().zip(key).fold(0_u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// What the proxy does with a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyPlan {
    /// No body (no `Content-Length`, not chunked, or a length of 0).
    Empty,
    /// `Content-Length` within the limit: read all of it, then send it, replayable.
    Buffer(usize),
    /// Chunked (length unknown): read up to the limit; if it ends there it is buffered, else
    /// it streams on, not replayable.
    ReadUpTo(usize),
    /// `Content-Length` beyond the limit: streamed as it arrives, sent once, never retried.
    Stream,
}

/// A request body whose framing the proxy refuses (hyper refuses most such requests itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadBody {
    /// `Content-Length` is not one decimal number, or several disagree (RFC 9110 §8.6).
    ContentLength,
}

/// How to handle a body framed by these `Content-Length` values (`chunked`: the request uses
/// chunked transfer coding, which takes precedence, RFC 9112 §6.3), with request bodies of at
/// most `limit` bytes buffered.
pub(crate) fn body_plan<'a>(
    content_lengths: impl Iterator<Item = &'a [u8]>,
    chunked: bool,
    limit: usize,
) -> Result<BodyPlan, BadBody> {
    if chunked {
        return Ok(BodyPlan::ReadUpTo(limit));
    }
    let mut length: Option<u64> = None;
    for value in content_lengths {
        // A list of equal values is one length (RFC 9110 §8.6); anything else is refused.
        for part in value.split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii()).ok_or(BadBody::ContentLength)?;
            match length {
                Some(seen) if seen != n => return Err(BadBody::ContentLength),
                _ => length = Some(n),
            }
        }
    }
    Ok(match length {
        None | Some(0) => BodyPlan::Empty,
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= limit => BodyPlan::Buffer(n),
            _ => BodyPlan::Stream,
        },
    })
}

/// A non-empty run of ASCII digits as a number; `None` on anything else or on overflow.
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0_u64, |n, &b| {
        let digit = u64::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        n.checked_mul(10)?.checked_add(digit)
    })
}

fn split_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == at)?;
    Some((bytes.get(..i)?, bytes.get(i.checked_add(1)?..)?))
}

/// Standard base64 with padding (RFC 4648 §4), as HTTP Basic uses it, appended to `out` (room
/// made for all of it first). `false` if malformed (`out` then holds part of it).
fn base64_decode(text: &[u8], out: &mut Vec<u8>) -> bool {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    if !text.len().is_multiple_of(4) {
        return false;
    }
    out.reserve(text.len() / 4 * 3);
    let quads = text.chunks_exact(4);
    let last = quads.len().checked_sub(1);
    for (i, quad) in quads.enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && Some(i) != last) {
            return false;
        }
        let mut n = 0_u32;
        for &c in quad.get(..4 - pad).unwrap_or_default() {
            let Some(v) = value(c) else { return false };
            n = (n << 6) | v;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(bytes.get(1..4 - pad).unwrap_or_default());
    }
    true
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space, `%XX` a byte) of `buf`'s bytes
/// from `from` on, written over the front of `buf` (a decoded byte never needs more room than
/// its encoding) and `buf` cut to them. `false` on a malformed escape.
fn percent_decode_in_place(buf: &mut Vec<u8>, from: usize) -> bool {
    let (mut read, mut write) = (from, 0);
    while let Some(&b) = buf.get(read) {
        read += 1;
        let decoded = match b {
            b'+' => b' ',
            b'%' => {
                let hex = |i: usize| buf.get(i).and_then(|&c| char::from(c).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(read), hex(read + 1)) else { return false };
                read += 2;
                let Ok(byte) = u8::try_from(hi * 16 + lo) else { return false };
                byte
            }
            other => other,
        };
        // `write` trails `read`: what it overwrites was read already.
        if let Some(slot) = buf.get_mut(write) {
            *slot = decoded;
        }
        write += 1;
    }
    buf.truncate(write);
    true
}

/// Whether a `Host` value (`host[:port]`) names this machine's loopback as the core defines it
/// (`localhost`, an address in 127.0.0.0/8 in plain decimal, `[::1]`): the names a program of
/// this machine uses to reach a proxy on loopback.
pub(crate) fn loopback_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let host = host.trim();
    // Only an authority: nothing that could make the URL below mean something else.
    if host.is_empty() || host.contains(['/', '?', '#', '@', '\\']) {
        return false;
    }
    credflow_core::http::url::Url::parse(&format!("http://{host}/")).is_ok_and(|u| u.is_loopback())
}

/// Whether a request with these `Origin` and `Sec-Fetch-Site` values was sent by a browser for a
/// web page: browsers send `Origin` with every cross-origin request and every POST, and
/// `Sec-Fetch-Site` with every request (`none` for one the user typed, such as opening
/// `/healthz`, which is not a page's). Programs send neither.
pub(crate) fn from_a_web_page(origin: Option<&[u8]>, fetch_site: Option<&[u8]>) -> bool {
    origin.is_some()
        || fetch_site.is_some_and(|site| !site.trim_ascii().eq_ignore_ascii_case(b"none"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn web_pages_are_told_by_their_browsers_headers() {
        assert!(!from_a_web_page(None, None));
        assert!(!from_a_web_page(None, Some(b"none")));
        assert!(from_a_web_page(Some(b"null"), None));
        assert!(from_a_web_page(Some(b"https://evil.example"), Some(b"none")));
        for site in [&b"cross-site"[..], b"same-site", b"same-origin", b""] {
            assert!(from_a_web_page(None, Some(site)));
        }
    }

    #[test]
    fn loopback_hosts_are_this_machines() {
        for host in
            ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:9", "[::1]:80", "127.1.2.3"]
        {
            assert!(loopback_host(host.as_bytes()), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "localhost.",
            "a.localhost",
            "10.0.0.1",
            "0.0.0.0",
            "127.0.0.1@evil",
            "evil/127.0.0.1",
            "[::ffff:127.0.0.1]",
            "0127.0.0.1",
        ] {
            assert!(!loopback_host(host.as_bytes()), "{host}");
        }
        assert!(!loopback_host(b"local\xffhost"), "not UTF-8");
    }

    use super::*;

    fn one(v: &[u8]) -> impl Iterator<Item = &[u8]> {
        std::iter::once(v)
    }

    #[test]
    fn priority_names_case_and_whitespace() {
        assert_eq!(parse_priority(std::iter::empty()), Ok(Priority::Normal));
        assert_eq!(parse_priority(one(b" Critical ")), Ok(Priority::Critical));
        assert_eq!(parse_priority(one(b"BACKGROUND")), Ok(Priority::Background));
        assert_eq!(parse_priority(one(b"urgent")), Err(BadPriority));
        assert_eq!(parse_priority(one(b"")), Err(BadPriority));
        assert_eq!(parse_priority([&b"normal"[..], b"normal"].into_iter()), Err(BadPriority));
    }

    #[test]
    fn connection_names_are_tokens_and_all_of_them() {
        let names: Vec<&[u8]> =
            connection_names([&b"Keep-Alive, X-Foo ,,bad name"[..], b"x-bar"].into_iter())
                .collect();
        assert_eq!(names, [&b"Keep-Alive"[..], b"X-Foo", b"x-bar"]);
        let long = (0..100).map(|i| format!("x-h{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(connection_names(one(long.as_bytes())).count(), 100);
        assert_eq!(connection_names(one(long.as_bytes())).last(), Some(&b"x-h99"[..]));
    }

    #[test]
    fn transfer_codings_other_than_chunked_are_told_apart() {
        let coding = |values: &[&[u8]]| transfer_coding(values.iter().copied());
        assert_eq!(coding(&[]), TransferCoding::None);
        assert_eq!(coding(&[b"chunked"]), TransferCoding::Chunked);
        assert_eq!(coding(&[b" CHUNKED "]), TransferCoding::Chunked);
        // hyper reads only the last member: these are not framed as chunked by it.
        assert_eq!(coding(&[b"chunked,"]), TransferCoding::Other);
        assert_eq!(coding(&[b"chunked", b""]), TransferCoding::Other);
        assert_eq!(coding(&[b"chunked, chunked"]), TransferCoding::Other);
        assert_eq!(coding(&[b""]), TransferCoding::Other);
        assert_eq!(coding(&[b"gzip, chunked"]), TransferCoding::Other);
        assert_eq!(coding(&[b"gzip", b"chunked"]), TransferCoding::Other);
        assert_eq!(coding(&[b"chunked;q=1"]), TransferCoding::Other);
        assert_eq!(coding(&[b"identity"]), TransferCoding::Other);
    }

    #[test]
    fn stripped_headers() {
        for name in ["authorization", "host", "x-credflow-priority", "x-credflow-key", "te"] {
            assert!(strip_inbound(name), "{name}");
        }
        assert!(!strip_inbound("inin-correlation-id"));
        assert!(!strip_outbound("inin-correlation-id"));
        assert!(strip_outbound("transfer-encoding"));
    }

    #[test]
    fn presented_key_prefers_the_key_header() {
        assert_eq!(presented_key(Some(b" k1 "), Some(b"Bearer k2")), Some(&b"k1"[..]));
        assert_eq!(presented_key(None, Some(b"bearer  k2")), Some(&b"k2"[..]));
        assert_eq!(presented_key(None, Some(b"Basic k2")), None);
        assert_eq!(presented_key(None, None), None);
    }

    #[test]
    fn token_request_secret_from_basic_or_form() {
        // base64("id:s%3Ac+t") = aWQ6cyUzQWMrdA==
        assert_eq!(
            token_request_secret(Some(b"Basic aWQ6cyUzQWMrdA=="), b""),
            Some(b"s:c t".to_vec())
        );
        assert_eq!(
            token_request_secret(None, b"grant_type=x&client_secret=a%2Bb"),
            Some(b"a+b".to_vec())
        );
        assert_eq!(token_request_secret(Some(b"Basic !!!!"), b"client_secret=x"), None);
        assert_eq!(token_request_secret(None, b"grant_type=client_credentials"), None);
    }

    /// The proxy's way: the credentials are decoded in its buffer (which it wipes), in place,
    /// never in one of the decoder's own or one regrown; what the buffer held is dropped.
    #[test]
    fn the_secret_is_decoded_in_the_callers_buffer() {
        let form = b"client_secret=%zz&client_secret=a-much-longer-secret%21&client_secret=x";
        for (authorization, form, secret) in [
            (Some(&b"Basic aWQ6cyUzQWMrdA=="[..]), &b""[..], Some(&b"s:c t"[..])),
            (None, &form[..], Some(b"a-much-longer-secret!")),
            (Some(b"Basic aWQ6cyUzQWMrd"), b"", None),
            (Some(b"Basic aWQ6cyUzQWMrdA=="), b"client_secret=x", Some(b"s:c t")),
            (None, b"grant_type=client_credentials", None),
        ] {
            let mut out = Vec::with_capacity(128);
            out.extend_from_slice(b"held before");
            let buffer = out.as_ptr();
            let found = decode_token_request_secret(authorization, form, &mut out);
            assert_eq!(found.then_some(out.as_slice()), secret);
            assert_eq!(out.as_ptr(), buffer, "decoded elsewhere than in the caller's buffer");
            assert_eq!(token_request_secret(authorization, form).as_deref(), secret);
        }
    }

    #[test]
    fn base64_round_trips_and_refuses_bad_padding() {
        let base64_decode = |text: &[u8]| {
            let mut out = Vec::new();
            super::base64_decode(text, &mut out).then_some(out)
        };
        assert_eq!(base64_decode(b"YQ=="), Some(b"a".to_vec()));
        assert_eq!(base64_decode(b"YWI="), Some(b"ab".to_vec()));
        assert_eq!(base64_decode(b"YWJj"), Some(b"abc".to_vec()));
        assert_eq!(base64_decode(b"YQ==YWJj"), None);
        assert_eq!(base64_decode(b"Y==="), None);
        assert_eq!(base64_decode(b"YQ="), None);
    }

    #[test]
    fn key_comparison() {
        assert!(key_matches(b"abc", b"abc"));
        assert!(!key_matches(b"abd", b"abc"));
        assert!(!key_matches(b"ab", b"abc"));
    }

    #[test]
    fn body_plans_at_the_limit() {
        let plan = |cl: &[&[u8]], chunked| body_plan(cl.iter().copied(), chunked, 10);
        assert_eq!(plan(&[], false), Ok(BodyPlan::Empty));
        assert_eq!(plan(&[b"0"], false), Ok(BodyPlan::Empty));
        assert_eq!(plan(&[b"10"], false), Ok(BodyPlan::Buffer(10)));
        assert_eq!(plan(&[b"11"], false), Ok(BodyPlan::Stream));
        assert_eq!(plan(&[b"5, 5", b"5"], false), Ok(BodyPlan::Buffer(5)));
        assert_eq!(plan(&[b"5", b"6"], false), Err(BadBody::ContentLength));
        assert_eq!(plan(&[b"-1"], false), Err(BadBody::ContentLength));
        assert_eq!(plan(&[b"99999999999999999999999"], false), Err(BadBody::ContentLength));
        assert_eq!(plan(&[b"18446744073709551615"], false), Ok(BodyPlan::Stream));
        assert_eq!(plan(&[b"11"], true), Ok(BodyPlan::ReadUpTo(10)));
    }
}
