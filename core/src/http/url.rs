//! A small, strict splitter for absolute `http`/`https` URLs: token endpoints and API bases.
//!
//! This is not a general URL parser. It takes the URLs a client is configured with and splits
//! them into what an HTTP/1.1 request needs (RFC 9110 §4.2, §7.2; RFC 9112 §3.2): the scheme,
//! the host and optional port for the connection and the `Host` field, and the
//! `path-and-query` request target. It borrows from its input and never allocates.
//!
//! It rejects, rather than guesses about, anything a token URL should not contain:
//! userinfo (`user:pass@`, RFC 9110 §4.2.4 forbids sending it), fragments, whitespace, control
//! and non-ASCII bytes (use punycode and percent-encoding), an empty host, and a port that is not
//! a decimal number in `1..=65535`. IPv6 literals are accepted in brackets (`[::1]`,
//! RFC 3986 §3.2.2); the brackets are kept in [`Url::host`] because the `Host` field needs them.
//!
//! ## Plain HTTP only to loopback
//!
//! Every URL credflow is configured with carries secrets: the client credentials go to the token
//! URL, bearer tokens to the API base. Over `http` they cross the network in clear text, so
//! [`Url::check_plain_http`] refuses an `http` URL ([`UrlError::InsecureHttp`]) unless its host
//! is loopback ([`Url::is_loopback`]), where the bytes never leave the machine, or the caller
//! opted in with [`PlainHttp::Anywhere`]. The token endpoint
//! ([`TokenEndpoint`](crate::session::TokenEndpoint), [`encode_token_request`]) and every adapter's
//! API base go through it, before any name is resolved or any connection opened.
//!
//! Loopback means a host that no resolver can send elsewhere, in its canonical spelling:
//!
//! - an IPv4 address in `127.0.0.0/8` written as four decimal octets without leading zeros
//!   (`127.0.0.1`, `127.1.2.3`). Other spellings (`127.1`, `0x7f.0.0.1`, `2130706433`,
//!   `127.000.000.001`) are not recognised: resolvers disagree on them (to `inet_aton` and the
//!   WHATWG URL parser `0127.0.0.1` is `87.0.0.1`; to an embedded stack `127.1` is a DNS name);
//! - the IPv6 address `::1` in its canonical form (RFC 5952 §4), `[::1]`. Other spellings
//!   (`[0:0:0:0:0:0:0:1]`, `[::0.0.0.1]`) and the IPv4-mapped `[::ffff:127.0.0.1]` are not
//!   recognised: nobody writes them, and reading every RFC 4291 §2.2 form costs flash on a
//!   device for nothing;
//! - the name `localhost`, in any letter case. RFC 6761 §6.3 reserves `localhost` and every name
//!   under it for loopback, but only the bare name is answered from the hosts table by every
//!   common resolver (one without a hosts table, as on many embedded stacks, must answer it with
//!   a loopback address itself, as §6.3 asks): `localhost.` and `app.localhost` go to DNS on
//!   some systems (glibc without systemd-resolved, for one), where a server could answer with
//!   any address. Those are refused under `http`.
//!
//! [`encode_token_request`]: crate::oauth::encode_token_request

use core::fmt;

/// The URL scheme: only the two that carry HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Scheme {
    /// `http`: cleartext; allowed to loopback hosts only, unless opted in (see
    /// [`PlainHttp`]).
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// The scheme's default port: 80 or 443.
    pub const fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `"http"` or `"https"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where `http` URLs are allowed: the opt-in for plain HTTP to hosts that are not loopback.
///
/// ```
/// use credflow_core::http::url::{PlainHttp, Url, UrlError};
/// let url = Url::parse("http://auth.example.invalid/oauth/token")?;
/// assert_eq!(url.check_plain_http(PlainHttp::LoopbackOnly), Err(UrlError::InsecureHttp));
/// assert_eq!(url.check_plain_http(PlainHttp::Anywhere), Ok(()));
/// let local = Url::parse("http://127.0.0.1:8089/oauth/token")?;
/// assert_eq!(local.check_plain_http(PlainHttp::LoopbackOnly), Ok(()));
/// # Ok::<(), UrlError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PlainHttp {
    /// `http` only to loopback hosts (see [`Url::is_loopback`]); `https` anywhere. The default.
    #[default]
    LoopbackOnly,
    /// `http` to any host: credentials and tokens cross the network in clear text, readable
    /// and replayable by anyone on the path. An explicit opt-in, for a test network that has
    /// no TLS; adapters log a warning when a URL uses it.
    Anywhere,
}

/// Why a URL was refused. Each variant names the likely mistake in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum UrlError {
    /// No `scheme://` prefix: a bare host name or a relative path was given.
    NotAbsolute,
    /// A scheme other than `http` or `https`.
    UnsupportedScheme,
    /// A byte that is not visible ASCII (space, control, DEL or non-ASCII): often a stray
    /// newline or quote from a configuration file.
    InvalidCharacter {
        /// Byte offset of the first offending byte.
        at: usize,
    },
    /// `user:password@` before the host: not allowed (RFC 9110 §4.2.4); credentials belong in
    /// the client configuration. The message never repeats it.
    UserInfo,
    /// A `#fragment`: never sent to a server, so almost certainly a copy-paste error.
    Fragment,
    /// Nothing between `://` and the path.
    EmptyHost,
    /// A host with characters outside letters, digits, `-`, `.` and `_`, or a malformed IPv6
    /// literal.
    InvalidHost,
    /// A port that is empty, not decimal, zero, or above 65535.
    BadPort,
    /// A query directly after the host (`https://host?x`): write `https://host/?x`.
    MissingPath,
    /// `http` to a host that is not loopback: the credentials or tokens sent to it would
    /// cross the network in clear text. Use `https`; `http` is for a server on this machine
    /// (see [`Url::is_loopback`]), or needs the explicit opt-in [`PlainHttp::Anywhere`].
    InsecureHttp,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UrlError::NotAbsolute => {
                f.write_str("URL is not absolute (expected https://host/path)")
            }
            UrlError::UnsupportedScheme => f.write_str("URL scheme is not http or https"),
            UrlError::InvalidCharacter { at } => write!(
                f,
                "URL has a space, control or non-ASCII byte at offset {at} (a stray newline or quote?)"
            ),
            UrlError::UserInfo => f.write_str(
                "user info (user:password@ before the host) is not allowed in the URL: put \
                 credentials in the client configuration",
            ),
            UrlError::Fragment => f.write_str("URL contains a #fragment; remove it"),
            UrlError::EmptyHost => f.write_str("URL has an empty host"),
            UrlError::InvalidHost => f.write_str("URL host has invalid characters"),
            UrlError::BadPort => f.write_str("URL port is not a number in 1..=65535"),
            UrlError::MissingPath => f.write_str("URL has a query but no path; add '/' before '?'"),
            UrlError::InsecureHttp => f.write_str(
                "http:// to a host that is not loopback would send credentials and tokens in \
                 clear text: use https (plain http is allowed to 127.0.0.0/8, [::1] and \
                 localhost, or with an explicit opt-in)",
            ),
        }
    }
}

impl core::error::Error for UrlError {}

/// An absolute `http`/`https` URL split into its request-relevant parts, borrowed from the
/// input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Url<'a> {
    /// `http` or `https` (matched case-insensitively).
    pub scheme: Scheme,
    /// The host as written, brackets included for IPv6 literals (`[::1]`).
    pub host: &'a str,
    /// The explicit port, if the URL has one (even when it equals the default).
    pub port: Option<u16>,
    /// The request target: path and query, `"/"` when the URL has no path.
    pub path_and_query: &'a str,
}

impl<'a> Url<'a> {
    /// Splits an absolute URL. See the [module docs](self) for what is refused.
    ///
    /// ```
    /// use credflow_core::http::url::{Scheme, Url};
    /// let url = Url::parse("https://login.mypurecloud.com/oauth/token")?;
    /// assert_eq!((url.scheme, url.host, url.port_or_default()), (Scheme::Https, "login.mypurecloud.com", 443));
    /// assert_eq!(url.path_and_query, "/oauth/token");
    /// # Ok::<(), credflow_core::http::url::UrlError>(())
    /// ```
    pub fn parse(input: &'a str) -> Result<Self, UrlError> {
        // Byte searches throughout, not `str` patterns: once every byte is visible ASCII, any
        // index is a character boundary, and the `str` pattern machinery (a two-way substring
        // searcher, UTF-8 decoding) would cost Cortex-M flash for nothing.
        if let Some(at) = input.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(UrlError::InvalidCharacter { at });
        }
        if input.as_bytes().contains(&b'#') {
            return Err(UrlError::Fragment);
        }
        let sep = input.as_bytes().windows(3).position(|w| w == b"://");
        let (scheme, rest) = sep
            .and_then(|i| Some((input.get(..i)?, input.get(i.checked_add(3)?..)?)))
            .ok_or(UrlError::NotAbsolute)?;
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme.is_empty() || scheme.bytes().any(|b| b == b'/' || b == b'?') {
            return Err(UrlError::NotAbsolute);
        } else {
            return Err(UrlError::UnsupportedScheme);
        };
        let (authority, path_and_query) = match rest.bytes().position(|b| b == b'/' || b == b'?') {
            Some(i) => rest.split_at_checked(i).ok_or(UrlError::NotAbsolute)?,
            None => (rest, "/"),
        };
        if path_and_query.as_bytes().first() == Some(&b'?') {
            return Err(UrlError::MissingPath);
        }
        if authority.as_bytes().contains(&b'@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        Ok(Url { scheme, host, port, path_and_query })
    }

    /// [`Url::parse`], then [`Url::check_plain_http`]: how to read every URL that will receive
    /// credentials or tokens.
    ///
    /// ```
    /// use credflow_core::http::url::{PlainHttp, Url, UrlError};
    /// let refused = Url::parse_with("http://auth.example.invalid/oauth/token", PlainHttp::LoopbackOnly);
    /// assert_eq!(refused, Err(UrlError::InsecureHttp));
    /// assert!(Url::parse_with("http://127.0.0.1:8089/oauth/token", PlainHttp::LoopbackOnly).is_ok());
    /// ```
    pub fn parse_with(input: &'a str, plain_http: PlainHttp) -> Result<Self, UrlError> {
        let url = Url::parse(input)?;
        url.check_plain_http(plain_http)?;
        Ok(url)
    }

    /// The scheme's default port (80 or 443), whatever the URL says.
    pub const fn default_port(&self) -> u16 {
        self.scheme.default_port()
    }

    /// The port to connect to: the explicit one, else the scheme's default.
    pub const fn port_or_default(&self) -> u16 {
        match self.port {
            Some(p) => p,
            None => self.default_port(),
        }
    }

    /// Whether the host is loopback: an IPv4 address in `127.0.0.0/8` as four canonical
    /// decimal octets, `[::1]`, or the name `localhost` in any case. See the
    /// [module docs](self#plain-http-only-to-loopback) for what is left out and why.
    ///
    /// ```
    /// use credflow_core::http::url::Url;
    /// assert!(Url::parse("http://127.1.2.3:8080/")?.is_loopback());
    /// assert!(Url::parse("http://[::1]/")?.is_loopback());
    /// assert!(Url::parse("http://LocalHost/")?.is_loopback());
    /// assert!(!Url::parse("http://10.0.0.1/")?.is_loopback());
    /// assert!(!Url::parse("http://app.localhost/")?.is_loopback());
    /// # Ok::<(), credflow_core::http::url::UrlError>(())
    /// ```
    pub fn is_loopback(&self) -> bool {
        match self.host.as_bytes() {
            // RFC 5952 §4's canonical form only, as with IPv4.
            [b'[', inner @ .., b']'] => inner == b"::1",
            host => self.host.eq_ignore_ascii_case("localhost") || is_ipv4_loopback(host),
        }
    }

    /// Whether requests to this URL travel in clear text beyond this machine: `http` to a host
    /// that is not [loopback](Self::is_loopback).
    pub fn is_insecure(&self) -> bool {
        self.scheme == Scheme::Http && !self.is_loopback()
    }

    /// Refuses an [insecure](Self::is_insecure) URL unless `plain_http` allows it: call it on
    /// every URL that will receive credentials or tokens, before resolving its host.
    ///
    /// # Errors
    ///
    /// [`UrlError::InsecureHttp`] for `http` to a host that is not loopback under
    /// [`PlainHttp::LoopbackOnly`].
    pub fn check_plain_http(&self, plain_http: PlainHttp) -> Result<(), UrlError> {
        match plain_http {
            PlainHttp::LoopbackOnly if self.is_insecure() => Err(UrlError::InsecureHttp),
            _ => Ok(()),
        }
    }

    /// The `Host` field value (RFC 9110 §7.2): `host`, or `host:port` when the port is not the
    /// scheme's default.
    pub const fn authority(&self) -> Authority<'a> {
        let port = match self.port {
            Some(p) if p != self.scheme.default_port() => Some(p),
            _ => None,
        };
        Authority { host: self.host, port }
    }
}

/// The `Host` field value of a [`Url`]: displays as `host` or `host:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authority<'a> {
    /// The host, brackets included for IPv6 literals.
    pub host: &'a str,
    /// The port, present only when it differs from the scheme's default.
    pub port: Option<u16>,
}

impl fmt::Display for Authority<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.host)?;
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// A configured URL for messages and logs, with any userinfo masked: a URL holding an `@` is
/// displayed with everything from the scheme's `://` (after a scheme name; else the start) to
/// the last `@` replaced by `***@`, whether [`Url::parse`] accepts it or not, so that a
/// password is not echoed even where it makes the URL valid (`https://alice:2024/pw@idp/`
/// parses as port 2024 and a path) or malformed in some other way (a `/`, `?`, `#` or `://` in
/// the password, no scheme). An `@` in a path or query hides the host before it too: too much
/// is masked rather than a password shown. A URL without an `@` is displayed as given, with
/// bytes that are not visible ASCII escaped (`\n`) when it is not valid.
///
/// ```
/// use credflow_core::http::url::Redacted;
/// let shown = Redacted("http://user:pw@127.0.0.1:1/oauth/token").to_string();
/// assert_eq!(shown, "http://***@127.0.0.1:1/oauth/token");
/// assert_eq!(Redacted("https://login.example.com/oauth/token").to_string(), "https://login.example.com/oauth/token");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = self.0;
        let bytes = input.as_bytes();
        let Some(at) = bytes.iter().rposition(|&b| b == b'@') else {
            if Url::parse(input).is_ok() {
                return f.write_str(input);
            }
            return write!(f, "{}", input.escape_debug());
        };
        // The scheme's `://`: after a scheme name (RFC 3986 §3.1), not inside a password.
        let is_scheme = |name: &[u8]| {
            name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        };
        let start = bytes
            .windows(3)
            .position(|w| w == b"://")
            .filter(|&i| bytes.get(..i).is_some_and(is_scheme))
            .map(|i| i.saturating_add(3))
            .filter(|&start| start <= at)
            .unwrap_or(0);
        // Every cut is at an ASCII byte, so at a character boundary.
        write!(
            f,
            "{}***@{}",
            input.get(..start).unwrap_or_default().escape_debug(),
            input.get(at.saturating_add(1)..).unwrap_or_default().escape_debug()
        )
    }
}

/// Splits `authority` (visible ASCII, checked by [`Url::parse`]) at its port separator.
pub(crate) fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UrlError> {
    let bytes = authority.as_bytes();
    let (host, port) = if bytes.first() == Some(&b'[') {
        let end = bytes.iter().position(|&b| b == b']').ok_or(UrlError::InvalidHost)?;
        let (host, rest) =
            authority.split_at_checked(end.saturating_add(1)).ok_or(UrlError::InvalidHost)?;
        let inner = host.as_bytes().get(1..end).unwrap_or_default();
        if !inner.contains(&b':')
            || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(UrlError::InvalidHost);
        }
        match rest.as_bytes().first() {
            Some(b':') => (host, Some(rest.get(1..).unwrap_or_default())),
            None => (host, None),
            Some(_) => return Err(UrlError::InvalidHost),
        }
    } else {
        match bytes.iter().position(|&b| b == b':') {
            Some(i) => (
                authority.get(..i).unwrap_or_default(),
                Some(authority.get(i.saturating_add(1)..).unwrap_or_default()),
            ),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    if host.as_bytes().first() != Some(&b'[')
        && !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(UrlError::InvalidHost);
    }
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p).ok_or(UrlError::BadPort)?),
    };
    Ok((host, port))
}

/// An address in `127.0.0.0/8` as four decimal octets without leading zeros: the one spelling
/// that `inet_aton`, the WHATWG URL parser and Rust's `Ipv4Addr` all read the same way.
fn is_ipv4_loopback(host: &[u8]) -> bool {
    let Some(rest) = host.strip_prefix(b"127.") else {
        return false;
    };
    // The other three octets, digit by digit (a loop: slice splitting costs more flash).
    let (mut dots, mut octet, mut digits) = (0u8, 0u16, 0u8);
    for &b in rest {
        if b == b'.' && digits > 0 {
            (dots, octet, digits) = (dots.saturating_add(1), 0, 0);
        } else if b.is_ascii_digit() && !(digits > 0 && octet == 0) {
            // No leading zero: `010` is octal 8 to `inet_aton` and WHATWG.
            octet = octet.saturating_mul(10).saturating_add(u16::from(b.saturating_sub(b'0')));
            digits = digits.saturating_add(1);
            if octet > 255 {
                return false;
            }
        } else {
            // An empty octet, or a byte that is neither a digit nor a point.
            return false;
        }
    }
    dots == 2 && digits > 0
}

/// A port: one or more decimal digits (leading zeros allowed), in `1..=65535`. Read with the
/// JSON reader's integer parser (shared code), which also takes a leading `-`: a negative
/// value, or `-0`, is refused here like any other port out of range.
fn parse_port(digits: &str) -> Option<u16> {
    let value = crate::json::integer(digits)?.ok()?;
    u16::try_from(value).ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;

    fn ok(s: &str) -> Url<'_> {
        Url::parse(s).unwrap()
    }

    #[test]
    fn splits_token_urls() {
        let u = ok("https://login.mypurecloud.com/oauth/token");
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(
            (u.host, u.port, u.path_and_query),
            ("login.mypurecloud.com", None, "/oauth/token")
        );
        assert_eq!(u.authority().to_string(), "login.mypurecloud.com");

        let u = ok("HTTP://127.0.0.1:8080/token?x=1&y=%20");
        assert_eq!((u.scheme, u.host, u.port), (Scheme::Http, "127.0.0.1", Some(8080)));
        assert_eq!((u.path_and_query, u.port_or_default()), ("/token?x=1&y=%20", 8080));
        assert_eq!(u.authority().to_string(), "127.0.0.1:8080");

        let u = ok("https://auth.example");
        assert_eq!((u.path_and_query, u.port_or_default(), u.default_port()), ("/", 443, 443));
    }

    #[test]
    fn default_port_is_left_out_of_the_host_field() {
        assert_eq!(ok("https://h:443/").authority().to_string(), "h");
        assert_eq!(ok("https://h:443/").port, Some(443));
        assert_eq!(ok("http://h:80/").authority().to_string(), "h");
        assert_eq!(ok("http://h:443/").authority().to_string(), "h:443");
        assert_eq!(ok("https://h:80/").authority().to_string(), "h:80");
    }

    #[test]
    fn ipv6_literals() {
        let u = ok("http://[::1]:9000/t");
        assert_eq!((u.host, u.port), ("[::1]", Some(9000)));
        assert_eq!(u.authority().to_string(), "[::1]:9000");
        assert_eq!(ok("https://[2001:db8::7]").host, "[2001:db8::7]");
        assert_eq!(ok("https://[::ffff:192.0.2.1]/").host, "[::ffff:192.0.2.1]");
        for bad in [
            "https://[::1/",
            "https://[]/",
            "https://[zz::1]/",
            "https://[::1]x/",
            "https://[1.2.3.4]/",
        ] {
            assert_eq!(Url::parse(bad), Err(UrlError::InvalidHost), "{bad}");
        }
    }

    #[test]
    fn refuses_what_a_token_url_must_not_contain() {
        let cases = [
            ("login.example.com/oauth/token", UrlError::NotAbsolute),
            ("/oauth/token", UrlError::NotAbsolute),
            ("://h/", UrlError::NotAbsolute),
            ("ftp://h/", UrlError::UnsupportedScheme),
            ("https://user:pw@h/", UrlError::UserInfo),
            ("https://h/#frag", UrlError::Fragment),
            ("https:///path", UrlError::EmptyHost),
            ("https://:443/", UrlError::EmptyHost),
            ("https://h:/", UrlError::BadPort),
            ("https://h:0/", UrlError::BadPort),
            ("https://h:65536/", UrlError::BadPort),
            ("https://h:+1/", UrlError::BadPort),
            ("https://h:-1/", UrlError::BadPort),
            ("https://h:-0/", UrlError::BadPort),
            ("https://h:-/", UrlError::BadPort),
            ("https://h:99999999999999999999999/", UrlError::BadPort),
            ("https://h:1:2/", UrlError::BadPort),
            ("https://h?x=1", UrlError::MissingPath),
            ("https://h%41/", UrlError::InvalidHost),
            ("https://h,i/", UrlError::InvalidHost),
            ("https://h/a b", UrlError::InvalidCharacter { at: 11 }),
            ("https://h/\n", UrlError::InvalidCharacter { at: 10 }),
            ("https://hé/", UrlError::InvalidCharacter { at: 9 }),
            ("", UrlError::NotAbsolute),
        ];
        for (input, err) in cases {
            assert_eq!(Url::parse(input), Err(err), "{input:?}");
        }
        assert_eq!(ok("https://h:65535/").port, Some(65535));
        assert_eq!(ok("https://h:1/").port, Some(1));
        assert_eq!(ok("https://h:00443/").port, Some(443));
        assert_eq!(Url::parse("http://[::1]:/"), Err(UrlError::BadPort));
        assert_eq!(Url::parse("https:/x://h/"), Err(UrlError::NotAbsolute));
    }

    #[test]
    fn loopback_is_127_slash_8_ipv6_one_and_localhost() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "127.0.0.0",
            "127.255.255.255",
            "[::1]",
            "localhost",
            "LOCALHOST",
            "LocalHost",
        ] {
            let url = std::format!("http://{host}:8080/oauth/token");
            assert!(ok(&url).is_loopback(), "{host}");
        }
        for host in [
            "10.0.0.1",
            "192.168.1.1",
            "128.0.0.1",
            "126.255.255.255",
            "auth.example.invalid",
            "example.invalid",
            // Spellings resolvers read differently (octal, hex, short forms): not trusted.
            "127.1",
            "0127.0.0.1",
            "127.0.0.01",
            "127.000.000.001",
            "0x7f.0.0.1",
            "2130706433",
            "127.0.0.1.",
            "127.0.0.1.nip.io",
            "127.256.0.1",
            // RFC 6761 §6.3 names that may still go to DNS.
            "localhost.",
            "app.localhost",
            "localhost.example.invalid",
            "localhost-1",
            "[::2]",
            "[::]",
            "[::ffff:127.0.0.1]",
            "[1::]",
            // Other spellings of ::1: not recognised (canonical form only).
            "[0:0:0:0:0:0:0:1]",
            "[0::1]",
            "[::0001]",
            "[::0.0.0.1]",
        ] {
            let url = std::format!("http://{host}/oauth/token");
            assert!(!ok(&url).is_loopback(), "{host}");
        }
    }

    /// Every dotted arrangement of one to five pieces from a set of edge cases (empty, leading
    /// zeros, 255 and 256, octal-looking, too long): loopback exactly when the standard parser
    /// reads an address in 127.0.0.0/8.
    #[test]
    fn ipv4_loopback_agrees_with_the_standard_parser_on_every_edge_case() {
        const PIECES: [&str; 10] = ["", "0", "00", "01", "1", "127", "255", "256", "0127", "1000"];
        let mut checked = 0;
        for len in 1..=5u32 {
            for mut n in 0..PIECES.len().pow(len) {
                let mut host = std::string::String::new();
                for i in 0..len {
                    if i > 0 {
                        host.push('.');
                    }
                    host.push_str(PIECES[n % PIECES.len()]);
                    n /= PIECES.len();
                }
                let expected =
                    host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.octets()[0] == 127);
                assert_eq!(is_ipv4_loopback(host.as_bytes()), expected, "{host}");
                checked += 1;
            }
        }
        assert_eq!(checked, 111_110);
    }

    #[test]
    fn plain_http_only_to_loopback_unless_opted_in() {
        use PlainHttp::{Anywhere, LoopbackOnly};
        for loopback in [
            "http://127.0.0.1/oauth/token",
            "http://127.1.2.3:9000/oauth/token",
            "http://[::1]:8089/oauth/token",
            "http://localhost/",
            "HTTP://LOCALHOST:1/",
        ] {
            assert_eq!(ok(loopback).check_plain_http(LoopbackOnly), Ok(()), "{loopback}");
            assert!(!ok(loopback).is_insecure(), "{loopback}");
        }
        for remote in [
            "http://10.0.0.1/oauth/token",
            "http://auth.example.invalid/oauth/token",
            "http://example.invalid",
            "http://127.1/oauth/token",
            "http://localhost./oauth/token",
        ] {
            assert_eq!(
                ok(remote).check_plain_http(LoopbackOnly),
                Err(UrlError::InsecureHttp),
                "{remote}"
            );
            assert!(ok(remote).is_insecure(), "{remote}");
            assert_eq!(ok(remote).check_plain_http(Anywhere), Ok(()), "{remote}");
        }
        for https in
            ["https://auth.example.invalid/oauth/token", "https://10.0.0.1/", "https://[::1]/"]
        {
            assert_eq!(ok(https).check_plain_http(LoopbackOnly), Ok(()), "{https}");
            assert!(!ok(https).is_insecure(), "{https}");
        }
        assert_eq!(PlainHttp::default(), LoopbackOnly);
        let message = UrlError::InsecureHttp.to_string();
        assert!(message.contains("clear text") && message.contains("https"), "{message}");
    }

    #[test]
    fn userinfo_is_refused_and_never_echoed() {
        for input in [
            "http://user:pw@127.0.0.1:1/oauth/token",
            "https://user:pw@login.example.invalid/oauth/token",
            "https://pw@h/",
            "https://:pw@h/",
        ] {
            assert_eq!(Url::parse(input), Err(UrlError::UserInfo), "{input}");
            let shown = Redacted(input).to_string();
            assert!(!shown.contains("pw") && shown.contains("***@"), "{shown}");
        }
        let message = UrlError::UserInfo.to_string();
        assert!(message.contains("not allowed"), "{message}");
        assert_eq!(
            Redacted("http://user:pw@127.0.0.1:1/oauth/token").to_string(),
            "http://***@127.0.0.1:1/oauth/token"
        );
        // Malformed in another way first: still masked.
        for (input, shown) in [
            ("http://user:p/w@h/t", "http://***@h/t"),
            ("http://user:pw@h/a b", "http://***@h/a b"),
            ("user:pw@h/oauth/token", "***@h/oauth/token"),
            ("http://user:pw@h/\n", "http://***@h/\\n"),
            // Refused for its fragment, and its `@` cannot be told from a password's (as in
            // the two below): masked to it.
            ("https://h/x?next=a@b#frag", "https://***@b#frag"),
            // The `://` after the `@` is not the scheme's.
            (":pw@://", "***@://"),
            // Nor one inside the password: a scheme name comes before it.
            (":pw://@h", "***@h"),
            ("user:p://w@h/t", "***@h/t"),
            ("x+y.z-1://u:pw@h/t", "x+y.z-1://***@h/t"),
            // A `#` or `?` in the password (it was shown whole: no `@` before it).
            ("https://alice:pa#ss@idp/token", "https://***@idp/token"),
            ("https://alice:pa?ss@idp/token", "https://***@idp/token"),
        ] {
            assert_eq!(Redacted(input).to_string(), shown, "{input:?}");
        }
        // A password can make a valid URL (a port, then a path): masked all the same, and so
        // is an `@` in a valid URL's path or query (it cannot be told from such a password).
        for (input, shown) in [
            (
                "https://alice:2024/pw@idp.example/oauth/token",
                "https://***@idp.example/oauth/token",
            ),
            ("https://alice:2024/p?w@idp/", "https://***@idp/"),
            ("https://h/users/a@b/token?x=1", "https://***@b/token?x=1"),
        ] {
            assert_eq!(Redacted(input).to_string(), shown, "{input:?}");
        }
        let valid = "https://h/users/token?x=1";
        assert_eq!(Redacted(valid).to_string(), valid);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = Url::parse(&s);
            let _ = Redacted(&s).to_string();
        }

        /// An IPv4 host is loopback exactly when the standard parser reads it as an address in
        /// 127.0.0.0/8 (dotted decimal, leading zeros and short forms refused).
        #[test]
        fn ipv4_loopback_matches_the_standard_parser(
            octets in proptest::collection::vec("(0|127|1[0-9]{0,2}|25[0-9]|0[0-9]{1,2}|0x7f)", 1..6),
        ) {
            let host = octets.join(".");
            let url = std::format!("http://{host}/");
            let expected = host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.octets()[0] == 127);
            prop_assert_eq!(ok(&url).is_loopback(), expected, "{}", host);
        }

        /// Whatever surrounds it, a password is never displayed.
        #[test]
        fn redacted_never_shows_the_password(
            scheme in "(https?://)?",
            user in "[a-z]{0,6}",
            // Digits and a `/` first make a port and a path of it: a valid URL.
            lead in "([0-9]{1,5}[/?])?",
            password in "[A-Za-z0-9/:%.!$?#]{0,10}",
            rest in "[a-z0-9.:]{1,12}(/[A-Za-z0-9/ @%.]{0,12})?",
        ) {
            let input = std::format!("{scheme}{user}:{lead}SECRET{password}@{rest}");
            prop_assert!(!Redacted(&input).to_string().contains("SECRET"), "{}", input);
        }

        /// A port is read exactly as `u16::from_str` reads it without a sign, for every digit
        /// string (leading zeros, overflow, zero refused), and a sign is refused.
        #[test]
        fn port_matches_the_standard_parser(digits in "[-+]?[0-9]{0,7}") {
            let unsigned = digits.bytes().all(|b| b.is_ascii_digit());
            let expected = digits.parse::<u16>().ok().filter(|&p| p != 0 && unsigned);
            prop_assert_eq!(parse_port(&digits), expected);
        }

        #[test]
        fn parts_round_trip(
            https in any::<bool>(),
            host in "[a-z0-9][a-z0-9.-]{0,20}",
            port in proptest::option::of(1u16..),
            path in "(/[A-Za-z0-9._~%?=&-]{0,10}){0,3}",
        ) {
            let scheme = if https { "https" } else { "http" };
            let port_text = port.map(|p| std::format!(":{p}")).unwrap_or_default();
            let s = std::format!("{scheme}://{host}{port_text}{path}");
            let u = Url::parse(&s).unwrap();
            prop_assert_eq!(u.host, host.as_str());
            prop_assert_eq!(u.port, port);
            prop_assert_eq!(u.path_and_query, if path.is_empty() { "/" } else { path.as_str() });
        }
    }
}
