//! A small, strict, non-recursive JSON reader (RFC 8259) for the body parsers: token responses,
//! OAuth error bodies and Genesys Cloud error bodies.
//!
//! It reads an object member by member ([`members`]), handing each value over borrowed and
//! still escaped ([`Value`]); nested objects and arrays are validated and handed over as their
//! text, to be read the same way or ignored. Nothing is copied, nothing allocated, and nesting
//! is tracked in a bit stack rather than by recursion, so a hostile body cannot exhaust the
//! stack: nesting deeper than the caller's limit is an error at the point it happens.
//!
//! It replaces `serde-json-core`, which these parsers used before: four serde-derived structs,
//! one of them parsed up to four times, and their visitors: this reader is a fraction of their
//! code in a firmware image (BENCHMARKS.md). `serde-json-core`
//! stays as the oracle of the differential tests (`tests` below and the `json` fuzz target):
//! every object this reader accepts, serde-json-core accepts too, with the same members.
//!
//! Strict means RFC 8259's grammar: no comments, no trailing commas, no single quotes, no
//! control characters in strings, numbers without leading zeros, one value per text with only
//! whitespace after it, and strings that are valid UTF-8 with only the escapes of §7.

// Items are `pub` for the fuzz targets (see the crate root); the module is private otherwise.
#![cfg_attr(not(feature = "__fuzzing"), allow(unreachable_pub))]

/// The text is not JSON, or nests deeper than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

/// The deepest nesting [`members`] accepts whatever the caller asks: the bit stack's width.
const DEPTH_LIMIT: usize = 64;

/// One JSON value, borrowed from the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A string, between its quotes, escapes not yet decoded (see [`unescape`]).
    Str(&'a str),
    /// A number's text, valid per RFC 8259 §6 (see [`integer`]).
    Number(&'a str),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An object's text from `{` to `}`, valid; read it with [`members`].
    Object(&'a [u8]),
    /// An array's text from `[` to `]`, valid; read it with [`elements`].
    Array(&'a [u8]),
}

/// The members of the object that `text` holds (leading whitespace allowed, nothing but
/// whitespace after it), nesting at most `max_depth` deep counting the object itself.
///
/// Yields each member as `(key, value)`, the key still escaped, in the order of the text, then
/// `None`; on malformed text it yields one `Err` and then `None`, so members before the fault
/// have been seen (a truncated body keeps what was read).
pub fn members(text: &[u8], max_depth: usize) -> Members<'_> {
    Members(Sequence::new(text, b'{', max_depth))
}

/// The elements of the array that `text` holds; otherwise as [`members`].
pub fn elements(text: &[u8], max_depth: usize) -> Elements<'_> {
    Elements(Sequence::new(text, b'[', max_depth))
}

/// See [`members`].
pub struct Members<'a>(Sequence<'a>);

impl<'a> Iterator for Members<'a> {
    type Item = Result<(&'a str, Value<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_item(true).map(|r| r.map(|(key, value)| (key.unwrap_or(""), value)))
    }
}

/// See [`elements`].
pub struct Elements<'a>(Sequence<'a>);

impl<'a> Iterator for Elements<'a> {
    type Item = Result<Value<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_item(false).map(|r| r.map(|(_, value)| value))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Before the opening bracket.
    Start,
    /// After the opening bracket or an item.
    Inside { first: bool },
    /// After the closing bracket or a fault.
    Done,
}

/// The shared walk of [`Members`] and [`Elements`].
struct Sequence<'a> {
    scan: Scanner<'a>,
    open: u8,
    max_depth: usize,
    at: Position,
}

impl<'a> Sequence<'a> {
    fn new(text: &'a [u8], open: u8, max_depth: usize) -> Self {
        Sequence { scan: Scanner { text, pos: 0 }, open, max_depth, at: Position::Start }
    }

    fn next_item(
        &mut self,
        keyed: bool,
    ) -> Option<Result<(Option<&'a str>, Value<'a>), Malformed>> {
        let result = self.step(keyed);
        match result {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.at = Position::Done;
                None
            }
            Err(e) => {
                self.at = Position::Done;
                Some(Err(e))
            }
        }
    }

    fn step(&mut self, keyed: bool) -> Result<Option<(Option<&'a str>, Value<'a>)>, Malformed> {
        let close = if keyed { b'}' } else { b']' };
        let s = &mut self.scan;
        let first = match self.at {
            Position::Done => return Ok(None),
            Position::Start => {
                if self.max_depth == 0 {
                    return Err(Malformed);
                }
                s.ws();
                s.expect(self.open)?;
                true
            }
            Position::Inside { first } => first,
        };
        s.ws();
        if s.eat(close) {
            // Only whitespace may follow the text's one value.
            s.ws();
            return if s.peek().is_none() { Ok(None) } else { Err(Malformed) };
        }
        if !first {
            s.expect(b',')?;
            s.ws();
        }
        let key = if keyed {
            let key = s.string()?;
            s.ws();
            s.expect(b':')?;
            Some(key)
        } else {
            None
        };
        let value = s.value(self.max_depth.saturating_sub(1))?;
        self.at = Position::Inside { first: false };
        Ok(Some((key, value)))
    }
}

/// A cursor over the text.
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn bump(&mut self) {
        // Every bump follows a `peek` that found a byte, so the cursor stays within the text
        // and this cannot wrap (so no saturating add, which is larger at every call site).
        self.pos = self.pos.wrapping_add(1);
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.bump();
        }
        hit
    }

    fn expect(&mut self, b: u8) -> Result<(), Malformed> {
        if self.eat(b) { Ok(()) } else { Err(Malformed) }
    }

    /// Skips RFC 8259 whitespace.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn since(&self, start: usize) -> &'a [u8] {
        self.text.get(start..self.pos).unwrap_or_default()
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.bump();
        }
        self.pos.saturating_sub(start)
    }

    /// A string (at its opening quote); returns its content, still escaped.
    fn string(&mut self) -> Result<&'a str, Malformed> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match self.peek().ok_or(Malformed)? {
                b'"' => break,
                b'\\' => {
                    self.bump();
                    match self.peek().ok_or(Malformed)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                self.bump();
                                if !self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
                                    return Err(Malformed);
                                }
                            }
                        }
                        _ => return Err(Malformed),
                    }
                }
                0..=0x1F => return Err(Malformed),
                _ => {}
            }
            self.bump();
        }
        let content = self.since(start);
        self.bump(); // the closing quote
        core::str::from_utf8(content).map_err(|_| Malformed)
    }

    /// A number (at its first character), per RFC 8259 §6.
    fn number(&mut self) -> Result<&'a str, Malformed> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.bump(),
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Malformed),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(Malformed);
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _sign = self.eat(b'+') || self.eat(b'-');
            if self.digits() == 0 {
                return Err(Malformed);
            }
        }
        core::str::from_utf8(self.since(start)).map_err(|_| Malformed)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Malformed> {
        let end = self.pos.saturating_add(word.len());
        if self.text.get(self.pos..end) != Some(word) {
            return Err(Malformed);
        }
        self.pos = end;
        Ok(())
    }

    /// A value (leading whitespace allowed) whose containers may nest `depth` deep.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, Malformed> {
        self.ws();
        Ok(match self.peek().ok_or(Malformed)? {
            b'"' => Value::Str(self.string()?),
            b'-' | b'0'..=b'9' => Value::Number(self.number()?),
            first @ (b't' | b'f' | b'n') => {
                // One literal check for the three words.
                let (word, value): (&[u8], _) = match first {
                    b't' => (b"true", Value::Bool(true)),
                    b'f' => (b"false", Value::Bool(false)),
                    _ => (b"null", Value::Null),
                };
                self.literal(word)?;
                value
            }
            b'{' => Value::Object(self.container(depth)?),
            b'[' => Value::Array(self.container(depth)?),
            _ => return Err(Malformed),
        })
    }

    /// Validates the object or array at the cursor, nesting at most `depth` deep, without
    /// recursion: a bit per level says whether it is an object. Returns its text.
    fn container(&mut self, depth: usize) -> Result<&'a [u8], Malformed> {
        let limit = depth.min(DEPTH_LIMIT);
        let start = self.pos;
        let mut objects = 0u64;
        let mut level = 0usize;
        // At the top of the loop the cursor is where a value must start.
        loop {
            self.ws();
            let mut closed = match self.peek().ok_or(Malformed)? {
                open @ (b'{' | b'[') => {
                    if level >= limit {
                        return Err(Malformed);
                    }
                    self.bump();
                    level = level.saturating_add(1);
                    let is_object = open == b'{';
                    objects = objects.wrapping_shl(1) | u64::from(is_object);
                    self.ws();
                    if self.eat(if is_object { b'}' } else { b']' }) {
                        true
                    } else {
                        if is_object {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                _ => {
                    self.value(0)?;
                    false
                }
            };
            // After a value, or after a container just closed.
            loop {
                if closed {
                    level = level.saturating_sub(1);
                    objects = objects.wrapping_shr(1);
                }
                if level == 0 {
                    return Ok(self.since(start));
                }
                self.ws();
                let in_object = objects & 1 == 1;
                match self.peek().ok_or(Malformed)? {
                    b',' => {
                        self.bump();
                        if in_object {
                            self.ws();
                            self.member_key()?;
                        }
                        break;
                    }
                    b'}' if in_object => self.bump(),
                    b']' if !in_object => self.bump(),
                    _ => return Err(Malformed),
                }
                closed = true;
            }
        }
    }

    /// A member's key and its colon.
    fn member_key(&mut self) -> Result<(), Malformed> {
        self.string()?;
        self.ws();
        self.expect(b':')
    }
}

/// A number's value if it is an integer (no fraction, no exponent): `Ok(n)` for `0` and up,
/// `Err(n)` below zero; `None` if it is not an integer or does not fit 64 bits.
pub fn integer(number: &str) -> Option<Result<u64, i64>> {
    let (negative, digits) = match number.as_bytes() {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    // By hand rather than `str::parse`, whose generic code is large in a firmware image.
    let mut magnitude = 0u64;
    for &b in digits {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        magnitude = magnitude.checked_mul(10)?.checked_add(u64::from(digit))?;
    }
    if !negative || magnitude == 0 {
        return Some(Ok(magnitude));
    }
    // -(2^63) is the one magnitude without a positive twin in i64.
    let value = 0i64.checked_sub_unsigned(magnitude).filter(|v| *v < 0)?;
    Some(Err(value))
}

/// The characters of a string's escaped content (as [`Value::Str`] holds it), unescaped
/// (RFC 8259 §7). Lenient, for text that did not come through the reader: a bad escape or a
/// lone surrogate becomes U+FFFD.
pub fn unescape(escaped: &str) -> Unescape<'_> {
    Unescape(escaped.chars())
}

/// See [`unescape`].
#[derive(Clone)]
pub struct Unescape<'a>(core::str::Chars<'a>);

impl Unescape<'_> {
    fn hex4(&mut self) -> Option<u32> {
        let s = self.0.as_str();
        // By hand rather than `u32::from_str_radix`: four digits, so nothing wraps.
        let mut unit = 0u32;
        for &b in s.as_bytes().get(..4)? {
            unit = unit.wrapping_mul(16).wrapping_add(char::from(b).to_digit(16)?);
        }
        self.0 = s.get(4..)?.chars();
        Some(unit)
    }

    fn unicode(&mut self) -> char {
        let Some(unit) = self.hex4() else { return char::REPLACEMENT_CHARACTER };
        if !(0xD800..0xDC00).contains(&unit) {
            return char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER);
        }
        let before = self.0.clone();
        if let Some(rest) = self.0.as_str().strip_prefix("\\u") {
            self.0 = rest.chars();
            if let Some(low @ 0xDC00..=0xDFFF) = self.hex4() {
                // 0x10000 + 10 bits + 10 bits: at most 0x10FFFF (an addition: the high half
                // overlaps 0x10000, so an OR would lose a bit above U+3FFFF).
                let c = unit
                    .wrapping_sub(0xD800)
                    .wrapping_shl(10)
                    .saturating_add(low.wrapping_sub(0xDC00))
                    .saturating_add(0x1_0000);
                return char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
            }
        }
        self.0 = before;
        char::REPLACEMENT_CHARACTER
    }
}

impl Iterator for Unescape<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let c = self.0.next()?;
        if c != '\\' {
            return Some(c);
        }
        Some(match self.0.next() {
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => self.unicode(),
            Some(c) => c, // `\"`, `\\`, `\/`, and leniently any other
            None => char::REPLACEMENT_CHARACTER,
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;

    fn all(text: &str, depth: usize) -> Result<Vec<(&str, Value<'_>)>, Malformed> {
        members(text.as_bytes(), depth).collect()
    }

    #[test]
    fn reads_members_in_order() {
        let m = all(
            " {\"a\" : \"x\\\"y\", \"b\":-1.5e+3,\"c\":true,\"d\":false,\"e\":null,\n\"f\":{\"g\":[1,{}]},\"h\":[]} \r\n",
            8,
        )
        .unwrap();
        assert_eq!(
            m,
            [
                ("a", Value::Str("x\\\"y")),
                ("b", Value::Number("-1.5e+3")),
                ("c", Value::Bool(true)),
                ("d", Value::Bool(false)),
                ("e", Value::Null),
                ("f", Value::Object(br#"{"g":[1,{}]}"#)),
                ("h", Value::Array(b"[]")),
            ]
        );
        let Value::Object(f) = m[5].1 else { unreachable!() };
        let inner: Vec<_> = members(f, 3).collect::<Result<_, _>>().unwrap();
        let Value::Array(g) = inner[0].1 else { unreachable!() };
        assert_eq!(
            elements(g, 1).collect::<Result<Vec<_>, _>>(),
            Err(Malformed),
            "depth 1 leaves no room for the {{}} inside"
        );
        assert_eq!(
            elements(g, 2).collect::<Result<Vec<_>, _>>(),
            Ok(std::vec![Value::Number("1"), Value::Object(b"{}")])
        );
        assert_eq!(all("{}", 1), Ok(Vec::new()));
    }

    #[test]
    fn rejects_what_rfc_8259_rejects() {
        for bad in [
            "",
            "{",
            "}",
            "[]",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "{'a':1}",
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":+1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":"unterminated}"#,
            r#"{"a":[1,2}"#,
            r#"{"a":{"b":1]}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a":1} x"#,
            r#"{"a":1}{}"#,
            r#"{"a":1} // comment"#,
        ] {
            assert_eq!(all(bad, 8).map(|_| ()), Err(Malformed), "{bad:?}");
        }
        // Invalid UTF-8 inside a string.
        assert_eq!(members(b"{\"a\":\"\xFF\"}", 8).last(), Some(Err(Malformed)));
    }

    #[test]
    fn members_before_a_fault_are_kept() {
        let mut it = members(br#"{"a":"1","b":2,"c":"trunc"#, 8);
        assert_eq!(it.next(), Some(Ok(("a", Value::Str("1")))));
        assert_eq!(it.next(), Some(Ok(("b", Value::Number("2")))));
        assert_eq!(it.next(), Some(Err(Malformed)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let deep = |n: usize| {
            let mut s = String::from(r#"{"a":"#);
            s.extend(core::iter::repeat_n('[', n));
            s.extend(core::iter::repeat_n(']', n));
            s.push('}');
            s
        };
        // The object is level 1: `depth` 3 admits two nested levels.
        assert!(all(&deep(2), 3).is_ok());
        assert_eq!(all(&deep(3), 3).map(|_| ()), Err(Malformed));
        // A million levels are refused at the limit, not by a stack overflow.
        assert_eq!(all(&deep(1_000_000), usize::MAX).map(|_| ()), Err(Malformed));
        assert!(all(&deep(DEPTH_LIMIT - 1), usize::MAX).is_ok());
        assert_eq!(all("{}", 0), Err(Malformed));
    }

    #[test]
    fn integers() {
        assert_eq!(integer("0"), Some(Ok(0)));
        assert_eq!(integer("-0"), Some(Ok(0)));
        assert_eq!(integer("86400"), Some(Ok(86_400)));
        assert_eq!(integer("18446744073709551615"), Some(Ok(u64::MAX)));
        assert_eq!(integer("18446744073709551616"), None);
        assert_eq!(integer("-30"), Some(Err(-30)));
        assert_eq!(integer("-9223372036854775808"), Some(Err(i64::MIN)));
        assert_eq!(integer("-9223372036854775809"), None);
        assert_eq!(integer("1.5"), None);
        assert_eq!(integer("1e3"), None);
        assert_eq!(integer(""), None);
        assert_eq!(integer("-"), None);
        assert_eq!(integer("+1"), None);
        assert_eq!(integer("--1"), None);
        assert_eq!(integer("1-"), None);
        assert_eq!(integer("-\u{e9}"), None);
    }

    #[test]
    fn unescapes() {
        let u = |s: &str| unescape(s).collect::<String>();
        assert_eq!(u(r#"a\/b\"c\\d\n\u00e9\ud83d\ude00"#), "a/b\"c\\d\né😀");
        // Above U+3FFFF the high surrogate's bits overlap 0x10000.
        assert_eq!(u(r"\ud8c0\udc00 \udbff\udfff"), "\u{40000} \u{10FFFF}");
        assert_eq!(u(r"\ud83d"), "\u{FFFD}");
        assert_eq!(u(r"\ud83dx"), "\u{FFFD}x");
        assert_eq!(u(r"\u12"), "\u{FFFD}12");
        assert_eq!(u("\\"), "\u{FFFD}");
        assert_eq!(u(r"\u00E9\uFFFF\u0000"), "\u{e9}\u{ffff}\u{0}");
        assert_eq!(u(r"\u00g9"), "\u{FFFD}00g9");
        assert_eq!(u(r"\u+0e9"), "\u{FFFD}+0e9");
        assert_eq!(u("\\u0\u{e9}9"), "\u{FFFD}0\u{e9}9");
    }

    /// The same members as `serde-json-core` reads, through a map of string keys to "any"
    /// value: both accept or both reject, and agree on every string member.
    fn oracle(text: &[u8]) -> Option<Vec<(String, Option<String>)>> {
        use serde::de::{self, IgnoredAny, MapAccess, Visitor};
        struct Member(Option<String>);
        impl<'de> de::Deserialize<'de> for Member {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Member;
                    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                        f.write_str("any")
                    }
                    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Member, E> {
                        Ok(Member(Some(v.into())))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<Member, E> {
                        Ok(Member(None))
                    }
                    fn visit_seq<A: de::SeqAccess<'de>>(
                        self,
                        mut s: A,
                    ) -> Result<Member, A::Error> {
                        while s.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(Member(None))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Member, A::Error> {
                        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                        Ok(Member(None))
                    }
                }
                d.deserialize_ignored_any(V)
            }
        }
        struct Collect;
        impl<'de> Visitor<'de> for Collect {
            type Value = Vec<(String, Option<String>)>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<&str, Member>()? {
                    out.push((k.into(), v.0));
                }
                Ok(out)
            }
        }
        let mut de = serde_json_core::de::Deserializer::new(text, None);
        let out = de::Deserializer::deserialize_map(&mut de, Collect).ok()?;
        de.end().ok()?;
        Some(out)
    }

    fn ours(text: &[u8]) -> Option<Vec<(String, Option<String>)>> {
        members(text, 16)
            .map(|m| {
                m.map(|(k, v)| {
                    (k.into(), if let Value::Str(s) = v { Some(String::from(s)) } else { None })
                })
            })
            .collect::<Result<_, _>>()
            .ok()
    }

    fn json_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".into()),
            Just("true".into()),
            Just("false".into()),
            "-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            r#""([a-z /~é]|\\[nt"\\/]|\\u00e9){0,8}""#,
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| { std::format!("[{}]", v.join(",")) }),
                proptest::collection::vec(("[a-z_]{1,6}", inner), 0..4).prop_map(|v| {
                    let m: Vec<_> = v.iter().map(|(k, v)| std::format!("\"{k}\": {v}")).collect();
                    std::format!("{{{}}}", m.join(" ,"))
                }),
            ]
        })
    }

    proptest! {
        /// A `\uXXXX` escape decodes as `u32::from_str_radix` reads its four hex digits; any
        /// other four characters are a U+FFFD and then themselves.
        #[test]
        fn unicode_escapes_decode_as_from_str_radix(t in "[0-9a-fA-FgG+ \u{e9}]{4}") {
            let expected = match u32::from_str_radix(&t, 16) {
                Ok(v) if !t.starts_with('+') => {
                    std::format!("{}x", char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER))
                }
                _ => std::format!("\u{FFFD}{t}x"),
            };
            let text = std::format!("\\u{t}x");
            prop_assert_eq!(unescape(&text).collect::<String>(), expected);
        }

        #[test]
        fn agrees_with_serde_json_core_on_valid_json(
            body in proptest::collection::vec(("[a-z_]{1,12}", json_value()), 0..6),
        ) {
            let m: Vec<_> = body.iter().map(|(k, v)| std::format!("\"{k}\":{v}")).collect();
            let text = std::format!(" {{{}}}\n", m.join(","));
            let ours = ours(text.as_bytes());
            prop_assert!(ours.is_some(), "{text}");
            prop_assert_eq!(ours, oracle(text.as_bytes()), "{}", text);
        }

        #[test]
        fn whatever_we_accept_serde_json_core_accepts_alike(text in "[{}\\[\\]\":,a-c0-9 .eE+\\-\\\\tnulrfs]{0,40}") {
            if let Some(ours) = ours(text.as_bytes()) {
                prop_assert_eq!(Some(ours), oracle(text.as_bytes()), "{}", text);
            }
        }

        #[test]
        fn never_panics(text in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = members(&text, 4).count();
            let _ = elements(&text, 4).count();
        }
    }
}
