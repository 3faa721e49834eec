//! Reusing a kept-alive HTTP/1.1 connection: which requests a connection that has idled may
//! carry, and which may be sent again when it turns out closed.
//!
//! A server closes a kept-alive connection after its own idle timeout, and a client that has no
//! task watching the connection (an embedded adapter: `embedded-tls` streams cannot say whether
//! a read would block) learns of it only by sending on it: the write succeeds, the read ends
//! before the first byte of an answer. From the client's side that looks the same as a server
//! that received the request, acted on it and then failed. RFC 9112 §9.3.1 therefore lets a
//! client resend a request automatically only when it is idempotent or known not to have been
//! applied. Go's `net/http` transport draws the same line (`shouldRetryRequest`: a request on a
//! reused connection found closed is resent only if nothing of it was written, or if it is
//! replayable: `GET`, `HEAD`, `OPTIONS` or `TRACE`, or carrying an idempotency key).
//!
//! Refusing to resend a POST would fail every POST sent just after the server closed the
//! connection. The way out is not to send it on a connection that the server may be closing:
//! the rule here is the two halves of that.
//!
//! 1. **Before sending** ([`KeepAlive::may_carry`]): a request that is safe to repeat may go on
//!    any kept-alive connection; one that is not goes only on a connection idle for less than
//!    [`idle_limit`](KeepAlive::idle_limit), else on a new connection. Bounding reuse for
//!    every request (hyper-util's pool idle timeout, curl's `CURLOPT_MAXAGE_CONN`) would cost a
//!    repeatable request a new connection (on a device, a TLS handshake) where a stale one costs
//!    it only a failed write and a resend.
//! 2. **After the connection turned out closed** ([`KeepAlive::may_resend`]): a request safe to
//!    repeat is sent once more on a new connection; this is not a retry (the connection, not
//!    the server, failed), so it spends no retry. One that is not safe to repeat is not resent:
//!    it fails as a transport failure after sending, and the retry policy decides about it as
//!    about any other (it gives up on a non-idempotent request).
//!
//! What is safe to repeat is what the retry policy counts as such: an idempotent method
//! (RFC 9110 §9.2.2) or a request its sender marked idempotent
//! ([`RequestSpec::is_repeatable`](crate::session::RequestSpec::is_repeatable)). A
//! client-credentials **token request** (a `POST`, RFC 6749 §4.4) is safe to repeat: a second one
//! gets a second token, and the first stays valid until it expires; nothing else changes on the
//! authorization server. Adapters pass it as repeatable, so it reuses any connection and is
//! resent once, as before; all but one signed with `client_secret_jwt`
//! ([`KeepAlive::token_request_repeatable`]): resent, its bytes are the same, and so is its
//! assertion's `jti`, which a server may accept once only (RFC 7523 §3).
//!
//! ```
//! use credflow_core::http::keep_alive::KeepAlive;
//! use credflow_core::{Duration, Instant};
//!
//! let rule = KeepAlive::default(); // 4 s
//! let last_used = Instant::from_secs(10);
//! // A POST two seconds later goes on the kept-alive connection, ten seconds later on a new one.
//! assert!(rule.may_carry(last_used, Instant::from_secs(12), false));
//! assert!(!rule.may_carry(last_used, Instant::from_secs(20), false));
//! // A GET goes on it whatever its age, and is resent once if it turns out closed.
//! assert!(rule.may_carry(last_used, Instant::from_secs(20), true));
//! assert!(KeepAlive::may_resend(true) && !KeepAlive::may_resend(false));
//! ```

use crate::time::{Duration, Instant};

/// When a kept-alive connection may carry a request, and whether a request it failed may be
/// sent again: see the [module](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeepAlive {
    /// How long a kept-alive connection may have been idle (since the end of its last exchange)
    /// and still carry a request that is not safe to repeat; zero: such a request always gets a
    /// new connection. Default [`DEFAULT_IDLE_LIMIT`](Self::DEFAULT_IDLE_LIMIT), 4 s.
    pub idle_limit: Duration,
}

impl KeepAlive {
    /// 4 s: below the shortest idle timeout common servers close kept-alive connections at,
    /// 5 s (Apache httpd's `KeepAliveTimeout`, Node.js's `server.keepAliveTimeout`; nginx waits
    /// 75 s, an AWS Application Load Balancer 60 s), with a second left for the request to reach
    /// the server over a slow uplink. An application that knows its server keeps connections
    /// longer raises it and saves a new connection (a TLS handshake) per request sent after a
    /// longer pause.
    pub const DEFAULT_IDLE_LIMIT: Duration = Duration::from_secs(4);

    /// Whether a kept-alive connection whose last exchange ended at `last_used` may carry, at
    /// `now`, a request that is (`repeatable`) or is not safe to repeat. `false`: close it and
    /// send the request on a new connection.
    #[must_use]
    pub const fn may_carry(&self, last_used: Instant, now: Instant, repeatable: bool) -> bool {
        // Saturating: a limit too long to add is never reached.
        repeatable || now.as_millis() < last_used.saturating_add(self.idle_limit).as_millis()
    }

    /// Whether a request that went on a reused connection, which ended before the first byte of
    /// an answer, may be sent once more on a new connection: only if it is safe to repeat
    /// (`repeatable`). A request sent on a new connection is never resent so: that failure is
    /// the server's, for the retry policy to judge.
    #[must_use]
    pub const fn may_resend(repeatable: bool) -> bool {
        repeatable
    }

    /// Whether a token request its client authenticates with `auth` is safe to repeat: yes,
    /// but with `client_secret_jwt`. Its client assertion's `jti` may be used once (RFC 7523
    /// §3); a request sent again unchanged repeats it, and a server that keeps track refuses
    /// the second as a replay, as `invalid_client`, which stops token requests until the
    /// credentials change. Not resent, such a request fails in transport and the next one,
    /// after the lifecycle's backoff, is signed anew.
    #[must_use]
    pub fn token_request_repeatable(auth: crate::oauth::AuthMethod) -> bool {
        auth != crate::oauth::AuthMethod::ClientSecretJwt
    }
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive { idle_limit: KeepAlive::DEFAULT_IDLE_LIMIT }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn a_request_not_safe_to_repeat_goes_only_on_a_connection_idle_less_than_the_limit() {
        let rule = KeepAlive { idle_limit: Duration::from_millis(4_000) };
        assert!(rule.may_carry(at(1_000), at(1_000), false), "just used");
        assert!(rule.may_carry(at(1_000), at(4_999), false));
        assert!(!rule.may_carry(at(1_000), at(5_000), false), "idle for the limit: new connection");
        assert!(!rule.may_carry(at(1_000), at(90_000), false));
    }

    #[test]
    fn a_token_request_is_repeatable_but_one_with_a_single_use_assertion() {
        use crate::oauth::AuthMethod;
        assert!(KeepAlive::token_request_repeatable(AuthMethod::ClientSecretBasic));
        assert!(KeepAlive::token_request_repeatable(AuthMethod::ClientSecretPost));
        assert!(!KeepAlive::token_request_repeatable(AuthMethod::ClientSecretJwt));
    }

    #[test]
    fn a_request_safe_to_repeat_goes_on_any_kept_alive_connection() {
        let rule = KeepAlive { idle_limit: Duration::from_millis(4_000) };
        for now in [1_000, 5_000, u64::MAX] {
            assert!(rule.may_carry(at(1_000), at(now), true), "{now}");
        }
    }

    #[test]
    fn a_zero_limit_gives_every_request_not_safe_to_repeat_a_new_connection() {
        let rule = KeepAlive { idle_limit: Duration::ZERO };
        assert!(!rule.may_carry(at(7), at(7), false));
        assert!(rule.may_carry(at(7), at(7), true));
    }

    #[test]
    fn a_clock_behind_the_last_use_counts_as_no_idle_time() {
        // Saturating: an instant before the last use (a clock read out of order) is no idle
        // time, not a wrapped-around age.
        let rule = KeepAlive::default();
        assert!(rule.may_carry(at(10_000), at(9_000), false));
        let unbounded = KeepAlive { idle_limit: Duration::MAX };
        assert!(unbounded.may_carry(Instant::ZERO, Instant::from_secs(365 * 86_400), false));
    }

    #[test]
    fn only_a_request_safe_to_repeat_is_resent_after_its_reused_connection_closed() {
        assert!(KeepAlive::may_resend(true));
        assert!(!KeepAlive::may_resend(false));
    }

    #[test]
    fn what_is_safe_to_repeat_is_what_the_retry_policy_retries() {
        use crate::http::Method;
        use crate::session::{HostKey, RequestSpec};
        for method in [Method::Get, Method::Head, Method::Put, Method::Delete, Method::Options] {
            assert!(RequestSpec::new(method, HostKey(1)).is_repeatable(), "{method:?}");
        }
        for method in [Method::Post, Method::Patch, Method::Other] {
            let spec = RequestSpec::new(method, HostKey(1));
            assert!(!spec.is_repeatable(), "{method:?}");
            assert!(RequestSpec { idempotent: true, ..spec }.is_repeatable(), "{method:?} marked");
        }
    }

    #[test]
    fn the_default_is_below_the_shortest_common_server_idle_timeout() {
        assert_eq!(KeepAlive::default().idle_limit, KeepAlive::DEFAULT_IDLE_LIMIT);
        assert!(KeepAlive::DEFAULT_IDLE_LIMIT < Duration::from_secs(5));
    }
}
