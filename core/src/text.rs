//! Bounded text from what a server sent: the one place where characters are copied into a
//! fixed-capacity string, control characters turned into spaces (so nothing a server sent can
//! forge a log line or a terminal sequence), until the string is full.
//!
//! It takes a `StringView` and a `dyn Iterator`, not a `String<N>` and an iterator type: the
//! error texts, Genesys messages, scopes and codes that use it have different capacities and
//! come from different iterators (escaped JSON, plain text), and one copy of the code serves
//! them all, rather than one instance per capacity and iterator in a firmware image.

use heapless::string::StringView;

/// Appends `chars` to `out`, each control character as a space, until `out` is full. Returns
/// the first character that did not fit (`None`: all of them did).
pub(crate) fn push_sanitized(
    out: &mut StringView,
    chars: &mut dyn Iterator<Item = char>,
) -> Option<char> {
    for c in chars {
        let c = if c.is_control() { ' ' } else { c };
        if out.push(c).is_err() {
            return Some(c);
        }
    }
    None
}

/// Appends `n` in decimal to `out`. Returns `false`, with `out` unchanged, if it does not fit.
pub(crate) fn push_decimal(out: &mut StringView, n: u32) -> bool {
    out.push_str(crate::http::Decimal::new(u64::from(n)).as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapless::String;

    #[test]
    fn decimals() {
        let mut out: String<10> = String::new();
        for n in [0, 7, 10, 65_536, u32::MAX] {
            out.clear();
            assert!(push_decimal(out.as_mut_view(), n));
            assert_eq!(out.parse::<u32>(), Ok(n));
        }
        let mut small: String<2> = String::new();
        assert!(!push_decimal(small.as_mut_view(), 123));
        assert_eq!(small.as_str(), "");
    }

    #[test]
    fn control_characters_become_spaces_and_the_first_char_that_does_not_fit_is_named() {
        let mut out: String<6> = String::new();
        assert_eq!(push_sanitized(out.as_mut_view(), &mut "a\nb\u{7f}c".chars()), None);
        assert_eq!(out.as_str(), "a b c");
        // One byte left: a two-byte character does not fit, nothing after it is taken.
        assert_eq!(push_sanitized(out.as_mut_view(), &mut "éz".chars()), Some('é'));
        assert_eq!(out.as_str(), "a b c");
        assert_eq!(push_sanitized(out.as_mut_view(), &mut "z\t!".chars()), Some(' '));
        assert_eq!(out.as_str(), "a b cz");
        assert_eq!(push_sanitized(out.as_mut_view(), &mut "".chars()), None);
    }
}
