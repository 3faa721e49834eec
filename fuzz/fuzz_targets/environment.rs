//! `env::parse_environment` on arbitrary UTF-8 (the whole input).
//!
//! Checked: no panic, `Display` of errors included; an accepted name denotes one environment,
//! which its domain, region, short code and URLs all denote too; a suggestion is itself a
//! valid environment; blank input is `Empty` and nothing else is.
#![no_main]

use credflow_core::env::{EnvError, Environment, parse_environment};
use credflow_fuzz::show;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = core::str::from_utf8(data) else { return };
    match parse_environment(input) {
        Ok(env) => {
            let _ = show(env);
            same(env, env.domain);
            same(env, env.region);
            same(env, &env.region.replace('-', "_").to_uppercase());
            same(env, env.login_host);
            same(env, env.api_host);
            same(env, env.token_url);
            same(env, env.api_base);
            if let Some(code) = env.short_code() {
                same(env, code);
            }
        }
        Err(e) => {
            let _ = show(&e);
            assert_eq!(e == EnvError::Empty, input.trim().is_empty());
            if let EnvError::Unknown { suggestion: Some(env) } = e {
                same(env, env.domain);
            }
        }
    }
});

fn same(env: &'static Environment, name: &str) {
    assert_eq!(parse_environment(name), Ok(env), "{name:?} does not denote {}", env.region);
}
