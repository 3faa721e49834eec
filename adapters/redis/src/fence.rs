//! The guard that gives back a lease whose acquisition was never answered.

use std::time::Duration;

use redis::Script;
use tracing::debug;

#[cfg(doc)]
use crate::RedisConfig;
use crate::RedisStore;
use crate::connection::Connection;

/// A fence sent in ACQUIRE whose answer has not arrived. Dropped armed (an error, or the
/// refresh future dropped mid-call), it releases the fence on the current tokio runtime, bounded
/// by [`RedisConfig::response_timeout`]: RELEASE is compare-and-delete, so this is harmless when
/// the lease was not taken, and frees it at once when it was.
pub(crate) struct FenceGuard {
    pending: Option<PendingRelease>,
}

/// What [`FenceGuard`] needs to release its fence from a spawned task.
struct PendingRelease {
    con: Connection,
    release: Script,
    lease_key: String,
    fence: [u8; 16],
    timeout: Duration,
}

impl FenceGuard {
    pub(crate) fn arm(
        store: &RedisStore,
        con: Connection,
        lease_key: &str,
        fence: [u8; 16],
    ) -> Self {
        FenceGuard {
            pending: Some(PendingRelease {
                con,
                release: store.release.clone(),
                lease_key: lease_key.to_owned(),
                fence,
                timeout: store.config.response_timeout,
            }),
        }
    }

    /// Redis answered: nothing to release.
    pub(crate) fn disarm(mut self) {
        self.pending = None;
    }
}

impl Drop for FenceGuard {
    fn drop(&mut self) {
        let Some(PendingRelease { mut con, release, lease_key, fence, timeout }) =
            self.pending.take()
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            debug!("no tokio runtime to release an unanswered lease; it expires after lease_ttl");
            return;
        };
        runtime.spawn(async move {
            let mut invocation = release.key(&lease_key);
            let call = invocation.arg(&fence[..]).invoke_async::<i64>(&mut con);
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(released)) => debug!(released, "unanswered lease released"),
                Ok(Err(e)) => debug!(error = %e, "unanswered lease not released"),
                Err(_) => debug!("unanswered lease not released in time"),
            }
        });
    }
}
