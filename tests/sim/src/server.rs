//! The server model: one Genesys Cloud organisation as one OAuth client id sees it.
//!
//! - **API rate limit**: a fixed window per client id, shared by every pod and worker, or one
//!   per access token ([`ApiScope`]: Genesys's scope is disputed, GENESYS.md). A window
//!   opens at the first request after the previous one closed (as in the emulator, and the
//!   harshest reading of what the platform shows). Every answer carries `inin-ratelimit-count`,
//!   `inin-ratelimit-allowed` and `inin-ratelimit-reset` (whole seconds to the reset, rounded
//!   up); over the limit the answer is 429 with `Retry-After` in whole seconds and the platform's
//!   JSON body. 401 and 429 answers are not counted against the window.
//! - **Daily limit** (optional): once `daily_limit` requests were admitted in a day, every call
//!   is answered 429 with a `Retry-After` of the hours left in the day.
//! - **Token endpoint**: tokens live `token_life`; its own fixed-window limit is answered with
//!   **400** `invalid_request`, `rate limit exceeded; …` (not 429), as the platform does; during
//!   an outage window it answers 503.
//!
//! The model only counts and answers; the engine decides when requests arrive.

use crate::Ms;

/// What the API rate limit is counted per.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ApiScope {
    /// One window per client id, shared by every token (the model's default).
    #[default]
    Client,
    /// One window per access token: a pod with a token of its own has a budget of its own, a
    /// fleet sharing one token shares one.
    Token,
}

impl ApiScope {
    /// The name used in tables (`client`, `token`).
    pub fn name(self) -> &'static str {
        match self {
            ApiScope::Client => "client",
            ApiScope::Token => "token",
        }
    }
}

/// The server's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// API requests allowed per window, per client id (or per token, see `api_scope`).
    pub api_limit: u64,
    /// What the API limit is counted per.
    pub api_scope: ApiScope,
    /// API window length.
    pub api_window: Ms,
    /// API requests allowed per day, if any.
    pub daily_limit: Option<u64>,
    /// Length of the "day" of the daily limit.
    pub day: Ms,
    /// Token requests allowed per token window.
    pub token_limit: u64,
    /// Token window length.
    pub token_window: Ms,
    /// Life of an issued token (`expires_in`).
    pub token_life: Ms,
    /// Half-open intervals `[start, end)` during which the token endpoint answers 503.
    pub token_outages: Vec<(Ms, Ms)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_limit: 300,
            api_scope: ApiScope::Client,
            api_window: 60_000,
            daily_limit: None,
            day: 86_400_000,
            token_limit: 30,
            token_window: 60_000,
            token_life: 86_400_000,
            token_outages: Vec::new(),
        }
    }
}

/// A fixed window that opens at the first request after the previous one closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Window {
    opened: Ms,
    count: u64,
}

impl Window {
    fn roll(&mut self, now: Ms, length: Ms) {
        if self.count == 0 || now.saturating_sub(self.opened) >= length {
            *self = Window { opened: now, count: 0 };
        }
    }

    fn reset_after(&self, now: Ms, length: Ms) -> Ms {
        self.opened.saturating_add(length).saturating_sub(now)
    }
}

/// An API answer: status, headers and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(&'static str, String)>,
    /// Response body.
    pub body: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The headers in the core's [`credflow_core::http::Headers`] form.
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }
}

/// What the server counted, for the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// API requests answered 2xx.
    pub admitted: u64,
    /// API requests answered 429 (window or daily limit).
    pub rate_limited: u64,
    /// API requests answered 401.
    pub unauthorized: u64,
    /// Token requests received.
    pub token_requests: u64,
    /// Token requests answered 400 `rate limit exceeded;`.
    pub token_rate_limited: u64,
    /// Token requests received during an outage.
    pub token_requests_in_outage: u64,
    /// Token requests received during an outage, per pod.
    pub token_requests_in_outage_by_pod: Vec<u64>,
    /// Most API requests admitted in any one window (never above the limit).
    pub max_window_count: u64,
}

/// The server model; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Server {
    config: ServerConfig,
    api: Window,
    day_start: Ms,
    day_count: u64,
    token: Window,
    /// Expiry of every token issued, by number.
    tokens: Vec<Ms>,
    /// The API window of every token issued, by number ([`ApiScope::Token`]).
    token_windows: Vec<Window>,
    counters: ServerCounters,
}

impl Server {
    /// A server with `config`, serving `pods` pods (for per-pod counters).
    pub fn new(config: ServerConfig, pods: usize) -> Self {
        Server {
            config,
            api: Window::default(),
            day_start: 0,
            day_count: 0,
            token: Window::default(),
            tokens: Vec::new(),
            token_windows: Vec::new(),
            counters: ServerCounters {
                token_requests_in_outage_by_pod: vec![0; pods],
                ..ServerCounters::default()
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The counters so far.
    pub fn counters(&self) -> &ServerCounters {
        &self.counters
    }

    /// Whether `now` falls in a token-endpoint outage.
    pub fn in_outage(&self, now: Ms) -> bool {
        self.config.token_outages.iter().any(|&(start, end)| (start..end).contains(&now))
    }

    /// A token request from `pod` arriving at `now`: `Ok((token, expires_in_secs))` or the error
    /// reply (503 in an outage, 400 over the token limit).
    pub fn token_request(&mut self, now: Ms, pod: usize) -> Result<(String, u64), Reply> {
        self.counters.token_requests += 1;
        if self.in_outage(now) {
            self.counters.token_requests_in_outage += 1;
            if let Some(c) = self.counters.token_requests_in_outage_by_pod.get_mut(pod) {
                *c += 1;
            }
            return Err(Reply {
                status: 503,
                headers: vec![("content-type", "application/json".into())],
                body:
                    r#"{"message":"Service Unavailable","code":"service.unavailable","status":503}"#
                        .into(),
            });
        }
        self.token.roll(now, self.config.token_window);
        if self.token.count >= self.config.token_limit {
            self.counters.token_rate_limited += 1;
            return Err(Reply {
                status: 400,
                headers: vec![("content-type", "application/json".into())],
                body: r#"{"error":"invalid_request","error_description":"rate limit exceeded; too many token requests for this client, try again later"}"#
                    .into(),
            });
        }
        self.token.count += 1;
        let id = self.tokens.len();
        self.tokens.push(now.saturating_add(self.config.token_life));
        self.token_windows.push(Window::default());
        Ok((format!("tok-{id}"), self.config.token_life / 1000))
    }

    /// An API request with `token` arriving at `now`.
    pub fn api_request(&mut self, now: Ms, token: &str) -> Reply {
        let number = token.strip_prefix("tok-").and_then(|n| n.parse::<usize>().ok());
        let valid = number.and_then(|n| self.tokens.get(n)).is_some_and(|&expires| now < expires);
        let Some(number) = number.filter(|_| valid) else {
            self.counters.unauthorized += 1;
            return Reply {
                status: 401,
                headers: vec![("content-type", "application/json".into())],
                body: r#"{"message":"Authentication required","code":"authentication.required","status":401}"#
                    .into(),
            };
        };
        if now.saturating_sub(self.day_start) >= self.config.day {
            self.day_start = now;
            self.day_count = 0;
        }
        if let Some(daily) = self.config.daily_limit
            && self.day_count >= daily
        {
            let wait = self.day_start.saturating_add(self.config.day).saturating_sub(now);
            return self.too_many(wait, None);
        }
        let length = self.config.api_window;
        let window = match self.config.api_scope {
            ApiScope::Client => &mut self.api,
            ApiScope::Token => match self.token_windows.get_mut(number) {
                Some(w) => w,
                None => &mut self.api,
            },
        };
        window.roll(now, length);
        let reset = window.reset_after(now, length);
        let count = window.count;
        if count >= self.config.api_limit {
            return self.too_many(reset, Some((count, reset)));
        }
        window.count += 1;
        let count = window.count;
        self.day_count += 1;
        self.counters.admitted += 1;
        self.counters.max_window_count = self.counters.max_window_count.max(count);
        Reply { status: 200, headers: self.limit_headers(count, reset), body: "{}".into() }
    }

    fn limit_headers(&self, count: u64, reset: Ms) -> Vec<(&'static str, String)> {
        vec![
            ("inin-ratelimit-count", count.to_string()),
            ("inin-ratelimit-allowed", self.config.api_limit.to_string()),
            ("inin-ratelimit-reset", reset.div_ceil(1000).to_string()),
        ]
    }

    /// A 429 after `wait`; `window` is the count and reset of the window it was over.
    fn too_many(&mut self, wait: Ms, window: Option<(u64, Ms)>) -> Reply {
        self.counters.rate_limited += 1;
        let secs = wait.div_ceil(1000).max(1);
        let mut headers = match window {
            Some((count, reset)) => self.limit_headers(count, reset),
            None => Vec::new(),
        };
        headers.push(("retry-after", secs.to_string()));
        headers.push(("content-type", "application/json".into()));
        Reply {
            status: 429,
            headers,
            body: format!(
                r#"{{"message":"Rate limit exceeded the maximum. Retry the request in [{secs}] seconds","code":"too.many.requests.retry.after","status":429,"contextId":"sim","details":[],"errors":[]}}"#
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ServerConfig {
        ServerConfig { api_limit: 3, api_window: 1_000, ..ServerConfig::default() }
    }

    #[test]
    fn window_admits_exactly_the_limit_then_429_with_retry_after() {
        let mut s = Server::new(small(), 1);
        let (tok, _) = s.token_request(0, 0).expect("token");
        for i in 0..3 {
            assert_eq!(s.api_request(100 + i, &tok).status, 200);
        }
        let r = s.api_request(200, &tok);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("inin-ratelimit-count"), Some("3"));
        // The window opened at 100: at 1099 it is still closed, at 1100 a new one opens.
        assert_eq!(s.api_request(1_099, &tok).status, 429);
        assert_eq!(s.api_request(1_100, &tok).status, 200);
        assert_eq!(s.counters().admitted, 4);
        assert_eq!(s.counters().max_window_count, 3);
    }

    #[test]
    fn expired_and_unknown_tokens_get_401_and_are_not_counted() {
        let config = ServerConfig { token_life: 1_000, ..small() };
        let mut s = Server::new(config, 1);
        let (tok, expires_in) = s.token_request(0, 0).expect("token");
        assert_eq!(expires_in, 1);
        assert_eq!(s.api_request(999, &tok).status, 200);
        assert_eq!(s.api_request(1_000, &tok).status, 401);
        assert_eq!(s.api_request(0, "tok-99").status, 401);
        assert_eq!(s.api_request(0, "garbage").status, 401);
        assert_eq!(s.counters().admitted, 1);
    }

    #[test]
    fn token_limit_answers_400_rate_limit_exceeded() {
        let config = ServerConfig { token_limit: 2, ..ServerConfig::default() };
        let mut s = Server::new(config, 1);
        assert!(s.token_request(0, 0).is_ok());
        assert!(s.token_request(1, 0).is_ok());
        let err = s.token_request(2, 0).expect_err("over the limit");
        assert_eq!(err.status, 400);
        assert!(err.body.contains("rate limit exceeded;"));
        assert!(s.token_request(60_000, 0).is_ok());
    }

    #[test]
    fn outage_answers_503_and_counts_per_pod() {
        let config = ServerConfig { token_outages: vec![(10, 20)], ..ServerConfig::default() };
        let mut s = Server::new(config, 2);
        assert!(s.token_request(9, 1).is_ok());
        assert_eq!(s.token_request(10, 1).map_err(|r| r.status), Err(503));
        assert_eq!(s.token_request(19, 0).map_err(|r| r.status), Err(503));
        assert!(s.token_request(20, 1).is_ok());
        assert_eq!(s.counters().token_requests_in_outage_by_pod, vec![1, 1]);
    }

    #[test]
    fn daily_limit_answers_429_for_the_rest_of_the_day() {
        let config = ServerConfig {
            api_limit: 100,
            daily_limit: Some(2),
            day: 3_600_000,
            ..ServerConfig::default()
        };
        let mut s = Server::new(config, 1);
        let (tok, _) = s.token_request(0, 0).expect("token");
        assert_eq!(s.api_request(0, &tok).status, 200);
        assert_eq!(s.api_request(1, &tok).status, 200);
        let r = s.api_request(1_000, &tok);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("3599"));
        assert_eq!(r.header("inin-ratelimit-count"), None);
    }

    #[test]
    fn per_token_each_token_has_its_own_window() {
        let config = ServerConfig { api_scope: ApiScope::Token, ..small() };
        let mut s = Server::new(config, 1);
        let (a, _) = s.token_request(0, 0).expect("token");
        let (b, _) = s.token_request(0, 0).expect("token");
        for i in 1..=3 {
            assert_eq!(
                s.api_request(100, &a).header("inin-ratelimit-count"),
                Some(&*i.to_string())
            );
        }
        let over = s.api_request(200, &a);
        assert_eq!((over.status, over.header("inin-ratelimit-count")), (429, Some("3")));
        // B's window opens at its own first request, counted from one.
        let r = s.api_request(500, &b);
        assert_eq!((r.status, r.header("inin-ratelimit-count")), (200, Some("1")));
        assert_eq!(r.header("inin-ratelimit-reset"), Some("1"));
        // A's window still closes at 1100, B's at 1500.
        assert_eq!(s.api_request(1_100, &a).status, 200);
        for _ in 0..2 {
            assert_eq!(s.api_request(1_200, &b).status, 200);
        }
        assert_eq!(s.api_request(1_499, &b).status, 429);
        assert_eq!(s.counters().admitted, 7);
    }

    #[test]
    fn per_client_every_token_shares_the_window() {
        let mut s = Server::new(small(), 1);
        let (a, _) = s.token_request(0, 0).expect("token");
        let (b, _) = s.token_request(0, 0).expect("token");
        assert_eq!(s.api_request(0, &a).status, 200);
        assert_eq!(s.api_request(0, &a).status, 200);
        assert_eq!(s.api_request(0, &b).header("inin-ratelimit-count"), Some("3"));
        assert_eq!(s.api_request(0, &b).status, 429);
    }
}
