//! Rate-limit scope (per client id or per access token): the pacer's knowledge of which token
//! its window belongs to, and its hooks for the session. The contract is on [`RateLimitScope`].

use super::Pacer;
#[cfg(feature = "rate-limit-scope")]
use super::{SAME_WINDOW_SLACK, Window};
use crate::lifecycle::Generation;
use crate::ratelimit::RateLimitSnapshot;
use crate::time::{Duration, Instant};

/// What a server counts its API rate limit per (client id or access token), and so what a
/// [`Pacer`] does when the token changes.
///
/// Genesys Cloud's API limit (`client.credentials.token.rate.per.minute`, 300/min) is counted
/// per *token* by its name and a Genesys engineer's word, per *client id* by other answers and
/// the reference guide. The two differ exactly when the token changes:
///
/// - **Per client id**, every token of the client draws on one window: the new token inherits
///   the old one's count, spent or not. A pacer that assumed a fresh window would burst into
///   429s.
/// - **Per token**, the new token's first request opens a window of its own, with a full
///   budget. A pacer that carried the old token's spent window over would hold requests back
///   (or read the old token's late 429s as its own) for up to a window.
///
/// This setting (in `PacerConfig::scope`) says which to assume. The default,
/// [`RateLimitScope::Auto`], tells them apart from the headers at a token change. The old
/// token's window was observed with its reset. If the new token's first response names a
/// *second* window while that one is still running, the count restarted without a reset: per
/// token. If it names the same window: per client id. Resets are compared with room for the
/// headers' whole-second rounding and for round trips of up to about a second: the old window
/// must have at least two seconds left and have been seen for at least four (a window begun
/// just before the new token's would look the same under both scopes), a second window must
/// reset at least two seconds after the first, the same window within one; anything between
/// tells nothing, and the next token change asks again. Until such evidence, `Auto` paces as
/// per client id (what credflow always did), with one exception that lets the evidence come:
/// when the old window is spent at a token change, one request with the new token may go (a
/// probe), still after any 429's `Retry-After`. Under a per-client scope that costs at most one 429 per token change while
/// the window is spent (token changes are hours apart); under a per-token scope it opens the
/// new window. The latest evidence wins; [`Pacer::observed_scope`] reports it.
///
/// The session tells the pacer which token a request goes with ([`Pacer::use_token`], before
/// it asks [`Pacer::pace`](Pacer::check)) and which token a response answered
/// ([`Pacer::observe_for`], [`Pacer::on_rate_limited_for`]). Under a per-token scope a token
/// change starts a fresh window of the known limit and length (spacing from the first send,
/// no burst beyond the configured one), and news about an earlier token is ignored: its window
/// and its 429s are not the new token's.
///
/// Nothing here makes credflow take extra tokens for headroom: the token changes when the
/// lifecycle says so, and the pacer only follows.
///
/// All of this needs the feature `rate-limit-scope` (on by default). Without it (the trimmed
/// firmware build) the pacer keeps one window across token changes, as under
/// [`RateLimitScope::Client`]: `PacerConfig::scope` does not exist, the token-aware calls
/// ignore the token and [`Pacer::scope`] answers `Client`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum RateLimitScope {
    /// Tell from the headers at a token change; per client id until they show otherwise.
    #[default]
    Auto,
    /// One window per client id: every token of the client shares it, a new token inherits it.
    Client,
    /// One window per access token: a new token starts a fresh window.
    Token,
}

/// The pacer's knowledge of tokens and scope.
#[cfg(feature = "rate-limit-scope")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ScopeState {
    /// The token requests go with now (the latest [`Pacer::use_token`]).
    current: Option<Generation>,
    /// The window last observed: its token, its reset, and when a window with that reset was
    /// first seen (a bound on how long it has been running).
    observed: Option<Observed>,
    /// What the headers showed at the latest token change that told (`Auto` only).
    detected: Option<RateLimitScope>,
    /// `Auto`, nothing detected, a spent window at a token change: the next send may go.
    probe: bool,
}

/// A window as observed with one token.
#[cfg(feature = "rate-limit-scope")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Observed {
    generation: Generation,
    reset_at: Instant,
    first_seen: Instant,
}

/// Without `rate-limit-scope`: nothing to know.
#[cfg(not(feature = "rate-limit-scope"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ScopeState;

#[cfg(not(feature = "rate-limit-scope"))]
impl ScopeState {
    pub(super) const fn new() -> Self {
        ScopeState
    }

    /// Without the feature the token never matters: [`Pacer::use_token`] records nothing.
    pub(super) const fn serves(&self, _generation: Generation) -> bool {
        true
    }
}

#[cfg(feature = "rate-limit-scope")]
impl ScopeState {
    /// Nothing known: no token yet, nothing observed or told.
    pub(super) const fn new() -> Self {
        ScopeState { current: None, observed: None, detected: None, probe: false }
    }

    /// Whether [`Pacer::use_token`] with `generation` and a send ([`Pacer::on_send`]) would
    /// change nothing here: that token is the current one, and no probe of a new token's
    /// window is due.
    pub(super) fn serves(&self, generation: Generation) -> bool {
        self.current == Some(generation) && !self.probe
    }
}

/// Without `rate-limit-scope`: one window per client id, whatever the token.
#[cfg(not(feature = "rate-limit-scope"))]
impl Pacer {
    /// Always [`RateLimitScope::Client`] without the feature `rate-limit-scope`.
    pub fn scope(&self) -> RateLimitScope {
        RateLimitScope::Client
    }

    /// Always `None` without the feature `rate-limit-scope`.
    pub fn observed_scope(&self) -> Option<RateLimitScope> {
        None
    }

    /// Nothing to do without the feature `rate-limit-scope`.
    pub fn use_token(&mut self, _now: Instant, _generation: Generation) {}

    /// [`observe`](Self::observe), the token ignored.
    pub fn observe_for(&mut self, now: Instant, snap: &RateLimitSnapshot, _: Option<Generation>) {
        self.observe(now, snap);
    }

    /// [`on_rate_limited`](Self::on_rate_limited), the token ignored.
    pub fn on_rate_limited_for(
        &mut self,
        now: Instant,
        wait: Option<Duration>,
        _: Option<Generation>,
    ) {
        self.on_rate_limited(now, wait);
    }

    /// Never probing without the feature.
    pub(super) fn probing(&self) -> bool {
        false
    }

    /// Nothing to end without the feature.
    pub(super) fn end_probe(&mut self) {}
}

#[cfg(feature = "rate-limit-scope")]
impl Pacer {
    /// Whether the next send is a probe of a new token's window (held back only by a 429).
    pub(super) fn probing(&self) -> bool {
        self.scope.probe
    }

    /// A send went: the probe, if one was due, is spent.
    pub(super) fn end_probe(&mut self) {
        self.scope.probe = false;
    }

    /// The scope the pacer acts on now: the configured one, or under [`RateLimitScope::Auto`]
    /// what the headers showed ([`RateLimitScope::Auto`] while they showed nothing).
    pub fn scope(&self) -> RateLimitScope {
        match self.config.scope {
            RateLimitScope::Auto => self.scope.detected.unwrap_or(RateLimitScope::Auto),
            configured => configured,
        }
    }

    /// What the headers showed at the latest token change that told the scopes apart, under
    /// any configured scope: `None` until then.
    pub fn observed_scope(&self) -> Option<RateLimitScope> {
        self.scope.detected
    }

    /// Says that requests go with the token of `generation` from `now` on. Call it before
    /// [`check`](Self::check) when the token may have changed; the same generation again is a
    /// no-op. At a change, under a per-token scope the window starts afresh (the known limit,
    /// one window from now, no spacing history, no 429 hold of the old token); under
    /// [`RateLimitScope::Auto`] with nothing detected, a spent window lets one probe go.
    pub fn use_token(&mut self, now: Instant, generation: Generation) {
        let previous = self.scope.current.replace(generation);
        if previous.is_none_or(|p| p == generation) {
            return;
        }
        match self.scope() {
            RateLimitScope::Token => {
                if let Some(w) = &mut self.window {
                    *w = w.fresh(now);
                }
                self.blocked_until = Instant::ZERO;
                self.others_permille = 0;
            }
            RateLimitScope::Auto => {
                self.scope.probe = self.remaining(now) == Some(0);
            }
            RateLimitScope::Client => {}
        }
    }

    /// [`observe`](Self::observe) for a response to a request sent with the token of
    /// `generation` (`None`: not known, taken as the current token's). A response of an earlier
    /// token is ignored under a per-token scope; under [`RateLimitScope::Auto`], the first
    /// response of a new token tells the scopes apart when it can.
    pub fn observe_for(
        &mut self,
        now: Instant,
        snap: &RateLimitSnapshot,
        generation: Option<Generation>,
    ) {
        if let Some(generation) = generation
            && snap.remaining.is_some()
        {
            if self.scope() == RateLimitScope::Token
                && self.scope.current.is_some_and(|c| c != generation)
            {
                return;
            }
            self.tell_scope(now, snap, generation);
        }
        self.observe(now, snap);
    }

    /// [`on_rate_limited`](Self::on_rate_limited) for a 429 to a request sent with the token of
    /// `generation`: ignored under a per-token scope when that token is no longer in use.
    pub fn on_rate_limited_for(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        generation: Option<Generation>,
    ) {
        if self.scope() == RateLimitScope::Token
            && let (Some(g), Some(c)) = (generation, self.scope.current)
            && g != c
        {
            return;
        }
        self.on_rate_limited(now, retry_after);
    }

    /// Records which token the window is observed with and, at a token change, what the reset
    /// says about the scope. On evidence of a per-token scope the old token's window and hold
    /// are dropped, so the snapshot defines the new one.
    fn tell_scope(&mut self, now: Instant, snap: &RateLimitSnapshot, generation: Generation) {
        let snap = snap.believed();
        let length = snap
            .window
            .or(self.window.map(|w| w.length))
            .unwrap_or(self.config.default_window)
            .max(Duration::from_millis(1));
        let slack = SAME_WINDOW_SLACK.min(Duration::from_millis(length.as_millis() / 2));
        let Some(reset_at) = snap.reset_after.map(|r| now.saturating_add(r)) else {
            return;
        };
        let mut first_seen = now;
        let before = self.scope.observed;
        if let Some(old) = before
            && gap(old.reset_at, reset_at) < slack
        {
            first_seen = old.first_seen;
        }
        self.scope.observed = Some(Observed { generation, reset_at, first_seen });
        let Some(old) = before.filter(|old| old.generation != generation) else {
            return;
        };
        let told = tell(now, slack, old, reset_at);
        if told.is_some() {
            self.scope.detected = told;
        }
        if told == Some(RateLimitScope::Token) && self.config.scope != RateLimitScope::Client {
            self.window = None;
            self.blocked_until = Instant::ZERO;
            self.others_permille = 0;
        }
    }
}

/// What a new token's first reset (`new_reset`) says, the old token's window observed before:
/// `Token` for a second window while the first runs, `Client` for the same window, `None` when
/// it cannot tell (see [`RateLimitScope`] for the margins, in units of `slack`).
#[cfg(feature = "rate-limit-scope")]
fn tell(
    now: Instant,
    slack: Duration,
    old: Observed,
    new_reset: Instant,
) -> Option<RateLimitScope> {
    let running = now.saturating_add(slack.saturating_mul(2)) < old.reset_at;
    let seen_long = now >= old.first_seen.saturating_add(slack.saturating_mul(4));
    if !running || !seen_long {
        None
    } else if new_reset >= old.reset_at.saturating_add(slack.saturating_mul(2)) {
        Some(RateLimitScope::Token)
    } else if gap(new_reset, old.reset_at) < slack {
        Some(RateLimitScope::Client)
    } else {
        None
    }
}

/// How far apart two instants are.
#[cfg(feature = "rate-limit-scope")]
fn gap(a: Instant, b: Instant) -> Duration {
    a.saturating_duration_since(b).max(b.saturating_duration_since(a))
}

#[cfg(feature = "rate-limit-scope")]
impl Window {
    /// A new token's window under a per-token scope: the known limit, one window from `now`,
    /// no spacing history.
    fn fresh(&self, now: Instant) -> Window {
        let mut w = Window {
            remaining: self.limit.max(1),
            reset_at: now.saturating_add(self.length),
            tat: Instant::ZERO,
            interval: Duration::ZERO,
            observed_at: now,
            ..*self
        };
        w.respace(now);
        w
    }
}
