//! The OAuth layer (`core/src/oauth/`): request encoding (RFC 6749 §2.3.1, §4.4.2, Appendix B),
//! `client_secret_jwt` (RFC 7515 A.1, RFC 7523 §2.2), token responses (§5.1) and token errors
//! (§5.2, with Genesys Cloud's dialect), including hostile bodies.

use credflow_core::Duration;
use credflow_core::UnixTime;
use credflow_core::http::url::{Scheme, UrlError};
use credflow_core::oauth::form::{
    BufferTooSmall, FormWriter, basic_authorization, encode, encoded_len,
};
use credflow_core::oauth::jwt::{self, AssertionClaims, client_assertion, sign_hs256};
use credflow_core::oauth::response::{DEFAULT_EXPIRES_IN, MAX_EXPIRES_IN, missing_scopes};
use credflow_core::oauth::{
    AuthMethod, EncodeError, ErrorCode, ExpiresInSource, JwtInputs, ResponseError, ResponseOptions,
    ScopeCheck, TokenErrorClass, TokenRequestConfig, TokenResponse, encode_token_request,
    parse_token_error, parse_token_response,
};
use credflow_core::secret::{Credentials, TokenError};

use super::text::{Text, head};
use crate::{CheckResult, shown};

const URL: &str = "https://login.mypurecloud.com/oauth/token";
const JWT: JwtInputs = JwtInputs { now: UnixTime::from_secs(1_700_000_000), jti: [7; 16] };

fn parse(body: &[u8]) -> Result<TokenResponse<64>, ResponseError> {
    parse_token_response(body, &ResponseOptions::default())
}

/// RFC 6749 §2.3.1's example, and form-encoding of id and secret before base64.
pub(crate) fn basic_authorization_vectors() -> CheckResult {
    let mut buf = [0u8; 128];
    ensure_eq!(
        ok!(basic_authorization("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw", &mut buf)),
        "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3"
    );
    // base64 of `a%3Ab:c%3Ad`, `id:50%25%20off`, ... (computed by a reference encoder).
    let cases = [
        ("a:b", "c:d", "Basic YSUzQWI6YyUzQWQ="),
        ("id", "50% off", "Basic aWQ6NTAlMjUlMjBvZmY="),
        ("id", "p+q", "Basic aWQ6cCUyQnE="),
        ("ü", "€ x", "Basic JUMzJUJDOiVFMiU4MiVBQyUyMHg="),
        ("A-z0.9_~", "~._-", "Basic QS16MC45X346fi5fLQ=="),
    ];
    for (id, secret, expected) in cases {
        ensure_eq!(ok!(basic_authorization(id, secret, &mut buf)), expected);
    }
    ensure_eq!(
        basic_authorization("id", "p+q", head(&mut buf, 17)),
        Err(BufferTooSmall { needed: 18 })
    );
    Ok(())
}

/// Percent-encoding (space is `%20`, never `+`) and the all-or-nothing form writer.
pub(crate) fn form_encoding() -> CheckResult {
    let mut buf = [0u8; 64];
    ensure_eq!(ok!(encode("", &mut buf)), "");
    ensure_eq!(ok!(encode("a b+c%d/e=f&g*h", &mut buf)), "a%20b%2Bc%25d%2Fe%3Df%26g%2Ah");
    ensure_eq!(ok!(encode("\u{7f}\0é", &mut buf)), "%7F%00%C3%A9");
    ensure_eq!(encoded_len("a b"), 5);
    ensure_eq!(encode("a b", &mut [0u8; 4]), Err(BufferTooSmall { needed: 5 }));
    ensure_eq!(ok!(encode("a b", &mut [0u8; 5])), "a%20b");
    let mut buf = [0u8; 20];
    let mut form = FormWriter::new(&mut buf);
    ok!(form.pair("a", "1 2"));
    ensure_eq!(form.pair("b b b", "x/y"), Err(BufferTooSmall { needed: 23 }));
    ensure_eq!(form.as_str(), "a=1%202");
    ok!(form.pair("bb", "x/y"));
    ensure_eq!(form.pair("c", "de"), Err(BufferTooSmall { needed: 21 }));
    ok!(form.pair("c", "d"));
    ensure_eq!(form.into_str(), "a=1%202&bb=x%2Fy&c=d");
    Ok(())
}

/// The exact bytes of RFC 6749 §4.4.2's token request, and an exact "buffer too small".
pub(crate) fn token_request_rfc6749_bytes() -> CheckResult {
    let creds = ok!(Credentials::from_strs("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw"));
    let cfg = TokenRequestConfig::new("https://server.example.com/token");
    let mut buf = [0u8; 512];
    let req = ok!(encode_token_request(&cfg, &creds, None, &mut buf));
    let mut wire = [0u8; 512];
    let n = ok!(req.write_http1(&mut wire));
    ensure_eq!(
        core::str::from_utf8(wire.get(..n).unwrap_or_default()),
        Ok("POST /token HTTP/1.1\r\n\
            Host: server.example.com\r\n\
            Authorization: Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3\r\n\
            Content-Type: application/x-www-form-urlencoded\r\n\
            Content-Length: 29\r\n\
            Accept: application/json\r\n\
            Connection: keep-alive\r\n\
            \r\n\
            grant_type=client_credentials")
    );
    ensure_eq!(
        req.write_http1(head(&mut wire, n - 1)),
        Err(EncodeError::BufferTooSmall { needed: n })
    );
    ensure_eq!((req.scheme, req.port, req.hostname), (Scheme::Https, 443, "server.example.com"));
    let dbg = shown::<256>(format_args!("{req:?}"));
    ensure!(!dbg.contains("czZC") && dbg.contains("<redacted>"), "{}", dbg);
    Ok(())
}

/// `client_secret_post`: scope, extras in order, credentials last, all percent-encoded.
pub(crate) fn token_request_post_body() -> CheckResult {
    let creds = ok!(Credentials::from_strs("id:1", "p a+s%s"));
    let extra = [("audience", "https://api.example/"), ("resource", "urn:x y")];
    let cfg = TokenRequestConfig {
        auth: AuthMethod::ClientSecretPost,
        scope: Some(" read write "),
        extra: &extra,
        ..TokenRequestConfig::new(URL)
    };
    let mut buf = [0u8; 1024];
    let req = ok!(encode_token_request(&cfg, &creds, Some(&JWT), &mut buf));
    ensure_eq!(req.authorization, None);
    ensure_eq!(
        req.body,
        "grant_type=client_credentials&scope=read%20write\
         &audience=https%3A%2F%2Fapi.example%2F&resource=urn%3Ax%20y\
         &client_id=id%3A1&client_secret=p%20a%2Bs%25s"
    );
    let mut buf = [0u8; 512];
    let cfg = TokenRequestConfig::new("http://[::1]:8080/t?x=1");
    let req = ok!(encode_token_request(&cfg, &creds, None, &mut buf));
    ensure_eq!((req.host, req.hostname, req.port, req.path), ("[::1]:8080", "::1", 8080, "/t?x=1"));
    let cfg = TokenRequestConfig::new("https://h.example:443");
    let req = ok!(encode_token_request(&cfg, &creds, None, &mut buf));
    ensure_eq!((req.host, req.hostname, req.port, req.path), ("h.example", "h.example", 443, "/"));
    Ok(())
}

/// Reserved names, bad URLs and a missing JWT input are refused; the size needed is exact for
/// every method (T-1 fails with the same `needed`, T succeeds).
pub(crate) fn token_request_refusals_and_exact_size() -> CheckResult {
    let creds = ok!(Credentials::from_strs("client", "secret"));
    let mut buf = [0u8; 2048];
    let bad = TokenRequestConfig::new("login.example/token");
    ensure_eq!(
        encode_token_request(&bad, &creds, None, &mut buf).map(|_| ()),
        Err(EncodeError::InvalidUrl(UrlError::NotAbsolute))
    );
    for name in ["grant_type", "scope", "client_id", "client_secret", "client_assertion_type"] {
        let extra = [("ok", "1"), (name, "x")];
        let cfg = TokenRequestConfig { extra: &extra, ..TokenRequestConfig::new(URL) };
        ensure_eq!(
            encode_token_request(&cfg, &creds, None, &mut buf).map(|_| ()),
            Err(EncodeError::ReservedParameter { index: 1 })
        );
    }
    let jwt =
        TokenRequestConfig { auth: AuthMethod::ClientSecretJwt, ..TokenRequestConfig::new(URL) };
    ensure_eq!(
        encode_token_request(&jwt, &creds, None, &mut buf).map(|_| ()),
        Err(EncodeError::MissingJwtInputs)
    );
    for auth in
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::ClientSecretJwt]
    {
        let cfg = TokenRequestConfig { auth, scope: Some("a b"), ..TokenRequestConfig::new(URL) };
        let needed = match encode_token_request(&cfg, &creds, Some(&JWT), head(&mut buf, 10)) {
            Err(EncodeError::BufferTooSmall { needed }) => needed,
            other => {
                return Err(fail!("BufferTooSmall").with_detail(format_args!("{auth}: {other:?}")));
            }
        };
        ensure!(
            encode_token_request(&cfg, &creds, Some(&JWT), head(&mut buf, needed)).is_ok(),
            "{}",
            auth
        );
        ensure_eq!(
            encode_token_request(&cfg, &creds, Some(&JWT), head(&mut buf, needed - 1)).map(|_| ()),
            Err(EncodeError::BufferTooSmall { needed })
        );
    }
    Ok(())
}

/// RFC 7515 Appendix A.1: HMAC-SHA256 over the exact octets given, the published signature.
pub(crate) fn hs256_rfc7515_a1() -> CheckResult {
    let header = b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
    let payload =
        b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
    let key: [u8; 64] = [
        0x03, 0x23, 0x35, 0x4b, 0x2b, 0x0f, 0xa5, 0xbc, 0x83, 0x7e, 0x06, 0x65, 0x77, 0x7b, 0xa6,
        0x8f, 0x5a, 0xb3, 0x28, 0xe6, 0xf0, 0x54, 0xc9, 0x28, 0xa9, 0x0f, 0x84, 0xb2, 0xd2, 0x50,
        0x2e, 0xbf, 0xd3, 0xfb, 0x5a, 0x92, 0xd2, 0x06, 0x47, 0xef, 0x96, 0x8a, 0xb4, 0xc3, 0x77,
        0x62, 0x3d, 0x22, 0x3d, 0x2e, 0x21, 0x72, 0x05, 0x2e, 0x4f, 0x08, 0xc0, 0xcd, 0x9a, 0xf5,
        0x67, 0xd0, 0x80, 0xa3,
    ];
    let mut buf = [0u8; 256];
    let jws = ok!(sign_hs256(header, payload, &key, &mut buf));
    ensure_eq!(
        jws,
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
         .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
         .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    );
    let n = jws.len();
    ensure_eq!(
        sign_hs256(header, payload, &key, head(&mut buf, n - 1)),
        Err(BufferTooSmall { needed: n })
    );
    Ok(())
}

/// A `client_secret_jwt` assertion (RFC 7523 §3 claims), byte for byte as a reference
/// implementation signs it, and the same assertion inside the token request body.
pub(crate) fn client_secret_jwt_assertion() -> CheckResult {
    const EXPECTED: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9\
        .eyJpc3MiOiJteS1jbGllbnQiLCJzdWIiOiJteS1jbGllbnQiLCJhdWQiOiJodHRwczovL2xvZ2luLmV4YW1wbGUvb2F1dGgvdG9rZW4iLCJqdGkiOiJNREV5TXpRMU5qYzRPV0ZpWTJSbFpnIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDAwNjB9\
        .DloCxLMpgHBqySsX8y4KerFe5CBU00lw_tWU7mGBp9E";
    let creds = ok!(Credentials::from_strs("my-client", "a secret of 32 bytes or more!!!!"));
    let audience = "https://login.example/oauth/token";
    let claims = AssertionClaims {
        audience,
        jti: *b"0123456789abcdef",
        issued_at: UnixTime::from_secs(1_700_000_000),
        lifetime: jwt::DEFAULT_LIFETIME,
    };
    let mut buf = [0u8; 512];
    ensure_eq!(ok!(client_assertion(&creds, &claims, &mut buf)), EXPECTED);
    let jwt_inputs = JwtInputs { now: claims.issued_at, jti: claims.jti };
    let cfg = TokenRequestConfig {
        auth: AuthMethod::ClientSecretJwt,
        ..TokenRequestConfig::new(audience)
    };
    let mut buf = [0u8; 1024];
    let req = ok!(encode_token_request(&cfg, &creds, Some(&jwt_inputs), &mut buf));
    ensure_eq!(req.authorization, None);
    let prefix = "grant_type=client_credentials&client_id=my-client\
        &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
        &client_assertion=";
    ensure_eq!(req.body.strip_prefix(prefix), Some(EXPECTED));
    ensure!(!req.body.contains("secret"));
    let late = AssertionClaims { issued_at: UnixTime::from_secs(u64::MAX - 10), ..claims };
    ensure_eq!(late.expires_at(), UnixTime::from_secs(u64::MAX));
    Ok(())
}

/// A Genesys Cloud token response, escapes, and the token's true (unescaped) length at T-1/T.
pub(crate) fn token_response_reading() -> CheckResult {
    let r = ok!(parse(
        br#"{"access_token":"abc.DEF-123_~+/=","token_type":"bearer","expires_in":86400}"#
    ));
    ensure_eq!(r.access_token.as_str(), "abc.DEF-123_~+/=");
    ensure_eq!(
        (r.expires_in, r.expires_in_source),
        (Duration::from_secs(86400), ExpiresInSource::Reported)
    );
    ensure_eq!((&r.granted_scope, r.scope_check), (&None, ScopeCheck::NotRequested));
    ensure!(!shown::<256>(format_args!("{r:?}")).contains("abc.DEF"));
    let r = ok!(parse(br#"{"token_type":"Bearer","access_token":"a\/b\u002Bc\\d\"e"}"#));
    ensure_eq!(r.access_token.as_str(), r#"a/b+c\d"e"#);
    ensure_eq!(r.expires_in_source, ExpiresInSource::Defaulted);
    ensure!(parse("\u{feff}{\"access_token\":\"t\",\"token_type\":\"bearer\"}".as_bytes()).is_ok());

    let mut body = Text::<512>::new();
    body.push(br#"{"access_token":""#).repeat(b"x", 65).push(br#"","token_type":"Bearer"}"#);
    ensure_eq!(
        parse(some!(body.bytes())).err(),
        Some(ResponseError::TokenTooLong { needed: 65, capacity: 64 })
    );
    let mut body = Text::<512>::new();
    body.push(br#"{"access_token":""#).repeat(br"\/", 100).push(br#"","token_type":"Bearer"}"#);
    ensure_eq!(
        parse(some!(body.bytes())).err(),
        Some(ResponseError::TokenTooLong { needed: 100, capacity: 64 })
    );
    let mut body = Text::<512>::new();
    body.push(br#"{"access_token":""#).repeat(br"\/", 64).push(br#"","token_type":"Bearer"}"#);
    let r = ok!(parse(some!(body.bytes())));
    ensure!(r.access_token.len() == 64 && r.access_token.as_str().bytes().all(|b| b == b'/'));
    Ok(())
}

/// Tokens that could not go into a header, and token types other than Bearer, are refused.
pub(crate) fn token_response_hostile_tokens() -> CheckResult {
    let cases: [(&[u8], ResponseError); 9] = [
        (
            br#"{"access_token":"","token_type":"Bearer"}"#,
            ResponseError::InvalidAccessToken(TokenError::Empty),
        ),
        (
            br#"{"access_token":"a b","token_type":"Bearer"}"#,
            ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { at: 1 }),
        ),
        (
            br#"{"access_token":"ab\r\nX-Evil: 1","token_type":"Bearer"}"#,
            ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { at: 2 }),
        ),
        (
            br#"{"access_token":"ab\u0000","token_type":"Bearer"}"#,
            ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { at: 2 }),
        ),
        (
            br#"{"access_token":"\u00e9","token_type":"Bearer"}"#,
            ResponseError::InvalidAccessToken(TokenError::InvalidCharacter { at: 0 }),
        ),
        (br#"{"access_token":null,"token_type":"Bearer"}"#, ResponseError::MissingAccessToken),
        (br#"{"token_type":"Bearer"}"#, ResponseError::MissingAccessToken),
        (br#"{"access_token":42,"token_type":"Bearer"}"#, ResponseError::Malformed),
        (br#"{"access_token":"t"}"#, ResponseError::MissingTokenType),
    ];
    for (body, error) in cases {
        ensure_eq!(parse(body).err(), Some(error));
    }
    ensure!(parse(br#"{"access_token":"t","token_type":"B\u0065arer"}"#).is_ok());
    for body in [
        br#"{"access_token":"t","token_type":"DPoP"}"#.as_slice(),
        br#"{"access_token":"t","token_type":"bearer "}"#,
    ] {
        ensure_matches!(parse(body), Err(ResponseError::UnsupportedTokenType(_)));
    }
    Ok(())
}

/// `expires_in` in every form servers send, fractions and exponents read exactly with integer
/// arithmetic (no float code in firmware), with 64-bit extremes that a 32-bit parser could get
/// wrong: huge values clamp to the maximum, negative ones (however large) are spent.
pub(crate) fn token_response_expires_in_forms() -> CheckResult {
    let s = Duration::from_secs;
    let cases: [(&str, Duration, ExpiresInSource); 20] = [
        ("3600", s(3600), ExpiresInSource::Reported),
        ("\"3600\"", s(3600), ExpiresInSource::Reported),
        ("\" 3600 \"", s(3600), ExpiresInSource::Reported),
        ("\"3600.9\"", s(3600), ExpiresInSource::Reported),
        ("3.6e3", s(3600), ExpiresInSource::Reported),
        ("4294967297", MAX_EXPIRES_IN, ExpiresInSource::Clamped),
        ("604800", MAX_EXPIRES_IN, ExpiresInSource::Reported),
        ("604801", MAX_EXPIRES_IN, ExpiresInSource::Clamped),
        ("\"99999999999999999999999\"", MAX_EXPIRES_IN, ExpiresInSource::Clamped),
        ("18446744073709551616", MAX_EXPIRES_IN, ExpiresInSource::Clamped),
        ("1e30", MAX_EXPIRES_IN, ExpiresInSource::Clamped),
        ("1e999", MAX_EXPIRES_IN, ExpiresInSource::Clamped),
        ("null", DEFAULT_EXPIRES_IN, ExpiresInSource::Defaulted),
        ("-9223372036854775808", Duration::ZERO, ExpiresInSource::NonPositive),
        ("\"-30\"", Duration::ZERO, ExpiresInSource::NonPositive),
        ("-1e30", Duration::ZERO, ExpiresInSource::NonPositive),
        ("\"0.9\"", Duration::ZERO, ExpiresInSource::NonPositive),
        ("1e-3", Duration::ZERO, ExpiresInSource::NonPositive),
        ("\"NaN\"", DEFAULT_EXPIRES_IN, ExpiresInSource::Unparseable),
        ("\"1e\"", DEFAULT_EXPIRES_IN, ExpiresInSource::Unparseable),
    ];
    for (value, expires_in, source) in cases {
        let mut body = Text::<128>::new();
        body.push(br#"{"access_token":"t","token_type":"bearer","expires_in":"#)
            .push(value.as_bytes())
            .push(b"}");
        let r = ok!(parse(some!(body.bytes())));
        ensure!(
            (r.expires_in, r.expires_in_source) == (expires_in, source),
            "{value}: {:?} {:?}",
            r.expires_in,
            r.expires_in_source
        );
    }
    Ok(())
}

/// Scopes compare as sets of tokens (RFC 6749 §3.3).
pub(crate) fn token_response_scope_sets() -> CheckResult {
    let check = |requested: Option<&str>, body: &[u8]| {
        parse_token_response::<16>(
            body,
            &ResponseOptions { requested_scope: requested, ..Default::default() },
        )
        .map(|r| r.scope_check)
    };
    let b = |s: &'static str| s.as_bytes();
    ensure_eq!(
        check(Some("a b"), b(r#"{"access_token":"t","token_type":"bearer","scope":"b a"}"#)),
        Ok(ScopeCheck::AsRequested)
    );
    ensure_eq!(
        check(Some("a  b "), b(r#"{"access_token":"t","token_type":"bearer","scope":"b\ta"}"#)),
        Ok(ScopeCheck::AsRequested)
    );
    ensure_eq!(
        check(Some("a b"), b(r#"{"access_token":"t","token_type":"bearer","scope":"a c"}"#)),
        Ok(ScopeCheck::Narrowed)
    );
    ensure_eq!(
        check(Some("a"), b(r#"{"access_token":"t","token_type":"bearer","scope":"a b"}"#)),
        Ok(ScopeCheck::Widened)
    );
    ensure_eq!(
        check(Some("a"), b(r#"{"access_token":"t","token_type":"bearer"}"#)),
        Ok(ScopeCheck::NotReported)
    );
    ensure_eq!(
        check(None, b(r#"{"access_token":"t","token_type":"bearer","scope":"a"}"#)),
        Ok(ScopeCheck::NotRequested)
    );
    let mut missing = missing_scopes("a b c", "b");
    ensure_eq!((missing.next(), missing.next(), missing.next()), (Some("a"), Some("c"), None));
    Ok(())
}

/// Bodies that are not token responses, including nesting deep enough to exhaust a small stack
/// if it were recursed into.
pub(crate) fn token_response_not_a_token() -> CheckResult {
    ensure_eq!(parse(b"").err(), Some(ResponseError::Empty));
    ensure_eq!(parse(b" \r\n").err(), Some(ResponseError::Empty));
    ensure_eq!(parse(b"<html>502 Bad Gateway</html>").err(), Some(ResponseError::NotJson));
    ensure_eq!(parse(b"[]").err(), Some(ResponseError::NotJson));
    ensure_eq!(parse(br#"{"access_token":"t""#).err(), Some(ResponseError::Malformed));
    ensure_eq!(
        parse(br#"{"access_token":"t","access_token":"u","token_type":"bearer"}"#).err(),
        Some(ResponseError::Malformed)
    );
    ensure_eq!(
        parse(br#"{"error":"invalid_client","error_description":"x"}"#).err(),
        Some(ResponseError::ErrorBody)
    );
    ensure!(
        parse(br#"{"access_token":"t","token_type":"bearer","x":[[[[[[{"y":1}]]]]]]}"#).is_ok()
    );
    let mut deep = Text::<4096>::new();
    deep.push(br#"{"access_token":"t","token_type":"bearer","x":"#)
        .repeat(b"[", 2000)
        .repeat(b"]", 2000)
        .push(b"}");
    ensure_eq!(parse(some!(deep.bytes())).err(), Some(ResponseError::Malformed));
    let mut in_string = Text::<256>::new();
    in_string
        .push(br#"{"access_token":"t","token_type":"bearer","x":""#)
        .repeat(b"[", 50)
        .push(br#"\""#)
        .repeat(b"{", 50)
        .push(br#""}"#);
    ensure!(parse(some!(in_string.bytes())).is_ok());
    Ok(())
}

/// Genesys Cloud's `invalid_client` body, on 400 and 401, read and explained.
pub(crate) fn token_error_bad_credentials() -> CheckResult {
    let body = br#"{"error":"invalid_client","description":"authentication failed","error_description":"authentication failed"}"#;
    for (status, text) in [
        (400, "invalid_client (HTTP 400): authentication failed"),
        (401, "invalid_client (HTTP 401): authentication failed"),
    ] {
        let e = parse_token_error(status, body);
        ensure_eq!(e.code, Some(ErrorCode::InvalidClient));
        ensure_eq!(
            (e.description.as_str(), e.class),
            ("authentication failed", TokenErrorClass::CredentialsRejected)
        );
        ensure!(e.class.is_fatal() && !e.class.is_retryable());
        ensure!(e.class.likely_cause().contains("region"));
        ensure_eq!(shown::<96>(&e).as_str(), text);
    }
    Ok(())
}

/// The class decides retries: codes over status, Genesys's 400 "rate limit exceeded", and the
/// status alone for bodies without a code.
pub(crate) fn token_error_classes() -> CheckResult {
    use TokenErrorClass::*;
    let class = |status: u16, body: &str| parse_token_error(status, body.as_bytes()).class;
    let cases: [(u16, &str, TokenErrorClass); 14] = [
        (
            400,
            r#"{"error":"invalid_request","error_description":"rate limit exceeded; retry in 10 s"}"#,
            RateLimited,
        ),
        (400, r#"{"error":"invalid_request","description":"RATE LIMIT EXCEEDED"}"#, RateLimited),
        (400, r#"{"error":"invalid_request","error_description":"missing grant_type"}"#, Permanent),
        (
            400,
            r#"{"error":"invalid_client","error_description":"rate limit exceeded"}"#,
            CredentialsRejected,
        ),
        (200, r#"{"error":"invalid_client"}"#, CredentialsRejected),
        (400, r#"{"error":"invalid_scope"}"#, ScopeRejected),
        (400, r#"{"error":"unsupported_grant_type"}"#, GrantRejected),
        (400, r#"{"error":"slow_down"}"#, RateLimited),
        (503, r#"{"error":"invalid_request"}"#, Transient),
        (400, r#"{"error":"INVALID_CLIENT"}"#, CredentialsRejected),
        (502, "<html><body>502 Bad Gateway</body></html>", Transient),
        (429, "", RateLimited),
        (401, "", CredentialsRejected),
        (404, r#"{"message":"no such route","status":404}"#, Permanent),
    ];
    for (status, body, expected) in cases {
        ensure!(class(status, body) == expected, "{status} {body}: {:?}", class(status, body));
    }
    ensure_eq!(shown::<64>(parse_token_error(502, b"<html>")).as_str(), "HTTP 502");
    ensure_eq!(
        shown::<64>(parse_token_error(404, br#"{"message":"no such route","status":404}"#))
            .as_str(),
        "HTTP 404: no such route"
    );
    Ok(())
}

/// Server text is bounded at character boundaries and control characters are neutralised.
pub(crate) fn token_error_text_bounded() -> CheckResult {
    let mut body = Text::<1024>::new();
    body.push(br#"{"error":""#)
        .repeat(b"x", 70)
        .push(br#"","error_description":"line1\nline2\u001b[31m "#)
        .repeat("é".as_bytes(), 200)
        .push(br#"","error_uri":"https:\/\/docs.example\/e"}"#);
    let e = parse_token_error(400, some!(body.bytes()));
    let code = some!(e.code.as_ref());
    ensure_matches!(code, ErrorCode::Other(_));
    ensure_eq!(code.as_str().len(), 64);
    ensure!(e.description.starts_with("line1 line2 [31m é"), "{}", e.description);
    ensure!((255..=256).contains(&e.description.len()), "{}", e.description.len());
    ensure_eq!(e.uri.as_deref(), Some("https://docs.example/e"));
    let e = parse_token_error(400, br#"{"error":"a\\b\\\\c"}"#);
    ensure_eq!(e.code.as_ref().map(ErrorCode::as_str), Some(r"a\b\\c"));
    Ok(())
}
