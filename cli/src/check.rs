//! `credflow check`: diagnose a setup step by step, and say what to fix.

use std::time::Instant;

use credflow_core::env::parse_environment;
use credflow_core::http::url::Url;
use credflow_core::session::ApiErrorKind;
use credflow_reqwest::{Client, Error, ErrorKind};

use crate::output::outln;
use crate::{Failure, TargetArgs, build_config};

fn ok(text: impl AsRef<str>) {
    outln!("  ok    {}", text.as_ref());
}

fn bad(text: impl AsRef<str>) {
    outln!("  FAIL  {}", text.as_ref());
}

fn hint(text: impl AsRef<str>) {
    outln!("        {}", text.as_ref());
}

/// Runs the checks; the exit code is that of the first failing check.
pub(crate) async fn run(target: &TargetArgs, probes: &[String]) -> Result<(), Failure> {
    outln!("credflow check");
    // 1. Where to: the environment name, with a suggestion when it is unknown.
    let env_name = match (&target.token_url, &target.api_base) {
        (Some(_), _) | (_, Some(_)) => None,
        _ => Some(target.env.clone().unwrap_or_else(|| "mypurecloud.com".to_owned())),
    };
    if let Some(name) = &env_name {
        match parse_environment(name) {
            Ok(env) => ok(format!(
                "environment {} ({}): token {}, API {}",
                env.domain, env.region, env.token_url, env.api_base
            )),
            Err(e) => {
                bad(format!("environment {name:?}: {e}"));
                return Err(Failure::usage(format!("unknown environment {name:?}")));
            }
        }
    }
    // Refuses userinfo and plain http off loopback before anything below prints a URL.
    let config = match build_config(target) {
        Ok(config) => config,
        Err(failure) => {
            bad(&failure.message);
            return Err(failure);
        }
    };
    if env_name.is_none() {
        let (token_url, api_base) = (config.target.token_url(), config.target.api_base());
        ok(format!("custom OAuth2 server: token {token_url}, API {}", api_base.unwrap_or("none")));
        let insecure = |url: &&str| Url::parse(url).is_ok_and(|u| u.is_insecure());
        if [Some(token_url), api_base].iter().flatten().any(insecure) {
            hint("plain http to a host that is not loopback (--allow-insecure-http): the");
            hint("credentials and tokens cross the network in clear text; use https");
        }
    }
    ok(format!(
        "credentials for client {} ({}), auth method {}",
        config.credentials.id,
        config.credentials.fingerprint(),
        config.auth_method.as_str()
    ));
    let client = Client::new(config)?;

    // 2. A token.
    let started = Instant::now();
    let token = match client.token().await {
        Ok(token) => token,
        Err(e) => {
            bad(format!("token: {e}"));
            explain(&e, env_name.as_deref());
            return Err(e.into());
        }
    };
    ok(format!(
        "token obtained in {} ms: bearer, expires in {} s ({})",
        started.elapsed().as_millis(),
        token.expires_in().as_secs(),
        token.fingerprint()
    ));

    // 3. The API accepts it.
    let verify = client
        .request(reqwest::Method::HEAD, "/api/v2/tokens/me")?
        .build()
        .map_err(|e| Failure::usage(e.to_string()))?;
    match client.send(verify).await {
        Ok(response) if response.status().is_success() => {
            ok("token accepted by the API (HEAD /api/v2/tokens/me)")
        }
        Ok(response) => {
            bad(format!("HEAD /api/v2/tokens/me answered HTTP {}", response.status()));
            return Err(Failure { code: 1, message: "token verification failed".to_owned() });
        }
        Err(e) => {
            bad(format!("token verification: {e}"));
            explain(&e, env_name.as_deref());
            return Err(e.into());
        }
    }

    // 4. Permissions, for the paths asked about.
    let mut first_failure = None;
    for probe in probes {
        let (method, path) = match probe.split_once(' ') {
            Some((method, path)) => (method.trim().to_ascii_uppercase(), path.trim()),
            None => ("GET".to_owned(), probe.as_str()),
        };
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Failure::usage(format!("--probe {probe:?}: unknown method")))?;
        let mut builder = client.request(method.clone(), path)?;
        if matches!(method, reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH) {
            builder = builder.header("Content-Type", "application/json").body("{}");
        }
        let request = builder.build().map_err(|e| Failure::usage(e.to_string()))?;
        match client.send(request).await {
            Ok(response) if response.status().is_success() => {
                ok(format!("{method} {path}: HTTP {}", response.status()))
            }
            Ok(response) => {
                bad(format!("{method} {path}: HTTP {}", response.status()));
                first_failure
                    .get_or_insert(Failure { code: 1, message: format!("{method} {path} failed") });
            }
            Err(e) => {
                bad(format!("{method} {path}: {e}"));
                explain(&e, env_name.as_deref());
                first_failure.get_or_insert(e.into());
            }
        }
    }
    match first_failure {
        Some(failure) => Err(failure),
        None => {
            outln!("all checks passed");
            Ok(())
        }
    }
}

/// Tells apart the usual causes.
fn explain(e: &Error, env: Option<&str>) {
    match (e.kind(), e.api_error().map(|a| a.kind), e.forbidden()) {
        (ErrorKind::CredentialsRejected, Some(ApiErrorKind::Unauthorized), _) => {
            hint("a fresh token was rejected by the API: the token and API hosts belong to");
            hint("different environments (wrong region), or the OAuth client was disabled");
        }
        (ErrorKind::CredentialsRejected, _, _) => {
            hint(
                "bad credentials: check the client id and secret, and that the OAuth client is active;",
            );
            match env {
                Some(env) => hint(format!(
                    "or the client lives in another region than {env} (environments are isolated)"
                )),
                None => hint("or the client is registered with another server"),
            }
        }
        (ErrorKind::Permission, _, Some(d)) => {
            hint(format!("{d}: add the permission to a role of the OAuth client"));
        }
        (ErrorKind::Permission, _, None) => {
            hint("a requested scope is not allowed for this client")
        }
        _ => {
            if let Some(cause) = e.likely_cause() {
                hint(format!("likely cause: {cause}"));
            }
        }
    }
    if let Some(id) = e.correlation_id() {
        hint(format!("correlation id {id}"));
    }
}
