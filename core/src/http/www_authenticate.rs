//! The `Bearer` challenge of a `WWW-Authenticate` field (RFC 9110 §11.6.1, RFC 6750 §3).
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param       = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! One field value may hold several challenges, and their parameters are separated by the same
//! commas as the challenges themselves:
//!
//! ```text
//! Basic realm="x", Bearer realm="api", error="invalid_token", error_description="expired"
//! ```
//!
//! [`parse_bearer_challenge`] walks the list once, left to right: an element that starts with
//! `name =` is a parameter of the current challenge, anything else starts a new challenge. It
//! returns the first challenge whose scheme is `Bearer` (case-insensitively, RFC 9110 §11.1),
//! with the parameters RFC 6750 §3 defines. Parameter names match case-insensitively; the first
//! occurrence of a parameter wins. Quoted commas, escaped quotes (`\"`), `token68` credentials of
//! other schemes, extra whitespace, empty list elements and a bare `Bearer` are all handled;
//! malformed elements are skipped, never fatal. The work is one forward pass over the value, and
//! nothing here can panic.
//!
//! Values are returned raw (borrowed from the header, quoted-pair escapes intact, quotes removed)
//! because nothing can be allocated; [`unescape`] decodes one lazily, as an iterator of `char`s or
//! through `Display`.

use core::fmt;

use crate::http::cursor::Cursor;

/// The `error` parameter of a Bearer challenge (RFC 6750 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BearerError<'a> {
    /// `invalid_request`: the request is malformed (a missing or duplicated parameter). Retrying
    /// the same request will not help.
    InvalidRequest,
    /// `invalid_token`: the token is expired, revoked, malformed or from another environment.
    /// Get a new token and retry once.
    InvalidToken,
    /// `insufficient_scope`: the token is valid but lacks the scope the resource needs (see the
    /// challenge's `scope`). No retry will help until the client's grants change.
    InsufficientScope,
    /// Any other code, raw as sent (quoted-pair escapes intact).
    Other(&'a str),
}

impl<'a> BearerError<'a> {
    /// Classifies a raw `error` value. The registered codes match case-insensitively (lenient:
    /// RFC 6750 defines them in lower case).
    #[must_use]
    pub fn from_code(raw: &'a str) -> BearerError<'a> {
        if eq_unescaped_ignore_case(raw, "invalid_token") {
            BearerError::InvalidToken
        } else if eq_unescaped_ignore_case(raw, "insufficient_scope") {
            BearerError::InsufficientScope
        } else if eq_unescaped_ignore_case(raw, "invalid_request") {
            BearerError::InvalidRequest
        } else {
            BearerError::Other(raw)
        }
    }

    /// The code as RFC 6750 spells it (or the raw value for [`BearerError::Other`]).
    #[must_use]
    pub const fn as_str(&self) -> &'a str {
        match *self {
            BearerError::InvalidRequest => "invalid_request",
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
            BearerError::Other(raw) => raw,
        }
    }
}

impl fmt::Display for BearerError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&unescape(self.as_str()), f)
    }
}

/// What a `Bearer` challenge said (RFC 6750 §3). Every field is optional: `WWW-Authenticate:
/// Bearer` alone is a valid challenge ("a token is required").
///
/// String fields are raw: borrowed from the header, without the surrounding quotes, with any
/// quoted-pair escapes (`\"`, `\\`) still in place. Decode them with [`unescape`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BearerChallenge<'a> {
    /// The `error` code, if any.
    pub error: Option<BearerError<'a>>,
    /// The human-readable `error_description`, raw.
    pub error_description: Option<&'a str>,
    /// The `scope` the resource requires (space-separated scope tokens), raw.
    pub scope: Option<&'a str>,
    /// The protection `realm`, raw.
    pub realm: Option<&'a str>,
}

impl<'a> BearerChallenge<'a> {
    /// The `error_description`, unescaped.
    #[must_use]
    pub fn error_description(&self) -> Option<Unescaped<'a>> {
        self.error_description.map(unescape)
    }

    /// The `scope` value, unescaped.
    #[must_use]
    pub fn scope(&self) -> Option<Unescaped<'a>> {
        self.scope.map(unescape)
    }
}

/// Finds and parses the first `Bearer` challenge in a `WWW-Authenticate` field value.
///
/// Returns `None` if there is no Bearer challenge (only `Basic`, say) or the value is empty.
///
/// ```
/// use credflow_core::http::www_authenticate::{parse_bearer_challenge, BearerError};
///
/// let v = br#"Basic realm="x", Bearer realm="api", error="insufficient_scope", scope="a b""#;
/// let c = parse_bearer_challenge(v).unwrap();
/// assert_eq!(c.error, Some(BearerError::InsufficientScope));
/// assert_eq!(c.scope, Some("a b"));
/// assert_eq!(c.realm, Some("api"));
/// ```
#[must_use]
pub fn parse_bearer_challenge(value: &[u8]) -> Option<BearerChallenge<'_>> {
    let mut c = Cursor(value);
    let mut found: Option<BearerChallenge<'_>> = None;
    loop {
        c.ows();
        if c.0.is_empty() {
            break;
        }
        if c.eat(b',') {
            continue; // empty list element
        }
        let Some(first) = c.token() else {
            c.skip_element();
            continue;
        };
        let space = c.ows();
        if c.eat(b'=') {
            // `name = value`: a parameter of the current challenge.
            c.ows();
            let value = c.param_value();
            if let (Some(challenge), Some(value)) = (found.as_mut(), value) {
                challenge.set(first, value);
            }
            c.end_element();
            continue;
        }
        // Anything else starts a new challenge: `first` is its scheme.
        if found.is_some() {
            break; // the Bearer challenge has ended; the first one wins
        }
        if first.eq_ignore_ascii_case(b"Bearer") {
            found = Some(BearerChallenge::default());
        }
        if space == 0 || c.at_element_end() {
            c.end_element();
            continue;
        }
        // After the scheme: a first auth-param, or a token68 (which we skip).
        let before = Cursor(c.0);
        if let Some(name) = c.token() {
            c.ows();
            if c.eat(b'=') {
                c.ows();
                // `abc=` or `abc==` at the end of an element is a token68, not a parameter.
                if !c.at_element_end() && c.0.first() != Some(&b'=') {
                    let value = c.param_value();
                    if let (Some(challenge), Some(value)) = (found.as_mut(), value) {
                        challenge.set(name, value);
                    }
                    c.end_element();
                    continue;
                }
            }
        }
        c = before;
        c.skip_element();
    }
    found
}

impl<'a> BearerChallenge<'a> {
    /// Records a parameter (first occurrence wins; unknown names are ignored).
    fn set(&mut self, name: &[u8], value: &'a str) {
        let slot = if name.eq_ignore_ascii_case(b"error") {
            if self.error.is_none() {
                self.error = Some(BearerError::from_code(value));
            }
            return;
        } else if name.eq_ignore_ascii_case(b"error_description") {
            &mut self.error_description
        } else if name.eq_ignore_ascii_case(b"scope") {
            &mut self.scope
        } else if name.eq_ignore_ascii_case(b"realm") {
            &mut self.realm
        } else {
            return;
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
}

/// Decodes the quoted-pair escapes (`\x` → `x`, RFC 9110 §5.6.4) of a raw quoted-string value.
///
/// Iterate it for `char`s, or format it with `Display`. Writing it into a fixed-capacity string
/// with `write!` stops at the first character that does not fit, so the result is truncated at a
/// character boundary.
///
/// ```
/// use credflow_core::http::www_authenticate::unescape;
///
/// let mut out = heapless::String::<32>::new();
/// core::fmt::write(&mut out, format_args!("{}", unescape(r#"say \"hi\" \\ bye"#))).unwrap();
/// assert_eq!(out.as_str(), r#"say "hi" \ bye"#);
/// ```
#[must_use]
pub fn unescape(raw: &str) -> Unescaped<'_> {
    Unescaped { rest: raw.chars() }
}

/// The iterator returned by [`unescape`].
#[derive(Clone, Debug)]
pub struct Unescaped<'a> {
    rest: core::str::Chars<'a>,
}

impl Iterator for Unescaped<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        match self.rest.next()? {
            // A trailing lone backslash stands for itself.
            '\\' => Some(self.rest.next().unwrap_or('\\')),
            c => Some(c),
        }
    }
}

impl fmt::Display for Unescaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        self.clone().try_for_each(|c| f.write_char(c))
    }
}

/// Whether `raw`, once unescaped, equals `expected` ignoring ASCII case.
fn eq_unescaped_ignore_case(raw: &str, expected: &str) -> bool {
    let mut got = unescape(raw);
    let mut want = expected.chars();
    loop {
        match (got.next(), want.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
    }
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The challenge productions (RFC 9110 §11.2, §5.6), on the shared cursor.
impl<'a> Cursor<'a> {
    /// Consumes `1*tchar`.
    fn token(&mut self) -> Option<&'a [u8]> {
        let token = self.take_while(is_tchar);
        (!token.is_empty()).then_some(token)
    }

    /// Consumes a quoted-string and returns its raw inside; `None` (having consumed the rest) if
    /// it is never closed.
    fn quoted_string(&mut self) -> Option<&'a [u8]> {
        let body = self.0.get(1..)?;
        let mut escaped = false;
        let end = body.iter().position(|&b| {
            let close = b == b'"' && !escaped;
            escaped = b == b'\\' && !escaped;
            close
        });
        match end {
            Some(end) => {
                let inside = body.get(..end)?;
                self.advance(end.checked_add(2)?);
                Some(inside)
            }
            None => {
                self.0 = &[];
                None
            }
        }
    }

    /// Consumes `token / quoted-string` and returns it raw, if it is valid UTF-8.
    fn param_value(&mut self) -> Option<&'a str> {
        let raw = if self.0.first() == Some(&b'"') { self.quoted_string()? } else { self.token()? };
        core::str::from_utf8(raw).ok()
    }

    /// Whether the current list element ends here (only whitespace before a comma or the end).
    fn at_element_end(&self) -> bool {
        let mut probe = *self;
        probe.ows();
        matches!(probe.0.first(), None | Some(b','))
    }

    /// Finishes an element: consumes its comma, or skips junk up to and including the next one.
    fn end_element(&mut self) {
        self.ows();
        if !self.eat(b',') {
            self.skip_element();
        }
    }

    /// Skips to just after the next comma outside a quoted-string (or to the end). Always
    /// consumes at least one byte of a non-empty input.
    fn skip_element(&mut self) {
        let mut quoted = false;
        let mut escaped = false;
        let end = self.0.iter().position(|&b| {
            if quoted {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    quoted = false;
                }
                false
            } else if b == b'"' {
                quoted = true;
                false
            } else {
                b == b','
            }
        });
        match end {
            Some(comma) => self.advance(comma.saturating_add(1)),
            None => self.0 = &[],
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::string::String;

    fn parse(s: &str) -> Option<BearerChallenge<'_>> {
        parse_bearer_challenge(s.as_bytes())
    }

    #[test]
    fn rfc6750_examples() {
        let c = parse(r#"Bearer realm="example""#).unwrap();
        assert_eq!(c, BearerChallenge { realm: Some("example"), ..Default::default() });

        let c = parse(
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
        )
        .unwrap();
        assert_eq!(c.error, Some(BearerError::InvalidToken));
        assert_eq!(c.error_description, Some("The access token expired"));
        assert_eq!(c.realm, Some("example"));
        assert_eq!(c.scope, None);
    }

    #[test]
    fn several_challenges() {
        let v = r#"Basic realm="x", Bearer realm="api", error="invalid_token", error_description="The access token expired", scope="a b""#;
        let c = parse(v).unwrap();
        assert_eq!(c.realm, Some("api"));
        assert_eq!(c.error, Some(BearerError::InvalidToken));
        assert_eq!(c.scope, Some("a b"));

        // Parameters after the Bearer challenge belong to the next one.
        let c = parse(r#"Bearer realm="a", Basic realm="b", error="invalid_token""#).unwrap();
        assert_eq!(c, BearerChallenge { realm: Some("a"), ..Default::default() });

        // Only the first Bearer challenge counts.
        let c =
            parse(r#"Bearer error="invalid_token", Bearer error="insufficient_scope""#).unwrap();
        assert_eq!(c.error, Some(BearerError::InvalidToken));

        assert_eq!(parse(r#"Basic realm="x", Digest realm="y", nonce="z""#), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("   ,  , "), None);
    }

    #[test]
    fn bare_and_case_insensitive_scheme() {
        assert_eq!(parse("Bearer"), Some(BearerChallenge::default()));
        assert_eq!(parse("  bearer  "), Some(BearerChallenge::default()));
        assert_eq!(parse("Basic, BEARER"), Some(BearerChallenge::default()));
        assert_eq!(parse("Bearer, Basic realm=\"x\""), Some(BearerChallenge::default()));
        assert_eq!(parse("Bearerx realm=\"x\""), None);
    }

    #[test]
    fn token68_of_other_schemes_is_skipped() {
        let c = parse(
            r#"Negotiate YIIFzQYJKoZIhvcSAQICAQBuggW8MIIFuKADAgEF==, Bearer error=invalid_token"#,
        )
        .unwrap();
        assert_eq!(c.error, Some(BearerError::InvalidToken));
        let c = parse(r#"Custom abc=, Bearer scope="x""#).unwrap();
        assert_eq!(c.scope, Some("x"));
        let c = parse(r#"Custom a+b/c=, Bearer realm=r"#).unwrap();
        assert_eq!(c.realm, Some("r"));
        // A token68 on the Bearer scheme itself is not a parameter.
        assert_eq!(parse("Bearer abc=="), Some(BearerChallenge::default()));
        assert_eq!(parse("Bearer abc="), Some(BearerChallenge::default()));
    }

    #[test]
    fn quoting_and_whitespace() {
        let c = parse(
            r#"Bearer   error = "invalid_token" ,error_description="a, \"quoted\" b",scope=x"#,
        )
        .unwrap();
        assert_eq!(c.error, Some(BearerError::InvalidToken));
        assert_eq!(c.error_description, Some(r#"a, \"quoted\" b"#));
        let text: String = c.error_description().unwrap().collect();
        assert_eq!(text, r#"a, "quoted" b"#);
        assert_eq!(c.scope, Some("x"));

        // A backslash before the closing quote is escaped, not the quote.
        let c = parse(r#"Bearer error_description="ends with \\", realm="r""#).unwrap();
        assert_eq!(c.error_description, Some(r#"ends with \\"#));
        assert_eq!(c.realm, Some("r"));

        // A comma inside quotes does not split the element.
        let c = parse(r#"Basic realm="a, Bearer realm=b", Bearer realm="c""#).unwrap();
        assert_eq!(c.realm, Some("c"));
    }

    #[test]
    fn parameter_names_and_duplicates() {
        let c = parse(
            r#"Bearer ERROR="insufficient_scope", Scope="s1", scope="s2", error_uri="https://x""#,
        )
        .unwrap();
        assert_eq!(c.error, Some(BearerError::InsufficientScope));
        assert_eq!(c.scope, Some("s1"));
        let c = parse(r#"Bearer error="INVALID_TOKEN""#).unwrap();
        assert_eq!(c.error, Some(BearerError::InvalidToken));
        let c = parse(r#"Bearer error="invalid_request""#).unwrap();
        assert_eq!(c.error, Some(BearerError::InvalidRequest));
        let c = parse(r#"Bearer error="token_revoked""#).unwrap();
        assert_eq!(c.error, Some(BearerError::Other("token_revoked")));
        assert_eq!(c.error.unwrap().as_str(), "token_revoked");
        let c = parse(r#"Bearer error="invalid\_token""#).unwrap();
        assert_eq!(c.error, Some(BearerError::InvalidToken));
    }

    #[test]
    fn malformed_elements_are_skipped() {
        let c = parse(r#"Bearer realm="unterminated"#).unwrap();
        assert_eq!(c.realm, None);
        // `name = value` is a parameter whatever the name (BWS is allowed around `=`).
        assert_eq!(parse(r#"Bearer ="x""#), None);
        let c = parse(r#"Bearer "x", error=, realm="r""#).unwrap();
        assert_eq!(c.realm, Some("r"));
        assert_eq!(c.error, None);
        let c = parse(r#"Bearer realm=r junk junk, scope="s""#).unwrap();
        assert_eq!(c.realm, Some("r"));
        assert_eq!(c.scope, Some("s"));
        let c = parse("Bearer realm=\"\u{e9}t\u{e9}\"").unwrap();
        assert_eq!(c.realm, Some("\u{e9}t\u{e9}"));
        let c = parse_bearer_challenge(b"Bearer realm=\"\xff\", scope=\"s\"").unwrap();
        assert_eq!(c.realm, None);
        assert_eq!(c.scope, Some("s"));
        assert_eq!(parse(r#""Bearer""#), None);
    }

    #[test]
    fn unescape_edges() {
        let s = |raw| unescape(raw).collect::<String>();
        assert_eq!(s(""), "");
        assert_eq!(s(r"\\"), r"\");
        assert_eq!(s(r"a\"), r"a\");
        assert_eq!(s(r"\a\b"), "ab");
        assert_eq!(std::format!("{}", unescape(r#"x\"y"#)), r#"x"y"#);

        let mut small = heapless::String::<4>::new();
        let _ = core::fmt::write(&mut small, format_args!("{}", unescape("ab\u{e9}cd")));
        assert_eq!(small.as_str(), "ab\u{e9}");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_bearer_challenge(&bytes);
        }

        #[test]
        fn never_panics_on_near_misses(s in r#"(Bearer|Basic|bearer| |,|=|"|\\|error|scope|realm|invalid_token|a b|==){0,24}"#) {
            if let Some(c) = parse(&s) {
                let _ = c.error_description().map(|d| d.count());
            }
        }

        #[test]
        fn quoted_values_round_trip(text in "[ -~]{0,40}") {
            let mut quoted = String::new();
            for ch in text.chars() {
                if ch == '"' || ch == '\\' {
                    quoted.push('\\');
                }
                quoted.push(ch);
            }
            let header = std::format!(r#"Basic realm="a,b", Bearer error_description="{quoted}", realm="r""#);
            let c = parse(&header).unwrap();
            prop_assert_eq!(c.error_description().unwrap().collect::<String>(), text);
            prop_assert_eq!(c.realm, Some("r"));
        }
    }
}
