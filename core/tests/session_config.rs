//! A session is built only from a configuration whose every part passes its check: a bad part
//! is refused by `Session::new` (and `new_in`) with an error that names the part and the field.

use credflow_core::Duration;
use credflow_core::breaker::BreakerConfigError;
use credflow_core::ratelimit::pacer::PacerConfigError;
use credflow_core::retry::backoff::BackoffError;
use credflow_core::secret::Credentials;
use credflow_core::session::{Session, SessionConfig, SetupError, TokenEndpoint};

type Small = Session<64, 1, 64>;

fn build(config: SessionConfig) -> Result<Small, SetupError> {
    let credentials = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new("https://login.example/oauth/token").unwrap();
    Session::new(credentials, endpoint, config, 1)
}

/// Each bad part, the error it must give, and the words its message must contain.
fn bad_configs() -> Vec<(SessionConfig, SetupError, [&'static str; 2])> {
    let mut cases = Vec::new();
    let mut c = SessionConfig::default();
    c.retry.backoff.base = Duration::ZERO;
    cases.push((c, SetupError::RetryBackoff(BackoffError::ZeroBase), ["retry", "base"]));
    let mut c = SessionConfig::default();
    c.retry.backoff.multiplier = 0;
    cases.push((
        c,
        SetupError::RetryBackoff(BackoffError::ZeroMultiplier),
        ["retry", "multiplier"],
    ));
    let mut c = SessionConfig::default();
    c.token_breaker.half_open_probes = 0;
    let e = SetupError::TokenBreaker(BreakerConfigError::ZeroProbes);
    cases.push((c, e, ["token_breaker", "half_open_probes"]));
    let mut c = SessionConfig::default();
    c.api_breaker.consecutive_failures = 0;
    c.api_breaker.window = 0;
    let e = SetupError::ApiBreaker(BreakerConfigError::NeverTrips);
    cases.push((c, e, ["api_breaker", "consecutive_failures"]));
    let mut c = SessionConfig::default();
    c.api_breaker.cooldown = Duration::from_mins(10);
    let (cooldown, max) = (c.api_breaker.cooldown, c.api_breaker.max_cooldown);
    let e = SetupError::ApiBreaker(BreakerConfigError::BadCooldown { cooldown, max });
    cases.push((c, e, ["api_breaker", "max_cooldown"]));
    let mut c = SessionConfig::default();
    c.pacer.background_floor_permille = 1000;
    let field = "background_floor_permille";
    let e = SetupError::Pacer(PacerConfigError::ShareTooLarge { field, permille: 1000 });
    cases.push((c, e, ["pacer", field]));
    let mut c = SessionConfig::default();
    c.pacer.burst = 0;
    cases.push((c, SetupError::Pacer(PacerConfigError::ZeroBurst), ["pacer", "burst"]));
    cases
}

#[test]
fn the_default_configuration_builds() {
    assert_eq!(SessionConfig::default().validate(), Ok(()));
    assert!(build(SessionConfig::default()).is_ok());
}

#[test]
fn a_bad_part_is_refused_naming_the_part_and_the_field() {
    for (config, expected, words) in bad_configs() {
        assert_eq!(config.validate(), Err(expected));
        let error = build(config.clone()).map(|_| ()).unwrap_err();
        assert_eq!(error, expected);
        let text = error.to_string();
        for word in words {
            assert!(text.contains(word), "{word} not named: {text}");
        }
        // `new_in` refuses it too, and leaves its slot as it was.
        let mut slot: Option<Small> = None;
        let credentials = Credentials::from_strs("client", "secret").unwrap();
        let endpoint = TokenEndpoint::new("https://login.example/oauth/token").unwrap();
        let refused = Session::new_in(&mut slot, credentials, endpoint, config, 1).map(|_| ());
        assert_eq!(refused, Err(expected));
        assert!(slot.is_none());
    }
}
