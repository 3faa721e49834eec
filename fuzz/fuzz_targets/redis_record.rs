//! The fleet's token value as read back from Redis (`credflow_redis::fuzzing::open`, the
//! framing of `at_rest.rs` before the core's snapshot check): whoever can write to Redis
//! chooses these bytes.
//!
//! Input: a mode byte, then
//! - even mode: the value, opened by a reader without an encryption key (bit 1 of the mode
//!   clear) or with one (set), under [`FLEET_KEY`], for [`AAD`], at [`NOW`]. Anything accepted
//!   must be what `close` writes for the token and expiry it yields: byte for byte in
//!   plaintext, the exact length and magic when encrypted (its nonce is random);
//! - odd mode: flags (bit 0: encrypted), a token length (`1 + v`) and token bytes (mapped to
//!   visible ASCII), the expiry's distance from [`NOW`] (i16 little-endian seconds), the
//!   record's stamp (u64 little-endian milliseconds), then edits
//!   of 4 bytes each until the end: kind (`% 4`: xor, truncate, insert, remove), position
//!   (u16), value. The token is closed as `publish` writes it, then edited.
//!
//! Checked: no panic; an intact value opens to its token and expiry (or is refused as expired),
//! and not under another key name (encrypted), another fleet key, another credential, or by a
//! reader with the other encryption setting (no downgrade), nor by a reader that took a newer
//! record (no replay; one that took this very stamp still opens it); any edit is refused.
#![no_main]

use arbitrary::Unstructured;
use credflow_core::UnixTime;
use credflow_core::secret::{Credentials, Fingerprint};
use credflow_core::snapshot::{Stamp, UnsealError, record_len};
use credflow_fuzz::{CLIENT, REFERENCE, show};
use credflow_redis::fuzzing::{close, open};
use libfuzzer_sys::fuzz_target;

/// The fleet key (HMAC of the sealed snapshot).
const FLEET_KEY: &[u8] = b"fuzz-fleet-key-0123456789";
/// The encryption key (XChaCha20-Poly1305), when the reader has one.
const ENCRYPTION_KEY: [u8; 32] = [7; 32];
/// The Redis key name: the associated data of the encryption.
const AAD: &[u8] = b"credflow:{client|https://login.example/oauth/token}:token";
/// The wall-clock time values are opened at.
const NOW: UnixTime = REFERENCE;
/// Magic, nonce and Poly1305 tag around an encrypted snapshot.
const ENCRYPTION_OVERHEAD: usize = 4 + 24 + 16;

fuzz_target!(|data: &[u8]| {
    let fp = Credentials::from_strs(CLIENT.0, CLIENT.1).unwrap().fingerprint();
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 0 => raw(rest, mode & 2 != 0, fp),
        Some((_, rest)) => edited(rest, fp),
        None => {}
    }
});

fn key(encrypted: bool) -> Option<[u8; 32]> {
    encrypted.then_some(ENCRYPTION_KEY)
}

fn raw(value: &[u8], encrypted: bool, fp: Fingerprint) {
    match open(FLEET_KEY, key(encrypted), AAD, value, NOW, fp, Stamp::ZERO) {
        Ok(restored) => {
            assert!(restored.expires_at > NOW);
            let token = restored.token.as_str();
            let (expires_at, stamp) = (restored.expires_at, restored.stamp);
            let again = close(FLEET_KEY, key(encrypted), AAD, token, expires_at, fp, stamp)
                .expect("an accepted token closes again");
            if encrypted {
                assert_eq!(value.len(), record_len(token.len()) + ENCRYPTION_OVERHEAD);
                assert!(value.starts_with(b"CFE1"));
            } else {
                assert_eq!(again, value, "accepted bytes close would not have written");
            }
        }
        Err(Some(e)) => {
            let _ = show(&e);
        }
        Err(None) => {}
    }
}

fn edited(data: &[u8], fp: Fingerprint) {
    let mut u = Unstructured::new(data);
    let encrypted = u.arbitrary::<u8>().unwrap_or(0) & 1 != 0;
    let token_len = 1 + usize::from(u.arbitrary::<u8>().unwrap_or(0));
    let mut token = vec![0u8; token_len];
    let _ = u.fill_buffer(&mut token);
    let token: String = token.iter().map(|b| char::from(33 + b % 94)).collect();
    let offset = i64::from(u.arbitrary::<i16>().unwrap_or(0));
    let expires = UnixTime::from_secs(NOW.as_secs().saturating_add_signed(offset));
    let stamp = Stamp::from_millis(u.arbitrary::<u64>().unwrap_or(0));

    let value = close(FLEET_KEY, key(encrypted), AAD, &token, expires, fp, stamp).unwrap();
    let open = |fleet: &[u8], encrypted: bool, aad: &[u8], value: &[u8], fp, newest| {
        open(fleet, key(encrypted), aad, value, NOW, fp, newest)
    };
    let overhead = if encrypted { ENCRYPTION_OVERHEAD } else { 0 };
    assert_eq!(value.len(), record_len(token.len()) + overhead);
    let mut edited = value.clone();
    while u.len() >= 4 {
        let kind: u8 = u.arbitrary().unwrap_or(0);
        let at = usize::from(u.arbitrary::<u16>().unwrap_or(0));
        let byte: u8 = u.arbitrary().unwrap_or(0);
        match kind % 4 {
            0 if !edited.is_empty() => {
                let len = edited.len();
                edited[at % len] ^= byte;
            }
            1 => edited.truncate(at % (edited.len() + 1)),
            2 => edited.insert(at % (edited.len() + 1), byte),
            3 if !edited.is_empty() => {
                let len = edited.len();
                edited.remove(at % len);
            }
            _ => {}
        }
    }

    let result = open(FLEET_KEY, encrypted, AAD, &edited, fp, Stamp::ZERO);
    if let Err(Some(e)) = &result {
        let _ = show(e);
    }
    if edited != value {
        assert!(result.is_err(), "a changed value was accepted");
        return;
    }
    if NOW < expires {
        let restored = result.expect("an intact value was refused");
        assert_eq!(restored.token.as_str(), token);
        assert_eq!((restored.expires_at, restored.stamp), (expires, stamp));
        assert!(open(FLEET_KEY, encrypted, AAD, &value, fp, stamp).is_ok(), "its own stamp");
        if let Some(newer) = stamp.as_millis().checked_add(1) {
            let replayed = open(FLEET_KEY, encrypted, AAD, &value, fp, Stamp::from_millis(newer));
            assert_eq!(
                replayed.unwrap_err(),
                Some(UnsealError::Replayed { stamp, newest: Stamp::from_millis(newer) })
            );
        }
    } else {
        assert_eq!(result.unwrap_err(), Some(UnsealError::Expired { expired_at: expires }));
    }
    // No downgrade, and no upgrade: the other encryption setting refuses it outright.
    assert_eq!(open(FLEET_KEY, !encrypted, AAD, &value, fp, Stamp::ZERO).unwrap_err(), None);
    // Bound to its key name when encrypted (the plaintext form is bound by its HMAC only).
    let other_name = open(FLEET_KEY, encrypted, b"credflow:{other}:token", &value, fp, Stamp::ZERO);
    assert_eq!(other_name.is_err(), encrypted || NOW >= expires);
    let mut other_fleet = FLEET_KEY.to_vec();
    other_fleet[0] ^= 1;
    let refused = open(&other_fleet, encrypted, AAD, &value, fp, Stamp::ZERO).unwrap_err();
    assert_eq!(refused, Some(UnsealError::TagMismatch));
    let rotated = Credentials::from_strs(CLIENT.0, "rotated").unwrap().fingerprint();
    let refused = open(FLEET_KEY, encrypted, AAD, &value, rotated, Stamp::ZERO).unwrap_err();
    assert_eq!(refused, Some(UnsealError::WrongCredential));
}
