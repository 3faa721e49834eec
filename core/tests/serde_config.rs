//! The `serde` feature: the session's configuration read from and written to a service's own
//! configuration file (durations as `"90s"`), events as structured log records.
#![cfg(feature = "serde")]

use credflow_core::Duration;
use credflow_core::Instant;
use credflow_core::lifecycle::{Generation, LifecycleEvent};
use credflow_core::oauth::AuthMethod;
use credflow_core::session::{Event, SessionConfig};

fn read(json: &str) -> Result<SessionConfig, serde_json_core::de::Error> {
    serde_json_core::from_str::<SessionConfig>(json).map(|(config, _)| config)
}

#[test]
fn a_partial_file_overrides_only_what_it_names() {
    let config = read(
        r#"{"lifecycle":{"refresh_margin":"90s"},"retry":{"max_retries":5,"max_wait":"2m"},
            "token_breaker":{"cooldown":"250ms"},"default_expires_in":"1h"}"#,
    )
    .unwrap();
    let defaults = SessionConfig::default();
    assert_eq!(config.lifecycle.refresh_margin, Duration::from_secs(90));
    assert_eq!(config.retry.max_retries, 5);
    assert_eq!(config.retry.max_wait, Duration::from_secs(120));
    assert_eq!(config.token_breaker.cooldown, Duration::from_millis(250));
    // What the file leaves out keeps the session's defaults, the token breaker's own included.
    assert_eq!(config.token_breaker.max_cooldown, defaults.token_breaker.max_cooldown);
    assert_eq!(config.retry.backoff, defaults.retry.backoff);
    assert_eq!(config.pacer, defaults.pacer);
    assert_eq!(format!("{:?}", read("{}").unwrap()), format!("{defaults:?}"));
}

#[test]
fn the_defaults_write_out_and_read_back_the_same() {
    let defaults = SessionConfig::default();
    let text: heapless::String<4096> = serde_json_core::to_string(&defaults).unwrap();
    assert!(text.contains(r#""max_cooldown":"1m""#), "{text}");
    assert!(text.contains(r#""default_expires_in":"1h""#), "{text}");
    assert_eq!(format!("{:?}", read(&text).unwrap()), format!("{defaults:?}"));
}

#[test]
fn typos_and_unitless_durations_are_refused() {
    // A misspelt field would otherwise be ignored silently, leaving the default in force.
    assert!(read(r#"{"lifecycle":{"refresh_margn":"90s"}}"#).is_err());
    // Seconds or milliseconds? Not guessed.
    assert!(read(r#"{"lifecycle":{"refresh_margin":90}}"#).is_err());
    assert!(read(r#"{"lifecycle":{"refresh_margin":"90"}}"#).is_err());
    assert!(read(r#"{"lifecycle":{"refresh_margin":"1.5s"}}"#).is_err());
}

#[test]
fn auth_methods_are_named_as_in_rfc_7591() {
    for (method, name) in [
        (AuthMethod::ClientSecretBasic, "\"client_secret_basic\""),
        (AuthMethod::ClientSecretPost, "\"client_secret_post\""),
        (AuthMethod::ClientSecretJwt, "\"client_secret_jwt\""),
    ] {
        let text: heapless::String<64> = serde_json_core::to_string(&method).unwrap();
        assert_eq!(text, name);
        assert_eq!(serde_json_core::from_str::<AuthMethod>(name).unwrap().0, method);
    }
}

#[test]
fn events_serialize_as_structured_records() {
    let event = Event::Token(LifecycleEvent::TokenAcquired {
        generation: Generation(3),
        life: Duration::from_secs(3600),
        refresh_at: Instant::from_millis(3_000_000),
        usable_until: Instant::from_millis(3_500_000),
    });
    let text: heapless::String<256> = serde_json_core::to_string(&event).unwrap();
    assert_eq!(
        text,
        r#"{"token":{"token_acquired":{"generation":3,"life":"1h","refresh_at":3000000,"usable_until":3500000}}}"#
    );
}

#[cfg(feature = "recheck")]
#[test]
fn the_recheck_after_a_rejection_reads_as_a_duration_or_null_for_off() {
    let config = read(r#"{"lifecycle":{"recheck_after":"30s","recheck_cap":"10m"}}"#).unwrap();
    assert_eq!(config.lifecycle.recheck_after, Some(Duration::from_secs(30)));
    assert_eq!(config.lifecycle.recheck_cap, Duration::from_mins(10));
    let off = read(r#"{"lifecycle":{"recheck_after":null}}"#).unwrap();
    assert_eq!(off.lifecycle.recheck_after, None);
    let text: heapless::String<4096> =
        serde_json_core::to_string(&SessionConfig::default()).unwrap();
    assert!(text.contains(r#""recheck_after":"5m","recheck_cap":"1h""#), "{text}");
}
