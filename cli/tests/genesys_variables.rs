//! `credflow` reads Genesys's own variable names (`GENESYSCLOUD_OAUTHCLIENT_ID`, `_SECRET`,
//! `GENESYSCLOUD_REGION`) beside the guide's; both set to different values is refused, naming
//! both, before anything is sent.

use std::process::Output;
use std::time::Duration;

use credflow_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig};

const BIN: &str = env!("CARGO_BIN_EXE_credflow");

async fn credflow(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("credflow finished")
        .expect("credflow ran")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn genesys_tooling_names_get_a_token() {
    let emu = Emulator::start(EmulatorConfig::default().with_request_log(false)).await.unwrap();
    let env = [
        ("GENESYSCLOUD_OAUTHCLIENT_ID", DEMO_CLIENT_ID),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", DEMO_CLIENT_SECRET),
    ];
    let out = credflow(&env, &["token", "--token-url", &emu.token_url()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).trim().is_empty());
    assert_eq!(emu.counters().token.requests, 1);
}

#[tokio::test]
async fn both_names_with_different_values_are_refused_before_anything_is_sent() {
    let emu = Emulator::start(EmulatorConfig::default().with_request_log(false)).await.unwrap();
    let token_url = emu.token_url();
    let creds =
        [("GENESYS_CLIENT_ID", DEMO_CLIENT_ID), ("GENESYS_CLIENT_SECRET", DEMO_CLIENT_SECRET)];
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("GENESYSCLOUD_OAUTHCLIENT_ID", "someone-else")],
            "GENESYS_CLIENT_ID and GENESYSCLOUD_OAUTHCLIENT_ID",
        ),
        (
            &[("GENESYSCLOUD_OAUTHCLIENT_SECRET", "another-secret")],
            "GENESYS_CLIENT_SECRET and GENESYSCLOUD_OAUTHCLIENT_SECRET",
        ),
        (
            &[("GENESYS_ENV_NAME", "mypurecloud.ie"), ("GENESYSCLOUD_REGION", "us-east-1")],
            "GENESYS_ENV_NAME and GENESYSCLOUD_REGION",
        ),
    ];
    for (extra, named) in cases {
        let env: Vec<_> = creds.iter().chain(extra).copied().collect();
        // The environment case has no --token-url: it is refused before any Genesys host
        // could be contacted.
        let args: &[&str] = if named.contains("REGION") {
            &["token"]
        } else {
            &["token", "--token-url", &token_url]
        };
        let out = credflow(&env, args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(
            !stderr.contains("another-secret") && !stderr.contains(DEMO_CLIENT_SECRET),
            "{stderr}"
        );
    }
    assert_eq!(emu.counters().token.requests, 0);
    // The same environment named two ways is one setting; --env overrides both variables.
    let env = [("GENESYS_ENV_NAME", "mypurecloud.ie"), ("GENESYSCLOUD_REGION", "us-east-1")];
    let env: Vec<_> = creds.iter().chain(&env).copied().collect();
    let out = credflow(&env, &["token", "--env", "nowhere.example"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("nowhere.example") && !stderr.contains("GENESYSCLOUD_REGION"),
        "{stderr}"
    );
}

/// A token URL left in the environment (`CREDFLOW_TOKEN_URL`) beside a Genesys environment
/// (`--env`, or `GENESYS_ENV_NAME`) names two targets: refused, naming both sources, before
/// anything is sent. (The URL won without a word: credentials meant for the environment went
/// to that server.) An empty one counts as unset.
#[tokio::test]
async fn an_environment_and_a_token_url_are_two_targets() {
    let emu = Emulator::start(EmulatorConfig::default().with_request_log(false)).await.unwrap();
    let token_url = emu.token_url();
    let credentials =
        [("GENESYS_CLIENT_ID", DEMO_CLIENT_ID), ("GENESYS_CLIENT_SECRET", DEMO_CLIENT_SECRET)];
    let with_url = [&credentials[..], &[("CREDFLOW_TOKEN_URL", token_url.as_str())]].concat();
    let with_name = [&with_url[..], &[("GENESYS_ENV_NAME", "mypurecloud.ie")]].concat();
    for (env, args) in
        [(&with_url, &["--env", "mypurecloud.ie", "token"][..]), (&with_name, &["token"])]
    {
        let out = credflow(env, args).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains("two targets") && err.contains("mypurecloud.ie"), "{err}");
        assert!(err.contains("CREDFLOW_TOKEN_URL"), "{err}");
    }
    assert_eq!(emu.counters().token.requests, 0, "nothing was sent");

    // Empty variables from a template are unset: the token URL alone is the target.
    let env = [&credentials[..], &[("CREDFLOW_API_BASE", "")]].concat();
    let out = credflow(&env, &["--token-url", &token_url, "token"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(emu.counters().token.requests, 1);
    // `check` says so too: the default environment, not "a custom server" (with no
    // credentials, it stops before sending anything).
    let out = credflow(&[("CREDFLOW_TOKEN_URL", ""), ("CREDFLOW_API_BASE", "")], &["check"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("ok    environment mypurecloud.com"), "{stdout}");
    assert!(!stdout.contains("custom"), "{stdout}");
}
