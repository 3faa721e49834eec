//! The Genesys Cloud API error body, read into fixed-capacity storage.
//!
//! Every Genesys Cloud API error carries a JSON body (`models/error_body.py` in the official
//! SDKs):
//!
//! ```json
//! {"message":"Unable to perform the requested action. You are missing the following permission(s): [routing:queue:view]",
//!  "code":"missing.permissions","status":403,"messageWithParams":"…","messageParams":{},
//!  "contextId":"7c3e5b0a-…","details":[],"errors":[]}
//! ```
//!
//! [`parse_genesys_error`] keeps what a client acts on: `status`, `code`, `message`, `contextId`
//! (the correlation id support asks for; it equals the `ININ-Correlation-Id` header) and up to
//! [`MAX_PARAMS`] `messageParams` entries. [`GenesysError::missing_permissions`] then lists the
//! permissions a `missing.permissions` / `missing.any.permissions` refusal names.
//!
//! # Robustness
//!
//! - Strings are JSON-unescaped (`\"`, `\\`, `\n`, `\u00e9`, surrogate pairs; an invalid escape
//!   becomes U+FFFD) and truncated at a character boundary to their field's capacity. Control
//!   characters become spaces, so a message can be logged on one line without letting a server
//!   forge log lines.
//! - Unknown fields are skipped, as are values of an unexpected type (a numeric `message`, a
//!   `messageParams` value that is an object). A `messageParams` value that is an array of strings
//!   is kept, joined with `", "`.
//! - The body may be a truncated prefix: fields read before the cut are kept. Nesting deeper than
//!   [`MAX_DEPTH`] is treated as such a cut, so hostile input cannot exhaust the stack, and at most
//!   [`MAX_BODY`] bytes are read.
//! - Parsing is one pass of the crate's strict, non-recursive JSON reader: strings are borrowed
//!   still escaped (so no string, however long, can make the parse fail for lack of scratch
//!   space) and unescaped straight into their fixed-capacity fields.

use core::fmt;

use heapless::string::StringView;
use heapless::{String, Vec};

use crate::json::{self, Value, unescape};
use crate::text::push_sanitized;

/// Capacity of [`GenesysError::code`] in bytes.
pub const CODE_CAPACITY: usize = 64;
/// Capacity of [`GenesysError::message`] in bytes.
pub const MESSAGE_CAPACITY: usize = 256;
/// Capacity of [`GenesysError::context_id`] in bytes.
pub const CONTEXT_ID_CAPACITY: usize = 64;
/// Capacity of a `messageParams` key in bytes.
pub const PARAM_KEY_CAPACITY: usize = 32;
/// Capacity of a `messageParams` value in bytes.
pub const PARAM_VALUE_CAPACITY: usize = 128;
/// How many `messageParams` entries are kept (the first ones).
pub const MAX_PARAMS: usize = 4;
/// JSON nesting deeper than this is treated as the end of the body.
pub const MAX_DEPTH: usize = 16;
/// At most this many bytes of a body are read.
pub const MAX_BODY: usize = 16 * 1024;

/// The useful part of a Genesys Cloud error body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenesysError {
    /// The HTTP status the body repeats, if it is an integer that fits.
    pub status: Option<u16>,
    /// The machine-readable code, e.g. `missing.permissions`, `bad.credentials`,
    /// `too.many.requests.retry.after`. Empty if absent.
    pub code: String<CODE_CAPACITY>,
    /// The human-readable message (unescaped, truncated). Empty if absent.
    pub message: String<MESSAGE_CAPACITY>,
    /// The `contextId`: the correlation id to quote to Genesys support. Dropped if it contains a
    /// control character (it would not be a real id).
    pub context_id: Option<String<CONTEXT_ID_CAPACITY>>,
    /// The first [`MAX_PARAMS`] `messageParams` entries whose value is a string (or an array of
    /// strings, joined with `", "`). Read only with the `diagnosis` feature (they serve the
    /// permission list of a 403); empty without it.
    pub message_params: Vec<(String<PARAM_KEY_CAPACITY>, String<PARAM_VALUE_CAPACITY>), MAX_PARAMS>,
}

impl GenesysError {
    /// Whether the body's `code` is `code`.
    #[must_use]
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_str() == code
    }

    /// The permissions a `missing.permissions` or `missing.any.permissions` refusal names, e.g.
    /// `analytics:conversationDetail:view`.
    ///
    /// Read from the `messageParams` entries whose key mentions "permission" when there are any,
    /// else from the first bracketed list after the word "permission" in the message:
    /// `You are missing the following permission(s): [a:b:view, c:d:edit]`. An empty list (`[]`,
    /// which Genesys sends for division refusals) yields nothing; it is never confused with the
    /// division list that may follow it. If the message was cut inside the list, only the items
    /// before the last comma are reported, so a truncated permission is never shown as real.
    pub fn missing_permissions(&self) -> impl Iterator<Item = &str> + '_ {
        let from_params = self.permission_param_values().any(|v| list_items(v).next().is_some());
        let params = self.permission_param_values().filter(move |_| from_params);
        let message = if from_params { None } else { bracketed_permission_list(&self.message) };
        params.chain(message).flat_map(list_items)
    }

    fn permission_param_values(&self) -> impl Iterator<Item = &str> + '_ {
        self.message_params
            .iter()
            .filter(|(key, _)| contains_ignore_ascii_case(key.as_bytes(), b"permission"))
            .map(|(_, value)| value.as_str())
    }
}

impl fmt::Display for GenesysError {
    /// `missing.permissions (403): Unable to perform the requested action. …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.code.is_empty() { "error" } else { &self.code })?;
        if let Some(status) = self.status {
            write!(f, " ({status})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Parses a Genesys Cloud error body.
///
/// Returns `None` if the body is not a JSON object (HTML from a proxy, empty) or carries neither
/// a `code` nor a `message`. See the module docs for what is tolerated.
///
/// ```
/// use credflow_core::http::genesys::parse_genesys_error;
///
/// let body = br#"{"message":"Unable to perform the requested action. You are missing the following permission(s): [routing:queue:view]","code":"missing.permissions","status":403,"contextId":"3a5d9c2e-0b7f-4d1a-9e6c-51f0a2b4c8d7","details":[],"errors":[]}"#;
/// let e = parse_genesys_error(body).unwrap();
/// assert_eq!(e.code.as_str(), "missing.permissions");
/// assert_eq!(e.status, Some(403));
/// assert!(e.missing_permissions().eq(["routing:queue:view"]));
/// ```
#[must_use]
pub fn parse_genesys_error(body: &[u8]) -> Option<GenesysError> {
    let body = body.get(..MAX_BODY).unwrap_or(body);
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body).trim_ascii_start();
    if body.first() != Some(&b'{') {
        return None;
    }
    let mut out = GenesysError::default();
    // A syntax error (a truncated or odd body) keeps every member read before it.
    for (key, value) in json::members(body, MAX_DEPTH).map_while(Result::ok) {
        match (key, value) {
            ("message", Value::Str(raw)) if out.message.is_empty() => {
                json_unescape_into(raw, out.message.as_mut_view());
            }
            ("code", Value::Str(raw)) if out.code.is_empty() => {
                json_unescape_into(raw, out.code.as_mut_view());
            }
            ("status", Value::Number(n)) if out.status.is_none() => {
                out.status = json::integer(n).and_then(|n| u16::try_from(n.ok()?).ok());
            }
            // An identifier with a space in place of a control character would name nothing in
            // the server's logs: refused rather than repaired.
            // An empty id is none (and a later one is read); a non-empty one never unescapes
            // to nothing, its first character always fits.
            ("contextId", Value::Str(raw))
                if out.context_id.is_none()
                    && !raw.is_empty()
                    && !unescape(raw).any(char::is_control) =>
            {
                json_unescape_into(raw, out.context_id.insert(String::new()).as_mut_view());
            }
            ("messageParams", Value::Object(params))
                if cfg!(feature = "diagnosis") && out.message_params.is_empty() =>
            {
                read_params(params, &mut out.message_params);
            }
            _ => {}
        }
    }
    (!out.code.is_empty() || !out.message.is_empty()).then_some(out)
}

type ParamList = Vec<(String<PARAM_KEY_CAPACITY>, String<PARAM_VALUE_CAPACITY>), MAX_PARAMS>;

/// The `messageParams` object: string entries, and arrays of strings joined with `", "`, are
/// kept (the first [`MAX_PARAMS`]); others are skipped.
fn read_params(params: &[u8], out: &mut ParamList) {
    for (key, value) in json::members(params, MAX_DEPTH).map_while(Result::ok) {
        if out.is_full() {
            break;
        }
        let mut text = String::new();
        let found = match value {
            Value::Str(raw) => {
                json_unescape_into(raw, text.as_mut_view());
                true
            }
            Value::Array(items) => {
                let mut any = false;
                for item in json::elements(items, MAX_DEPTH).map_while(Result::ok) {
                    if let Value::Str(raw) = item {
                        if any {
                            let _ = push_sanitized(text.as_mut_view(), &mut ", ".chars());
                        }
                        json_unescape_into(raw, text.as_mut_view());
                        any = true;
                    }
                }
                any
            }
            _ => false,
        };
        if found {
            let mut name = String::new();
            json_unescape_into(key, name.as_mut_view());
            // Cannot fail: fullness was checked above.
            let _ = out.push((name, text));
        }
    }
}

/// Unescapes a raw JSON string body (RFC 8259 §7) into `out`, stopping when it is full.
/// Takes a `StringView`: one copy of the code for every capacity.
fn json_unescape_into(raw: &str, out: &mut StringView) {
    let _ = push_sanitized(out, &mut unescape(raw));
}

/// The text inside the first `[...]` after the word "permission" in `message`. An unclosed
/// list (the message was truncated) is cut after its last comma.
fn bracketed_permission_list(message: &str) -> Option<&str> {
    let at = find_ignore_ascii_case(message.as_bytes(), b"permission")?;
    let after = message.get(at..)?;
    let open = after.find('[')?;
    let inside = after.get(open.checked_add(1)?..)?;
    match inside.find(']') {
        Some(close) => inside.get(..close),
        None => inside.rfind(',').and_then(|comma| inside.get(..comma)),
    }
}

/// The items of a list such as `a:b:view, c:d:edit` or `[a:b:view c:d:edit]`.
fn list_items(list: &str) -> impl Iterator<Item = &str> {
    list.split(|c: char| c == ',' || c == '[' || c == ']' || c == '"' || c.is_whitespace())
        .filter(|item| !item.is_empty())
}

/// The byte offset of the first case-insensitive occurrence of `needle` in `haystack`.
pub(crate) fn find_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    find_ignore_ascii_case(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec as StdVec;

    fn parse(s: &str) -> GenesysError {
        parse_genesys_error(s.as_bytes()).expect("a Genesys error")
    }

    fn perms(e: &GenesysError) -> StdVec<&str> {
        e.missing_permissions().collect()
    }

    const MISSING: &str = r#"{"message":"Unable to perform the requested action. You are missing the following permission(s): [analytics:conversationDetail:view]","code":"missing.permissions","status":403,"messageWithParams":"Unable to perform the requested action. You are missing the following permission(s): {permissions}","messageParams":{},"contextId":"0d1f6a2e-5b3c-4e8f-9a71-2c6d8e4b0f13","details":[],"errors":[]}"#;

    #[test]
    fn missing_permissions_body() {
        let e = parse(MISSING);
        assert_eq!(e.status, Some(403));
        assert!(e.has_code("missing.permissions"));
        assert_eq!(e.context_id.as_deref(), Some("0d1f6a2e-5b3c-4e8f-9a71-2c6d8e4b0f13"));
        assert!(e.message.starts_with("Unable to perform"));
        assert!(e.message_params.is_empty());
        assert_eq!(perms(&e), ["analytics:conversationDetail:view"]);
    }

    /// Without the `diagnosis` feature `messageParams` is not read (its only use is the
    /// permission list of a 403 diagnosis); everything else is, and the permissions still come
    /// from the message.
    #[test]
    #[cfg(not(feature = "diagnosis"))]
    fn message_params_are_not_read_without_diagnosis() {
        let e = parse(
            r#"{"message":"You are missing the following permission(s): [x:y:z]","code":"missing.permissions","status":403,"messageParams":{"permissions":"[routing:queue:view]"},"contextId":"c1"}"#,
        );
        assert!(e.message_params.is_empty());
        assert_eq!(
            (e.code.as_str(), e.status, e.context_id.as_deref()),
            ("missing.permissions", Some(403), Some("c1"))
        );
        assert_eq!(perms(&e), ["x:y:z"]);
    }

    #[test]
    #[cfg(feature = "diagnosis")]
    fn permissions_from_message_params_win() {
        let e = parse(
            r#"{"message":"You are missing the following permission(s): [x:y:z]","code":"missing.permissions","messageParams":{"permissions":"[routing:queue:view, routing:queue:edit]","division":"d1"}}"#,
        );
        assert_eq!(perms(&e), ["routing:queue:view", "routing:queue:edit"]);

        let e = parse(
            r#"{"code":"missing.any.permissions","messageParams":{"count":2,"missingPermissions":["a:b:view","c:d:add"],"nested":{"x":1}}}"#,
        );
        assert_eq!(e.message_params.len(), 1);
        assert_eq!(e.message_params[0].1.as_str(), "a:b:view, c:d:add");
        assert_eq!(perms(&e), ["a:b:view", "c:d:add"]);

        // An empty parameter falls back to the message.
        let e = parse(
            r#"{"message":"You are missing the following permission(s): [x:y:z]","code":"missing.permissions","messageParams":{"permissions":"[]"}}"#,
        );
        assert_eq!(perms(&e), ["x:y:z"]);
    }

    #[test]
    fn division_refusal_with_empty_list_names_no_permission() {
        let e = parse(
            r#"{"message":"Unable to perform the requested action. You must have at least one of the following permissions assigned: [] in at least one of the following division(s): [dbdb51ee-1c2a-4f3e-8a90-7b6c5d4e3f21]","code":"missing.any.permissions","status":403}"#,
        );
        assert_eq!(perms(&e), StdVec::<&str>::new());
        let e = parse(
            r#"{"message":"You are missing the following permission(s): [telephony:extensionPool:edit:dbdb51ee-1c2a]","code":"missing.permissions"}"#,
        );
        assert_eq!(perms(&e), ["telephony:extensionPool:edit:dbdb51ee-1c2a"]);
        let e = parse(
            r#"{"message":"You are not authorized to perform the requested action.","code":"not.authorized"}"#,
        );
        assert_eq!(perms(&e), StdVec::<&str>::new());
    }

    #[test]
    fn rate_limit_body() {
        let e = parse(
            r#"{"message":"Rate limit exceeded the maximum. Retry the request in [42] seconds","code":"too.many.requests.retry.after","status":429,"contextId":"c0ffee00-1111-2222-3333-444455556666","details":[],"errors":[]}"#,
        );
        assert_eq!(e.status, Some(429));
        assert!(e.has_code("too.many.requests.retry.after"));
    }

    #[test]
    fn escapes_are_decoded_and_controls_neutralised() {
        let e = parse(
            r#"{"message":"a \"b\" \\ c\/d \u00e9 \ud83d\ude00 \ud800x \n\tEND","code":"x"}"#,
        );
        assert_eq!(e.message.as_str(), "a \"b\" \\ c/d \u{e9} \u{1f600} \u{fffd}x   END");
        // An escape RFC 8259 does not have is a syntax error: the members before it are kept.
        let e = parse(r#"{"code":"x","message":"bad \uZZ escape"}"#);
        assert_eq!((e.code.as_str(), e.message.as_str()), ("x", ""));
        let e = parse(r#"{"code":"x","message":"bad \q escape","status":400}"#);
        assert_eq!((e.message.as_str(), e.status), ("", None));
        assert_eq!(parse_genesys_error(br#"{"message":"trailing \u00","code":"x"}"#), None);
    }

    #[test]
    fn long_strings_truncate_at_char_boundaries() {
        let long = "\u{e9}".repeat(200); // 400 bytes
        let body = std::format!(r#"{{"message":"{long}","code":"{}"}}"#, "c".repeat(100));
        let e = parse(&body);
        assert_eq!(e.message.len(), 256);
        assert!(e.message.chars().all(|c| c == '\u{e9}'));
        assert_eq!(e.code.len(), 64);
        let body = std::format!(r#"{{"message":"x{long}","code":"c"}}"#);
        assert_eq!(parse(&body).message.len(), 255);
    }

    #[test]
    fn tolerated_oddities() {
        // Odd types are skipped; unknown fields are ignored; null is fine.
        let e = parse(
            r#"{"message":42,"code":"c","status":null,"contextId":{"a":[1,2]},"limit":{"key":"k","namespace":"n","value":3},"entityId":"e"}"#,
        );
        assert_eq!(e.message.as_str(), "");
        assert_eq!(e.status, None);
        assert_eq!(e.context_id, None);
        let e = parse(r#"{"code":"c","contextId":"bad\u0007id"}"#);
        assert_eq!(e.context_id, None);
        // An empty id is none, and a later one is read; a refused one too.
        let e = parse(r#"{"code":"c","contextId":"","contextId":"\u0041b"}"#);
        assert_eq!(e.context_id.as_deref(), Some("Ab"));
        let e = parse(r#"{"code":"c","contextId":"a\nb","contextId":"ok","contextId":"no"}"#);
        assert_eq!(e.context_id.as_deref(), Some("ok"));
        let long = r"\u00e9".repeat(40);
        let e = parse(&std::format!(r#"{{"code":"c","contextId":"{long}"}}"#));
        assert_eq!(e.context_id.map(|id| id.len()), Some(64));
        let e = parse(r#"{"status":70000,"code":"c"}"#);
        assert_eq!(e.status, None);
        let e = parse(r#"{"status":-1,"code":"c"}"#);
        assert_eq!(e.status, None);
        // A BOM and leading whitespace are fine; the first duplicate wins.
        let e = parse("\u{feff}  {\"code\":\"first\",\"code\":\"second\"}");
        assert_eq!(e.code.as_str(), "first");
        // More than MAX_PARAMS params: the first ones are kept.
        let e = parse(r#"{"code":"c","messageParams":{"a":"1","b":"2","c":"3","d":"4","e":"5"}}"#);
        if cfg!(feature = "diagnosis") {
            assert_eq!(e.message_params.len(), MAX_PARAMS);
            assert_eq!(e.message_params[3].0.as_str(), "d");
        } else {
            assert!(e.message_params.is_empty(), "messageParams is read only for diagnosis");
        }
    }

    #[test]
    fn truncated_bodies_keep_what_was_read() {
        let cut = &MISSING[..MISSING.find(r#""messageWithParams""#).unwrap() + 10];
        let e = parse(cut);
        assert!(e.has_code("missing.permissions"));
        assert_eq!(e.status, Some(403));
        assert_eq!(e.context_id, None);
        assert_eq!(perms(&e), ["analytics:conversationDetail:view"]);

        // A message cut inside its permission list reports only complete items.
        let e = parse(
            r#"{"code":"missing.permissions","message":"You are missing the following permission(s): [a:b:view, c:d:ed"#,
        );
        assert_eq!(e.message.as_str(), "");
        let e = GenesysError {
            message: String::try_from(
                "You are missing the following permission(s): [a:b:view, c:d:ed",
            )
            .unwrap(),
            ..Default::default()
        };
        assert_eq!(perms(&e), ["a:b:view"]);
    }

    #[test]
    fn not_genesys_bodies() {
        for body in [
            "",
            "   ",
            "null",
            "[]",
            r#""message""#,
            "<html><body>502 Bad Gateway</body></html>",
            "{}",
            r#"{"error":"invalid_client","error_description":"authentication failed"}"#,
            r#"{"code":""}"#,
            "{",
            "{\"code\"",
        ] {
            assert_eq!(parse_genesys_error(body.as_bytes()), None, "{body:?}");
        }
    }

    #[test]
    fn deep_nesting_is_cut_not_recursed() {
        let mut body = std::string::String::from(r#"{"code":"deep","details":"#);
        body.push_str(&"[".repeat(100_000));
        body.push_str(&"]".repeat(100_000));
        body.push_str(r#","message":"after"}"#);
        let e = parse_genesys_error(body.as_bytes()).unwrap();
        assert!(e.has_code("deep"));
        assert_eq!(e.message.as_str(), "");

        // Nesting within the limit is skipped normally.
        let body = std::format!(
            r#"{{"details":{}{},"code":"ok"}}"#,
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse_genesys_error(body.as_bytes()).unwrap().has_code("ok"));
    }

    #[test]
    fn display() {
        let e =
            parse(r#"{"message":"You are not authorized.","code":"not.authorized","status":403}"#);
        assert_eq!(std::format!("{e}"), "not.authorized (403): You are not authorized.");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_genesys_error(&bytes).map(|e| e.missing_permissions().count());
        }

        #[test]
        fn never_panics_on_json_like_input(s in r#"[{}\[\]",:\\u0-9a-f ]{0,64}|\{"(message|code|status|messageParams|contextId)":[{}\[\]",:\\u0-9a-zA-Z\[\] ]{0,64}"#) {
            let _ = parse_genesys_error(s.as_bytes()).map(|e| e.missing_permissions().count());
        }

        #[test]
        fn message_round_trips_through_json_escaping(text in "[^\\p{Cc}]{0,40}") {
            let mut escaped = std::string::String::new();
            for c in text.chars() {
                match c {
                    '"' => escaped.push_str("\\\""),
                    '\\' => escaped.push_str("\\\\"),
                    c if u32::from(c) > 0xffff => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            escaped.push_str(&std::format!("\\u{unit:04x}"));
                        }
                    }
                    c => escaped.push(c),
                }
            }
            let body = std::format!(r#"{{"code":"c","message":"{escaped}"}}"#);
            let e = parse_genesys_error(body.as_bytes()).unwrap();
            let expected: std::string::String = text.chars().scan(0usize, |len, c| {
                *len += c.len_utf8();
                (*len <= MESSAGE_CAPACITY).then_some(c)
            }).collect();
            prop_assert_eq!(e.message.as_str(), expected.as_str());
        }
    }
}
