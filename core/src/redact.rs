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
//! - **JSON escapes in raw text.** A body is searched as it came, unparsed: a value may be
//!   echoed there JSON-escaped, with `\/` for `/` (PHP's `json_encode`), `\u002B` for `+`
//!   (.NET's `System.Text.Json`), `\u00E9` for `é` (Python's `json.dumps`), `\"` and `\\`
//!   (any encoder). [`Secrets::find`] and [`Secrets::find_in_cut`] read `\/`, `\"`, `\\`,
//!   `\b`, `\f`, `\n`, `\r`, `\t` and `\uXXXX` (hex digits of either case; a UTF-16
//!   surrogate pair as the one character it stands for, a lone surrogate as no escape) as the
//!   character they stand for (RFC 8259 §7), and an occurrence spans its escapes whole. A value's backslash also matches a backslash as it is (a value
//!   with one is compared byte for byte too), also where the text ends within an escape (`\`,
//!   `\u00`): shown, it would read as the backslash. Bounded texts the session keeps were read
//!   from JSON already: they are matched byte for byte.
//! - **The marker may not fit.** When replacing a short value with the longer marker would
//!   overflow a bounded text, the text is cut at its end to make room: the marker is never
//!   dropped, text after it may be.
//! - **Only what the session knows.** The token is the one the session holds, also in its last
//!   seconds past its usable-until point (an answer to a request sent with it may arrive then).
//!   A token the session no longer holds (replaced, or dropped after the API refused it) and an
//!   assertion older than the last token request are not masked after the fact; the session
//!   masks what it stores at the moment it receives it, while it still holds them. An adapter
//!   whose requests may outlive their token keeps it a while and masks it with
//!   [`Session::mask_in_failures`](crate::session::Session::mask_in_failures) in what the
//!   session keeps, and with [`find_token`] in raw text (the same matcher as
//!   [`Secrets::find`], JSON escapes and all).
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
    ///
    /// The text is raw, a body say: a value's bytes may be JSON-escaped in it (`ab\/cd` or
    /// `ab\u002Fcd` for `ab/cd`), and the occurrence spans the escapes (see the
    /// [module documentation](self)).
    pub fn find(&self, text: &[u8], from: usize) -> Option<Range<usize>> {
        self.find_cut::<true>(text, from, false)
    }

    /// [`find`](Self::find) in a text that was cut at its end (the first part of a longer
    /// body): a value's leading [`MIN_CUT_PREFIX`] bytes or more at the very end of `text` are
    /// an occurrence too, so that a cut echo shows at most three of them.
    pub fn find_in_cut(&self, text: &[u8], from: usize) -> Option<Range<usize>> {
        self.find_cut::<true>(text, from, true)
    }

    /// [`find`](Self::find) (`ESCAPED`: JSON escapes read as the bytes they stand for, else
    /// byte for byte); when `cut`, also a value's leading [`MIN_CUT_PREFIX`] bytes or more at
    /// the very end of `text`.
    fn find_cut<const ESCAPED: bool>(
        &self,
        text: &[u8],
        from: usize,
        cut: bool,
    ) -> Option<Range<usize>> {
        let rest = text.get(from..)?;
        // Each value's first byte (`None`: no such value), as streamed at the first position:
        // at the others, a value is streamed again only where the text starts with it (or,
        // `ESCAPED`, with an escape).
        let mut firsts = [None; VALUES];
        for offset in 0..rest.len() {
            let start = from.saturating_add(offset);
            let tail = rest.get(offset..).unwrap_or_default();
            let escape = ESCAPED && tail.first() == Some(&b'\\');
            let mut longest = 0usize;
            for (which, first) in firsts.iter_mut().enumerate() {
                let skip = if which == ASSERTION {
                    !starts_with::<ESCAPED>(tail, ASSERTION_START)
                } else {
                    offset > 0 && tail.first() != first.as_ref() && !escape
                };
                if skip {
                    continue;
                }
                let (len, streamed_first) = occurrence::<ESCAPED>(tail, cut, |sink| {
                    self.stream(which, sink);
                });
                *first = streamed_first;
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
        let Some(first) = self.find_cut::<false>(text.as_bytes(), 0, cut) else { return };
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
            let span = self.find_cut::<false>(source, shown, cut);
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

// Not part of the API (feature `__fuzzing`): the `redact` fuzz target builds the values from
// arbitrary credentials, token and assertion inputs, and masks bounded texts as the session does.
#[cfg(feature = "__fuzzing")]
impl<'a> Secrets<'a> {
    /// Not part of the API: the values a session holding `credentials`, `token` and having
    /// sent the assertion of `jwt` (its inputs, audience and lifetime) masks.
    #[doc(hidden)]
    pub fn for_fuzzing(
        credentials: &'a Credentials,
        token: Option<&'a str>,
        jwt: Option<(JwtInputs, &'a str, Duration)>,
    ) -> Self {
        let assertion =
            jwt.map(|(inputs, audience, lifetime)| Assertion { inputs, audience, lifetime });
        Secrets::new(credentials, token, assertion)
    }

    /// Not part of the API: `text` kept in `N` bytes as the session keeps a server's text
    /// (control characters as spaces, cut at the capacity), then that text masked as the
    /// session masks it.
    #[doc(hidden)]
    pub fn mask_for_fuzzing<const N: usize>(
        &self,
        text: &str,
    ) -> (heapless::String<N>, heapless::String<N>) {
        let mut kept = heapless::String::<N>::new();
        let _ = push_sanitized(kept.as_mut_view(), &mut text.chars());
        let mut masked = kept.clone();
        self.mask(masked.as_mut_view());
        (kept, masked)
    }
}

/// The first whole occurrence of `token` in the raw `text` at or after `from`, found as
/// [`Secrets::find`] finds the values it holds: JSON escapes read as the bytes they stand for,
/// the occurrence spanning them (see the [module documentation](self)). With `cut` (the first
/// part of a longer body), as [`Secrets::find_in_cut`]: the token's leading
/// [`MIN_CUT_PREFIX`] bytes or more at the very end of `text` are an occurrence too.
///
/// For a token the session no longer holds (replaced by a refresh, dropped after a 401) while a
/// request sent with it may still be answered: an adapter that keeps such tokens a while masks
/// them with this, with the same matcher as the session's own values. `None` for an empty
/// token.
pub fn find_token(text: &[u8], from: usize, token: &str, cut: bool) -> Option<Range<usize>> {
    let token = token.as_bytes();
    let first = token.first()?;
    let rest = text.get(from..)?;
    (0..rest.len()).find_map(|offset| {
        let tail = rest.get(offset..).unwrap_or_default();
        // Compared only where the text starts with the token's first byte or an escape.
        if tail.first() != Some(first) && tail.first() != Some(&b'\\') {
            return None;
        }
        let (len, _) = occurrence::<true>(tail, cut, |sink| sink.put(token));
        let start = from.saturating_add(offset);
        (len > 0).then(|| start..start.saturating_add(len))
    })
}

/// The length of the occurrence at the start of `tail` of the value `stream` writes (0 if
/// none; see [`Compare::len`]), and the value's first byte (`None`: an empty value).
fn occurrence<const ESCAPED: bool>(
    tail: &[u8],
    cut: bool,
    stream: impl Fn(&mut dyn Sink),
) -> (usize, Option<u8>) {
    let mut compare = Compare::<ESCAPED>::new(tail);
    stream(&mut compare);
    let mut len = compare.len(cut);
    // A value with a backslash, read escaped, does not match where the text holds it raw
    // (`\\` read as one backslash): compared byte for byte too.
    if ESCAPED && compare.backslash {
        let mut raw = Compare::<false>::new(tail);
        stream(&mut raw);
        len = len.max(raw.len(cut));
    }
    (len, compare.first)
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

/// Compares a streamed value with the start of a text: byte for byte, or (`ESCAPED`) with
/// the text's JSON escapes read as the bytes they stand for.
struct Compare<'t, const ESCAPED: bool> {
    text: &'t [u8],
    /// Bytes of the text that matched.
    matched: usize,
    state: State,
    /// The value's first byte.
    first: Option<u8>,
    /// `ESCAPED`: bytes of the value that matched (fewer than of the text where it escapes
    /// them).
    decoded: usize,
    /// `ESCAPED`: the value had a backslash before the comparison ended.
    backslash: bool,
    /// `ESCAPED`: where a backslash of the value met an escape cut at the text's end (`\`,
    /// `\u00`), read as the backslash it may be as it is: `decoded` then, plus one (0: not
    /// so). A byte of the value that differs after it (within the cut escape) means the text
    /// ran out at that escape instead.
    cut_escape: usize,
    /// `ESCAPED`: the UTF-8 bytes of the character beyond ASCII an escape (`\u00E9`, a
    /// surrogate pair) stood for, of which the value matched the first `char_at` so far, of
    /// `char_len` (`char_at == char_len`: none pending).
    char_bytes: [u8; 4],
    char_at: u8,
    char_len: u8,
}

impl<'t, const ESCAPED: bool> Compare<'t, ESCAPED> {
    fn new(text: &'t [u8]) -> Self {
        Compare {
            text,
            matched: 0,
            state: State::Matching,
            first: None,
            decoded: 0,
            backslash: false,
            cut_escape: 0,
            char_bytes: [0; 4],
            char_at: 0,
            char_len: 0,
        }
    }

    /// The length of the occurrence at the text's start: the bytes that matched a whole
    /// value, or when `cut`, the rest of the text where it ran out after [`MIN_CUT_PREFIX`]
    /// bytes of the value or more; else 0.
    fn len(&self, cut: bool) -> usize {
        let prefix = if ESCAPED { self.decoded } else { self.matched };
        match self.state {
            // (A value cannot end within a character: it is UTF-8.)
            State::Matching if ESCAPED && self.char_at < self.char_len => 0,
            State::Matching => self.matched,
            // The text ended within the value: byte for byte, all of it matched; escaped,
            // perhaps within an escape, which is masked too.
            State::RanOut if cut && prefix >= MIN_CUT_PREFIX => {
                if ESCAPED {
                    self.text.len()
                } else {
                    self.matched
                }
            }
            _ => 0,
        }
    }
}

impl<const ESCAPED: bool> Sink for Compare<'_, ESCAPED> {
    fn put(&mut self, bytes: &[u8]) {
        if self.first.is_none() {
            self.first = bytes.first().copied();
        }
        for &b in bytes {
            if self.state != State::Matching {
                return;
            }
            if !ESCAPED {
                match self.text.get(self.matched) {
                    Some(&t) if t == b => self.matched = self.matched.saturating_add(1),
                    Some(_) => self.state = State::Differs,
                    None => self.state = State::RanOut,
                }
                continue;
            }
            self.backslash |= b == b'\\';
            // The rest of a character beyond ASCII an escape stood for.
            if self.char_at < self.char_len {
                if self.char_bytes.get(usize::from(self.char_at)) == Some(&b) {
                    self.char_at = self.char_at.saturating_add(1);
                    self.decoded = self.decoded.saturating_add(1);
                } else {
                    self.state = State::Differs;
                }
                continue;
            }
            let rest = self.text.get(self.matched..).unwrap_or_default();
            match escaped_step(rest, b) {
                Step::Took(n) => {
                    self.matched = self.matched.saturating_add(n);
                    self.decoded = self.decoded.saturating_add(1);
                }
                Step::Char(bytes, len, n) => {
                    self.matched = self.matched.saturating_add(n);
                    self.decoded = self.decoded.saturating_add(1);
                    (self.char_bytes, self.char_at, self.char_len) = (bytes, 1, len);
                }
                // Within the cut escape a backslash was read as it is: the text ran out at
                // that escape, read as one.
                Step::Differs if self.cut_escape > 0 => {
                    self.decoded = self.cut_escape.saturating_sub(1);
                    self.state = State::RanOut;
                }
                Step::Differs => self.state = State::Differs,
                // The text ends within an escape (`\`, `\u00`), where the value has a
                // backslash: that may be the backslash as it is (a value ending there is
                // whole). The rest of the text is that escape.
                Step::RanOut if b == b'\\' && !rest.is_empty() => {
                    self.cut_escape = self.decoded.saturating_add(1);
                    self.matched = self.matched.saturating_add(1);
                    self.decoded = self.decoded.saturating_add(1);
                }
                Step::RanOut => self.state = State::RanOut,
            }
        }
    }
}

/// How a value's byte compares with the start of a text.
enum Step {
    /// It is there, in this many bytes of the text.
    Took(usize),
    /// It is the first of the UTF-8 bytes (the array, this many) of a character beyond ASCII
    /// escaped in this many bytes of the text (`\u00E9`, a surrogate pair): the value's next
    /// bytes must be the others.
    Char([u8; 4], u8, usize),
    Differs,
    /// The text ended (perhaps within an escape).
    RanOut,
}

/// Compares byte `b` of a value with the start of `text`, where a JSON escape (`\/`,
/// `\u002F`, `\u00E9`) stands for the character it escapes. A backslash of the value matches
/// an escape of it (`\\`, `\u005C`), else a backslash as it is.
fn escaped_step(text: &[u8], b: u8) -> Step {
    match text {
        [] => Step::RanOut,
        [b'\\', ..] => match unescape(text) {
            Some(Unescaped::Char(c, n)) => {
                let mut bytes = [0; 4];
                let len = c.encode_utf8(&mut bytes).len();
                match (bytes.first() == Some(&b), len) {
                    (true, 1) => Step::Took(n),
                    // At most 4: fits.
                    (true, len) => Step::Char(bytes, u8::try_from(len).unwrap_or(4), n),
                    (false, _) if b == b'\\' => Step::Took(1),
                    (false, _) => Step::Differs,
                }
            }
            Some(Unescaped::Cut) => Step::RanOut,
            None if b == b'\\' => Step::Took(1),
            None => Step::Differs,
        },
        [t, ..] if *t == b => Step::Took(1),
        _ => Step::Differs,
    }
}

/// What a JSON escape at the start of a text stands for.
enum Unescaped {
    /// A character, escaped in this many bytes.
    Char(char, usize),
    /// The text ends within what may be an escape (or a surrogate pair).
    Cut,
}

/// The JSON escape `text` starts with (RFC 8259 §7: `\"`, `\\`, `\/`, `\b`, `\f`, `\n`,
/// `\r`, `\t`, `\uXXXX` with hex digits of either case, a UTF-16 surrogate pair
/// `\uD83D\uDE00` as the one character it stands for); `None` if it starts with none of
/// them (a lone surrogate stands for none).
fn unescape(text: &[u8]) -> Option<Unescaped> {
    let c = match text {
        [b'\\'] => return Some(Unescaped::Cut),
        [b'\\', b'u', hex @ ..] => {
            let Hex::Unit(unit) = hex_unit(hex)? else { return Some(Unescaped::Cut) };
            return match unit {
                // A high surrogate: the escape of a low one must follow.
                0xD800..=0xDBFF => match hex.get(4..).unwrap_or_default() {
                    [] | [b'\\'] => Some(Unescaped::Cut),
                    [b'\\', b'u', low @ ..] => match hex_unit(low)? {
                        Hex::Unit(low @ 0xDC00..=0xDFFF) => {
                            let high = unit.saturating_sub(0xD800) << 10;
                            let low = low.saturating_sub(0xDC00);
                            let c = 0x1_0000u32.saturating_add(high).saturating_add(low);
                            char::from_u32(c).map(|c| Unescaped::Char(c, 12))
                        }
                        Hex::Unit(_) => None,
                        Hex::Cut => Some(Unescaped::Cut),
                    },
                    _ => None,
                },
                // Anything else but a (lone) low surrogate is a character.
                _ => char::from_u32(unit).map(|c| Unescaped::Char(c, 6)),
            };
        }
        [b'\\', c, ..] => match c {
            b'"' | b'\\' | b'/' => char::from(*c),
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => return None,
        },
        _ => return None,
    };
    Some(Unescaped::Char(c, 2))
}

/// Four hex digits of a `\uXXXX` escape.
enum Hex {
    /// The UTF-16 code unit they give.
    Unit(u32),
    /// The text ends before the fourth.
    Cut,
}

/// The code unit of the four hex digits (either case) `hex` starts with; `None` if one is not
/// a hex digit.
fn hex_unit(hex: &[u8]) -> Option<Hex> {
    let mut value = 0u32;
    for i in 0..4 {
        let Some(&h) = hex.get(i) else { return Some(Hex::Cut) };
        value = value.saturating_mul(16).saturating_add(char::from(h).to_digit(16)?);
    }
    Some(Hex::Unit(value))
}

/// Whether `text` starts with the ASCII `prefix` (`ESCAPED`: perhaps JSON-escaped).
fn starts_with<const ESCAPED: bool>(text: &[u8], prefix: &[u8]) -> bool {
    if !ESCAPED {
        return text.starts_with(prefix);
    }
    let mut compare = Compare::<true>::new(text);
    compare.put(prefix);
    compare.state == State::Matching
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use heapless::String;
    use proptest::prelude::*;
    use std::string::{String as StdString, ToString};
    use std::vec::Vec;

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

    /// Every span `find` names replaced by `marker`, as an adapter masks a body.
    fn mask_raw(secrets: &Secrets<'_>, text: &[u8], cut: bool, marker: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut shown = 0;
        loop {
            let span =
                if cut { secrets.find_in_cut(text, shown) } else { secrets.find(text, shown) };
            let Some(span) = span else { break };
            out.extend_from_slice(&text[shown..span.start]);
            out.extend_from_slice(marker);
            shown = span.end;
        }
        out.extend_from_slice(&text[shown..]);
        out
    }

    /// Every span [`find_token`] names replaced by `marker`, as an adapter masks the tokens it
    /// retired.
    fn mask_token(text: &[u8], token: &str, cut: bool, marker: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut shown = 0;
        while let Some(span) = find_token(text, shown, token, cut) {
            out.extend_from_slice(&text[shown..span.start]);
            out.extend_from_slice(marker);
            shown = span.end;
        }
        out.extend_from_slice(&text[shown..]);
        out
    }

    /// `text` with its JSON escapes read as the bytes they stand for (others kept as they
    /// are): the test's own reading, not the matcher's.
    fn unescaped(text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let short = match text.get(at + 1) {
                Some(b'"') => Some(b'"'),
                Some(b'\\') => Some(b'\\'),
                Some(b'/') => Some(b'/'),
                Some(b'b') => Some(0x08),
                Some(b'f') => Some(0x0c),
                Some(b'n') => Some(b'\n'),
                Some(b'r') => Some(b'\r'),
                Some(b't') => Some(b'\t'),
                _ => None,
            };
            let hex = text
                .get(at + 2..at + 6)
                .and_then(|h| core::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (text[at], short, text.get(at + 1), hex) {
                (b'\\', Some(b), _, _) => {
                    out.push(b);
                    at += 2;
                }
                (b'\\', None, Some(b'u'), Some(b)) => {
                    out.push(b);
                    at += 6;
                }
                (b, ..) => {
                    out.push(b);
                    at += 1;
                }
            }
        }
        out
    }

    /// A value echoed JSON-escaped in a raw body (PHP's `\/`, .NET's `\u002B`, hex digits of
    /// either case, `\"` and `\\`) is found, its escapes masked whole; a near miss is not.
    #[test]
    fn json_escaped_echoes_in_raw_text_are_masked_whole() {
        let creds = creds("ab+cd/ef");
        let secrets = Secrets::new(&creds, Some(TOKEN), None);
        for echo in [
            r"ab+cd\/ef",
            r"ab\u002Bcd/ef",
            r"ab\u002bcd\u002Fef",
            r"\u0061\u0062\u002B\u0063\u0064\u002F\u0065\u0066",
            r"\u0074ok-0123456789abcdef",
            r"tok-0123456789abcde\u0066",
        ] {
            let text = std::format!(r#"{{"error_description":"bad {echo}","x":1}}"#);
            let start = text.find(echo).unwrap();
            let span = secrets.find(text.as_bytes(), 0);
            assert_eq!(span, Some(start..start + echo.len()), "{echo}");
            let masked = mask_raw(&secrets, text.as_bytes(), false, REDACTED.as_bytes());
            let expected = r#"{"error_description":"bad [redacted]","x":1}"#;
            assert_eq!(StdString::from_utf8(masked).unwrap(), expected, "{echo}");
            // `redacted` (for `Display`) reads raw text too.
            assert_eq!(secrets.redacted(&text).to_string(), expected, "{echo}");
        }
        // Near misses: another byte escaped, an escape of another character, one cut short.
        for near in [r"ab+cd\/eg", r"ab\u002Ccd/ef", r"ab\u002cd/ef", r"ab\+cd/ef", r"ab+cd\\/ef"] {
            assert_eq!(secrets.find(near.as_bytes(), 0), None, "{near}");
        }
        // Cut within an escape, after four bytes of the value or more: masked to the end.
        for cut in [r"id ab+cd\/", r"id ab+c\u00", r"id ab+c\u", r"id ab+c\"] {
            assert_eq!(secrets.find_in_cut(cut.as_bytes(), 0), Some(3..cut.len()), "{cut}");
            assert_eq!(secrets.find(cut.as_bytes(), 0), None, "{cut}");
        }
        // Three bytes of the value are not enough, escaped or not.
        assert_eq!(secrets.find_in_cut(br"id ab\u002B", 0), None);
        // Bounded texts the session keeps (read from JSON already) are matched byte for byte.
        assert_eq!(masked::<64>(&secrets, r"bad ab+cd\/ef"), r"bad ab+cd\/ef");
    }

    /// A secret with a backslash or a quote is found escaped as JSON must (`\\`, `\"`) and as
    /// it is.
    #[test]
    fn a_secret_with_a_backslash_is_found_escaped_and_raw() {
        let secret = r#"a\\b"c-0123"#;
        let creds = creds(secret);
        let secrets = Secrets::new(&creds, None, None);
        for echo in [r#"a\\\\b\"c-0123"#, r#"a\u005c\u005Cb\u0022c-0123"#, secret] {
            let text = std::format!("x {echo} y");
            assert_eq!(secrets.find(text.as_bytes(), 0), Some(2..2 + echo.len()), "{echo}");
        }
    }

    /// A value's backslash where the text ends within an escape (a `\\` cut after its first
    /// backslash, a `\u005C` cut short) may be the backslash as it is: a value that ends there
    /// is whole, whether the text was cut or not; one that goes on is a cut echo (four bytes
    /// of it or more) as before.
    #[test]
    fn a_backslash_where_the_text_ends_within_an_escape_is_read_both_ways() {
        let ends = creds(r"aAA\");
        let secrets = Secrets::new(&ends, None, None);
        for text in [r"x \u0061\u0041\u0041\", r"x \u0061AA\u00", r"x aAA\u005"] {
            // Through the backslash, read as it is.
            let whole = Some(2..text.rfind('\\').unwrap() + 1);
            assert_eq!(secrets.find(text.as_bytes(), 0), whole, "{text}");
            assert_eq!(secrets.find_in_cut(text.as_bytes(), 0), whole, "{text}");
        }
        // The value goes on past its backslash: four bytes of it or more before the cut
        // escape are a cut echo, three are not, whichever way the escape is read.
        let goes_on = creds(r"aAAA\b-0123");
        let secrets = Secrets::new(&goes_on, None, None);
        for text in [r"x \u0061AAA\", r"x aAAA\u00", r"x aAAA\u005"] {
            assert_eq!(secrets.find_in_cut(text.as_bytes(), 0), Some(2..text.len()), "{text}");
            assert_eq!(secrets.find(text.as_bytes(), 0), None, "{text}");
        }
        let short = creds(r"aAA\b-0123");
        let secrets = Secrets::new(&short, None, None);
        assert_eq!(secrets.find_in_cut(br"x aAA\u00", 0), None);
    }

    /// A secret beyond ASCII echoed with its characters `\uXXXX`-escaped, as Python's
    /// `json.dumps` and Django's `JsonResponse` write them (beyond the BMP as a UTF-16
    /// surrogate pair), is found, its escapes masked whole; cut within a character's escapes
    /// (a pair's too), after four bytes of it or more, to the end. A lone or reversed surrogate
    /// stands for no character.
    #[test]
    fn a_secret_beyond_ascii_is_found_escaped() {
        let beyond = creds("s\u{e9}cret-\u{fc}-\u{1f600}");
        let secrets = Secrets::new(&beyond, None, None);
        for echo in [
            r"s\u00e9cret-\u00fc-\ud83d\ude00",
            r"s\u00E9cret-\u00FC-\uD83D\uDE00",
            "s\u{e9}cret-\\u00fc-\u{1f600}",
            "s\u{e9}cret-\u{fc}-\\uD83D\\ude00",
        ] {
            let text = std::format!(r#"{{"detail":"bad {echo}"}}"#);
            let start = text.find(echo).unwrap();
            let span = secrets.find(text.as_bytes(), 0);
            assert_eq!(span, Some(start..start + echo.len()), "{echo}");
            for end in [echo.len() - 1, echo.len() - 6, echo.len() - 8] {
                let cut = &text.as_bytes()[..start + end];
                assert_eq!(secrets.find_in_cut(cut, 0), Some(start..cut.len()), "{echo} {end}");
                assert_eq!(secrets.find(cut, 0), None, "{echo} {end}");
            }
        }
        // Three bytes of it (`s`, `é`) before a cut escape are not enough; a near miss is no
        // echo.
        assert_eq!(secrets.find_in_cut(br"bad s\u00e9\u00", 0), None);
        for near in [r"s\u00e8cret-\u00fc-\ud83d\ude00", r"s\u00e9cret-\u00fc-\ude00\ud83d"] {
            assert_eq!(secrets.find(near.as_bytes(), 0), None, "{near}");
        }
        let lone = creds("ab\u{fffd}cd");
        let secrets = Secrets::new(&lone, None, None);
        assert_eq!(secrets.find(br"ab\ud83dcd", 0), None);
        assert_eq!(secrets.find(br"ab\ufffdcd", 0), Some(0..10));
    }

    /// A token given apart (one the session no longer holds) is found as the session's own
    /// values are: JSON-escaped, with a backslash escaped or not, cut within an escape, from a
    /// position on; an empty token nowhere.
    #[test]
    fn a_token_given_apart_is_found_as_the_sessions_values_are() {
        let token = r"tok/1+ab\cd";
        for echo in [token, r"tok\/1+ab\\cd", r"tok\u002f1\u002Bab\u005ccd", r"\u0074ok/1+ab\cd"] {
            let text = std::format!(r#"{{"message":"token {echo} refused"}}"#);
            let start = text.find(echo).unwrap();
            let span = find_token(text.as_bytes(), 0, token, false);
            assert_eq!(span, Some(start..start + echo.len()), "{echo}");
            assert_eq!(find_token(text.as_bytes(), start + 1, token, false), None, "{echo}");
            // Cut after five bytes of it (within the escape of `+` in the .NET form): masked
            // to the end.
            let end = start + echo.find('1').unwrap() + 3;
            let cut = &text.as_bytes()[..end];
            assert_eq!(find_token(cut, 0, token, true), Some(start..end), "{echo}");
            assert_eq!(find_token(cut, 0, token, false), None, "{echo}");
        }
        assert_eq!(find_token(br"tok\/1+ab\cd", 0, "", false), None);
        assert_eq!(find_token(br"tok\/1+ab\cd", 99, token, false), None);
        // A near miss is not the token.
        assert_eq!(find_token(br"tok\/1-ab\cd", 0, token, false), None);
    }

    proptest! {
        /// A value embedded in a raw text in any JSON-escaped form (each byte as it is where
        /// JSON allows, a short escape, `\u00XX` of either case) is never left in it: neither
        /// the escaped form nor, its escapes read, the value. The value is one the session
        /// holds or a token given apart ([`find_token`], masked after them as an adapter masks
        /// the tokens it retired). Bounded time: each position is compared with each value at
        /// most twice.
        #[test]
        fn a_json_escaped_value_is_never_left_in_raw_text(
            secret in "[!-~]{1,24}",
            token in "[!-~]{1,24}",
            retired in "[!-~]{1,24}",
            which in 0usize..3,
            forms in proptest::collection::vec(0u8..4, 24),
            before in "[ -\\[\\]-~]{0,24}",
            after in "[ -\\[\\]-~]{0,24}",
            cut_at in 0usize..200,
        ) {
            let creds = creds(&secret);
            let secrets = Secrets::new(&creds, Some(&token), None);
            let value = [&secret, &token, &retired][which];
            let mut escaped = StdString::new();
            for (i, &b) in value.as_bytes().iter().enumerate() {
                let short = match b {
                    b'"' => Some('"'),
                    b'\\' => Some('\\'),
                    b'/' => Some('/'),
                    _ => None,
                };
                match (forms[i % forms.len()], short) {
                    // As it is, where JSON allows it.
                    (0, None) => escaped.push(char::from(b)),
                    (1, Some(c)) | (0, Some(c)) => {
                        escaped.push('\\');
                        escaped.push(c);
                    }
                    (2, _) | (1, None) => escaped.push_str(&std::format!("\\u{:04x}", b)),
                    _ => escaped.push_str(&std::format!("\\u{:04X}", b)),
                }
            }
            let text = std::format!("{before}{escaped}{after}");
            let masked = mask_raw(&secrets, text.as_bytes(), false, &[0x01]);
            let masked = mask_token(&masked, &retired, false, &[0x01]);
            let shown = StdString::from_utf8_lossy(&masked).into_owned();
            prop_assert!(!shown.contains(&escaped), "{text} -> {shown}");
            let read = StdString::from_utf8_lossy(&unescaped(&masked)).into_owned();
            prop_assert!(!read.contains(value), "{text} -> {shown}");
            // Cut anywhere: no more than three leading bytes of the value are left at the end.
            let cut = &text.as_bytes()[..cut_at.min(text.len())];
            let masked = mask_raw(&secrets, cut, true, &[0x01]);
            let masked = mask_token(&masked, &retired, true, &[0x01]);
            let read = unescaped(&masked);
            prop_assert!(!read.windows(value.len()).any(|w| w == value.as_bytes()));
            for k in MIN_CUT_PREFIX..value.len() {
                prop_assert!(!read.ends_with(&value.as_bytes()[..k]), "{cut:?} ends with {k} bytes");
            }
        }

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
