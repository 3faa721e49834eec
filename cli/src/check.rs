//! `credflow check`: diagnose a setup step by step, and say what to fix.

use std::time::Instant;

use credflow_core::env::parse_environment;
use credflow_core::http::url::Url;
use credflow_core::session::ApiErrorKind;
use credflow_reqwest::{Client, Config, Error, ErrorKind};

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
    let (config, env_name) = check_target(target)?;
    let env_name = env_name.as_deref();
    let client = Client::new(config)?;
    check_token(&client, env_name).await?;
    check_api_accepts_token(&client, env_name).await?;
    check_probes(&client, probes, env_name).await?;
    outln!("all checks passed");
    Ok(())
}

/// Check 1, where to: the environment name (with a suggestion when it is unknown) or the custom
/// server, and the credentials. Returns the client's configuration and the environment's name
/// (`None` for a custom server).
fn check_target(target: &TargetArgs) -> Result<(Config, Option<String>), Failure> {
    let env_name = match crate::custom_urls(target) {
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
    Ok((config, env_name))
}

/// Check 2: a token.
async fn check_token(client: &Client, env_name: Option<&str>) -> Result<(), Failure> {
    let started = Instant::now();
    let token = match client.token().await {
        Ok(token) => token,
        Err(e) => {
            bad(format!("token: {}", crate::shown(client, &e)));
            explain(client, &e, env_name);
            return Err(crate::failure_of(client, e));
        }
    };
    ok(format!(
        "token obtained in {} ms: bearer, expires in {} s ({})",
        started.elapsed().as_millis(),
        token.expires_in().as_secs(),
        token.fingerprint()
    ));
    Ok(())
}

/// Check 3: the API accepts the token.
async fn check_api_accepts_token(client: &Client, env_name: Option<&str>) -> Result<(), Failure> {
    let verify = client
        .request(reqwest::Method::HEAD, "/api/v2/tokens/me")?
        .build()
        .map_err(|e| Failure::usage(e.to_string()))?;
    match crate::send_within_deadline(client, verify).await {
        Ok(response) if response.status().is_success() => {
            ok("token accepted by the API (HEAD /api/v2/tokens/me)");
            Ok(())
        }
        Ok(response) => {
            bad(format!("HEAD /api/v2/tokens/me answered HTTP {}", response.status()));
            Err(Failure { code: 1, message: "token verification failed".to_owned() })
        }
        Err(e) => {
            bad(format!("token verification: {}", crate::shown(client, &e)));
            explain(client, &e, env_name);
            Err(crate::failure_of(client, e))
        }
    }
}

/// Check 4: permissions, for the paths asked about (`--probe "[METHOD] PATH"`). Every probe runs;
/// the first that failed is the result.
async fn check_probes(
    client: &Client,
    probes: &[String],
    env_name: Option<&str>,
) -> Result<(), Failure> {
    let mut first_failure = None;
    for probe in probes {
        let (method, path) = parse_probe(probe)?;
        let mut builder = client.request(method.clone(), path)?;
        if matches!(method, reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH) {
            builder = builder.header("Content-Type", "application/json").body("{}");
        }
        let request = builder.build().map_err(|e| Failure::usage(e.to_string()))?;
        match crate::send_within_deadline(client, request).await {
            Ok(response) if response.status().is_success() => {
                ok(format!("{method} {path}: HTTP {}", response.status()))
            }
            Ok(response) => {
                bad(format!("{method} {path}: HTTP {}", response.status()));
                first_failure
                    .get_or_insert(Failure { code: 1, message: format!("{method} {path} failed") });
            }
            Err(e) => {
                bad(format!("{method} {path}: {}", crate::shown(client, &e)));
                explain(client, &e, env_name);
                first_failure.get_or_insert(crate::failure_of(client, e));
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// A probe's method (default `GET`) and path.
fn parse_probe(probe: &str) -> Result<(reqwest::Method, &str), Failure> {
    let (method, path) = match probe.split_once(' ') {
        Some((method, path)) => (method.trim().to_ascii_uppercase(), path.trim()),
        None => ("GET".to_owned(), probe),
    };
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| Failure::usage(format!("--probe {probe:?}: unknown method")))?;
    Ok((method, path))
}

/// Tells apart the usual causes.
fn explain(client: &Client, e: &Error, env: Option<&str>) {
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
            // The server's words: masked like the error's own text.
            let named = client.redact(&d.to_string()).into_owned();
            hint(format!("{named}: add the permission to a role of the OAuth client"));
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
        hint(format!("correlation id {}", client.redact(id)));
    }
}
