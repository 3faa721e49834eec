//! Form encoding (`application/x-www-form-urlencoded`) and the other byte encodings of a token
//! request, all writing into caller buffers.
//!
//! - Percent-encoding per RFC 6749 Appendix B: the unreserved characters `A-Z a-z 0-9 - . _ ~`
//!   are kept and every other byte of the UTF-8 text becomes `%XX` (uppercase hex). A space is
//!   `%20`, never `+`: `+` is only understood by decoders that follow the HTML form rules, and a
//!   server that does not would read a secret containing a space as a different secret.
//! - The same encoding applied to the client id and secret before they are joined with `:` and
//!   base64-encoded for HTTP Basic authentication (RFC 6749 §2.3.1; base64 of RFC 4648 §4).
//! - [`FormWriter`], which appends `name=value` pairs joined by `&` to a caller buffer and, when
//!   the buffer is full, appends nothing and says how many bytes the form needed.
//!
//! Internally the codec writes through streaming encoders (percent, base64, decimal) into a
//! counting buffer that keeps counting past its end: a failed encoding reports the exact size
//! that would have succeeded, in one pass and without scratch memory.

use core::fmt;

/// The caller's buffer is too small; `needed` bytes would have been enough.
///
/// Retry with a buffer of at least `needed` bytes. Nothing useful was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BufferTooSmall {
    /// Total bytes the output needs.
    pub needed: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "output buffer too small: {} bytes needed", self.needed)
    }
}

impl core::error::Error for BufferTooSmall {}

/// Whether `b` is an RFC 3986 unreserved character, kept as is by form encoding.
pub const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Length of `s` once percent-encoded (saturating).
pub fn encoded_len(s: &str) -> usize {
    s.bytes().fold(0usize, |n, b| n.saturating_add(if is_unreserved(b) { 1 } else { 3 }))
}

/// Percent-encodes `s` into `out` and returns the encoded text.
///
/// ```
/// use credflow_core::oauth::form::encode;
/// let mut buf = [0u8; 32];
/// assert_eq!(encode("read write+x", &mut buf)?, "read%20write%2Bx");
/// # Ok::<(), credflow_core::oauth::form::BufferTooSmall>(())
/// ```
pub fn encode<'b>(s: &str, out: &'b mut [u8]) -> Result<&'b str, BufferTooSmall> {
    let mut w = Out::new(out);
    put_encoded(&mut w, s.as_bytes());
    w.finish_str()
}

/// The HTTP Basic `Authorization` value for a client, per RFC 6749 §2.3.1: id and secret are
/// each form-encoded, joined with `:`, and base64-encoded: `Basic czZCaGRS...`.
///
/// The output holds the secret in a reversible form: wipe the buffer once the request is sent.
pub fn basic_authorization<'b>(
    id: &str,
    secret: &str,
    out: &'b mut [u8],
) -> Result<&'b str, BufferTooSmall> {
    let mut w = Out::new(out);
    put_basic(&mut w, id, secret);
    w.finish_str()
}

/// Writes `Basic ` and the RFC 6749 §2.3.1 credentials.
pub(crate) fn put_basic(sink: &mut dyn Sink, id: &str, secret: &str) {
    sink.put(b"Basic ");
    put_basic_credentials(sink, id, secret);
}

/// Writes the RFC 6749 §2.3.1 credentials: `base64(form(id) ":" form(secret))`.
pub(crate) fn put_basic_credentials(sink: &mut dyn Sink, id: &str, secret: &str) {
    let mut b64 = Base64::new(sink, Alphabet::Standard);
    put_encoded(&mut b64, id.as_bytes());
    b64.put(b":");
    put_encoded(&mut b64, secret.as_bytes());
    b64.finish();
}

/// Appends `name=value` pairs, form-encoded and joined by `&`, to a caller buffer.
///
/// A pair that does not fit is not written at all (the form so far stays valid) and the error
/// says how long the form would have been with it.
///
/// ```
/// use credflow_core::oauth::form::FormWriter;
/// let mut buf = [0u8; 64];
/// let mut form = FormWriter::new(&mut buf);
/// form.pair("grant_type", "client_credentials")?;
/// form.pair("scope", "a b")?;
/// assert_eq!(form.as_str(), "grant_type=client_credentials&scope=a%20b");
/// # Ok::<(), credflow_core::oauth::form::BufferTooSmall>(())
/// ```
pub struct FormWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> FormWriter<'b> {
    /// An empty form over `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        FormWriter { buf, len: 0 }
    }

    /// Appends `name=value` (preceded by `&` unless it is the first pair).
    pub fn pair(&mut self, name: &str, value: &str) -> Result<(), BufferTooSmall> {
        let sep = usize::from(self.len > 0);
        let needed = [sep, encoded_len(name), 1, encoded_len(value)]
            .into_iter()
            .fold(self.len, usize::saturating_add);
        if needed > self.buf.len() {
            return Err(BufferTooSmall { needed });
        }
        let mut w = Out { buf: &mut *self.buf, len: self.len };
        put_pair(&mut w, sep == 1, name, value);
        self.len = w.len;
        Ok(())
    }

    /// The form written so far.
    pub fn as_str(&self) -> &str {
        ascii(self.buf.get(..self.len).unwrap_or_default())
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no pair has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The finished form, borrowed for the buffer's lifetime.
    pub fn into_str(self) -> &'b str {
        let buf: &'b [u8] = self.buf;
        ascii(buf.get(..self.len).unwrap_or_default())
    }
}

impl fmt::Debug for FormWriter<'_> {
    /// Shows the length only: a form may carry a client secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormWriter").field("len", &self.len).finish_non_exhaustive()
    }
}

/// Writes `[&]name=value`, both encoded.
pub(crate) fn put_pair(sink: &mut dyn Sink, first_sep: bool, name: &str, value: &str) {
    if first_sep {
        sink.put(b"&");
    }
    put_encoded(sink, name.as_bytes());
    sink.put(b"=");
    put_encoded(sink, value.as_bytes());
}

/// Text written only by this module's encoders, which emit ASCII; anything else reads as "".
pub(crate) fn ascii(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or_default()
}

// ---- streaming encoders -------------------------------------------------------------------

/// A byte consumer that cannot fail: overflow is tracked by the final sink ([`Out`]).
pub(crate) trait Sink {
    /// Appends `bytes`; `false` if the sink takes nothing more (a comparison that found a
    /// difference, see `redact`): the encoders that loop over their input stop there, so that
    /// a value streamed for a comparison costs what was compared, not its length.
    fn put(&mut self, bytes: &[u8]) -> bool;
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn put(&mut self, bytes: &[u8]) -> bool {
        (**self).put(bytes)
    }
}

/// A caller buffer that keeps counting past its end. A write that does not fit is dropped
/// whole, so `len <= buf.len()` holds exactly when every write landed.
pub(crate) struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Out<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Out { buf, len: 0 }
    }

    /// Bytes written (or that would have been written) so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Everything written, or the size that was needed.
    pub(crate) fn finish(self) -> Result<&'b [u8], BufferTooSmall> {
        let buf: &'b [u8] = self.buf;
        buf.get(..self.len).ok_or(BufferTooSmall { needed: self.len })
    }

    fn finish_str(self) -> Result<&'b str, BufferTooSmall> {
        self.finish().map(ascii)
    }
}

impl Sink for Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> bool {
        let end = self.len.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
        }
        self.len = end;
        true
    }
}

/// Percent-encodes `bytes` (RFC 6749 Appendix B) into `sink`. The form encoders take `dyn Sink`:
/// one copy of their code for the form and for the Basic credentials inside Base64.
pub(crate) fn put_encoded(sink: &mut dyn Sink, bytes: &[u8]) {
    for &b in bytes {
        let more = if is_unreserved(b) {
            sink.put(&[b])
        } else {
            sink.put(&[b'%', hex_digit(b >> 4), hex_digit(b & 0x0f)])
        };
        if !more {
            return;
        }
    }
}

pub(crate) const fn hex_digit(n: u8) -> u8 {
    match n {
        0..=9 => b'0'.wrapping_add(n),
        _ => b'A'.wrapping_add(n.wrapping_sub(10)),
    }
}

/// Writes `n` in decimal.
pub(crate) fn put_decimal(sink: &mut dyn Sink, n: u64) {
    sink.put(crate::http::Decimal::new(n).as_bytes());
}

/// Which base64 flavour to write.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alphabet {
    /// RFC 4648 §4 with `=` padding (HTTP Basic).
    Standard,
    /// RFC 4648 §5 without padding (JWS, RFC 7515 §2).
    UrlSafe,
}

/// A streaming base64 encoder in front of another sink. Call [`Base64::finish`] to flush.
///
/// The inner sink is `dyn`: one copy of the encoder serves HTTP Basic and every JWS segment.
pub(crate) struct Base64<'s> {
    sink: &'s mut dyn Sink,
    alphabet: Alphabet,
    /// The pending input bytes, big-endian in the low `8 * n` bits.
    bits: u32,
    /// How many input bytes are pending (0..3).
    n: u8,
}

impl<'s> Base64<'s> {
    pub(crate) fn new(sink: &'s mut dyn Sink, alphabet: Alphabet) -> Self {
        Base64 { sink, alphabet, bits: 0, n: 0 }
    }

    /// Encodes all of `bytes` and flushes.
    pub(crate) fn put_all(mut self, bytes: &[u8]) {
        self.put(bytes);
        self.finish();
    }

    /// Writes the last partial group (and padding, for the standard alphabet); returns the sink.
    pub(crate) fn finish(mut self) -> &'s mut dyn Sink {
        if self.n > 0 {
            // One byte pending: 2 characters; two bytes: 3.
            let chars = usize::from(self.n).saturating_add(1);
            let missing = 3u32.saturating_sub(u32::from(self.n));
            self.bits = self.bits.checked_shl(missing.saturating_mul(8)).unwrap_or(0);
            self.emit(chars);
            if self.alphabet == Alphabet::Standard {
                self.sink.put(b"==".get(chars.saturating_sub(2)..).unwrap_or_default());
            }
        }
        self.sink
    }

    /// Writes the first `chars` characters of the 24-bit group in `bits`; `false` if the sink
    /// takes nothing more.
    fn emit(&mut self, chars: usize) -> bool {
        let mut out = [0u8; 4];
        let mut shift = 24u32;
        for slot in &mut out {
            shift = shift.saturating_sub(6);
            let v = self.bits.checked_shr(shift).unwrap_or(0) & 0x3f;
            *slot = self.char(u8::try_from(v).unwrap_or(0));
        }
        self.sink.put(out.get(..chars).unwrap_or_default())
    }

    fn char(&self, v: u8) -> u8 {
        match v {
            0..=25 => b'A'.wrapping_add(v),
            26..=51 => b'a'.wrapping_add(v.wrapping_sub(26)),
            52..=61 => b'0'.wrapping_add(v.wrapping_sub(52)),
            62 if self.alphabet == Alphabet::Standard => b'+',
            62 => b'-',
            _ if self.alphabet == Alphabet::Standard => b'/',
            _ => b'_',
        }
    }
}

impl Sink for Base64<'_> {
    /// `false` once the sink said so (up to two bytes after, still pending).
    fn put(&mut self, bytes: &[u8]) -> bool {
        let mut more = true;
        for &byte in bytes {
            self.bits = self.bits << 8 | u32::from(byte);
            self.n = self.n.saturating_add(1);
            if self.n == 3 {
                more = self.emit(4);
                self.bits = 0;
                self.n = 0;
            }
        }
        more
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;

    /// A strict reference percent-decoder (RFC 3986 §2.1); `+` stays `+`.
    pub(crate) fn percent_decode(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            } else {
                out.push(b);
            }
        }
        Some(out)
    }

    /// Reference base64 from the `base64` crate (no `alloc` feature, so through a slice).
    pub(crate) fn b64(engine: &impl Engine, data: &[u8]) -> String {
        let mut buf = std::vec![0u8; data.len() * 4 / 3 + 4];
        let n = engine.encode_slice(data, &mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn basic(id: &str, secret: &str) -> String {
        let mut buf = [0u8; 1024];
        basic_authorization(id, secret, &mut buf).unwrap().into()
    }

    #[test]
    fn rfc6749_basic_vector() {
        // RFC 6749 §2.3.1 (and §4.4.2's example request).
        assert_eq!(
            basic("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw"),
            "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3"
        );
    }

    #[test]
    fn basic_encodes_id_and_secret_before_base64() {
        let cases = [
            ("a:b", "c:d", "a%3Ab:c%3Ad"),
            ("id", "50% off", "id:50%25%20off"),
            ("id", "p+q", "id:p%2Bq"),
            ("ü", "€ x", "%C3%BC:%E2%82%AC%20x"),
            ("A-z0.9_~", "~._-", "A-z0.9_~:~._-"),
        ];
        for (id, secret, plain) in cases {
            let value = basic(id, secret);
            let encoded = value.strip_prefix("Basic ").unwrap();
            assert_eq!(b64(&STANDARD, plain.as_bytes()), encoded, "{id} {secret}");
        }
    }

    #[test]
    fn percent_encoding_rules() {
        let mut buf = [0u8; 64];
        assert_eq!(encode("", &mut buf).unwrap(), "");
        assert_eq!(encode("a b+c%d/e=f&g*h", &mut buf).unwrap(), "a%20b%2Bc%25d%2Fe%3Df%26g%2Ah");
        assert_eq!(encode("\u{7f}\0é", &mut buf).unwrap(), "%7F%00%C3%A9");
        assert_eq!(encoded_len("a b"), 5);
        assert_eq!(encode("a b", &mut [0u8; 4]), Err(BufferTooSmall { needed: 5 }));
        assert_eq!(encode("a b", &mut [0u8; 5]).unwrap(), "a%20b");
    }

    #[test]
    fn form_writer_is_atomic_and_reports_the_size() {
        let mut buf = [0u8; 20];
        let mut form = FormWriter::new(&mut buf);
        assert!(form.is_empty());
        form.pair("a", "1 2").unwrap(); // a=1%202 (7)
        assert_eq!(form.pair("b b b", "x/y"), Err(BufferTooSmall { needed: 7 + 1 + 9 + 1 + 5 }));
        assert_eq!(form.as_str(), "a=1%202", "a refused pair leaves no trace");
        form.pair("bb", "x/y").unwrap(); // &bb=x%2Fy (9) -> 16
        assert_eq!(form.pair("c", "de"), Err(BufferTooSmall { needed: 21 }));
        form.pair("c", "d").unwrap(); // exactly 20
        assert_eq!(form.len(), 20);
        assert_eq!(form.into_str(), "a=1%202&bb=x%2Fy&c=d");
        assert_eq!(
            std::format!("{:?}", FormWriter::new(&mut [0u8; 4])),
            "FormWriter { len: 0, .. }"
        );
    }

    #[test]
    fn decimal() {
        for n in [0u64, 7, 10, 3600, u64::MAX] {
            let mut buf = [0u8; 20];
            let mut w = Out::new(&mut buf);
            put_decimal(&mut w, n);
            assert_eq!(w.finish_str().unwrap(), std::format!("{n}"));
        }
    }

    proptest! {
        #[test]
        fn encoding_round_trips(s in "\\PC*") {
            let mut buf = std::vec![0u8; encoded_len(&s)];
            let enc = encode(&s, &mut buf).unwrap();
            prop_assert!(enc.bytes().all(|b| is_unreserved(b) || b == b'%' || b.is_ascii_hexdigit()));
            prop_assert!(!enc.contains('+') && !enc.contains(' '));
            prop_assert_eq!(percent_decode(enc).unwrap(), s.as_bytes());
        }

        #[test]
        fn one_byte_short_is_refused_with_the_exact_size(s in "\\PC{1,40}") {
            let need = encoded_len(&s);
            let mut buf = std::vec![0u8; need - 1];
            prop_assert_eq!(encode(&s, &mut buf), Err(BufferTooSmall { needed: need }));
        }

        #[test]
        fn base64_matches_the_reference(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            for (alphabet, reference) in [(Alphabet::Standard, b64(&STANDARD, &data)), (Alphabet::UrlSafe, b64(&URL_SAFE_NO_PAD, &data))] {
                let mut buf = [0u8; 100];
                let mut w = Out::new(&mut buf);
                // Feed in uneven chunks to exercise the carry.
                let mut b64 = Base64::new(&mut w, alphabet);
                for chunk in data.chunks(5) { b64.put(chunk); }
                b64.finish();
                prop_assert_eq!(w.finish_str().unwrap(), reference.as_str());
            }
        }
    }
}
