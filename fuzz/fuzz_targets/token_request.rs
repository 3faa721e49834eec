//! `oauth::encode_token_request` (RFC 6749 §4.4.2, §2.3.1; RFC 7523 §2.2) with arbitrary
//! credentials, scope, extra parameters, authentication method and buffer size.
//!
//! Input: a flag byte (`% 3`: basic, post, jwt; bit 2: JWT inputs given; bit 3: plain `http`
//! allowed to any host), the buffer size
//! (u16 little-endian, `% 8192`), the JWT lifetime (u16 seconds) and time (u32 seconds), 16 `jti`
//! bytes, then text lines (lossy UTF-8): token URL, client id, client secret, scope (an empty
//! line is none), then `name=value` extra parameters.
//!
//! Checked: no panic; `BufferTooSmall { needed }` is exact (a buffer of `needed` bytes works,
//! one byte less does not, and the output is the same as with a roomy buffer); the body decodes
//! back to exactly the parameters given, in order; the Basic header decodes back to the
//! credentials; `Content-Length` is the body's length; `write_http1` sizes are exact too; an
//! `http` URL to a host that is not loopback is refused without the opt-in, before anything else.
//!
//! The same inputs also drive the encoders' other public entry points, which must agree with
//! the request: `form::encode`, `form::basic_authorization` and `FormWriter` (a pair that does
//! not fit leaves the form as it was), `jwt::client_assertion` (its HMAC-SHA256 signature
//! checked with the `hmac` crate) and `jwt::sign_hs256`; the credential constructors (the
//! same errors, whichever way the credential is built; `Debug` and `Display` show nothing of
//! the secret nor the token), and `AuthMethod::parse` on the scope line.
#![no_main]

use arbitrary::Unstructured;
use credflow_core::Duration;
use credflow_core::UnixTime;
use credflow_core::http::url::{PlainHttp, Url, UrlError};
use credflow_core::oauth::form::{self, FormWriter};
use credflow_core::oauth::jwt::{self, AssertionClaims, HS256_HEADER};
use credflow_core::oauth::{
    AuthMethod, EncodeError, JwtInputs, TokenRequest, TokenRequestConfig, encode_token_request,
};
use credflow_core::secret::{AccessToken, ClientId, ClientSecret, CredentialPart, Credentials};
use credflow_fuzz::show;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let flags: u8 = u.arbitrary().unwrap_or(0);
    let buf_len = usize::from(u.arbitrary::<u16>().unwrap_or(0) % 8192);
    let lifetime = Duration::from_secs(u.arbitrary::<u16>().unwrap_or(0).into());
    let now = UnixTime::from_secs(u.arbitrary::<u32>().unwrap_or(0).into());
    let jti: [u8; 16] = u.arbitrary().unwrap_or_default();
    let text = String::from_utf8_lossy(u.take_rest());
    let mut lines = text.split('\n');
    let url = lines.next().unwrap_or_default();
    let Some(creds) =
        credentials(lines.next().unwrap_or_default(), lines.next().unwrap_or_default())
    else {
        return;
    };
    let scope = lines.next().filter(|s| !s.is_empty());
    auth_method(scope.unwrap_or_default());
    let extra: Vec<(&str, &str)> =
        lines.take(8).map(|l| l.split_once('=').unwrap_or((l, ""))).collect();
    let auth =
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::ClientSecretJwt]
            [usize::from(flags % 3)];
    let jwt = (flags & 0b100 != 0).then_some(JwtInputs { now, jti });
    let plain_http =
        if flags & 0b1000 != 0 { PlainHttp::Anywhere } else { PlainHttp::LoopbackOnly };
    let cfg = TokenRequestConfig {
        token_url: url,
        auth,
        scope,
        extra: &extra,
        jwt_lifetime: lifetime,
        plain_http,
    };

    let mut roomy = vec![0u8; 1 << 16];
    let reference = encode_token_request(&cfg, &creds, jwt.as_ref(), &mut roomy).map(Owned::from);
    if plain_http == PlainHttp::LoopbackOnly && Url::parse(url).is_ok_and(|u| u.is_insecure()) {
        assert_eq!(
            reference.as_ref().err(),
            Some(&EncodeError::InvalidUrl(UrlError::InsecureHttp)),
            "credentials encoded for plain http to {url:?}"
        );
    }
    let mut buf = vec![0u8; buf_len];
    let result = encode_token_request(&cfg, &creds, jwt.as_ref(), &mut buf);
    let reference = match (reference, result) {
        (Ok(reference), Ok(request)) => {
            assert_eq!(Owned::from(request), reference, "the buffer size changed the output");
            reference
        }
        (Ok(reference), Err(e @ EncodeError::BufferTooSmall { needed })) => {
            let _ = show(&e);
            assert!(needed > buf_len, "BufferTooSmall with {needed} <= {buf_len} bytes");
            let mut exact = vec![0u8; needed];
            let request = encode_token_request(&cfg, &creds, jwt.as_ref(), &mut exact)
                .unwrap_or_else(|e| panic!("{needed} bytes were said to be enough: {e}"));
            assert_eq!(Owned::from(request), reference);
            let mut short = vec![0u8; needed - 1];
            assert_eq!(
                encode_token_request(&cfg, &creds, jwt.as_ref(), &mut short).err(),
                Some(EncodeError::BufferTooSmall { needed }),
                "needed is not exact"
            );
            reference
        }
        (Err(e), result) => {
            let _ = show(&e);
            assert_eq!(result.err(), Some(e), "the buffer size changed the error");
            return;
        }
        (Ok(_), Err(e)) => panic!("a roomy buffer worked but {buf_len} bytes gave {e}"),
    };
    assert!(
        auth != AuthMethod::ClientSecretJwt || jwt.is_some(),
        "a JWT request without JWT inputs"
    );
    check(&reference, &cfg, &creds);
    helpers(&reference, &cfg, &creds, jwt.as_ref(), buf_len);
});

/// A request copied out of its buffer, for comparisons.
#[derive(Debug, PartialEq)]
struct Owned {
    host: String,
    hostname: String,
    path: String,
    port: u16,
    authorization: Option<String>,
    body: String,
    headers: Vec<(&'static str, String)>,
    http1: Vec<u8>,
}

impl From<TokenRequest<'_>> for Owned {
    fn from(r: TokenRequest<'_>) -> Self {
        let _ = format!("{r:?}");
        let mut out = vec![0u8; 1 << 17];
        let n = r.write_http1(&mut out).expect("a roomy buffer");
        let http1 = out[..n].to_vec();
        // write_http1 sizes are exact too.
        assert_eq!(r.write_http1(&mut out[..n]), Ok(n));
        assert_eq!(
            r.write_http1(&mut out[..n - 1]),
            Err(EncodeError::BufferTooSmall { needed: n })
        );
        Owned {
            host: r.host.to_owned(),
            hostname: r.hostname.to_owned(),
            path: r.path.to_owned(),
            port: r.port,
            authorization: r.authorization.map(str::to_owned),
            body: r.body.to_owned(),
            headers: r.headers().map(|(n, v)| (n, v.to_owned())).collect(),
            http1,
        }
    }
}

fn check(r: &Owned, cfg: &TokenRequestConfig<'_>, creds: &Credentials) {
    // Headers: Host, Authorization (Basic only), Content-Type, Content-Length, Accept.
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| *n).collect();
    let expected_names: &[&str] = if cfg.auth == AuthMethod::ClientSecretBasic {
        &["Host", "Authorization", "Content-Type", "Content-Length", "Accept"]
    } else {
        &["Host", "Content-Type", "Content-Length", "Accept"]
    };
    assert_eq!(names, expected_names);
    let length = r.headers.iter().find(|(n, _)| *n == "Content-Length").map(|(_, v)| v.as_str());
    assert_eq!(length, Some(r.body.len().to_string().as_str()));
    assert!(r.host.starts_with(&r.hostname) || r.host.starts_with(&format!("[{}]", r.hostname)));
    assert!(r.http1.ends_with(r.body.as_bytes()));

    // Basic: base64(form(id) ":" form(secret)).
    match (&r.authorization, cfg.auth) {
        (Some(value), AuthMethod::ClientSecretBasic) => {
            let encoded = value.strip_prefix("Basic ").expect("a Basic credential");
            let decoded = base64_decode(encoded).expect("valid base64");
            let decoded = String::from_utf8(decoded).expect("ASCII");
            let (id, secret) = decoded.split_once(':').expect("id:secret");
            assert_eq!(percent_decode(id), creds.id.as_str());
            assert_eq!(percent_decode(secret), creds.secret.expose_secret());
        }
        (None, AuthMethod::ClientSecretPost | AuthMethod::ClientSecretJwt) => {}
        (authorization, auth) => panic!("{auth}: Authorization {:?}", authorization.is_some()),
    }

    // The body, decoded, is exactly the parameters given, in order.
    let pairs: Vec<(String, String)> = r
        .body
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("name=value");
            (percent_decode(name), percent_decode(value))
        })
        .collect();
    let mut expected: Vec<(String, String)> =
        vec![("grant_type".into(), "client_credentials".into())];
    // The encoder trims ASCII whitespace only (RFC 6749 §3.3 scope tokens are separated by
    // spaces; a vertical tab or a Unicode space is the caller's, kept and percent-encoded).
    if let Some(scope) = cfg.scope.map(str::trim_ascii).filter(|s| !s.is_empty()) {
        expected.push(("scope".into(), scope.into()));
    }
    expected.extend(cfg.extra.iter().map(|(n, v)| ((*n).into(), (*v).into())));
    match cfg.auth {
        AuthMethod::ClientSecretBasic => {}
        AuthMethod::ClientSecretPost => {
            expected.push(("client_id".into(), creds.id.as_str().into()));
            expected.push(("client_secret".into(), creds.secret.expose_secret().into()));
        }
        AuthMethod::ClientSecretJwt => {
            expected.push(("client_id".into(), creds.id.as_str().into()));
            expected.push((
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            let assertion = pairs.last().map(|(_, v)| v.clone()).unwrap_or_default();
            let parts: Vec<&str> = assertion.split('.').collect();
            assert_eq!(parts.len(), 3, "a JWT has three parts");
            assert!(parts.iter().all(|p| !p.is_empty() && base64_decode(p).is_some()));
            let header = base64_decode(parts[0]).unwrap();
            assert_eq!(header, br#"{"alg":"HS256","typ":"JWT"}"#);
            let claims = String::from_utf8(base64_decode(parts[1]).unwrap()).expect("UTF-8 claims");
            assert!(claims.starts_with('{') && claims.ends_with('}'), "{claims}");
            expected.push(("client_assertion".into(), assertion));
        }
    }
    assert_eq!(pairs, expected, "the body does not decode to the parameters given");
}

/// `%XX` decoding; anything else is literal (the encoder never writes `+`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).expect("two hex digits after %");
            out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
            i += 3;
        } else {
            assert!(
                bytes[i].is_ascii_alphanumeric() || b"-._~".contains(&bytes[i]),
                "unencoded {:?}",
                bytes[i] as char
            );
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("decodes to UTF-8")
}

/// Standard or URL-safe base64, padded or not.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The credential from `id` and `secret`, built both ways: the same outcome; `Debug` shows the
/// same text whatever the secret but for the fingerprint, and a token's `Debug` and `Display`
/// never show it.
fn credentials(id: &str, secret: &str) -> Option<Credentials> {
    let parts = (ClientId::new(id), ClientSecret::new(secret));
    let creds = match (Credentials::from_strs(id, secret), parts) {
        (Ok(creds), (Ok(i), Ok(s))) => {
            let other = Credentials::new(i, s);
            assert_eq!(other.fingerprint(), creds.fingerprint());
            creds
        }
        (Err((CredentialPart::ClientId, e)), (Err(i), _)) => {
            assert_eq!(e, i);
            let _ = show(&e);
            return None;
        }
        (Err((CredentialPart::ClientSecret, e)), (Ok(_), Err(s))) => {
            assert_eq!(e, s);
            let _ = show(&e);
            return None;
        }
        (result, _) => panic!("the constructors disagree: {:?}", result.map(|_| ())),
    };
    let shown = |c: &Credentials| {
        let fingerprint = c.fingerprint().to_string();
        format!("{c:?} {} {}", c.id, c.secret).replace(&fingerprint, "<fp>")
    };
    let other = Credentials::from_strs(id, "another secret").unwrap();
    assert_eq!(shown(&creds), shown(&other), "Debug or Display depends on the secret");
    let _ = format!("{:?} {:?}", creds.id, creds.fingerprint());
    if let Ok(token) = AccessToken::<256>::new(secret) {
        // (Its length is shown: compare with another token of that length.)
        let other = AccessToken::<256>::new(&"x".repeat(secret.len())).unwrap();
        let masked = |t: &AccessToken<256>| {
            format!("{t:?} {t}").replace(&t.fingerprint().to_string(), "<fp>")
        };
        assert_eq!(masked(&token), masked(&other), "a token's Debug or Display shows it");
        assert!(!token.is_empty());
    }
    Some(creds)
}

/// `AuthMethod::parse` as documented: the full or short name, any case, spaces around.
fn auth_method(text: &str) {
    let parsed = AuthMethod::parse(text);
    let s = text.trim();
    let all =
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::ClientSecretJwt];
    let expected = all.into_iter().find(|m| {
        let full = m.as_str();
        s.eq_ignore_ascii_case(full) || s.eq_ignore_ascii_case(&full["client_secret_".len()..])
    });
    assert_eq!(parsed, expected);
    assert_eq!(text.parse::<AuthMethod>().ok(), parsed);
    if let Err(e) = text.parse::<AuthMethod>() {
        let _ = show(&e);
    }
    for m in all {
        assert_eq!(AuthMethod::parse(&m.to_string()), Some(m));
    }
}

/// The encoders' other entry points agree with the request.
fn helpers(
    r: &Owned,
    cfg: &TokenRequestConfig<'_>,
    creds: &Credentials,
    jwt: Option<&JwtInputs>,
    buf_len: usize,
) {
    let (id, secret) = (creds.id.as_str(), creds.secret.expose_secret());
    let mut buf = vec![0u8; buf_len];
    let mut roomy = vec![0u8; 1 << 16];
    match form::encode(id, &mut buf) {
        Ok(encoded) => {
            assert_eq!(percent_decode(encoded), id);
            assert_eq!(encoded.len(), form::encoded_len(id));
        }
        Err(e) => {
            assert_eq!(e.needed, form::encoded_len(id));
            assert!(e.needed > buf_len);
            let _ = show(&e);
        }
    }
    let basic = form::basic_authorization(id, secret, &mut roomy).unwrap().to_owned();
    if cfg.auth == AuthMethod::ClientSecretBasic {
        assert_eq!(Some(&basic), r.authorization.as_ref());
    }
    match form::basic_authorization(id, secret, &mut buf) {
        Ok(value) => assert_eq!(value, basic),
        Err(e) => assert_eq!(e.needed, basic.len()),
    }

    // A form of the extra parameters, pair by pair, in the caller's buffer.
    let mut writer = FormWriter::new(&mut buf);
    assert!(writer.is_empty());
    let mut written = Vec::new();
    for &(name, value) in cfg.extra {
        let before = writer.as_str().to_owned();
        match writer.pair(name, value) {
            Ok(()) => written.push((name.to_owned(), value.to_owned())),
            Err(e) => {
                assert!(e.needed > buf_len, "{} bytes refused in {buf_len}", e.needed);
                assert_eq!(writer.as_str(), before, "a pair that did not fit was written");
            }
        }
        assert_eq!(writer.len(), writer.as_str().len());
    }
    let _ = format!("{writer:?}");
    let form = writer.into_str();
    let read: Vec<(String, String)> = form
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').expect("name=value");
            (percent_decode(n), percent_decode(v))
        })
        .collect();
    assert_eq!(read, written);

    // The assertion, signed with HMAC-SHA256 under the secret.
    let Some(inputs) = jwt else { return };
    let claims = AssertionClaims {
        audience: cfg.token_url,
        jti: inputs.jti,
        issued_at: inputs.now,
        lifetime: cfg.jwt_lifetime,
    };
    let assertion = jwt::client_assertion(creds, &claims, &mut roomy).unwrap().to_owned();
    if cfg.auth == AuthMethod::ClientSecretJwt {
        let sent = r.body.rsplit_once("client_assertion=").map(|(_, a)| a);
        assert_eq!(sent, Some(assertion.as_str()), "not the assertion the request sent");
    }
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    let signature = mac.finalize().into_bytes();
    assert_eq!(base64_decode(parts[2]).unwrap(), signature.as_slice(), "a wrong signature");
    let payload = base64_decode(parts[1]).unwrap();
    let signed = jwt::sign_hs256(HS256_HEADER.as_bytes(), &payload, secret.as_bytes(), &mut buf);
    match signed {
        Ok(signed) => assert_eq!(signed, assertion),
        Err(e) => assert_eq!(e.needed, assertion.len()),
    }
    assert!(claims.expires_at() >= claims.issued_at);
}
