//! The fleet token: read it, refresh it under a fenced lease, publish it, give the lease back.
//! What is read back is opened (`at_rest`) and refused when older than a record this process
//! already took.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use credflow_core::UnixTime;
use credflow_core::secret::Fingerprint;
use credflow_core::snapshot::{Stamp, UnsealError};
use credflow_reqwest::shared::{FleetScope, Lease, Refresh, SharedToken, StoreError};
use tracing::{debug, warn};
use zeroize::Zeroizing;

use crate::at_rest::{self, OpenError};
use crate::connection::Connection;
use crate::errors::unavailable;
use crate::fence::FenceGuard;
use crate::replies::{Acquired, acquired};
use crate::{RedisStore, millis};

/// The token key's value as far as credflow reads it: its first [`at_rest::MAX_VALUE_LEN`] + 1
/// bytes (empty for no token), enough to tell a value credflow could have written from a
/// longer one without reading the rest. Anyone with write access to Redis can leave up to
/// 512 MB there; every process looking for the fleet's token would read it whole.
async fn read_value(
    con: &mut Connection,
    token_key: &str,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let value: Vec<u8> = redis::cmd("GETRANGE")
        .arg(token_key)
        .arg(0)
        .arg(at_rest::MAX_VALUE_LEN)
        .query_async(con)
        .await
        .map_err(unavailable)?;
    Ok(Zeroizing::new(value))
}

fn wall_now() -> UnixTime {
    UnixTime::from_secs(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// The wall clock in milliseconds since the Unix epoch (the stamp of a record sealed now).
fn wall_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// What one process took from one token key.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Newest {
    /// The newest record stamp taken ([`Stamp::ZERO`]: none yet).
    taken: Stamp,
    /// The last older record refused, if any.
    refused: Option<Stamp>,
}

impl RedisStore {
    /// The fleet token if it opens and is not `stale`. A record older than the newest this
    /// process took (written back over it) does not open; one that opens becomes the newest.
    fn usable(
        &self,
        scope: &FleetScope,
        aad: &str,
        value: &[u8],
        stale: Option<Fingerprint>,
    ) -> Option<SharedToken> {
        if value.is_empty() {
            return None;
        }
        if value.len() > at_rest::MAX_VALUE_LEN {
            warn!(
                key = aad,
                "the fleet's token key in Redis holds a value longer than any token credflow \
                 writes (written by something else): not read further, replaced at the next \
                 refresh"
            );
            return None;
        }
        let newest = self.newest(aad).taken;
        match at_rest::open(&self.keys, aad.as_bytes(), value, wall_now(), scope.credential, newest)
        {
            Ok(record) => {
                self.took(aad, record.stamp);
                (Some(record.token.fingerprint()) != stale).then(|| SharedToken {
                    token: Zeroizing::new(record.token.as_str().to_owned()),
                    expires_at: record.expires_at,
                })
            }
            Err(OpenError::Unseal(UnsealError::Replayed { stamp, newest })) => {
                let mut memory = self.lock_newest();
                let entry = memory.entry(aad.to_owned()).or_default();
                if entry.refused != Some(stamp) {
                    entry.refused = Some(stamp);
                    warn!(
                        key = aad,
                        %stamp,
                        %newest,
                        "the fleet's token record in Redis is older than one this process already \
                         took: an older record was written back (replayed by a writer of Redis, or \
                         a backup restored); refused, and a new token is fetched for the fleet"
                    );
                }
                None
            }
            Err(e) => {
                debug!(error = ?e, "fleet token not usable");
                None
            }
        }
    }

    fn lock_newest(&self) -> std::sync::MutexGuard<'_, HashMap<String, Newest>> {
        self.newest.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What this process took under `token_key`.
    fn newest(&self, token_key: &str) -> Newest {
        self.lock_newest().get(token_key).copied().unwrap_or_default()
    }

    /// Remembers `stamp` as taken under `token_key`, if it is the newest.
    fn took(&self, token_key: &str, stamp: Stamp) {
        let mut memory = self.lock_newest();
        let entry = memory.entry(token_key.to_owned()).or_default();
        entry.taken = entry.taken.max(stamp);
    }

    pub(crate) async fn current_inner(
        &self,
        scope: &FleetScope,
        stale: Option<Fingerprint>,
    ) -> Result<Option<SharedToken>, StoreError> {
        let [token_key, ..] = self.key_names(scope);
        let mut con = self.connection().await?;
        let value = read_value(&mut con, &token_key).await?;
        Ok(self.usable(scope, &token_key, &value, stale))
    }

    pub(crate) async fn refresh_inner(
        &self,
        scope: &FleetScope,
        stale: Option<Fingerprint>,
    ) -> Result<Refresh, StoreError> {
        let [token_key, lease_key, ..] = self.key_names(scope);
        let mut con = self.connection().await?;
        // `None`: a `max_wait` past the clock's range, no bound.
        let give_up = tokio::time::Instant::now().checked_add(self.config.max_wait);
        // The token changed between the read and the acquire: another process just published
        // one, to read at once. Again and again (a value rewritten without end), it is waited
        // out as a lease held elsewhere is, within `max_wait`.
        let mut changed_before = false;
        let mut short_before = false;
        loop {
            let value = read_value(&mut con, &token_key).await?;
            if let Some(token) = self.usable(scope, &token_key, &value, stale) {
                return Ok(Refresh::Token(token));
            }
            let mut fence = [0u8; 16];
            getrandom::fill(&mut fence)
                .map_err(|e| StoreError::Refused(format!("no randomness for the fence: {e}")))?;
            // From here until Redis answers, the lease may be ours without our knowing it (a
            // lost reply, or this future dropped by the caller's timeout): unless disarmed,
            // the guard releases the fence, so the fleet does not wait `lease_ttl` for nobody.
            let guard = FenceGuard::arm(self, con.clone(), &lease_key, fence);
            let (code, pttl): (i64, i64) = self
                .acquire
                .key(&token_key)
                .key(&lease_key)
                .arg(&value[..])
                .arg(&fence[..])
                .arg(millis(self.config.lease_ttl))
                .arg(at_rest::MAX_VALUE_LEN)
                .invoke_async(&mut con)
                .await
                .map_err(unavailable)?;
            // An answer says who holds the lease: ours (returned to the caller), or not taken
            // under this fence (nothing to release).
            guard.disarm();
            let lease_left = match acquired(code, pttl) {
                Acquired::Changed if !changed_before => {
                    changed_before = true;
                    continue;
                }
                Acquired::Changed => self.config.poll_interval,
                Acquired::Taken => return Ok(Refresh::Lease(Lease::new(fence))),
                Acquired::Held(left) => left.unwrap_or(self.config.poll_interval),
            };
            let now = tokio::time::Instant::now();
            let left = give_up.map_or(Duration::MAX, |at| at.saturating_duration_since(now));
            if left.is_zero() {
                return Err(StoreError::Busy);
            }
            // A lease about to end is waited out to its end once; one that keeps ending (a
            // store answering so, or a writer of the lease key re-arming it without end) is
            // looked at every `poll_interval`, as a lease held elsewhere: one call a
            // millisecond otherwise, until `max_wait`.
            let mut nap = self.config.poll_interval.min(lease_left);
            if nap < self.config.poll_interval {
                if short_before {
                    nap = self.config.poll_interval;
                }
                short_before = true;
            }
            tokio::time::sleep(nap.min(left)).await;
        }
    }

    pub(crate) async fn publish_inner(
        &self,
        scope: &FleetScope,
        lease: Lease,
        token: &SharedToken,
    ) -> Result<bool, StoreError> {
        let [token_key, lease_key, ..] = self.key_names(scope);
        let now = wall_now();
        let ttl = token.expires_at.saturating_duration_since(now);
        if ttl.is_zero() {
            return Ok(false);
        }
        // After every record this process took, the one it replaces included (read before the
        // lease was taken), and on the wall clock otherwise.
        let stamp = Stamp::after(self.newest(&token_key).taken, wall_now_ms());
        let value = at_rest::close(
            &self.keys,
            token_key.as_bytes(),
            &token.token,
            token.expires_at,
            scope.credential,
            stamp,
        )
        .map_err(|e| StoreError::Refused(format!("cannot seal the token: {e:?}")))?;
        let mut con = self.connection().await?;
        let published: i64 = self
            .publish
            .key(&token_key)
            .key(&lease_key)
            .arg(&lease.fence()[..])
            .arg(&value[..])
            .arg(ttl.as_millis())
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        if published == 1 {
            self.took(&token_key, stamp);
        }
        Ok(published == 1)
    }

    pub(crate) async fn release_inner(
        &self,
        scope: &FleetScope,
        lease: Lease,
    ) -> Result<(), StoreError> {
        let [_, lease_key, ..] = self.key_names(scope);
        let mut con = self.connection().await?;
        let _: i64 = self
            .release
            .key(&lease_key)
            .arg(&lease.fence()[..])
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
