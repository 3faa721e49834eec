//! The core's JSON reader (`credflow_core::json`, public only with the `__fuzzing` feature) against
//! serde-json-core, the parser it replaced, on arbitrary bytes.
//!
//! Checked: no panic, no unbounded work (the reader does not recurse); and whenever the reader
//! accepts a whole object, serde-json-core accepts it too and reads the same members: the same
//! keys in the same order, the same raw (still escaped) string values, and the same kind of
//! value for the others. The reader may refuse what serde-json-core is lenient about (it follows
//! RFC 8259 strictly), never the other way round.
#![no_main]

use credflow_core::json::{self, Value};
use libfuzzer_sys::fuzz_target;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A member's value as both parsers can describe it.
#[derive(Debug, PartialEq)]
enum Kind {
    Str(String),
    Container,
    Scalar,
}

fuzz_target!(|data: &[u8]| {
    let ours: Result<Vec<(String, Kind)>, json::Malformed> = json::members(data, 16)
        .map(|m| {
            m.map(|(k, v)| {
                let kind = match v {
                    Value::Str(s) => Kind::Str(s.to_owned()),
                    Value::Object(text) => {
                        assert!(json::members(text, 16).all(|m| m.is_ok()), "a nested object");
                        Kind::Container
                    }
                    Value::Array(text) => {
                        assert!(json::elements(text, 16).all(|m| m.is_ok()), "a nested array");
                        Kind::Container
                    }
                    Value::Number(n) => {
                        let _ = json::integer(n);
                        Kind::Scalar
                    }
                    Value::Bool(_) | Value::Null => Kind::Scalar,
                };
                (k.to_owned(), kind)
            })
        })
        .collect();
    let _ = json::elements(data, 16).count();
    if let Ok(ours) = ours {
        // serde-json-core recurses when it skips nested values: only compare shallow texts.
        if depth(data) <= 16 {
            assert_eq!(Some(ours), oracle(data), "{:?}", String::from_utf8_lossy(data));
        }
    }
});

fn depth(data: &[u8]) -> usize {
    data.iter().filter(|b| matches!(b, b'{' | b'[')).count()
}

fn oracle(text: &[u8]) -> Option<Vec<(String, Kind)>> {
    struct Member(Kind);
    impl<'de> de::Deserialize<'de> for Member {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Member;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("any value")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Member, E> {
                    Ok(Member(Kind::Str(v.to_owned())))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Member, E> {
                    Ok(Member(Kind::Scalar))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Member, A::Error> {
                    while s.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Member(Kind::Container))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Member, A::Error> {
                    while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Member(Kind::Container))
                }
            }
            d.deserialize_ignored_any(V)
        }
    }
    struct Collect;
    impl<'de> Visitor<'de> for Collect {
        type Value = Vec<(String, Kind)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = m.next_entry::<&str, Member>()? {
                out.push((k.to_owned(), v.0));
            }
            Ok(out)
        }
    }
    let mut de = serde_json_core::de::Deserializer::new(text, None);
    let out = de::Deserializer::deserialize_map(&mut de, Collect).ok()?;
    de.end().ok()?;
    Some(out)
}
