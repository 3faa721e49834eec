//! Sealed token snapshots and records: keep a token across a reboot, or share it with the other
//! processes of a fleet, without trusting the storage.
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
//! ## Records: the same, in an order that cannot be forged
//!
//! A store that several processes write (a fleet's Redis) holds one token at a time, and whoever
//! can write to it can put back an older record, still sealed and unexpired (a replay, or a backup
//! restored). [`seal_record`] adds a [`Stamp`] under the tag: a number that only grows from one
//! record to the next (the writer's wall clock in milliseconds, raised past every stamp it has
//! seen, see [`Stamp::after`]). [`unseal_record`] takes the newest stamp the reader has already
//! accepted and refuses an older one ([`UnsealError::Replayed`]). Whoever writes the store
//! without the key can replay, delete or hold back records, but not forge one, nor make a
//! reader that saw a newer record take an older one; a reader that saw none (a process just
//! started) takes any authentic, unexpired record.
//!
//! ## Format (big-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `CFT1` |
//! | 1 | version: `1` snapshot ([`seal`]), `2` record ([`seal_record`]) |
//! | 1 | reserved, `0` |
//! | 2 | token length `L` |
//! | 8 | expiry, Unix seconds |
//! | 6 | fingerprint of the credential the token was issued to |
//! | 8 | version 2 only: the [`Stamp`] |
//! | L | token |
//! | 32 | HMAC-SHA256 over a domain label (one per version) and all bytes above |
//!
//! Each function reads only its own version: a snapshot is not a record (it has no stamp to
//! order it by), and a record is not a snapshot.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::{AccessToken, Fingerprint, InlineToken, TokenError, TokenStorage};
use crate::time::UnixTime;

const MAGIC: &[u8; 4] = b"CFT1";
const TAG_LEN: usize = 32;
/// Magic, version, reserved, token length, expiry, fingerprint: the fields both versions share.
const COMMON_LEN: usize = 4 + 1 + 1 + 2 + 8 + 6;
const STAMP_LEN: usize = 8;

/// Bytes a snapshot adds around the token.
pub const OVERHEAD: usize = Format::Snapshot.header_len() + TAG_LEN;
/// Bytes a record adds around the token.
pub const RECORD_OVERHEAD: usize = Format::Record.header_len() + TAG_LEN;
/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Bytes needed to seal a token of `token_len` bytes.
pub const fn sealed_len(token_len: usize) -> usize {
    token_len.saturating_add(OVERHEAD)
}

/// Bytes needed to seal a token of `token_len` bytes as a record.
pub const fn record_len(token_len: usize) -> usize {
    token_len.saturating_add(RECORD_OVERHEAD)
}

/// The two layouts: a device's snapshot (version 1) and a shared store's record (version 2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Snapshot,
    Record,
}

impl Format {
    const fn version(self) -> u8 {
        match self {
            Format::Snapshot => 1,
            Format::Record => 2,
        }
    }

    /// The HMAC's domain label: a tag of one version never verifies as the other's.
    const fn label(self) -> &'static [u8] {
        match self {
            Format::Snapshot => b"credflow/sealed-token/v1",
            Format::Record => b"credflow/token-record/v2",
        }
    }

    const fn header_len(self) -> usize {
        match self {
            Format::Snapshot => COMMON_LEN,
            Format::Record => COMMON_LEN + STAMP_LEN,
        }
    }

    const fn sealed_len(self, token_len: usize) -> usize {
        token_len.saturating_add(self.header_len()).saturating_add(TAG_LEN)
    }
}

/// A record's place in the sequence of records of one store: milliseconds on the writer's wall
/// clock when it sealed the token, raised past every stamp the writer has seen, so that it
/// grows from one record to the next even between writers whose clocks disagree (a hybrid
/// logical clock). Authenticated by the record's tag: a reader compares it with the newest it
/// accepted ([`unseal_record`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stamp(u64);

impl Stamp {
    /// Before every record: what a reader that accepted none passes to [`unseal_record`].
    pub const ZERO: Stamp = Stamp(0);

    /// The stamp `ms` (milliseconds since the Unix epoch, by convention).
    pub const fn from_millis(ms: u64) -> Self {
        Stamp(ms)
    }

    /// Its value in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The stamp of a record sealed at wall time `now_ms` (milliseconds since the Unix epoch) by
    /// a writer whose newest stamp seen is `newest`: `now_ms`, or one past `newest` if the clock
    /// is not ahead of it. Saturates at `u64::MAX` (a reader then takes only that stamp again).
    pub const fn after(newest: Stamp, now_ms: u64) -> Stamp {
        let next = newest.0.saturating_add(1);
        if now_ms > next { Stamp(now_ms) } else { Stamp(next) }
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
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
    /// Another format version than the call reads: written by a newer version of credflow, or
    /// a snapshot given to [`unseal_record`] (or a record to [`unseal`]).
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
    /// An authentic record older than one the reader already accepted: written back over a
    /// newer one (replayed by someone who can write the store, or a backup restored).
    Replayed {
        /// The record's stamp.
        stamp: Stamp,
        /// The newest stamp the reader had accepted.
        newest: Stamp,
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
            UnsealError::Replayed { stamp, newest } => write!(
                f,
                "token record stamped {stamp} is older than the {newest} one already taken: \
                 an older record was written back"
            ),
            UnsealError::Token(e) => write!(f, "snapshot token unusable: {e}"),
        }
    }
}

impl core::error::Error for UnsealError {}

/// A token recovered from a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored<const N: usize, S: TokenStorage = InlineToken<N>> {
    /// The token.
    pub token: AccessToken<N, S>,
    /// When it expires, wall-clock.
    pub expires_at: UnixTime,
}

/// A token recovered from a record, with the record's place in the order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<const N: usize> {
    /// The token.
    pub token: AccessToken<N>,
    /// When it expires, wall-clock.
    pub expires_at: UnixTime,
    /// The record's stamp: the newest accepted, for the next [`unseal_record`].
    pub stamp: Stamp,
}

fn mac(key: &[u8], format: Format) -> Option<Hmac<Sha256>> {
    if key.len() < MIN_KEY_LEN {
        return None;
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(format.label());
    Some(mac)
}

/// Seals `token`, expiring at `expires_at` and issued to the credential with fingerprint
/// `credential`, into `out` under `key`. Returns the number of bytes written
/// ([`sealed_len`] of the token's length).
pub fn seal<const N: usize, S: TokenStorage>(
    token: &AccessToken<N, S>,
    expires_at: UnixTime,
    credential: Fingerprint,
    key: &[u8],
    out: &mut [u8],
) -> Result<usize, SealError> {
    seal_as(Format::Snapshot, token, expires_at, credential, Stamp::ZERO, key, out)
}

/// Seals `token` as [`seal`] does, as a record stamped `stamp` (see [`Stamp::after`]). Returns
/// the number of bytes written ([`record_len`] of the token's length).
pub fn seal_record<const N: usize, S: TokenStorage>(
    token: &AccessToken<N, S>,
    expires_at: UnixTime,
    credential: Fingerprint,
    stamp: Stamp,
    key: &[u8],
    out: &mut [u8],
) -> Result<usize, SealError> {
    seal_as(Format::Record, token, expires_at, credential, stamp, key, out)
}

fn seal_as<const N: usize, S: TokenStorage>(
    format: Format,
    token: &AccessToken<N, S>,
    expires_at: UnixTime,
    credential: Fingerprint,
    stamp: Stamp,
    key: &[u8],
    out: &mut [u8],
) -> Result<usize, SealError> {
    let mut mac = mac(key, format).ok_or(SealError::KeyTooShort)?;
    let token = token.as_str().as_bytes();
    let len = u16::try_from(token.len()).map_err(|_| SealError::TokenTooLong)?;
    let needed = format.sealed_len(token.len());
    let Some(out) = out.get_mut(..needed) else {
        return Err(SealError::BufferTooSmall { needed });
    };
    let (body, tag) = out.split_at_mut(needed.saturating_sub(TAG_LEN));
    let (header, token_out) = body.split_at_mut(format.header_len());
    let stamp = stamp.0.to_be_bytes();
    let fields: [&[u8]; 7] = [
        MAGIC,
        &[format.version()],
        &[0],
        &len.to_be_bytes(),
        &expires_at.as_secs().to_be_bytes(),
        &credential.as_bytes(),
        if format == Format::Record { &stamp } else { &[] },
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

/// The authentic fields of a sealed value, before the caller's checks.
struct Opened<'a> {
    expires_at: UnixTime,
    credential: &'a [u8],
    stamp: Stamp,
    token: &'a [u8],
}

/// Checks the framing of `sealed` as `format`, then its tag under `key` (constant time), and
/// only then reads its fields.
fn open<'a>(format: Format, sealed: &'a [u8], key: &[u8]) -> Result<Opened<'a>, UnsealError> {
    let mut mac = mac(key, format).ok_or(UnsealError::KeyTooShort)?;
    let common = sealed.get(..COMMON_LEN).ok_or(UnsealError::Truncated)?;
    if common.get(..4) != Some(MAGIC.as_slice()) {
        return Err(UnsealError::BadMagic);
    }
    match common.get(4) {
        Some(&v) if v == format.version() => {}
        Some(&v) => return Err(UnsealError::UnsupportedVersion(v)),
        None => return Err(UnsealError::Truncated),
    }
    let token_len = usize::from(u16::from_be_bytes([
        common.get(6).copied().unwrap_or(0),
        common.get(7).copied().unwrap_or(0),
    ]));
    if sealed.len() != format.sealed_len(token_len) {
        return Err(UnsealError::Truncated);
    }
    let (body, tag) = sealed.split_at(sealed.len().saturating_sub(TAG_LEN));
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if !bool::from(expected.as_slice().ct_eq(tag)) {
        return Err(UnsealError::TagMismatch);
    }
    // From here on every field is authentic.
    let stamp = match format {
        Format::Snapshot => Stamp::ZERO,
        Format::Record => Stamp(be_u64(body.get(COMMON_LEN..).unwrap_or(&[]))),
    };
    Ok(Opened {
        expires_at: UnixTime::from_secs(be_u64(common.get(8..16).unwrap_or(&[]))),
        credential: common.get(16..22).unwrap_or(&[]),
        stamp,
        token: body.get(format.header_len()..).unwrap_or(&[]),
    })
}

/// The credential and expiry checks both versions make, then the token.
fn check<const N: usize, S: TokenStorage>(
    opened: &Opened<'_>,
    now: UnixTime,
    credential: Fingerprint,
) -> Result<AccessToken<N, S>, UnsealError> {
    if opened.credential != credential.as_bytes().as_slice() {
        return Err(UnsealError::WrongCredential);
    }
    if now >= opened.expires_at {
        return Err(UnsealError::Expired { expired_at: opened.expires_at });
    }
    let token = core::str::from_utf8(opened.token)
        .map_err(|_| UnsealError::Token(TokenError::InvalidCharacter { at: 0 }))?;
    AccessToken::new(token).map_err(UnsealError::Token)
}

/// Restores a token from `sealed`, checking its tag under `key` (constant time, before any field
/// is trusted), the credential fingerprint, and that it is still valid at wall time `now`.
pub fn unseal<const N: usize>(
    sealed: &[u8],
    key: &[u8],
    now: UnixTime,
    credential: Fingerprint,
) -> Result<Restored<N>, UnsealError> {
    unseal_into(sealed, key, now, credential)
}

/// [`unseal`], the token kept in `S`.
pub(crate) fn unseal_into<const N: usize, S: TokenStorage>(
    sealed: &[u8],
    key: &[u8],
    now: UnixTime,
    credential: Fingerprint,
) -> Result<Restored<N, S>, UnsealError> {
    let opened = open(Format::Snapshot, sealed, key)?;
    let token = check(&opened, now, credential)?;
    Ok(Restored { token, expires_at: opened.expires_at })
}

/// Restores a token from a record, as [`unseal`] does, and refuses one stamped before `newest`,
/// the newest stamp this reader has accepted ([`Stamp::ZERO`] if none): an older record written
/// back ([`UnsealError::Replayed`]). A record stamped `newest` itself is taken (the same record,
/// read again). Keep the returned [`Record::stamp`] as the next `newest` when it is higher.
pub fn unseal_record<const N: usize>(
    sealed: &[u8],
    key: &[u8],
    now: UnixTime,
    credential: Fingerprint,
    newest: Stamp,
) -> Result<Record<N>, UnsealError> {
    let opened = open(Format::Record, sealed, key)?;
    let token = check(&opened, now, credential)?;
    if opened.stamp < newest {
        return Err(UnsealError::Replayed { stamp: opened.stamp, newest });
    }
    Ok(Record { token, expires_at: opened.expires_at, stamp: opened.stamp })
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

    /// The version 1 bytes are those of the reference HMAC-SHA256 (the same bytes as
    /// `tests/qemu/src/checks/snapshot.rs`): snapshots already in flash still open.
    #[test]
    fn a_snapshot_keeps_its_version_1_bytes() {
        const SEALED: [u8; 61] = [
            0x43, 0x46, 0x54, 0x31, 0x01, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x07, 0x83, 0xeb, 0x21, 0x41, 0xc6, 0x6a, 0x74, 0x6f, 0x6b, 0x2d, 0x31, 0x32,
            0x33, 0xa4, 0xf9, 0xc6, 0xe0, 0xf2, 0x9e, 0xa5, 0x32, 0xbd, 0xbd, 0x92, 0xde, 0xf2,
            0xb1, 0x79, 0xac, 0x4e, 0xdd, 0x68, 0x2b, 0xe3, 0x08, 0x29, 0x7c, 0xfd, 0x09, 0xed,
            0x45, 0x6c, 0x37, 0xef, 0xf5,
        ];
        let fp = Credentials::from_strs("id", "secret").unwrap().fingerprint();
        let token = AccessToken::<64>::new("tok-123").unwrap();
        let mut out = [0u8; 61];
        let expires = UnixTime::from_secs((1 << 32) + 7);
        assert_eq!(seal(&token, expires, fp, KEY, &mut out), Ok(61));
        assert_eq!(out, SEALED);
        assert_eq!(OVERHEAD, 54);
    }

    fn record(token: &str, expires: u64, stamp: u64) -> std::vec::Vec<u8> {
        let token = AccessToken::<128>::new(token).unwrap();
        let mut out = vec![0u8; record_len(token.len())];
        let n = seal_record(
            &token,
            UnixTime::from_secs(expires),
            fp(),
            Stamp::from_millis(stamp),
            KEY,
            &mut out,
        )
        .unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn a_record_round_trips_with_its_stamp() {
        let bytes = record("tok-123", 1_000, 42);
        assert_eq!(bytes.len(), 7 + RECORD_OVERHEAD);
        let r: Record<128> =
            unseal_record(&bytes, KEY, UnixTime::from_secs(999), fp(), Stamp::ZERO).unwrap();
        assert_eq!(r.token.as_str(), "tok-123");
        assert_eq!(r.expires_at, UnixTime::from_secs(1_000));
        assert_eq!(r.stamp, Stamp::from_millis(42));
        assert_eq!(
            unseal_record::<128>(&bytes, KEY, UnixTime::from_secs(1_000), fp(), Stamp::ZERO),
            Err(UnsealError::Expired { expired_at: UnixTime::from_secs(1_000) }),
        );
    }

    /// A reader that accepted stamp N takes N again (the same record) and anything newer,
    /// never anything older: the boundary at N-1 and N.
    #[test]
    fn a_record_older_than_the_newest_accepted_is_refused() {
        let now = UnixTime::from_secs(1);
        let bytes = record("tok", 5_000, 100);
        for newest in [0, 99, 100] {
            let r = unseal_record::<128>(&bytes, KEY, now, fp(), Stamp::from_millis(newest));
            assert_eq!(r.map(|r| r.stamp), Ok(Stamp::from_millis(100)), "newest {newest}");
        }
        assert_eq!(
            unseal_record::<128>(&bytes, KEY, now, fp(), Stamp::from_millis(101)),
            Err(UnsealError::Replayed {
                stamp: Stamp::from_millis(100),
                newest: Stamp::from_millis(101)
            })
        );
        // The stamp is under the tag: raising it breaks the record.
        let mut raised = bytes.clone();
        raised[COMMON_LEN + STAMP_LEN - 1] ^= 0x80;
        assert_eq!(
            unseal_record::<128>(&raised, KEY, now, fp(), Stamp::ZERO),
            Err(UnsealError::TagMismatch)
        );
    }

    /// Snapshots and records are not interchangeable: a record carries a stamp a snapshot does
    /// not, and each version's tag has its own label.
    #[test]
    fn snapshots_and_records_each_read_only_their_own_version() {
        let now = UnixTime::from_secs(1);
        let snapshot = sealed("tok", 5_000);
        let rec = record("tok", 5_000, 7);
        assert_eq!(
            unseal_record::<128>(&snapshot, KEY, now, fp(), Stamp::ZERO),
            Err(UnsealError::UnsupportedVersion(1))
        );
        assert_eq!(unseal::<128>(&rec, KEY, now, fp()), Err(UnsealError::UnsupportedVersion(2)));
        // A v1 body relabelled as v2 (version byte and 8 stamp bytes added) does not verify.
        let mut forged = snapshot[..COMMON_LEN].to_vec();
        forged[4] = 2;
        forged.extend_from_slice(&[0xFF; STAMP_LEN]);
        forged.extend_from_slice(&snapshot[COMMON_LEN..]);
        assert_eq!(
            unseal_record::<128>(&forged, KEY, now, fp(), Stamp::ZERO),
            Err(UnsealError::TagMismatch)
        );
    }

    #[test]
    fn a_stamp_follows_the_clock_and_never_goes_back() {
        let seen = Stamp::from_millis(1_000);
        assert_eq!(Stamp::after(seen, 5_000), Stamp::from_millis(5_000), "the clock is ahead");
        assert_eq!(Stamp::after(seen, 1_001), Stamp::from_millis(1_001));
        assert_eq!(Stamp::after(seen, 1_000), Stamp::from_millis(1_001), "a clock that lags");
        assert_eq!(Stamp::after(seen, 0), Stamp::from_millis(1_001));
        let last = Stamp::from_millis(u64::MAX);
        assert_eq!(Stamp::after(last, 0), last, "saturates");
    }

    #[test]
    fn every_single_bit_flip_of_a_record_is_detected() {
        let bytes = record("tok-abc", 5_000, 1_700_000_000_000);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut t = bytes.clone();
                t[i] ^= 1 << bit;
                let r = unseal_record::<128>(&t, KEY, UnixTime::from_secs(1), fp(), Stamp::ZERO);
                assert!(r.is_err(), "flip at byte {i} bit {bit} accepted");
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), now: u64) {
            let _ = unseal::<64>(&bytes, KEY, UnixTime::from_secs(now), fp());
        }

        #[test]
        fn arbitrary_bytes_never_open_as_a_record(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            now: u64,
            newest: u64,
        ) {
            let r = unseal_record::<64>(&bytes, KEY, UnixTime::from_secs(now), fp(), Stamp::from_millis(newest));
            prop_assert!(r.is_err());
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
