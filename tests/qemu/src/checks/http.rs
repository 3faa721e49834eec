//! HTTP pieces (`core/src/http/`, `core/src/classify.rs`, `core/src/env.rs`): HTTP-dates
//! (RFC 9110 §5.6.7), `Retry-After` (§10.2.3), Genesys Cloud error bodies, URLs, Bearer
//! challenges (RFC 6750 §3), response classification and environments.

use credflow_core::classify::{
    BearerErrorKind, DiagnosisKind, ResponseClass, WaitSource, classify_response,
};
use credflow_core::env::{EnvError, parse_environment};
use credflow_core::http::date::{MAX_HTTP_DATE, format_http_date, parse_http_date};
use credflow_core::http::genesys::{MAX_DEPTH, MAX_PARAMS, parse_genesys_error};
use credflow_core::http::retry_after::{
    BODY_SCAN_LIMIT, RetryAfter, genesys_retry_after_from_body, parse_retry_after,
};
use credflow_core::http::url::{Scheme, Url, UrlError};
use credflow_core::http::www_authenticate::{BearerError, parse_bearer_challenge};
use credflow_core::rng::Rng;
use credflow_core::{Duration, UnixTime};

use super::text::Text;
use crate::{CheckResult, shown};

const RFC_EXAMPLE: UnixTime = UnixTime::from_secs(784_111_777);

fn date(s: &str) -> Option<u64> {
    parse_http_date(s.as_bytes()).map(UnixTime::as_secs)
}

/// RFC 9110's example in its three formats, and the instants where 32-bit clocks break.
pub(crate) fn http_date_formats_and_32_bit_epochs() -> CheckResult {
    ensure_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(RFC_EXAMPLE));
    ensure_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(RFC_EXAMPLE));
    ensure_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(RFC_EXAMPLE));
    ensure_eq!(format_http_date(RFC_EXAMPLE).as_str(), "Sun, 06 Nov 1994 08:49:37 GMT");
    // Signed 32-bit `time_t` ends at 2^31 - 1, unsigned at 2^32 - 1.
    let known: [(u64, &str); 8] = [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 GMT"),
        (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 GMT"),
        (4_294_967_295, "Sun, 07 Feb 2106 06:28:15 GMT"),
        (4_294_967_296, "Sun, 07 Feb 2106 06:28:16 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 GMT"),
        (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
    ];
    for (secs, text) in known {
        ensure_eq!(format_http_date(UnixTime::from_secs(secs)).as_str(), text);
        ensure_eq!(date(text), Some(secs));
    }
    ensure_eq!(
        format_http_date(UnixTime::from_secs(u64::MAX)).as_str(),
        "Fri, 31 Dec 9999 23:59:59 GMT"
    );
    Ok(())
}

/// Calendar rules, field ranges, the RFC 850 two-digit-year window and garbage.
pub(crate) fn http_date_calendar_and_garbage() -> CheckResult {
    ensure_eq!(date("Mon, 29 Feb 2100 00:00:00 GMT"), None);
    ensure_eq!(date("Wed, 29 Feb 2023 12:00:00 GMT"), None);
    ensure_eq!(date("Thu, 29 Feb 2024 12:00:00 GMT"), Some(1_709_208_000));
    ensure_eq!(date("Wed, 31 Dec 1969 23:59:59 GMT"), None);
    ensure_eq!(date("Sun, 31 Apr 1994 08:49:37 GMT"), None);
    ensure_eq!(date("Sun, 06 Nov 1994 24:00:00 GMT"), None);
    ensure_eq!(date("Sat, 31 Dec 2016 23:59:60 GMT"), date("Sun, 01 Jan 2017 00:00:00 GMT"));
    ensure_eq!(parse_http_date(b"Fri, 31 Dec 9999 23:59:60 GMT"), Some(MAX_HTTP_DATE));
    ensure_eq!(date("Sat, 01 Jan 10000 00:00:00 GMT"), None);
    ensure_eq!(date("Wednesday, 31-Dec-69 23:59:59 GMT"), Some(3_155_759_999));
    ensure_eq!(date("Saturday, 01-Jan-00 00:00:00 GMT"), Some(946_684_800));
    ensure_eq!(date("  sun, 06 nov 1994 08:49:37 gmt \t"), Some(784_111_777));
    for garbage in [
        "",
        "42",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 99999999999999999999 Nov 1994 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994 PST",
        "2024-01-01T00:00:00Z",
    ] {
        ensure!(date(garbage).is_none(), "{garbage:?}");
    }
    ensure_eq!(parse_http_date(&[0xff, 0xfe, b',']), None);
    Ok(())
}

/// Format then parse round-trips for 3000 instants spread over 1970..=9999 (seeded), plus the
/// first and last second of every 97th day: the civil-calendar arithmetic is `u64` division,
/// a software routine on this target.
pub(crate) fn http_date_round_trip_sweep() -> CheckResult {
    let mut rng = Rng::new(0x5eed);
    let max = MAX_HTTP_DATE.as_secs();
    for _ in 0..3000 {
        let t = UnixTime::from_secs(rng.below(max + 1));
        let text = format_http_date(t);
        ensure_eq!(text.as_str().len(), 29);
        ensure!(parse_http_date(text.as_bytes()) == Some(t), "{} -> {}", t, text.as_str());
    }
    let mut day = 0u64;
    while day * 86_400 <= max {
        for t in [day * 86_400, day * 86_400 + 86_399] {
            let t = UnixTime::from_secs(t);
            ensure!(parse_http_date(format_http_date(t).as_bytes()) == Some(t), "{}", t);
        }
        day += 97;
    }
    Ok(())
}

/// `Retry-After` as delay-seconds (saturating far beyond 64 bits) or as an HTTP-date.
pub(crate) fn retry_after_forms() -> CheckResult {
    let delay = |s| Some(RetryAfter::Delay(Duration::from_secs(s)));
    ensure_eq!(parse_retry_after(b" 42 "), delay(42));
    ensure_eq!(parse_retry_after(b"007"), delay(7));
    ensure_eq!(parse_retry_after(b"4294967296"), delay(4_294_967_296));
    ensure_eq!(parse_retry_after(b"18446744073709551615"), Some(RetryAfter::Delay(Duration::MAX)));
    ensure_eq!(
        parse_retry_after(b"99999999999999999999999999999999999999"),
        Some(RetryAfter::Delay(Duration::MAX))
    );
    ensure_eq!(
        parse_retry_after(b"18446744073709551"),
        Some(RetryAfter::Delay(Duration::from_millis(18_446_744_073_709_551_000)))
    );
    for v in [&b""[..], b"-1", b"+5", b"1.5", b"5s", b"0x10", b"\xff\xfe"] {
        ensure!(parse_retry_after(v).is_none(), "{v:?}");
    }
    let at = some!(parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT"));
    ensure_eq!(at, RetryAfter::At(RFC_EXAMPLE));
    ensure_eq!(
        at.delay(Some(UnixTime::from_secs(784_111_777 - 30))),
        Some(Duration::from_secs(30))
    );
    ensure_eq!(at.delay(Some(UnixTime::from_secs(784_111_777 + 1))), Some(Duration::ZERO));
    ensure_eq!(at.delay(None), None);
    ensure_eq!(RetryAfter::from_headers(&[("retry-after", "3")]), delay(3));
    Ok(())
}

/// Genesys Cloud's "Retry the request in [N] seconds" body, and the bounded scan.
pub(crate) fn retry_after_genesys_body() -> CheckResult {
    let g = |b: &[u8]| genesys_retry_after_from_body(b).map(Duration::as_secs);
    ensure_eq!(
        g(br#"{"message":"Rate limit exceeded the maximum. Retry the request in [42] seconds","code":"too.many.requests.retry.after","status":429}"#),
        Some(42)
    );
    ensure_eq!(g(b"RETRY THE REQUEST IN [ 1 ] SECOND"), Some(1));
    ensure_eq!(g(b"Retry the request in [99999999999999999999999] seconds"), Some(u64::MAX / 1000));
    ensure_eq!(
        g(b"Retry the request in [soon] seconds. Retry the request in [5] seconds"),
        Some(5)
    );
    for miss in [
        &b"Retry the request in [42"[..],
        b"Retry the request in [42] minutes",
        b"Retry the request in [-3] seconds",
    ] {
        ensure!(g(miss).is_none());
    }
    let tail = b"Retry the request in [9] seconds";
    let mut body = Text::<{ BODY_SCAN_LIMIT + 64 }>::new();
    body.repeat(b" ", BODY_SCAN_LIMIT).push(tail);
    ensure_eq!(g(some!(body.bytes())), None);
    let mut body = Text::<{ BODY_SCAN_LIMIT + 64 }>::new();
    body.repeat(b" ", BODY_SCAN_LIMIT - tail.len()).push(tail).repeat(b" ", 64);
    ensure_eq!(g(some!(body.bytes())), Some(9));
    Ok(())
}

/// Genesys error bodies name the missing permissions, from the message or `messageParams`.
pub(crate) fn genesys_error_permissions() -> CheckResult {
    {
        let e = some!(parse_genesys_error(br#"{"message":"Unable to perform the requested action. You are missing the following permission(s): [analytics:conversationDetail:view]","code":"missing.permissions","status":403,"messageParams":{},"contextId":"0d1f6a2e-5b3c-4e8f-9a71-2c6d8e4b0f13","details":[],"errors":[]}"#));
        ensure_eq!(e.status, Some(403));
        ensure!(e.has_code("missing.permissions"));
        ensure_eq!(e.context_id.as_deref(), Some("0d1f6a2e-5b3c-4e8f-9a71-2c6d8e4b0f13"));
        let mut perms = e.missing_permissions();
        ensure_eq!((perms.next(), perms.next()), (Some("analytics:conversationDetail:view"), None));
    }
    {
        let e = some!(parse_genesys_error(br#"{"code":"missing.any.permissions","messageParams":{"count":2,"missingPermissions":["a:b:view","c:d:add"],"nested":{"x":1}}}"#));
        ensure_eq!(e.message_params.len(), 1);
        let mut perms = e.missing_permissions();
        ensure_eq!(
            (perms.next(), perms.next(), perms.next()),
            (Some("a:b:view"), Some("c:d:add"), None)
        );
    }
    let e = some!(parse_genesys_error(br#"{"message":"You must have at least one of the following permissions assigned: [] in at least one of the following division(s): [dbdb51ee-1c2a]","code":"missing.any.permissions","status":403}"#));
    ensure_eq!(e.missing_permissions().next(), None);
    Ok(())
}

/// Oddities are tolerated (wrong types, out-of-range status, escapes, too many params), bodies
/// that are not Genesys errors are refused, and nesting is cut, not recursed.
pub(crate) fn genesys_error_oddities_and_depth() -> CheckResult {
    ensure_eq!(
        some!(parse_genesys_error(
            br#"{"code":"c","messageParams":{"a":"1","b":"2","c":"3","d":"4","e":"5"}}"#
        ))
        .message_params
        .len(),
        MAX_PARAMS
    );
    for (body, status) in [
        (&br#"{"status":70000,"code":"c"}"#[..], None),
        (br#"{"status":-1,"code":"c"}"#, None),
        (br#"{"status":429,"code":"c"}"#, Some(429)),
    ] {
        ensure_eq!(some!(parse_genesys_error(body)).status, status);
    }
    ensure_eq!(
        some!(parse_genesys_error(
            br#"{"message":"a \"b\" \\ c\/d \u00e9 \ud83d\ude00 \ud800x \n\tEND","code":"x"}"#
        ))
        .message
        .as_str(),
        "a \"b\" \\ c/d \u{e9} \u{1f600} \u{fffd}x   END"
    );
    ensure_eq!(
        shown::<96>(some!(parse_genesys_error(
            br#"{"message":"You are not authorized.","code":"not.authorized","status":403}"#
        )))
        .as_str(),
        "not.authorized (403): You are not authorized."
    );
    for body in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        b"<html>502</html>",
        br#"{"error":"invalid_client"}"#,
        b"{",
    ] {
        ensure!(parse_genesys_error(body).is_none(), "{body:?}");
    }
    let mut deep = Text::<4096>::new();
    deep.push(br#"{"code":"deep","details":"#)
        .repeat(b"[", 1800)
        .repeat(b"]", 1800)
        .push(br#","message":"after"}"#);
    let e = some!(parse_genesys_error(some!(deep.bytes())));
    ensure!(e.has_code("deep") && e.message.is_empty());
    let mut within = Text::<128>::new();
    within
        .push(br#"{"details":"#)
        .repeat(b"[", MAX_DEPTH - 1)
        .repeat(b"]", MAX_DEPTH - 1)
        .push(br#","code":"ok"}"#);
    ensure!(some!(parse_genesys_error(some!(within.bytes()))).has_code("ok"));
    Ok(())
}

/// Token URLs split into the parts a request needs; what must not be in one is refused.
pub(crate) fn urls() -> CheckResult {
    let u = ok!(Url::parse("HTTP://127.0.0.1:8080/token?x=1&y=%20"));
    ensure_eq!(
        (u.scheme, u.host, u.port, u.path_and_query),
        (Scheme::Http, "127.0.0.1", Some(8080), "/token?x=1&y=%20")
    );
    ensure_eq!(shown::<32>(u.authority()).as_str(), "127.0.0.1:8080");
    ensure_eq!(shown::<32>(ok!(Url::parse("https://h:443/")).authority()).as_str(), "h");
    ensure_eq!(ok!(Url::parse("http://[::1]:9000/t")).host, "[::1]");
    ensure_eq!(ok!(Url::parse("https://h:65535/")).port, Some(65535));
    let cases: [(&str, UrlError); 12] = [
        ("login.example.com/oauth/token", UrlError::NotAbsolute),
        ("ftp://h/", UrlError::UnsupportedScheme),
        ("https://user:pw@h/", UrlError::UserInfo),
        ("https://h/#frag", UrlError::Fragment),
        ("https:///path", UrlError::EmptyHost),
        ("https://h:0/", UrlError::BadPort),
        ("https://h:65536/", UrlError::BadPort),
        ("https://h:4294967297/", UrlError::BadPort),
        ("https://h?x=1", UrlError::MissingPath),
        ("https://[::1/", UrlError::InvalidHost),
        ("https://h/a b", UrlError::InvalidCharacter { at: 11 }),
        ("https://hé/", UrlError::InvalidCharacter { at: 9 }),
    ];
    for (input, error) in cases {
        ensure!(Url::parse(input) == Err(error), "{input:?}: {:?}", Url::parse(input));
    }
    Ok(())
}

/// RFC 6750 §3 challenges, among other schemes and with quoting.
pub(crate) fn bearer_challenges() -> CheckResult {
    let c = some!(parse_bearer_challenge(
        br#"Basic realm="x", Bearer realm="api", error="invalid_token", error_description="The access token expired", scope="a b""#
    ));
    ensure_eq!(
        (c.realm, c.error, c.scope),
        (Some("api"), Some(BearerError::InvalidToken), Some("a b"))
    );
    ensure_eq!(c.error_description, Some("The access token expired"));
    let c = some!(parse_bearer_challenge(
        br#"Bearer   error = "invalid_token" ,error_description="a, \"quoted\" b",scope=x"#
    ));
    ensure_eq!(c.error_description, Some(r#"a, \"quoted\" b"#));
    let mut unescaped = heapless::String::<32>::new();
    for ch in some!(c.error_description()) {
        ok!(unescaped.push(ch));
    }
    ensure_eq!(unescaped.as_str(), r#"a, "quoted" b"#);
    ensure_eq!(parse_bearer_challenge(br#"Basic realm="x", Digest realm="y", nonce="z""#), None);
    ensure_eq!(
        some!(parse_bearer_challenge(br#"Bearer error="token_revoked""#)).error,
        Some(BearerError::Other("token_revoked"))
    );
    Ok(())
}

/// What an API response means for the retry layer, with its correlation id and rate limit.
pub(crate) fn response_classification() -> CheckResult {
    const ID: &str = "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c";
    let now = Some(UnixTime::from_secs(1_792_152_841));
    let h = [
        ("ININ-Correlation-Id", ID),
        ("inin-ratelimit-count", "1"),
        ("inin-ratelimit-allowed", "180"),
        ("inin-ratelimit-reset", "61"),
    ];
    let c = classify_response(200, &h, b"{}", now);
    ensure_eq!(c.class, ResponseClass::Success);
    ensure_eq!(c.correlation_id.as_ref().map(|c| c.as_str()), Some(ID));
    ensure_eq!(c.rate_limit.and_then(|r| r.remaining), Some(179));
    let h = [("WWW-Authenticate", r#"Bearer realm="api", error="invalid_token""#)];
    ensure_eq!(
        classify_response(401, &h, b"", now).class,
        ResponseClass::Unauthorized {
            challenge: BearerErrorKind::InvalidToken,
            genesys_code: None
        }
    );
    let body = br#"{"message":"You are missing the following permission(s): [routing:queue:view]","code":"missing.permissions","status":403}"#;
    match classify_response(403, &[("a", "b")], body, now).class {
        ResponseClass::Forbidden(d) => {
            ensure_eq!(d.kind, DiagnosisKind::MissingPermissions);
            ensure_eq!(d.missing.as_str(), "routing:queue:view");
        }
        other => return Err(fail!("403 is Forbidden").with_detail(format_args!("{other:?}"))),
    }
    let body = br#"{"message":"Rate limit exceeded the maximum. Retry the request in [42] seconds","code":"too.many.requests.retry.after","status":429}"#;
    ensure_eq!(
        classify_response(429, &[("Retry-After", "7")], body, now).class,
        ResponseClass::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
            source: WaitSource::Header
        }
    );
    ensure_eq!(
        classify_response(429, &[("a", "b")], body, now).class,
        ResponseClass::RateLimited {
            retry_after: Some(Duration::from_secs(42)),
            source: WaitSource::Body
        }
    );
    ensure_eq!(
        classify_response(503, &[("a", "b")], b"", now).class,
        ResponseClass::Transient { status: 503, retry_after: None }
    );
    for status in [404, 501, 600, 0, u16::MAX] {
        ensure!(
            classify_response(status, &[("a", "b")], b"", now).class
                == ResponseClass::Permanent { status },
            "{status}"
        );
    }
    Ok(())
}

/// Genesys Cloud environments by region, domain or URL.
pub(crate) fn environments() -> CheckResult {
    for input in [
        "eu-west-1",
        "EU_WEST_1",
        "mypurecloud.ie",
        "api.mypurecloud.ie",
        "https://login.mypurecloud.ie/",
        "  eu-west-1\n",
    ] {
        let env = ok!(parse_environment(input));
        ensure_eq!(
            (env.region, env.token_url),
            ("eu-west-1", "https://login.mypurecloud.ie/oauth/token")
        );
    }
    ensure_eq!(parse_environment(" "), Err(EnvError::Empty));
    ensure_matches!(parse_environment("example.com"), Err(EnvError::Unknown { .. }));
    Ok(())
}
