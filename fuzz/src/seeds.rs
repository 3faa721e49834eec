//! The seed corpus, written as code: one place that knows each target's input format.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml` checks that every `corpus/<target>/seed-<name>`
//! file matches what is built here (and that the valid snapshot seed really unseals). After
//! changing a target's input format, rewrite the seeds with
//! `CREDFLOW_WRITE_SEEDS=1 cargo test --manifest-path fuzz/Cargo.toml`.
//!
//! Seeds named `seed-regression-<n>` are inputs that once crashed a target; they are kept as
//! found, not generated here.

use std::path::PathBuf;

use credflow_core::Duration;
use credflow_core::secret::{AccessToken, Credentials};
use credflow_core::snapshot::{seal, sealed_len, unseal};

use crate::{CLIENT, SNAPSHOT_KEY, SNAPSHOT_NOW};

mod adapters;
mod coverage;

/// A long, realistic opaque token (Genesys tokens are about 90 bytes; JWTs from other servers
/// run to kilobytes).
const LONG_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjbGllbnQiLCJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmUtc2lnbmF0dXJlLXNpZ25hdHVyZQ";

const GENESYS_429: &str = r#"{"message":"Rate limit exceeded the maximum. Retry the request in [42] seconds","code":"too.many.requests.retry.after","status":429,"contextId":"c0ffee00-1111-2222-3333-444455556666","details":[],"errors":[]}"#;
const GENESYS_403: &str = r#"{"message":"Unable to perform the requested action. You are missing the following permission(s): [routing:queue:view]","code":"missing.permissions","status":403,"messageWithParams":"Unable to perform the requested action. You are missing the following permission(s): {permissions}","messageParams":{},"contextId":"0d1f6a2e-5b3c-4e8f-9a71-2c6d8e4b0f13","details":[],"errors":[]}"#;
const GENESYS_401: &str = r#"{"message":"Authentication failed","code":"bad.credentials","status":401,"contextId":"5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c","details":[],"errors":[]}"#;
const GENESYS_INVALID_CLIENT: &str = r#"{"error":"invalid_client","description":"authentication failed","error_description":"authentication failed"}"#;
const GENESYS_TOKEN_RATE_LIMIT: &str = r#"{"error":"invalid_request","description":"rate limit exceeded; try again in a minute","error_description":"rate limit exceeded; try again in a minute"}"#;

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut s = Vec::new();
    let mut add = |target, name, bytes: Vec<u8>| s.push((target, name, bytes));

    // token_response: flags, default and max lifetime (u32 LE seconds), [scope], body.
    let opts = |flags: u8, scope: Option<&str>| {
        let mut v = vec![flags];
        v.extend(3600u32.to_le_bytes());
        v.extend((7 * 86_400u32).to_le_bytes());
        if let Some(scope) = scope {
            v.push(scope.len() as u8);
            v.extend(scope.as_bytes());
        }
        v
    };
    let with = |mut head: Vec<u8>, body: &str| {
        head.extend(body.as_bytes());
        head
    };
    add(
        "token_response",
        "genesys",
        with(
            opts(0, None),
            &format!(
                r#"{{"access_token":"{LONG_TOKEN}","token_type":"bearer","expires_in":86400}}"#
            ),
        ),
    );
    add(
        "token_response",
        "rfc6749-5.1",
        with(
            opts(0, None),
            r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"example","expires_in":3600,"refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA","example_parameter":"example_value"}"#,
        ),
    );
    add(
        "token_response",
        "scope-narrowed",
        with(
            opts(1, Some("read write admin")),
            r#"{"access_token":"mF_9.B5f-4.1JqM","token_type":"Bearer","expires_in":"3600","scope":"read write"}"#,
        ),
    );
    add(
        "token_response",
        "escapes-float",
        with(
            opts(0, None),
            r#"{"access_token":"ab\/cd\u0065f","token_type":"B\u0065arer","expires_in":3599.9,"scope":"a\tb"}"#,
        ),
    );
    add(
        "token_response",
        "nonpositive-huge",
        with(
            opts(0, None),
            r#"{"expires_in":-5,"token_type":"Bearer","access_token":"t","x":{"y":[1e308,null,true]}}"#,
        ),
    );
    add("token_response", "error-body", with(opts(0, None), GENESYS_INVALID_CLIENT));
    add(
        "token_response",
        "too-deep",
        with(
            opts(0, None),
            r#"{"access_token":"t","token_type":"Bearer","x":[[[[[[[[[[1]]]]]]]]]]}"#,
        ),
    );

    // token_error: status (u16 LE), body.
    let error = |status: u16, body: &str| {
        let mut v = status.to_le_bytes().to_vec();
        v.extend(body.as_bytes());
        v
    };
    add("token_error", "genesys-invalid-client", error(401, GENESYS_INVALID_CLIENT));
    add("token_error", "genesys-rate-limit", error(400, GENESYS_TOKEN_RATE_LIMIT));
    add("token_error", "rfc6749-5.2", error(400, r#"{"error":"invalid_request"}"#));
    add(
        "token_error",
        "escapes",
        error(
            400,
            r#"{"error":"invalid\u005fscope","error_description":"line\nbreak \"quoted\" \\ end","error_uri":"https://example.com/\u00e9"}"#,
        ),
    );
    add(
        "token_error",
        "slow-down",
        error(400, r#"{"error":"slow_down","message":"gateway says slow down"}"#),
    );
    add(
        "token_error",
        "proxy-html",
        error(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    );

    // genesys_error: the body.
    // json: any bytes; objects with every kind of value, escapes, nesting and numbers.
    add("json", "genesys-403", GENESYS_403.into());
    add("json", "token-error", GENESYS_TOKEN_RATE_LIMIT.into());
    add(
        "json",
        "every-kind",
        br#" {"a":"x\/y\u00e9\ud83d\ude00","n":-1.5e+3,"z":0,"t":true,"f":false,"u":null,"o":{"p":[1,{"q":[]}]},"e":{}} "#
            .to_vec(),
    );
    add("genesys_error", "missing-permissions", GENESYS_403.into());
    add("genesys_error", "rate-limit", GENESYS_429.into());
    add("genesys_error", "bad-credentials", GENESYS_401.into());
    add("genesys_error", "message-params", br#"{"code":"missing.any.permissions","messageParams":{"count":2,"missingPermissions":["a:b:view","c:d:add"],"nested":{"x":1}},"message":"You must have at least one of the following permissions assigned: [] in at least one of the following division(s): [dbdb51ee-1c2a-4f3e-8a90-7b6c5d4e3f21]"}"#.to_vec());
    add("genesys_error", "truncated", GENESYS_403.as_bytes()[..150].to_vec());
    add(
        "genesys_error",
        "escapes",
        br#"{"message":"a \"b\" \\ c\/d \u00e9 \ud83d\ude00 \ud800x \n\tEND","code":"x"}"#.to_vec(),
    );

    // retry_after: the whole input is a field value (or a body).
    add("retry_after", "delay", b"120".to_vec());
    add("retry_after", "imf-fixdate", b"Sun, 06 Nov 1994 08:49:37 GMT".to_vec());
    add("retry_after", "rfc850", b"Sunday, 06-Nov-94 08:49:37 GMT".to_vec());
    add("retry_after", "asctime", b"Sun Nov  6 08:49:37 1994".to_vec());
    add("retry_after", "leap-second", b"Sat, 31 Dec 2016 23:59:60 GMT".to_vec());
    add("retry_after", "last-date", b"Fri, 31 Dec 9999 23:59:59 GMT".to_vec());
    add("retry_after", "genesys-body", GENESYS_429.into());

    // rate_limit_headers: header lines.
    add(
        "rate_limit_headers",
        "genesys",
        b"inin-ratelimit-count: 1\ninin-ratelimit-allowed: 180\ninin-ratelimit-reset: 61\n"
            .to_vec(),
    );
    add("rate_limit_headers", "github-epoch", b"Date: Tue, 14 Nov 2023 22:13:20 GMT\nX-RateLimit-Limit: 5000\nX-RateLimit-Remaining: 0\nX-RateLimit-Reset: 1700000060\n".to_vec());
    add(
        "rate_limit_headers",
        "x-rate-limit-millis",
        b"X-Rate-Limit-Limit: 100\nX-Rate-Limit-Remaining: 99\nX-Rate-Limit-Reset: 1700000060000\n"
            .to_vec(),
    );
    add(
        "rate_limit_headers",
        "ietf-separate",
        b"RateLimit-Limit: 100, 100;w=60\nRateLimit-Remaining: 50\nRateLimit-Reset: 5\n".to_vec(),
    );
    add(
        "rate_limit_headers",
        "ietf-combined",
        b"RateLimit: limit=100, remaining=50, reset=5\nRateLimit-Policy: 100;w=10\n".to_vec(),
    );
    add("rate_limit_headers", "ietf-structured", b"RateLimit: \"burst\";r=50;t=30, \"daily\";r=999;t=86000\nRateLimit-Policy: \"burst\";q=100;w=60, \"daily\";q=1000;w=86400\n".to_vec());
    add(
        "rate_limit_headers",
        "known-names",
        b"\x05: 7\n\x06: 10\n\x07: 1700000000\n\x0f: garbage\n".to_vec(),
    );

    // www_authenticate: the field value.
    add("www_authenticate", "rfc6750-3", b"Bearer realm=\"example\"".to_vec());
    add("www_authenticate", "rfc6750-3-expired", b"Bearer realm=\"example\", error=\"invalid_token\", error_description=\"The access token expired\"".to_vec());
    add(
        "www_authenticate",
        "several",
        b"Basic realm=\"x\", Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"a b\""
            .to_vec(),
    );
    add(
        "www_authenticate",
        "escapes",
        b"Bearer error_description=\"say \\\"hi\\\", ok\",   ,realm=api".to_vec(),
    );
    add("www_authenticate", "token68", b"Negotiate abc==, Bearer , Bearer error=x".to_vec());

    // proxy_headers: buffer limit (u16 LE), flags (bit 0 chunked), header lines, empty line,
    // a token request's form body.
    let proxy = |limit: u16, flags: u8, text: &str| {
        let mut v = limit.to_le_bytes().to_vec();
        v.push(flags);
        v.extend(text.as_bytes());
        v
    };
    add(
        "proxy_headers",
        "sdk-request",
        proxy(
            1024,
            0,
            "Authorization: Bearer local-key-0123456789abcdef\nX-Credflow-Priority: Critical\n\
             Content-Length: 1024\nConnection: keep-alive, X-Trace\nTE: trailers\n\n",
        ),
    );
    add(
        "proxy_headers",
        "sdk-login",
        proxy(
            16,
            0,
            "Authorization: Basic c2RrOmxvY2FsLWtleS0wMTIzNDU2Nzg5YWJjZGVm\n\
             Content-Length: 29, 29\n\ngrant_type=client_credentials",
        ),
    );
    add(
        "proxy_headers",
        "form-secret",
        proxy(
            0,
            1,
            "X-Credflow-Key: local-key-0123456789abcdef\nTransfer-Encoding: chunked\n\n\
             grant_type=client_credentials&client_id=a&client_secret=s%2Bc+t%3D",
        ),
    );
    add(
        "proxy_headers",
        "known-names",
        proxy(65535, 0, "\x00: background\n\x00: normal\n\x04: 5\n\x04: 6\n\x03: a,,b c\n\n"),
    );

    // environment: what a user types.
    for (name, text) in [
        ("region", "eu-west-1"),
        ("domain", "mypurecloud.ie"),
        ("url", "https://api.mypurecloud.ie/api/v2"),
        ("short-code", "usw2"),
        ("enum-name", " EU_WEST_1 "),
        ("typo", "mypurecloud.co"),
        ("wrong-host", "usw2.platform.mygenesys.com"),
        ("fedramp-port", "https://login.use2.us-gov-pure.cloud:443/"),
    ] {
        add("environment", name, text.into());
    }

    // classify: HTTP responses.
    add("classify", "genesys-429", format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 42\r\ninin-ratelimit-count: 181\r\ninin-ratelimit-allowed: 180\r\ninin-ratelimit-reset: 42\r\nININ-Correlation-Id: c0ffee00-1111-2222-3333-444455556666\r\n\r\n{GENESYS_429}").into_bytes());
    add(
        "classify",
        "genesys-429-body-only",
        format!("HTTP/1.1 429\r\n\r\n{GENESYS_429}").into_bytes(),
    );
    add(
        "classify",
        "genesys-403",
        format!("HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n\r\n{GENESYS_403}")
            .into_bytes(),
    );
    add("classify", "genesys-401", format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\r\n\r\n{GENESYS_401}").into_bytes());
    add("classify", "insufficient-scope", b"HTTP/1.1 403 Forbidden\r\nWWW-Authenticate: Bearer error=\"insufficient_scope\", scope=\"read:calls write:calls\", error_description=\"needs \\\"write\\\"\"\r\nX-Request-Id: req-1\r\n\r\n".to_vec());
    add("classify", "503-date", b"HTTP/1.1 503 Service Unavailable\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nRetry-After: Tue, 14 Nov 2023 22:14:20 GMT\r\n\r\n<html>down</html>".to_vec());
    add(
        "classify",
        "200-github",
        b"HTTP/1.1 200 OK\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 1700000060\r\n\r\n{}"
            .to_vec(),
    );

    // snapshot: mode byte, then a raw snapshot (even) or a structured sealing (odd).
    let token = AccessToken::<256>::new(LONG_TOKEN).unwrap();
    let fp = Credentials::from_strs(CLIENT.0, CLIENT.1).unwrap().fingerprint();
    let expires = SNAPSHOT_NOW.saturating_add(Duration::from_secs(86_400));
    let mut sealed = vec![0u8; sealed_len(token.len())];
    seal(&token, expires, fp, SNAPSHOT_KEY, &mut sealed).unwrap();
    add("snapshot", "valid", [&[0u8][..], &sealed].concat());
    add("snapshot", "truncated", [&[0u8][..], &sealed[..sealed.len() - 1]].concat());
    let mut tampered = sealed.clone();
    tampered[30] ^= 1;
    add("snapshot", "tampered", [&[0u8][..], &tampered].concat());
    let structured = |edits: &[(u8, u16, u8)]| {
        let mut v = vec![1u8, 16]; // odd mode, 32-byte key
        v.extend(b"device-key-0123456789abcdefghijk");
        v.push(11); // 12-byte token
        v.extend(b"abcdefghijkl");
        v.extend(1_700_086_400u32.to_le_bytes());
        v.extend(1_700_000_000u32.to_le_bytes());
        for (kind, at, value) in edits {
            v.push(*kind);
            v.extend(at.to_le_bytes());
            v.push(*value);
        }
        v
    };
    add("snapshot", "sealed-intact", structured(&[]));
    add("snapshot", "sealed-flip-expiry", structured(&[(0, 9, 0x80)]));
    add("snapshot", "sealed-insert-remove", structured(&[(2, 20, b'x'), (3, 20, 0)]));
    add("snapshot", "sealed-truncate", structured(&[(1, 40, 0)]));

    // session: setup byte, seed, then operations.
    add(
        "session",
        "fleet-admitted-then-held",
        Ops::new(0)
            .poll()
            .answer(0, 3600)
            .begin(0, 1)
            .fleet(0, 0)
            .authorize(0)
            .respond(0, 0, 0x10)
            .begin(1, 2)
            .fleet(1, 20)
            .authorize(1)
            .sleep_to_wait()
            .authorize(1)
            .begin(2, 1)
            .fleet(2, 65_000)
            .authorize(2)
            .begin(3, 1)
            .fleet(3, 65_000)
            .authorize(3)
            .into(),
    );
    add(
        "session",
        "happy-path",
        Ops::new(0)
            .poll()
            .ms(120)
            .answer(0, 3600)
            .begin(0, 1)
            .authorize(0)
            .respond(0, 0, 0x10)
            .sleep_to_deadline()
            .sleep_to_deadline()
            .poll()
            .answer(1, 3600)
            .into(),
    );
    add(
        "session",
        "reauthenticate",
        Ops::new(0)
            .poll()
            .answer(0, 3600)
            .begin(0, 1)
            .authorize(0)
            .respond(0, 2, 0x40)
            .authorize(0)
            .poll()
            .answer(0, 3600)
            .authorize(0)
            .respond(0, 0, 0)
            .into(),
    );
    add(
        "session",
        "rate-limited",
        Ops::new(0b1_0000)
            .poll()
            .answer(0, 600)
            .begin(0x80, 1)
            .authorize(0)
            .respond(0, 4, 0x17)
            .sleep_to_wait()
            .authorize(0)
            .respond(0, 4, 0x80)
            .sleep_to_wait()
            .authorize(0)
            .respond(0, 0, 0x10)
            .into(),
    );
    add(
        "session",
        "credentials-rejected",
        Ops::new(0)
            .poll()
            .answer(5, 0)
            .begin(0, 1)
            .authorize(0)
            .rotate()
            .poll()
            .answer(0, 300)
            .begin(0, 1)
            .authorize(0)
            .into(),
    );
    add(
        "session",
        "token-endpoint-down",
        Ops::new(0b1000)
            .poll()
            .answer(3, 0)
            .sleep_to_deadline()
            .poll()
            .answer(4, 0)
            .sleep_to_deadline()
            .poll()
            .token_transport(false)
            .sleep_to_deadline()
            .poll()
            .answer(7, 30)
            .begin(0, 1)
            .authorize(0)
            .sleep_to_wait()
            .into(),
    );
    add(
        "session",
        "snapshot",
        Ops::new(0)
            .wall_clock()
            .poll()
            .answer(0, 3600)
            .seal()
            .secs(600)
            .restore(0)
            .restore(7)
            .rotate()
            .restore(0)
            .into(),
    );
    add(
        "session",
        "jwt",
        Ops::new(2)
            .poll()
            .wall_clock()
            .poll()
            .ms(50)
            .answer(2, 0)
            .begin(1, 0)
            .authorize(0)
            .respond(0, 5, 0x21)
            .into(),
    );
    add(
        "session",
        "expiry-edge",
        Ops::new(0b100)
            .poll()
            .answer(0, 10)
            .begin(0, 1)
            .secs(9)
            .ms(999)
            .authorize(0)
            .respond(0, 0, 0)
            .ms(1)
            .authorize(0)
            .timeout()
            .into(),
    );
    add(
        "session",
        "server-errors",
        Ops::new(0b1000)
            .poll()
            .answer(0, 3600)
            .begin(0x80, 1)
            .authorize(0)
            .respond(0, 6, 0x05)
            .authorize(0)
            .sleep_to_wait()
            .authorize(0)
            .transport(0)
            .sleep_to_wait()
            .authorize(0)
            .respond(0, 5, 0)
            .sleep_to_deadline()
            .begin(3, 5)
            .authorize(1)
            .abandon(0)
            .into(),
    );
    add(
        "session",
        "abandoned-run",
        // Token requests abandoned in a row (the caller's limit shorter than the endpoint's
        // answers): held back 1 s, then 2 s, from the second on; an answer ends the run.
        Ops::new(0)
            .poll()
            .token_transport(true)
            .secs(1)
            .poll()
            .token_transport(true)
            .sleep_to_deadline()
            .poll()
            .token_transport(true)
            .sleep_to_deadline()
            .poll()
            .answer(0, 3600)
            .into(),
    );
    add(
        "session",
        "fleet-shared",
        // The fleet answers the first token request with its token, a later one with a token
        // about to expire (refused: an abandoned request), and a stale ticket; a token is
        // adopted once none is held, then one already held is offered again.
        Ops::new(0)
            .wall_clock()
            .poll()
            .shared(0, 3600)
            .begin(0, 1)
            .authorize(0)
            .respond(0, 0, 0x10)
            .secs(3300)
            .poll()
            .shared(0, 2)
            .shared(1, 3600)
            .secs(300)
            .adopt(0, 600)
            .adopt(0x80, 0)
            .authorize(0)
            .into(),
    );
    add(
        "session",
        "hostile-lifetimes",
        // A token endpoint granting spent lifetimes (0, -5, "0.9"), asking for a retry at once
        // (503 and rate limit with `Retry-After: 0`), granting "never expires", then an API
        // refusing every fresh token: the adapter wakes at every deadline and asks at once.
        Ops::new(0)
            .poll()
            .answer(10, 0)
            .sleep_to_deadline()
            .poll()
            .answer(10, 2)
            .sleep_to_deadline()
            .poll()
            .answer(10, 4)
            .sleep_to_deadline()
            .poll()
            .answer(12, 0)
            .sleep_to_deadline()
            .poll()
            .answer(13, 0)
            .sleep_to_deadline()
            .poll()
            .answer(11, 0)
            .begin(0, 1)
            .authorize(0)
            .respond(0, 2, 0)
            .poll()
            .answer(0, 3600)
            .authorize(0)
            .respond(0, 2, 0)
            .poll()
            .sleep_to_deadline()
            .poll()
            .into(),
    );

    // token_request: flags, buffer size, JWT lifetime and time, jti, then text lines.
    let request = |flags: u8, buf: u16, lines: &str| {
        let mut v = vec![flags];
        v.extend(buf.to_le_bytes());
        v.extend(60u16.to_le_bytes());
        v.extend(1_700_000_000u32.to_le_bytes());
        v.extend([7u8; 16]);
        v.extend(lines.as_bytes());
        v
    };
    add(
        "token_request",
        "genesys-basic",
        request(
            0,
            1024,
            "https://login.mypurecloud.com/oauth/token\ns6BhdRkqt3\n7Fjfp0ZBr1KtDRbnfVdmIw",
        ),
    );
    add(
        "token_request",
        "post-scope-audience",
        request(
            1,
            1024,
            "https://auth.example.com/oauth/token?tenant=a\nclient id\np@ss:w rd/+%\n  read write  \naudience=https://api.example.com\nresource=urn:x",
        ),
    );
    add(
        "token_request",
        "jwt",
        request(
            2 | 0b100,
            2048,
            "https://login.mypurecloud.ie/oauth/token\nmy-client\nmy-secret\n\nresource=https://api.mypurecloud.ie",
        ),
    );
    add(
        "token_request",
        "small-buffer",
        request(0, 10, "http://[::1]:8443/oauth/token\nid\nsecret"),
    );
    add(
        "token_request",
        "reserved-param",
        request(1, 512, "https://a.example/t\nid\nsecret\n\nclient_secret=x"),
    );
    add("token_request", "jwt-without-inputs", request(2, 2048, "https://a.example/t\nid\nsecret"));
    add(
        "token_request",
        "plain-http-refused",
        request(0, 512, "http://auth.example.invalid/oauth/token\nid\nsecret"),
    );
    add(
        "token_request",
        "plain-http-opted-in",
        request(0b1000, 512, "http://auth.example.invalid/oauth/token\nid\nsecret"),
    );
    // redact: flags (bit 0 cut, bit 1 a token, bit 2 an assertion, bits 3-4 retired tokens,
    // bits 5-6 the bounded capacity), where the body is cut (u16 LE), the jti byte, lines (id,
    // secret, token, each retired token), the body; in it, NUL + value index + form seed
    // writes a value (secret, form, Basic, token, assertion, retired ones).
    let redact = |flags: u8, cut_at: u16, lines: &[&str], body: &[u8]| {
        let mut v = vec![flags];
        v.extend(cut_at.to_le_bytes());
        v.push(7);
        for line in lines {
            v.extend(line.as_bytes());
            v.push(b'\n');
        }
        v.extend(body);
        v
    };
    add(
        "redact",
        "php-secret",
        redact(
            0,
            0,
            &["client", "ab+cd/ef", ""],
            br#"{"error":"invalid_client","error_description":"bad secret ab+cd\/ef"}"#,
        ),
    );
    add(
        "redact",
        "dotnet-token",
        redact(
            0b10,
            0,
            &["client", "secret", "tok/1+abcdefgh"],
            br#"{"message":"token tok\u002f1\u002Babcdefgh refused","status":403}"#,
        ),
    );
    let escaped = br#"{"error_description":"token tok\u002f1\u002Babcdefgh"}"#;
    add(
        "redact",
        "cut-within-escape",
        redact(0b11, 42, &["client", "secret", "tok/1+abcdefgh"], escaped),
    );
    let mut retired = br#"{"message":""#.to_vec();
    retired.extend([0, 4, 0x5a]);
    retired.extend(br#"","code":""#);
    retired.extend([0, 5, 0x33]);
    retired.extend(br#"","status":500}"#);
    add(
        "redact",
        "retired-tokens",
        redact(
            0b01_10_010,
            0,
            &["client", "secret", "TOKEN-THREE", "TOKEN/ONE+aaaa", "TOKEN/TWO+bbbb"],
            &retired,
        ),
    );
    let mut assertion = b"client_assertion=".to_vec();
    assertion.extend([0, 3, 0]);
    assertion.extend(b" rejected");
    add("redact", "assertion", redact(0b100, 0, &["client", "secret", ""], &assertion));
    let mut basic = b"Basic ".to_vec();
    basic.extend([0, 2, 0]);
    add("redact", "basic", redact(0b10_00_000, 0, &["my client", "s3cr3t+/Value", ""], &basic));
    add(
        "redact",
        "short-secret-bounded",
        redact(0, 0, &["client", "a", ""], b"bad data: a value that is far too long for 16"),
    );
    add(
        "redact",
        "backslash-cut",
        redact(1, 21, &["client", r"aAA\", ""], br"x \u0061\u0041\u0041\\ y"),
    );
    add(
        "redact",
        "python-non-ascii",
        redact(
            0,
            0,
            &["client", "s\u{e9}cret-\u{fc}-\u{1f600}", ""],
            br#"{"detail":"bad s\u00e9cret-\u00fc-\ud83d\ude00"}"#,
        ),
    );
    // Costly to search (the work bound, failing closed): a long token that repeats one byte and
    // ends with another, against a body of that byte with the token in it, kept in 320 bytes
    // too; a body of backslashes and `eyJ` with an assertion to regenerate.
    let token = format!("{}B0001", "A".repeat(2000));
    let mut costly = vec![b'A'; 6000];
    costly.extend([0, 3, 0]);
    costly.extend([b'A'; 2000]);
    add("redact", "costly-token", redact(0b11_00_011, 7000, &["client", "secret", &token], &costly));
    let costly = [br"\".repeat(1500), b"eyJ".repeat(1000)].concat();
    add("redact", "costly-escapes", redact(0b110, 0, &["client", r"s\e", "tok"], &costly));
    s.extend(adapters::seeds());
    s.extend(coverage::seeds());
    s
}

/// Encodes `session` operations (see the target's `Op` for the tags).
struct Ops(Vec<u8>);

impl Ops {
    fn new(setup: u8) -> Self {
        let mut v = vec![setup];
        v.extend(42u64.to_le_bytes());
        Ops(v)
    }
    fn op(mut self, tag: u8, args: &[u8]) -> Self {
        self.0.push(tag);
        self.0.extend(args);
        self
    }
    fn ms(self, ms: u16) -> Self {
        self.op(0, &(ms * 2).to_le_bytes())
    }
    fn secs(self, secs: u16) -> Self {
        self.op(0, &(secs * 2 + 1).to_le_bytes())
    }
    fn poll(self) -> Self {
        self.op(1, &[])
    }
    fn answer(self, kind: u8, life: u16) -> Self {
        let [a, b] = life.to_le_bytes();
        self.op(2, &[kind, a, b])
    }
    fn token_transport(self, abandon: bool) -> Self {
        self.op(3, &[u8::from(abandon)])
    }
    fn begin(self, m: u8, p: u8) -> Self {
        self.op(4, &[m, p])
    }
    fn authorize(self, i: u8) -> Self {
        self.op(5, &[i])
    }
    fn respond(self, i: u8, status_index: u16, r: u8) -> Self {
        let [a, b] = status_index.to_le_bytes();
        self.op(6, &[i, a, b, r])
    }
    fn transport(self, i: u8) -> Self {
        self.op(7, &[i])
    }
    fn abandon(self, i: u8) -> Self {
        self.op(8, &[i])
    }
    fn fleet(self, i: u8, v: u16) -> Self {
        let [a, b] = v.to_le_bytes();
        self.op(16, &[i, a, b])
    }
    fn timeout(self) -> Self {
        self.op(9, &[])
    }
    fn rotate(self) -> Self {
        self.op(10, &[])
    }
    fn wall_clock(self) -> Self {
        self.op(11, &[])
    }
    fn seal(self) -> Self {
        self.op(12, &[])
    }
    fn restore(self, flip: u8) -> Self {
        self.op(13, &[flip])
    }
    fn sleep_to_deadline(self) -> Self {
        self.op(14, &[])
    }
    fn sleep_to_wait(self) -> Self {
        self.op(15, &[])
    }
    fn shared(self, t: u8, v: u16) -> Self {
        let [a, b] = v.to_le_bytes();
        self.op(17, &[t, a, b])
    }
    fn adopt(self, t: u8, v: u16) -> Self {
        let [a, b] = v.to_le_bytes();
        self.op(18, &[t, a, b])
    }
}

impl From<Ops> for Vec<u8> {
    fn from(ops: Ops) -> Self {
        ops.0
    }
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

#[test]
fn seed_files_match_their_definitions() {
    let write = std::env::var_os("CREDFLOW_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for (target, name, bytes) in seeds() {
        let path = corpus().join(target).join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "stale seeds (CREDFLOW_WRITE_SEEDS=1 rewrites them): {stale:?}");
}

#[test]
fn every_target_has_seeds() {
    let manifest = std::fs::read_to_string(corpus().with_file_name("Cargo.toml")).unwrap();
    let targets: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "credflow-fuzz")
        .collect();
    assert_eq!(targets.len(), 19);
    let seeds = seeds();
    for target in targets {
        assert!(seeds.iter().filter(|(t, ..)| *t == target).count() >= 3, "{target} lacks seeds");
    }
}

#[test]
fn the_valid_snapshot_seed_unseals() {
    let seeds = seeds();
    let (_, _, bytes) = seeds.iter().find(|(t, n, _)| *t == "snapshot" && *n == "valid").unwrap();
    let fp = Credentials::from_strs(CLIENT.0, CLIENT.1).unwrap().fingerprint();
    let restored = unseal::<256>(&bytes[1..], SNAPSHOT_KEY, SNAPSHOT_NOW, fp).unwrap();
    assert_eq!(restored.token.as_str(), LONG_TOKEN);
    assert!(restored.expires_at > SNAPSHOT_NOW);
}

/// Inputs that once crashed a target, kept as seeds (`seed-regression-<n>`): none may be lost.
const REGRESSIONS: [&str; 10] = [
    "redact/seed-regression-1",
    "redact/seed-regression-2",
    "redis_record/seed-regression-1",
    "retry_after/seed-regression-2",
    "session/seed-regression-1",
    "session/seed-regression-2",
    "session/seed-regression-3",
    "token_error/seed-regression-1",
    "token_request/seed-regression-1",
    "wire/seed-regression-1",
];

#[test]
fn every_input_that_crashed_a_target_is_kept() {
    for seed in REGRESSIONS {
        assert!(corpus().join(seed).is_file(), "{seed} is gone");
    }
    let mut found = Vec::new();
    for target in std::fs::read_dir(corpus()).unwrap() {
        let target = target.unwrap();
        for file in std::fs::read_dir(target.path()).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            if name.starts_with("seed-regression-") {
                found.push(format!("{}/{name}", target.file_name().into_string().unwrap()));
            }
        }
    }
    found.sort();
    assert_eq!(found, REGRESSIONS, "a new crash input: list it in REGRESSIONS");
}
