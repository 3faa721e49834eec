//! The `credflow` binary end to end: every exit code from a real scenario against the emulator
//! on 127.0.0.1, and the demo.

use std::process::Output;
use std::time::Duration;

use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle,
    LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET,
};

const BIN: &str = env!("CARGO_BIN_EXE_credflow");

/// Runs `credflow` with a clean environment plus `env`, pointed at `emu` unless `target` is false.
async fn credflow(emu: Option<&EmulatorHandle>, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(emu) = emu {
        cmd.args(["--token-url", &emu.token_url(), "--api-base", &emu.api_base()]);
    }
    cmd.args(args);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("credflow finished")
        .expect("credflow ran")
}

fn demo_creds() -> Vec<(&'static str, &'static str)> {
    vec![("GENESYS_CLIENT_ID", DEMO_CLIENT_ID), ("GENESYS_CLIENT_SECRET", DEMO_CLIENT_SECRET)]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    Emulator::start(config.with_request_log(false)).await.unwrap()
}

#[tokio::test]
async fn token_prints_the_token_and_exits_0() {
    let emu = emulator(EmulatorConfig::default()).await;
    let out = credflow(Some(&emu), &demo_creds(), &["token"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout);
    assert!(!token.trim().is_empty() && !token.trim().contains(' '));
    assert_eq!(emu.counters().token.requests, 1);
}

#[tokio::test]
async fn token_json_describes_the_token_without_the_secret() {
    let emu = emulator(EmulatorConfig::default()).await;
    let out = credflow(Some(&emu), &demo_creds(), &["token", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["expires_in"].as_u64().unwrap() > 86_000);
    assert!(json["credential_fingerprint"].as_str().unwrap().starts_with("fp:"));
    assert!(!text(&out.stdout).contains(DEMO_CLIENT_SECRET));
}

/// `token --json` is the token's description (its help and the README say so: type, expiry,
/// scope, fingerprints), for logs and diagnosis: it printed the access token too, so that what
/// was pasted into a ticket or a log as metadata handed out the service's identity.
#[tokio::test]
async fn token_json_holds_no_token() {
    const GRANTED: &str = "granted-token-0123456789abcdef";
    let server = credflow_emulator::hostile::Hostile::start(|_| {
        credflow_emulator::hostile::Reply::json(
            200,
            &format!(r#"{{"access_token":"{GRANTED}","token_type":"bearer","expires_in":3600}}"#),
        )
    });
    let token_url = server.url("/oauth/token");
    let args = ["--token-url", token_url.as_str(), "token"];
    let out = credflow(None, &demo_creds(), &args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), GRANTED, "plain `token` still prints it");

    let out = credflow(None, &demo_creds(), &[&args[..], &["--json"]].concat()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains(GRANTED), "the token in `token --json`: {stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(json.get("access_token").is_none(), "{json}");
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["token_fingerprint"].as_str().unwrap().starts_with("fp:"), "{json}");
}

/// clap printed an `env`-backed flag's variable with its value in the help
/// (`[env: CREDFLOW_TOKEN_URL=https://user:hunter2@…]`): whoever pasted `--help` into a ticket
/// pasted the environment's values too. The variables are still named, their values not shown.
#[tokio::test]
async fn help_names_the_variables_but_not_their_values() {
    let env = [
        ("CREDFLOW_TOKEN_URL", "https://user:hunter2@login.example/oauth/token"),
        ("CREDFLOW_API_BASE", "https://user:hunter2@api.example"),
        ("CREDFLOW_LOCAL_KEY_FILE", "/run/hunter2/local-key"),
        ("CREDFLOW_FLEET_KEY_FILE", "/run/hunter2/fleet-key"),
    ];
    for args in [&["--help"][..], &["-h"], &["token", "--help"], &["proxy", "--help"]] {
        let out = credflow(None, &env, args).await;
        let help = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
        assert!(!help.contains("hunter2"), "{args:?} shows a variable's value: {help}");
        for (name, _) in &env[..2] {
            assert!(help.contains(name), "{args:?} does not name {name}: {help}");
        }
        if args[0] == "proxy" {
            for (name, _) in &env[2..] {
                assert!(help.contains(name), "{args:?} does not name {name}: {help}");
            }
        }
    }
}

#[tokio::test]
async fn get_prints_the_body_and_jwt_auth_works_too() {
    let emu = emulator(EmulatorConfig::default()).await;
    let out = credflow(
        Some(&emu),
        &demo_creds(),
        &["--auth-method", "jwt", "get", "/api/v2/routing/queues"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(body["entities"].is_array(), "{body}");
}

#[tokio::test]
async fn missing_configuration_exits_2_naming_the_variable() {
    let emu = emulator(EmulatorConfig::default()).await;
    let out = credflow(Some(&emu), &[("GENESYS_CLIENT_SECRET", "s")], &["token"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("GENESYS_CLIENT_ID"), "{}", text(&out.stderr));
    let out = credflow(None, &demo_creds(), &["--env", "mypurecloud.co", "token"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean mypurecloud.com"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn wrong_secret_exits_3_with_code_and_correlation_id() {
    let emu = emulator(EmulatorConfig::default()).await;
    let env = [("GENESYS_CLIENT_ID", DEMO_CLIENT_ID), ("GENESYS_CLIENT_SECRET", "wrong-secret")];
    let out = credflow(Some(&emu), &env, &["token"]).await;
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid_client")
            && err.contains("correlation id")
            && err.contains("likely cause"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret"));
}

#[tokio::test]
async fn missing_permission_exits_4_and_names_it() {
    let emu = emulator(EmulatorConfig::default()).await;
    let env = [
        ("GENESYS_CLIENT_ID", LIMITED_CLIENT_ID),
        ("GENESYS_CLIENT_SECRET", LIMITED_CLIENT_SECRET),
    ];
    let args = ["request", "POST", "/api/v2/analytics/conversations/details/query", "--data", "{}"];
    let out = credflow(Some(&emu), &env, &args).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("analytics:conversationDetail:view") && err.contains("missing.permissions"),
        "{err}"
    );
}

#[tokio::test]
async fn daily_limit_exits_5_at_once_and_names_the_wait() {
    let emu =
        emulator(EmulatorConfig::default().with_daily_limit(1, Duration::from_secs(86_400))).await;
    let first = credflow(Some(&emu), &demo_creds(), &["get", "/api/v2/routing/queues"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let out = credflow(Some(&emu), &demo_creds(), &["get", "/api/v2/routing/queues"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("retry in") && err.contains("quota"), "{err}");
}

#[tokio::test]
async fn check_passes_and_tells_a_wrong_region_apart() {
    let emu = emulator(EmulatorConfig::default()).await;
    let out =
        credflow(Some(&emu), &demo_creds(), &["check", "--probe", "/api/v2/routing/queues"]).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("all checks passed"));

    // Token from one environment, API of another: the fresh token is rejected.
    let other = emulator(EmulatorConfig::default().with_environment("mypurecloud.ie")).await;
    let mut env = demo_creds();
    let token_url = emu.token_url();
    let api_base = other.api_base();
    env.push(("CREDFLOW_TOKEN_URL", &token_url));
    env.push(("CREDFLOW_API_BASE", &api_base));
    let out = credflow(None, &env, &["check"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).contains("wrong region"), "{}", text(&out.stdout));

    // A 403 explained by the missing permission.
    let env = [
        ("GENESYS_CLIENT_ID", LIMITED_CLIENT_ID),
        ("GENESYS_CLIENT_SECRET", LIMITED_CLIENT_SECRET),
    ];
    let probe = "POST /api/v2/analytics/conversations/details/query";
    let out = credflow(
        Some(&emu),
        &env,
        &["check", "--probe", "/api/v2/routing/queues", "--probe", probe],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("lacks permission analytics:conversationDetail:view"), "{stdout}");
}

#[tokio::test]
async fn unknown_environment_in_check_suggests_the_nearest() {
    let out = credflow(None, &demo_creds(), &["--env", "eu-west1", "check"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("eu-west-1"), "{}", text(&out.stdout));
}

#[tokio::test]
async fn the_demo_runs_and_exits_0() {
    let out = credflow(None, &[], &["demo"]).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in ["single flight", "retried once", "Retry-After", "OPEN", "recovered", "Summary"]
    {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}

/// A configuration the emulator refuses (a rate limit of zero) is a usage error: exit 2, as
/// the README's table says for configuration (it was 1, "the API answered an error").
#[tokio::test]
async fn an_emulator_configuration_it_refuses_exits_2() {
    let out = credflow(None, &[], &["emulator", "--port", "0", "--rate-limit", "0"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid emulator configuration"), "{err}");
}

/// Fleet mode refuses a plain `redis://` URL to a host that is not loopback (the password and
/// the tokens would cross the network in clear text) before resolving it (`.invalid` never
/// resolves), naming the way out and not the password. (`--allow-insecure-redis` is not
/// started here: the proxy would then resolve the host; the library's
/// `plain_redis_beyond_loopback_is_refused_unless_allowed` holds what the flag sets.)
#[tokio::test]
async fn the_proxy_refuses_plain_redis_beyond_loopback() {
    let emu = emulator(EmulatorConfig::default()).await;
    let dir = std::env::temp_dir().join(format!("credflow-insecure-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("fleet.key");
    std::fs::write(&key_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let key_file = key_file.to_str().unwrap();
    let mut env = demo_creds();
    env.push(("CREDFLOW_REDIS_URL", "redis://fleet:hunter2@redis.invalid:6379/0"));
    let args = ["proxy", "--listen", "127.0.0.1:0", "--fleet-key-file", key_file];
    let out = credflow(Some(&emu), &env, &args).await;
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("rediss://") && stderr.contains("redis.invalid"), "{stderr}");
    assert!(stderr.contains("--allow-insecure-redis"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
