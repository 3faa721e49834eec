//! The client-credentials token request (RFC 6749 §4.4.2), encoded into a caller buffer.
//!
//! [`encode_token_request`] produces a [`TokenRequest`]: a view of method, target, header values
//! and body that any HTTP client can send, plus [`TokenRequest::write_http1`] for adapters that
//! write HTTP/1.1 to a socket themselves.
//!
//! The body is form-encoded (RFC 6749 Appendix B; space is `%20`, never `+`) and holds, in order:
//! `grant_type=client_credentials`, `scope` when configured (RFC 6749 §3.3), the configured extra
//! parameters (`audience`, `resource` (RFC 8707), ...), then the client authentication. Exactly one
//! authentication method is used per request (RFC 6749 §2.3):
//!
//! - [`AuthMethod::ClientSecretBasic`] (the default, and what Genesys Cloud expects): an
//!   `Authorization: Basic` header built per RFC 6749 §2.3.1; no credentials in the body.
//! - [`AuthMethod::ClientSecretPost`]: `client_id` and `client_secret` in the body (RFC 6749
//!   §2.3.1 allows it, "NOT RECOMMENDED").
//! - [`AuthMethod::ClientSecretJwt`]: `client_id`, `client_assertion_type` and an HS256
//!   `client_assertion` in the body (RFC 7523 §2.2); the secret never leaves the process.
//!
//! **The buffer holds the secret** (in the Basic header, the Post body, or as a replayable
//! assertion): wipe it (`zeroize`) once the request has been sent.
//!
//! The token URL must be `https`, or `http` to a loopback host (see
//! [`url`](crate::http::url#plain-http-only-to-loopback)): an `http` URL to any other host
//! would carry the credentials in clear text and is refused with [`UrlError::InsecureHttp`]
//! unless [`TokenRequestConfig::plain_http`] opts in.

use core::fmt;
use core::ops::Range;
use core::str::FromStr;

use super::form::{BufferTooSmall, Out, Sink, ascii, put_basic, put_decimal, put_pair};
use super::jwt::{self, AssertionClaims};
use crate::http::url::{PlainHttp, Scheme, Url, UrlError};
use crate::secret::Credentials;
use crate::time::{Duration, UnixTime};

/// How the client authenticates to the token endpoint (the names are RFC 7591 §2's
/// `token_endpoint_auth_method` values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum AuthMethod {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
    /// An HS256 JWT assertion signed with the secret (RFC 7523 §2.2).
    ClientSecretJwt,
}

impl AuthMethod {
    /// The RFC 7591 name: `client_secret_basic`, `client_secret_post` or `client_secret_jwt`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
        }
    }

    /// Reads a configuration value: `basic`, `post`, `jwt` or the full names, ignoring ASCII
    /// case and surrounding whitespace.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::ClientSecretJwt]
            .into_iter()
            .find(|m| {
                let full = m.as_str();
                s.eq_ignore_ascii_case(full)
                    || s.eq_ignore_ascii_case(full.trim_start_matches("client_secret_"))
            })
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authentication method name that [`AuthMethod::parse`] does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnknownAuthMethod;

impl fmt::Display for UnknownAuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown auth method (expected basic, post or jwt)")
    }
}

impl core::error::Error for UnknownAuthMethod {}

impl FromStr for AuthMethod {
    type Err = UnknownAuthMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthMethod::parse(s).ok_or(UnknownAuthMethod)
    }
}

/// What goes into every token request besides the credentials.
///
/// ```
/// use credflow_core::oauth::{AuthMethod, TokenRequestConfig};
/// let cfg = TokenRequestConfig {
///     auth: AuthMethod::ClientSecretPost,
///     scope: Some("read write"),
///     extra: &[("audience", "https://api.example.com")],
///     ..TokenRequestConfig::new("https://auth.example.com/oauth/token")
/// };
/// # let _ = cfg;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRequestConfig<'a> {
    /// The token endpoint, e.g. `https://login.mypurecloud.com/oauth/token`.
    pub token_url: &'a str,
    /// How the client authenticates.
    pub auth: AuthMethod,
    /// Space-separated scopes to request; `None` (or blank) sends no `scope` parameter, which
    /// is right for Genesys Cloud (rights come from the OAuth client's roles).
    pub scope: Option<&'a str>,
    /// Extra body parameters, sent in order after `scope`. Names reserved by the grant
    /// (`grant_type`, `scope`, `client_id`, `client_secret`, `client_assertion*`) are refused.
    pub extra: &'a [(&'a str, &'a str)],
    /// Lifetime of a `client_secret_jwt` assertion (default [`jwt::DEFAULT_LIFETIME`]).
    pub jwt_lifetime: Duration,
    /// Where `http` token URLs are allowed (default [`PlainHttp::LoopbackOnly`]).
    /// [`PlainHttp::Anywhere`] sends the credentials in clear text to any host that has an
    /// `http` URL: an explicit opt-in for test networks without TLS.
    pub plain_http: PlainHttp,
}

impl<'a> TokenRequestConfig<'a> {
    /// Basic authentication, no scope, no extras, default JWT lifetime, `http` only to
    /// loopback hosts.
    pub const fn new(token_url: &'a str) -> Self {
        TokenRequestConfig {
            token_url,
            auth: AuthMethod::ClientSecretBasic,
            scope: None,
            extra: &[],
            jwt_lifetime: jwt::DEFAULT_LIFETIME,
            plain_http: PlainHttp::LoopbackOnly,
        }
    }
}

/// What a `client_secret_jwt` assertion needs from the caller: the core reads neither clock nor
/// random source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JwtInputs {
    /// Current wall-clock time, for `iat` and `exp`.
    pub now: UnixTime,
    /// 16 bytes for `jti`, unique per assertion: uniqueness is what it needs, not secrecy
    /// (see [`jwt`] for how the session makes them).
    pub jti: [u8; 16],
}

/// Why a token request could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small: retry with at least `needed` bytes (the exact size).
    BufferTooSmall {
        /// Bytes the request needs.
        needed: usize,
    },
    /// The configured token URL is unusable: malformed, with userinfo, or `http` to a host
    /// that is not loopback ([`UrlError::InsecureHttp`]) without the opt-in.
    InvalidUrl(UrlError),
    /// [`AuthMethod::ClientSecretJwt`] was chosen but no [`JwtInputs`] were given.
    MissingJwtInputs,
    /// [`AuthMethod::ClientSecretJwt`] was chosen but credflow-core was built without its `jwt`
    /// feature (a firmware build that trims it).
    JwtDisabled,
    /// `extra[index]` uses a name the grant itself sets; configure scope and authentication
    /// through their own fields.
    ReservedParameter {
        /// Index in [`TokenRequestConfig::extra`].
        index: usize,
    },
    /// `extra[index]` has an empty name.
    EmptyParameterName {
        /// Index in [`TokenRequestConfig::extra`].
        index: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "token request buffer too small: {needed} bytes needed")
            }
            EncodeError::InvalidUrl(e) => write!(f, "invalid token URL: {e}"),
            EncodeError::MissingJwtInputs => {
                f.write_str("client_secret_jwt needs the current time and a random jti")
            }
            EncodeError::JwtDisabled => f.write_str(
                "client_secret_jwt is not built in: enable credflow-core's `jwt` feature",
            ),
            EncodeError::ReservedParameter { index } => write!(
                f,
                "extra parameter #{index} uses a reserved name (grant_type, scope, client_id, client_secret, client_assertion*)"
            ),
            EncodeError::EmptyParameterName { index } => {
                write!(f, "extra parameter #{index} has an empty name")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

impl From<BufferTooSmall> for EncodeError {
    fn from(e: BufferTooSmall) -> Self {
        EncodeError::BufferTooSmall { needed: e.needed }
    }
}

/// The `Content-Type` of a token request body.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// An encoded token request: every part borrows the caller's buffer.
///
/// Treat the fields as read-only: [`TokenRequest::headers`] reports the `Content-Length` of the
/// body as encoded. `Debug` shows neither the `Authorization` value nor the body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenRequest<'b> {
    /// The `Host` header value: host, plus `:port` when not the scheme's default.
    pub host: &'b str,
    /// The host to connect to and verify the certificate for: no port, no IPv6 brackets.
    pub hostname: &'b str,
    /// The request target (path and query).
    pub path: &'b str,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The port to connect to.
    pub port: u16,
    /// The `Authorization` header value (`Basic ...`) for [`AuthMethod::ClientSecretBasic`].
    pub authorization: Option<&'b str>,
    /// Always [`FORM_CONTENT_TYPE`].
    pub content_type: &'static str,
    /// The form-encoded body.
    pub body: &'b str,
    content_length: &'b str,
}

impl<'b> TokenRequest<'b> {
    /// The request method (RFC 6749 §3.2: the token endpoint takes POST).
    pub const METHOD: &'static str = "POST";

    /// The header fields to send, in order: `Host`, `Authorization` (Basic only),
    /// `Content-Type`, `Content-Length`, `Accept: application/json`. HTTP/2 clients derive
    /// `:authority` from `Host` and may drop it.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &'b str)> + use<'b> {
        [
            Some(("Host", self.host)),
            self.authorization.map(|a| ("Authorization", a)),
            Some(("Content-Type", self.content_type)),
            Some(("Content-Length", self.content_length)),
            Some(("Accept", "application/json")),
        ]
        .into_iter()
        .flatten()
    }

    /// Writes the complete HTTP/1.1 request (request line, [`headers`](Self::headers),
    /// `Connection: keep-alive`, blank line, body) into `out` and returns its length.
    ///
    /// `out` then holds the secret too: wipe it after sending.
    pub fn write_http1(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        // The fields of `headers` in its order, as one list of pieces rather than a walk of
        // that iterator (smaller code). The test `http1_is_the_headers_in_order` fails if the
        // two lists part.
        let (auth_name, auth) = match self.authorization {
            Some(a) => ("\r\nAuthorization: ", a),
            None => ("", ""),
        };
        let mut w = Out::new(out);
        for part in [
            Self::METHOD,
            " ",
            self.path,
            " HTTP/1.1\r\nHost: ",
            self.host,
            auth_name,
            auth,
            "\r\nContent-Type: ",
            self.content_type,
            "\r\nContent-Length: ",
            self.content_length,
            "\r\nAccept: application/json\r\nConnection: keep-alive\r\n\r\n",
            self.body,
        ] {
            w.put(part.as_bytes());
        }
        Ok(w.finish()?.len())
    }
}

impl fmt::Debug for TokenRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("host", &self.host)
            .field("path", &self.path)
            .field("scheme", &self.scheme)
            .field("port", &self.port)
            .field("authorization", &self.authorization.map(|_| "<redacted>"))
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Body parameter names the grant sets itself.
pub(crate) fn is_reserved(name: &str) -> bool {
    matches!(name, "grant_type" | "scope" | "client_id" | "client_secret")
        || name.starts_with("client_assertion")
}

/// Encodes a client-credentials token request into `buf`.
///
/// On success the returned [`TokenRequest`] borrows `buf`; on
/// [`EncodeError::BufferTooSmall`] the error carries the exact size needed. 1 KiB is ample for
/// Basic or Post with typical scopes; allow about 1 KiB more for `client_secret_jwt`.
///
/// The buffer holds the secret: wipe it once the request has been sent.
///
/// ```
/// use credflow_core::oauth::{encode_token_request, TokenRequestConfig};
/// use credflow_core::secret::Credentials;
/// use zeroize::Zeroize;
///
/// let creds = Credentials::from_strs("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw").map_err(|(_, e)| e)?;
/// let cfg = TokenRequestConfig::new("https://login.mypurecloud.com/oauth/token");
/// let mut buf = [0u8; 1024];
/// let req = encode_token_request(&cfg, &creds, None, &mut buf)?;
/// assert_eq!((req.host, req.path), ("login.mypurecloud.com", "/oauth/token"));
/// assert_eq!(req.authorization, Some("Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3"));
/// assert_eq!(req.body, "grant_type=client_credentials");
/// // ... send it: `TokenRequest::METHOD`, `req.path`, `req.headers()`, `req.body` ...
/// buf.zeroize(); // the Authorization value carried the secret
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode_token_request<'b>(
    cfg: &TokenRequestConfig<'_>,
    creds: &Credentials,
    jwt: Option<&JwtInputs>,
    buf: &'b mut [u8],
) -> Result<TokenRequest<'b>, EncodeError> {
    let url = Url::parse_with(cfg.token_url, cfg.plain_http).map_err(EncodeError::InvalidUrl)?;
    for (index, (name, _)) in cfg.extra.iter().enumerate() {
        if name.is_empty() {
            return Err(EncodeError::EmptyParameterName { index });
        }
        if is_reserved(name) {
            return Err(EncodeError::ReservedParameter { index });
        }
    }
    let jwt = match (cfg.auth, jwt) {
        // Without the feature `jwt` stays `None`: the assertion code is not linked.
        (AuthMethod::ClientSecretJwt, _) if cfg!(not(feature = "jwt")) => {
            return Err(EncodeError::JwtDisabled);
        }
        (AuthMethod::ClientSecretJwt, None) => return Err(EncodeError::MissingJwtInputs),
        (AuthMethod::ClientSecretJwt, Some(j)) => Some(j),
        _ => None,
    };

    let mut out = Out::new(buf);
    let authority = url.authority();
    let host = span(&mut out, |w| {
        w.put(authority.host.as_bytes());
        if let Some(port) = authority.port {
            w.put(b":");
            put_decimal(w, u64::from(port));
        }
    });
    let path = span(&mut out, |w| _ = w.put(url.path_and_query.as_bytes()));
    let authorization = (cfg.auth == AuthMethod::ClientSecretBasic)
        .then(|| span(&mut out, |w| put_basic(w, creds.id.as_str(), creds.secret.expose_secret())));
    let body = span(&mut out, |w| {
        put_pair(w, false, "grant_type", "client_credentials");
        if let Some(scope) = cfg.scope.map(str::trim_ascii).filter(|s| !s.is_empty()) {
            put_pair(w, true, "scope", scope);
        }
        for (name, value) in cfg.extra {
            put_pair(w, true, name, value);
        }
        match (cfg.auth, jwt) {
            (AuthMethod::ClientSecretPost, _) => {
                put_pair(w, true, "client_id", creds.id.as_str());
                put_pair(w, true, "client_secret", creds.secret.expose_secret());
            }
            (AuthMethod::ClientSecretJwt, Some(inputs)) => {
                put_pair(w, true, "client_id", creds.id.as_str());
                put_pair(w, true, "client_assertion_type", jwt::ASSERTION_TYPE);
                put_pair(w, true, "client_assertion", "");
                let claims = AssertionClaims {
                    audience: cfg.token_url,
                    jti: inputs.jti,
                    issued_at: inputs.now,
                    lifetime: cfg.jwt_lifetime,
                };
                // Base64url and `.` are unreserved: the assertion needs no percent-encoding.
                jwt::put_client_assertion(w, creds, &claims);
            }
            _ => {}
        }
    });
    let body_len = u64::try_from(body.len()).unwrap_or(u64::MAX);
    let content_length = span(&mut out, |w| put_decimal(w, body_len));
    let written = out.finish()?;

    let text = |r: Range<usize>| ascii(written.get(r).unwrap_or_default());
    // Inside `host`, the bare name starts after a `[` and spans the URL's host minus brackets.
    let bracketed = usize::from(url.host.starts_with('['));
    let name_start = host.start.saturating_add(bracketed);
    let name_end = host.start.saturating_add(url.host.len()).saturating_sub(bracketed);
    Ok(TokenRequest {
        host: text(host),
        hostname: text(name_start..name_end),
        path: text(path),
        scheme: url.scheme,
        port: url.port_or_default(),
        authorization: authorization.map(text),
        content_type: FORM_CONTENT_TYPE,
        body: text(body),
        content_length: text(content_length),
    })
}

/// Runs `f` and returns the range of `out` it wrote.
fn span(out: &mut Out<'_>, f: impl FnOnce(&mut Out<'_>)) -> Range<usize> {
    let start = out.len();
    f(out);
    start..out.len()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::oauth::form::tests::percent_decode;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;

    const URL: &str = "https://login.mypurecloud.com/oauth/token";
    const JWT: JwtInputs = JwtInputs { now: UnixTime::from_secs(1_700_000_000), jti: [7; 16] };

    fn creds(id: &str, secret: &str) -> Credentials {
        Credentials::from_strs(id, secret).unwrap()
    }

    fn encode(
        cfg: &TokenRequestConfig<'_>,
        c: &Credentials,
        jwt: Option<&JwtInputs>,
    ) -> (String, Option<String>) {
        let mut buf = [0u8; 4096];
        let req = encode_token_request(cfg, c, jwt, &mut buf).unwrap();
        (req.body.into(), req.authorization.map(String::from))
    }

    /// Decodes a form body into pairs with the strict reference decoder.
    fn pairs(body: &str) -> Vec<(String, String)> {
        body.split('&')
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap();
                let d = |s| String::from_utf8(percent_decode(s).unwrap()).unwrap();
                (d(n), d(v))
            })
            .collect()
    }

    #[test]
    fn auth_method_names() {
        for m in [
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
            AuthMethod::ClientSecretJwt,
        ] {
            assert_eq!(AuthMethod::parse(m.as_str()), Some(m));
            assert_eq!(m.as_str().parse::<AuthMethod>(), Ok(m));
        }
        assert_eq!(AuthMethod::parse(" Basic "), Some(AuthMethod::ClientSecretBasic));
        assert_eq!(AuthMethod::parse("POST"), Some(AuthMethod::ClientSecretPost));
        assert_eq!(AuthMethod::parse("jwt"), Some(AuthMethod::ClientSecretJwt));
        assert_eq!("private_key_jwt".parse::<AuthMethod>(), Err(UnknownAuthMethod));
        assert_eq!(AuthMethod::parse(""), None);
        assert_eq!(AuthMethod::default(), AuthMethod::ClientSecretBasic);
    }

    #[test]
    fn basic_request_matches_rfc6749_4_4_2() {
        let c = creds("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw");
        let cfg = TokenRequestConfig::new("https://server.example.com/token");
        let mut buf = [0u8; 512];
        let req = encode_token_request(&cfg, &c, None, &mut buf).unwrap();
        let mut wire = [0u8; 512];
        let n = req.write_http1(&mut wire).unwrap();
        assert_eq!(
            core::str::from_utf8(&wire[..n]).unwrap(),
            "POST /token HTTP/1.1\r\n\
             Host: server.example.com\r\n\
             Authorization: Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 29\r\n\
             Accept: application/json\r\n\
             Connection: keep-alive\r\n\
             \r\n\
             grant_type=client_credentials"
        );
        assert_eq!(
            req.write_http1(&mut wire[..n - 1]),
            Err(EncodeError::BufferTooSmall { needed: n })
        );
        assert_eq!(
            (req.scheme, req.port, req.hostname),
            (Scheme::Https, 443, "server.example.com")
        );
        let names: Vec<_> = req.headers().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", "Authorization", "Content-Type", "Content-Length", "Accept"]);
        let dbg = std::format!("{req:?}");
        assert!(!dbg.contains("czZC") && dbg.contains("<redacted>"), "{dbg}");
    }

    #[test]
    fn post_puts_credentials_in_the_body_only() {
        let c = creds("id:1", "p a+s%s");
        let cfg = TokenRequestConfig {
            auth: AuthMethod::ClientSecretPost,
            scope: Some(" read write "),
            extra: &[("audience", "https://api.example/"), ("resource", "urn:x y")],
            ..TokenRequestConfig::new(URL)
        };
        let (body, auth) = encode(&cfg, &c, Some(&JWT));
        assert_eq!(auth, None);
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=read%20write\
             &audience=https%3A%2F%2Fapi.example%2F&resource=urn%3Ax%20y\
             &client_id=id%3A1&client_secret=p%20a%2Bs%25s"
        );
    }

    #[test]
    #[cfg(not(feature = "jwt"))]
    fn jwt_is_refused_when_not_built_in() {
        let cfg = TokenRequestConfig {
            auth: AuthMethod::ClientSecretJwt,
            ..TokenRequestConfig::new(URL)
        };
        assert_eq!(
            encode_token_request(&cfg, &creds("a", "b"), Some(&JWT), &mut [0u8; 1024]).map(|_| ()),
            Err(EncodeError::JwtDisabled)
        );
    }

    #[test]
    #[cfg(feature = "jwt")]
    fn jwt_body_and_assertion() {
        let c = creds("my client", "k");
        let cfg = TokenRequestConfig {
            auth: AuthMethod::ClientSecretJwt,
            ..TokenRequestConfig::new(URL)
        };
        assert_eq!(
            encode_token_request(&cfg, &c, None, &mut [0u8; 64]).map(|_| ()),
            Err(EncodeError::MissingJwtInputs)
        );
        let (body, auth) = encode(&cfg, &c, Some(&JWT));
        assert_eq!(auth, None);
        let p = pairs(&body);
        let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["grant_type", "client_id", "client_assertion_type", "client_assertion"]);
        assert_eq!(p[1].1, "my client");
        assert_eq!(p[2].1, jwt::ASSERTION_TYPE);
        // The assertion in the body is exactly the standalone one.
        let claims = AssertionClaims {
            audience: URL,
            jti: JWT.jti,
            issued_at: JWT.now,
            lifetime: cfg.jwt_lifetime,
        };
        let mut buf = [0u8; 1024];
        assert_eq!(p[3].1, jwt::client_assertion(&c, &claims, &mut buf).unwrap());
    }

    #[test]
    fn url_host_and_port_forms() {
        let c = creds("a", "b");
        let mut buf = [0u8; 512];
        let cfg = TokenRequestConfig::new("http://[::1]:8080/t?x=1");
        let req = encode_token_request(&cfg, &c, None, &mut buf).unwrap();
        assert_eq!(
            (req.host, req.hostname, req.port, req.path),
            ("[::1]:8080", "::1", 8080, "/t?x=1")
        );
        let cfg = TokenRequestConfig::new("https://h.example:443");
        let req = encode_token_request(&cfg, &c, None, &mut buf).unwrap();
        assert_eq!(
            (req.host, req.hostname, req.port, req.path),
            ("h.example", "h.example", 443, "/")
        );
        let cfg = TokenRequestConfig::new("https://h.example:8443/");
        let req = encode_token_request(&cfg, &c, None, &mut buf).unwrap();
        assert_eq!((req.host, req.hostname), ("h.example:8443", "h.example"));
    }

    #[test]
    fn credentials_go_over_plain_http_only_to_loopback_unless_opted_in() {
        let c = creds("a", "b");
        let mut buf = [0u8; 512];
        let remote = TokenRequestConfig::new("http://auth.example.invalid/oauth/token");
        assert_eq!(
            encode_token_request(&remote, &c, None, &mut buf).map(|_| ()),
            Err(EncodeError::InvalidUrl(UrlError::InsecureHttp))
        );
        assert!(buf.iter().all(|&b| b == 0), "nothing encoded, no Basic header");

        let opted_in = TokenRequestConfig { plain_http: PlainHttp::Anywhere, ..remote };
        let req = encode_token_request(&opted_in, &c, None, &mut buf).unwrap();
        assert_eq!((req.host, req.port), ("auth.example.invalid", 80));

        for local in ["http://127.0.0.1:8089/oauth/token", "http://[::1]/t", "http://localhost/t"] {
            let cfg = TokenRequestConfig::new(local);
            assert!(encode_token_request(&cfg, &c, None, &mut buf).is_ok(), "{local}");
        }
        let https = TokenRequestConfig::new("https://auth.example.invalid/oauth/token");
        assert!(encode_token_request(&https, &c, None, &mut buf).is_ok());
    }

    #[test]
    fn refusals() {
        let c = creds("a", "b");
        let mut buf = [0u8; 512];
        let bad_url = TokenRequestConfig::new("login.example/token");
        assert_eq!(
            encode_token_request(&bad_url, &c, None, &mut buf).map(|_| ()),
            Err(EncodeError::InvalidUrl(UrlError::NotAbsolute))
        );
        let with_userinfo = TokenRequestConfig::new("http://user:pw@127.0.0.1:1/oauth/token");
        assert_eq!(
            encode_token_request(&with_userinfo, &c, None, &mut buf).map(|_| ()),
            Err(EncodeError::InvalidUrl(UrlError::UserInfo))
        );
        for (i, name) in [
            "grant_type",
            "scope",
            "client_id",
            "client_secret",
            "client_assertion",
            "client_assertion_type",
        ]
        .into_iter()
        .enumerate()
        {
            let extra = [("ok", "1"), (name, "x")];
            let cfg = TokenRequestConfig { extra: &extra, ..TokenRequestConfig::new(URL) };
            assert_eq!(
                encode_token_request(&cfg, &c, None, &mut buf).map(|_| ()),
                Err(EncodeError::ReservedParameter { index: 1 }),
                "{i} {name}"
            );
        }
        let extra = [("", "x")];
        let cfg = TokenRequestConfig { extra: &extra, ..TokenRequestConfig::new(URL) };
        assert_eq!(
            encode_token_request(&cfg, &c, None, &mut buf).map(|_| ()),
            Err(EncodeError::EmptyParameterName { index: 0 })
        );
        // Blank scope is not sent; repeated extras (RFC 8707 resources) are.
        let extra = [("resource", "a"), ("resource", "b")];
        let cfg =
            TokenRequestConfig { scope: Some("  "), extra: &extra, ..TokenRequestConfig::new(URL) };
        assert_eq!(encode(&cfg, &c, None).0, "grant_type=client_credentials&resource=a&resource=b");
    }

    #[test]
    fn buffer_size_is_exact_for_every_method() {
        let c = creds("client", "secret");
        for auth in [
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
            AuthMethod::ClientSecretJwt,
        ]
        .into_iter()
        .filter(|a| cfg!(feature = "jwt") || *a != AuthMethod::ClientSecretJwt)
        {
            let cfg =
                TokenRequestConfig { auth, scope: Some("a b"), ..TokenRequestConfig::new(URL) };
            let mut buf = [0u8; 2048];
            let Err(EncodeError::BufferTooSmall { needed }) =
                encode_token_request(&cfg, &c, Some(&JWT), &mut buf[..10])
            else {
                panic!("{auth}: expected BufferTooSmall");
            };
            assert!(
                encode_token_request(&cfg, &c, Some(&JWT), &mut buf[..needed]).is_ok(),
                "{auth}"
            );
            assert_eq!(
                encode_token_request(&cfg, &c, Some(&JWT), &mut buf[..needed - 1]).map(|_| ()),
                Err(EncodeError::BufferTooSmall { needed }),
                "{auth}"
            );
        }
    }

    /// `write_http1` writes exactly the request line, `headers()` in order, `Connection`, a
    /// blank line and the body, with and without `Authorization`, and needs exactly its length.
    #[test]
    fn http1_is_the_headers_in_order() {
        let c = creds("id", "secret");
        for (auth, url) in [
            (AuthMethod::ClientSecretBasic, "http://[::1]:8080/t?x=1"),
            (AuthMethod::ClientSecretPost, URL),
        ] {
            let cfg =
                TokenRequestConfig { auth, scope: Some("a b"), ..TokenRequestConfig::new(url) };
            let mut buf = [0u8; 512];
            let req = encode_token_request(&cfg, &c, None, &mut buf).unwrap();
            let mut expected = std::format!("POST {} HTTP/1.1\r\n", req.path);
            for (name, value) in req.headers().chain([("Connection", "keep-alive")]) {
                expected.push_str(&std::format!("{name}: {value}\r\n"));
            }
            expected.push_str("\r\n");
            expected.push_str(req.body);
            let mut wire = [0u8; 512];
            let n = req.write_http1(&mut wire).unwrap();
            assert_eq!(core::str::from_utf8(&wire[..n]).unwrap(), expected);
            assert_eq!(
                req.write_http1(&mut wire[..n - 1]),
                Err(EncodeError::BufferTooSmall { needed: n })
            );
        }
    }

    proptest! {
        #[test]
        #[cfg(feature = "jwt")]
        fn body_never_leaks_the_secret_under_jwt(
            id in "[ -~]{1,40}",
            secret in "[ -~]{12,60}",
            scope in proptest::option::of("[a-z:/ .]{0,40}"),
            value in "\\PC{0,30}",
        ) {
            let elsewhere = [id.as_str(), value.as_str(), scope.as_deref().unwrap_or_default()];
            prop_assume!(!elsewhere.iter().any(|s| s.contains(&secret)));
            let c = creds(&id, &secret);
            let extra = [("audience", value.as_str())];
            let cfg = TokenRequestConfig { auth: AuthMethod::ClientSecretJwt, scope: scope.as_deref(), extra: &extra, ..TokenRequestConfig::new(URL) };
            let (body, auth) = encode(&cfg, &c, Some(&JWT));
            prop_assert!(auth.is_none());
            prop_assert!(!body.contains(&secret));
            let mut enc = [0u8; 256];
            prop_assert!(!body.contains(crate::oauth::form::encode(&secret, &mut enc).unwrap()));
            prop_assert!(!body.contains('+') && !body.contains(' '));
            let p = pairs(&body);
            prop_assert_eq!(p.iter().find(|(n, _)| n == "client_id").map(|(_, v)| v.as_str()), Some(id.as_str()));
            prop_assert_eq!(p.iter().find(|(n, _)| n == "audience").map(|(_, v)| v.as_str()), Some(value.as_str()));
        }

        #[test]
        fn spaces_are_never_plus(secret in "[ -~]{1,40}", scope in "[a-z +]{1,40}") {
            let c = creds("id", &secret);
            let cfg = TokenRequestConfig { auth: AuthMethod::ClientSecretPost, scope: Some(&scope), ..TokenRequestConfig::new(URL) };
            let (body, _) = encode(&cfg, &c, None);
            prop_assert!(!body.contains(' '));
            prop_assert_eq!(body.matches('+').count(), 0);
            let p = pairs(&body);
            prop_assert_eq!(p.last().map(|(_, v)| v.as_str()), Some(secret.as_str()));
            let sent_scope = p.iter().find(|(n, _)| n == "scope").map(|(_, v)| v.clone());
            let trimmed = scope.trim();
            prop_assert_eq!(sent_scope.as_deref(), (!trimmed.is_empty()).then_some(trimmed));
        }
    }
}
