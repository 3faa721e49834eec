//! Redirects (RFC 9110 §15.4): which ones a client follows, and which it refuses.
//!
//! A redirect asks the client to send its request again, to the URL in `Location` (RFC 9110
//! §10.2.2). Following one blindly sends the request's credentials wherever the server points:
//! HTTP libraries drop `Authorization` on a hop to another origin, but re-send a replayable body
//! on 307 and 308, and a token request carries the client secret in its body
//! (`client_secret_post`, RFC 6749 §2.3.1) or a signed assertion (`client_secret_jwt`,
//! RFC 7523 §2.2). The rules:
//!
//! | request | answer | what happens |
//! |---|---|---|
//! | token request | any 3xx | never followed: a token failure of class [`Redirected`](crate::oauth::TokenErrorClass::Redirected) whose description names the `Location`'s origin |
//! | API request | 301, 302, 303, 307 or 308 to the **same origin**, at most [`MAX_REDIRECTS`] in a row | [`Redirect::Follow`], with the bearer token |
//! | API request | another origin, no usable `Location`, too many hops, another 3xx | [`Redirect::Return`]: the 3xx goes to the caller as it is |
//!
//! **Token requests never follow.** A token endpoint that redirects is misconfigured (an outdated
//! URL, `http` for `https`, a path off by a slash, a proxy's login page) or hostile; following
//! would hand the secret to the target. Retrying cannot help until the token URL is fixed, so
//! the session stops requesting tokens
//! ([`RejectReason::Redirected`](crate::lifecycle::RejectReason::Redirected)) rather than send
//! the credentials again and again to a URL that does not take them.
//!
//! **API requests follow only within their origin** (RFC 6454: scheme, host and port; `https` to
//! `http` is another origin): that is where the bearer token is meant to go, and where the
//! session's breaker and pacer apply. A redirect elsewhere (a download handed to a storage
//! service, say) is returned to the caller, who can fetch the `Location` with a client of its own
//! and without the token. The method follows RFC 9110, as HTTP libraries apply it: 303 becomes
//! `GET` without a body (§15.4.4), 301 and 302 turn a `POST` into a `GET` (§15.4.2, §15.4.3),
//! 307 and 308 keep the method and body (§15.4.8, §15.4.9).
//!
//! **The bearer token goes only to the API's origin**, on every request, not only on a hop:
//! [`check_token_origin`] is what an adapter asks before it attaches the token to a request a
//! caller built (by hand, or from an absolute URL in a response body: a `nextUri`, a
//! `selfUri`, a download link). Another origin is refused before anything is sent, rather than
//! sent without the token: credflow's pacing, retries and breaker are the API's, and a request
//! that quietly lost its credentials would fail later and elsewhere, or succeed where it should
//! not have gone. Plain `http` to a host that is not loopback is refused as for every URL that
//! carries credentials ([`Url::check_plain_http`]).
//!
//! Origins are shown as `scheme://host:port`, never with the path, query or userinfo: a
//! `Location`'s query may carry a signed URL or a token, and its userinfo a password.

use core::fmt;

use super::url::{PlainHttp, Scheme, Url, split_host_port};
use crate::text::push_decimal;

/// Redirects an API request follows in a row, at most; the next 3xx is returned as it is.
pub const MAX_REDIRECTS: usize = 5;

/// An origin (RFC 6454 §4): what a redirect may not cross with credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Origin<'a> {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host, brackets included for IPv6 literals; compared ignoring ASCII case.
    pub host: &'a str,
    /// The port, the scheme's default when the URL has none.
    pub port: u16,
}

/// Why a `Location` has no origin a client could go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LocationError {
    /// The field is absent or empty.
    Missing,
    /// A scheme other than `http` or `https` (`ftp:`, `javascript:`, …).
    NotHttp,
    /// Not a URL this reader understands: a malformed host or port, a byte that is not visible
    /// ASCII (percent-encoded or international host names included).
    Malformed,
}

impl<'a> Origin<'a> {
    /// The origin of a URL.
    pub const fn of(url: &Url<'a>) -> Origin<'a> {
        Origin { scheme: url.scheme, host: url.host, port: url.port_or_default() }
    }

    /// The origin `location` (a `Location` value) points to, for a request sent to `base`.
    ///
    /// A relative reference (`/path`, `path`, `?query`) stays on `base` (RFC 3986 §5.2); a
    /// network-path reference (`//host/path`) takes `base`'s scheme; userinfo (`user:pass@`) is
    /// skipped. As WHATWG URL parsers do for `http` and `https`, a backslash ends the host like a
    /// slash, so that the origin named is the one an HTTP library would go to.
    ///
    /// ```
    /// use credflow_core::http::redirect::Origin;
    /// use credflow_core::http::url::{Scheme, Url};
    ///
    /// let base = Origin::of(&Url::parse("https://login.example/oauth/token")?);
    /// let to = Origin::of_location("http://user:pw@evil.example:8080/x?code=1", base).unwrap();
    /// assert_eq!((to.scheme, to.host, to.port), (Scheme::Http, "evil.example", 8080));
    /// assert!(!to.same_as(&base));
    /// assert_eq!(Origin::of_location("/oauth/token/", base), Ok(base));
    /// # Ok::<(), credflow_core::http::url::UrlError>(())
    /// ```
    pub fn of_location(location: &'a str, base: Origin<'a>) -> Result<Origin<'a>, LocationError> {
        let bytes = location.as_bytes();
        if bytes.is_empty() {
            return Err(LocationError::Missing);
        }
        // Byte searches, as in `Url::parse`: no `str` pattern machinery in firmware builds. The
        // bytes searched for are ASCII, so every offset found is a character boundary.
        let (scheme, after) = if bytes.starts_with(b"//") {
            (base.scheme, 2)
        } else {
            // A scheme is letters, digits, `+`, `-` and `.` up to the first `:`, before any `/`,
            // `?` or `#` (RFC 3986 §3.1, §4.2); without one, the reference is relative.
            let colon = bytes.iter().position(|&b| matches!(b, b':' | b'/' | b'\\' | b'?' | b'#'));
            let Some(colon) = colon.filter(|&i| bytes.get(i) == Some(&b':') && i > 0) else {
                return Ok(base);
            };
            let name = bytes.get(..colon).unwrap_or_default();
            if !name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
                return Ok(base);
            }
            let scheme = if name.eq_ignore_ascii_case(b"https") {
                Scheme::Https
            } else if name.eq_ignore_ascii_case(b"http") {
                Scheme::Http
            } else {
                return Err(LocationError::NotHttp);
            };
            if bytes.get(colon..colon.saturating_add(3)) != Some(b"://") {
                return Err(LocationError::Malformed);
            }
            (scheme, colon.saturating_add(3))
        };
        let rest = location.get(after..).unwrap_or_default();
        let end = rest.bytes().position(|b| matches!(b, b'/' | b'\\' | b'?' | b'#'));
        let authority = rest.get(..end.unwrap_or(rest.len())).unwrap_or_default();
        let host_port = match authority.bytes().rposition(|b| b == b'@') {
            Some(at) => authority.get(at.saturating_add(1)..).unwrap_or_default(),
            None => authority,
        };
        if !host_port.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(LocationError::Malformed);
        }
        let (host, port) = split_host_port(host_port).map_err(|_| LocationError::Malformed)?;
        Ok(Origin { scheme, host, port: port.unwrap_or(scheme.default_port()) })
    }

    /// Whether `other` is the same origin: same scheme and port, same host ignoring ASCII case.
    pub fn same_as(&self, other: &Origin<'_>) -> bool {
        self.scheme == other.scheme
            && self.port == other.port
            && self.host.eq_ignore_ascii_case(other.host)
    }

    /// Appends `scheme://host:port` to `out`, the port always written. Returns `false`, with
    /// `out` unchanged, if it does not fit. (Without `core::fmt`: the session writes this into
    /// a diagnosis on builds that format nothing else.)
    pub fn push_to(&self, out: &mut heapless::string::StringView) -> bool {
        let before = out.len();
        let fits = [self.scheme.as_str(), "://", self.host, ":"]
            .into_iter()
            .all(|part| out.push_str(part).is_ok())
            && push_decimal(out, u32::from(self.port));
        if !fits {
            out.truncate(before);
        }
        fits
    }
}

impl fmt::Display for Origin<'_> {
    /// `scheme://host:port`, the port always written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

/// What to do with an API request's 3xx answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum Redirect {
    /// Send the request to the `Location`, with its credentials: it is the same origin.
    Follow,
    /// Hand the 3xx to the caller as it is, and send nothing more.
    Return(NotFollowed),
}

/// Why an API request's redirect is returned to the caller rather than followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NotFollowed {
    /// Not one of 301, 302, 303, 307 and 308 (a 300 or a 304 names no single place to go).
    NotARedirect,
    /// No `Location`, or none an HTTP client can go to.
    NoLocation,
    /// The `Location` is on another origin: the bearer token does not go there.
    OtherOrigin,
    /// [`MAX_REDIRECTS`] were followed already.
    TooManyHops,
}

/// Decides on an API request's 3xx answer (see the [module docs](self)).
///
/// `from` is the origin of the request the caller made, `to` where the `Location` points
/// (resolved; `None` when there is no usable one), `hops` the redirects this request followed
/// already.
///
/// ```
/// use credflow_core::http::redirect::{decide, NotFollowed, Origin, Redirect};
/// use credflow_core::http::url::Url;
///
/// let api = Origin::of(&Url::parse("https://api.example/api/v2/users")?);
/// let moved = Origin::of(&Url::parse("https://API.example/api/v2/users/")?);
/// let storage = Origin::of(&Url::parse("https://storage.example/f?sig=x")?);
/// assert_eq!(decide(308, &api, Some(&moved), 0), Redirect::Follow);
/// assert_eq!(decide(303, &api, Some(&storage), 0), Redirect::Return(NotFollowed::OtherOrigin));
/// # Ok::<(), credflow_core::http::url::UrlError>(())
/// ```
pub fn decide(status: u16, from: &Origin<'_>, to: Option<&Origin<'_>>, hops: usize) -> Redirect {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Redirect::Return(NotFollowed::NotARedirect);
    }
    let Some(to) = to else {
        return Redirect::Return(NotFollowed::NoLocation);
    };
    if !from.same_as(to) {
        return Redirect::Return(NotFollowed::OtherOrigin);
    }
    if hops >= MAX_REDIRECTS {
        return Redirect::Return(NotFollowed::TooManyHops);
    }
    Redirect::Follow
}

/// Why a request may not carry the API's bearer token (see [`check_token_origin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TokenOriginError {
    /// The request is for another scheme, host or port than the API's: an absolute URL taken
    /// from a response, or a request built by hand for another service. Fetch it with a client
    /// of your own, without the token.
    OtherOrigin,
    /// `http` to a host that is not loopback, without [`PlainHttp::Anywhere`]: the token would
    /// cross the network in clear text.
    InsecureHttp,
}

impl fmt::Display for TokenOriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenOriginError::OtherOrigin => {
                "the bearer token goes only to the API base's origin (scheme, host and port)"
            }
            TokenOriginError::InsecureHttp => {
                "plain http to a host that is not loopback would send the bearer token in clear \
                 text"
            }
        })
    }
}

impl core::error::Error for TokenOriginError {}

/// Whether a request to `to` may carry the bearer token of the API at `api`: only on the API's
/// own origin, and over `http` only to loopback unless `plain_http` allows it (see the
/// [module docs](self)). Ask before attaching the token; refuse the request on an error.
///
/// ```
/// use credflow_core::http::redirect::{check_token_origin, Origin, TokenOriginError};
/// use credflow_core::http::url::{PlainHttp, Url};
///
/// let api = Origin::of(&Url::parse("https://api.example/api/v2/")?);
/// let next = Origin::of(&Url::parse("https://API.example:443/api/v2/users?pageNumber=2")?);
/// let elsewhere = Origin::of(&Url::parse("https://api.example.evil/api/v2/users")?);
/// assert_eq!(check_token_origin(&next, &api, PlainHttp::LoopbackOnly), Ok(()));
/// assert_eq!(
///     check_token_origin(&elsewhere, &api, PlainHttp::LoopbackOnly),
///     Err(TokenOriginError::OtherOrigin)
/// );
/// # Ok::<(), credflow_core::http::url::UrlError>(())
/// ```
///
/// # Errors
///
/// [`TokenOriginError::OtherOrigin`] when `to` is not `api`'s origin;
/// [`TokenOriginError::InsecureHttp`] when it is, but plain `http` off loopback that
/// `plain_http` does not allow (an API base that was never checked).
pub fn check_token_origin(
    to: &Origin<'_>,
    api: &Origin<'_>,
    plain_http: PlainHttp,
) -> Result<(), TokenOriginError> {
    if !to.same_as(api) {
        return Err(TokenOriginError::OtherOrigin);
    }
    let url = Url { scheme: to.scheme, host: to.host, port: Some(to.port), path_and_query: "/" };
    url.check_plain_http(plain_http).map_err(|_| TokenOriginError::InsecureHttp)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;

    fn origin(url: &str) -> Origin<'_> {
        Origin::of(&Url::parse(url).unwrap())
    }

    const BASE: &str = "https://login.example/oauth/token";

    #[test]
    fn locations_resolve_to_their_origin_without_userinfo_path_or_query() {
        let base = origin(BASE);
        let cases = [
            ("http://127.0.0.1:4567/oauth/token?steal=1", "http://127.0.0.1:4567"),
            ("HTTPS://Evil.Example/x", "https://Evil.Example:443"),
            ("https://user:p@ss@evil.example:8443/", "https://evil.example:8443"),
            ("//other.example/x", "https://other.example:443"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            ("https://evil.example\\@login.example/", "https://evil.example:443"),
            ("https://evil.example?q=1", "https://evil.example:443"),
            ("https://evil.example#f", "https://evil.example:443"),
        ];
        for (location, shown) in cases {
            let to = Origin::of_location(location, base).unwrap();
            assert_eq!(to.to_string(), shown, "{location}");
            let mut pushed = heapless::String::<64>::new();
            assert!(to.push_to(pushed.as_mut_view()));
            assert_eq!(pushed.as_str(), shown, "{location}");
        }
        for relative in ["/oauth/token/", "token", "?x=1", "#f", "a/b:c", "./x:y"] {
            assert_eq!(Origin::of_location(relative, base), Ok(base), "{relative}");
        }
    }

    #[test]
    fn unusable_locations_say_why() {
        let base = origin(BASE);
        let cases = [
            ("", LocationError::Missing),
            ("ftp://files.example/x", LocationError::NotHttp),
            ("javascript:alert(1)", LocationError::NotHttp),
            ("http:evil.example", LocationError::Malformed),
            ("https://", LocationError::Malformed),
            ("https://evil example/", LocationError::Malformed),
            ("https://évil.example/", LocationError::Malformed),
            ("https://%65vil.example/", LocationError::Malformed),
            ("https://evil.example:99999/", LocationError::Malformed),
            ("https://evil.example:/", LocationError::Malformed),
            ("https://evil\n.example/", LocationError::Malformed),
        ];
        for (location, error) in cases {
            assert_eq!(Origin::of_location(location, base), Err(error), "{location:?}");
        }
    }

    #[test]
    fn same_origin_is_scheme_host_and_port() {
        let a = origin("https://api.example/x");
        assert!(a.same_as(&origin("https://API.EXAMPLE:443/y?z")));
        assert!(!a.same_as(&origin("http://api.example/x")), "https to http is another origin");
        assert!(!a.same_as(&origin("https://api.example:8443/x")));
        assert!(!a.same_as(&origin("https://api.example.evil/x")));
        assert!(!a.same_as(&origin("https://sub.api.example/x")));
    }

    #[test]
    fn only_same_origin_redirects_are_followed_and_only_so_many() {
        let from = origin("https://api.example/a");
        let same = origin("https://api.example/b");
        let other = origin("https://cdn.example/b");
        for status in [301, 302, 303, 307, 308] {
            assert_eq!(decide(status, &from, Some(&same), 0), Redirect::Follow, "{status}");
            assert_eq!(
                decide(status, &from, Some(&other), 0),
                Redirect::Return(NotFollowed::OtherOrigin)
            );
            assert_eq!(decide(status, &from, None, 0), Redirect::Return(NotFollowed::NoLocation));
        }
        for status in [300, 304, 305, 306, 399] {
            assert_eq!(
                decide(status, &from, Some(&same), 0),
                Redirect::Return(NotFollowed::NotARedirect)
            );
        }
        assert_eq!(decide(307, &from, Some(&same), MAX_REDIRECTS - 1), Redirect::Follow);
        assert_eq!(
            decide(307, &from, Some(&same), MAX_REDIRECTS),
            Redirect::Return(NotFollowed::TooManyHops)
        );
    }

    #[test]
    fn the_bearer_token_goes_only_to_the_apis_origin() {
        use PlainHttp::{Anywhere, LoopbackOnly};
        let api = origin("https://api.example/api/v2/");
        for same in ["https://api.example/x?y", "https://API.Example:443/", "https://api.example"] {
            assert_eq!(check_token_origin(&origin(same), &api, LoopbackOnly), Ok(()), "{same}");
        }
        for other in [
            "http://api.example/api/v2/",
            "https://api.example:8443/api/v2/",
            "https://api.example.evil/api/v2/",
            "https://evil.api.example/api/v2/",
            "https://login.example/api/v2/",
            "https://127.0.0.1/api/v2/",
        ] {
            for plain_http in [LoopbackOnly, Anywhere] {
                let to = origin(other);
                let refused = Err(TokenOriginError::OtherOrigin);
                assert_eq!(check_token_origin(&to, &api, plain_http), refused, "{other}");
            }
        }
        // Loopback over http: the emulator's and the tests' setting.
        let local = origin("http://127.0.0.1:8089/api/v2/");
        let next = origin("http://127.0.0.1:8089/api/v2/users?pageNumber=2");
        assert_eq!(check_token_origin(&next, &local, LoopbackOnly), Ok(()));
        let other_port = origin("http://127.0.0.1:8090/x");
        let refused = Err(TokenOriginError::OtherOrigin);
        assert_eq!(check_token_origin(&other_port, &local, LoopbackOnly), refused);
        // An API base that was never checked: its own origin is still refused over plain
        // http off loopback, unless opted in.
        let lab = origin("http://api.example.invalid/api/v2/");
        let insecure = Err(TokenOriginError::InsecureHttp);
        assert_eq!(check_token_origin(&lab, &lab, LoopbackOnly), insecure);
        assert_eq!(check_token_origin(&lab, &lab, Anywhere), Ok(()));
        let message = TokenOriginError::OtherOrigin.to_string();
        assert!(message.contains("only to the API base's origin"), "{message}");
        let message = TokenOriginError::InsecureHttp.to_string();
        assert!(message.contains("clear text"), "{message}");
    }

    #[test]
    fn an_origin_that_does_not_fit_leaves_the_text_alone() {
        let long = std::format!("https://{}.example/", "a".repeat(60));
        let to = Origin::of_location(&long, origin(BASE)).unwrap();
        let mut out = heapless::String::<32>::new();
        out.push_str("to ").unwrap();
        assert!(!to.push_to(out.as_mut_view()));
        assert_eq!(out.as_str(), "to ");
        let mut ports = heapless::String::<64>::new();
        for port in [1u16, 10, 80, 65535] {
            ports.clear();
            let o = Origin { scheme: Scheme::Http, host: "h", port };
            assert!(o.push_to(ports.as_mut_view()));
            assert_eq!(ports.as_str(), std::format!("http://h:{port}"));
        }
    }

    proptest! {
        /// Whatever a server writes in `Location`: no panic, and an origin found is printable
        /// without control characters or anything after the host.
        #[test]
        fn never_panics_and_shows_only_the_origin(location in "\\PC{0,40}") {
            let base = origin(BASE);
            if let Ok(to) = Origin::of_location(&location, base) {
                let shown = to.to_string();
                prop_assert!(!shown.chars().any(char::is_control));
                prop_assert!(!to.host.contains(['/', '?', '#', '@', '\\']), "{}", shown);
            }
        }
    }
}
