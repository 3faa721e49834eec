//! Reading what HTTP servers send: headers, dates, challenges and error bodies.
//!
//! Everything here is a lenient, bounded parser: malformed input yields `None` or a typed error,
//! never a panic, and numbers from the wire are range-checked.

/// Read access to a response's header fields, whatever the adapter stores them in.
///
/// Names are matched case-insensitively (RFC 9110 §5.1). Implemented for slices of
/// `(name, value)` pairs; adapters implement it for their HTTP library's header map through a
/// newtype.
pub trait Headers {
    /// The value of the first field named `name`, if any.
    fn get(&self, name: &str) -> Option<&[u8]>;

    /// The value of the first field named `name` as UTF-8 text with surrounding whitespace
    /// trimmed, if present and valid.
    fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok()).map(str::trim)
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes())
    }
}

impl Headers for [(&str, &[u8])] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

impl<const K: usize> Headers for [(&str, &str); K] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        Headers::get(self.as_slice(), name)
    }
}

impl<H: Headers + ?Sized> Headers for &H {
    fn get(&self, name: &str) -> Option<&[u8]> {
        (**self).get(name)
    }
}

/// No headers at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHeaders;

impl Headers for NoHeaders {
    fn get(&self, _name: &str) -> Option<&[u8]> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_first_match() {
        let h = [("Retry-After", " 42 "), ("retry-after", "7")];
        assert_eq!(h.get_str("RETRY-AFTER"), Some("42"));
        assert_eq!(h.get("x"), None);
        assert_eq!(NoHeaders.get("a"), None);
    }
}
