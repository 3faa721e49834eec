//! `client_secret_jwt` client authentication: an HS256 JWT signed with the client secret
//! (RFC 7523 §2.2 and §3, RFC 7521 §4.2, OpenID Connect Core §9).
//!
//! Checks, in order: compact form of three base64url parts (RFC 7515 §7.1); header `alg` is
//! `HS256`; the HMAC-SHA-256 over `header.payload` with the client secret matches (constant
//! time); `iss` and `sub` are the client id; `aud` (a string or an array) holds the token URL;
//! `exp` is in the future; `nbf`, if present, is not; `jti` is present and not used before by
//! this client (the emulator requires `jti`, as many servers do, to catch replays).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest assertion accepted.
const MAX_ASSERTION_LEN: usize = 8 * 1024;

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<f64>,
    nbf: Option<f64>,
    jti: Option<String>,
}

/// An assertion split and decoded, signature not yet checked.
pub(crate) struct Assertion<'a> {
    signing_input: &'a str,
    signature: Vec<u8>,
    claims: Claims,
}

impl std::fmt::Debug for Assertion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion").field("sub", &self.claims.sub).finish_non_exhaustive()
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| format!("assertion {what} is not base64url: {e}"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("assertion {what} is not the expected JSON: {e}"))
}

impl<'a> Assertion<'a> {
    /// Splits and decodes `jwt`.
    pub(crate) fn parse(jwt: &'a str) -> Result<Self, String> {
        if jwt.len() > MAX_ASSERTION_LEN {
            return Err(format!("assertion longer than {MAX_ASSERTION_LEN} bytes"));
        }
        let (signing_input, signature) = jwt
            .rsplit_once('.')
            .ok_or("assertion is not a compact JWS (three dot-separated parts)")?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or("assertion is not a compact JWS (three dot-separated parts)")?;
        if payload.contains('.') {
            return Err("assertion has more than three parts (JWE is not supported)".into());
        }
        let header: Header = decode_json(header, "header")?;
        if header.alg != "HS256" {
            return Err(format!("assertion alg {:?} is not HS256", header.alg));
        }
        let claims: Claims = decode_json(payload, "payload")?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|e| format!("assertion signature is not base64url: {e}"))?;
        Ok(Self { signing_input, signature, claims })
    }

    /// The client the assertion claims to be (`sub`, else `iss`), unverified.
    pub(crate) fn claimed_client(&self) -> Option<&str> {
        self.claims.sub.as_deref().or(self.claims.iss.as_deref())
    }

    /// Checks signature and claims; returns `(jti, exp)` for the replay check.
    pub(crate) fn verify(
        &self,
        secret: &str,
        client_id: &str,
        token_url: &str,
        now_unix: u64,
    ) -> Result<(String, u64), String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| String::from("unusable client secret for HS256"))?;
        mac.update(self.signing_input.as_bytes());
        mac.verify_slice(&self.signature)
            .map_err(|_| String::from("assertion signature does not verify"))?;
        let c = &self.claims;
        if c.iss.as_deref() != Some(client_id) {
            return Err(format!("assertion iss {:?} is not the client id", c.iss));
        }
        if c.sub.as_deref() != Some(client_id) {
            return Err(format!("assertion sub {:?} is not the client id", c.sub));
        }
        let aud_ok = match &c.aud {
            Some(Audience::One(a)) => a == token_url,
            Some(Audience::Many(list)) => list.iter().any(|a| a == token_url),
            None => false,
        };
        if !aud_ok {
            return Err(format!("assertion aud does not contain the token URL {token_url}"));
        }
        #[allow(clippy::cast_precision_loss)] // seconds since 1970 fit an f64 exactly
        let now = now_unix as f64;
        let exp = c.exp.ok_or("assertion has no exp")?;
        if exp <= now {
            return Err(format!("assertion expired (exp {exp} <= now {now})"));
        }
        if let Some(nbf) = c.nbf
            && nbf > now
        {
            return Err(format!("assertion not yet valid (nbf {nbf} > now {now})"));
        }
        let jti = c.jti.clone().filter(|j| !j.is_empty()).ok_or("assertion has no jti")?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // saturating, and > now
        let exp_secs = exp.ceil() as u64;
        Ok((jti, exp_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "http://127.0.0.1:1/oauth/token";

    fn sign(header: &serde_json::Value, claims: &serde_json::Value, secret: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
        mac.update(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn claims() -> serde_json::Value {
        json!({"iss": "c", "sub": "c", "aud": URL, "exp": 2000, "jti": "j1"})
    }

    fn verify(jwt: &str) -> Result<(String, u64), String> {
        Assertion::parse(jwt)?.verify("s", "c", URL, 1000)
    }

    #[test]
    fn accepts_a_good_assertion() {
        let jwt = sign(&json!({"alg": "HS256", "typ": "JWT"}), &claims(), "s");
        assert_eq!(verify(&jwt), Ok(("j1".into(), 2000)));
        let mut c = claims();
        c["aud"] = json!(["x", URL]);
        assert!(verify(&sign(&json!({"alg": "HS256"}), &c, "s")).is_ok());
    }

    #[test]
    fn rejects_each_bad_part() {
        let h = json!({"alg": "HS256"});
        assert!(verify(&sign(&h, &claims(), "wrong")).is_err_and(|e| e.contains("signature")));
        assert!(
            verify(&sign(&json!({"alg": "none"}), &claims(), "s"))
                .is_err_and(|e| e.contains("alg"))
        );
        for (field, value, needle) in [
            ("iss", json!("x"), "iss"),
            ("sub", json!("x"), "sub"),
            ("aud", json!("http://other/oauth/token"), "aud"),
            ("exp", json!(1000), "expired"),
            ("nbf", json!(1001), "not yet"),
            ("jti", json!(""), "jti"),
        ] {
            let mut c = claims();
            c[field] = value;
            let err = verify(&sign(&h, &c, "s")).err().unwrap_or_default();
            assert!(err.contains(needle), "{field}: {err}");
        }
        assert!(verify("a.b").is_err());
        assert!(verify("a.b.c.d").is_err());
        assert!(verify(&"a".repeat(MAX_ASSERTION_LEN + 1)).is_err());
    }
}
