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
//! authorization server ([`KeepAlive::token_request_repeat`]). One signed with
//! `client_secret_jwt` is safe to repeat only **signed anew** ([`Repeat::ReSigned`]): sent again
//! unchanged, it repeats its assertion's `jti`, which a server may accept once only (RFC 7523 §3),
//! and refuse the second time as `invalid_client`; a new assertion (a new `jti`, `iat` and `exp`,
//! from [`Session::resign_token_request`](crate::session::Session::resign_token_request)) is
//! another request, which at worst gets a second token. Resent so, a token request lost with a
//! closed connection costs a new connection, not a failed request and the lifecycle's backoff
//! (`retry_base`, 1 s) before the next. It is resent once: the resend goes on a new connection,
//! which is never resent from, and the session signs each token request anew once at most.
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
//!
//! ```
//! use credflow_core::http::keep_alive::{KeepAlive, Repeat};
//! use credflow_core::oauth::AuthMethod;
//!
//! // A token request goes on any kept-alive connection; resent, it is signed anew if it
//! // carries a client_secret_jwt assertion.
//! assert_eq!(KeepAlive::token_request_repeat(AuthMethod::ClientSecretBasic), Repeat::AsSent);
//! // (Without the `jwt` feature there is no assertion to sign: such a request is refused.)
//! let jwt = if cfg!(feature = "jwt") { Repeat::ReSigned } else { Repeat::AsSent };
//! assert_eq!(KeepAlive::token_request_repeat(AuthMethod::ClientSecretJwt), jwt);
//! assert!(Repeat::ReSigned.is_repeatable() && !Repeat::Never.is_repeatable());
//! ```

use crate::oauth::AuthMethod;
use crate::time::{Duration, Instant};

/// Whether, and how, a request may be sent again on a new connection when the reused
/// connection it went on ends before the first byte of an answer: see the [module](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Repeat {
    /// Not safe to repeat (a `POST` not marked idempotent): it goes on a kept-alive connection
    /// only within [`KeepAlive::idle_limit`] and is never sent again.
    Never,
    /// Safe to repeat as sent: an idempotent request, or a token request authenticated with
    /// the client secret itself (Basic or in the body). Sent again, the same bytes.
    AsSent,
    /// Safe to repeat signed anew: a token request with a `client_secret_jwt` assertion, whose
    /// `jti` may be single-use (RFC 7523 §3). Sent again only as encoded anew by
    /// [`Session::resign_token_request`](crate::session::Session::resign_token_request).
    ReSigned,
}

impl Repeat {
    /// [`AsSent`](Self::AsSent) for a request safe to repeat (`repeatable`), else
    /// [`Never`](Self::Never).
    #[must_use]
    pub const fn from_repeatable(repeatable: bool) -> Self {
        if repeatable { Repeat::AsSent } else { Repeat::Never }
    }

    /// Whether the request is safe to repeat, in one way or the other: it may go on a
    /// kept-alive connection whatever its idle time ([`KeepAlive::may_carry`]), and be sent
    /// again on a new one ([`KeepAlive::may_resend`]).
    #[must_use]
    pub const fn is_repeatable(self) -> bool {
        !matches!(self, Repeat::Never)
    }
}

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

    /// How a token request its client authenticates with `auth` may be repeated: as sent, but
    /// with `client_secret_jwt` signed anew ([`Repeat::ReSigned`]). Its client assertion's `jti`
    /// may be used once (RFC 7523 §3); a request sent again unchanged repeats it, and a server
    /// that keeps track refuses the second as a replay, as `invalid_client`: a rejection, which
    /// stops token requests until the recheck (feature `recheck`) or a change of credentials.
    ///
    /// Built without the `jwt` feature, no request with an assertion is ever sent
    /// ([`EncodeError::JwtDisabled`](crate::oauth::EncodeError::JwtDisabled)) and none is signed
    /// anew: every token request is [`Repeat::AsSent`], and an adapter's resend of one signed
    /// anew is left out of its firmware.
    #[must_use]
    pub const fn token_request_repeat(auth: AuthMethod) -> Repeat {
        match auth {
            AuthMethod::ClientSecretJwt if cfg!(feature = "jwt") => Repeat::ReSigned,
            _ => Repeat::AsSent,
        }
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
    fn a_token_request_is_repeatable_one_with_a_single_use_assertion_signed_anew() {
        assert_eq!(KeepAlive::token_request_repeat(AuthMethod::ClientSecretBasic), Repeat::AsSent);
        assert_eq!(KeepAlive::token_request_repeat(AuthMethod::ClientSecretPost), Repeat::AsSent);
        let jwt = if cfg!(feature = "jwt") { Repeat::ReSigned } else { Repeat::AsSent };
        assert_eq!(KeepAlive::token_request_repeat(AuthMethod::ClientSecretJwt), jwt);
    }

    #[test]
    fn a_token_request_signed_anew_goes_on_any_kept_alive_connection_and_is_resent() {
        // Signed anew, a resend is another assertion: such a request need not avoid a
        // connection the server may be closing, as one never sent twice must.
        let rule = KeepAlive { idle_limit: Duration::from_millis(4_000) };
        let repeat = KeepAlive::token_request_repeat(AuthMethod::ClientSecretJwt);
        assert!(rule.may_carry(at(1_000), at(90_000), repeat.is_repeatable()));
        assert!(KeepAlive::may_resend(repeat.is_repeatable()));
    }

    #[test]
    fn repeat_from_a_request_safe_to_repeat_or_not() {
        assert_eq!(Repeat::from_repeatable(true), Repeat::AsSent);
        assert_eq!(Repeat::from_repeatable(false), Repeat::Never);
        assert!(Repeat::AsSent.is_repeatable() && Repeat::ReSigned.is_repeatable());
        assert!(!Repeat::Never.is_repeatable());
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
