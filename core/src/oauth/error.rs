//! Token endpoint error responses (RFC 6749 §5.2), read and classified.
//!
//! [`parse_token_error`] reads `error`, `error_description` and `error_uri`, plus the
//! `description` Genesys Cloud sends beside `error_description` and the `message` many gateways
//! send, and classifies the failure into a [`TokenErrorClass`] that says what to do next.
//!
//! Classification follows the `error` code, not the status: `invalid_client` arrives as 400 or
//! 401 (RFC 6749 §5.2 allows both), and Genesys Cloud reports its token rate limit as
//! **400 `invalid_request`** with a description starting `rate limit exceeded`, not as 429.
//! A 3xx is [`TokenErrorClass::Redirected`] unless its body names rejected credentials, scope
//! or grant: token requests never follow redirects ([`http::redirect`](crate::http::redirect)).
//! A body without an `error` code (an HTML page from a proxy, an empty body, another JSON
//! shape) is classified by status: 408 and 5xx are transient, 429 is a rate limit, and a bare
//! 401 from a token endpoint is taken as rejected credentials (it almost always is). A 2xx
//! status with an error body (some servers do that) is classified by its body like any other.
//!
//! All text is the server's, unescaped, bounded, cut at a character boundary, with control
//! characters replaced by spaces so it cannot forge log lines. It never contains the client's
//! secret: the server does not echo it.

use core::fmt;

use super::response::{MAX_JSON_DEPTH, bounded_text_into, json_object};
use crate::json::{self, Value};
use crate::text::push_sanitized;

/// The `error` code of RFC 6749 §5.2.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `invalid_request`: a missing or repeated parameter, or (Genesys) a rate limit.
    InvalidRequest,
    /// `invalid_client`: client authentication failed.
    InvalidClient,
    /// `invalid_grant`: the grant is invalid or expired (not expected for client credentials).
    InvalidGrant,
    /// `unauthorized_client`: the client may not use this grant type.
    UnauthorizedClient,
    /// `unsupported_grant_type`: the server does not support client credentials.
    UnsupportedGrantType,
    /// `invalid_scope`: a requested scope is unknown, malformed or not allowed.
    InvalidScope,
    /// Any other code, as sent (cut to 64 bytes at a character boundary).
    Other(heapless::String<64>),
}

impl ErrorCode {
    /// Reads a code (ASCII case ignored for the known ones). `code` is text, already
    /// unescaped: an unknown code is kept as it is, cut to 64 bytes at a character boundary,
    /// control characters replaced by spaces.
    pub fn parse(code: &str) -> ErrorCode {
        // A known code has no control character and is far shorter than 64 bytes: it matches
        // after sanitizing exactly when it matched before.
        ErrorCode::from_sanitized(sanitized(code))
    }

    /// [`ErrorCode::parse`] of text already cut to 64 bytes and sanitized (which sanitizing
    /// again would not change): the parser's path, without a second copy of the text.
    fn from_sanitized(code: heapless::String<64>) -> ErrorCode {
        match KNOWN.iter().find(|(name, _)| name.eq_ignore_ascii_case(&code)) {
            Some(&(_, known)) => known.code(),
            None => ErrorCode::Other(code),
        }
    }

    /// The code as sent on the wire.
    pub fn as_str(&self) -> &str {
        let known = match self {
            ErrorCode::InvalidRequest => Known::InvalidRequest,
            ErrorCode::InvalidClient => Known::InvalidClient,
            ErrorCode::InvalidGrant => Known::InvalidGrant,
            ErrorCode::UnauthorizedClient => Known::UnauthorizedClient,
            ErrorCode::UnsupportedGrantType => Known::UnsupportedGrantType,
            ErrorCode::InvalidScope => Known::InvalidScope,
            ErrorCode::Other(code) => return code,
        };
        KNOWN.iter().find(|&&(_, k)| k == known).map_or("", |&(name, _)| name)
    }
}

/// The codes RFC 6749 §5.2 defines: the one list of their names, each beside its variant.
/// The table holds [`Known`] (a byte), not whole `ErrorCode`s (each as large as `Other`'s text).
const KNOWN: [(&str, Known); 6] = [
    ("invalid_request", Known::InvalidRequest),
    ("invalid_client", Known::InvalidClient),
    ("invalid_grant", Known::InvalidGrant),
    ("unauthorized_client", Known::UnauthorizedClient),
    ("unsupported_grant_type", Known::UnsupportedGrantType),
    ("invalid_scope", Known::InvalidScope),
];

/// The known variants of [`ErrorCode`], without `Other`'s text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
}

impl Known {
    fn code(self) -> ErrorCode {
        match self {
            Known::InvalidRequest => ErrorCode::InvalidRequest,
            Known::InvalidClient => ErrorCode::InvalidClient,
            Known::InvalidGrant => ErrorCode::InvalidGrant,
            Known::UnauthorizedClient => ErrorCode::UnauthorizedClient,
            Known::UnsupportedGrantType => ErrorCode::UnsupportedGrantType,
            Known::InvalidScope => ErrorCode::InvalidScope,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `text` cut to `C` bytes at a character boundary, control characters replaced by spaces
/// (no unescaping: it is already text).
fn sanitized<const C: usize>(text: &str) -> heapless::String<C> {
    let mut out = heapless::String::new();
    let _ = push_sanitized(out.as_mut_view(), &mut text.chars());
    out
}

/// What a failed token request means for the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TokenErrorClass {
    /// `invalid_client`, `unauthorized_client`, or a bare 401: fatal until the credentials or
    /// the client's configuration change.
    CredentialsRejected,
    /// `invalid_scope`: fatal until the requested scope changes.
    ScopeRejected,
    /// `invalid_grant`, `unsupported_grant_type`: the server does not accept this grant from
    /// this client; a configuration problem.
    GrantRejected,
    /// 429, or 400 `invalid_request` described as `rate limit exceeded` (Genesys Cloud): retry
    /// later, after `Retry-After` if given.
    RateLimited,
    /// 408, 500, 502, 503, 504, `server_error`, `temporarily_unavailable`, or any 5xx without
    /// an OAuth body: retry with backoff.
    Transient,
    /// Anything else (another `invalid_request`, a 404 from the wrong URL, an unknown code):
    /// retrying the same request will not help, but the credentials are not known to be bad.
    Permanent,
    /// A 3xx: the token endpoint redirects. Token requests never follow a redirect (the
    /// secret would go along, see [`http::redirect`](crate::http::redirect)); fatal until the
    /// token URL is fixed. The session's description names the `Location`'s origin.
    Redirected,
    /// A success whose body was larger than the adapter reads (its limit, named in the
    /// description): not a token response, or one the limit does not allow for; fatal until
    /// the configuration changes.
    TooLarge,
}

impl TokenErrorClass {
    /// Whether no retry can succeed until the configuration changes (credentials, scope,
    /// grant): stop and report.
    #[must_use]
    pub const fn is_fatal(self) -> bool {
        matches!(
            self,
            TokenErrorClass::CredentialsRejected
                | TokenErrorClass::ScopeRejected
                | TokenErrorClass::GrantRejected
                | TokenErrorClass::Redirected
                | TokenErrorClass::TooLarge
        )
    }

    /// Whether the same request may succeed later (rate limit or transient failure).
    #[must_use]
    pub const fn is_retryable(self) -> bool {
        matches!(self, TokenErrorClass::RateLimited | TokenErrorClass::Transient)
    }

    /// The usual cause, for operators.
    pub const fn likely_cause(self) -> &'static str {
        match self {
            TokenErrorClass::CredentialsRejected => {
                "wrong client id or secret, a disabled OAuth client, or the wrong region (environments are isolated)"
            }
            TokenErrorClass::ScopeRejected => {
                "a requested scope is unknown or not allowed for this client; check the configured scope"
            }
            TokenErrorClass::GrantRejected => {
                "the OAuth client is not set up for the client-credentials grant"
            }
            TokenErrorClass::RateLimited => {
                "too many token requests for this client id (the limit is shared by every process using it)"
            }
            TokenErrorClass::Transient => {
                "the token endpoint or a proxy in front of it is overloaded or restarting"
            }
            TokenErrorClass::Permanent => "a malformed request or the wrong token URL",
            TokenErrorClass::Redirected => REDIRECTED_CAUSE,
            TokenErrorClass::TooLarge => {
                "the token URL serves something other than tokens, or a misbehaving server; raise the response limit only if this server's token responses really are that large"
            }
        }
    }
}

/// Why a token endpoint redirects, and what to do: shared by [`TokenErrorClass::Redirected`]
/// and [`RejectReason::Redirected`](crate::lifecycle::RejectReason::Redirected).
pub(crate) const REDIRECTED_CAUSE: &str = "the token URL redirects: an outdated URL, http for https, a path off by a slash, a proxy's login page, or a hostile server; token requests never follow redirects (the secret would go along): configure the final token URL if you trust it";

/// A token endpoint error, read and classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    /// The HTTP status.
    pub status: u16,
    /// The `error` code, if the body had one.
    pub code: Option<ErrorCode>,
    /// `error_description`, else `description`, else `message`; empty if none (cut to 256
    /// bytes at a character boundary, control characters replaced by spaces).
    pub description: heapless::String<256>,
    /// `error_uri`, if any (cut likewise).
    pub uri: Option<heapless::String<256>>,
    /// What it means for the next request.
    pub class: TokenErrorClass,
}

impl fmt::Display for OAuthError {
    /// `invalid_client (HTTP 401): authentication failed`; `HTTP 502` without a code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code} (HTTP {})", self.status)?,
            None => write!(f, "HTTP {}", self.status)?,
        }
        if !self.description.is_empty() {
            write!(f, ": {}", self.description)?;
        }
        Ok(())
    }
}

impl core::error::Error for OAuthError {}

/// Reads and classifies a token endpoint error response. Never panics, whatever the bytes;
/// a body that is not an OAuth error is classified by `status` alone.
#[must_use]
pub fn parse_token_error(status: u16, body: &[u8]) -> OAuthError {
    // The members are strings still escaped; one of another type, or repeated, is ignored
    // (the first string wins), and members after a syntax error are not read.
    let (mut error, mut error_uri) = (None, None);
    // The description: `error_description`, else `description`, else `message` (rank 0, 1, 2),
    // the first string of the best-ranked key seen.
    let (mut text, mut text_rank) = (None, 3u8);
    // Not an object: no text, whose first member is an error.
    let json = json_object(body).unwrap_or_default();
    for (key, value) in json::members(json, MAX_JSON_DEPTH).map_while(Result::ok) {
        let Value::Str(s) = value else { continue };
        let rank = match key {
            "error" => {
                error.get_or_insert(s);
                continue;
            }
            "error_uri" => {
                error_uri.get_or_insert(s);
                continue;
            }
            "error_description" => 0,
            "description" => 1,
            "message" => 2,
            _ => continue,
        };
        if rank < text_rank {
            (text, text_rank) = (Some(s), rank);
        }
    }
    // Each text is unescaped straight into its field of the result: no copies of 256-byte
    // strings moved through `Option`s.
    let mut out = OAuthError {
        status,
        code: None,
        description: heapless::String::new(),
        uri: None,
        class: TokenErrorClass::Permanent,
    };
    if let Some(e) = error {
        let mut text = heapless::String::new();
        bounded_text_into(e, false, text.as_mut_view());
        out.code = Some(ErrorCode::from_sanitized(text));
    }
    if let Some(d) = text {
        bounded_text_into(d, false, out.description.as_mut_view());
    }
    if let Some(u) = error_uri {
        bounded_text_into(u, false, out.uri.insert(heapless::String::new()).as_mut_view());
    }
    out.class = classify(status, out.code.as_ref(), &out.description);
    out
}

fn classify(status: u16, code: Option<&ErrorCode>, description: &str) -> TokenErrorClass {
    use TokenErrorClass::*;
    // By bytes: a prefix cut inside a character cannot equal this ASCII text either.
    let rate_limit_text = description
        .as_bytes()
        .trim_ascii_start()
        .get(..19)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"rate limit exceeded"));
    match code {
        Some(ErrorCode::InvalidClient | ErrorCode::UnauthorizedClient) => CredentialsRejected,
        Some(ErrorCode::InvalidScope) => ScopeRejected,
        Some(ErrorCode::InvalidGrant | ErrorCode::UnsupportedGrantType) => GrantRejected,
        // Whatever else its body says, a redirect did not reach the token endpoint's logic:
        // waiting and retrying cannot make it a token.
        _ if (300..400).contains(&status) => Redirected,
        Some(ErrorCode::InvalidRequest) if rate_limit_text => RateLimited,
        Some(ErrorCode::Other(c)) if c == "slow_down" => RateLimited,
        Some(ErrorCode::Other(c)) if c == "server_error" || c == "temporarily_unavailable" => {
            Transient
        }
        _ if status == 429 => RateLimited,
        _ if matches!(status, 408 | 500 | 502 | 503 | 504) => Transient,
        Some(_) => Permanent,
        None if (500..600).contains(&status) => Transient,
        None if status == 401 => CredentialsRejected,
        None => Permanent,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use TokenErrorClass::*;
    use proptest::prelude::*;
    use std::string::ToString;

    /// Every known code reads as its variant (in any case) and writes back as its name: the
    /// table pairs them, in one place.
    #[test]
    fn each_known_code_reads_and_writes_its_own_name() {
        for (name, known) in KNOWN {
            let code = known.code();
            assert_eq!(ErrorCode::parse(name), code, "{name}");
            assert_eq!(ErrorCode::parse(&name.to_ascii_uppercase()), code, "{name}");
            assert_eq!(code.as_str(), name);
            assert!(!matches!(code, ErrorCode::Other(_)), "{name}");
        }
    }

    fn class(status: u16, body: &str) -> TokenErrorClass {
        parse_token_error(status, body.as_bytes()).class
    }

    #[test]
    fn genesys_bad_credentials() {
        let body = br#"{"error":"invalid_client","description":"authentication failed","error_description":"authentication failed"}"#;
        for status in [400, 401] {
            let e = parse_token_error(status, body);
            assert_eq!(e.code, Some(ErrorCode::InvalidClient));
            assert_eq!(
                (e.description.as_str(), e.class),
                ("authentication failed", CredentialsRejected)
            );
            assert!(e.class.is_fatal() && !e.class.is_retryable());
            assert!(e.class.likely_cause().contains("region"));
            assert_eq!(
                e.to_string(),
                std::format!("invalid_client (HTTP {status}): authentication failed")
            );
        }
    }

    #[test]
    fn description_precedence_first_string_of_the_best_key() {
        let text = |body: &str| parse_token_error(400, body.as_bytes()).description;
        // `error_description` beats the others wherever it comes; its first string wins, a
        // non-string one is skipped.
        let body = r#"{"message":"m","description":"d","error_description":5,"error_description":"e1","error_description":"e2"}"#;
        assert_eq!(text(body), "e1");
        assert_eq!(text(r#"{"message":"m","description":"d1","description":"d2"}"#), "d1");
        assert_eq!(text(r#"{"message":"m1","description":null,"message":"m2"}"#), "m1");
        assert_eq!(text(r#"{"other":"x","message":[1]}"#), "");
        let e = parse_token_error(
            400,
            br#"{"error":1,"error":"invalid_scope","error":"invalid_client","error_uri":"u1","error_uri":"u2"}"#,
        );
        assert_eq!((e.code, e.uri.as_deref()), (Some(ErrorCode::InvalidScope), Some("u1")));
    }

    #[test]
    fn genesys_rate_limit_is_a_400() {
        let body = r#"{"error":"invalid_request","description":"Rate limit exceeded; retry later","error_description":"rate limit exceeded; retry in 10 s"}"#;
        let e = parse_token_error(400, body.as_bytes());
        assert_eq!(
            (e.class, e.description.as_str()),
            (RateLimited, "rate limit exceeded; retry in 10 s")
        );
        assert!(e.class.is_retryable() && !e.class.is_fatal());
        // The Genesys-only `description` is the fallback.
        assert_eq!(
            class(400, r#"{"error":"invalid_request","description":"RATE LIMIT EXCEEDED"}"#),
            RateLimited
        );
        assert_eq!(
            class(400, r#"{"error":"invalid_request","error_description":"rate limit"}"#),
            Permanent
        );
        // Leading whitespace is skipped; the 19 bytes must be the phrase exactly (T-1, T).
        for (description, expected) in [
            (" \\t rate limit exceeded", RateLimited),
            ("rate limit exceede", Permanent),
            ("rate limit exceedeD", RateLimited),
            (r"rate limit exceede\u00e9", Permanent),
            (r"\u00e9rate limit exceeded", Permanent),
            (r"rate\u00a0limit exceeded", Permanent),
        ] {
            let body = std::format!(
                r#"{{"error":"invalid_request","error_description":"{description}"}}"#
            );
            assert_eq!(class(400, &body), expected, "{description}");
        }
        assert_eq!(
            class(400, r#"{"error":"invalid_request","error_description":"missing grant_type"}"#),
            Permanent
        );
        assert_eq!(
            class(400, r#"{"error":"invalid_client","error_description":"rate limit exceeded"}"#),
            CredentialsRejected
        );
    }

    #[test]
    fn codes_decide_over_status() {
        let cases = [
            (200, r#"{"error":"invalid_client"}"#, CredentialsRejected),
            (400, r#"{"error":"unauthorized_client"}"#, CredentialsRejected),
            (400, r#"{"error":"invalid_scope"}"#, ScopeRejected),
            (400, r#"{"error":"invalid_grant"}"#, GrantRejected),
            (400, r#"{"error":"unsupported_grant_type"}"#, GrantRejected),
            (503, r#"{"error":"invalid_client"}"#, CredentialsRejected),
            (400, r#"{"error":"temporarily_unavailable"}"#, Transient),
            (500, r#"{"error":"server_error"}"#, Transient),
            (400, r#"{"error":"slow_down"}"#, RateLimited),
            (429, r#"{"error":"invalid_request"}"#, RateLimited),
            (503, r#"{"error":"invalid_request"}"#, Transient),
            (501, r#"{"error":"whatever"}"#, Permanent),
            (400, r#"{"error":"INVALID_CLIENT"}"#, CredentialsRejected),
        ];
        for (status, body, expected) in cases {
            assert_eq!(class(status, body), expected, "{status} {body}");
        }
    }

    #[test]
    fn bodies_without_a_code_go_by_status() {
        let html = "<html><body>502 Bad Gateway</body></html>";
        for (status, expected) in [
            (500, Transient),
            (502, Transient),
            (599, Transient),
            (408, Transient),
            (429, RateLimited),
            (401, CredentialsRejected),
            (400, Permanent),
            (403, Permanent),
            (404, Permanent),
            (200, Permanent),
        ] {
            assert_eq!(class(status, html), expected, "{status}");
            assert_eq!(class(status, ""), expected, "{status}");
            assert_eq!(class(status, r#"{"message":"nope","status":1}"#), expected, "{status}");
        }
        let e = parse_token_error(502, html.as_bytes());
        assert_eq!((&e.code, e.description.as_str(), &e.uri), (&None, "", &None));
        assert_eq!(e.to_string(), "HTTP 502");
        let e = parse_token_error(404, br#"{"message":"no such route","status":404}"#);
        assert_eq!(e.to_string(), "HTTP 404: no such route");
        // An `error` of another shape is not an OAuth error body.
        assert_eq!(class(400, r#"{"error":{"code":"x"}}"#), Permanent);
    }

    #[test]
    fn redirects_are_fatal_whatever_the_body_hopes_for() {
        for status in [300, 301, 302, 303, 304, 307, 308, 399] {
            for body in ["", "<html>moved</html>", r#"{"error":"temporarily_unavailable"}"#] {
                let e = parse_token_error(status, body.as_bytes());
                assert_eq!(e.class, Redirected, "{status} {body}");
                assert!(e.class.is_fatal() && !e.class.is_retryable());
            }
        }
        // A body that names rejected credentials still says so.
        assert_eq!(class(302, r#"{"error":"invalid_client"}"#), CredentialsRejected);
        assert!(Redirected.likely_cause().contains("never follow redirects"));
        assert!(TooLarge.is_fatal() && !TooLarge.is_retryable());
    }

    #[test]
    fn text_is_bounded_and_sanitized() {
        let long = "é".repeat(200); // 400 bytes
        let body = std::format!(
            r#"{{"error":"{}","error_description":"line1\nline2\u001b[31m {long}","error_uri":"https:\/\/docs.example\/e"}}"#,
            "x".repeat(70)
        );
        let e = parse_token_error(400, body.as_bytes());
        let Some(ErrorCode::Other(code)) = &e.code else { panic!("{:?}", e.code) };
        assert_eq!(code.len(), 64);
        assert!(e.description.starts_with("line1 line2 [31m é"), "{}", e.description);
        assert!(e.description.len() <= 256 && e.description.len() >= 255);
        assert_eq!(e.uri.as_deref(), Some("https://docs.example/e"));
        let code = ErrorCode::parse("ü".repeat(40).as_str());
        assert_eq!(code.as_str().len(), 64);
        assert_eq!(ErrorCode::parse("invalid_scope").as_str(), "invalid_scope");
    }

    /// Found by `fuzz/fuzz_targets/token_error.rs`: the code was JSON-unescaped twice, once
    /// when read and again in `ErrorCode::parse`, so a backslash the server sent was lost or
    /// turned into another character (the JSON string `"a\\b"` gave the code `a ` instead of
    /// `a\b`), and the literal text `slow\u005fdown` was read as `slow_down`.
    #[test]
    fn codes_are_unescaped_once() {
        let e = parse_token_error(400, br#"{"error":"a\\b\\\\c"}"#);
        assert_eq!(e.code.as_ref().map(ErrorCode::as_str), Some(r"a\b\\c"));
        assert_eq!(ErrorCode::parse(r"a\b"), ErrorCode::Other("a\\b".try_into().unwrap()));
        let e = parse_token_error(400, br#"{"error":"slow\\u005fdown"}"#);
        assert_eq!(e.code.as_ref().map(ErrorCode::as_str), Some(r"slow\u005fdown"));
        assert_eq!(e.class, Permanent);
        // Parsing is idempotent, control characters still become spaces.
        for code in [r"x\\", "tab\there", r"\u0041"] {
            let once = ErrorCode::parse(code);
            assert_eq!(ErrorCode::parse(once.as_str()), once);
        }
        assert_eq!(ErrorCode::parse("a\nb").as_str(), "a b");
    }

    /// `ErrorCode::parse` as it was before it matched the sanitized text (the reference).
    fn parse_reference(code: &str) -> ErrorCode {
        [
            ("invalid_request", ErrorCode::InvalidRequest),
            ("invalid_client", ErrorCode::InvalidClient),
            ("invalid_grant", ErrorCode::InvalidGrant),
            ("unauthorized_client", ErrorCode::UnauthorizedClient),
            ("unsupported_grant_type", ErrorCode::UnsupportedGrantType),
            ("invalid_scope", ErrorCode::InvalidScope),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(code))
        .map_or_else(|| ErrorCode::Other(sanitized(code)), |(_, c)| c)
    }

    #[test]
    fn known_codes_match_only_whole_and_clean() {
        use ErrorCode::*;
        let known = [
            InvalidRequest,
            InvalidClient,
            InvalidGrant,
            UnauthorizedClient,
            UnsupportedGrantType,
            InvalidScope,
        ];
        for code in known {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            assert_eq!(ErrorCode::parse(&code.as_str().to_ascii_uppercase()), code);
        }
        assert_eq!(ErrorCode::parse("Invalid_Client"), ErrorCode::InvalidClient);
        for code in [r"invalid_client\n", "invalid_client ", r"invalid_client\u0000"] {
            let e = parse_token_error(401, std::format!(r#"{{"error":"{code}"}}"#).as_bytes());
            assert!(matches!(e.code, Some(ErrorCode::Other(_))), "{code}: {:?}", e.code);
        }
        let long = std::format!("invalid_client{}", "x".repeat(60));
        let e = parse_token_error(401, std::format!(r#"{{"error":"{long}"}}"#).as_bytes());
        assert_eq!(e.code.as_ref().map(ErrorCode::as_str), long.get(..64));
    }

    proptest! {
        #[test]
        fn parse_matches_reference(
            code in "(?i)(invalid_request|invalid_client|invalid_grant|unauthorized_client|unsupported_grant_type|invalid_scope)?[a-z_ \n\t\u{7f}\u{85}éü]{0,70}",
        ) {
            prop_assert_eq!(ErrorCode::parse(&code), parse_reference(&code));
            let escaped: std::string::String = code.chars().map(|c| match c {
                '\n' => std::string::String::from("\\n"),
                '\t' => std::string::String::from("\\t"),
                c => c.into(),
            }).collect();
            let e = parse_token_error(400, std::format!(r#"{{"error":"{escaped}"}}"#).as_bytes());
            prop_assert_eq!(e.code, Some(parse_reference(&code)));
        }

        #[test]
        fn never_panics(status in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let e = parse_token_error(status, &body);
            let _ = e.to_string();
        }

        #[test]
        fn never_panics_on_near_json(
            status in any::<u16>(),
            members in proptest::collection::vec(
                ("(error|error_description|description|message|error_uri|x)", r#"("([a-zA-Z _;]|\\[nu/"\\]|\\u[0-9a-fA-F]{0,4}){0,30}"|[0-9]{1,3}|null|\[\]|\{\})"#),
                0..5,
            ),
        ) {
            let inner: std::vec::Vec<std::string::String> = members.iter().map(|(k, v)| std::format!("\"{k}\":{v}")).collect();
            let body = std::format!("{{{}}}", inner.join(","));
            let e = parse_token_error(status, body.as_bytes());
            prop_assert!(!e.description.chars().any(char::is_control));
        }
    }
}
