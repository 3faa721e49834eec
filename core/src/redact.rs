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
//!   character they stand for (RFC 8259 §7), and an occurrence spans its escapes whole. A
//!   value's backslash also matches a backslash as it is (a value with one is compared byte
//!   for byte too), also where the text ends within an escape (`\`, `\u00`): shown, it would
//!   read as the backslash. Bounded texts the session keeps were read
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
//!   session keeps, and with [`token_spans`] in raw text (the same matcher as
//!   [`Secrets::spans`], JSON escapes and all).
//! - **Bounded work, failing closed.** Masking a text of `n` bytes does at most
//!   [`work_limit`]`(n)` = [`WORK_PER_BYTE`]` × n + `[`WORK_BASE`] units of work, whatever the
//!   values' lengths and whatever the text holds (see below). Where that runs out, everything
//!   from there to the end of the text is one masked span (the marker in its place, never the
//!   text as it came): [`Spans::exhausted`] tells. Only a text made to be costly meets it: one
//!   that repeats most of a value over and over (the token `A…AB` against a body of `A`s), or
//!   the assertion's header and claims over and over (each costs an HMAC).
//!
//! ## How, and what it costs
//!
//! Without allocation: each value is streamed (base64, percent-encoding and HMAC as the token
//! request writes them) against the text at the positions where the text starts with the
//! value's first byte (or, in raw text, with a backslash; the assertion only where the text
//! starts with its header, `eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.`), compared until the first
//! byte that differs, and never stored whole. The stream stops at that byte (the sink tells
//! the encoders it takes nothing more), so a comparison costs what it compared, not the
//! value's length. The units of work: one per byte of the text (the positions the search
//! reaches, at most one each); per value streamed at a position, [`STREAM_COST`] plus one per
//! byte of text it read (an escape's bytes each, those the last steps may have read included);
//! for the assertion, [`HASH_COST`] more per byte, hashed as it streams, and its HMAC's own
//! blocks (with the secret as its key when longer than a block) each time it is regenerated.
//! A comparison is handed only as much of the text as the work left pays for. A search that
//! runs out of work ends there, at the last position it reached: no occurrence starts before
//! it, every byte after it is masked.
//!
//! A whole text is masked with one budget ([`Secrets::spans`], [`token_spans`],
//! [`Secrets::redacted`] and the session's own masking): searching it again from each span's
//! end with [`Secrets::find`] gives each search a budget of its own for the rest of the text.

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

/// Units of work a masking may do per byte of the text (see the
/// [module documentation](self#how-and-what-it-costs) for what a unit is).
///
/// A text that echoes the values, escaped or not, over and over, stays well within it, and so
/// does one that repeats a value's first byte or backslashes (the tests measure them).
pub const WORK_PER_BYTE: usize = 32;

/// Units of work a masking may do besides [`WORK_PER_BYTE`] per byte, whatever the text's
/// length: a short text that holds the start of a long value is compared with it whole.
pub const WORK_BASE: usize = 4096;

/// Units of work of one value streamed at one position besides the bytes it compared: the
/// setup, and what an encoder writes after the first byte that differs before it stops.
pub const STREAM_COST: usize = 4;

/// Units of work of one byte hashed (regenerating the assertion, an HMAC-SHA256): a byte
/// hashed costs about as much as four compared.
pub const HASH_COST: usize = 4;

/// The units of work masking a text of `len` bytes may do: [`WORK_PER_BYTE`]` × len +
/// `[`WORK_BASE`] (saturating). Past it, the rest of the text is masked.
pub const fn work_limit(len: usize) -> usize {
    len.saturating_mul(WORK_PER_BYTE).saturating_add(WORK_BASE)
}

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
/// How every assertion starts: its header, `{"alg":"HS256","typ":"JWT"}` in base64url, and the
/// dot. Regenerating the assertion (an HMAC) is worth it only where the text starts so (or,
/// cut, with the first bytes of it).
const ASSERTION_START: &[u8] = b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.";
/// The units of the largest piece hashed before it reaches the comparison (four base64
/// characters).
const HASHED_PIECE: usize = 4 * HASH_COST;
/// The bytes of text the last steps of a comparison may read besides those it took: an
/// escape's (a surrogate pair's at most, 12) where it ended, and one cut by the text's end,
/// read as a backslash as it is, before.
const LAST_READ: usize = 24;
/// Bytes hashed to regenerate an assertion besides its header and claims: the HMAC's inner
/// and outer key blocks and the two final blocks.
const HMAC_BLOCKS: usize = 4 * 64;

impl<'a> Secrets<'a> {
    pub(crate) fn new(
        credentials: &'a Credentials,
        token: Option<&'a str>,
        assertion: Option<Assertion<'a>>,
    ) -> Self {
        Secrets { credentials, token, assertion }
    }

    /// Whether value `which` is there to mask.
    fn holds(&self, which: usize) -> bool {
        match which {
            TOKEN => self.token.is_some(),
            #[cfg(feature = "jwt")]
            ASSERTION => self.assertion.is_some(),
            #[cfg(not(feature = "jwt"))]
            ASSERTION => false,
            _ => true,
        }
    }

    /// Streams value `which` into `sink`, which stops it at the first byte that differs.
    fn stream(&self, which: usize, sink: &mut dyn Sink) {
        meter::add(meter::STREAMS, 1);
        let secret = self.credentials.secret.expose_secret();
        match which {
            SECRET => _ = sink.put(secret.as_bytes()),
            // The same as the secret itself unless it holds a reserved character: compared
            // twice then, which costs less than telling.
            FORM_SECRET => put_encoded(sink, secret.as_bytes()),
            BASIC => put_basic_credentials(sink, self.credentials.id.as_str(), secret),
            TOKEN => {
                if let Some(token) = self.token {
                    sink.put(token.as_bytes());
                }
            }
            #[cfg(feature = "jwt")]
            ASSERTION => {
                if let Some(a) = &self.assertion {
                    // The HMAC's own blocks, and a long key hashed first.
                    meter::add(meter::HASHED, self.hmac_setup() / HASH_COST);
                    let claims = crate::oauth::jwt::AssertionClaims {
                        audience: a.audience,
                        jti: a.inputs.jti,
                        issued_at: a.inputs.now,
                        lifetime: a.lifetime,
                    };
                    crate::oauth::jwt::put_client_assertion(sink, self.credentials, &claims);
                }
            }
            _ => {}
        }
    }

    /// The work of regenerating the assertion besides the bytes it hashes as it streams: the
    /// HMAC's own blocks, and the secret as its key when longer than a block (hashed first).
    fn hmac_setup(&self) -> usize {
        let key = self.credentials.secret.expose_secret().len();
        let key = if key > 64 { key } else { 0 };
        HMAC_BLOCKS.saturating_add(key).saturating_mul(HASH_COST)
    }

    /// Every occurrence of a value in the raw `text` (a body, a header value: JSON escapes
    /// read, see the [module documentation](self)), in order, as byte ranges, within one
    /// budget of [`work_limit`]`(text.len())`; with `cut` (the first part of a longer body), as
    /// [`find_in_cut`](Self::find_in_cut) also a value's leading [`MIN_CUT_PREFIX`] bytes or
    /// more at the very end. What masks a whole text: replace each span with [`REDACTED`].
    ///
    /// ```
    /// # use credflow_core::redact::{Secrets, REDACTED};
    /// fn masked(secrets: &Secrets<'_>, body: &[u8]) -> Vec<u8> {
    ///     let (mut out, mut shown) = (Vec::new(), 0);
    ///     for span in secrets.spans(body, false) {
    ///         out.extend_from_slice(&body[shown..span.start]);
    ///         out.extend_from_slice(REDACTED.as_bytes());
    ///         shown = span.end;
    ///     }
    ///     out.extend_from_slice(&body[shown..]);
    ///     out
    /// }
    /// ```
    pub fn spans<'s, 't>(&'s self, text: &'t [u8], cut: bool) -> Spans<'s, 't> {
        Spans { scan: Search::Secrets(Scan::new(self, text.len(), 0, cut)), text }
    }

    /// The first whole occurrence of a value in `text` at or after `from`, as a byte range
    /// (the longest, when several start at the same place), or where the search ran out of
    /// work (a budget of [`work_limit`] of the bytes from `from` on) the rest of the text.
    /// Never splits a UTF-8 character of a valid text: the values are valid UTF-8, so an
    /// occurrence starts and ends on boundaries.
    ///
    /// The text is raw, a body say: a value's bytes may be JSON-escaped in it (`ab\/cd` or
    /// `ab\u002Fcd` for `ab/cd`), and the occurrence spans the escapes (see the
    /// [module documentation](self)). To mask a whole text, take [`spans`](Self::spans): one
    /// budget for all of it.
    pub fn find(&self, text: &[u8], from: usize) -> Option<Range<usize>> {
        Scan::<_, true>::new(self, text.len(), from, false).next(text)
    }

    /// [`find`](Self::find) in a text that was cut at its end (the first part of a longer
    /// body): a value's leading [`MIN_CUT_PREFIX`] bytes or more at the very end of `text` are
    /// an occurrence too, so that a cut echo shows at most three of them.
    pub fn find_in_cut(&self, text: &[u8], from: usize) -> Option<Range<usize>> {
        Scan::<_, true>::new(self, text.len(), from, true).next(text)
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
    /// cut at the first value it holds instead: masked, with what followed it dropped. Byte
    /// for byte, within [`work_limit`] of its length (past it, the rest is masked).
    pub(crate) fn mask(&self, text: &mut StringView) {
        let cut = text.len().saturating_add(4) > text.capacity();
        let mut scan = Scan::<_, false>::new(self, text.len(), 0, cut);
        let Some(first) = scan.next(text.as_bytes()) else { return };
        let Ok(source) = heapless::String::<SCRATCH>::try_from(text.as_str()) else {
            text.truncate(floor_boundary(text, first.start));
            push_marker(text);
            return;
        };
        text.clear();
        // The search goes on in the copy (the same bytes), within the same budget.
        let source = source.as_bytes();
        let mut span = Some(first);
        let mut shown = 0;
        loop {
            // The text up to the next value (or to the end), then the marker in its place.
            let end = span.as_ref().map_or(source.len(), |span| span.start);
            // Values start and end on character boundaries (see `find`), and so does a span
            // where the work ran out: the piece is text.
            let piece = source.get(shown..end).unwrap_or_default();
            let piece = core::str::from_utf8(piece).unwrap_or_default();
            if push_sanitized(text, &mut piece.chars()).is_some() {
                return; // full
            }
            let Some(found) = span else { return };
            push_marker(text);
            shown = found.end;
            span = scan.next(source);
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
    /// session masks it, and whether that ran out of work (the same search again).
    #[doc(hidden)]
    pub fn mask_for_fuzzing<const N: usize>(
        &self,
        text: &str,
    ) -> (heapless::String<N>, heapless::String<N>, bool) {
        let mut kept = heapless::String::<N>::new();
        let _ = push_sanitized(kept.as_mut_view(), &mut text.chars());
        let mut masked = kept.clone();
        self.mask(masked.as_mut_view());
        let cut = kept.len().saturating_add(4) > N;
        let mut scan = Scan::<_, false>::new(self, kept.len(), 0, cut);
        while scan.next(kept.as_bytes()).is_some() {}
        (kept, masked, scan.at == usize::MAX)
    }
}

/// Every occurrence of `token` in the raw `text`, found as [`Secrets::spans`] finds the values
/// it holds (JSON escapes read as the bytes they stand for, the occurrence spanning them, one
/// budget of [`work_limit`]`(text.len())`; see the [module documentation](self)); with `cut`
/// (the first part of a longer body), the token's leading [`MIN_CUT_PREFIX`] bytes or more at
/// the very end of `text` too. None for an empty token.
///
/// For a token the session no longer holds (replaced by a refresh, dropped after a 401) while a
/// request sent with it may still be answered: an adapter that keeps such tokens a while masks
/// them with this, with the same matcher as the session's own values.
pub fn token_spans<'s, 't>(text: &'t [u8], token: &'s str, cut: bool) -> Spans<'s, 't> {
    Spans { scan: Search::Token(Scan::new(Lone(token.as_bytes()), text.len(), 0, cut)), text }
}

/// The first whole occurrence of `token` in the raw `text` at or after `from`, found as
/// [`Secrets::find`] finds the values it holds: JSON escapes read as the bytes they stand for,
/// the occurrence spanning them (see the [module documentation](self)), or where the search ran
/// out of work the rest of the text. With `cut` (the first part of a longer body), as
/// [`Secrets::find_in_cut`]: the token's leading [`MIN_CUT_PREFIX`] bytes or more at the very
/// end of `text` are an occurrence too. `None` for an empty token. To mask a whole text, take
/// [`token_spans`]: one budget for all of it.
pub fn find_token(text: &[u8], from: usize, token: &str, cut: bool) -> Option<Range<usize>> {
    Scan::<_, true>::new(Lone(token.as_bytes()), text.len(), from, cut).next(text)
}

/// The occurrences of the values in a raw text, in order ([`Secrets::spans`], [`token_spans`]),
/// found within one budget of work for the whole text: where it runs out, the last span is the
/// rest of the text, and [`exhausted`](Self::exhausted) says so.
#[must_use = "an iterator does nothing unless its spans are taken"]
pub struct Spans<'s, 't> {
    scan: Search<'s>,
    text: &'t [u8],
}

impl Spans<'_, '_> {
    /// Whether the search ran out of work (see the [module documentation](self)): the last
    /// span it gave is then the rest of the text from where it stopped, whatever it held.
    pub fn exhausted(&self) -> bool {
        self.scan.exhausted()
    }

    /// The units of work done so far (at most [`work_limit`] of the text's length), the
    /// positions' share (one unit per byte of the text) counted from the start.
    pub fn work(&self) -> usize {
        self.scan.work(self.text.len())
    }
}

impl Iterator for Spans<'_, '_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        match &mut self.scan {
            Search::Secrets(scan) => scan.next(self.text),
            Search::Token(scan) => scan.next(self.text),
        }
    }
}

impl fmt::Debug for Spans<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spans")
            .field("at", &self.scan.at())
            .field("work", &self.work())
            .field("exhausted", &self.scan.exhausted())
            .finish_non_exhaustive()
    }
}

/// What a search looks for: the values of a session ([`Secrets`]), or a token alone ([`Lone`]).
trait Values: Copy {
    /// Whether value `which` is there to mask.
    fn holds(&self, which: usize) -> bool;
    /// Streams value `which` into `sink`, which stops it at the first byte that differs.
    fn stream(&self, which: usize, sink: &mut dyn Sink);
    /// The work of regenerating the assertion besides the bytes it hashes as it streams.
    fn hmac_setup(&self) -> usize {
        0
    }
}

impl Values for &Secrets<'_> {
    fn holds(&self, which: usize) -> bool {
        Secrets::holds(self, which)
    }

    fn stream(&self, which: usize, sink: &mut dyn Sink) {
        Secrets::stream(self, which, sink);
    }

    fn hmac_setup(&self) -> usize {
        Secrets::hmac_setup(self)
    }
}

/// A token alone (one the session no longer holds), as [`TOKEN`].
#[derive(Clone, Copy)]
struct Lone<'s>(&'s [u8]);

/// The search behind [`Spans`].
enum Search<'s> {
    Secrets(Scan<&'s Secrets<'s>, true>),
    Token(Scan<Lone<'s>, true>),
}

impl Values for Lone<'_> {
    fn holds(&self, which: usize) -> bool {
        which == TOKEN && !self.0.is_empty()
    }

    fn stream(&self, _: usize, sink: &mut dyn Sink) {
        meter::add(meter::STREAMS, 1);
        sink.put(self.0);
    }
}

impl Search<'_> {
    fn exhausted(&self) -> bool {
        match self {
            Search::Secrets(scan) => scan.at == usize::MAX,
            Search::Token(scan) => scan.at == usize::MAX,
        }
    }

    /// The work done in a text of `len` bytes.
    fn work(&self, len: usize) -> usize {
        let left = match self {
            Search::Secrets(scan) => scan.left,
            Search::Token(scan) => scan.left,
        };
        work_limit(len).saturating_sub(left)
    }

    fn at(&self) -> usize {
        match self {
            Search::Secrets(scan) => scan.at,
            Search::Token(scan) => scan.at,
        }
    }
}

/// A search for the values in a text, from a position on, within a budget of work (`ESCAPED`:
/// JSON escapes read as the bytes they stand for, else byte for byte).
struct Scan<V: Values, const ESCAPED: bool> {
    values: V,
    /// Where the search goes on (past the text: it is over; `usize::MAX`: the work ran out).
    at: usize,
    cut: bool,
    /// Each value's first byte (0: not streamed yet; no value holds a NUL, and one that did
    /// would only be streamed everywhere). Once known, a value is streamed only where the text
    /// starts with it (or, `ESCAPED`, with an escape of it or a backslash).
    firsts: [u8; VALUES],
    /// The units of work left of [`work_limit`] of the bytes searched.
    left: usize,
}

impl<V: Values, const ESCAPED: bool> Scan<V, ESCAPED> {
    fn new(values: V, len: usize, from: usize, cut: bool) -> Self {
        let len = len.saturating_sub(from);
        Scan {
            values,
            at: from,
            cut,
            firsts: [0; VALUES],
            // One unit of each byte's share pays for the position (at most one per byte).
            left: work_limit(len).saturating_sub(len),
        }
    }

    /// Whether the first byte of every value there is (but the assertion's) is known.
    fn primed(&self) -> bool {
        (0..VALUES).all(|which| {
            which == ASSERTION
                || !self.values.holds(which)
                || self.firsts.get(which).is_some_and(|&f| f != 0)
        })
    }

    /// The next occurrence, or where the work ran out the rest of the text (from the last
    /// character boundary at or before where it stopped, not before where this search began:
    /// the end of the last span).
    fn next(&mut self, text: &[u8]) -> Option<Range<usize>> {
        let began = self.at;
        while let Some(tail) = text.get(self.at..).filter(|tail| !tail.is_empty()) {
            // Raw text (the adapters' bodies and headers): once every value's first byte is
            // known, the positions where none can start (nor an escape, nor the assertion's
            // `e`) are passed over at once.
            if ESCAPED && self.primed() {
                let firsts = self.firsts;
                let maybe = |b: &u8| *b == b'\\' || *b == b'e' || firsts.contains(b);
                let skip = tail.iter().position(maybe).unwrap_or(tail.len());
                if skip > 0 {
                    meter::add(meter::POSITIONS, skip);
                    self.at = self.at.saturating_add(skip);
                    continue;
                }
            }
            let start = self.at;
            match self.longest_at(tail) {
                Some(0) => self.at = start.saturating_add(1),
                Some(len) => {
                    let end = start.saturating_add(len);
                    self.at = end;
                    return Some(start..end);
                }
                None => {
                    let mut from = start;
                    while from > began && text.get(from).is_some_and(|b| b & 0xc0 == 0x80) {
                        from = from.saturating_sub(1);
                    }
                    self.at = usize::MAX;
                    return Some(from..text.len());
                }
            }
        }
        None
    }

    /// The length of the longest occurrence at the start of `tail` (0: none), `None` if the
    /// work ran out.
    fn longest_at(&mut self, tail: &[u8]) -> Option<usize> {
        // (Paid for by the budget's share of this byte, which the search started without.)
        meter::add(meter::POSITIONS, 1);
        // The first byte a value must have to start here: the text's, or at an escape (raw
        // text) the first of the character it stands for (a value's backslash matches the
        // text's backslash as it is).
        let raw = tail.first().copied();
        let mut decoded = None;
        if ESCAPED && raw == Some(b'\\') {
            let read = if tail.get(1) == Some(&b'u') { 12 } else { 2 };
            self.left = self.left.checked_sub(read)?;
            meter::add(meter::COMPARED, read);
            if let Some(Unescaped::Char(c, _)) = unescape(tail) {
                decoded = c.encode_utf8(&mut [0; 4]).as_bytes().first().copied();
            }
        }
        let mut longest = 0usize;
        for which in 0..VALUES {
            if !self.values.holds(which) {
                continue;
            }
            let mut setup = STREAM_COST;
            if which == ASSERTION {
                // Where the text starts with `e` (or an escape of it) only.
                if raw != Some(b'e') && decoded != Some(b'e') {
                    continue;
                }
                let gate = |sink: &mut dyn Sink| _ = sink.put(ASSERTION_START);
                let (_, state, _, _) =
                    compare::<ESCAPED>(tail, false, false, 0, &mut self.left, gate)?;
                if state == State::Differs {
                    continue;
                }
                setup = setup.saturating_add(self.values.hmac_setup());
            } else {
                let first = self.firsts.get(which).copied().unwrap_or_default();
                if first != 0 && Some(first) != raw && Some(first) != decoded {
                    continue;
                }
            }
            let hashed = which == ASSERTION;
            let values = self.values;
            let stream = |sink: &mut dyn Sink| values.stream(which, sink);
            let found =
                occurrence::<ESCAPED>(tail, self.cut, hashed, setup, &mut self.left, stream)?;
            if let Some(first) = self.firsts.get_mut(which) {
                *first = found.1.unwrap_or_default();
            }
            longest = longest.max(found.0);
        }
        Some(longest)
    }
}

/// The length of the occurrence at the start of `tail` of the value `stream` writes (0 if
/// none; see [`Compare::len`]), and the value's first byte (`None`: an empty value); `None` if
/// the work ran out (`left`: the units of it left). `hashed`: the value is hashed as it is
/// streamed (the assertion).
fn occurrence<const ESCAPED: bool>(
    tail: &[u8],
    cut: bool,
    hashed: bool,
    setup: usize,
    left: &mut usize,
    stream: impl Fn(&mut dyn Sink),
) -> Option<(usize, Option<u8>)> {
    let (mut len, _, first, backslash) =
        compare::<ESCAPED>(tail, cut, hashed, setup, left, &stream)?;
    // A value with a backslash, read escaped, does not match where the text holds it raw
    // (`\\` read as one backslash): compared byte for byte too.
    if ESCAPED && backslash {
        len = len.max(compare::<false>(tail, cut, hashed, STREAM_COST, left, &stream)?.0);
    }
    Some((len, first))
}

/// Compares the value `stream` writes with the start of `tail` within the work `left` (which
/// it takes): the occurrence's length (see [`Compare::len`]), how the comparison ended, the
/// value's first byte, and whether it had a backslash before the end; `None` if the work ran
/// out.
///
/// The comparison sees only as much of the text as the work left pays for (each byte read,
/// and hashed with `hashed`): if it runs out of that while all matched, the work ran out.
/// After it, what it read is taken: the bytes it matched, and what the last step may have read
/// ([`LAST_READ`]; and with `hashed`, the piece hashed before the comparison saw it).
fn compare<const ESCAPED: bool>(
    tail: &[u8],
    cut: bool,
    hashed: bool,
    setup: usize,
    left: &mut usize,
    stream: impl Fn(&mut dyn Sink),
) -> Option<(usize, State, Option<u8>, bool)> {
    let per_byte = if hashed { HASH_COST.saturating_add(1) } else { 1 };
    let hashed = if hashed { HASHED_PIECE } else { 0 };
    let last = setup.saturating_add(LAST_READ).saturating_add(hashed);
    let room = left.checked_sub(last)?.checked_div(per_byte)?;
    let seen = tail.get(..room).unwrap_or(tail);
    let mut compare = Compare::<ESCAPED>::new(seen);
    stream(&mut compare);
    if compare.state == State::RanOut && seen.len() < tail.len() {
        return None;
    }
    // The bytes it read beyond those it matched: the one that ended it, or escaped, those of
    // the last steps.
    let unmatched =
        if ESCAPED { compare.unmatched } else { usize::from(compare.state != State::Matching) };
    let read = compare.matched.saturating_mul(per_byte).saturating_add(unmatched);
    *left = left.saturating_sub(read.saturating_add(setup).saturating_add(hashed));
    Some((compare.len(cut), compare.state, compare.first, compare.backslash))
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

/// A text shown with the values of a [`Secrets`] masked (whole occurrences only; within
/// [`work_limit`] of its length, past which the rest is masked).
pub struct Redacted<'t> {
    secrets: &'t Secrets<'t>,
    text: &'t str,
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = 0;
        for span in self.secrets.spans(self.text.as_bytes(), false) {
            f.write_str(self.text.get(shown..span.start).unwrap_or_default())?;
            f.write_str(REDACTED)?;
            shown = span.end;
        }
        f.write_str(self.text.get(shown..).unwrap_or_default())
    }
}

/// What the masking did, counted where it is done (tests, and the `redact` fuzz target with
/// the `__fuzzing` feature), apart from the budget's own accounting: the fuzz target and the
/// tests check the work stays within [`work_limit`].
pub(crate) mod meter {
    pub(crate) const POSITIONS: usize = 0;
    pub(crate) const STREAMS: usize = 1;
    pub(crate) const COMPARED: usize = 2;
    pub(crate) const HASHED: usize = 3;

    #[cfg(test)]
    extern crate std;
    #[cfg(test)]
    std::thread_local! {
        static COUNTS: core::cell::Cell<[usize; 4]> = const { core::cell::Cell::new([0; 4]) };
    }

    #[cfg(test)]
    pub(crate) fn add(what: usize, n: usize) {
        COUNTS.with(|c| {
            let mut counts = c.get();
            if let Some(count) = counts.get_mut(what) {
                *count = count.saturating_add(n);
            }
            c.set(counts);
        });
    }

    /// The counts so far on this thread, then zero.
    #[cfg(test)]
    pub(crate) fn take() -> [usize; 4] {
        COUNTS.with(|c| c.replace([0; 4]))
    }

    #[cfg(all(feature = "__fuzzing", not(test)))]
    static COUNTS: [core::sync::atomic::AtomicUsize; 4] =
        [const { core::sync::atomic::AtomicUsize::new(0) }; 4];

    #[cfg(all(feature = "__fuzzing", not(test)))]
    pub(crate) fn add(what: usize, n: usize) {
        if let Some(count) = COUNTS.get(what) {
            count.fetch_add(n, core::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The counts so far, then zero.
    #[cfg(all(feature = "__fuzzing", not(test)))]
    pub(crate) fn take() -> [usize; 4] {
        COUNTS.each_ref().map(|c| c.swap(0, core::sync::atomic::Ordering::Relaxed))
    }

    #[cfg(not(any(test, feature = "__fuzzing")))]
    #[inline(always)]
    pub(crate) fn add(_: usize, _: usize) {}
}

/// Not part of the API (feature `__fuzzing`): the work the masking did since the last call,
/// counted where it was done (positions searched, values streamed, bytes of text compared,
/// bytes hashed), weighted as the budget weighs it: at most [`work_limit`] of
/// the text's length per masking.
#[cfg(feature = "__fuzzing")]
#[doc(hidden)]
pub fn work_for_fuzzing() -> usize {
    weigh(meter::take())
}

/// The counts of [`meter`] weighed as the budget weighs them.
#[cfg(any(test, feature = "__fuzzing"))]
fn weigh(counts: [usize; 4]) -> usize {
    let [positions, streams, compared, hashed] = counts;
    positions
        .saturating_add(streams.saturating_mul(STREAM_COST))
        .saturating_add(compared)
        .saturating_add(hashed.saturating_mul(HASH_COST))
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
    /// `ESCAPED`: bytes of the text read by the steps that took none (at most [`LAST_READ`]).
    unmatched: usize,
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
            unmatched: 0,
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
    /// `false` once the comparison ended: the value need not go on.
    fn put(&mut self, bytes: &[u8]) -> bool {
        if self.first.is_none() {
            self.first = bytes.first().copied();
        }
        let mut bytes = bytes;
        // Escaped, the bytes the text holds as they are (no backslash among them) are compared
        // at once: what a long comparison spends its time on.
        if ESCAPED && self.state == State::Matching && self.char_at >= self.char_len {
            let rest = self.text.get(self.matched..).unwrap_or_default();
            // By blocks (a `memcmp` each), then byte by byte.
            let mut same = 0usize;
            while let (Some(v), Some(t)) = (
                bytes.get(same..same.saturating_add(256)),
                rest.get(same..same.saturating_add(256)),
            ) {
                if v != t || t.contains(&b'\\') {
                    break;
                }
                same = same.saturating_add(256);
            }
            let tail = bytes.get(same..).unwrap_or_default().iter();
            same = same.saturating_add(
                tail.zip(rest.get(same..).unwrap_or_default())
                    .take_while(|&(b, t)| b == t && *t != b'\\')
                    .count(),
            );
            meter::add(meter::COMPARED, same);
            self.matched = self.matched.saturating_add(same);
            self.decoded = self.decoded.saturating_add(same);
            bytes = bytes.get(same..).unwrap_or_default();
        }
        for &b in bytes {
            if self.state != State::Matching {
                break;
            }
            if !ESCAPED {
                meter::add(meter::COMPARED, 1);
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
            let step = escaped_step(rest, b);
            // The bytes of the text the step took, or (at the last steps) may have read.
            let read = match (&step, rest) {
                (Step::Took(n) | Step::Char(_, _, n), _) => *n,
                (_, [b'\\', ..]) => rest.len().min(LAST_READ / 2),
                _ => 1,
            };
            if !matches!(step, Step::Took(_) | Step::Char(..)) {
                self.unmatched = self.unmatched.saturating_add(read);
            }
            meter::add(meter::COMPARED, read);
            match step {
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
        self.state == State::Matching
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use heapless::String;
    use proptest::prelude::*;
    use std::string::{String as StdString, ToString};
    use std::vec::Vec;

    /// `s3cr3t+/` form-encodes and base64-encodes differently from itself.
    const SECRET: &str = "s3cr3t+/Value";
    const TOKEN: &str = "tok-0123456789abcdef";

    fn creds(secret: &str) -> Credentials {
        Credentials::from_strs("client", secret).unwrap()
    }

    fn creds_with(id: &str, secret: &str) -> Credentials {
        Credentials::from_strs(id, secret).unwrap()
    }

    /// The Basic value of `creds` (without `Basic `).
    fn basic_of(creds: &Credentials) -> StdString {
        let mut buf = std::vec![0u8; 8192];
        let value = crate::oauth::form::basic_authorization(
            creds.id.as_str(),
            creds.secret.expose_secret(),
            &mut buf,
        )
        .unwrap();
        value.trim_start_matches("Basic ").to_string()
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
        meter::take();
        assert_eq!(secrets.find(text.as_bytes(), 0), None);
        let streamed = meter::take()[meter::STREAMS];
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

    /// Every assertion starts with [`ASSERTION_START`]: its header in base64url and the dot.
    #[cfg(feature = "jwt")]
    #[test]
    fn every_assertion_starts_with_its_header() {
        let mut buf = [0u8; 64];
        let mut out = crate::oauth::form::Out::new(&mut buf);
        let mut b64 =
            crate::oauth::form::Base64::new(&mut out, crate::oauth::form::Alphabet::UrlSafe);
        let _ = b64.put(crate::oauth::jwt::HS256_HEADER.as_bytes());
        let _ = b64.finish().put(b".");
        assert_eq!(out.finish().unwrap(), ASSERTION_START);
    }

    /// An assertion as the session signs one with `creds` (what it keeps of it, and the JWT).
    #[cfg(feature = "jwt")]
    fn signed_assertion(creds: &Credentials) -> (Assertion<'static>, std::string::String) {
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
        let jwt = crate::oauth::jwt::client_assertion(creds, &claims, &mut buf).unwrap();
        (Assertion { inputs, audience, lifetime }, jwt.to_string())
    }

    /// An assertion echoed whole, or cut after at least four bytes, is masked.
    #[cfg(feature = "jwt")]
    #[test]
    fn the_last_assertion_is_regenerated_and_masked() {
        let creds = creds(SECRET);
        let (assertion, jwt) = signed_assertion(&creds);
        let secrets = Secrets::new(&creds, None, Some(assertion));
        let text = std::format!("assertion {jwt} rejected");
        assert_eq!(secrets.redacted(&text).to_string(), "assertion [redacted] rejected");
        // Another assertion (another jti) is not this one.
        let inputs = JwtInputs { jti: [8; 16], ..assertion.inputs };
        let others = Secrets::new(&creds, None, Some(Assertion { inputs, ..assertion }));
        assert_eq!(others.redacted(&text).to_string(), text);
    }

    /// `text` with each span replaced by `marker`.
    fn replaced(text: &[u8], spans: &[Range<usize>], marker: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut shown = 0;
        for span in spans {
            out.extend_from_slice(&text[shown..span.start]);
            out.extend_from_slice(marker);
            shown = span.end;
        }
        out.extend_from_slice(&text[shown..]);
        out
    }

    /// The spans `find` names searching again from the end of each.
    fn found(find: impl Fn(usize) -> Option<Range<usize>>) -> Vec<Range<usize>> {
        let mut spans = Vec::new();
        let mut shown = 0;
        while let Some(span) = find(shown) {
            shown = span.end;
            spans.push(span);
        }
        spans
    }

    /// The spans of one search agree with those of searches again from each span's end (each
    /// with a budget of its own, for the rest of the text: where that ran out, its last span
    /// is the rest).
    fn assert_agree(text: &[u8], spans: &[Range<usize>], found: &[Range<usize>]) {
        let agree = spans == found
            || found.split_last().is_some_and(|(rest, same)| {
                rest.end == text.len()
                    && spans.get(..same.len()) == Some(same)
                    && spans.get(same.len()).is_none_or(|s| rest.start <= s.start)
            });
        assert!(agree, "{spans:?} and, searching again, {found:?}");
    }

    /// Every span of [`Secrets::spans`] replaced by `marker`, as an adapter masks a body,
    /// checking the work stayed within [`work_limit`] (counted apart, by [`meter`]) and that,
    /// unless it ran out, the spans are those `find` names searching again from each end.
    fn mask_raw(secrets: &Secrets<'_>, text: &[u8], cut: bool, marker: &[u8]) -> Vec<u8> {
        meter::take();
        let mut search = secrets.spans(text, cut);
        let spans: Vec<_> = search.by_ref().collect();
        let work = weigh(meter::take());
        assert!(work <= work_limit(text.len()), "{work} units for {} bytes", text.len());
        assert!(search.work() <= work_limit(text.len()));
        if !search.exhausted() {
            let find = |from| {
                if cut { secrets.find_in_cut(text, from) } else { secrets.find(text, from) }
            };
            assert_agree(text, &spans, &found(find));
        }
        replaced(text, &spans, marker)
    }

    /// Every span of [`token_spans`] replaced by `marker`, as an adapter masks the tokens it
    /// retired, checked as [`mask_raw`] checks.
    fn mask_token(text: &[u8], token: &str, cut: bool, marker: &[u8]) -> Vec<u8> {
        meter::take();
        let mut search = token_spans(text, token, cut);
        let spans: Vec<_> = search.by_ref().collect();
        let work = weigh(meter::take());
        assert!(work <= work_limit(text.len()), "{work} units for {} bytes", text.len());
        if !search.exhausted() {
            assert_agree(text, &spans, &found(|from| find_token(text, from, token, cut)));
        }
        replaced(text, &spans, marker)
    }

    /// The work of masking `text` with `secrets` (counted by [`meter`]), whether it ran out,
    /// and the masked text (each span as `#`).
    fn measured(secrets: &Secrets<'_>, text: &[u8], cut: bool) -> (usize, bool, Vec<u8>) {
        meter::take();
        let mut search = secrets.spans(text, cut);
        let spans: Vec<_> = search.by_ref().collect();
        let work = weigh(meter::take());
        assert!(search.work() <= work_limit(text.len()));
        (work, search.exhausted(), replaced(text, &spans, b"#"))
    }

    /// The inputs a hostile server chooses to make masking cost the most: a token that repeats
    /// one byte and ends with another, against a body of that byte (each position compares
    /// nearly all of it); bodies of backslashes, of `eyJ`, of the assertion's header, of a
    /// value's first byte. The work stays within `work_limit` of the text's length whatever
    /// the token's length (it would grow with it otherwise: 8000 bytes compared per position).
    /// Where it runs out, the rest of the text is masked: the token never shows.
    #[test]
    fn masking_work_is_linear_in_the_text_whatever_the_values() {
        let creds = creds(SECRET);
        for n in [10, 100, 1000, 8000] {
            let token = std::format!("{}B0001", "A".repeat(n));
            let secrets = Secrets::new(&creds, Some(&token), None);
            for len in [16, 1000, 65536] {
                let text = "A".repeat(len);
                let (work, exhausted, masked) = measured(&secrets, text.as_bytes(), false);
                assert!(work <= work_limit(len), "token {n}, text {len}: {work} units");
                // Cheap pairs are searched whole; a costly one runs out and masks the rest.
                if n * len <= 4096 {
                    assert!(!exhausted, "token {n}, text {len}");
                    assert_eq!(masked, text.as_bytes());
                }
                if n >= 1000 && len == 65536 {
                    assert!(exhausted);
                    assert!(masked.ends_with(b"#") && masked.len() < len);
                }
                // The same, cut: the token's first bytes at the end are masked anyway.
                let (work, _, masked) = measured(&secrets, text.as_bytes(), true);
                assert!(work <= work_limit(len), "token {n}, cut text {len}: {work} units");
                assert!(len < MIN_CUT_PREFIX || masked.ends_with(b"#"));
            }
            // An echo of the token in a long text of its first byte is masked, or the rest is.
            let text = std::format!("{}{token}{}", "A".repeat(30_000), "A".repeat(30_000));
            let (work, _, masked) = measured(&secrets, text.as_bytes(), false);
            assert!(work <= work_limit(text.len()));
            assert!(!masked.windows(token.len()).any(|w| w == token.as_bytes()));
        }
        // Texts that are not costly: a value's first byte, backslashes, escapes, `eyJ` over
        // and over (with an assertion to regenerate) are searched whole, well within the
        // budget.
        let long_secret = "s".repeat(255);
        let creds_long = creds_with("client", &long_secret);
        let inputs =
            JwtInputs { now: crate::time::UnixTime::from_secs(1_700_000_000), jti: [7; 16] };
        let assertion = Assertion {
            inputs,
            audience: "https://login.example/oauth/token",
            lifetime: Duration::from_secs(60),
        };
        let token = std::format!("eyJ{}", "A".repeat(8000));
        for (creds, what) in [(&creds, "short secret"), (&creds_long, "255-byte secret")] {
            let secrets = Secrets::new(creds, Some(&token), Some(assertion));
            let basic = basic_of(creds);
            for (name, text) in [
                ("backslashes", "\\".repeat(32768)),
                ("escapes", r"\u0041".repeat(10000)),
                ("first bytes", "s".repeat(65536)),
                ("eyJ", "eyJ".repeat(21000)),
                ("Basic's start", basic[..4].repeat(16000)),
                ("percent", "%2B".repeat(20000)),
            ] {
                let (work, exhausted, _) = measured(&secrets, text.as_bytes(), false);
                std::println!("{what}, {name}: {work} units for {} bytes", text.len());
                assert!(!exhausted, "{what}, {name}: ran out ({work} units)");
                assert!(work <= work_limit(text.len()) / 2, "{what}, {name}: {work} units");
            }
        }
    }

    /// The assertion's header and claims over and over, as a token server that received it
    /// can send: each costs an HMAC, counted at its cost (and a long secret, its key, hashed
    /// first), within the budget; what it did not reach is masked.
    #[cfg(feature = "jwt")]
    #[test]
    fn regenerating_the_assertion_is_counted_at_its_cost() {
        let creds = creds_with("client", &"k".repeat(255));
        let (assertion, jwt) = signed_assertion(&creds);
        let signed = &jwt[..jwt.rfind('.').unwrap() + 1];
        let secrets = Secrets::new(&creds, None, Some(assertion));
        for text in [ASSERTION_START.repeat(2000), signed.as_bytes().repeat(300)] {
            let (work, _, masked) = measured(&secrets, &text, false);
            assert!(work <= work_limit(text.len()), "{work} units for {} bytes", text.len());
            assert!(!masked.windows(jwt.len()).any(|w| w == jwt.as_bytes()));
        }
        // Echoed whole among them: masked (or the rest is).
        let text = std::format!("{}{jwt}", signed.repeat(50));
        let (_, _, masked) = measured(&secrets, text.as_bytes(), false);
        assert!(masked.ends_with(b"#"));
    }

    /// Where the work runs out, the rest of the text is one span, from a character boundary
    /// of a valid text, and the bounded texts the session keeps are masked from there too.
    #[test]
    fn where_the_work_runs_out_the_rest_is_masked() {
        let creds = creds(SECRET);
        let token = std::format!("{}B", "é".repeat(4000));
        let secrets = Secrets::new(&creds, Some(&token), None);
        let text = std::format!("x{}", "é".repeat(30000));
        let mut search = secrets.spans(text.as_bytes(), false);
        let span = search.next().unwrap();
        assert!(search.exhausted());
        assert_eq!(search.next(), None);
        assert_eq!(span.end, text.len());
        assert!(text.is_char_boundary(span.start), "{span:?}");
        assert!(span.start > 1, "the search went some way first");
        assert_eq!(
            secrets.redacted(&text).to_string(),
            std::format!("{}{REDACTED}", &text[..span.start])
        );
        // A bounded text of 256 bytes, byte for byte.
        let token = std::format!("{}B", "A".repeat(2000));
        let secrets = Secrets::new(&creds, Some(&token), None);
        let kept = masked::<256>(&secrets, &"A".repeat(250));
        assert!(kept.ends_with(REDACTED) && kept.starts_with('A'), "{kept}");
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

        /// Tokens and texts a hostile server would choose, from a few bytes (`A`, `B`, a
        /// backslash, the assertion's `eyJ`): a long token, a text that repeats a piece over
        /// and over, perhaps with the token (or its start) in it. The work stays within
        /// `work_limit` of the text (checked by [`mask_raw`] and [`mask_token`], counted apart
        /// by [`meter`]), and the token is never left in the text, as it is or read.
        #[test]
        fn costly_texts_stay_within_the_work_bound_and_never_show_the_token(
            token in "[AB\\\\eyJ]{1,24}",
            stretch in 0usize..3000,
            piece in "[AB\\\\eyJ]{1,6}",
            repeats in 1usize..3000,
            at in 0usize..20000,
            echo in 0usize..3,
            cut in any::<bool>(),
        ) {
            let token = std::format!("{}{token}", "A".repeat(stretch));
            let mut text = piece.repeat(repeats);
            let at = at.min(text.len());
            match echo {
                1 => text.insert_str(at, &token),
                2 => text.insert_str(at, &token[..token.len() / 2]),
                _ => {}
            }
            let creds = creds(SECRET);
            let secrets = Secrets::new(&creds, Some(&token), None);
            for masked in [
                mask_raw(&secrets, text.as_bytes(), cut, &[0x01]),
                mask_token(text.as_bytes(), &token, cut, &[0x01]),
            ] {
                prop_assert!(!masked.windows(token.len()).any(|w| w == token.as_bytes()));
                let read = unescaped(&masked);
                prop_assert!(!read.windows(token.len()).any(|w| w == token.as_bytes()));
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
