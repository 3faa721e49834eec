//! `POST /oauth/token`: client authentication (Basic, post, JWT), errors, rate limit, scope,
//! concurrency.

mod common;

use std::time::Duration;

use common::{basic, basic_raw, form, hs256, start, unix_now};
use credflow_emulator::{
    ClientConfig, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DISABLED_CLIENT_ID, DISABLED_CLIENT_SECRET,
    EmulatorConfig, LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET,
};
use serde_json::json;

const GRANT: &str = "grant_type=client_credentials";
const JWT_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn assert_invalid_client(a: &common::Answer) {
    assert_eq!(a.status, 401, "{}", a.text);
    assert_eq!(
        a.body,
        json!({"error": "invalid_client", "description": "authentication failed", "error_description": "authentication failed"})
    );
}

#[tokio::test]
async fn basic_success_is_a_genesys_token_response() {
    let f = start(EmulatorConfig::default()).await;
    let a = f.token_request(Some(&basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)), GRANT).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["token_type"], "bearer");
    assert_eq!(a.body["expires_in"], 86_400);
    assert!(a.body.get("scope").is_none());
    let token = a.body["access_token"].as_str().unwrap();
    assert!(
        token.len() >= 32
            && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("pragma"), Some("no-cache"));
    assert_eq!(a.header("inin-correlation-id").map(str::len), Some(36));
    assert!(a.header("date").is_some_and(|d| d.ends_with(" GMT")), "Date header");

    // The token works, and describes itself.
    let me = f.get("/api/v2/tokens/me", Some(token)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["OAuthClient"]["id"], DEMO_CLIENT_ID);
    assert_eq!(me.body["environment"], "mypurecloud.com");
    assert!(me.body["tokenExpirationDate"].as_str().unwrap().ends_with('Z'));

    let c = f.emu.counters();
    assert_eq!((c.token.requests, c.token.succeeded, c.token.auth_basic), (1, 1, 1));
    assert_eq!(c.token.max_in_flight, 1);
}

#[tokio::test]
async fn basic_credentials_are_form_encoded_per_rfc6749_2_3_1() {
    let id = "svc client/1";
    let secret = "p@ss:wörd%41+&= x";
    let f = start(EmulatorConfig::default().with_client(ClientConfig::new(id, secret))).await;
    let a = f.token_request(Some(&basic(id, secret)), GRANT).await;
    assert_eq!(a.status, 200, "{}", a.text);

    // Without the encoding, "%41" decodes to "A": the secret is wrong.
    let raw = f.token_request(Some(&basic_raw(id, secret)), GRANT).await;
    assert_invalid_client(&raw);
    assert_eq!(raw.header("www-authenticate"), Some("Basic realm=\"mypurecloud.com\""));

    // A literal '+' stays '+' (it is not read as a space).
    let plus = start(EmulatorConfig::default().with_client(ClientConfig::new("plus", "a+b"))).await;
    let a = plus.token_request(Some(&basic_raw("plus", "a+b")), GRANT).await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn client_secret_post_and_jwt_authenticate() {
    let f = start(EmulatorConfig::default()).await;
    let post = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", DEMO_CLIENT_ID),
        ("client_secret", DEMO_CLIENT_SECRET),
    ]);
    assert_eq!(f.token_request(None, &post).await.status, 200);

    let claims = |jti: &str, aud: &str| json!({"iss": DEMO_CLIENT_ID, "sub": DEMO_CLIENT_ID, "aud": aud, "exp": unix_now() + 60, "jti": jti});
    let jwt_form = |assertion: &str| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_TYPE),
            ("client_assertion", assertion),
        ])
    };
    let good = hs256(&claims("jti-1", &f.emu.token_url()), DEMO_CLIENT_SECRET);
    let a = f.token_request(None, &jwt_form(&good)).await;
    assert_eq!(a.status, 200, "{}", a.text);

    // Replay of the same jti.
    assert_invalid_client(&f.token_request(None, &jwt_form(&good)).await);
    assert!(f.emu.counters().last_token_error.unwrap().contains("replayed"));
    // Wrong audience, wrong key.
    let wrong_aud =
        hs256(&claims("jti-2", "https://login.mypurecloud.com/oauth/token"), DEMO_CLIENT_SECRET);
    assert_invalid_client(&f.token_request(None, &jwt_form(&wrong_aud)).await);
    let wrong_key = hs256(&claims("jti-3", &f.emu.token_url()), "not-the-secret");
    assert_invalid_client(&f.token_request(None, &jwt_form(&wrong_key)).await);
    assert!(f.emu.counters().last_token_error.unwrap().contains("signature"));

    let c = f.emu.counters();
    assert_eq!(
        (c.token.auth_post, c.token.auth_jwt, c.token.succeeded, c.token.invalid_client),
        (1, 4, 2, 3)
    );
}

#[tokio::test]
async fn bad_credentials_and_disabled_clients_are_invalid_client() {
    let f = start(EmulatorConfig::default()).await;
    assert_invalid_client(&f.token_request(Some(&basic(DEMO_CLIENT_ID, "wrong")), GRANT).await);
    assert_invalid_client(&f.token_request(Some(&basic("nobody", "x")), GRANT).await);
    assert_invalid_client(
        &f.token_request(Some(&basic(DISABLED_CLIENT_ID, DISABLED_CLIENT_SECRET)), GRANT).await,
    );
    assert_invalid_client(&f.token_request(None, GRANT).await);
    assert_invalid_client(&f.token_request(Some("Bearer abc"), GRANT).await);
    let c = f.emu.counters();
    assert_eq!((c.token.invalid_client, c.responses_401, c.token.succeeded), (5, 5, 0));
}

#[tokio::test]
async fn malformed_requests_are_invalid_request_or_unsupported_grant() {
    let f = start(EmulatorConfig::default()).await;
    let auth = basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET);
    let check = |a: common::Answer, error: &str| {
        assert_eq!(a.status, 400, "{}", a.text);
        assert_eq!(a.body["error"], error, "{}", a.text);
        assert_eq!(a.body["description"], a.body["error_description"]);
    };
    check(f.token_request(Some(&auth), "grant_type=password").await, "unsupported_grant_type");
    check(f.token_request(Some(&auth), "scope=x").await, "invalid_request");
    check(
        f.token_request(Some(&auth), "grant_type=client_credentials&grant_type=client_credentials")
            .await,
        "invalid_request",
    );
    let two_methods = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", DEMO_CLIENT_ID),
        ("client_secret", DEMO_CLIENT_SECRET),
    ]);
    check(f.token_request(Some(&auth), &two_methods).await, "invalid_request");
    let json = f
        .http
        .post(f.emu.token_url())
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"client_credentials"}"#)
        .send()
        .await
        .unwrap();
    check(common::answer(json).await, "invalid_request");
    let c = f.emu.counters();
    assert_eq!((c.token.invalid_request, c.token.unsupported_grant_type), (4, 1));
}

#[tokio::test]
async fn token_rate_limit_answers_400_rate_limit_exceeded() {
    let f =
        start(EmulatorConfig::default().with_token_rate_limit(2, Duration::from_millis(300))).await;
    let auth = basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET);
    for _ in 0..2 {
        assert_eq!(f.token_request(Some(&auth), GRANT).await.status, 200);
    }
    let a = f.token_request(Some(&auth), GRANT).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.body["error"], "invalid_request");
    for field in ["description", "error_description"] {
        assert!(a.body[field].as_str().unwrap().starts_with("rate limit exceeded;"), "{}", a.text);
    }
    // Per client: another client is unaffected.
    assert_eq!(
        f.token_request(Some(&basic(LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET)), GRANT).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert_eq!(f.token_request(Some(&auth), GRANT).await.status, 200);
    let c = f.emu.counters();
    assert_eq!((c.token.rate_limited, c.token.succeeded, c.responses_429), (1, 4, 0));
}

#[tokio::test]
async fn scope_is_recorded_and_echoed_only_when_configured() {
    let off = start(EmulatorConfig::default()).await;
    let auth = basic(LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET);
    let a = off.token_request(Some(&auth), "grant_type=client_credentials&scope=anything").await;
    assert_eq!(a.status, 200);
    assert!(a.body.get("scope").is_none());
    assert_eq!(off.emu.counters().token.with_scope, 1);

    let on = start(EmulatorConfig::default().with_echo_scope(true)).await;
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("scope", "routing:queue:view analytics:conversationDetail:view"),
    ]);
    let a = on.token_request(Some(&auth), &body).await;
    assert_eq!(a.body["scope"], "routing:queue:view", "{}", a.text);
    let a =
        on.token_request(Some(&auth), "grant_type=client_credentials&scope=users:user:edit").await;
    assert_eq!((a.status, a.body["error"].as_str()), (400, Some("invalid_scope")));
}

#[tokio::test]
async fn concurrent_token_requests_are_counted_in_flight() {
    let f = start(EmulatorConfig::default()).await;
    f.emu.faults().token_latency(Duration::from_millis(150));
    let auth = basic(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET);
    let (a, b, c) = tokio::join!(
        f.token_request(Some(&auth), GRANT),
        f.token_request(Some(&auth), GRANT),
        f.token_request(Some(&auth), GRANT)
    );
    assert_eq!((a.status, b.status, c.status), (200, 200, 200));
    let counters = f.emu.counters();
    assert_eq!((counters.token.max_in_flight, counters.token.in_flight), (3, 0));
}
