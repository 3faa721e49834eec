//! Masking the client's own credentials where a server echoes them.
//!
//! Servers sometimes repeat what they were sent: an `error_description` that quotes the secret,
//! a Genesys `message` or an `ININ-Correlation-Id` that carries the `Authorization` value, a
//! `WWW-Authenticate` challenge that names the rejected token. Whatever credflow keeps or prints
//! of a server's text first goes through [`Secrets`], which replaces every exact occurrence of
//! the values below with [`REDACTED`]:
//!
//! | value | as it travels |
//! |---|---|
//! | the client secret | as configured, and form-encoded (RFC 6749 Appendix B) when that differs |
//! | the Basic credentials | `base64(form(id) ":" form(secret))`, RFC 6749 §2.3.1 (without `Basic `) |
//! | the last `client_secret_jwt` assertion | regenerated from the inputs the session kept (RFC 7523) |
//! | the access token | the one the session holds |
//!
//! ## The rules, and why
//!
//! - **Exact byte sequences, whatever their length.** A value is masked wherever it occurs, even
//!   inside a word, and even when it is one character long: a one-character secret turns every
//!   occurrence of that character into the marker. The text is mangled, the secret never shown;
//!   an unreadable diagnostic is the lesser harm, and a secret that short is a problem of its
//!   own. Nothing is guessed: text that merely looks like a credential is left alone.
//! - **A value cut off at the end of a bounded text** (credflow keeps an `error_description` to
//!   256 bytes, a correlation id to 64) is masked when at least [`MIN_CUT_PREFIX`] of its
//!   leading bytes remain, so a cut echo shows at most three of them. This applies only to text
//!   that may have been cut (within a character of its capacity); text given whole
//!   ([`Secrets::find`], [`Secrets::redacted`]: headers and bodies an adapter prints) is searched
//!   for whole occurrences.
//! - **The marker may not fit.** When replacing a short value with the longer marker would
//!   overflow a bounded text, the text is cut at its end to make room: the marker is never
//!   dropped, text after it may be.
//! - **Only what the session knows.** The token is the one the session holds, also in its last
//!   seconds past its usable-until point (an answer to a request sent with it may arrive then).
//!   A token the session no longer holds (replaced, or dropped after the API refused it) and an
//!   assertion older than the last token request are not masked after the fact; the session
//!   masks what it stores at the moment it receives it, while it still holds them. An adapter
//!   whose requests may outlive their token keeps it a while and masks it with
//!   [`Session::mask_in_failures`](crate::session::Session::mask_in_failures).
//!
//! Scanning is bounded by the text's length times the number of values, without allocation: each
//! value is streamed (base64, percent-encoding and HMAC as the token request writes them) against
//! the text at each position, compared until the first byte that differs, and never stored
//! whole (the assertion only where the text starts like one).

use core::fmt;
use core::ops::Range;

use heapless::string::StringView;

use crate::oauth::JwtInputs;
use crate::oauth::form::{Sink, put_basic_credentials, put_encoded};
use crate::secret::Credentials;
use crate::text::push_sanitized;
use crate::time::Duration;

/// What replaces a masked value.
pub const REDACTED: &str = "[redacted]";

/// Leading bytes of a value that must remain at the end of a cut text for it to be masked.
pub const MIN_CUT_PREFIX: usize = 4;

/// The values to mask, borrowed from a [`Session`](crate::session::Session) (see the
/// [module documentation](self) for what they are and the rules).
pub struct Secrets<'a> {
    credentials: &'a Credentials,
    token: Option<&'a str>,
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    assertion: Option<Assertion<'a>>,
}

/// What regenerates the last `client_secret_jwt` assertion.
#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) struct Assertion<'a> {
    pub(crate) inputs: JwtInputs,
    pub(crate) audience: &'a str,
    pub(crate) lifetime: Duration,
}

impl fmt::Debug for Secrets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets").finish_non_exhaustive()
    }
}

const VALUES: usize = 5;
const SECRET: usize = 0;
const FORM_SECRET: usize = 1;
const BASIC: usize = 2;
const TOKEN: usize = 3;
const ASSERTION: usize = 4;
/// How every assertion starts (`eyJ`, base64url of the header's `{"`): regenerating the
/// assertion (an HMAC) is worth it only where the text starts so.
const ASSERTION_START: &[u8] = b"eyJ";

impl<'a> Secrets<'a> {
    pub(crate) fn new(
        credentials: &'a Credentials,
        token: Option<&'a str>,
        assertion: Option<Assertion<'a>>,
    ) -> Self {
        Secrets { credentials, token, assertion }
    }

    /// Streams value `which` into `sink`; `false` if there is no such value.
    fn stream(&self, which: usize, sink: &mut dyn Sink) -> bool {
        #[cfg(test)]
        tests::STREAMED.with(|n| n.set(n.get().saturating_add(1)));
        let secret = self.credentials.secret.expose_secret();
        match which {
            SECRET => sink.put(secret.as_bytes()),
            // The same as the secret itself unless it holds a reserved character: compared
            // twice then, which costs less than telling.
            FORM_SECRET => put_encoded(sink, secret.as_bytes()),
            BASIC => put_basic_credentials(sink, self.credentials.id.as_str(), secret),
            TOKEN => match self.token {
                Some(token) => sink.put(token.as_bytes()),
                None => return false,
            },
            #[cfg(feature = "jwt")]
            ASSERTION => match &self.assertion {
                Some(a) => {
                    let claims = crate::oauth::jwt::AssertionClaims {
                        audience: a.audience,
                        jti: a.inputs.jti,
                        issued_at: a.inputs.now,
                        lifetime: a.lifetime,
                    };
                    crate::oauth::jwt::put_client_assertion(sink, self.credentials, &claims);
                }
                None => return false,
            },
            _ => return false,
        }
        true
    }

    /// The first whole occurrence of a value in `text` at or after `from`, as a byte range
    /// (the longest, when several start at the same place). Never splits a UTF-8 character of a
    /// valid text: the values are valid UTF-8, so an occurrence starts and ends on boundaries.
    pub fn find(&self, text: &[u8], from: usize) -> Option<Range<usize>> {
        self.find_cut(text, from, false)
    }

    /// [`find`](Self::find) in a text that was cut at its end (the first part of a longer
    /// body): a value's leading [`MIN_CUT_PREFIX`] bytes or more at the very end of `text` are
    /// an occurrence too, so that a cut echo shows at most three of them.
    pub fn find_in_cut(&self, text: &[u8], from: usize) -> Option<Range<usize>> {
        self.find_cut(text, from, true)
    }

    /// [`find`](Self::find); when `cut`, also a value's leading [`MIN_CUT_PREFIX`] bytes or more
    /// at the very end of `text`.
    fn find_cut(&self, text: &[u8], from: usize, cut: bool) -> Option<Range<usize>> {
        let rest = text.get(from..)?;
        // Each value's first byte (`None`: no such value), as streamed at the first position:
        // at the others, a value is streamed again only where the text starts with it.
        let mut firsts = [None; VALUES];
        for offset in 0..rest.len() {
            let start = from.saturating_add(offset);
            let tail = rest.get(offset..).unwrap_or_default();
            let mut longest = 0usize;
            for (which, first) in firsts.iter_mut().enumerate() {
                let skip = if which == ASSERTION {
                    !tail.starts_with(ASSERTION_START)
                } else {
                    offset > 0 && tail.first() != first.as_ref()
                };
                if skip {
                    continue;
                }
                let mut compare =
                    Compare { text: tail, matched: 0, state: State::Matching, first: None };
                self.stream(which, &mut compare);
                *first = compare.first;
                let len = match compare.state {
                    State::Matching => compare.matched,
                    State::RanOut if cut && compare.matched >= MIN_CUT_PREFIX => compare.matched,
                    _ => 0,
                };
                longest = longest.max(len);
            }
            if longest > 0 {
                return Some(start..start.saturating_add(longest));
            }
        }
        None
    }

    /// `text` with every occurrence masked, for `Display`.
    pub fn redacted<'t>(&'t self, text: &'t str) -> Redacted<'t> {
        Redacted { secrets: self, text }
    }

    /// Masks `text` in place. A text within a character of its capacity may have been cut: a
    /// value's leading bytes at its end are masked too. What no longer fits once a short value
    /// is replaced by the longer marker is cut from the end (what is cut then holds no value:
    /// every value was a match of its own).
    ///
    /// The text is rebuilt from a copy on the stack (nothing is copied when there is nothing to
    /// mask). A text longer than the copy's [`SCRATCH`] bytes (only a granted scope can be) is
    /// cut at the first value it holds instead: masked, with what followed it dropped.
    pub(crate) fn mask(&self, text: &mut StringView) {
        let cut = text.len().saturating_add(4) > text.capacity();
        let Some(first) = self.find_cut(text.as_bytes(), 0, cut) else { return };
        let Ok(source) = heapless::String::<SCRATCH>::try_from(text.as_str()) else {
            text.truncate(floor_boundary(text, first.start));
            push_marker(text);
            return;
        };
        text.clear();
        let source = source.as_bytes();
        let mut shown = 0;
        loop {
            // The text up to the next value (or to the end), then the marker in its place.
            let span = self.find_cut(source, shown, cut);
            let end = span.as_ref().map_or(source.len(), |span| span.start);
            // Values start and end on character boundaries (see `find`): the piece is text.
            let piece = source.get(shown..end).unwrap_or_default();
            let piece = core::str::from_utf8(piece).unwrap_or_default();
            if push_sanitized(text, &mut piece.chars()).is_some() {
                return; // full
            }
            let Some(span) = span else { return };
            push_marker(text);
            shown = span.end;
        }
    }
}

/// Bytes of the copy a bounded text is rebuilt from when it is masked (a longer one is cut at
/// the first value it holds).
pub const SCRATCH: usize = 256;

/// Appends [`REDACTED`], cutting `text` at its end to make room if needed.
fn push_marker(text: &mut StringView) {
    let room = text.capacity().saturating_sub(REDACTED.len());
    if text.len() > room {
        text.truncate(floor_boundary(text, room));
    }
    // Fits now: every capacity in the core exceeds the marker's length.
    let _ = text.push_str(REDACTED);
}

/// The largest character boundary of `text` at or below `at`.
fn floor_boundary(text: &StringView, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at = at.saturating_sub(1);
    }
    at
}

/// A text shown with the values of a [`Secrets`] masked (whole occurrences only).
pub struct Redacted<'t> {
    secrets: &'t Secrets<'t>,
    text: &'t str,
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = 0;
        while let Some(span) = self.secrets.find(self.text.as_bytes(), shown) {
            f.write_str(self.text.get(shown..span.start).unwrap_or_default())?;
            f.write_str(REDACTED)?;
            shown = span.end;
        }
        f.write_str(self.text.get(shown..).unwrap_or_default())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Every byte so far equals the text's.
    Matching,
    /// A byte differs.
    Differs,
    /// The text ended while every byte matched.
    RanOut,
}

/// Compares a streamed value with the start of a text.
struct Compare<'t> {
    text: &'t [u8],
    matched: usize,
    state: State,
    /// The value's first byte.
    first: Option<u8>,
}

impl Sink for Compare<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if self.first.is_none() {
            self.first = bytes.first().copied();
        }
        for &b in bytes {
            if self.state != State::Matching {
                return;
            }
            match self.text.get(self.matched) {
                Some(&t) if t == b => self.matched = self.matched.saturating_add(1),
                Some(_) => self.state = State::Differs,
                None => self.state = State::RanOut,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use heapless::String;
    use proptest::prelude::*;
    use std::string::{String as StdString, ToString};

    std::thread_local! {
        /// How many times a value was streamed on this thread (`Secrets::stream`).
        pub(super) static STREAMED: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
    }

    /// `s3cr3t+/` form-encodes and base64-encodes differently from itself.
    const SECRET: &str = "s3cr3t+/Value";
    const TOKEN: &str = "tok-0123456789abcdef";

    fn creds(secret: &str) -> Credentials {
        Credentials::from_strs("client", secret).unwrap()
    }

    fn basic(secret: &str) -> StdString {
        let mut buf = [0u8; 128];
        let value = crate::oauth::form::basic_authorization("client", secret, &mut buf).unwrap();
        value.trim_start_matches("Basic ").to_string()
    }

    fn masked<const C: usize>(secrets: &Secrets<'_>, text: &str) -> String<C> {
        let mut out = String::<C>::try_from(text).unwrap();
        secrets.mask(out.as_mut_view());
        out
    }

    /// Each value is masked where it occurs, in any form it travels in; text around it stays.
    #[test]
    fn every_form_of_every_value_is_masked_exactly() {
        let creds = creds(SECRET);
        let secrets = Secrets::new(&creds, Some(TOKEN), None);
        let form = "s3cr3t%2B%2FValue";
        let basic = basic(SECRET);
        for value in [SECRET, form, basic.as_str(), TOKEN] {
            let text = std::format!("got {value}, refused");
            assert_eq!(masked::<128>(&secrets, &text), "got [redacted], refused", "{value}");
            assert_eq!(secrets.redacted(&text).to_string(), "got [redacted], refused");
            assert_eq!(secrets.find(text.as_bytes(), 0), Some(4..4 + value.len()));
        }
        // Twice, back to back, inside a word.
        let text = std::format!("x{TOKEN}{TOKEN}y");
        assert_eq!(masked::<128>(&secrets, &text), "x[redacted][redacted]y");
        // Near misses are left alone.
        let near = "s3cr3t+/Valu and tok-0123456789abcdeF";
        assert_eq!(masked::<128>(&secrets, near), near);
        assert_eq!(secrets.find(near.as_bytes(), 0), None);
        // Without a token, a token-like text is not touched.
        let without = Secrets::new(&creds, None, None);
        assert_eq!(masked::<128>(&without, TOKEN), TOKEN);
    }

    /// A value is streamed again only where the text starts with its first byte: searching a
    /// text none of whose bytes starts a value streams each value once, however long the text
    /// (the masking of every response's headers pays this).
    #[test]
    fn a_value_is_streamed_again_only_where_the_text_starts_with_it() {
        let creds = creds(SECRET);
        let secrets = Secrets::new(&creds, Some(TOKEN), None);
        let text = "0123456789".repeat(100);
        STREAMED.with(|n| n.set(0));
        assert_eq!(secrets.find(text.as_bytes(), 0), None);
        let streamed = STREAMED.with(|n| n.get());
        assert!(streamed <= VALUES, "{streamed} streams for {} bytes", text.len());
        // Where the text does start with a value, it is found as before.
        let text = std::format!("{text}{TOKEN}");
        assert_eq!(secrets.find(text.as_bytes(), 0), Some(1000..1000 + TOKEN.len()));
    }

    /// A one-character secret is masked wherever it occurs: mangled text, never the secret.
    #[test]
    fn a_very_short_secret_is_masked_everywhere() {
        let creds = creds("a");
        let secrets = Secrets::new(&creds, None, None);
        assert_eq!(masked::<64>(&secrets, "bad data"), "b[redacted]d d[redacted]t[redacted]");
        // The marker is longer than the value: a full text is cut at its end to make room,
        // and the marker is never dropped.
        let full = masked::<12>(&secrets, "xxxxxxxxxxxa");
        assert_eq!(full, "xx[redacted]");
        let full = masked::<12>(&secrets, "axxxxxxxxxxx");
        assert_eq!(full, "[redacted]xx");
    }

    /// A text cut within a value (at its capacity) keeps at most three of its leading bytes;
    /// a text that was not cut is not searched for prefixes.
    #[test]
    fn a_value_cut_at_the_end_of_a_full_text_is_masked() {
        let creds = creds(SECRET);
        let secrets = Secrets::new(&creds, Some(TOKEN), None);
        // 16 bytes of capacity: "id: " and the token's first 12 bytes.
        let cut = std::format!("id: {}", &TOKEN[..12]);
        assert_eq!(masked::<16>(&secrets, &cut), "id: [redacted]");
        // Three leading bytes are not enough to tell.
        let three = std::format!("id: xxxxxxxxx{}", &TOKEN[..3]);
        assert_eq!(masked::<16>(&secrets, &three), three.as_str());
        // The same prefix in a text far from its capacity was not cut: left alone.
        assert_eq!(masked::<64>(&secrets, &cut), cut.as_str());
        assert_eq!(secrets.find(cut.as_bytes(), 0), None);
        // Bytes said to be cut (the first part of a longer body) are searched as such: four
        // leading bytes at their end are an occurrence, three are not, nor four mid-text.
        assert_eq!(secrets.find_in_cut(cut.as_bytes(), 0), Some(4..cut.len()));
        let four = std::format!("id: {}", &TOKEN[..4]);
        assert_eq!(secrets.find_in_cut(four.as_bytes(), 0), Some(4..8));
        assert_eq!(secrets.find_in_cut(three.as_bytes(), 0), None);
        let inside = std::format!("{} and on", &TOKEN[..4]);
        assert_eq!(secrets.find_in_cut(inside.as_bytes(), 0), None);
    }

    /// An assertion echoed whole, or cut after at least four bytes, is masked.
    #[cfg(feature = "jwt")]
    #[test]
    fn the_last_assertion_is_regenerated_and_masked() {
        let creds = creds(SECRET);
        let inputs =
            JwtInputs { now: crate::time::UnixTime::from_secs(1_700_000_000), jti: [7; 16] };
        let audience = "https://login.example/oauth/token";
        let lifetime = Duration::from_secs(60);
        let claims = crate::oauth::jwt::AssertionClaims {
            audience,
            jti: inputs.jti,
            issued_at: inputs.now,
            lifetime,
        };
        let mut buf = [0u8; 512];
        let jwt = crate::oauth::jwt::client_assertion(&creds, &claims, &mut buf).unwrap();
        let secrets = Secrets::new(&creds, None, Some(Assertion { inputs, audience, lifetime }));
        let text = std::format!("assertion {jwt} rejected");
        assert_eq!(secrets.redacted(&text).to_string(), "assertion [redacted] rejected");
        // Another assertion (another jti) is not this one.
        let other = Assertion { inputs: JwtInputs { jti: [8; 16], ..inputs }, audience, lifetime };
        let others = Secrets::new(&creds, None, Some(other));
        assert_eq!(others.redacted(&text).to_string(), text);
    }

    proptest! {
        /// Whatever surrounds it and wherever the text is cut, a masked text never holds a
        /// value, nor (when cut) four or more of its leading bytes at its end; masking never
        /// panics and never exceeds the capacity.
        #[test]
        fn masked_text_never_holds_a_value(
            before in "[ -~]{0,40}",
            after in "[ -~]{0,40}",
            which in 0usize..4,
            cut_at in 0usize..100,
        ) {
            let creds = creds(SECRET);
            let secrets = Secrets::new(&creds, Some(TOKEN), None);
            let basic = basic(SECRET);
            let value = [SECRET, "s3cr3t%2B%2FValue", basic.as_str(), TOKEN][which];
            let whole = std::format!("{before}{value}{after}");
            let cut = &whole[..cut_at.min(whole.len())];
            let mut text: String<64> = String::new();
            let _ = crate::text::push_sanitized(text.as_mut_view(), &mut cut.chars());
            let was_full = text.len() + 4 > 64;
            secrets.mask(text.as_mut_view());
            prop_assert!(text.len() <= 64);
            prop_assert!(!text.contains(value), "{text}");
            if was_full {
                for k in MIN_CUT_PREFIX..value.len() {
                    prop_assert!(!text.ends_with(&value[..k]), "{text} ends with {k} bytes");
                }
            }
        }
    }
}
