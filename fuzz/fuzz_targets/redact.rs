//! `redact`: the masking of the client's credentials where a server echoes them, on arbitrary
//! credentials, tokens and bodies: `Secrets::spans` (raw bodies, JSON escapes read, one budget
//! of work for the text, as the std adapter's `Client::redact_bytes` masks), `Secrets::find`
//! and `find_in_cut` (the same search again from each span's end), `redact::token_spans` and
//! `find_token` (the tokens an adapter retired, masked after them), `Secrets::redacted`
//! (`Display`) and the bounded texts the session keeps (`Secrets::mask`, through the hidden
//! `mask_for_fuzzing`).
//!
//! Input: a flag byte (bit 0: the body was cut at its end, searched with `find_in_cut`; bit 1:
//! the session holds a token; bit 2: it sent a `client_secret_jwt` assertion; bits 3–4: the
//! number of retired tokens, at most 2; bits 5–6: the bounded text's capacity, 16, 64, 256 or
//! 320 bytes), the cut's position (u16 little-endian: the body is cut there if longer), the
//! assertion's `jti` byte, then lines: client id, client secret, token, the retired tokens
//! (as many lines as there are), then the body (the rest, raw bytes). A token that is not
//! visible ASCII (what a session accepts) is none. In the body, a NUL byte and the two after
//! it are a placeholder: the value the first names (secret, its form encoding, the Basic
//! value, the token, the assertion, the retired tokens, in that order, those there are),
//! each of its characters written in the form the seed in the second chooses (as it is, a
//! short escape, `\uXXXX` of either case, a UTF-16 surrogate pair beyond the BMP), so that the
//! fuzzer reaches echoes in every form a JSON encoder writes.
//!
//! Checked, the spans masked by a neutral marker (a byte no UTF-8 value holds, so that neither
//! `[redacted]` nor a marker next to text can make or hide a value):
//! - no panic; every span lies within the text, after where the search started, is not empty,
//!   and starts and ends on character boundaries of a valid UTF-8 text;
//! - the work each masking did, counted where it was done (the hidden `work_for_fuzzing`),
//!   stays within `redact::work_limit` of the text's length, whatever the values and the text;
//!   where the search ran out of work, its last span is the rest of the text; where it did not,
//!   its spans are those `find` names searching again from each end;
//! - the output holds no value as it is, nor read by an independent JSON-string decoder
//!   (every escape of RFC 8259 §7, surrogate pairs, anything else kept as it is); when cut, it
//!   does not end with four or more of a value's leading bytes, whether its last escape, left
//!   incomplete by the cut, is read as it is or dropped;
//! - `redacted` shows exactly the spans of `spans` replaced with `[redacted]`;
//! - the bounded text never exceeds its capacity; it holds no value (the markers aside) unless
//!   the server's text itself held `[redacted]`; it is left as it was when no value is in it
//!   byte for byte (nor, when full, four leading bytes of one at its end) and the work did not
//!   run out, and changed when one is; where the work ran out, it ends with the marker.
#![no_main]

use credflow_core::Duration;
use credflow_core::oauth::JwtInputs;
use credflow_core::oauth::form;
use credflow_core::oauth::jwt::{self, AssertionClaims};
use credflow_core::redact::{
    self, MIN_CUT_PREFIX, REDACTED, Secrets, Spans, find_token, token_spans, work_limit,
};
use credflow_core::secret::Credentials;
use credflow_fuzz::REFERENCE;
use libfuzzer_sys::fuzz_target;

/// Replaces a masked span in the checked output: in no UTF-8 text, and not an escape.
const MARKER: u8 = 0xff;
/// The token endpoint the assertion is made for.
const AUDIENCE: &str = "https://login.example/oauth/token";
/// A body expanded past this many bytes is not searched (to keep runs fast: the search is
/// linear in the body's length).
const MAX_BODY: usize = 1 << 14;

fuzz_target!(|data: &[u8]| {
    let [flags, cut_lo, cut_hi, jti, rest @ ..] = data else { return };
    let cut = flags & 1 != 0;
    let cut_at = usize::from(u16::from_le_bytes([*cut_lo, *cut_hi]));
    let mut rest = rest;
    let mut line = || credflow_fuzz::next_line(&mut rest).map(String::from_utf8_lossy);
    let (Some(id), Some(secret)) = (line(), line()) else { return };
    let Ok(creds) = Credentials::from_strs(&id, &secret) else { return };
    let token = line().filter(|t| flags & 2 != 0 && is_token(t));
    let retired: Vec<_> = (0..((flags >> 3) & 3).min(2)).filter_map(|_| line()).collect();
    let retired: Vec<&str> = retired.iter().map(|t| &**t).filter(|t| is_token(t)).collect();
    let inputs = JwtInputs { now: REFERENCE, jti: [*jti; 16] };
    let lifetime = Duration::from_secs(60);
    let jwt = (flags & 4 != 0).then_some((inputs, AUDIENCE, lifetime));
    let secrets = Secrets::for_fuzzing(&creds, token.as_deref(), jwt);

    // Every value, computed apart from the matcher (the encoders are the token request's,
    // checked by the `token_request` target).
    let secret = creds.secret.expose_secret();
    let mut buf = vec![0u8; 4096];
    let mut values: Vec<String> = vec![secret.to_owned()];
    values.push(form::encode(secret, &mut buf).expect("room").to_owned());
    let basic = form::basic_authorization(creds.id.as_str(), secret, &mut buf).expect("room");
    values.push(basic.strip_prefix("Basic ").expect("Basic").to_owned());
    values.extend(token.as_deref().map(str::to_owned));
    if jwt.is_some() {
        let claims =
            AssertionClaims { audience: AUDIENCE, jti: inputs.jti, issued_at: REFERENCE, lifetime };
        values.push(jwt::client_assertion(&creds, &claims, &mut buf).expect("room").to_owned());
    }
    values.extend(retired.iter().map(|t| (*t).to_owned()));

    let Some(mut body) = expand(rest, &values) else { return };
    if cut {
        body.truncate(cut_at);
    }

    // As `Client::redact_bytes` / `redact_cut_bytes`: the session's values, then each retired
    // token in what that left, each masking within its budget.
    let find = |text: &[u8], from: usize| {
        if cut { secrets.find_in_cut(text, from) } else { secrets.find(text, from) }
    };
    redact::work_for_fuzzing(); // what computing the values above hashed
    let (mut shown, spans) = mask_all(&body, secrets.spans(&body, cut), find, &[MARKER]);
    for token in &retired {
        let search = token_spans(&shown, token, cut);
        let find = |text: &[u8], from: usize| find_token(text, from, token, cut);
        shown = mask_all(&shown, search, find, &[MARKER]).0;
    }
    assert_eq!(find(&body, body.len() + 1), None);
    for value in &values {
        check_not_shown(&shown, value, cut, &body);
    }

    if let Ok(text) = std::str::from_utf8(&body) {
        let whole: Vec<_> = secrets.spans(&body, false).collect();
        redact::work_for_fuzzing();
        let expected = replaced(&body, &whole, REDACTED.as_bytes());
        let got = secrets.redacted(text).to_string();
        redact::work_for_fuzzing();
        assert_eq!(got.as_bytes(), expected, "redacted() is not the masked spans of spans()");
        for span in whole.iter().chain(&spans) {
            let bounds = text.is_char_boundary(span.start) && text.is_char_boundary(span.end);
            assert!(bounds, "{span:?} splits a character of {text:?}");
        }
    }

    // The session's own values only: it masks what it keeps with those.
    let text = String::from_utf8_lossy(&body);
    let held = &values[..values.len() - retired.len()];
    match (flags >> 5) & 3 {
        0 => check_bounded::<16>(&secrets, &text, held),
        1 => check_bounded::<64>(&secrets, &text, held),
        2 => check_bounded::<256>(&secrets, &text, held),
        _ => check_bounded::<320>(&secrets, &text, held),
    }
});

/// Visible ASCII, as a session accepts a token.
fn is_token(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())
}

/// `text` with every span of `search` (one budget for the text) replaced by `marker`, and the
/// spans, checked: within the text and in order (see [`mask`]); the work counted within
/// `work_limit` of the text's length; the last span the rest of the text where the work ran
/// out, else the spans `find` names searching again from each end.
fn mask_all(
    text: &[u8],
    mut search: Spans<'_, '_>,
    find: impl Fn(&[u8], usize) -> Option<std::ops::Range<usize>>,
    marker: &[u8],
) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let spans: Vec<_> = search.by_ref().collect();
    let work = redact::work_for_fuzzing();
    let limit = work_limit(text.len());
    assert!(work <= limit, "{work} units of work for {} bytes (limit {limit})", text.len());
    assert!(search.work() <= limit);
    let mut from = 0;
    for span in &spans {
        assert!(
            from <= span.start && span.start < span.end && span.end <= text.len(),
            "span {span:?} searching from {from} in {} bytes",
            text.len()
        );
        from = span.end;
    }
    if search.exhausted() {
        assert_eq!(spans.last().map(|s| s.end), Some(text.len()), "ran out, the rest shown");
    } else {
        let (_, found) = mask(text, find, marker);
        redact::work_for_fuzzing();
        // A search from a span's end has a budget of its own, for the rest of the text: where
        // that ran out, its last span is the rest.
        let agree = spans == found
            || found.split_last().is_some_and(|(rest, same)| {
                rest.end == text.len()
                    && spans.get(..same.len()) == Some(same)
                    && spans.get(same.len()).is_none_or(|s| rest.start <= s.start)
            });
        assert!(agree, "spans() {spans:?} is not find() {found:?} searching again from each end");
    }
    (replaced(text, &spans, marker), spans)
}

/// `text` with each of `spans` replaced by `marker`.
fn replaced(text: &[u8], spans: &[std::ops::Range<usize>], marker: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut shown = 0;
    for span in spans {
        out.extend_from_slice(&text[shown..span.start]);
        out.extend_from_slice(marker);
        shown = span.end;
    }
    out.extend_from_slice(&text[shown..]);
    out
}

/// `text` with every span `find` names (searching on from the end of the last one) replaced by
/// `marker`, and the spans. Each must be a non-empty range within the text, at or after where
/// the search started.
fn mask(
    text: &[u8],
    find: impl Fn(&[u8], usize) -> Option<std::ops::Range<usize>>,
    marker: &[u8],
) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut out = Vec::with_capacity(text.len());
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(span) = find(text, from) {
        assert!(
            from <= span.start && span.start < span.end && span.end <= text.len(),
            "span {span:?} searching from {from} in {} bytes",
            text.len()
        );
        out.extend_from_slice(&text[from..span.start]);
        out.extend_from_slice(marker);
        from = span.end;
        spans.push(span);
    }
    out.extend_from_slice(&text[from..]);
    (out, spans)
}

/// The output holds `value` neither as it is nor, its escapes read, in any form; a cut output
/// does not end with its first [`MIN_CUT_PREFIX`] bytes or more.
fn check_not_shown(shown: &[u8], value: &str, cut: bool, body: &[u8]) {
    let value = value.as_bytes();
    let read = decode(shown);
    let why = || {
        format!(
            "value {:?} shown in {:?} (read as {:?}), from {:?}",
            String::from_utf8_lossy(value),
            String::from_utf8_lossy(shown),
            String::from_utf8_lossy(&read),
            String::from_utf8_lossy(body)
        )
    };
    assert!(!contains(shown, value), "{}", why());
    assert!(!contains(&read, value), "{}", why());
    if !cut {
        return;
    }
    let without_cut_escape = decode(&shown[..shown.len() - cut_escape(shown)]);
    for read in [&read, &without_cut_escape] {
        for k in MIN_CUT_PREFIX..value.len() {
            assert!(!read.ends_with(&value[..k]), "{k} leading bytes at the end: {}", why());
        }
    }
}

/// The bounded text: within its capacity; no value in it but where the markers are; left as it
/// was exactly when nothing (byte for byte, and at the end of a full text four leading bytes
/// or more) is there to mask.
fn check_bounded<const N: usize>(secrets: &Secrets<'_>, text: &str, values: &[String]) {
    redact::work_for_fuzzing();
    let (kept, masked, exhausted) = secrets.mask_for_fuzzing::<N>(text);
    // Masked, then searched again to tell whether the work ran out: twice the work.
    let work = redact::work_for_fuzzing();
    let limit = work_limit(kept.len());
    assert!(work <= 2 * limit, "{work} units of work for {} bytes (limit {limit})", kept.len());
    assert!(masked.len() <= N, "{} bytes in a text of {N}", masked.len());
    if exhausted {
        assert!(masked.ends_with(REDACTED), "ran out, the rest shown: {masked:?}");
    }
    let full = kept.len() + 4 > N;
    let holds = values.iter().any(|v| {
        let v = v.as_bytes();
        contains(kept.as_bytes(), v)
            || (full && (MIN_CUT_PREFIX..v.len()).any(|k| kept.as_bytes().ends_with(&v[..k])))
    });
    if !holds {
        if !exhausted {
            assert_eq!(masked.as_str(), kept.as_str(), "masked with nothing to mask");
        }
        return;
    }
    if kept.contains(REDACTED) {
        return; // the server's own `[redacted]` cannot be told from a marker
    }
    if !values.iter().any(|v| v.starts_with(REDACTED)) {
        assert_ne!(masked.as_str(), kept.as_str(), "a value left in {kept:?}");
    }
    // A marker that did not fit cut the text before it, perhaps within an earlier marker.
    let mut shown = masked.as_str();
    if let Some(before) = shown.strip_suffix(REDACTED) {
        let cut_marker = (1..REDACTED.len()).rev().find(|&n| before.ends_with(&REDACTED[..n]));
        shown = &before[..before.len() - cut_marker.unwrap_or(0)];
    }
    let shown = shown.replace(REDACTED, "\u{0}");
    for value in values {
        assert!(!shown.contains(value.as_str()), "{value:?} in {masked:?} (kept {kept:?})");
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The body with each placeholder (NUL, value index, form seed) replaced by that value written
/// in the forms the seed chooses; `None` past [`MAX_BODY`].
fn expand(raw: &[u8], values: &[String]) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        match raw[at..] {
            [0, which, seed, ..] => {
                let value = &values[usize::from(which) % values.len()];
                write_escaped(&mut body, value, seed);
                at += 3;
            }
            _ => {
                body.push(raw[at]);
                at += 1;
            }
        }
        if body.len() > MAX_BODY {
            return None;
        }
    }
    Some(body)
}

/// `value` as a JSON encoder may write it, each character in the form a generator seeded with
/// `seed` chooses (seed 0: every character as it is).
fn write_escaped(out: &mut Vec<u8>, value: &str, seed: u8) {
    let mut state = u32::from(seed);
    for c in value.chars() {
        // xorshift; 0 stays 0.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let short = match c {
            '"' => Some('"'),
            '\\' => Some('\\'),
            '/' => Some('/'),
            _ => None,
        };
        match (state % 4, short) {
            (0, _) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            (1, Some(s)) => out.extend_from_slice(&[b'\\', s as u8]),
            (form, _) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let hex =
                        if form == 3 { format!("\\u{unit:04X}") } else { format!("\\u{unit:04x}") };
                    out.extend_from_slice(hex.as_bytes());
                }
            }
        }
    }
}

/// `text` with its JSON string escapes read (RFC 8259 §7: the short ones, `\uXXXX`, a
/// surrogate pair as the one character it stands for); a backslash that starts none of them
/// (a lone surrogate, an unknown letter, the end) is kept as it is, and so is every other byte.
fn decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        match escape(&text[at..]) {
            Some((c, len)) => {
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                at += len;
            }
            None => {
                out.push(text[at]);
                at += 1;
            }
        }
    }
    out
}

/// The character the escape `text` starts with stands for, and the escape's length.
fn escape(text: &[u8]) -> Option<(char, usize)> {
    let short = match text {
        [b'\\', b'"', ..] => '"',
        [b'\\', b'\\', ..] => '\\',
        [b'\\', b'/', ..] => '/',
        [b'\\', b'b', ..] => '\u{8}',
        [b'\\', b'f', ..] => '\u{c}',
        [b'\\', b'n', ..] => '\n',
        [b'\\', b'r', ..] => '\r',
        [b'\\', b't', ..] => '\t',
        [b'\\', b'u', ..] => {
            let unit = hex4(text.get(2..6)?)?;
            return match unit {
                0xd800..=0xdbff => {
                    let [b'\\', b'u', low @ ..] = text.get(6..12)? else { return None };
                    let low = hex4(low).filter(|low| (0xdc00..=0xdfff).contains(low))?;
                    let c =
                        0x10000 + ((u32::from(unit) - 0xd800) << 10) + (u32::from(low) - 0xdc00);
                    char::from_u32(c).map(|c| (c, 12))
                }
                0xdc00..=0xdfff => None,
                _ => char::from_u32(u32::from(unit)).map(|c| (c, 6)),
            };
        }
        _ => return None,
    };
    Some((short, 2))
}

fn hex4(digits: &[u8]) -> Option<u16> {
    let digits = std::str::from_utf8(digits).ok()?;
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

/// The length of the escape a cut left incomplete at the end of `text` (`\`, `\u`, `\u00`, a
/// high surrogate without its low one, or with part of it), 0 if none. Read from the start as
/// [`decode`] reads it: in `\\u00` the escape is `\\`, and `u00` no escape.
fn cut_escape(text: &[u8]) -> usize {
    let mut at = 0;
    while at < text.len() {
        if let Some((_, len)) = escape(&text[at..]) {
            at += len;
        } else if text[at] == b'\\' && incomplete(&text[at..]) {
            return text.len() - at;
        } else {
            at += 1;
        }
    }
    0
}

/// Whether `tail` is the start of an escape that did not end: a proper prefix of `\uXXXX`, or
/// a high surrogate's escape followed by a proper prefix of a low one's.
fn incomplete(tail: &[u8]) -> bool {
    let hex = |b: &u8| b.is_ascii_hexdigit();
    match tail {
        [b'\\'] | [b'\\', b'u'] => true,
        [b'\\', b'u', rest @ ..] if rest.len() < 4 => rest.iter().all(hex),
        [b'\\', b'u', unit @ ..] if unit.len() >= 4 && unit.len() < 10 => {
            let Some(high) = hex4(&unit[..4]) else { return false };
            let low = &unit[4..];
            (0xd800..=0xdbff).contains(&high)
                && match low {
                    [] | [b'\\'] | [b'\\', b'u'] => true,
                    [b'\\', b'u', d, rest @ ..] => {
                        d.eq_ignore_ascii_case(&b'd')
                            && match rest {
                                [] => true,
                                [c, more @ ..] => {
                                    matches!(c.to_ascii_lowercase(), b'c'..=b'f')
                                        && more.iter().all(hex)
                                }
                            }
                    }
                    _ => false,
                }
        }
        _ => false,
    }
}
