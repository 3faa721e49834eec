//! What the official Genesys Cloud Python SDK found different from the platform: paging links,
//! the queue name filter, a queue by its `selfUri`, `users` and `organizations/me`, the RFC 6749
//! §5.2 charset of `error_description`, and the rate-limit headers of a forced 429.

mod common;

use common::{assert_genesys_error, basic, start};
use credflow_emulator::{DEMO_CLIENT_ID, EmulatorConfig, FaultsUpdate};

const QUEUES: &str = "/api/v2/routing/queues";

#[tokio::test]
async fn pages_after_the_first_link_back() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let first = f.get(&format!("{QUEUES}?pageSize=2"), Some(&token)).await;
    assert_eq!(first.status, 200);
    assert!(first.body.get("previousUri").is_none(), "{}", first.text);
    let second = f.get(&format!("{QUEUES}?pageSize=2&pageNumber=2"), Some(&token)).await;
    assert_eq!(second.body["previousUri"], format!("{QUEUES}?pageSize=2&pageNumber=1"));
    assert_eq!(second.body["nextUri"], format!("{QUEUES}?pageSize=2&pageNumber=3"));
    let last = f.get(&format!("{QUEUES}?pageSize=2&pageNumber=3"), Some(&token)).await;
    assert_eq!(last.body["previousUri"], format!("{QUEUES}?pageSize=2&pageNumber=2"));
    assert!(last.body.get("nextUri").is_none());
}

#[tokio::test]
async fn the_name_filter_selects_queues_and_stays_in_the_links() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let exact = f.get(&format!("{QUEUES}?name=emulated%20queue%203"), Some(&token)).await;
    assert_eq!(exact.body["total"], 1, "{}", exact.text);
    assert_eq!(exact.body["entities"][0]["name"], "Emulated queue 3");
    let none = f.get(&format!("{QUEUES}?name=nothing"), Some(&token)).await;
    assert_eq!(none.body["total"], 0);
    assert_eq!(none.body["entities"].as_array().unwrap().len(), 0);
    let prefix =
        f.get(&format!("{QUEUES}?name=Emulated*&pageSize=2&pageNumber=2"), Some(&token)).await;
    assert_eq!(prefix.body["total"], 5);
    assert_eq!(
        prefix.body["previousUri"],
        format!("{QUEUES}?name=Emulated*&pageSize=2&pageNumber=1"),
        "{}",
        prefix.text
    );
}

#[tokio::test]
async fn a_queue_answers_at_its_self_uri() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let list = f.get(QUEUES, Some(&token)).await;
    let listed = &list.body["entities"][1];
    let one = f.get(listed["selfUri"].as_str().unwrap(), Some(&token)).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(&one.body, listed);
    let unknown =
        f.get(&format!("{QUEUES}/00000000-0000-4000-8000-000000000000"), Some(&token)).await;
    assert_genesys_error(&unknown, 404, "not.found");
}

#[tokio::test]
async fn users_and_the_organization_are_emulated() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let users = f.get("/api/v2/users?pageSize=5&pageNumber=2", Some(&token)).await;
    assert_eq!(users.status, 200, "{}", users.text);
    assert_eq!(users.body["total"], 12);
    assert_eq!(users.body["pageCount"], 3);
    assert_eq!(users.body["entities"].as_array().unwrap().len(), 5);
    assert_eq!(users.body["entities"][0]["name"], "Emulated user 6");
    assert_eq!(users.body["previousUri"], "/api/v2/users?pageSize=5&pageNumber=1");
    let org = f.get("/api/v2/organizations/me", Some(&token)).await;
    assert_eq!(org.status, 200, "{}", org.text);
    let me = f.get("/api/v2/tokens/me", Some(&token)).await;
    assert_eq!(org.body["id"], me.body["organization"]["id"]);
    assert_eq!(org.body["selfUri"], "/api/v2/organizations/me");
    assert_eq!(f.get("/api/v2/users", None).await.status, 401, "authenticated like the rest");
}

/// RFC 6749 §5.2: `error_description` is `%x20-21 / %x23-5B / %x5D-7E`.
fn assert_oauth_charset(text: &str) {
    assert!(
        text.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
        "outside RFC 6749 §5.2: {text:?}"
    );
}

#[tokio::test]
async fn error_descriptions_keep_to_the_oauth_charset() {
    let f = start(EmulatorConfig::default()).await;
    let answers = [
        // "parameter grant_type repeated (RFC 6749 §3.2)"
        f.token_request(None, "grant_type=client_credentials&grant_type=client_credentials").await,
        // "unknown client \"nobody\""
        f.token_request(Some(&basic("nobody", "x")), "grant_type=client_credentials").await,
        // "grant_type \"password\""
        f.token_request(Some(&basic(DEMO_CLIENT_ID, "x")), "grant_type=password").await,
        // "more than one client authentication method in the request (RFC 6749 §2.3)"
        f.token_request(
            Some(&basic(DEMO_CLIENT_ID, "demo-secret")),
            "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret",
        )
        .await,
    ];
    for a in &answers {
        assert!(a.status >= 400, "{}", a.text);
        let description = a.body["error_description"].as_str().unwrap();
        assert!(!description.is_empty());
        assert_oauth_charset(description);
        assert_eq!(a.body["description"], a.body["error_description"]);
    }
}

#[tokio::test]
async fn a_forced_429_says_the_window_is_spent() {
    let f = start(EmulatorConfig::default()).await;
    let token = f.demo_token().await;
    let update: FaultsUpdate =
        serde_json::from_value(serde_json::json!({ "force_429_ms": 2000 })).unwrap();
    f.emu.faults().apply(&update);
    // The first API request of a fresh window.
    let a = f.get(QUEUES, Some(&token)).await;
    assert_genesys_error(&a, 429, "too.many.requests.retry.after");
    let retry_after = a.header_u64("retry-after").unwrap();
    assert_eq!(a.header_u64("inin-ratelimit-reset"), Some(retry_after), "one end, two names");
    let allowed = a.header_u64("inin-ratelimit-allowed").unwrap();
    assert_eq!(a.header_u64("inin-ratelimit-count"), Some(allowed), "a 429 beside a budget left");
}
