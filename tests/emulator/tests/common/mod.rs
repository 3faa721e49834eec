//! Shared helpers for the integration tests: a small client written from the RFCs (not from the
//! emulator's code), so the tests check the emulator against the protocol.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use credflow_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorConfig, EmulatorHandle,
};
use hmac::{Hmac, KeyInit as _, Mac as _};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use sha2::Sha256;

pub const FORM: &str = "application/x-www-form-urlencoded";

/// A test's emulator and HTTP client. Connections are not pooled, so a dropped connection
/// affects exactly one request.
pub struct Fixture {
    pub emu: EmulatorHandle,
    pub http: reqwest::Client,
}

pub async fn start(config: EmulatorConfig) -> Fixture {
    // In a workspace build, reqwest's features are unified with credflow-reqwest's
    // `rustls-no-provider`: a crypto provider must be installed before a client is built, even
    // for plain-HTTP tests. The first install wins; later ones are harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = Emulator::start(config).await.unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Fixture { emu, http }
}

/// RFC 6749 §2.3.1 / Appendix B: every byte but the unreserved ones as `%XX` (a space too).
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `Basic base64(encode(id):encode(secret))`.
pub fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{}:{}", form_encode(id), form_encode(secret))))
}

/// `Basic base64(id:secret)` without the §2.3.1 encoding (what many clients send).
pub fn basic_raw(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A JSON answer, its status and headers.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name).and_then(|v| v.parse().ok())
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, body, text }
}

impl Fixture {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    /// `POST /oauth/token` with this `Authorization` (if any) and form body.
    pub async fn token_request(&self, authorization: Option<&str>, body: &str) -> Answer {
        let mut request =
            self.http.post(self.emu.token_url()).header(CONTENT_TYPE, FORM).body(body.to_owned());
        if let Some(a) = authorization {
            request = request.header(AUTHORIZATION, a);
        }
        answer(request.send().await.unwrap()).await
    }

    /// A token for this client via Basic; panics if refused.
    pub async fn token_for(&self, id: &str, secret: &str) -> String {
        let a = self.token_request(Some(&basic(id, secret)), "grant_type=client_credentials").await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn demo_token(&self) -> String {
        self.token_for(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut request = self.http.get(self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        answer(request.send().await.unwrap()).await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &str) -> Answer {
        let request = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        answer(request.send().await.unwrap()).await
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An HS256 JWT with these claims, signed with `secret` (RFC 7515 compact form).
pub fn hs256(claims: &Value, secret: &str) -> String {
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Checks the Genesys error body and that `contextId` equals `ININ-Correlation-Id`.
pub fn assert_genesys_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(a.body["code"], code, "{}", a.text);
    assert_eq!(a.body["status"], status, "{}", a.text);
    let ctx = a.body["contextId"].as_str().unwrap();
    assert_eq!(Some(ctx), a.header("inin-correlation-id"));
    assert_eq!(ctx.len(), 36);
}
