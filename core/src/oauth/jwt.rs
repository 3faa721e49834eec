//! `client_secret_jwt` client authentication: an HS256-signed JWT assertion (RFC 7523 §2.2).
//!
//! The client proves it knows its secret without sending it: it signs a short-lived JWT with
//! HMAC-SHA256 keyed by the secret (JWS, RFC 7515 §5.1; `HS256`, RFC 7518 §3.2) and sends it as
//! `client_assertion`. The claims follow RFC 7523 §3:
//!
//! | claim | value |
//! |---|---|
//! | `iss`, `sub` | the client id |
//! | `aud` | the token endpoint URL |
//! | `jti` | 16 caller-supplied bytes, base64url, unique per assertion: a server that keeps the ids it saw refuses a replay |
//! | `iat` | the caller's wall-clock time |
//! | `exp` | `iat` + lifetime (default [`DEFAULT_LIFETIME`], saturating) |
//!
//! The header is `{"alg":"HS256","typ":"JWT"}`. Segments are base64url without padding
//! (RFC 7515 §2). Strings are JSON-escaped (RFC 8259 §7), so a client id containing `"` or `\`
//! yields a valid token. The core reads neither clock nor randomness: `iat` and `jti` are
//! arguments.
//!
//! What `jti` needs is uniqueness, not secrecy: RFC 7519 §4.1.7 asks for a negligible chance
//! that a value is used twice, across issuers too, and RFC 7523 §3 lets the server refuse an
//! id it has seen. Predicting the next `jti` does not help an attacker, who would still need
//! the secret to sign an assertion; a captured one is refused as a replay by a server that
//! keeps the ids it saw, and by every server once its `exp` has passed.
//! [`Session`](crate::session::Session) builds each `jti` from 8 bytes of its seeded generator
//! ([`Rng`](crate::rng::Rng): SplitMix64, not a cryptographic generator) and a 64-bit counter
//! of the session's assertions: unique within a session by the counter, and across processes
//! and restarts as long as each session has a seed of its own (`credflow-reqwest` takes it
//! from the OS; on a device, take it from the hardware RNG). A caller that encodes assertions
//! itself owes the same: a counter, a random source, or both.
//!
//! RFC 7518 §3.2 asks for an HMAC key at least as long as the hash (32 bytes). The key here is
//! the secret the server issued, so it is used as given; a server that enforces the rule will
//! refuse shorter secrets with `invalid_client`.
//!
//! Everything is streamed into the caller's buffer: the JSON is base64-encoded and MACed as it
//! is written, so no scratch memory is needed.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::form::{Alphabet, Base64, BufferTooSmall, Out, Sink, ascii, hex_digit, put_decimal};
use crate::secret::Credentials;
use crate::time::{Duration, UnixTime};

/// The `client_assertion_type` value for a JWT assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Default assertion lifetime: one minute, long enough for a request and a modest clock skew.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// The JOSE header of every assertion (RFC 7515 §4).
pub const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The per-request claims of a `client_secret_jwt` assertion (`iss`/`sub` come from the
/// credentials).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssertionClaims<'a> {
    /// `aud`: the token endpoint URL.
    pub audience: &'a str,
    /// `jti`: unique per assertion, across every process of the client id (see the
    /// [module documentation](self) for what that takes).
    pub jti: [u8; 16],
    /// `iat`: the current wall-clock time.
    pub issued_at: UnixTime,
    /// `exp - iat` (whole seconds, rounded down).
    pub lifetime: Duration,
}

impl AssertionClaims<'_> {
    /// `exp`: `iat + lifetime`, saturating.
    pub const fn expires_at(&self) -> UnixTime {
        self.issued_at.saturating_add(self.lifetime)
    }
}

/// Writes a signed `client_secret_jwt` assertion into `out` and returns it.
///
/// The assertion authenticates the client until it expires: treat it like a password for that
/// long and wipe the buffer after use.
pub fn client_assertion<'b>(
    creds: &Credentials,
    claims: &AssertionClaims<'_>,
    out: &'b mut [u8],
) -> Result<&'b str, BufferTooSmall> {
    let mut w = Out::new(out);
    put_client_assertion(&mut w, creds, claims);
    w.finish().map(ascii)
}

/// Signs `header_json` and `payload_json` exactly as given (the JWS signing input is their
/// base64url encodings joined by `.`) with HMAC-SHA256 under `key`, and writes the compact
/// serialization `header.payload.signature` (RFC 7515 §7.1) into `out`.
pub fn sign_hs256<'b>(
    header_json: &[u8],
    payload_json: &[u8],
    key: &[u8],
    out: &'b mut [u8],
) -> Result<&'b str, BufferTooSmall> {
    let mut w = Out::new(out);
    put_hs256(&mut w, key, |s| _ = s.put(header_json), |s| _ = s.put(payload_json));
    w.finish().map(ascii)
}

/// Streams an assertion into `sink`. Its characters are all base64url or `.`: unreserved in a
/// form, so it can go into a request body without percent-encoding.
pub(crate) fn put_client_assertion(
    sink: &mut dyn Sink,
    creds: &Credentials,
    claims: &AssertionClaims<'_>,
) {
    let id = creds.id.as_str();
    let payload = |s: &mut dyn Sink| {
        put_json_str(s, b"{\"iss\":\"", id);
        put_json_str(s, b",\"sub\":\"", id);
        put_json_str(s, b",\"aud\":\"", claims.audience);
        s.put(b",\"jti\":\"");
        Base64::new(s, Alphabet::UrlSafe).put_all(&claims.jti);
        s.put(b"\",\"iat\":");
        put_decimal(s, claims.issued_at.as_secs());
        s.put(b",\"exp\":");
        put_decimal(s, claims.expires_at().as_secs());
        s.put(b"}");
    };
    put_hs256(
        sink,
        creds.secret.expose_secret().as_bytes(),
        |s| _ = s.put(HS256_HEADER.as_bytes()),
        payload,
    );
}

/// Writes `b64(header).b64(payload).b64(HMAC(key, signing input))`.
fn put_hs256(
    sink: &mut dyn Sink,
    key: &[u8],
    header: impl FnOnce(&mut dyn Sink),
    payload: impl FnOnce(&mut dyn Sink),
) {
    // HMAC takes keys of any length (RFC 2104 §2); `hmac` never returns `InvalidLength` for
    // it (its `new_from_slice` always returns `Ok`), so the early return is unreachable. It
    // replaces a fallback MAC under an all-zero key, whose code was linked all the same.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return };
    let mut signed = Tee { mac: &mut mac, sink: &mut *sink, more: true };
    let mut segment = Base64::new(&mut signed, Alphabet::UrlSafe);
    header(&mut segment);
    let dot = segment.finish();
    dot.put(b".");
    let mut segment = Base64::new(dot, Alphabet::UrlSafe);
    payload(&mut segment);
    segment.finish();
    // A comparison that found a difference (`redact`) needs no signature: not computed.
    if !signed.more {
        return;
    }
    sink.put(b".");
    Base64::new(sink, Alphabet::UrlSafe).put_all(&mac.finalize().into_bytes());
}

/// Passes bytes on to a sink and into a MAC: the MAC sees exactly what was written, until the
/// sink takes nothing more.
struct Tee<'a> {
    mac: &'a mut Hmac<Sha256>,
    sink: &'a mut dyn Sink,
    /// The sink takes more.
    more: bool,
}

impl Sink for Tee<'_> {
    fn put(&mut self, bytes: &[u8]) -> bool {
        // Nothing more to hash for a comparison that found a difference (`redact`).
        if self.more {
            crate::redact::meter::add(crate::redact::meter::HASHED, bytes.len());
            self.mac.update(bytes);
            self.more = self.sink.put(bytes);
        }
        self.more
    }
}

/// Writes `prefix` (which ends with the opening quote), then `s` as the rest of a JSON string:
/// `"`, `\` and control characters escaped, and the closing quote.
fn put_json_str(sink: &mut dyn Sink, prefix: &[u8], s: &str) {
    sink.put(prefix);
    // Byte by byte: the strings are short, and the sink takes any split of the same bytes.
    for &b in s.as_bytes() {
        let more = match b {
            b'"' | b'\\' => sink.put(&[b'\\', b]),
            0..0x20 => sink.put(&[b'\\', b'u', b'0', b'0', hex_digit(b >> 4), hex_digit(b & 0x0f)]),
            _ => sink.put(&[b]),
        };
        if !more {
            return;
        }
    }
    sink.put(b"\"");
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use std::string::String;
    use std::vec::Vec;

    fn b64d(s: &str) -> Vec<u8> {
        let mut buf = std::vec![0u8; s.len()];
        let n = URL_SAFE_NO_PAD.decode_slice(s, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn rfc7515_appendix_a1() {
        // The octets of A.1.1, CRLF and the leading space included.
        let header = b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
        let payload =
            b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
        let key = b64d(
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        );
        let mut buf = [0u8; 256];
        let jws = sign_hs256(header, payload, &key, &mut buf).unwrap();
        assert_eq!(
            jws,
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
             .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
             .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        let n = jws.len();
        assert_eq!(
            sign_hs256(header, payload, &key, &mut buf[..n - 1]),
            Err(BufferTooSmall { needed: n })
        );
        assert!(sign_hs256(header, payload, &key, &mut buf[..n]).is_ok());
    }

    fn claims(audience: &str) -> AssertionClaims<'_> {
        AssertionClaims {
            audience,
            jti: *b"0123456789abcdef",
            issued_at: UnixTime::from_secs(1_700_000_000),
            lifetime: DEFAULT_LIFETIME,
        }
    }

    fn verify(jws: &str, secret: &str) -> (Vec<u8>, Vec<u8>) {
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3, "{jws}");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(parts[0].as_bytes());
        mac.update(b".");
        mac.update(parts[1].as_bytes());
        mac.verify_slice(&b64d(parts[2])).expect("signature verifies");
        (b64d(parts[0]), b64d(parts[1]))
    }

    #[test]
    fn assertion_claims_decode() {
        let creds =
            Credentials::from_strs("my-client", "a secret of 32 bytes or more!!!!").unwrap();
        let mut buf = [0u8; 512];
        let jws = client_assertion(&creds, &claims("https://login.example/oauth/token"), &mut buf)
            .unwrap();
        assert!(jws.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        let (header, payload) = verify(jws, "a secret of 32 bytes or more!!!!");
        assert_eq!(header, HS256_HEADER.as_bytes());
        let expected = std::format!(
            r#"{{"iss":"my-client","sub":"my-client","aud":"https://login.example/oauth/token","jti":"{}","iat":1700000000,"exp":1700000060}}"#,
            "MDEyMzQ1Njc4OWFiY2RlZg"
        );
        assert_eq!(String::from_utf8(payload).unwrap(), expected);
    }

    #[test]
    fn json_strings_are_escaped() {
        #[derive(serde::Deserialize)]
        struct Claims {
            iss: heapless::String<32>,
            sub: heapless::String<32>,
            aud: heapless::String<32>,
            exp: u64,
        }
        let creds = Credentials::from_strs(r#"we"ird\id"#, "k").unwrap();
        let mut buf = [0u8; 512];
        let aud = "https://h/t?a=\"x\"";
        let jws = client_assertion(&creds, &claims(aud), &mut buf).unwrap();
        let (_, payload) = verify(jws, "k");
        let text = String::from_utf8(payload).unwrap();
        assert!(text.contains(r#""iss":"we\"ird\\id""#), "{text}");
        let mut scratch = [0u8; 64];
        let (c, _) =
            serde_json_core::from_slice_escaped::<Claims>(text.as_bytes(), &mut scratch).unwrap();
        assert_eq!((c.iss.as_str(), c.sub.as_str()), (r#"we"ird\id"#, r#"we"ird\id"#));
        assert_eq!((c.aud.as_str(), c.exp), (aud, 1_700_000_060));

        let mut out = [0u8; 32];
        let mut w = Out::new(&mut out);
        put_json_str(&mut w, b"\"", "a\u{1}\n\u{1f}é");
        assert_eq!(w.finish().map(ascii).unwrap(), "\"a\\u0001\\u000A\\u001Fé\"");
        // The prefix is written as is, and the string is closed after the last escape.
        let mut out = [0u8; 32];
        let mut w = Out::new(&mut out);
        put_json_str(&mut w, b",\"k\":\"", "\"\\");
        assert_eq!(w.finish().map(ascii).unwrap(), r#","k":"\"\\""#);
    }

    #[test]
    fn expiry_saturates_and_buffer_size_is_exact() {
        let mut c = claims("a");
        c.issued_at = UnixTime::from_secs(u64::MAX - 10);
        assert_eq!(c.expires_at(), UnixTime::from_secs(u64::MAX));
        c.lifetime = Duration::from_millis(1999);
        c.issued_at = UnixTime::from_secs(100);
        assert_eq!(c.expires_at(), UnixTime::from_secs(101));

        let creds = Credentials::from_strs("id", "secret").unwrap();
        let mut buf = [0u8; 512];
        let n = client_assertion(&creds, &c, &mut buf).unwrap().len();
        for short in [0, 1, n / 2, n - 1] {
            assert_eq!(
                client_assertion(&creds, &c, &mut buf[..short]),
                Err(BufferTooSmall { needed: n })
            );
        }
    }
}
