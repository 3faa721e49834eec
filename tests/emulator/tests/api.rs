//! The API side: bearer authentication, expiry, revocation, environments, permissions, rate
//! limits and the fake routes.

mod common;

use std::time::Duration;

use common::{assert_genesys_error, start};
use credflow_emulator::{
    ClientState, DEMO_CLIENT_ID, EmulatorConfig, LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET,
};

const QUEUES: &str = "/api/v2/routing/queues";
const DETAILS: &str = "/api/v2/analytics/conversations/details/query";
const ME: &str = "/api/v2/tokens/me";

#[tokio::test]
async fn missing_bearer_is_authentication_required_without_error_code() {
    let f = start(EmulatorConfig::default()).await;
    let a = f.get(QUEUES, None).await;
    assert_genesys_error(&a, 401, "authentication.required");
    assert_eq!(
        a.body["message"],
        "No authentication bearer token specified in authorization header."
    );
    assert_eq!(a.header("www-authenticate"), Some("Bearer realm=\"mypurecloud.com\""));
    let garbled = f.get(QUEUES, Some("not a token")).await;
    assert_genesys_error(&garbled, 401, "bad.credentials");
    assert!(garbled.header("www-authenticate").unwrap().contains("error=\"invalid_token\""));
    let c = f.emu.counters();
    assert_eq!(
        (c.api.unauthorized, c.api.unauthorized_missing, c.api.unauthorized_unknown),
        (2, 1, 1)
    );
    assert_eq!((c.api.status_4xx, c.api.admitted, c.responses_401), (2, 0, 2));
}

#[tokio::test]
async fn expired_tokens_are_credentials_expired() {
    let f = start(EmulatorConfig::default().with_token_lifetime(Duration::from_millis(300))).await;
    let a = f
        .token_request(
            Some(&common::basic(DEMO_CLIENT_ID, "demo-secret")),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(a.body["expires_in"], 1, "sub-second lives advertise 1 s");
    let token = a.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(f.get(QUEUES, Some(&token)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(320)).await;
    let a = f.get(QUEUES, Some(&token)).await;
    assert_genesys_error(&a, 401, "credentials.expired");
    assert!(a.header("www-authenticate").unwrap().contains("error=\"invalid_token\""));
    assert_eq!(f.emu.counters().api.unauthorized_expired, 1);

    // Forced expiry of every token.
    let token = f.demo_token().await;
    f.emu.expire_all_tokens();
    assert_genesys_error(&f.get(QUEUES, Some(&token)).await, 401, "credentials.expired");
}

#[tokio::test]
async fn revoked_tokens_are_bad_credentials() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let other = f.demo_token().await;
    let deleted = f.http.delete(f.url(ME)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert_genesys_error(&f.get(ME, Some(&token)).await, 401, "bad.credentials");
    // Only the presenting token was revoked.
    assert_eq!(f.get(ME, Some(&other)).await.status, 200);
    f.emu.revoke_all_tokens();
    assert_genesys_error(&f.get(ME, Some(&other)).await, 401, "bad.credentials");
    assert_eq!(f.emu.counters().api.unauthorized_revoked, 2);
}

#[tokio::test]
async fn tokens_from_another_environment_are_refused() {
    let us = start(EmulatorConfig::default()).await;
    let eu = start(EmulatorConfig::default().with_environment("mypurecloud.ie")).await;
    let eu_token = eu.demo_token().await;
    assert_eq!(eu.get(ME, Some(&eu_token)).await.body["environment"], "mypurecloud.ie");
    let a = us.get(ME, Some(&eu_token)).await;
    assert_genesys_error(&a, 401, "bad.credentials");
    assert!(a.header("www-authenticate").unwrap().contains("another environment"));
    assert_eq!(us.emu.counters().api.unauthorized_other_environment, 1);
}

#[tokio::test]
async fn head_tokens_me_verifies_without_a_body() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let ok = f.http.head(f.url(ME)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.bytes().await.unwrap().is_empty());
    let bad = f.http.head(f.url(ME)).bearer_auth("x").send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    assert!(bad.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn limited_client_gets_403_missing_permissions() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.token_for(LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET).await;
    assert_eq!(f.get(QUEUES, Some(&token)).await.status, 200);
    let a = f
        .post_json(DETAILS, &token, r#"{"interval":"2024-01-01T00:00:00Z/2024-01-02T00:00:00Z"}"#)
        .await;
    assert_genesys_error(&a, 403, "missing.permissions");
    assert_eq!(
        a.body["message"],
        "Unable to perform the requested action. You are missing the following permission(s): [analytics:conversationDetail:view]"
    );
    assert_eq!(a.body["messageParams"]["permissions"], "[analytics:conversationDetail:view]");
    // 403s were admitted: they count against the rate limit and carry its headers.
    assert_eq!(a.header_u64("inin-ratelimit-count"), Some(2));
    let c = f.emu.counters();
    assert_eq!((c.api.forbidden, c.api.admitted, c.api.status_2xx, c.api.status_4xx), (1, 2, 1, 1));
}

#[tokio::test]
async fn rate_limit_counts_down_then_answers_429_with_retry_after() {
    let window = Duration::from_millis(600);
    let f = start(EmulatorConfig::default().with_api_rate_limit(3, window)).await;
    // Two tokens of one client share its window.
    let (t1, t2) = (f.demo_token().await, f.demo_token().await);
    for (i, token) in [&t1, &t2, &t1].into_iter().enumerate() {
        let a = f.get(QUEUES, Some(token)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.header_u64("inin-ratelimit-count"), Some(i as u64 + 1));
        assert_eq!(a.header_u64("inin-ratelimit-allowed"), Some(3));
        assert_eq!(a.header_u64("inin-ratelimit-reset"), Some(1));
    }
    let a = f.get(QUEUES, Some(&t2)).await;
    assert_genesys_error(&a, 429, "too.many.requests.retry.after");
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(
        a.body["message"],
        "Rate limit exceeded the maximum. Retry the request in [1] seconds"
    );
    assert_eq!(
        (a.body["details"].as_array().map(Vec::len), a.body["errors"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
    assert_eq!(a.header_u64("inin-ratelimit-count"), Some(3));

    // Another client has its own window.
    let limited = f.token_for(LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET).await;
    assert_eq!(f.get(QUEUES, Some(&limited)).await.status, 200);

    tokio::time::sleep(window).await;
    let a = f.get(QUEUES, Some(&t2)).await;
    assert_eq!((a.status, a.header_u64("inin-ratelimit-count")), (200, Some(1)));

    let c = f.emu.counters();
    assert_eq!((c.api.rate_limited, c.responses_429, c.api.admitted), (1, 1, 5));
    let demo = c.admitted_for(DEMO_CLIENT_ID);
    assert_eq!(demo.total(), 4);
    assert!(demo.max_in_window(Duration::from_millis(500)) <= 3, "{demo:?}");
}

#[tokio::test]
async fn daily_limit_answers_429_with_hours_to_wait() {
    let f = start(EmulatorConfig::default().with_daily_limit(2, Duration::from_secs(86_400))).await;
    let token = f.demo_token().await;
    assert_eq!(f.get(QUEUES, Some(&token)).await.status, 200);
    assert_eq!(f.get(QUEUES, Some(&token)).await.status, 200);
    let a = f.get(QUEUES, Some(&token)).await;
    assert_genesys_error(&a, 429, "too.many.requests.retry.after");
    let retry_after = a.header_u64("retry-after").unwrap();
    assert!((86_399..=86_400).contains(&retry_after), "{retry_after}");
    assert_eq!(f.emu.counters().api.daily_limited, 1);
}

#[tokio::test]
async fn queues_page_and_analytics_validate_their_input() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let page = f.get(&format!("{QUEUES}?pageSize=2&pageNumber=3"), Some(&token)).await;
    assert_eq!(page.body["entities"].as_array().map(Vec::len), Some(1), "{}", page.text);
    assert_eq!((page.body["total"].as_u64(), page.body["pageCount"].as_u64()), (Some(5), Some(3)));
    assert!(page.body.get("nextUri").is_none());
    let first = f.get(&format!("{QUEUES}?pageSize=2"), Some(&token)).await;
    assert_eq!(first.body["nextUri"], "/api/v2/routing/queues?pageSize=2&pageNumber=2");
    assert_genesys_error(
        &f.get(&format!("{QUEUES}?pageSize=0"), Some(&token)).await,
        400,
        "bad.request",
    );

    let ok = f
        .post_json(DETAILS, &token, r#"{"interval":"2024-01-01T00:00:00Z/2024-01-02T00:00:00Z"}"#)
        .await;
    assert_eq!((ok.status, ok.body["totalHits"].as_u64()), (200, Some(2)), "{}", ok.text);
    assert_genesys_error(&f.post_json(DETAILS, &token, "{not json").await, 400, "bad.request");
    assert_genesys_error(
        &f.post_json(DETAILS, &token, r#"{"order":"asc"}"#).await,
        400,
        "bad.request",
    );
    assert_genesys_error(&f.get("/api/v2/nothing/here", Some(&token)).await, 404, "not.found");
    // Unknown API paths still want a token.
    assert_genesys_error(
        &f.get("/api/v2/nothing/here", None).await,
        401,
        "authentication.required",
    );
    assert_genesys_error(&f.get("/api/v1/old", None).await, 401, "authentication.required");
}

#[tokio::test]
async fn disabling_a_client_stops_its_tokens() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    assert!(f.emu.set_client_state(DEMO_CLIENT_ID, ClientState::Disabled));
    assert_genesys_error(&f.get(ME, Some(&token)).await, 401, "bad.credentials");
    let a = f
        .token_request(
            Some(&common::basic(DEMO_CLIENT_ID, "demo-secret")),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(a.status, 401);
    assert!(f.emu.set_client_state(DEMO_CLIENT_ID, ClientState::Active));
    assert_eq!(f.get(ME, Some(&token)).await.status, 200);
    assert!(!f.emu.set_client_state("nobody", ClientState::Active));
}
