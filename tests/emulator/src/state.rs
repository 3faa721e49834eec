//! The one shared state of a running emulator: configuration, clients, tokens, limiter windows,
//! faults and counters, each behind its own small lock (never two held at once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{ClientConfig, ClientState, EmulatorConfig, RateLimit, RateLimitScope};
use crate::counters::{Counters, lock};
use crate::faults::{FaultState, Route};
use crate::ratelimit::{FixedWindow, WindowState};
use crate::tokens::{self, Principal, Rejection, TokenRecord};
use crate::util::{self, SplitMix64};

/// Tokens are forgotten this long after they expire (then they answer `bad.credentials` rather
/// than `credentials.expired`), once the store holds more than [`TOKEN_STORE_SOFT_CAP`] tokens.
const FORGET_EXPIRED_AFTER: Duration = Duration::from_secs(3600);
const TOKEN_STORE_SOFT_CAP: usize = 4096;

/// Result of counting an API request against a client's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiAdmission {
    /// Go ahead; the window after counting this request.
    Admitted(WindowState),
    /// Over the per-window limit.
    Limited(WindowState),
    /// Over the long ("daily") limit.
    DailyLimited(WindowState),
}

/// The API windows of one client id.
#[derive(Debug)]
struct ApiWindows {
    /// The client's window ([`RateLimitScope::Client`]).
    window: FixedWindow,
    /// One window per access token ([`RateLimitScope::Token`]), pruned of closed windows when
    /// it holds more than [`TOKEN_STORE_SOFT_CAP`].
    per_token: HashMap<String, FixedWindow>,
    /// The long limit, per client id under either scope.
    daily: FixedWindow,
}

impl ApiWindows {
    fn new(now: Instant) -> Self {
        Self {
            window: FixedWindow::new(now),
            per_token: HashMap::new(),
            daily: FixedWindow::new(now),
        }
    }

    /// The per-window counter `principal`'s request is counted in under `scope`.
    fn window_for(
        &mut self,
        scope: RateLimitScope,
        token: &str,
        now: Instant,
        limit: RateLimit,
    ) -> &mut FixedWindow {
        match scope {
            RateLimitScope::Client => &mut self.window,
            RateLimitScope::Token => {
                if self.per_token.len() >= TOKEN_STORE_SOFT_CAP
                    && !self.per_token.contains_key(token)
                {
                    self.per_token.retain(|_, w| !w.is_closed(now, limit));
                }
                self.per_token.entry(token.to_owned()).or_insert_with(|| FixedWindow::new(now))
            }
        }
    }
}

/// A token issued by the token endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
}

/// Everything the handlers share, behind one `Arc`.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: EmulatorConfig,
    pub(crate) started: Instant,
    /// `http://127.0.0.1:PORT/oauth/token`: the `aud` a client assertion must carry.
    pub(crate) token_url: String,
    pub(crate) counters: Counters,
    pub(crate) faults: Mutex<FaultState>,
    clients: Mutex<HashMap<String, ClientConfig>>,
    tokens: Mutex<HashMap<String, TokenRecord>>,
    api_windows: Mutex<HashMap<String, ApiWindows>>,
    token_windows: Mutex<HashMap<String, FixedWindow>>,
    /// `(client id, jti)` → assertion expiry (Unix seconds), for replay detection.
    jtis: Mutex<HashMap<(String, String), u64>>,
    rng: Mutex<SplitMix64>,
}

impl AppState {
    pub(crate) fn new(config: EmulatorConfig, token_url: String) -> Self {
        let now = Instant::now();
        let clients = config.clients.iter().map(|c| (c.id.clone(), c.clone())).collect();
        Self {
            faults: Mutex::new(FaultState::new(&config.faults, now)),
            config,
            started: now,
            token_url,
            counters: Counters::default(),
            clients: Mutex::new(clients),
            tokens: Mutex::new(HashMap::new()),
            api_windows: Mutex::new(HashMap::new()),
            token_windows: Mutex::new(HashMap::new()),
            jtis: Mutex::new(HashMap::new()),
            rng: Mutex::new(SplitMix64::from_entropy()),
        }
    }

    /// A fresh correlation id.
    pub(crate) fn correlation_id(&self) -> String {
        lock(&self.rng).uuid()
    }

    /// A copy of the client with this id.
    pub(crate) fn client(&self, id: &str) -> Option<ClientConfig> {
        lock(&self.clients).get(id).cloned()
    }

    pub(crate) fn set_client_state(&self, id: &str, state: ClientState) -> bool {
        lock(&self.clients).get_mut(id).map(|c| c.state = state).is_some()
    }

    /// Counts a token request of `client_id` against the token-endpoint limit; `false` if over.
    /// Only configured clients are counted (unknown ids fail authentication anyway).
    pub(crate) fn admit_token_request(&self, client_id: &str, now: Instant) -> bool {
        if self.client(client_id).is_none() {
            return true;
        }
        let limit = self.config.token_rate_limit;
        let mut windows = lock(&self.token_windows);
        let window = windows.entry(client_id.to_owned()).or_insert_with(|| FixedWindow::new(now));
        window.admit(now, limit).is_ok()
    }

    /// Records a client assertion's `jti`; `false` if this client used it before.
    pub(crate) fn use_jti(&self, client_id: &str, jti: &str, expires_unix: u64) -> bool {
        let now = util::unix_now().as_secs();
        let mut jtis = lock(&self.jtis);
        jtis.retain(|_, &mut exp| exp >= now);
        jtis.insert((client_id.to_owned(), jti.to_owned()), expires_unix).is_none()
    }

    /// Mints a token for `client` carrying `permissions`.
    pub(crate) fn issue_token(&self, client: &ClientConfig, permissions: Vec<String>) -> Issued {
        let lifetime = client.token_lifetime.unwrap_or(self.config.default_token_lifetime);
        let now = Instant::now();
        let random = tokens::random_bytes(&mut lock(&self.rng));
        let access_token = tokens::mint(&self.config.environment, random);
        let record = TokenRecord {
            client_id: client.id.clone(),
            permissions,
            expires_at: now.checked_add(lifetime).unwrap_or(now),
            expires_unix: util::unix_now().saturating_add(lifetime),
            revoked: false,
        };
        let mut store = lock(&self.tokens);
        if store.len() >= TOKEN_STORE_SOFT_CAP {
            store.retain(|_, t| now.saturating_duration_since(t.expires_at) < FORGET_EXPIRED_AFTER);
        }
        store.insert(access_token.clone(), record);
        Issued { access_token, expires_in: lifetime.as_secs().max(1) }
    }

    /// Checks a presented bearer token.
    pub(crate) fn check_token(&self, token: &str, now: Instant) -> Result<Principal, Rejection> {
        tokens::check_binding(&self.config.environment, token)?;
        let record = lock(&self.tokens).get(token).cloned().ok_or(Rejection::Unknown)?;
        if record.revoked {
            return Err(Rejection::Revoked);
        }
        if now >= record.expires_at {
            return Err(Rejection::Expired);
        }
        match self.client(&record.client_id) {
            Some(c) if c.state == ClientState::Active => {}
            _ => return Err(Rejection::ClientInactive),
        }
        Ok(Principal {
            token: token.to_owned(),
            client_id: record.client_id,
            permissions: record.permissions,
            expires_at: record.expires_at,
            expires_unix: record.expires_unix,
        })
    }

    /// Revokes one token; `false` if unknown.
    pub(crate) fn revoke_token(&self, token: &str) -> bool {
        lock(&self.tokens).get_mut(token).map(|t| t.revoked = true).is_some()
    }

    pub(crate) fn revoke_all_tokens(&self) {
        lock(&self.tokens).values_mut().for_each(|t| t.revoked = true);
    }

    pub(crate) fn expire_all_tokens(&self) {
        let now = Instant::now();
        let unix = util::unix_now();
        for t in lock(&self.tokens).values_mut() {
            if t.expires_at > now {
                t.expires_at = now;
                t.expires_unix = unix;
            }
        }
    }

    /// Counts an API request of `principal` against its limits: the per-window one in the
    /// window of its client id or of its token ([`EmulatorConfig::rate_limit_scope`]), the long
    /// one per client id.
    pub(crate) fn admit_api_request(&self, principal: &Principal, now: Instant) -> ApiAdmission {
        let limit = self.config.api_rate_limit;
        let mut windows = lock(&self.api_windows);
        let w = windows.entry(principal.client_id.clone()).or_insert_with(|| ApiWindows::new(now));
        if let Some(daily) = self.config.daily_limit
            && let Err(state) = w.daily.check(now, daily)
        {
            return ApiAdmission::DailyLimited(state);
        }
        let scope = self.config.rate_limit_scope;
        match w.window_for(scope, &principal.token, now, limit).admit(now, limit) {
            Ok(state) => {
                if let Some(daily) = self.config.daily_limit {
                    let _ = w.daily.consume(now, daily);
                }
                ApiAdmission::Admitted(state)
            }
            Err(state) => ApiAdmission::Limited(state),
        }
    }

    /// The per-window state `principal`'s request would be counted in, without counting (for
    /// forced 429s).
    pub(crate) fn peek_api_window(&self, principal: &Principal, now: Instant) -> WindowState {
        let limit = self.config.api_rate_limit;
        let mut windows = lock(&self.api_windows);
        let w = windows.entry(principal.client_id.clone()).or_insert_with(|| ApiWindows::new(now));
        let window = w.window_for(self.config.rate_limit_scope, &principal.token, now, limit);
        match window.check(now, limit) {
            Ok(()) => window.state(now, limit),
            Err(state) => state,
        }
    }

    /// Decides (and counts) whether the connection of a request on `route` is dropped.
    pub(crate) fn should_drop(&self, route: Route) -> bool {
        if route == Route::Other || !lock(&self.faults).should_drop(route) {
            return false;
        }
        let c = &self.counters;
        crate::counters::bump(&c.dropped_connections);
        match route {
            Route::Token => {
                crate::counters::bump(&c.token.requests);
                crate::counters::bump(&c.token.dropped);
            }
            Route::Api => {
                crate::counters::bump(&c.api.requests);
                crate::counters::bump(&c.api.dropped);
            }
            Route::Other => {}
        }
        true
    }

    /// Counters, limiter windows and faults back to their start values; clients, tokens and the
    /// assertion replay cache are kept.
    pub(crate) fn reset(&self) {
        self.counters.reset();
        lock(&self.api_windows).clear();
        lock(&self.token_windows).clear();
        *lock(&self.faults) = FaultState::new(&self.config.faults, Instant::now());
    }
}
