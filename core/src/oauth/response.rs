//! The successful token response (RFC 6749 §5.1), read into fixed-capacity storage.
//!
//! [`parse_token_response`] reads `access_token`, `token_type`, `expires_in` and `scope` and
//! ignores every other member. What servers really send is handled deliberately:
//!
//! - **`access_token`** is unescaped (`\/` is common) straight into an
//!   [`AccessToken<N>`](crate::secret::AccessToken); one that does not fit reports its true
//!   length ([`ResponseError::TokenTooLong`]) so the capacity can be raised.
//! - **`token_type`** must be `Bearer` in any case (RFC 6749 §7.1, RFC 6750 §4): a `DPoP` or
//!   `mac` token cannot be used as a bearer token, so it is refused with the type named. A
//!   missing `token_type` is refused too: RFC 6749 §5.1 makes it REQUIRED, and guessing would
//!   hide a misconfigured or non-OAuth endpoint.
//! - **`expires_in`** is accepted as a JSON number or a string holding one (PayPal sends
//!   strings; a string may also have a leading `+` and surrounding spaces): an integer, a
//!   fraction, an exponent (`3.6e3`, `1e30`), read exactly with integer arithmetic (no float
//!   code in firmware) and truncated to whole seconds. Missing or `null`:
//!   [`ResponseOptions::default_expires_in`]. Zero, negative or below one second (`0`, `-5`,
//!   `"0.9"`, `-1e30`): zero, flagged [`ExpiresInSource::NonPositive`]; the token is spent on
//!   arrival, and the [session](crate::session) counts such an answer as a failed request
//!   (with backoff and a diagnosis), never as a token to replace at once. Above
//!   [`ResponseOptions::max_expires_in`], however large (`1e30`, twenty digits): clamped, so a
//!   bogus "never expires" cannot pin a token forever. Anything else (`true`, `"soon"`): the
//!   default, flagged `Unparseable`. [`ExpiresInSource`] says which rule applied.
//! - **`scope`** (RFC 6749 §3.3) is kept (bounded, cut at a scope-token boundary) and compared
//!   with the requested scope as sets of space-separated tokens ([`ScopeCheck`]). A server that
//!   omits `scope` says the grant equals the request, but that is not proof: it is reported as
//!   [`ScopeCheck::NotReported`].
//! - A 2xx answer with an `error` member (some servers do this) is [`ResponseError::ErrorBody`]:
//!   read it with [`parse_token_error`](super::error::parse_token_error).
//!
//! Parsing is one pass of the crate's strict JSON reader (RFC 8259) with strings borrowed still
//! escaped and unescaped directly into their destination: no scratch buffer, no allocation, no
//! recursion (nesting deeper than [`MAX_JSON_DEPTH`] is [`ResponseError::Malformed`]). Stack use
//! is the returned value plus, only for a token containing escapes, `N` bytes of scratch (wiped).

use core::fmt;

use crate::http::retry_after::saturating_decimal;
use crate::json::{self, Value, unescape};
use crate::secret::{AccessToken, InlineToken, TokenError, TokenStorage, wipe};
use crate::text::push_sanitized;
use crate::time::Duration;
use crate::time::mul_sat;

/// Lifetime assumed when a response has no `expires_in`: one hour, the most common token life.
/// A wrong guess costs at most one rejected request: a 401 makes the lifecycle refresh.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// Longest lifetime believed by default: 7 days. Genesys Cloud allows at most 48 hours.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Bytes of the granted scope kept in [`TokenResponse::granted_scope`].
pub const SCOPE_CAPACITY: usize = 512;

/// Deepest JSON nesting accepted in token and error bodies (both are flat in practice).
pub const MAX_JSON_DEPTH: usize = 8;

/// How to read a token response.
///
/// ```
/// use credflow_core::oauth::ResponseOptions;
/// use credflow_core::Duration;
/// let opts = ResponseOptions {
///     default_expires_in: Duration::from_secs(300),
///     requested_scope: Some("read write"),
///     ..ResponseOptions::default()
/// };
/// # let _ = opts;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseOptions<'a> {
    /// Used when `expires_in` is missing, `null` or unreadable (capped by `max_expires_in`).
    /// Default [`DEFAULT_EXPIRES_IN`].
    pub default_expires_in: Duration,
    /// Longer lifetimes are clamped to this. Default [`MAX_EXPIRES_IN`].
    pub max_expires_in: Duration,
    /// The scope sent in the request, to compare with the granted one. Default `None`.
    pub requested_scope: Option<&'a str>,
}

impl Default for ResponseOptions<'_> {
    fn default() -> Self {
        ResponseOptions {
            default_expires_in: DEFAULT_EXPIRES_IN,
            max_expires_in: MAX_EXPIRES_IN,
            requested_scope: None,
        }
    }
}

/// Where [`TokenResponse::expires_in`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ExpiresInSource {
    /// The server's value, used as sent.
    Reported,
    /// Missing or `null`: the configured default.
    Defaulted,
    /// Zero, negative, or below one second: set to zero. The token is spent on arrival; the
    /// session counts the answer as a failed token request.
    NonPositive,
    /// Above the configured maximum: clamped to it.
    Clamped,
    /// Not a number (`true`, `"soon"`, an object): the configured default.
    Unparseable,
}

/// How the granted scope compares with the requested one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ScopeCheck {
    /// No scope was requested.
    NotRequested,
    /// A scope was requested and the response has no `scope`. RFC 6749 §5.1 lets the server
    /// omit it when the grant equals the request, but this is not proof of a full grant.
    NotReported,
    /// The same set of scope tokens.
    AsRequested,
    /// Some requested tokens were not granted (whether or not others were added): calls that
    /// need them will fail with 403. See [`missing_scopes`].
    Narrowed,
    /// Everything requested, and more.
    Widened,
}

/// Compares scopes as sets of tokens separated by ASCII whitespace (RFC 6749 §3.3 separates
/// them with spaces). A blank request counts as none.
#[must_use]
pub fn scope_check(requested: Option<&str>, granted: Option<&str>) -> ScopeCheck {
    let Some(requested) = requested.filter(|r| !r.trim_ascii().is_empty()) else {
        return ScopeCheck::NotRequested;
    };
    match granted {
        None => ScopeCheck::NotReported,
        Some(g) if missing_scopes(requested, g).next().is_some() => ScopeCheck::Narrowed,
        Some(g) if missing_scopes(g, requested).next().is_some() => ScopeCheck::Widened,
        Some(_) => ScopeCheck::AsRequested,
    }
}

/// The tokens of `requested` that are not in `granted`.
///
/// ```
/// use credflow_core::oauth::response::missing_scopes;
/// let missing: Vec<_> = missing_scopes("read write admin", "write read").collect();
/// assert_eq!(missing, ["admin"]);
/// ```
pub fn missing_scopes<'r>(requested: &'r str, granted: &str) -> impl Iterator<Item = &'r str> {
    requested
        .split_ascii_whitespace()
        .filter(move |r| !granted.split_ascii_whitespace().any(|g| g == *r))
}

/// A successful token response, read and checked.
///
/// `Debug` does not show the token ([`AccessToken`]'s is redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenResponse<const N: usize, S: TokenStorage = InlineToken<N>> {
    /// The bearer token.
    pub access_token: AccessToken<N, S>,
    /// How long the token lives from the moment the response was received.
    pub expires_in: Duration,
    /// Which rule produced `expires_in`.
    pub expires_in_source: ExpiresInSource,
    /// The `scope` member, unescaped, control characters replaced by spaces.
    pub granted_scope: Option<heapless::String<SCOPE_CAPACITY>>,
    /// The granted scope was longer than [`SCOPE_CAPACITY`]: `granted_scope` holds the whole
    /// tokens that fit (the comparison in `scope_check` still saw all of it unless it was both
    /// too long and escaped).
    pub granted_scope_truncated: bool,
    /// The granted scope compared with [`ResponseOptions::requested_scope`].
    pub scope_check: ScopeCheck,
}

/// Why a 2xx token response was not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// The body is empty.
    Empty,
    /// The body is not a JSON object: an HTML page from a proxy or captive portal, or the
    /// wrong URL.
    NotJson,
    /// A JSON object that could not be read: bad syntax, a member of the wrong type (such as a
    /// numeric `access_token`), a repeated member, or nesting deeper than [`MAX_JSON_DEPTH`].
    Malformed,
    /// A 2xx status with an RFC 6749 §5.2 `error` member: read the body with
    /// [`parse_token_error`](super::error::parse_token_error).
    ErrorBody,
    /// No `access_token`: probably not a token endpoint.
    MissingAccessToken,
    /// The `access_token` is empty or has a byte not allowed in an `Authorization` header.
    InvalidAccessToken(TokenError),
    /// The `access_token` is longer than the capacity: raise the token capacity (the const
    /// generic `N`) to at least `needed`.
    TokenTooLong {
        /// The token's length in bytes, unescaped.
        needed: usize,
        /// The capacity `N`.
        capacity: usize,
    },
    /// No `token_type` (RFC 6749 §5.1 makes it REQUIRED).
    MissingTokenType,
    /// A `token_type` other than `Bearer` (for instance `DPoP` or `mac`), which this client
    /// cannot use. Holds the received type (cut to 32 bytes).
    UnsupportedTokenType(heapless::String<32>),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Empty => f.write_str("token response body is empty"),
            ResponseError::NotJson => f.write_str(
                "token response is not a JSON object (a proxy error page or the wrong URL?)",
            ),
            ResponseError::Malformed => {
                f.write_str("token response JSON is malformed or has members of the wrong type")
            }
            ResponseError::ErrorBody => {
                f.write_str("token response has a success status but an OAuth error body")
            }
            ResponseError::MissingAccessToken => {
                f.write_str("token response has no access_token (not a token endpoint?)")
            }
            ResponseError::InvalidAccessToken(e) => {
                write!(f, "token response access_token is unusable: {e}")
            }
            ResponseError::TokenTooLong { needed, capacity } => write!(
                f,
                "access token needs {needed} bytes but the capacity is {capacity}; raise the token capacity"
            ),
            ResponseError::MissingTokenType => f.write_str("token response has no token_type"),
            ResponseError::UnsupportedTokenType(t) => {
                write!(f, "token_type {t:?} is not supported (only Bearer)")
            }
        }
    }
}

impl core::error::Error for ResponseError {}

/// Reads a successful (2xx) token response body. Never panics, whatever the bytes.
pub fn parse_token_response<const N: usize>(
    body: &[u8],
    opts: &ResponseOptions<'_>,
) -> Result<TokenResponse<N>, ResponseError> {
    parse_token_response_into(body, opts)
}

/// [`parse_token_response`], the token kept in `S` (see [`TokenStorage`]).
pub fn parse_token_response_into<const N: usize, S: TokenStorage>(
    body: &[u8],
    opts: &ResponseOptions<'_>,
) -> Result<TokenResponse<N, S>, ResponseError> {
    let body = json_object(body).map_err(|shape| match shape {
        Shape::Empty => ResponseError::Empty,
        Shape::NotJson => ResponseError::NotJson,
    })?;
    let raw = read_members(body)?;
    if raw.error {
        return Err(ResponseError::ErrorBody);
    }
    let token = raw.access_token.ok_or(ResponseError::MissingAccessToken)?;
    let token_type = raw.token_type.ok_or(ResponseError::MissingTokenType)?;
    if !unescape(token_type).map(|c| c.to_ascii_lowercase()).eq("bearer".chars()) {
        return Err(ResponseError::UnsupportedTokenType(bounded_text(token_type, false).0));
    }
    let access_token = access_token(token)?;
    let (expires_in, expires_in_source) = expires_in(raw.expires_in, opts);
    // The kept scope and its flag apart, not in a tuple with the raw text: taking the string
    // back out of that tuple was one more copy of it.
    let (granted_scope, granted_scope_truncated) = match raw.scope {
        Some(s) => {
            let (kept, truncated) = bounded_text::<SCOPE_CAPACITY>(s, true);
            (Some(kept), truncated)
        }
        None => (None, false),
    };
    let compared = raw.scope.zip(granted_scope.as_ref()).map(|(raw, kept)| {
        if granted_scope_truncated && !raw.contains('\\') { raw } else { kept.as_str() }
    });
    let scope_check = scope_check(opts.requested_scope, compared);
    Ok(TokenResponse {
        access_token,
        expires_in,
        expires_in_source,
        granted_scope,
        granted_scope_truncated,
        scope_check,
    })
}

/// The members read, strings still escaped.
#[derive(Default)]
struct Raw<'a> {
    access_token: Option<&'a str>,
    token_type: Option<&'a str>,
    expires_in: Option<RawExpires<'a>>,
    scope: Option<&'a str>,
    error: bool,
}

/// `expires_in` as found: a number, or a string (both read by [`decimal_seconds`], with
/// integer arithmetic: float parsing would add a large share of a firmware image), or
/// something else.
enum RawExpires<'a> {
    Decimal(&'a str),
    Other,
}

/// Reads the members of interest. A repeated one, or a string member of another type than
/// string or `null`, makes the body [`ResponseError::Malformed`]; others are skipped.
fn read_members(body: &[u8]) -> Result<Raw<'_>, ResponseError> {
    let mut raw = Raw::default();
    // Bit per member of interest already seen (`null` counts: a repeat is still a repeat).
    let mut seen = 0u8;
    for member in json::members(body, MAX_JSON_DEPTH) {
        let (key, value) = member.map_err(|_| ResponseError::Malformed)?;
        let (bit, string_slot) = match key {
            "access_token" => (1, Some(&mut raw.access_token)),
            "token_type" => (2, Some(&mut raw.token_type)),
            "scope" => (4, Some(&mut raw.scope)),
            "expires_in" => (8, None),
            "error" => (16, None),
            _ => continue,
        };
        if seen & bit != 0 {
            return Err(ResponseError::Malformed);
        }
        seen |= bit;
        match (string_slot, value) {
            (Some(slot), Value::Str(s)) => *slot = Some(s),
            (Some(_), Value::Null) => {}
            (Some(_), _) => return Err(ResponseError::Malformed),
            (None, value) if bit == 16 => raw.error = value != Value::Null,
            (None, value) => {
                raw.expires_in = match value {
                    Value::Null => None,
                    Value::Number(s) | Value::Str(s) => Some(RawExpires::Decimal(s)),
                    _ => Some(RawExpires::Other),
                };
            }
        }
    }
    Ok(raw)
}

fn access_token<const N: usize, S: TokenStorage>(
    raw: &str,
) -> Result<AccessToken<N, S>, ResponseError> {
    let from_token_error = |e| match e {
        TokenError::TooLong { needed, capacity } => {
            ResponseError::TokenTooLong { needed, capacity }
        }
        e => ResponseError::InvalidAccessToken(e),
    };
    if raw.contains('\\') {
        unescaped_token(raw).map_err(from_token_error)
    } else {
        AccessToken::new(raw).map_err(from_token_error)
    }
}

/// A token with escapes: unescaped into `N` bytes of scratch (kept out of the caller's frame
/// and wiped), measuring the whole token, then validated as usual. Valid tokens are ASCII, so
/// one char is one byte.
#[inline(never)]
fn unescaped_token<const N: usize, S: TokenStorage>(
    raw: &str,
) -> Result<AccessToken<N, S>, TokenError> {
    let mut scratch = [0u8; N];
    let mut len = 0usize;
    let mut result = Ok(());
    for c in unescape(raw) {
        match u8::try_from(c) {
            Ok(b) if b.is_ascii_graphic() => {
                if let Some(slot) = scratch.get_mut(len) {
                    *slot = b;
                }
                len = len.saturating_add(1);
            }
            _ => {
                result = Err(TokenError::InvalidCharacter { at: len });
                break;
            }
        }
    }
    let token = result.and_then(|()| match scratch.get(..len) {
        _ if len == 0 => Err(TokenError::Empty),
        Some(bytes) => AccessToken::new(super::form::ascii(bytes)),
        None => Err(TokenError::TooLong { needed: len, capacity: N }),
    });
    wipe(&mut scratch);
    token
}

fn expires_in(
    raw: Option<RawExpires<'_>>,
    opts: &ResponseOptions<'_>,
) -> (Duration, ExpiresInSource) {
    let default = (opts.default_expires_in.min(opts.max_expires_in), ExpiresInSource::Defaulted);
    let unparseable = (default.0, ExpiresInSource::Unparseable);
    match raw {
        None => default,
        Some(RawExpires::Decimal(s)) => match decimal_seconds(s.trim_ascii()) {
            Some(Sign::Positive(secs)) => from_secs(secs, opts),
            Some(Sign::Negative) => (Duration::ZERO, ExpiresInSource::NonPositive),
            None => unparseable,
        },
        Some(RawExpires::Other) => unparseable,
    }
}

enum Sign {
    Positive(u64),
    Negative,
}

/// A decimal number of seconds (`3600`, `+3600`, `3600.5`, `-30`, `3.6e3`, `1e30`, `.5`, `7.`),
/// truncated towards zero and saturated; `None` for anything else. Zero after truncation (and
/// any negative number) is [`Sign::Negative`].
///
/// Exact, with integer arithmetic only: the digits before the point the exponent moves are
/// read, the rest dropped; an exponent that moves the point past the last digit appends zeros
/// until the value saturates (at most 20), so neither a long number nor a huge exponent costs
/// more than one pass over the text.
fn decimal_seconds(s: &str) -> Option<Sign> {
    // By bytes: `str` patterns and slicing cost boundary checks and a searcher.
    let (negative, rest) = signed(s.as_bytes());
    // The mantissa: digits, then a point and digits if there is a point; a digit at least.
    let whole = leading_digits(rest);
    let mut mantissa_len = whole;
    if let [b'.', fraction @ ..] = rest.get(whole..).unwrap_or_default() {
        mantissa_len = whole.saturating_add(1).saturating_add(leading_digits(fraction));
    }
    let (mantissa, exponent) = rest.split_at_checked(mantissa_len)?;
    if !mantissa.iter().any(u8::is_ascii_digit) {
        return None;
    }
    // How many of the digits stand before the point the exponent moved. An exponent beyond
    // `usize` moves it past any text there is: saturated.
    let kept = match exponent {
        [] => whole,
        [b'e' | b'E', rest @ ..] => {
            let (negative, digits) = signed(rest);
            if digits.is_empty() || leading_digits(digits) != digits.len() {
                return None;
            }
            let shift = usize::try_from(saturating_decimal(digits)).unwrap_or(usize::MAX);
            if negative { whole.saturating_sub(shift) } else { whole.saturating_add(shift) }
        }
        _ => return None,
    };
    // Those digits, then a zero for each place the point moved past the last one (twenty
    // saturate any value but zero).
    let mut value = 0u64;
    let mut left = kept;
    for &b in mantissa {
        if left == 0 {
            break;
        }
        if b != b'.' {
            value = mul_sat(value, 10).saturating_add(u64::from(b.wrapping_sub(b'0')));
            left = left.saturating_sub(1);
        }
    }
    for _ in 0..left.min(20) {
        value = mul_sat(value, 10);
    }
    Some(if negative || value == 0 { Sign::Negative } else { Sign::Positive(value) })
}

/// A leading `-` (true) or `+` (false) split off.
fn signed(s: &[u8]) -> (bool, &[u8]) {
    match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    }
}

/// How many ASCII digits `s` starts with.
fn leading_digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn from_secs(secs: u64, opts: &ResponseOptions<'_>) -> (Duration, ExpiresInSource) {
    let d = Duration::from_secs(secs);
    if secs == 0 {
        (Duration::ZERO, ExpiresInSource::NonPositive)
    } else if d > opts.max_expires_in {
        (opts.max_expires_in, ExpiresInSource::Clamped)
    } else {
        (d, ExpiresInSource::Reported)
    }
}

// ---- JSON helpers shared with the error parser ----------------------------------------------

/// Why a body is not worth handing to the JSON parser.
pub(super) enum Shape {
    Empty,
    NotJson,
}

/// `body` without a UTF-8 BOM, if it looks like a JSON object (starts with `{`).
pub(super) fn json_object(body: &[u8]) -> Result<&[u8], Shape> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(Shape::Empty),
        Some(b'{') => Ok(body),
        Some(_) => Err(Shape::NotJson),
    }
}

/// `escaped` unescaped into at most `C` bytes, control characters replaced by spaces (server
/// text ends up in logs). If it does not fit, the kept prefix ends at a character boundary, or
/// with `whole_tokens` at a whitespace boundary; the flag says it was cut.
pub(super) fn bounded_text<const C: usize>(
    escaped: &str,
    whole_tokens: bool,
) -> (heapless::String<C>, bool) {
    let mut out = heapless::String::new();
    let truncated = bounded_text_into(escaped, whole_tokens, out.as_mut_view());
    (out, truncated)
}

/// [`bounded_text`] into a string of any capacity: one copy of the code for every capacity
/// (not one instance per capacity). Whether it was cut.
pub(super) fn bounded_text_into(
    escaped: &str,
    whole_tokens: bool,
    out: &mut heapless::string::StringView,
) -> bool {
    let Some(c) = push_sanitized(out, &mut unescape(escaped)) else {
        return false;
    };
    if whole_tokens {
        // Scope tokens are separated by spaces (RFC 6749 §3.3), and control characters are
        // spaces by now: ASCII whitespace is every separator there is.
        let keep = if c.is_ascii_whitespace() {
            out.len()
        } else {
            out.bytes().rposition(|b| b.is_ascii_whitespace()).unwrap_or(0)
        };
        out.truncate(keep);
        let keep = out.trim_ascii_end().len();
        out.truncate(keep);
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::string::{String, ToString};

    type Resp = TokenResponse<64>;

    fn parse(body: &str) -> Result<Resp, ResponseError> {
        parse_token_response(body.as_bytes(), &ResponseOptions::default())
    }

    fn parse_with(body: &str, requested: Option<&str>) -> Result<Resp, ResponseError> {
        parse_token_response(
            body.as_bytes(),
            &ResponseOptions { requested_scope: requested, ..Default::default() },
        )
    }

    fn expiry(value: &str) -> (Duration, ExpiresInSource) {
        let body =
            std::format!(r#"{{"access_token":"t","token_type":"bearer","expires_in":{value}}}"#);
        let r = parse(&body).unwrap();
        (r.expires_in, r.expires_in_source)
    }

    #[test]
    fn genesys_response() {
        let r = parse(
            r#"{"access_token":"abc.DEF-123_~+/=","token_type":"bearer","expires_in":86400}"#,
        )
        .unwrap();
        assert_eq!(r.access_token.as_str(), "abc.DEF-123_~+/=");
        assert_eq!(
            (r.expires_in, r.expires_in_source),
            (Duration::from_secs(86400), ExpiresInSource::Reported)
        );
        assert_eq!((&r.granted_scope, r.scope_check), (&None, ScopeCheck::NotRequested));
        let dbg = std::format!("{r:?}");
        assert!(!dbg.contains("abc.DEF"), "{dbg}");
    }

    #[test]
    fn escaped_token_comes_out_unescaped() {
        let r = parse(r#"{"token_type":"Bearer","access_token":"a\/b\u002Bc\\d\"e"}"#).unwrap();
        assert_eq!(r.access_token.as_str(), r#"a/b+c\d"e"#);
        assert_eq!(r.expires_in_source, ExpiresInSource::Defaulted);
    }

    #[test]
    fn token_length_is_the_true_one() {
        let long = "x".repeat(65);
        let body = std::format!(r#"{{"access_token":"{long}","token_type":"Bearer"}}"#);
        assert_eq!(
            parse(&body).unwrap_err(),
            ResponseError::TokenTooLong { needed: 65, capacity: 64 }
        );
        // Escaped: 100 `\/` are 200 bytes on the wire but 100 in the token.
        let body =
            std::format!(r#"{{"access_token":"{}","token_type":"Bearer"}}"#, r"\/".repeat(100));
        assert_eq!(
            parse(&body).unwrap_err(),
            ResponseError::TokenTooLong { needed: 100, capacity: 64 }
        );
        // At capacity (T) fits; escaped at capacity fits too.
        let exact =
            std::format!(r#"{{"access_token":"{}","token_type":"Bearer"}}"#, "y".repeat(64));
        assert_eq!(parse(&exact).unwrap().access_token.len(), 64);
        let exact =
            std::format!(r#"{{"access_token":"{}","token_type":"Bearer"}}"#, r"\/".repeat(64));
        assert_eq!(parse(&exact).unwrap().access_token.as_str(), "/".repeat(64));
    }

    #[test]
    fn unusable_tokens() {
        let cases = [
            (
                r#"{"access_token":"","token_type":"Bearer"}"#,
                ResponseError::InvalidAccessToken(TokenError::Empty),
            ),
            (
                r#"{"access_token":"a b","token_type":"Bearer"}"#,
                ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { at: 1 }),
            ),
            (
                r#"{"access_token":"ab\r\nX-Evil: 1","token_type":"Bearer"}"#,
                ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { at: 2 }),
            ),
            (
                r#"{"access_token":"ab\u0000","token_type":"Bearer"}"#,
                ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { at: 2 }),
            ),
            (
                r#"{"access_token":"\u00e9","token_type":"Bearer"}"#,
                ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { at: 0 }),
            ),
            (
                r#"{"access_token":"é","token_type":"Bearer"}"#,
                ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { at: 0 }),
            ),
            (r#"{"access_token":null,"token_type":"Bearer"}"#, ResponseError::MissingAccessToken),
            (r#"{"token_type":"Bearer"}"#, ResponseError::MissingAccessToken),
            (r#"{"access_token":42,"token_type":"Bearer"}"#, ResponseError::Malformed),
        ];
        for (body, err) in cases {
            assert_eq!(parse(body).unwrap_err(), err, "{body}");
        }
    }

    #[test]
    fn token_type_must_be_bearer() {
        assert!(parse(r#"{"access_token":"t","token_type":"BEARER"}"#).is_ok());
        assert!(parse(r#"{"access_token":"t","token_type":"B\u0065arer"}"#).is_ok());
        assert_eq!(parse(r#"{"access_token":"t"}"#).unwrap_err(), ResponseError::MissingTokenType);
        for t in ["DPoP", "mac", "", "bearer ", "N_A"] {
            let body = std::format!(r#"{{"access_token":"t","token_type":"{t}"}}"#);
            assert_eq!(
                parse(&body).unwrap_err(),
                ResponseError::UnsupportedTokenType(t.try_into().unwrap())
            );
        }
        let long = "z".repeat(40);
        let body = std::format!(r#"{{"access_token":"t","token_type":"{long}"}}"#);
        let Err(ResponseError::UnsupportedTokenType(t)) = parse(&body) else { panic!() };
        assert_eq!(t.len(), 32);
        assert!(std::format!("{}", ResponseError::UnsupportedTokenType(t)).contains("zzz"));
    }

    fn seconds(s: &str) -> Option<Option<u64>> {
        decimal_seconds(s).map(|sign| match sign {
            Sign::Positive(secs) => Some(secs),
            Sign::Negative => None,
        })
    }

    /// `decimal_seconds` by text: the exponent applied by moving the point in a string of
    /// digits, then the whole part read with saturation.
    fn seconds_reference(s: &str) -> Option<Option<u64>> {
        let (negative, number) = match s.as_bytes().first()? {
            b'-' => (true, s.get(1..)?),
            b'+' => (false, s.get(1..)?),
            _ => (false, s),
        };
        let (mantissa, exponent) = match number.split_once(['e', 'E']) {
            Some((m, e)) => {
                let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                // Exponents this test generates fit easily.
                (m, e.parse::<i64>().ok()?)
            }
            None => (number, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return None;
        }
        let digits = std::format!("{whole}{fraction}");
        let point = whole.len() as i64 + exponent;
        let integer = if point <= 0 {
            String::new()
        } else if point as usize <= digits.len() {
            digits[..point as usize].to_string()
        } else {
            digits.clone() + &"0".repeat(point as usize - digits.len())
        };
        let value = integer
            .bytes()
            .fold(0u64, |acc, b| acc.saturating_mul(10).saturating_add(u64::from(b - b'0')));
        Some(if negative || value == 0 { None } else { Some(value) })
    }

    #[test]
    fn decimal_seconds_saturate() {
        assert_eq!(seconds("18446744073709551615"), Some(Some(u64::MAX)));
        assert_eq!(seconds("18446744073709551616"), Some(Some(u64::MAX)));
        assert_eq!(seconds("18446744073709551614.9"), Some(Some(u64::MAX - 1)));
        assert_eq!(seconds("99999999999999999999999"), Some(Some(u64::MAX)));
        assert_eq!(seconds("-99999999999999999999999"), Some(None));
        assert_eq!(seconds(".5"), Some(None));
        assert_eq!(seconds("7."), Some(Some(7)));
        assert_eq!(seconds("+"), None);
        assert_eq!(seconds("-"), None);
        assert_eq!(seconds("."), None);
        assert_eq!(seconds("--1"), None);
        // Exponents: exact, truncated, saturated however large.
        assert_eq!(seconds("3.6e3"), Some(Some(3600)));
        assert_eq!(seconds("36E-1"), Some(Some(3)));
        assert_eq!(seconds("1e-3"), Some(None));
        assert_eq!(seconds("1e19"), Some(Some(10_000_000_000_000_000_000)));
        assert_eq!(seconds("1e20"), Some(Some(u64::MAX)));
        assert_eq!(seconds("1e30"), Some(Some(u64::MAX)));
        assert_eq!(seconds("-1e30"), Some(None));
        assert_eq!(seconds("0e99999999999999999999999"), Some(None));
        assert_eq!(seconds("1e99999999999999999999999"), Some(Some(u64::MAX)));
        assert_eq!(seconds("1e-99999999999999999999999"), Some(None));
        assert_eq!(seconds("12345.678e2"), Some(Some(1_234_567)));
        assert_eq!(seconds("1e"), None);
        assert_eq!(seconds("1e+"), None);
        assert_eq!(seconds("e5"), None);
        assert_eq!(seconds("1e5x"), None);
        assert_eq!(seconds("1.e1"), Some(Some(10)));
    }

    #[test]
    fn expires_in_forms() {
        let s = Duration::from_secs;
        assert_eq!(expiry("3600"), (s(3600), ExpiresInSource::Reported));
        assert_eq!(expiry("\"3600\""), (s(3600), ExpiresInSource::Reported));
        assert_eq!(expiry("\" 3600 \""), (s(3600), ExpiresInSource::Reported));
        assert_eq!(expiry("\"3600.9\""), (s(3600), ExpiresInSource::Reported));
        assert_eq!(expiry("\"3600.0\""), (s(3600), ExpiresInSource::Reported));
        assert_eq!(expiry("\"+3600\""), (s(3600), ExpiresInSource::Reported));
        assert_eq!(expiry("1"), (s(1), ExpiresInSource::Reported));
        assert_eq!(expiry("null"), (DEFAULT_EXPIRES_IN, ExpiresInSource::Defaulted));
        // Fractions and exponents, in numbers and strings alike, read exactly and truncated.
        for v in ["3600.9", "3.6e3", "\"3.6e3\"", "36E2", "360000e-2", "0.36e4", "\"+3.6E+3\""] {
            assert_eq!(expiry(v), (s(3600), ExpiresInSource::Reported), "{v}");
        }
        // Zero, negative, or below one second, however written: spent on arrival.
        for v in [
            "0",
            "-1",
            "-0",
            "-5",
            "0.0",
            "0.5",
            "0.9",
            "1e-3",
            "-1e30",
            "-1e999",
            "\"0\"",
            "\"-30\"",
            "\"0.5\"",
            "\"0.9\"",
            "-9223372036854775808",
            "-99999999999999999999999",
        ] {
            assert_eq!(expiry(v), (Duration::ZERO, ExpiresInSource::NonPositive), "{v}");
        }
        // T and T+1 around the maximum; beyond it, however large, clamped to it.
        let max = MAX_EXPIRES_IN.as_secs();
        assert_eq!(expiry(&max.to_string()), (MAX_EXPIRES_IN, ExpiresInSource::Reported));
        assert_eq!(expiry("6048e2"), (MAX_EXPIRES_IN, ExpiresInSource::Reported));
        for v in [
            (max + 1).to_string(),
            "6048.01e2".into(),
            "\"99999999999999999999999\"".into(),
            "18446744073709551616".into(),
            "1e30".into(),
            "1e999".into(),
            "\"1e30\"".into(),
        ] {
            assert_eq!(expiry(&v), (MAX_EXPIRES_IN, ExpiresInSource::Clamped), "{v}");
        }
        // Not a number: the default, flagged as unparseable.
        for v in [
            "true",
            "\"soon\"",
            "\"\"",
            "{\"a\":1}",
            "[1]",
            "\"inf\"",
            "\"NaN\"",
            "\"1-2\"",
            "\"36\\u0030\"",
            "\".\"",
            "\"1e\"",
            "\"e5\"",
            "\"1e+\"",
        ] {
            assert_eq!(expiry(v), (DEFAULT_EXPIRES_IN, ExpiresInSource::Unparseable), "{v}");
        }
        // Not JSON at all.
        let body = r#"{"access_token":"t","token_type":"bearer","expires_in":1-2}"#;
        assert_eq!(parse(body), Err(ResponseError::Malformed));
        // The default is itself capped by the maximum.
        let opts = ResponseOptions {
            default_expires_in: s(10),
            max_expires_in: s(5),
            ..Default::default()
        };
        let r: Resp =
            parse_token_response(br#"{"access_token":"t","token_type":"bearer"}"#, &opts).unwrap();
        assert_eq!((r.expires_in, r.expires_in_source), (s(5), ExpiresInSource::Defaulted));
    }

    #[test]
    fn scope_is_compared_as_sets() {
        let body = |scope: &str| {
            std::format!(r#"{{"access_token":"t","token_type":"bearer","scope":"{scope}"}}"#)
        };
        let check = |req, scope: &str| parse_with(&body(scope), req).unwrap().scope_check;
        assert_eq!(check(Some("a b"), "b a"), ScopeCheck::AsRequested);
        assert_eq!(check(Some("a  b "), "b\\ta"), ScopeCheck::AsRequested);
        assert_eq!(check(Some("a b"), "a"), ScopeCheck::Narrowed);
        assert_eq!(check(Some("a b"), "a c"), ScopeCheck::Narrowed);
        assert_eq!(check(Some("a b"), ""), ScopeCheck::Narrowed);
        assert_eq!(check(Some("a"), "a b"), ScopeCheck::Widened);
        assert_eq!(check(None, "a"), ScopeCheck::NotRequested);
        assert_eq!(check(Some(" \t"), "a"), ScopeCheck::NotRequested);
        // Only ASCII whitespace separates (RFC 6749 §3.3: spaces); anything else is a token.
        assert_eq!(check(Some("\u{3000}"), "\u{3000}"), ScopeCheck::AsRequested);
        assert_eq!(check(Some("a\u{3000}b"), "a b"), ScopeCheck::Narrowed);
        let r = parse_with(r#"{"access_token":"t","token_type":"bearer"}"#, Some("a")).unwrap();
        assert_eq!((r.scope_check, r.granted_scope), (ScopeCheck::NotReported, None));
        let r = parse_with(&body(r"https:\/\/graph\/.default"), Some("https://graph/.default"))
            .unwrap();
        assert_eq!(r.granted_scope.as_deref(), Some("https://graph/.default"));
        assert_eq!(r.scope_check, ScopeCheck::AsRequested);
        assert_eq!(missing_scopes("a b c", "b").collect::<std::vec::Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn long_scope_is_cut_at_a_token_boundary() {
        // 100 tokens of 9 bytes ("scope.NN" + space) = 899 bytes.
        let tokens: std::vec::Vec<String> =
            (0..100).map(|i| std::format!("scope.{i:02}")).collect();
        let granted = tokens.join(" ");
        let r = parse_with(
            &std::format!(r#"{{"access_token":"t","token_type":"bearer","scope":"{granted}"}}"#),
            Some(&granted),
        )
        .unwrap();
        let kept = r.granted_scope.unwrap();
        assert!(r.granted_scope_truncated);
        assert!(kept.len() <= SCOPE_CAPACITY && kept.len() > SCOPE_CAPACITY - 9, "{}", kept.len());
        assert!(
            granted.starts_with(kept.as_str())
                && kept.split(' ').all(|t| tokens.contains(&t.into()))
        );
        assert!(granted.as_bytes()[kept.len()] == b' ');
        assert_eq!(r.scope_check, ScopeCheck::AsRequested, "compared on the full scope");
        // One giant token keeps nothing.
        let (kept, cut) = bounded_text::<8>("abcdefghij", true);
        assert_eq!((kept.as_str(), cut), ("", true));
        let (kept, cut) = bounded_text::<8>("abc defgh ij", true);
        assert_eq!((kept.as_str(), cut), ("abc", true));
        let (kept, cut) = bounded_text::<8>("abc defg hij", true);
        assert_eq!((kept.as_str(), cut), ("abc defg", true));
        let (kept, cut) = bounded_text::<4>("aé€", false);
        assert_eq!((kept.as_str(), cut), ("aé", true));
    }

    #[test]
    fn bodies_that_are_not_token_responses() {
        assert_eq!(parse("").unwrap_err(), ResponseError::Empty);
        assert_eq!(parse(" \r\n").unwrap_err(), ResponseError::Empty);
        assert_eq!(parse("<html>502 Bad Gateway</html>").unwrap_err(), ResponseError::NotJson);
        assert_eq!(parse("[]").unwrap_err(), ResponseError::NotJson);
        assert_eq!(parse(r#"{"access_token":"t""#).unwrap_err(), ResponseError::Malformed);
        assert_eq!(
            parse(r#"{"access_token":"t","access_token":"u","token_type":"bearer"}"#).unwrap_err(),
            ResponseError::Malformed
        );
        assert_eq!(
            parse(r#"{"error":"invalid_client","error_description":"x"}"#).unwrap_err(),
            ResponseError::ErrorBody
        );
        assert!(parse("\u{feff}{\"access_token\":\"t\",\"token_type\":\"bearer\"}").is_ok());
        let ok_nested = r#"{"access_token":"t","token_type":"bearer","x":[[[[[[{"y":1}]]]]]]}"#;
        assert!(parse(ok_nested).is_ok());
        let deep = std::format!(
            r#"{{"access_token":"t","token_type":"bearer","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(parse(&deep).unwrap_err(), ResponseError::Malformed);
        // Brackets inside strings do not count.
        let in_string = std::format!(
            r#"{{"access_token":"t","token_type":"bearer","x":"{}\"{}"}}"#,
            "[".repeat(50),
            "{".repeat(50)
        );
        assert!(parse(&in_string).is_ok());
        let unknown = r#"{"access_token":"t","token_type":"bearer","refresh_token":"r","id_token":null,"ext":{"a":[1,2.5,true]}}"#;
        assert!(parse(unknown).is_ok());
    }

    #[test]
    fn unescape_is_lenient() {
        let u = |s: &str| unescape(s).collect::<String>();
        assert_eq!(u(r#"a\"b\\c\/d\b\f\n\r\t"#), "a\"b\\c/d\u{8}\u{c}\n\r\t");
        assert_eq!(u(r"\u00e9\uD83D\uDE00x"), "é😀x");
        assert_eq!(u(r"\uD83Dx"), "\u{fffd}x");
        assert_eq!(u(r"\uD83D\u0041"), "\u{fffd}A");
        assert_eq!(u(r"\uDE00"), "\u{fffd}");
        assert_eq!(u(r"\u12"), "\u{fffd}12");
        assert_eq!(u(r"\u+123"), "\u{fffd}+123");
        assert_eq!(u("\\"), "\u{fffd}");
        assert_eq!(u(r"\q"), "q");
    }

    proptest! {
        #[test]
        fn decimal_seconds_match_reference(s in "[-+]?[0-9]{0,25}(\\.[0-9]{0,3})?([eE][-+]?[0-9]{0,4})?[-+.e]?") {
            prop_assert_eq!(seconds(&s), seconds_reference(&s));
        }

        #[test]
        fn never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_token_response::<16>(&body, &ResponseOptions::default());
        }

        #[test]
        fn never_panics_on_near_json(
            members in proptest::collection::vec(
                ("(access_token|token_type|expires_in|scope|error|x)", r#"("([a-zA-Z0-9 ./+=-]|\\[nu/"\\]|\\u[0-9a-fA-F]{0,4}){0,20}"|-?[0-9.eE+-]{1,12}|true|null|\[\]|\{\})"#),
                0..6,
            ),
            requested in proptest::option::of("[a-c ]{0,8}"),
        ) {
            let inner: std::vec::Vec<String> = members.iter().map(|(k, v)| std::format!("\"{k}\":{v}")).collect();
            let body = std::format!("{{{}}}", inner.join(","));
            let opts = ResponseOptions { requested_scope: requested.as_deref(), ..Default::default() };
            if let Ok(r) = parse_token_response::<16>(body.as_bytes(), &opts) {
                prop_assert!(r.expires_in <= MAX_EXPIRES_IN);
                prop_assert!(r.access_token.len() <= 16);
            }
        }

        #[test]
        fn tokens_round_trip(token in "[!-~]{1,64}") {
            let mut escaped = String::new();
            for c in token.chars() {
                match c { '"' => escaped.push_str("\\\""), '\\' => escaped.push_str("\\\\"), '/' => escaped.push_str("\\/"), c => escaped.push(c) }
            }
            let body = std::format!(r#"{{"access_token":"{escaped}","token_type":"Bearer","expires_in":60}}"#);
            let r = parse(&body).unwrap();
            prop_assert_eq!(r.access_token.as_str(), token.as_str());
        }
    }
}
