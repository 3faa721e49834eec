//! Reading what HTTP servers send: headers, dates, challenges and error bodies; and when a
//! kept-alive connection may carry a request ([`keep_alive`]).
//!
//! Every parser here is lenient and bounded: malformed input yields `None` or a typed error,
//! never a panic, and numbers from the wire are range-checked.

pub(crate) mod cursor;
pub mod date;
pub mod genesys;
pub mod keep_alive;
pub mod redirect;
pub mod retry_after;
pub mod url;
pub mod www_authenticate;

/// An HTTP request method, as far as retry decisions care (RFC 9110 §9.2.2: GET, HEAD, PUT,
/// DELETE, OPTIONS and TRACE are idempotent; POST and PATCH are not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// POST
    Post,
    /// PATCH
    Patch,
    /// Any other method; treated as not idempotent.
    Other,
}

impl Method {
    /// Parses a method name (case-sensitive, as RFC 9110 §9.1 says).
    pub fn from_name(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// Whether RFC 9110 defines the method as idempotent.
    pub const fn is_idempotent(self) -> bool {
        matches!(self, Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options)
    }

    /// The method's name (`"OTHER"` for [`Method::Other`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Other => "OTHER",
        }
    }
}

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

    /// Whether the name of any field satisfies `matches`; `None` when this implementation
    /// cannot list its fields (the default), and readers then ask for each name they need.
    ///
    /// One pass over a response's few names tells a reader that a whole family of fields is
    /// absent (an ordinary response carries no rate-limit field), where asking for each name
    /// of the family would go over the fields once per name. Implementations that can list
    /// their fields cheaply should; the answer must agree with [`get`](Self::get): `Some(false)`
    /// only if `get` finds no name that `matches` accepts.
    fn any_name(&self, matches: fn(&str) -> bool) -> Option<bool> {
        let _ = matches;
        None
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes())
    }

    fn any_name(&self, matches: fn(&str) -> bool) -> Option<bool> {
        Some(self.iter().any(|(n, _)| matches(n)))
    }
}

impl Headers for [(&str, &[u8])] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    fn any_name(&self, matches: fn(&str) -> bool) -> Option<bool> {
        Some(self.iter().any(|(n, _)| matches(n)))
    }
}

impl<const K: usize> Headers for [(&str, &str); K] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        Headers::get(self.as_slice(), name)
    }

    fn any_name(&self, matches: fn(&str) -> bool) -> Option<bool> {
        Headers::any_name(self.as_slice(), matches)
    }
}

impl<H: Headers + ?Sized> Headers for &H {
    fn get(&self, name: &str) -> Option<&[u8]> {
        (**self).get(name)
    }

    fn any_name(&self, matches: fn(&str) -> bool) -> Option<bool> {
        (**self).any_name(matches)
    }
}

/// No headers at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHeaders;

impl Headers for NoHeaders {
    fn get(&self, _name: &str) -> Option<&[u8]> {
        None
    }

    fn any_name(&self, _matches: fn(&str) -> bool) -> Option<bool> {
        Some(false)
    }
}

/// A number's decimal digits, written without `core::fmt` (which firmware builds otherwise leave
/// out) and without a 64-bit division routine: how the core writes the numbers of its requests
/// (ports, `Content-Length`, JWT times), and how an adapter can write those of its own.
///
/// ```
/// use credflow_core::http::Decimal;
/// assert_eq!(Decimal::new(8443).as_str(), "8443");
/// assert_eq!(Decimal::new(0).as_bytes(), b"0");
/// assert_eq!(Decimal::new(u64::MAX).as_str(), "18446744073709551615");
/// ```
#[derive(Clone, Copy)]
pub struct Decimal {
    /// The digits, right-aligned; `start` is the first one.
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    /// The digits of `n`.
    #[must_use]
    pub fn new(mut n: u64) -> Decimal {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        for slot in digits.iter_mut().rev() {
            // `div_rem`, not `/` and `%`: no 64-bit division routine on 32-bit targets.
            let (rest, digit) = crate::time::div_rem(n, 10).unwrap_or((0, 0));
            *slot = b'0'.wrapping_add(u8::try_from(digit).unwrap_or(0));
            n = rest;
            start = start.wrapping_sub(1);
            if n == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    /// The digits as bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }

    /// The digits as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // ASCII digits: always UTF-8.
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_the_numbers_digits() {
        extern crate std;
        use std::string::ToString;
        for n in [0, 7, 10, 99, 65_535, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX] {
            let digits = Decimal::new(n);
            assert_eq!(digits.as_str(), n.to_string());
            assert_eq!(digits.as_bytes(), n.to_string().as_bytes());
        }
    }

    #[test]
    fn case_insensitive_first_match() {
        let h = [("Retry-After", " 42 "), ("retry-after", "7")];
        assert_eq!(h.get_str("RETRY-AFTER"), Some("42"));
        assert_eq!(h.get("x"), None);
        assert_eq!(NoHeaders.get("a"), None);
    }
}
