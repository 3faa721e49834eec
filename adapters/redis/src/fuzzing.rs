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
use crate::bounded::{Refused, ReplyBound};
pub use crate::replies::Acquired;
use crate::replies::{acquired, admission, hold_left};
use crate::unavailable;

fn keys(fleet: &[u8], encryption: Option<[u8; 32]>) -> Keys {
    Keys {
        fleet: Zeroizing::new(fleet.to_vec()),
        encryption: encryption.map(|key| Box::new(Zeroizing::new(key))),
    }
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

pub use crate::MAX_REPLY_LEN;
/// The most elements one aggregate may announce.
pub const MAX_ELEMENTS: i64 = crate::bounded::MAX_ELEMENTS;
/// The deepest nesting of aggregates.
pub const MAX_DEPTH: usize = crate::bounded::MAX_DEPTH;

/// The framing every byte read from Redis passes before the `redis` crate's parser
/// (`bounded.rs`): fed the bytes as they arrive, it says where each reply ends and refuses one
/// past the bounds.
#[derive(Debug, Default)]
pub struct Framing(ReplyBound);

/// Why [`Framing`] refused a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Longer than [`MAX_REPLY_LEN`], announced or sent.
    TooLong,
    /// An aggregate of more than [`MAX_ELEMENTS`].
    TooManyElements,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A length line longer than any Redis sends (the parser would read it, trimmed).
    LongLengthLine,
    /// Not RESP as the `redis` crate reads it.
    Malformed,
}

impl Framing {
    /// Takes the next bytes read; the text is the error the connection's read fails with.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), (Refusal, String)> {
        self.0.feed(bytes).map_err(|refused| {
            let refusal = match refused {
                Refused::TooLong => Refusal::TooLong,
                Refused::TooManyElements => Refusal::TooManyElements,
                Refused::TooDeep => Refusal::TooDeep,
                Refused::LongLengthLine => Refusal::LongLengthLine,
                Refused::Malformed => Refusal::Malformed,
            };
            (refusal, refused.to_string())
        })
    }

    /// Whether the bytes so far end where a reply ends.
    pub fn between_replies(&self) -> bool {
        self.0.between_replies()
    }
}
