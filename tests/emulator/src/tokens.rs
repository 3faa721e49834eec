//! Access tokens: minted opaque, bound to the environment, checked on every API request.
//!
//! A token is `base64url(24 random bytes ‖ 8-byte tag)`, 43 characters. The tag is the first 8
//! bytes of `SHA-256("credflow-emulator/token/v1" ‖ env ‖ random)`, so any emulator can tell a
//! token minted for *another environment* from one it simply does not know, without sharing state
//! (Genesys environments are isolated the same way: GENESYS.md). Clients must treat tokens as
//! opaque, as they must on Genesys; nothing here is a JWT.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

const RANDOM_LEN: usize = 24;
const TAG_LEN: usize = 8;
const TOKEN_DOMAIN: &[u8] = b"credflow-emulator/token/v1\0";

/// One issued token.
#[derive(Clone, Debug)]
pub(crate) struct TokenRecord {
    pub(crate) client_id: String,
    /// Permissions the token carries (the client's, or the granted scope with the echo on).
    pub(crate) permissions: Vec<String>,
    pub(crate) expires_at: Instant,
    /// Wall-clock expiry (for `tokenExpirationDate`).
    pub(crate) expires_unix: Duration,
    pub(crate) revoked: bool,
}

/// The holder of a valid token, handed to API handlers.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub(crate) token: String,
    pub(crate) client_id: String,
    pub(crate) permissions: Vec<String>,
    pub(crate) expires_at: Instant,
    pub(crate) expires_unix: Duration,
}

/// Why a bearer token was refused (all of them are 401 on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// No `Authorization: Bearer` header (or another scheme).
    Missing,
    /// Not a token this emulator could have minted (wrong length, not base64url).
    Malformed,
    /// Well formed, but minted for another environment.
    OtherEnvironment,
    /// Well formed for this environment, but never issued here (or forgotten long after expiry).
    Unknown,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
    /// Its client is no longer active.
    ClientInactive,
}

impl Rejection {
    /// Genesys code and message for the 401 body.
    pub(crate) const fn genesys(self) -> (&'static str, &'static str) {
        match self {
            Self::Missing => (
                "authentication.required",
                "No authentication bearer token specified in authorization header.",
            ),
            Self::Expired => {
                ("credentials.expired", "The supplied credentials are expired and cannot be used.")
            }
            Self::Malformed
            | Self::OtherEnvironment
            | Self::Unknown
            | Self::Revoked
            | Self::ClientInactive => ("bad.credentials", "Invalid login credentials."),
        }
    }

    /// `error_description` of the RFC 6750 §3 challenge.
    pub(crate) const fn describe(self) -> &'static str {
        match self {
            Self::Missing => "no bearer token",
            Self::Malformed => "the token is malformed",
            Self::OtherEnvironment => "the token was issued for another environment",
            Self::Unknown => "the token is unknown",
            Self::Expired => "the token expired",
            Self::Revoked => "the token was revoked",
            Self::ClientInactive => "the token's client is not active",
        }
    }
}

fn tag(environment: &str, random: &[u8]) -> [u8; TAG_LEN] {
    let digest = Sha256::new()
        .chain_update(TOKEN_DOMAIN)
        .chain_update(environment.as_bytes())
        .chain_update([0])
        .chain_update(random)
        .finalize();
    let mut out = [0_u8; TAG_LEN];
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    out
}

/// A fresh token string for `environment`, from `random` bytes.
pub(crate) fn mint(environment: &str, random: [u8; RANDOM_LEN]) -> String {
    let mut raw = Vec::with_capacity(RANDOM_LEN + TAG_LEN);
    raw.extend_from_slice(&random);
    raw.extend_from_slice(&tag(environment, &random));
    URL_SAFE_NO_PAD.encode(raw)
}

/// Random bytes for [`mint`]: from the OS, or from `fallback` if the OS has none to give.
pub(crate) fn random_bytes(fallback: &mut crate::util::SplitMix64) -> [u8; RANDOM_LEN] {
    let mut random = [0_u8; RANDOM_LEN];
    if getrandom::fill(&mut random).is_err() {
        fallback.fill(&mut random);
    }
    random
}

/// Checks the shape and environment binding of a presented token (not whether it was issued).
pub(crate) fn check_binding(environment: &str, token: &str) -> Result<(), Rejection> {
    if token.len() != 43 {
        return Err(Rejection::Malformed);
    }
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| Rejection::Malformed)?;
    let (random, presented) = raw.split_at_checked(RANDOM_LEN).ok_or(Rejection::Malformed)?;
    if presented == tag(environment, random) { Ok(()) } else { Err(Rejection::OtherEnvironment) }
}

/// Whether `granted` (a permission with optional `*` segments) covers `required`.
pub(crate) fn permission_covers(granted: &str, required: &str) -> bool {
    let mut g = granted.split(':');
    let mut r = required.split(':');
    loop {
        match (g.next(), r.next()) {
            (None, None) => return true,
            (Some(gs), Some(rs)) if gs == "*" || gs == rs => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_environment() {
        let t = mint("mypurecloud.com", [7; RANDOM_LEN]);
        assert_eq!(t.len(), 43);
        assert_eq!(check_binding("mypurecloud.com", &t), Ok(()));
        assert_eq!(check_binding("mypurecloud.ie", &t), Err(Rejection::OtherEnvironment));
        assert_ne!(t, mint("mypurecloud.com", [8; RANDOM_LEN]));
    }

    #[test]
    fn malformed_tokens() {
        for bad in ["", "abc", &"!".repeat(43), &"A".repeat(44)] {
            assert_eq!(check_binding("e", bad), Err(Rejection::Malformed), "{bad:?}");
        }
        // Right shape, random tag: another environment (or a forgery).
        assert_eq!(check_binding("e", &"A".repeat(43)), Err(Rejection::OtherEnvironment));
    }

    #[test]
    fn permission_wildcards() {
        assert!(permission_covers("routing:queue:view", "routing:queue:view"));
        assert!(permission_covers("routing:queue:*", "routing:queue:view"));
        assert!(permission_covers("*:*:*", "analytics:conversationDetail:view"));
        assert!(!permission_covers("routing:queue:edit", "routing:queue:view"));
        assert!(!permission_covers("routing:queue", "routing:queue:view"));
        assert!(!permission_covers("routing:queue:view:x", "routing:queue:view"));
        assert!(!permission_covers("*", "routing:queue:view"));
    }
}
