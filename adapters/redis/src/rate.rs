//! The fleet's rate budget: admission, observations, 429s and the hold, each one script run on
//! Redis's clock. Spans sent to the scripts are clamped (see [`MAX_SCRIPT_MS`]).

use std::time::Duration;

use credflow_core::ratelimit::RateLimitSnapshot;
use credflow_reqwest::Priority;
use credflow_reqwest::shared::{Admission, FleetScope, StoreError};
use tracing::warn;

use crate::errors::unavailable;
use crate::replies::{admission, hold_left};
use crate::{RedisStore, millis};

/// Longest span handed to the Lua scripts, in milliseconds (7 days): Lua numbers are doubles,
/// exact only to 2^53, and a server's absurd `Retry-After` must hold the fleet back, not
/// overflow into "send now".
const MAX_SCRIPT_MS: u64 = 7 * 24 * 3600 * 1000;

fn clamp_ms(ms: u64) -> u64 {
    ms.min(MAX_SCRIPT_MS)
}

/// Says so when a script found the fleet's 429 hold beyond `max_hold` and cut it: `reached` ms
/// from now it went (0 when it did not). No process with this configuration writes that.
fn report_cut_hold(rate_key: &str, reached: i64, max_hold: Duration) {
    if reached <= 0 {
        return;
    }
    let reached = Duration::from_millis(u64::try_from(reached).unwrap_or(0));
    warn!(
        key = rate_key,
        ?reached,
        ?max_hold,
        "the fleet's shared rate state held every pod back for longer than a pod honours a \
         server's Retry-After (max_wait): cut to it. Pods with this configuration never write \
         that: look for one with a longer max_wait, or another writer of this key"
    );
}

impl RedisStore {
    pub(crate) async fn admit_inner(
        &self,
        scope: &FleetScope,
        priority: Priority,
        within: Duration,
    ) -> Result<Admission, StoreError> {
        let [_, _, rate_key, slots_key] = self.key_names(scope);
        let class: u8 = match priority {
            Priority::Critical => 0,
            Priority::Normal => 1,
            Priority::Background => 2,
        };
        let p = scope.pacer;
        let mut con = self.connection().await?;
        let (counted, wait, held, reached): (i64, i64, i64, i64) = self
            .admit
            .key(&rate_key)
            .key(&slots_key)
            .arg(class)
            .arg(p.critical_reserve_permille)
            .arg(p.background_floor_permille)
            .arg(p.burst)
            .arg(p.burst_permille)
            .arg(clamp_ms(millis(within)))
            .arg(clamp_ms(millis(scope.max_hold)))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        report_cut_hold(&rate_key, reached, scope.max_hold);
        admission(counted, wait, held)
    }

    pub(crate) async fn observe_inner(
        &self,
        scope: &FleetScope,
        snapshot: RateLimitSnapshot,
    ) -> Result<(), StoreError> {
        // A reset or window further than a day is read as unknown, as the pacer reads it.
        let snapshot = snapshot.believed();
        let Some(remaining) = snapshot.remaining else {
            return Ok(());
        };
        let [_, _, rate_key, slots_key] = self.key_names(scope);
        let known = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let mut con = self.connection().await?;
        let _: i64 = self
            .observe
            .key(&rate_key)
            .key(&slots_key)
            .arg(known(Some(remaining)))
            .arg(known(snapshot.limit))
            .arg(known(snapshot.reset_after.map(|d| clamp_ms(d.as_millis()))))
            .arg(known(snapshot.window.map(|d| clamp_ms(d.as_millis()))))
            .arg(scope.pacer.default_window.as_millis())
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(crate) async fn hold_inner(
        &self,
        scope: &FleetScope,
    ) -> Result<Option<Duration>, StoreError> {
        let [_, _, rate_key, _] = self.key_names(scope);
        let mut con = self.connection().await?;
        let (left, reached): (i64, i64) = self
            .hold
            .key(&rate_key)
            .arg(clamp_ms(millis(scope.max_hold)))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        report_cut_hold(&rate_key, reached, scope.max_hold);
        Ok(hold_left(left))
    }

    pub(crate) async fn rate_limited_inner(
        &self,
        scope: &FleetScope,
        retry_after: Option<Duration>,
    ) -> Result<(), StoreError> {
        let [_, _, rate_key, slots_key] = self.key_names(scope);
        let after = retry_after.map_or(-1, |d| {
            let ms = clamp_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            i64::try_from(ms).unwrap_or(i64::MAX)
        });
        let mut con = self.connection().await?;
        let reached: i64 = self
            .rate_limited
            .key(&rate_key)
            .key(&slots_key)
            .arg(after)
            .arg(clamp_ms(millis(scope.max_hold)))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        report_cut_hold(&rate_key, reached, scope.max_hold);
        Ok(())
    }
}
