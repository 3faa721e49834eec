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

use core::fmt;

/// The URL scheme: only the two that carry HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Scheme {
    /// `http`: cleartext; acceptable for a local test server only.
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
    /// `user:password@` before the host: credentials belong in the client configuration.
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
            UrlError::UserInfo => f.write_str("URL contains user info (user:pass@); remove it"),
            UrlError::Fragment => f.write_str("URL contains a #fragment; remove it"),
            UrlError::EmptyHost => f.write_str("URL has an empty host"),
            UrlError::InvalidHost => f.write_str("URL host has invalid characters"),
            UrlError::BadPort => f.write_str("URL port is not a number in 1..=65535"),
            UrlError::MissingPath => f.write_str("URL has a query but no path; add '/' before '?'"),
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
        // searcher, UTF-8 decoding) costs about 1 KiB of Cortex-M flash for nothing.
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

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = Url::parse(&s);
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
