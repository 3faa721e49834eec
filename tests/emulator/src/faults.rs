//! Faults switched at run time: from Rust with [`FaultControl`], over HTTP with
//! `POST /__emulator/faults` and a [`FaultsUpdate`] JSON body.
//!
//! | fault | effect |
//! |---|---|
//! | maintenance | 503 on the token endpoint and/or the API, optional `Retry-After` |
//! | latency | a sleep before the token endpoint / the API answers |
//! | dropped connections | the TCP connection closes after the request is read, no answer |
//! | forced 429 | every API request answers 429 `too.many.requests.retry.after` |
//! | forced token rate limit | the token endpoint answers 400 `rate limit exceeded; ...` |
//! | expire / revoke all tokens | every issued token answers 401 from now on |
//!
//! Control routes are never subject to faults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ClientState, DropFault, FaultConfig, FaultTarget, Maintenance};
use crate::counters::lock;
use crate::state::AppState;
use crate::util::SplitMix64;

/// Which kind of route a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `POST /oauth/token`.
    Token,
    /// `/api/...`.
    Api,
    /// Anything else (control routes, unknown paths): never faulted.
    Other,
}

impl Route {
    pub(crate) fn of(path: &str) -> Self {
        if path == "/oauth/token" {
            Self::Token
        } else if path.starts_with("/api/") {
            Self::Api
        } else {
            Self::Other
        }
    }

    fn targeted_by(self, target: FaultTarget) -> bool {
        match self {
            Self::Token => target.token(),
            Self::Api => target.api(),
            Self::Other => false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct ActiveMaintenance {
    until: Option<Instant>,
    target: FaultTarget,
    retry_after: Option<Duration>,
}

/// Faults in force (inside the shared state, behind a mutex).
#[derive(Debug)]
pub(crate) struct FaultState {
    maintenance: Option<ActiveMaintenance>,
    pub(crate) token_latency: Duration,
    pub(crate) api_latency: Duration,
    drop: DropFault,
    force_429_until: Option<Instant>,
    force_token_rate_limit_until: Option<Instant>,
    rng: SplitMix64,
}

fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 100))
}

fn remaining(until: Option<Instant>, now: Instant) -> Option<Duration> {
    until.filter(|&u| u > now).map(|u| u - now)
}

impl FaultState {
    pub(crate) fn new(config: &FaultConfig, now: Instant) -> Self {
        let mut state = Self {
            maintenance: None,
            token_latency: config.token_latency,
            api_latency: config.api_latency,
            drop: config.drop,
            force_429_until: config.force_429.map(|d| deadline(now, d)),
            force_token_rate_limit_until: config.force_token_rate_limit.map(|d| deadline(now, d)),
            rng: SplitMix64::new(config.seed),
        };
        if let Some(m) = config.maintenance {
            state.set_maintenance(m, now);
        }
        state
    }

    fn set_maintenance(&mut self, m: Maintenance, now: Instant) {
        self.maintenance = Some(ActiveMaintenance {
            until: m.duration.map(|d| deadline(now, d)),
            target: m.target,
            retry_after: m.retry_after,
        });
    }

    /// `Some(retry_after)` while `route` is under maintenance.
    pub(crate) fn maintenance(&self, route: Route, now: Instant) -> Option<Option<Duration>> {
        let m = self.maintenance?;
        let active = m.until.is_none_or(|u| now < u);
        (active && route.targeted_by(m.target)).then_some(m.retry_after)
    }

    /// Decides whether to drop this request's connection (consumes `next` and randomness).
    pub(crate) fn should_drop(&mut self, route: Route) -> bool {
        if !route.targeted_by(self.drop.target) {
            return false;
        }
        if self.drop.next > 0 {
            self.drop.next -= 1;
            return true;
        }
        self.drop.probability > 0.0 && self.rng.next_f64() < self.drop.probability
    }

    /// Time left of a forced-429 period.
    pub(crate) fn forced_429(&self, now: Instant) -> Option<Duration> {
        remaining(self.force_429_until, now)
    }

    /// Whether the token endpoint is forced to answer its rate-limit error.
    pub(crate) fn forced_token_rate_limit(&self, now: Instant) -> bool {
        remaining(self.force_token_rate_limit_until, now).is_some()
    }

    fn view(&self, now: Instant) -> FaultsView {
        let maintenance = self.maintenance.and_then(|m| {
            let left = m.until.map(|u| u.saturating_duration_since(now));
            if left.is_some_and(|l| l.is_zero()) {
                return None;
            }
            Some(MaintenanceView {
                remaining_ms: left.map(millis),
                target: m.target,
                retry_after_secs: m.retry_after.map(crate::util::retry_after_secs),
            })
        });
        FaultsView {
            maintenance,
            token_latency_ms: millis(self.token_latency),
            api_latency_ms: millis(self.api_latency),
            drop_next: self.drop.next,
            drop_probability: self.drop.probability,
            drop_target: self.drop.target,
            force_429_remaining_ms: self.forced_429(now).map(millis),
            force_token_rate_limit_remaining_ms: remaining(self.force_token_rate_limit_until, now)
                .map(millis),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A change of faults, as sent to `POST /__emulator/faults`. Every field is optional; absent
/// fields leave their fault as it is. `clear` is applied first, then the rest.
///
/// ```json
/// {"maintenance": {"duration_ms": 2000, "target": "api", "retry_after_secs": 5},
///  "token_latency_ms": 200, "drop_next": 1, "drop_target": "token",
///  "force_429_ms": 1500, "expire_all_tokens": true}
/// ```
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsUpdate {
    /// Switch every fault off (and restore no token).
    #[serde(default)]
    pub clear: bool,
    /// Start a maintenance window.
    pub maintenance: Option<MaintenanceUpdate>,
    /// End the maintenance window.
    #[serde(default)]
    pub end_maintenance: bool,
    /// Token endpoint latency in milliseconds.
    pub token_latency_ms: Option<u64>,
    /// API latency in milliseconds.
    pub api_latency_ms: Option<u64>,
    /// Drop the next N targeted requests.
    pub drop_next: Option<u32>,
    /// Drop targeted requests with this probability (0.0 to 1.0) after `drop_next` ran out.
    pub drop_probability: Option<f64>,
    /// Which routes drops apply to (default `both`).
    pub drop_target: Option<FaultTarget>,
    /// Answer 429 to every API request for this many milliseconds.
    pub force_429_ms: Option<u64>,
    /// Answer the token endpoint's rate-limit error for this many milliseconds.
    pub force_token_rate_limit_ms: Option<u64>,
    /// Make every issued token expired now.
    #[serde(default)]
    pub expire_all_tokens: bool,
    /// Revoke every issued token now.
    #[serde(default)]
    pub revoke_all_tokens: bool,
}

/// A maintenance window in a [`FaultsUpdate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceUpdate {
    /// Length in milliseconds; absent: until ended.
    pub duration_ms: Option<u64>,
    /// Routes that answer 503 (default `both`).
    #[serde(default)]
    pub target: FaultTarget,
    /// `Retry-After` seconds on the 503s; absent: no header.
    pub retry_after_secs: Option<u64>,
}

/// Faults in force, as `GET /__emulator/faults` shows them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub(crate) struct FaultsView {
    maintenance: Option<MaintenanceView>,
    token_latency_ms: u64,
    api_latency_ms: u64,
    drop_next: u32,
    drop_probability: f64,
    drop_target: FaultTarget,
    force_429_remaining_ms: Option<u64>,
    force_token_rate_limit_remaining_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
struct MaintenanceView {
    remaining_ms: Option<u64>,
    target: FaultTarget,
    retry_after_secs: Option<u64>,
}

/// Switches faults of a running emulator. Cheap to clone; every clone controls the same server.
///
/// ```no_run
/// # async fn demo() -> Result<(), credflow_emulator::EmulatorError> {
/// use std::time::Duration;
/// use credflow_emulator::{Emulator, EmulatorConfig, FaultTarget};
///
/// let emulator = Emulator::start(EmulatorConfig::default()).await?;
/// let faults = emulator.faults();
/// faults.maintenance_for(Duration::from_secs(2), FaultTarget::Token, Some(Duration::from_secs(1)));
/// faults.drop_next(1, FaultTarget::Api);
/// faults.clear();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FaultControl {
    pub(crate) state: Arc<AppState>,
}

impl std::fmt::Debug for FaultControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultControl").finish_non_exhaustive()
    }
}

impl FaultControl {
    fn with<R>(&self, f: impl FnOnce(&mut FaultState, Instant) -> R) -> R {
        let now = Instant::now();
        f(&mut lock(&self.state.faults), now)
    }

    /// Starts a maintenance window (see [`Maintenance`]); replaces any current one.
    pub fn maintenance(&self, maintenance: Maintenance) {
        self.with(|s, now| s.set_maintenance(maintenance, now));
    }

    /// Starts a maintenance window of `duration` on `target`, with an optional `Retry-After`.
    pub fn maintenance_for(
        &self,
        duration: Duration,
        target: FaultTarget,
        retry_after: Option<Duration>,
    ) {
        self.maintenance(Maintenance { duration: Some(duration), target, retry_after });
    }

    /// Ends the maintenance window now.
    pub fn end_maintenance(&self) {
        self.with(|s, _| s.maintenance = None);
    }

    /// Sets the latency added before the token endpoint answers.
    pub fn token_latency(&self, latency: Duration) {
        self.with(|s, _| s.token_latency = latency);
    }

    /// Sets the latency added before API routes answer.
    pub fn api_latency(&self, latency: Duration) {
        self.with(|s, _| s.api_latency = latency);
    }

    /// Drops the connections of the next `count` requests on `target`.
    pub fn drop_next(&self, count: u32, target: FaultTarget) {
        self.with(|s, _| {
            s.drop.next = count;
            s.drop.target = target;
        });
    }

    /// Drops each request on `target` with `probability` (clamped to 0.0..=1.0; NaN is 0), drawn
    /// from the seeded generator.
    pub fn drop_with_probability(&self, probability: f64, target: FaultTarget) {
        let p = if probability.is_nan() { 0.0 } else { probability.clamp(0.0, 1.0) };
        self.with(|s, _| {
            s.drop.probability = p;
            s.drop.target = target;
        });
    }

    /// Answers 429 to every API request for `duration`.
    pub fn force_429_for(&self, duration: Duration) {
        self.with(|s, now| s.force_429_until = Some(deadline(now, duration)));
    }

    /// Answers the token endpoint's rate-limit error (400) for `duration`.
    pub fn force_token_rate_limit_for(&self, duration: Duration) {
        self.with(|s, now| s.force_token_rate_limit_until = Some(deadline(now, duration)));
    }

    /// Makes every token issued so far expired (401 `credentials.expired`).
    pub fn expire_all_tokens(&self) {
        self.state.expire_all_tokens();
    }

    /// Revokes every token issued so far (401 `bad.credentials`).
    pub fn revoke_all_tokens(&self) {
        self.state.revoke_all_tokens();
    }

    /// Changes a client's state; `false` if no client has that id. Leaving
    /// [`ClientState::Active`] also stops its existing tokens.
    pub fn set_client_state(&self, client_id: &str, state: ClientState) -> bool {
        self.state.set_client_state(client_id, state)
    }

    /// Switches every fault off (tokens are left as they are).
    pub fn clear(&self) {
        let seed = self.state.config.faults.seed;
        self.with(|s, now| {
            *s = FaultState::new(&FaultConfig { seed, ..FaultConfig::default() }, now);
        });
    }

    /// Applies a [`FaultsUpdate`] (what `POST /__emulator/faults` does).
    pub fn apply(&self, update: &FaultsUpdate) {
        if update.clear {
            self.clear();
        }
        let ms = Duration::from_millis;
        self.with(|s, now| {
            if update.end_maintenance {
                s.maintenance = None;
            }
            if let Some(m) = update.maintenance {
                let maintenance = Maintenance {
                    duration: m.duration_ms.map(ms),
                    target: m.target,
                    retry_after: m.retry_after_secs.map(Duration::from_secs),
                };
                s.set_maintenance(maintenance, now);
            }
            if let Some(l) = update.token_latency_ms {
                s.token_latency = ms(l);
            }
            if let Some(l) = update.api_latency_ms {
                s.api_latency = ms(l);
            }
            if let Some(t) = update.drop_target {
                s.drop.target = t;
            }
            if let Some(n) = update.drop_next {
                s.drop.next = n;
            }
            if let Some(p) = update.drop_probability {
                s.drop.probability = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
            }
            if let Some(d) = update.force_429_ms {
                s.force_429_until = Some(deadline(now, ms(d)));
            }
            if let Some(d) = update.force_token_rate_limit_ms {
                s.force_token_rate_limit_until = Some(deadline(now, ms(d)));
            }
        });
        if update.expire_all_tokens {
            self.expire_all_tokens();
        }
        if update.revoke_all_tokens {
            self.revoke_all_tokens();
        }
    }

    pub(crate) fn view(&self) -> FaultsView {
        self.with(|s, now| s.view(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_by_path() {
        assert_eq!(Route::of("/oauth/token"), Route::Token);
        assert_eq!(Route::of("/api/v2/tokens/me"), Route::Api);
        assert_eq!(Route::of("/__emulator/faults"), Route::Other);
        assert_eq!(Route::of("/oauth/token/x"), Route::Other);
    }

    #[test]
    fn maintenance_ends_at_its_deadline() {
        let t0 = Instant::now();
        let mut s = FaultState::new(&FaultConfig::default(), t0);
        assert_eq!(s.maintenance(Route::Api, t0), None);
        let retry = Some(Duration::from_secs(3));
        let m = Maintenance {
            duration: Some(Duration::from_millis(100)),
            target: FaultTarget::Api,
            retry_after: retry,
        };
        s.set_maintenance(m, t0);
        assert_eq!(s.maintenance(Route::Api, t0 + Duration::from_millis(99)), Some(retry));
        assert_eq!(s.maintenance(Route::Token, t0), None);
        assert_eq!(s.maintenance(Route::Api, t0 + Duration::from_millis(100)), None);
    }

    #[test]
    fn drops_next_then_by_seeded_probability() {
        let t0 = Instant::now();
        let config = FaultConfig {
            drop: DropFault { next: 2, probability: 0.5, target: FaultTarget::Token },
            ..FaultConfig::default()
        };
        let mut a = FaultState::new(&config, t0);
        let mut b = FaultState::new(&config, t0);
        assert!(!a.should_drop(Route::Api));
        assert!(a.should_drop(Route::Token) && a.should_drop(Route::Token));
        assert!(b.should_drop(Route::Token) && b.should_drop(Route::Token));
        let draws_a: Vec<bool> = (0..64).map(|_| a.should_drop(Route::Token)).collect();
        let draws_b: Vec<bool> = (0..64).map(|_| b.should_drop(Route::Token)).collect();
        assert_eq!(draws_a, draws_b, "same seed, same drops");
        let dropped = draws_a.iter().filter(|&&d| d).count();
        assert!((16..=48).contains(&dropped), "{dropped} of 64 at p = 0.5");
        assert!(!a.should_drop(Route::Other));
    }

    #[test]
    fn update_json_shape() {
        let json = r#"{"maintenance":{"duration_ms":2000,"target":"api","retry_after_secs":5},
            "token_latency_ms":200,"drop_next":1,"drop_target":"token","force_429_ms":1500,
            "expire_all_tokens":true}"#;
        let u: FaultsUpdate = serde_json::from_str(json).unwrap_or_default();
        assert_eq!(u.maintenance.map(|m| m.target), Some(FaultTarget::Api));
        assert_eq!(u.drop_target, Some(FaultTarget::Token));
        assert!(u.expire_all_tokens && !u.clear);
        assert!(serde_json::from_str::<FaultsUpdate>(r#"{"nope":1}"#).is_err());
    }
}
