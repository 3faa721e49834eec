//! Sealed token snapshots (`core/src/snapshot.rs`): the bytes a device writes to flash must be
//! the same whatever machine sealed them, read back from any alignment, and refused if touched.

use credflow_core::UnixTime;
use credflow_core::secret::{AccessToken, Credentials, Fingerprint};
use credflow_core::snapshot::{SealError, UnsealError, seal, sealed_len, unseal};

use super::text::head;
use crate::CheckResult;

const KEY: &[u8] = b"device-key-0123456789";
/// Expiry past 2^32 seconds: the 8-byte big-endian field must carry its high word.
const EXPIRES: u64 = (1 << 32) + 7;
/// `seal("tok-123", EXPIRES, fingerprint("id", "secret"), KEY)` per the documented format,
/// computed by a reference HMAC-SHA256.
const SEALED: [u8; 61] = [
    0x43, 0x46, 0x54, 0x31, 0x01, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07,
    0x83, 0xeb, 0x21, 0x41, 0xc6, 0x6a, 0x74, 0x6f, 0x6b, 0x2d, 0x31, 0x32, 0x33, 0xa4, 0xf9, 0xc6,
    0xe0, 0xf2, 0x9e, 0xa5, 0x32, 0xbd, 0xbd, 0x92, 0xde, 0xf2, 0xb1, 0x79, 0xac, 0x4e, 0xdd, 0x68,
    0x2b, 0xe3, 0x08, 0x29, 0x7c, 0xfd, 0x09, 0xed, 0x45, 0x6c, 0x37, 0xef, 0xf5,
];

fn fingerprint() -> Option<Fingerprint> {
    Credentials::from_strs("id", "secret").ok().map(|c| c.fingerprint())
}

/// Sealing gives the reference bytes; unsealing works from every alignment, up to T-1 of the
/// expiry and not at T.
pub(crate) fn sealed_bytes_and_alignment() -> CheckResult {
    let fp = some!(fingerprint());
    ensure_eq!(fp.as_bytes(), [0x83, 0xeb, 0x21, 0x41, 0xc6, 0x6a]);
    let token = ok!(AccessToken::<64>::new("tok-123"));
    let mut out = [0u8; 64];
    ensure_eq!(
        seal(&token, UnixTime::from_secs(EXPIRES), fp, KEY, head(&mut out, 60)),
        Err(SealError::BufferTooSmall { needed: 61 })
    );
    ensure_eq!(
        seal(&token, UnixTime::from_secs(EXPIRES), fp, KEY.get(..15).unwrap_or_default(), &mut out),
        Err(SealError::KeyTooShort)
    );
    let n = ok!(seal(&token, UnixTime::from_secs(EXPIRES), fp, KEY, &mut out));
    ensure_eq!(n, sealed_len(token.len()));
    ensure_eq!(out.get(..n), Some(SEALED.as_slice()));
    let mut shifted = [0u8; 80];
    for offset in 0..8 {
        let dst = some!(shifted.get_mut(offset..offset + SEALED.len()));
        dst.copy_from_slice(&SEALED);
        let r = ok!(unseal::<64>(dst, KEY, UnixTime::from_secs(EXPIRES - 1), fp));
        ensure!(
            r.token.as_str() == "tok-123" && r.expires_at == UnixTime::from_secs(EXPIRES),
            "offset {offset}"
        );
    }
    ensure_eq!(
        unseal::<64>(&SEALED, KEY, UnixTime::from_secs(EXPIRES), fp).err(),
        Some(UnsealError::Expired { expired_at: UnixTime::from_secs(EXPIRES) })
    );
    Ok(())
}

/// Every single-bit change is refused, each with the error its field calls for; so are another
/// key, another credential, and truncated or extended snapshots.
pub(crate) fn tampering_is_refused() -> CheckResult {
    let fp = some!(fingerprint());
    let now = UnixTime::from_secs(1_800_000_000);
    let mut copy = SEALED;
    for index in 0..SEALED.len() {
        for bit in 0..8 {
            let byte = some!(copy.get_mut(index));
            *byte ^= 1 << bit;
            let result = unseal::<64>(&copy, KEY, now, fp).err();
            let expected = match index {
                0..=3 => result == Some(UnsealError::BadMagic),
                4 => matches!(result, Some(UnsealError::UnsupportedVersion(_))),
                6 | 7 => result == Some(UnsealError::Truncated),
                _ => result == Some(UnsealError::TagMismatch),
            };
            ensure!(expected, "byte {index} bit {bit}: {result:?}");
            let byte = some!(copy.get_mut(index));
            *byte ^= 1 << bit;
        }
    }
    ensure_eq!(
        unseal::<64>(&copy, KEY, now, fp).map(|r| r.expires_at),
        Ok(UnixTime::from_secs(EXPIRES))
    );
    ensure_eq!(
        unseal::<64>(&SEALED, b"another-device-key!!", now, fp).err(),
        Some(UnsealError::TagMismatch)
    );
    let other = some!(Credentials::from_strs("id", "rotated").ok()).fingerprint();
    ensure_eq!(unseal::<64>(&SEALED, KEY, now, other).err(), Some(UnsealError::WrongCredential));
    ensure_eq!(
        unseal::<64>(SEALED.get(..60).unwrap_or_default(), KEY, now, fp).err(),
        Some(UnsealError::Truncated)
    );
    let mut longer = [0u8; 62];
    some!(longer.get_mut(..61)).copy_from_slice(&SEALED);
    ensure_eq!(unseal::<64>(&longer, KEY, now, fp).err(), Some(UnsealError::Truncated));
    ensure_eq!(
        unseal::<4>(&SEALED, KEY, now, fp).err(),
        Some(UnsealError::Token(credflow_core::secret::TokenError::TooLong {
            needed: 7,
            capacity: 4
        }))
    );
    Ok(())
}
