//! Not part of the API (feature `__fuzzing`): the decoding of everything the store reads back
//! from Redis, for the fuzz targets. Each function takes what the production code takes (a
//! reply the `redis` crate parsed from RESP, or a token value's bytes) and decodes it the same
//! way, through the same functions.

use std::time::Duration;

use credflow_core::UnixTime;
use credflow_core::secret::Fingerprint;
use credflow_core::snapshot::{Record, Stamp, UnsealError};
use credflow_reqwest::TOKEN_CAPACITY;
use credflow_reqwest::shared::{Admission, StoreError};
use redis::{FromRedisValue, Value};
use zeroize::Zeroizing;

use crate::at_rest::{self, Keys, OpenError};
pub use crate::replies::Acquired;
use crate::replies::{acquired, admission, hold_left};
use crate::unavailable;

fn keys(fleet: &[u8], encryption: Option<[u8; 32]>) -> Keys {
    Keys { fleet: Zeroizing::new(fleet.to_vec()), encryption: encryption.map(Zeroizing::new) }
}

/// A reply as `invoke_async`/`query_async` convert it.
fn reply<T: FromRedisValue>(value: &Value) -> Result<T, StoreError> {
    redis::from_redis_value(value).map_err(unavailable)
}

/// Seals (and, with an encryption key, encrypts) a token as `publish` stores it, stamped
/// `stamp`; `None` if it cannot be sealed.
pub fn close(
    fleet: &[u8],
    encryption: Option<[u8; 32]>,
    aad: &[u8],
    token: &str,
    expires_at: UnixTime,
    credential: Fingerprint,
    stamp: Stamp,
) -> Option<Vec<u8>> {
    at_rest::close(&keys(fleet, encryption), aad, token, expires_at, credential, stamp)
        .ok()
        .map(|value| value.to_vec())
}

/// Opens a token value as `current` and `refresh` do. The error is `None` when the encryption
/// layer refused the value (no key, a key but plaintext, a failed tag), else the core's reason
/// (an older record than `newest`, the newest stamp taken, among them).
pub fn open(
    fleet: &[u8],
    encryption: Option<[u8; 32]>,
    aad: &[u8],
    value: &[u8],
    now: UnixTime,
    credential: Fingerprint,
    newest: Stamp,
) -> Result<Record<TOKEN_CAPACITY>, Option<UnsealError>> {
    at_rest::open(&keys(fleet, encryption), aad, value, now, credential, newest).map_err(
        |e| match e {
            OpenError::Unseal(e) => Some(e),
            OpenError::Encryption | OpenError::Seal => None,
        },
    )
}

/// The token key's value, as `GETRANGE` answers it (empty: no token).
pub fn token_value_reply(value: &Value) -> Result<Vec<u8>, StoreError> {
    reply(value)
}

/// The longest token value the store reads ([`token_value_reply`] with more bytes than this
/// is judged unusable without being opened).
pub const MAX_VALUE_LEN: usize = at_rest::MAX_VALUE_LEN;

/// The acquire script's answer.
pub fn acquire_reply(value: &Value) -> Result<Acquired, StoreError> {
    let (code, pttl) = reply(value)?;
    Ok(acquired(code, pttl))
}

/// The admission script's answer: `{counted, wait ms, held by the fleet, hold cut}` (the last
/// one only reported in the logs).
pub fn admit_reply(value: &Value) -> Result<Admission, StoreError> {
    let (counted, wait, held, _cut): (i64, i64, i64, i64) = reply(value)?;
    admission(counted, wait, held)
}

/// The hold script's answer: `{hold left ms, hold cut}` (the cut only reported in the logs).
pub fn hold_reply(value: &Value) -> Result<Option<Duration>, StoreError> {
    let (left, _cut): (i64, i64) = reply(value)?;
    Ok(hold_left(left))
}

/// The publish, release, observe and 429 scripts' answer: a count (publish: 1 if published).
pub fn count_reply(value: &Value) -> Result<i64, StoreError> {
    reply(value)
}
