//! The token at rest in Redis: sealed by the core as a record (HMAC-SHA256 under the fleet key,
//! bound to the credential's fingerprint, carrying the absolute expiry and a stamp that orders
//! the fleet's records, see [`credflow_core::snapshot`]), then, when an encryption key is given,
//! encrypted with
//! XChaCha20-Poly1305 under a random 192-bit nonce, with the Redis key name as associated data
//! (a blob copied under another client's key does not open).
//!
//! | bytes | field (encrypted form) |
//! |---|---|
//! | 4 | magic `CFE1` |
//! | 24 | nonce |
//! | n + 16 | the sealed record, encrypted, with its Poly1305 tag |
//!
//! Without an encryption key the value is the sealed record as is (magic `CFT1`, version 2):
//! readable by anyone who can read Redis until it expires, but not forgeable. A reader
//! configured with an encryption key refuses plaintext values (no downgrade), and one without
//! refuses encrypted ones. Whether a record is acceptable (its tag, credential, expiry, and
//! that it is not older than the newest this process took) is the core's decision
//! ([`snapshot::unseal_record`]); this module only moves the bytes.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use credflow_core::UnixTime;
use credflow_core::secret::{AccessToken, Fingerprint};
use credflow_core::snapshot::{self, Record, Stamp};
use zeroize::Zeroizing;

use credflow_reqwest::TOKEN_CAPACITY;

const MAGIC: &[u8; 4] = b"CFE1";
const NONCE_LEN: usize = 24;
/// Poly1305's tag, after the ciphertext.
const TAG_LEN: usize = 16;

/// The longest value [`close`] writes: the encrypted form of a record of the longest token
/// credflow keeps ([`TOKEN_CAPACITY`]); the plaintext form is shorter. A longer value in the
/// token key was not written by credflow, and is not read beyond this length.
pub(crate) const MAX_VALUE_LEN: usize =
    MAGIC.len() + NONCE_LEN + snapshot::record_len(TOKEN_CAPACITY) + TAG_LEN;

/// The keys that protect the token at rest.
pub(crate) struct Keys {
    /// HMAC key of the core's sealed snapshot (at least 16 bytes).
    pub(crate) fleet: Zeroizing<Vec<u8>>,
    /// XChaCha20-Poly1305 key, if the token is encrypted.
    pub(crate) encryption: Option<Box<Zeroizing<[u8; 32]>>>,
}

/// Why a value read from Redis was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Encrypted but no key, plaintext but a key, or the AEAD tag failed.
    Encryption,
    /// The core refused the record (tag, credential, expiry, format, older than one taken).
    Unseal(snapshot::UnsealError),
    /// No randomness for the nonce, or the token does not fit.
    Seal,
}

/// Seals (and encrypts) `token` for `credential`, expiring at `expires_at`, as the record
/// stamped `stamp`. Wiped on drop: without an encryption key the record holds the token in
/// clear.
pub(crate) fn close(
    keys: &Keys,
    aad: &[u8],
    token: &str,
    expires_at: UnixTime,
    credential: Fingerprint,
    stamp: Stamp,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let token = AccessToken::<TOKEN_CAPACITY>::new(token).map_err(|_| OpenError::Seal)?;
    let mut sealed = Zeroizing::new(vec![0u8; snapshot::record_len(token.len())]);
    let n = snapshot::seal_record(&token, expires_at, credential, stamp, &keys.fleet, &mut sealed)
        .map_err(|_| OpenError::Seal)?;
    sealed.truncate(n);
    let Some(key) = &keys.encryption else {
        return Ok(sealed);
    };
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| OpenError::Seal)?;
    let cipher = XChaCha20Poly1305::new_from_slice(&key[..]).map_err(|_| OpenError::Seal)?;
    let ciphertext = cipher
        .encrypt(&nonce.into(), Payload { msg: &sealed, aad })
        .map_err(|_| OpenError::Seal)?;
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(Zeroizing::new(out))
}

/// Opens a value written by [`close`]: decrypts it (if encrypted); the core checks the HMAC
/// before trusting any field, then the credential, the expiry at wall time `now`, and that the
/// record is not older than `newest` (the newest stamp this process took).
pub(crate) fn open(
    keys: &Keys,
    aad: &[u8],
    value: &[u8],
    now: UnixTime,
    credential: Fingerprint,
    newest: Stamp,
) -> Result<Record<TOKEN_CAPACITY>, OpenError> {
    let sealed: Zeroizing<Vec<u8>> = match (&keys.encryption, value.strip_prefix(MAGIC)) {
        (Some(key), Some(rest)) => {
            let (nonce, ciphertext) =
                rest.split_at_checked(NONCE_LEN).ok_or(OpenError::Encryption)?;
            let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError::Encryption)?;
            let cipher =
                XChaCha20Poly1305::new_from_slice(&key[..]).map_err(|_| OpenError::Encryption)?;
            Zeroizing::new(
                cipher
                    .decrypt(&nonce.into(), Payload { msg: ciphertext, aad })
                    .map_err(|_| OpenError::Encryption)?,
            )
        }
        (None, None) => Zeroizing::new(value.to_vec()),
        _ => return Err(OpenError::Encryption),
    };
    snapshot::unseal_record::<TOKEN_CAPACITY>(&sealed, &keys.fleet, now, credential, newest)
        .map_err(OpenError::Unseal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use credflow_core::secret::Credentials;
    use credflow_core::snapshot::UnsealError;

    fn keys(encrypted: bool) -> Keys {
        Keys {
            fleet: Zeroizing::new(b"fleet-key-0123456789".to_vec()),
            encryption: encrypted.then(|| Box::new(Zeroizing::new([7u8; 32]))),
        }
    }

    fn credential(secret: &str) -> Fingerprint {
        Credentials::from_strs("client", secret).unwrap().fingerprint()
    }

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);
    const S1: Stamp = Stamp::from_millis(1_800_000_000_000);

    #[test]
    fn round_trips_plain_and_encrypted_and_hides_the_token_when_encrypted() {
        for encrypted in [false, true] {
            let k = keys(encrypted);
            let exp = UnixTime::from_secs(1_800_000_060);
            // Wiped on drop (its type says so): without encryption it is the token in clear.
            let value: Zeroizing<Vec<u8>> =
                close(&k, b"key", "TOKEN-VALUE", exp, credential("s"), S1).unwrap();
            let found = value.windows(11).any(|w| w == b"TOKEN-VALUE");
            assert_eq!(found, !encrypted, "the token is visible at rest only without encryption");
            let restored = open(&k, b"key", &value, NOW, credential("s"), Stamp::ZERO).unwrap();
            assert_eq!(restored.token.as_str(), "TOKEN-VALUE");
            assert_eq!(restored.expires_at, exp);
        }
    }

    /// The longest token credflow keeps, sealed and encrypted, is exactly as long as the bound
    /// the store reads up to; sealed without encryption it is shorter; one byte more does not
    /// seal.
    #[test]
    fn the_longest_token_fits_the_read_bound_exactly() {
        let exp = UnixTime::from_secs(1_800_000_060);
        let longest = "t".repeat(TOKEN_CAPACITY);
        let encrypted = close(&keys(true), b"key", &longest, exp, credential("s"), S1).unwrap();
        assert_eq!(encrypted.len(), MAX_VALUE_LEN);
        let plain = close(&keys(false), b"key", &longest, exp, credential("s"), S1).unwrap();
        assert!(plain.len() < MAX_VALUE_LEN);
        let longer = "t".repeat(TOKEN_CAPACITY + 1);
        assert_eq!(
            close(&keys(true), b"key", &longer, exp, credential("s"), S1),
            Err(OpenError::Seal)
        );
    }

    #[test]
    fn refuses_tampering_other_keys_other_credentials_downgrades_and_expiry() {
        let exp = UnixTime::from_secs(1_800_000_060);
        let enc = keys(true);
        let plain = keys(false);
        let value = close(&enc, b"key", "T", exp, credential("s"), S1).unwrap();
        for i in 0..value.len() {
            let mut bad = value.clone();
            bad[i] ^= 1;
            assert!(
                open(&enc, b"key", &bad, NOW, credential("s"), Stamp::ZERO).is_err(),
                "byte {i}"
            );
        }
        assert_eq!(
            open(&enc, b"other", &value, NOW, credential("s"), Stamp::ZERO),
            Err(OpenError::Encryption)
        );
        assert_eq!(
            open(&plain, b"key", &value, NOW, credential("s"), Stamp::ZERO),
            Err(OpenError::Encryption)
        );
        let clear = close(&plain, b"key", "T", exp, credential("s"), S1).unwrap();
        assert_eq!(
            open(&enc, b"key", &clear, NOW, credential("s"), Stamp::ZERO),
            Err(OpenError::Encryption)
        );
        assert_eq!(
            open(&plain, b"key", &clear, NOW, credential("rotated"), Stamp::ZERO),
            Err(OpenError::Unseal(UnsealError::WrongCredential))
        );
        let other_fleet =
            Keys { fleet: Zeroizing::new(b"another-fleet-key!!".to_vec()), encryption: None };
        assert_eq!(
            open(&other_fleet, b"key", &clear, NOW, credential("s"), Stamp::ZERO),
            Err(OpenError::Unseal(UnsealError::TagMismatch))
        );
        assert!(matches!(
            open(&plain, b"key", &clear, exp, credential("s"), Stamp::ZERO),
            Err(OpenError::Unseal(UnsealError::Expired { .. }))
        ));
        assert!(open(&enc, b"key", b"CFE1short", NOW, credential("s"), Stamp::ZERO).is_err());
        assert!(open(&plain, b"key", b"", NOW, credential("s"), Stamp::ZERO).is_err());
    }

    /// An older record copied back over a newer one opens for a process that took neither, and
    /// is refused, as the core decides, by one that took the newer: encrypted or not.
    #[test]
    fn an_older_record_is_refused_after_a_newer_one() {
        let exp = UnixTime::from_secs(1_800_000_060);
        for encrypted in [false, true] {
            let k = keys(encrypted);
            let old = close(&k, b"key", "OLD", exp, credential("s"), S1).unwrap();
            let new = Stamp::after(S1, 0);
            let newer = close(&k, b"key", "NEW", exp, credential("s"), new).unwrap();
            let taken = open(&k, b"key", &newer, NOW, credential("s"), Stamp::ZERO).unwrap();
            assert_eq!((taken.token.as_str(), taken.stamp), ("NEW", new));
            assert_eq!(
                open(&k, b"key", &old, NOW, credential("s"), Stamp::ZERO).unwrap().stamp,
                S1
            );
            assert_eq!(
                open(&k, b"key", &old, NOW, credential("s"), taken.stamp),
                Err(OpenError::Unseal(UnsealError::Replayed { stamp: S1, newest: new }))
            );
        }
    }
}
