//! `credflow proxy`'s own decisions about what a local client sent (`cli/src/proxy/rules.rs`,
//! included here by path: the code the proxy runs): the priority header, the local key (from
//! `X-Credflow-Key`, a bearer token, or a token request's Basic credentials or form), the
//! headers stripped before forwarding, the transfer codings refused, and the body plan for a
//! `Content-Length` against the buffer limit.
//!
//! Input: the buffer limit (u16 LE), flags (bit 0: chunked), then header lines `name: value`
//! until an empty line (a one-byte name is one of [`NAMES`]), then a token request's form body.
//!
//! Checked, against reference models written here: the priority is the one name given once, or
//! refused; the body plan equals a plain reading of RFC 9110 §8.6 (one decimal length, equal
//! list members, limit inclusive); the Basic secret equals a reference base64 decoder's and
//! form decoding's; the presented key is borrowed from the input and compared exactly;
//! `Connection` names are every token listed (none dropped, however many); a transfer coding
//! is `chunked` only if every member is; every hop-by-hop header and credflow's own are
//! stripped inbound, `ININ-Correlation-Id` never.
#![no_main]

#[allow(dead_code)]
#[path = "../../cli/src/proxy/rules.rs"]
mod rules;

use libfuzzer_sys::fuzz_target;
use rules::{BodyPlan, Priority, TransferCoding};

/// Header names a one-byte name stands for: those the rules read or strip.
const NAMES: [&str; 12] = [
    "x-credflow-priority",
    "x-credflow-key",
    "authorization",
    "connection",
    "content-length",
    "transfer-encoding",
    "host",
    "te",
    "keep-alive",
    "proxy-authorization",
    "inin-correlation-id",
    "expect",
];

/// The local key the target compares with.
const KEY: &[u8] = b"local-key-0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let [lo, hi, flags, rest @ ..] = data else { return };
    let limit = usize::from(u16::from_le_bytes([*lo, *hi]));
    let chunked = flags & 1 == 1;
    let (headers, form) = split_head(rest);
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    };

    // Priority: exactly one of the three names, trimmed, any case; else refused.
    let given: Vec<&[u8]> = values(rules::PRIORITY_HEADER).collect();
    let expected = match given.as_slice() {
        [] => Some(Priority::Normal),
        [one] => match one.trim_ascii().to_ascii_lowercase().as_slice() {
            b"critical" => Some(Priority::Critical),
            b"normal" => Some(Priority::Normal),
            b"background" => Some(Priority::Background),
            _ => None,
        },
        _ => None,
    };
    assert_eq!(rules::parse_priority(values(rules::PRIORITY_HEADER)).ok(), expected);

    // Body plan: a model of RFC 9110 §8.6.
    let plan = rules::body_plan(values("content-length"), chunked, limit);
    assert_eq!(plan.ok(), model_plan(values("content-length").collect(), chunked, limit));

    // Connection: every listed token, borrowed from the input, nothing else.
    let named: Vec<&[u8]> = rules::connection_names(values("connection")).collect();
    let model: Vec<&[u8]> = values("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|n| n.trim_ascii())
        .filter(|n| {
            !n.is_empty()
                && n.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        })
        .collect();
    assert_eq!(named, model);

    // Transfer codings: only `chunked`, alone, is one the proxy passes on (hyper reads the
    // last member only).
    let members: Vec<&[u8]> = values("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|m| m.trim_ascii())
        .collect();
    let expected = match members.as_slice() {
        [] => TransferCoding::None,
        [only] if only.to_ascii_lowercase() == b"chunked" => TransferCoding::Chunked,
        _ => TransferCoding::Other,
    };
    assert_eq!(rules::transfer_coding(values("transfer-encoding")), expected);

    // Stripping: hop-by-hop and credflow's own go, the correlation id stays.
    for (name, _) in &headers {
        let Ok(name) = std::str::from_utf8(name) else { continue };
        let lower = name.to_ascii_lowercase();
        let _ = rules::strip_outbound(&lower);
        if rules::HOP_BY_HOP.contains(&lower.as_str()) {
            assert!(rules::strip_inbound(&lower) && rules::strip_outbound(&lower));
        }
    }
    for own in [rules::PRIORITY_HEADER, rules::KEY_HEADER, "authorization", "host"] {
        assert!(rules::strip_inbound(own));
    }
    assert!(
        !rules::strip_inbound("inin-correlation-id")
            && !rules::strip_outbound("inin-correlation-id")
    );

    // The presented key: borrowed from the input, compared exactly.
    let key_header = values(rules::KEY_HEADER).next();
    let authorization = values("authorization").next();
    if let Some(presented) = rules::presented_key(key_header, authorization) {
        let range = data.as_ptr_range();
        assert!(presented.is_empty() || range.contains(&presented.as_ptr()));
        assert_eq!(rules::key_matches(presented, KEY), presented == KEY);
        assert!(rules::key_matches(presented, presented));
    }

    // A token request's secret: Basic (reference decoders) or the form's client_secret.
    let secret = rules::token_request_secret(authorization, form);
    assert_eq!(secret, model_secret(authorization, form));
});

/// Header lines until an empty line (`\r` before `\n` dropped), then the rest.
fn split_head(data: &[u8]) -> (Vec<(&[u8], &[u8])>, &[u8]) {
    let mut headers = Vec::new();
    let mut rest = data;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[end + 1..];
        if line.is_empty() {
            return (headers, rest);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name = &line[..colon];
        let name = match name {
            [one] => NAMES[usize::from(*one) % NAMES.len()].as_bytes(),
            _ => name,
        };
        headers.push((name, line[colon + 1..].trim_ascii()));
    }
    (headers, rest)
}

fn model_plan(values: Vec<&[u8]>, chunked: bool, limit: usize) -> Option<BodyPlan> {
    if chunked {
        return Some(BodyPlan::ReadUpTo(limit));
    }
    let mut lengths = Vec::new();
    for value in values {
        for part in value.split(|&b| b == b',') {
            let part = std::str::from_utf8(part.trim_ascii()).ok()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            lengths.push(part.parse::<u64>().ok()?);
        }
    }
    if lengths.windows(2).any(|w| w[0] != w[1]) {
        return None;
    }
    Some(match lengths.first() {
        None | Some(0) => BodyPlan::Empty,
        Some(&n) if n <= limit as u64 => BodyPlan::Buffer(n as usize),
        Some(_) => BodyPlan::Stream,
    })
}

fn model_secret(authorization: Option<&[u8]>, form: &[u8]) -> Option<Vec<u8>> {
    if let Some(value) = authorization {
        let value = value.trim_ascii();
        let space = value.iter().position(|&b| b == b' ')?;
        if !value[..space].eq_ignore_ascii_case(b"basic") {
            return None;
        }
        let decoded = reference_base64(value[space + 1..].trim_ascii())?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return reference_form_decode(&decoded[colon + 1..]);
    }
    for pair in form.split(|&b| b == b'&') {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else { continue };
        if &pair[..eq] == b"client_secret" {
            if let Some(value) = reference_form_decode(&pair[eq + 1..]) {
                return Some(value);
            }
        }
    }
    None
}

/// RFC 4648 §4 with padding, by bit accumulation (the rules decode by quads).
fn reference_base64(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 4 != 0 {
        return None;
    }
    let body_len = text.len() - text.iter().rev().take_while(|&&c| c == b'=').count();
    if text.len() - body_len > 2 {
        return None;
    }
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut acc, mut bits, mut out) = (0_u32, 0_u32, Vec::new());
    for &c in &text[..body_len] {
        let v = alphabet.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn reference_form_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(text.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}
