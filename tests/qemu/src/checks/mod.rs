//! The checks, by area, and their registry.

mod arch;
mod breaker;
mod http;
mod oauth;
mod ratelimit;
mod retry;
mod secret;
mod session;
mod snapshot;
mod text;
mod time;

use crate::Check;

/// `registry![area::name, …]`: a [`Check`] per function, named after it.
macro_rules! registry {
    ($($area:ident :: $name:ident),* $(,)?) => {
        &[$(Check { area: stringify!($area), name: stringify!($name), run: $area::$name }),*]
    };
}

/// Every check, cheapest areas first so a broken build fails fast.
pub(crate) const ALL: &[Check] = registry![
    arch::wide_arithmetic_at_the_limits,
    arch::splitmix64_known_answers,
    arch::fnv1a_host_keys,
    arch::fingerprints_known_answers,
    arch::usize_bounds_saturate,
    time::saturating_arithmetic,
    time::display_is_human,
    time::wall_clock_maps_both_ways,
    secret::credential_and_token_bounds,
    secret::secrets_never_print,
    oauth::basic_authorization_vectors,
    oauth::form_encoding,
    oauth::token_request_rfc6749_bytes,
    oauth::token_request_post_body,
    oauth::token_request_refusals_and_exact_size,
    oauth::hs256_rfc7515_a1,
    oauth::client_secret_jwt_assertion,
    oauth::token_response_reading,
    oauth::token_response_hostile_tokens,
    oauth::token_response_expires_in_forms,
    oauth::token_response_scope_sets,
    oauth::token_response_not_a_token,
    oauth::token_error_bad_credentials,
    oauth::token_error_classes,
    oauth::token_error_text_bounded,
    http::http_date_formats_and_32_bit_epochs,
    http::http_date_calendar_and_garbage,
    http::http_date_round_trip_sweep,
    http::retry_after_forms,
    http::retry_after_genesys_body,
    http::genesys_error_permissions,
    http::genesys_error_oddities_and_depth,
    http::urls,
    http::bearer_challenges,
    http::response_classification,
    http::environments,
    ratelimit::genesys_dialect,
    ratelimit::epoch_resets,
    ratelimit::ietf_dialects,
    ratelimit::pacer_spacing_and_burst,
    ratelimit::pacer_reserve,
    ratelimit::pacer_exhaustion_and_429,
    retry::backoff_ceilings,
    retry::backoff_jitter_bounds,
    retry::retry_budget,
    retry::retry_decisions,
    breaker::trips_and_half_opens,
    breaker::cooldown_doubles_to_the_cap,
    breaker::failure_ratio_window,
    snapshot::sealed_bytes_and_alignment,
    snapshot::tampering_is_refused,
    session::timeline,
    session::hundred_days_of_refreshes,
    session::token_endpoint_outage,
    session::invalid_client_stops,
    session::seal_and_restore_across_a_reboot,
    session::daily_quota_fails_fast,
    session::forbidden_deadline_and_priorities,
];

/// A check that always fails (feature `canary`): proves a failure reaches the exit status.
#[cfg(feature = "canary")]
pub(crate) const CANARY: Check =
    Check { area: "canary", name: "deliberately_wrong_expectation", run: canary };

#[cfg(feature = "canary")]
fn canary() -> crate::CheckResult {
    // A wrong expected value, as a broken build of the core would produce.
    ensure_eq!(credflow_core::Duration::from_secs(1).as_millis(), 1001);
    Ok(())
}
