//! Credentials and tokens: stored inline, zeroized on drop, never printed.
//!
//! (A token is kept inline by default; a program with an allocator may keep it in a buffer
//! sized to it instead, through [`TokenStorage`]: the core itself never allocates.)
//!
//! - [`ClientId`] is not secret, but it is bounded and validated.
//! - [`ClientSecret`] and [`AccessToken`] have a redacted `Debug` and `Display`, are wiped with
//!   [`zeroize`] when dropped, and expose their bytes only through explicitly named methods
//!   (`expose_secret`, `as_str`) so that a reviewer can grep for every place a secret is read.
//! - [`Fingerprint`] is a short, non-reversible tag (HMAC-SHA256 of the secret under a fixed,
//!   public domain-separation key, truncated to 48 bits) so logs and errors can say *which*
//!   credential or token was used without revealing it.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

/// Maximum length of a client id in bytes.
pub const CLIENT_ID_CAPACITY: usize = 255;
/// Maximum length of a client secret in bytes.
pub const CLIENT_SECRET_CAPACITY: usize = 255;

/// Why a credential or token was refused at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CredentialError {
    /// The value is empty.
    Empty,
    /// The value is longer than the fixed capacity.
    TooLong {
        /// Bytes supplied.
        len: usize,
        /// Bytes that fit.
        capacity: usize,
    },
    /// The value contains a control character (a stray newline from a secret file is the usual
    /// cause; trim it) or non-visible byte.
    ControlCharacter {
        /// Byte offset of the first offending character.
        at: usize,
    },
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CredentialError::Empty => f.write_str("value is empty"),
            CredentialError::TooLong { len, capacity } => {
                write!(f, "value is {len} bytes long, at most {capacity} fit")
            }
            CredentialError::ControlCharacter { at } => write!(
                f,
                "value contains a control character at byte {at} (a trailing newline from a file?)"
            ),
        }
    }
}

impl core::error::Error for CredentialError {}

/// Inline, fixed-capacity byte storage that wipes itself on drop.
#[derive(Clone)]
struct SecretBuf<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> SecretBuf<N> {
    const EMPTY: Self = SecretBuf { len: 0, bytes: [0; N] };

    fn new(value: &str) -> Result<Self, CredentialError> {
        let mut buf = Self::EMPTY;
        buf.len = fill_credential(value, &mut buf.bytes)?;
        Ok(buf)
    }

    fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or(&[]);
        // Only ever filled from a `&str`, so this cannot fail; an empty string is the safe answer.
        core::str::from_utf8(bytes).unwrap_or("")
    }
}

/// Checks a credential part (1 to `dst.len()` bytes, no control characters) and copies it into
/// `dst`: its length. Out of line, one copy for every capacity.
#[inline(never)]
fn fill_credential(value: &str, dst: &mut [u8]) -> Result<usize, CredentialError> {
    let len = value.len();
    if len == 0 {
        return Err(CredentialError::Empty);
    }
    let Some(slot) = dst.get_mut(..len) else {
        return Err(CredentialError::TooLong { len, capacity: dst.len() });
    };
    // Unicode's control characters, not only ASCII's: credflow turns them into spaces in every
    // text it keeps from a server, where a credential holding one could not be found to be
    // masked. U+0080 to U+009F are 0xC2 then 0x80 to 0x9F in UTF-8.
    let bytes = value.as_bytes();
    let control = |at: &usize| match bytes.get(*at..) {
        Some([b, ..]) if b.is_ascii_control() => true,
        Some([0xC2, 0x80..=0x9F, ..]) => true,
        _ => false,
    };
    if let Some(at) = (0..len).find(control) {
        return Err(CredentialError::ControlCharacter { at });
    }
    slot.copy_from_slice(value.as_bytes());
    Ok(len)
}

impl<const N: usize> Drop for SecretBuf<N> {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
        self.len.zeroize();
    }
}

/// Overwrites `bytes` with zeros in a way the optimizer keeps (`zeroize`): for a buffer that
/// held a secret (a request with the client secret, a token response).
///
/// Out of line and not generic on purpose: secrets are dropped on many paths, and a wiping
/// loop inlined at each of them, for each capacity, would be copied many times in firmware.
#[inline(never)]
pub fn wipe(bytes: &mut [u8]) {
    bytes.zeroize();
}

impl<const N: usize> PartialEq for SecretBuf<N> {
    /// Constant-time comparison (no early exit on the first differing byte).
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.len == other.len && bool::from(self.bytes.ct_eq(&other.bytes))
    }
}

impl<const N: usize> Eq for SecretBuf<N> {}

/// A short, non-reversible tag that identifies a secret or token in logs.
///
/// Computed as the first 6 bytes of HMAC-SHA256 keyed with a public domain-separation label;
/// 48 bits are enough to tell credentials apart in a log and far too few to help an attacker.
/// Shown as `fp:` followed by 12 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 6]);

impl Fingerprint {
    fn compute(label: &[u8], parts: &[&[u8]]) -> Self {
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(label) {
            Ok(mac) => mac,
            // HMAC accepts keys of any length; this branch is unreachable in practice.
            Err(_) => return Fingerprint([0; 6]),
        };
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 6];
        for (o, t) in out.iter_mut().zip(tag.iter()) {
            *o = *t;
        }
        Fingerprint(out)
    }

    /// The fingerprint [`AccessToken::fingerprint`] gives a token with these bytes, for any
    /// bytes: a token a peer handed over that [`AccessToken::new`] refuses (too long, a byte
    /// outside RFC 6750's `b64token`) can still be named, in logs and to the peer, as the one
    /// not to hand over again.
    pub fn of_token(token: &[u8]) -> Self {
        Fingerprint::compute(b"credflow/token-fingerprint/v1", &[token])
    }

    /// The raw 6 bytes.
    pub const fn as_bytes(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fp:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An OAuth 2.0 client identifier (RFC 6749 §2.2). Not secret; printed as is.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientId(SecretBuf<CLIENT_ID_CAPACITY>);

impl ClientId {
    /// Validates and stores a client id (1 to [`CLIENT_ID_CAPACITY`] bytes, no control characters).
    pub fn new(id: &str) -> Result<Self, CredentialError> {
        SecretBuf::new(id).map(ClientId)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({:?})", self.as_str())
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth 2.0 client secret. Redacted in `Debug`/`Display`, zeroized on drop, compared in
/// constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(SecretBuf<CLIENT_SECRET_CAPACITY>);

impl ClientSecret {
    /// Validates and stores a secret (1 to [`CLIENT_SECRET_CAPACITY`] bytes, no control
    /// characters). The error never contains the secret.
    pub fn new(secret: &str) -> Result<Self, CredentialError> {
        SecretBuf::new(secret).map(ClientSecret)
    }

    /// The secret itself. Call only to put it on the wire or into a MAC key.
    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

impl fmt::Display for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A client id with its secret: what the token endpoint authenticates.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The client id.
    pub id: ClientId,
    /// The client secret.
    pub secret: ClientSecret,
}

impl Credentials {
    /// Pairs an id with its secret.
    pub fn new(id: ClientId, secret: ClientSecret) -> Self {
        Credentials { id, secret }
    }

    /// Validates both parts from strings. The error says which part is wrong, never its value.
    pub fn from_strs(id: &str, secret: &str) -> Result<Self, (CredentialPart, CredentialError)> {
        // Filled in place: two `Result`s of a whole buffer each, moved into the pair, would be
        // copied twice more.
        let mut pair =
            Credentials { id: ClientId(SecretBuf::EMPTY), secret: ClientSecret(SecretBuf::EMPTY) };
        pair.id.0.len =
            fill_credential(id, &mut pair.id.0.bytes).map_err(|e| (CredentialPart::ClientId, e))?;
        pair.secret.0.len = fill_credential(secret, &mut pair.secret.0.bytes)
            .map_err(|e| (CredentialPart::ClientSecret, e))?;
        Ok(pair)
    }

    /// A fingerprint of id and secret together, stable across processes: two pods that log the
    /// same fingerprint use the same credential; a rotated secret gives a new fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::compute(
            b"credflow/credential-fingerprint/v1",
            &[self.id.as_str().as_bytes(), self.secret.expose_secret().as_bytes()],
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Which half of a credential a [`CredentialError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialPart {
    /// The client id.
    ClientId,
    /// The client secret.
    ClientSecret,
}

/// An access token of at most `N` bytes, stored inline. Redacted in `Debug`/`Display`, zeroized
/// on drop; [`AccessToken::as_str`] is the one way to read it.
///
/// RFC 6750 §2.1 limits bearer tokens to `b64token` characters; the core accepts any visible
/// ASCII (servers are not always strict) and rejects control characters, spaces and non-ASCII,
/// which could otherwise split or forge an `Authorization` header.
///
/// `S` is where the bytes are kept: inline by default ([`InlineToken`], `N` bytes whatever the
/// token's length, no allocator needed); a program with an allocator can keep them in a
/// buffer sized to the token instead (a [`TokenStorage`] of its own), still accepting every
/// token of up to `N` bytes, no more.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken<const N: usize, S = InlineToken<N>>(S);

/// Where an [`AccessToken`] keeps its bytes.
///
/// The core never allocates: [`InlineToken`] keeps `N` bytes inline. A `std` program that holds
/// many sessions (one per tenant) can implement this on a heap buffer sized to the token. An
/// implementation must wipe the bytes when dropped (as [`wipe`] does) and never print them in
/// `Debug` or `Display`.
pub trait TokenStorage: Sized {
    /// Keeps `token`, already checked by [`AccessToken::new`]: 1 to `N` bytes of visible
    /// ASCII (`N` the token's capacity).
    fn hold(token: &str) -> Self;

    /// The token `hold` was given.
    fn as_str(&self) -> &str;

    /// Its length in bytes.
    fn len(&self) -> usize {
        self.as_str().len()
    }

    /// Whether it holds nothing (never, once held by an [`AccessToken`]).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A token's bytes inline: `N` bytes whatever the token's length; [`AccessToken`]'s default
/// storage. Wiped on drop, compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineToken<const N: usize>(SecretBuf<N>);

impl<const N: usize> fmt::Debug for InlineToken<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InlineToken(<redacted>)")
    }
}

impl<const N: usize> TokenStorage for InlineToken<N> {
    fn hold(token: &str) -> Self {
        let mut buf = SecretBuf::<N>::EMPTY;
        // `AccessToken::new` checked that it fits; a longer one would be left empty, never cut.
        if let Some(slot) = buf.bytes.get_mut(..token.len()) {
            // Copied in place, not through the credential checks and their `Result` (a second
            // copy of the buffer).
            slot.copy_from_slice(token.as_bytes());
            buf.len = token.len();
        }
        InlineToken(buf)
    }

    fn as_str(&self) -> &str {
        self.0.as_str()
    }

    fn len(&self) -> usize {
        self.0.len
    }
}

/// Why a token string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TokenError {
    /// The server sent an empty `access_token`.
    Empty,
    /// The token does not fit: `needed` bytes, `capacity` available. Raise the session's token
    /// capacity (a const generic) to at least `needed`.
    TooLong {
        /// Bytes the token needs.
        needed: usize,
        /// Bytes available.
        capacity: usize,
    },
    /// The token contains a byte that may not appear in an `Authorization` header value.
    InvalidCharacter {
        /// Byte offset of the first offending byte.
        at: usize,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TokenError::Empty => f.write_str("the server sent an empty access token"),
            TokenError::TooLong { needed, capacity } => write!(
                f,
                "access token needs {needed} bytes but the capacity is {capacity}; raise the token capacity"
            ),
            TokenError::InvalidCharacter { at } => {
                write!(f, "access token has a byte not allowed in an HTTP header at offset {at}")
            }
        }
    }
}

impl core::error::Error for TokenError {}

impl<const N: usize, S: TokenStorage> AccessToken<N, S> {
    /// Validates and stores a token.
    pub fn new(token: &str) -> Result<Self, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if let Some(at) = token.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(TokenError::InvalidCharacter { at });
        }
        if token.len() > N {
            return Err(TokenError::TooLong { needed: token.len(), capacity: N });
        }
        Ok(AccessToken(S::hold(token)))
    }

    /// The token itself, to put in an `Authorization: Bearer` header. Never log it.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: an empty token cannot be constructed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A fingerprint that identifies this token in logs.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_token(self.as_str().as_bytes())
    }
}

impl<const N: usize, S: TokenStorage> fmt::Debug for AccessToken<N, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(<redacted {} bytes, {}>)", self.len(), self.fingerprint())
    }
}

impl<const N: usize, S: TokenStorage> fmt::Display for AccessToken<N, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted token {}>", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    proptest::proptest! {
        /// The byte-wise check refuses exactly the characters `char::is_control` names (what
        /// the texts kept from a server turn into spaces), at the first one's byte offset.
        #[test]
        fn control_characters_as_char_is_control_names_them(value in "\\PC{0,3}[\\x00-\\u{a0}]{0,3}\\PC{0,3}") {
            let expected = value.char_indices().find(|(_, c)| c.is_control()).map(|(at, _)| at);
            let got = match ClientSecret::new(&value) {
                Err(CredentialError::ControlCharacter { at }) => Some(at),
                _ => None,
            };
            proptest::prop_assert_eq!(got, expected, "{:?}", value);
        }
    }

    #[test]
    fn secrets_never_print() {
        let creds = Credentials::from_strs("my-client", "s3cr3t-value").unwrap();
        let dbg = format!("{creds:?} {} {}", creds.secret, creds.secret.clone());
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("my-client"));
        assert!(dbg.contains("fp:"));
        let tok = AccessToken::<64>::new("tok-abcdef123456").unwrap();
        let dbg = format!("{tok:?} {tok}");
        assert!(!dbg.contains("abcdef123456"), "{dbg}");
        assert!(dbg.contains("16 bytes"));
    }

    #[test]
    fn fingerprints_distinguish_and_are_stable() {
        let a = Credentials::from_strs("id", "one").unwrap();
        let b = Credentials::from_strs("id", "two").unwrap();
        let c = Credentials::from_strs("idone", "").map(|_| ());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        // Length-prefixing keeps ("id","one") apart from ("ido","ne").
        let d = Credentials::from_strs("ido", "ne").unwrap();
        assert_ne!(a.fingerprint(), d.fingerprint());
        assert_eq!(c, Err((CredentialPart::ClientSecret, CredentialError::Empty)));
        assert_eq!(format!("{}", a.fingerprint()).len(), 15);
    }

    #[test]
    fn bounds_and_characters() {
        assert_eq!(
            AccessToken::<4>::new("12345"),
            Err(TokenError::TooLong { needed: 5, capacity: 4 })
        );
        assert_eq!(
            AccessToken::<4>::new("1234").map(|t| (t.len(), t.as_str() == "1234")),
            Ok((4, true))
        );
        // A bad character is reported before the length.
        assert_eq!(AccessToken::<4>::new("1234 "), Err(TokenError::InvalidCharacter { at: 4 }));
        assert_eq!(AccessToken::<8>::new("ab cd"), Err(TokenError::InvalidCharacter { at: 2 }));
        assert_eq!(AccessToken::<8>::new("ab\r\n"), Err(TokenError::InvalidCharacter { at: 2 }));
        assert_eq!(AccessToken::<8>::new(""), Err(TokenError::Empty));
        assert_eq!(
            ClientSecret::new("secret\n").map(|_| ()),
            Err(CredentialError::ControlCharacter { at: 6 })
        );
        // Unicode's C1 controls too (U+0085, NEXT LINE, is two bytes in UTF-8): texts kept from
        // a server have them as spaces, where such a secret could not be found to be masked.
        assert_eq!(
            ClientSecret::new("gé\u{85}x").map(|_| ()),
            Err(CredentialError::ControlCharacter { at: 3 })
        );
        assert_eq!(
            ClientId::new("id\u{9f}").map(|_| ()),
            Err(CredentialError::ControlCharacter { at: 2 })
        );
        assert!(ClientSecret::new("gé\u{a0}x").is_ok(), "U+00A0 is not a control character");
        let long = "x".repeat(CLIENT_SECRET_CAPACITY + 1);
        assert!(matches!(ClientSecret::new(&long), Err(CredentialError::TooLong { .. })));
        // A secret may contain spaces and symbols: RFC 6749 allows any VSCHAR for client secrets.
        assert!(ClientSecret::new("a b:c%d+e").is_ok());
    }

    /// `from_strs` fills both parts in place: capacity T fits and T+1 fails, the error names
    /// the part and its capacity, an id error comes before a secret error, and what is stored
    /// reads back exactly.
    #[test]
    fn credentials_from_strs_fill_each_part_to_its_capacity() {
        let id = "i".repeat(CLIENT_ID_CAPACITY);
        let secret = "s".repeat(CLIENT_SECRET_CAPACITY);
        let pair = Credentials::from_strs(&id, &secret).unwrap();
        assert_eq!((pair.id.as_str(), pair.secret.expose_secret()), (&*id, &*secret));
        let pair = Credentials::from_strs("a", "b").unwrap();
        assert_eq!((pair.id.as_str(), pair.secret.expose_secret()), ("a", "b"));
        let long_id = "i".repeat(CLIENT_ID_CAPACITY + 1);
        assert_eq!(
            Credentials::from_strs(&long_id, "").err(),
            Some((
                CredentialPart::ClientId,
                CredentialError::TooLong {
                    len: CLIENT_ID_CAPACITY + 1,
                    capacity: CLIENT_ID_CAPACITY
                }
            ))
        );
        let long_secret = "s".repeat(CLIENT_SECRET_CAPACITY + 1);
        assert_eq!(
            Credentials::from_strs("id", &long_secret).err(),
            Some((
                CredentialPart::ClientSecret,
                CredentialError::TooLong {
                    len: CLIENT_SECRET_CAPACITY + 1,
                    capacity: CLIENT_SECRET_CAPACITY
                }
            ))
        );
        assert_eq!(
            Credentials::from_strs("id", "").err(),
            Some((CredentialPart::ClientSecret, CredentialError::Empty))
        );
        assert_eq!(
            Credentials::from_strs("i\x7fd", "x").err(),
            Some((CredentialPart::ClientId, CredentialError::ControlCharacter { at: 1 }))
        );
    }

    #[test]
    fn wipe_zeroes_every_byte() {
        let mut buf = *b"secret-bytes";
        wipe(&mut buf);
        assert_eq!(buf, [0; 12]);
        wipe(&mut []);
    }
}
