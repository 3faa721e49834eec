//! `snapshot::unseal` on arbitrary bytes, and on valid snapshots changed after sealing.
//!
//! Input: a mode byte, then
//! - even mode: the bytes to unseal, under [`KEY`], at [`NOW`], for the credential
//!   [`CLIENT`]. Anything accepted must be exactly what `seal` writes for the token and
//!   expiry it yields (so only a genuine snapshot can be accepted);
//! - odd mode: a key length (`16 + v % 49`) and key, a token length (`1 + v`) and token bytes
//!   (mapped to visible ASCII), the expiry and the time of unsealing (u32 little-endian
//!   seconds each), then edits of 4 bytes each until the end: kind (`% 4`: xor, truncate,
//!   insert, remove), position (u16), value. The token is sealed, then edited.
//!
//! Checked: no panic; an unchanged snapshot is accepted (or refused only as expired, under the
//! wrong key, or for the wrong credential, each with its own error); any change is refused; a
//! token over the caller's capacity is refused as too long; sealing reports exact sizes.
#![no_main]

use arbitrary::Unstructured;
use credflow_core::UnixTime;
use credflow_core::secret::{AccessToken, Credentials, Fingerprint, TokenError};
use credflow_core::snapshot::{MIN_KEY_LEN, SealError, UnsealError, seal, sealed_len, unseal};
use credflow_fuzz::{CLIENT, SNAPSHOT_KEY, SNAPSHOT_NOW, show};
use libfuzzer_sys::fuzz_target;

/// The key raw inputs are unsealed under (even mode).
const KEY: &[u8] = SNAPSHOT_KEY;
/// The time raw inputs are unsealed at (even mode).
const NOW: UnixTime = SNAPSHOT_NOW;
/// Largest token the fuzzer seals.
const CAPACITY: usize = 256;

fuzz_target!(|data: &[u8]| {
    let fp = Credentials::from_strs(CLIENT.0, CLIENT.1).unwrap().fingerprint();
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 0 => raw(rest, fp),
        Some((_, rest)) => edited(rest, fp),
        None => {}
    }
});

fn raw(sealed: &[u8], fp: Fingerprint) {
    match unseal::<CAPACITY>(sealed, KEY, NOW, fp) {
        Ok(restored) => {
            assert!(restored.expires_at > NOW);
            let mut again = vec![0u8; sealed.len()];
            let n = seal(&restored.token, restored.expires_at, fp, KEY, &mut again).unwrap();
            assert_eq!(&again[..n], sealed, "accepted bytes seal would not have written");
        }
        Err(e) => {
            let _ = show(&e);
        }
    }
}

fn edited(data: &[u8], fp: Fingerprint) {
    let mut u = Unstructured::new(data);
    let key_len = MIN_KEY_LEN + usize::from(u.arbitrary::<u8>().unwrap_or(0) % 49);
    let mut key = vec![0u8; key_len];
    let _ = u.fill_buffer(&mut key);
    let token_len = 1 + usize::from(u.arbitrary::<u8>().unwrap_or(0));
    let mut token = vec![0u8; token_len];
    let _ = u.fill_buffer(&mut token);
    let token: String = token.iter().map(|b| char::from(33 + b % 94)).collect();
    let token = AccessToken::<CAPACITY>::new(&token).unwrap();
    let expires = UnixTime::from_secs(u.arbitrary::<u32>().unwrap_or(0).into());
    let now = UnixTime::from_secs(u.arbitrary::<u32>().unwrap_or(0).into());

    // Sealing: exact sizes, short keys refused.
    let needed = sealed_len(token.len());
    let mut short = vec![0u8; needed - 1];
    assert_eq!(
        seal(&token, expires, fp, &key, &mut short),
        Err(SealError::BufferTooSmall { needed })
    );
    assert_eq!(
        seal(&token, expires, fp, &key[..MIN_KEY_LEN - 1], &mut short),
        Err(SealError::KeyTooShort)
    );
    let mut sealed = vec![0u8; needed];
    assert_eq!(seal(&token, expires, fp, &key, &mut sealed), Ok(needed));
    let original = sealed.clone();

    // Edits chosen by the fuzzer.
    while u.len() >= 4 {
        let kind: u8 = u.arbitrary().unwrap_or(0);
        let at = usize::from(u.arbitrary::<u16>().unwrap_or(0));
        let value: u8 = u.arbitrary().unwrap_or(0);
        match kind % 4 {
            0 => {
                if !sealed.is_empty() {
                    let len = sealed.len();
                    sealed[at % len] ^= value;
                }
            }
            1 => sealed.truncate(at % (sealed.len() + 1)),
            2 => sealed.insert(at % (sealed.len() + 1), value),
            _ => {
                if !sealed.is_empty() {
                    let len = sealed.len();
                    sealed.remove(at % len);
                }
            }
        }
    }

    let result = unseal::<CAPACITY>(&sealed, &key, now, fp);
    if let Err(e) = &result {
        let _ = show(e);
    }
    if sealed != original {
        assert!(result.is_err(), "a changed snapshot was accepted");
        return;
    }
    // Unchanged: accepted unless expired, and refused under another key or credential.
    if now < expires {
        let restored = result.expect("an intact snapshot was refused");
        assert_eq!(restored.token, token);
        assert_eq!(restored.expires_at, expires);
    } else {
        assert_eq!(result, Err(UnsealError::Expired { expired_at: expires }));
    }
    let mut other_key = key.clone();
    other_key[0] ^= 1;
    assert_eq!(unseal::<CAPACITY>(&sealed, &other_key, now, fp), Err(UnsealError::TagMismatch));
    let other = Credentials::from_strs("client", "rotated").unwrap().fingerprint();
    assert_eq!(unseal::<CAPACITY>(&sealed, &key, now, other), Err(UnsealError::WrongCredential));
    assert_eq!(
        unseal::<CAPACITY>(&sealed, &key[..MIN_KEY_LEN - 1], now, fp),
        Err(UnsealError::KeyTooShort)
    );
    if now < expires && token.len() > 16 {
        assert_eq!(
            unseal::<16>(&sealed, &key, now, fp),
            Err(UnsealError::Token(TokenError::TooLong { needed: token.len(), capacity: 16 }))
        );
    }
}
