//! One circuit breaker per API host.

use super::Session;
use crate::breaker::{BreakerConfig, CircuitBreaker, ProbeTicket};
use crate::secret::TokenStorage;
use crate::time::Instant;

/// Identifies an API host (or any caller-chosen target) for its own circuit breaker.
///
/// Adapters derive it from the request's authority, e.g. with [`HostKey::from_host`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HostKey(pub u64);

impl HostKey {
    /// A key for hostname `host` (FNV-1a, case-insensitive).
    pub fn from_host(host: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in host.bytes() {
            h ^= u64::from(b.to_ascii_lowercase());
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        HostKey(h)
    }
}

impl<const N: usize, const H: usize, const E: usize, S: TokenStorage> Session<N, H, E, S> {
    pub(super) fn host_breaker(
        &mut self,
        now: Instant,
        host: HostKey,
        config: BreakerConfig,
    ) -> &mut CircuitBreaker {
        let index = match self.hosts.iter().position(|(k, _, _)| *k == host) {
            Some(i) => i,
            None => {
                if self.hosts.is_full() {
                    // Recycle the least recently used breaker.
                    let lru = self
                        .hosts
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, _, used))| *used)
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    let _ = self.hosts.swap_remove(lru);
                }
                let _ = self.hosts.push((host, CircuitBreaker::new(config), now));
                self.hosts.len().saturating_sub(1)
            }
        };
        // `index` is in bounds by construction; a zero-capacity `H` falls back to the token
        // breaker's sibling below.
        match self.hosts.get_mut(index) {
            Some(entry) => {
                entry.2 = now;
                &mut entry.1
            }
            None => &mut self.token_breaker,
        }
    }

    pub(super) fn host_open_until(&self, host: HostKey) -> Option<Instant> {
        self.hosts.iter().find(|(k, _, _)| *k == host).and_then(|(_, b, _)| match b.state() {
            crate::breaker::BreakerState::Open { until } => Some(until),
            _ => None,
        })
    }

    /// Tells `host`'s breaker how a call ended. One function, not generic over a closure, so
    /// that the call sites share one copy.
    #[inline(never)]
    pub(super) fn report_to_host_breaker(&mut self, now: Instant, host: HostKey, outcome: CallEnd) {
        if let Some(entry) = self.hosts.iter_mut().find(|(k, _, _)| *k == host) {
            entry.2 = now;
            let breaker = &mut entry.1;
            match outcome {
                CallEnd::Success => breaker.on_success(now),
                CallEnd::Failure => breaker.on_failure(now, &mut self.rng),
                CallEnd::Abandoned(ticket) => breaker.on_abandoned(now, ticket),
            }
        }
        self.drain_breaker_events();
    }
}

/// How an API call ended, for its host's breaker.
#[derive(Clone, Copy)]
pub(super) enum CallEnd {
    Success,
    Failure,
    /// The host's probe ended without an outcome: its ticket goes back.
    Abandoned(ProbeTicket),
}
