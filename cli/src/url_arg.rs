//! [`UrlArg`]: a URL from a flag or a variable that may carry a password (`--redis`, the token
//! URL, the API base), whose `Debug` masks it, and whose text is wiped when dropped.

use std::fmt;
use std::ops::Deref;

use zeroize::Zeroizing;

/// What a masked password shows as.
const MASK: &str = "***";

/// A URL as given on the command line or in the environment. `Debug` shows it with its
/// password masked ([`redacted`]), so that the parsed command line (whose `Debug` is derived)
/// can be printed; the text itself (`Deref`) is kept whole, for the code that connects with it.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct UrlArg(Zeroizing<String>);

impl From<String> for UrlArg {
    fn from(url: String) -> Self {
        UrlArg(Zeroizing::new(url))
    }
}

impl Deref for UrlArg {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UrlArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redacted(&self.0), f)
    }
}

/// `url` with the password it may carry masked:
///
/// - its userinfo's password (after the first `:`), or the whole userinfo when it has no `:`
///   (a token given as the user name). The userinfo is taken up to the last `@` after the
///   scheme, wherever it is, so that a password holding `/`, `?` or `#` unencoded is masked
///   whole (an `@` in a query masks more than needed, never less);
/// - the value of a `pass` or `password` query parameter (any case, the name percent-decoded),
///   as `redis+unix:///run/redis.sock?pass=…` carries it.
pub(crate) fn redacted(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..start]);
    let rest = &url[start..];
    let rest = match rest.rfind('@') {
        Some(at) => {
            if let Some((user, _)) = rest[..at].split_once(':') {
                out.push_str(user);
                out.push(':');
            }
            out.push_str(MASK);
            &rest[at..]
        }
        None => rest,
    };
    let Some((before, query)) = rest.split_once('?') else {
        out.push_str(rest);
        return out;
    };
    out.push_str(before);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if is_password_name(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
    out
}

/// Whether a query parameter's `name` (form-encoded) is `pass` or `password`, in any case.
fn is_password_name(name: &str) -> bool {
    let mut decoded = Vec::with_capacity(name.len());
    let mut bytes = name.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = bytes.clone().take(2).collect::<Vec<u8>>();
                let value =
                    std::str::from_utf8(&hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match value {
                    Some(v) if hex.len() == 2 => {
                        decoded.push(v);
                        bytes.nth(1);
                    }
                    _ => decoded.push(b'%'),
                }
            }
            _ => decoded.push(b),
        }
    }
    decoded.eq_ignore_ascii_case(b"pass") || decoded.eq_ignore_ascii_case(b"password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        for (url, shown) in [
            ("redis://fleet:hunter2@redis:6379/0", "redis://fleet:***@redis:6379/0"),
            ("rediss://:hunter2@redis", "rediss://:***@redis"),
            ("redis://hunter2@redis", "redis://***@redis"),
            ("redis://u:hun/ter?2#x@redis/0", "redis://u:***@redis/0"),
            (
                "redis+unix:///sock?db=1&pass=hunter2&user=u",
                "redis+unix:///sock?db=1&pass=***&user=u",
            ),
            ("redis+unix:///sock?PASSWORD=hunter2", "redis+unix:///sock?PASSWORD=***"),
            ("unix:///sock?p%41ss=hunter2&x", "unix:///sock?p%41ss=***&x"),
            ("redis://:hunter2@redis/0?pass=hunter2", "redis://:***@redis/0?pass=***"),
            ("https://login.example/oauth/token", "https://login.example/oauth/token"),
            ("redis://redis:6379?passive=1&db=%", "redis://redis:6379?passive=1&db=%"),
            ("", ""),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
            assert_eq!(format!("{:?}", UrlArg::from(url.to_owned())), format!("{shown:?}"));
            assert_eq!(&*UrlArg::from(url.to_owned()), url);
        }
    }
}
