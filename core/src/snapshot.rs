//! Sealed token snapshots: keep a token across a reboot without trusting the storage.
//!
//! An appliance that reboots would otherwise fetch a new token every boot; a fleet of them
//! rebooting together would hammer the token endpoint. [`seal`] writes the current token with its
//! absolute wall-clock expiry into bytes protected by an HMAC-SHA256 tag under a key the caller
//! owns (a device key, not the client secret). [`unseal`] checks the tag in constant time *before*
//! trusting any field, then checks the credential it belongs to and the expiry.
//!
//! The snapshot is integrity-protected, **not encrypted**: anyone who can read the flash can read
//! the token until it expires. Store it where the client secret is stored, or encrypt it at rest.
//!
//! ## Format (version 1, big-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `CFT1` |
//! | 1 | version `1` |
//! | 1 | reserved, `0` |
//! | 2 | token length `L` |
//! | 8 | expiry, Unix seconds |
//! | 6 | fingerprint of the credential the token was issued to |
//! | L | token |
//! | 32 | HMAC-SHA256 over a domain label and all bytes above |

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::{AccessToken, Fingerprint, TokenError};
use crate::time::UnixTime;

const MAGIC: &[u8; 4] = b"CFT1";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1 + 2 + 8 + 6;
const TAG_LEN: usize = 32;
const LABEL: &[u8] = b"credflow/sealed-token/v1";

/// Bytes a snapshot adds around the token.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Bytes needed to seal a token of `token_len` bytes.
pub const fn sealed_len(token_len: usize) -> usize {
    token_len.saturating_add(OVERHEAD)
}

/// Why a snapshot could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SealError {
    /// The output buffer holds fewer than `needed` bytes.
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// The key is shorter than [`MIN_KEY_LEN`] bytes.
    KeyTooShort,
    /// The token is longer than a snapshot can describe (65 535 bytes).
    TokenTooLong,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::BufferTooSmall { needed } => {
                write!(f, "snapshot buffer too small: {needed} bytes needed")
            }
            SealError::KeyTooShort => {
                write!(f, "snapshot key must be at least {MIN_KEY_LEN} bytes")
            }
            SealError::TokenTooLong => f.write_str("token too long for a snapshot"),
        }
    }
}

impl core::error::Error for SealError {}

/// Why a snapshot was not restored. Every variant means "fetch a new token"; none is fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum UnsealError {
    /// Shorter than its header says, or with bytes after its tag (torn or partial write).
    Truncated,
    /// Not a credflow snapshot (erased flash, another record).
    BadMagic,
    /// Written by a newer format version.
    UnsupportedVersion(u8),
    /// The key is shorter than [`MIN_KEY_LEN`] bytes.
    KeyTooShort,
    /// The tag does not match: tampered, corrupted, or sealed under another key.
    TagMismatch,
    /// Sealed for another credential (the client id or secret changed since).
    WrongCredential,
    /// The token expired at the given time.
    Expired {
        /// When it expired.
        expired_at: UnixTime,
    },
    /// The token does not fit the caller's capacity, or is not a valid token.
    Token(TokenError),
}

impl fmt::Display for UnsealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsealError::Truncated => f.write_str("snapshot is truncated or has trailing bytes"),
            UnsealError::BadMagic => f.write_str("not a credflow token snapshot"),
            UnsealError::UnsupportedVersion(v) => {
                write!(f, "snapshot version {v} is not supported")
            }
            UnsealError::KeyTooShort => {
                write!(f, "snapshot key must be at least {MIN_KEY_LEN} bytes")
            }
            UnsealError::TagMismatch => f.write_str(
                "snapshot tag mismatch: tampered, corrupted or sealed under another key",
            ),
            UnsealError::WrongCredential => f.write_str("snapshot belongs to another credential"),
            UnsealError::Expired { expired_at } => {
                write!(f, "snapshot token expired at unix time {expired_at}")
            }
            UnsealError::Token(e) => write!(f, "snapshot token unusable: {e}"),
        }
    }
}

impl core::error::Error for UnsealError {}

/// A token recovered from a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored<const N: usize> {
    /// The token.
    pub token: AccessToken<N>,
    /// When it expires, wall-clock.
    pub expires_at: UnixTime,
}

fn mac(key: &[u8]) -> Option<Hmac<Sha256>> {
    if key.len() < MIN_KEY_LEN {
        return None;
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(LABEL);
    Some(mac)
}

/// Seals `token`, expiring at `expires_at` and issued to the credential with fingerprint
/// `credential`, into `out` under `key`. Returns the number of bytes written
/// ([`sealed_len`] of the token's length).
pub fn seal<const N: usize>(
    token: &AccessToken<N>,
    expires_at: UnixTime,
    credential: Fingerprint,
    key: &[u8],
    out: &mut [u8],
) -> Result<usize, SealError> {
    let mut mac = mac(key).ok_or(SealError::KeyTooShort)?;
    let token = token.as_str().as_bytes();
    let len = u16::try_from(token.len()).map_err(|_| SealError::TokenTooLong)?;
    let needed = sealed_len(token.len());
    let Some(out) = out.get_mut(..needed) else {
        return Err(SealError::BufferTooSmall { needed });
    };
    let (body, tag) = out.split_at_mut(needed.saturating_sub(TAG_LEN));
    let (header, token_out) = body.split_at_mut(HEADER_LEN);
    let fields: [&[u8]; 6] = [
        MAGIC,
        &[VERSION],
        &[0],
        &len.to_be_bytes(),
        &expires_at.as_secs().to_be_bytes(),
        &credential.as_bytes(),
    ];
    let mut at = header.iter_mut();
    for byte in fields.iter().flat_map(|f| f.iter()) {
        if let Some(slot) = at.next() {
            *slot = *byte;
        }
    }
    token_out.copy_from_slice(token);
    mac.update(body);
    tag.copy_from_slice(&mac.finalize().into_bytes());
    Ok(needed)
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().take(8).fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Restores a token from `sealed`, checking its tag under `key` (constant time, before any field
/// is trusted), the credential fingerprint, and that it is still valid at wall time `now`.
pub fn unseal<const N: usize>(
    sealed: &[u8],
    key: &[u8],
    now: UnixTime,
    credential: Fingerprint,
) -> Result<Restored<N>, UnsealError> {
    let mut mac = mac(key).ok_or(UnsealError::KeyTooShort)?;
    let header = sealed.get(..HEADER_LEN).ok_or(UnsealError::Truncated)?;
    if header.get(..4) != Some(MAGIC.as_slice()) {
        return Err(UnsealError::BadMagic);
    }
    match header.get(4) {
        Some(&VERSION) => {}
        Some(&v) => return Err(UnsealError::UnsupportedVersion(v)),
        None => return Err(UnsealError::Truncated),
    }
    let token_len = usize::from(u16::from_be_bytes([
        header.get(6).copied().unwrap_or(0),
        header.get(7).copied().unwrap_or(0),
    ]));
    if sealed.len() != sealed_len(token_len) {
        return Err(UnsealError::Truncated);
    }
    let (body, tag) = sealed.split_at(sealed.len().saturating_sub(TAG_LEN));
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if !bool::from(expected.as_slice().ct_eq(tag)) {
        return Err(UnsealError::TagMismatch);
    }
    // From here on every field is authentic.
    let expires_at = UnixTime::from_secs(be_u64(header.get(8..16).unwrap_or(&[])));
    if header.get(16..22) != Some(credential.as_bytes().as_slice()) {
        return Err(UnsealError::WrongCredential);
    }
    if now >= expires_at {
        return Err(UnsealError::Expired { expired_at: expires_at });
    }
    let token = body.get(HEADER_LEN..).unwrap_or(&[]);
    let token = core::str::from_utf8(token)
        .map_err(|_| UnsealError::Token(TokenError::InvalidCharacter { at: 0 }))?;
    let token = AccessToken::new(token).map_err(UnsealError::Token)?;
    Ok(Restored { token, expires_at })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::secret::Credentials;
    use proptest::prelude::*;
    use std::vec;

    const KEY: &[u8] = b"device-key-0123456789";

    fn fp() -> Fingerprint {
        Credentials::from_strs("id", "secret").unwrap().fingerprint()
    }

    fn sealed(token: &str, expires: u64) -> std::vec::Vec<u8> {
        let token = AccessToken::<128>::new(token).unwrap();
        let mut out = vec![0u8; sealed_len(token.len())];
        let n = seal(&token, UnixTime::from_secs(expires), fp(), KEY, &mut out).unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn round_trip() {
        let bytes = sealed("tok-123", 1_000);
        let r: Restored<128> = unseal(&bytes, KEY, UnixTime::from_secs(999), fp()).unwrap();
        assert_eq!(r.token.as_str(), "tok-123");
        assert_eq!(r.expires_at, UnixTime::from_secs(1_000));
    }

    #[test]
    fn expiry_boundary() {
        let bytes = sealed("tok", 1_000);
        assert!(unseal::<128>(&bytes, KEY, UnixTime::from_secs(999), fp()).is_ok(), "T-1");
        assert_eq!(
            unseal::<128>(&bytes, KEY, UnixTime::from_secs(1_000), fp()),
            Err(UnsealError::Expired { expired_at: UnixTime::from_secs(1_000) }),
            "T"
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = sealed("tok-abc", 5_000);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut t = bytes.clone();
                t[i] ^= 1 << bit;
                let r = unseal::<128>(&t, KEY, UnixTime::from_secs(1), fp());
                assert!(r.is_err(), "flip at byte {i} bit {bit} accepted");
            }
        }
    }

    #[test]
    fn truncation_key_and_credential() {
        let bytes = sealed("tok", 5_000);
        for cut in 0..bytes.len() {
            assert!(unseal::<128>(&bytes[..cut], KEY, UnixTime::EPOCH, fp()).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(unseal::<128>(&longer, KEY, UnixTime::EPOCH, fp()), Err(UnsealError::Truncated));
        assert_eq!(
            unseal::<128>(&bytes, b"another-key-0123456", UnixTime::EPOCH, fp()),
            Err(UnsealError::TagMismatch)
        );
        assert_eq!(
            unseal::<128>(&bytes, b"short", UnixTime::EPOCH, fp()),
            Err(UnsealError::KeyTooShort)
        );
        let other = Credentials::from_strs("id", "rotated").unwrap().fingerprint();
        assert_eq!(
            unseal::<128>(&bytes, KEY, UnixTime::EPOCH, other),
            Err(UnsealError::WrongCredential)
        );
        assert_eq!(
            unseal::<2>(&bytes, KEY, UnixTime::EPOCH, fp()),
            Err(UnsealError::Token(TokenError::TooLong { needed: 3, capacity: 2 }))
        );
        let erased = vec![0xFFu8; 80];
        assert_eq!(unseal::<128>(&erased, KEY, UnixTime::EPOCH, fp()), Err(UnsealError::BadMagic));
    }

    #[test]
    fn seal_reports_room_needed() {
        let token = AccessToken::<16>::new("abc").unwrap();
        let mut out = [0u8; 10];
        assert_eq!(
            seal(&token, UnixTime::EPOCH, fp(), KEY, &mut out),
            Err(SealError::BufferTooSmall { needed: 3 + OVERHEAD })
        );
        assert_eq!(
            seal(&token, UnixTime::EPOCH, fp(), b"k", &mut out),
            Err(SealError::KeyTooShort)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), now: u64) {
            let _ = unseal::<64>(&bytes, KEY, UnixTime::from_secs(now), fp());
        }

        #[test]
        fn tampering_is_always_detected(pos in 0usize..200, xor in 1u8..=255) {
            let bytes = sealed("token-value", u64::MAX);
            let mut t = bytes.clone();
            let i = pos % t.len();
            t[i] ^= xor;
            prop_assert!(unseal::<64>(&t, KEY, UnixTime::EPOCH, fp()).is_err());
        }
    }
}
