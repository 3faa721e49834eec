//! The OAuth 2.0 client-credentials codec (RFC 6749 §4.4, §5.1, §5.2; RFC 7523; RFC 6750).
//!
//! Sans-IO and allocation-free: requests are written into caller buffers, responses are read
//! from caller bytes into fixed-capacity values. Nothing here reads a clock or a random source.
//!
//! # The exchange
//!
//! 1. **Request** (RFC 6749 §4.4.2): [`encode_token_request`] writes a `POST` to the token
//!    endpoint with a form body (`grant_type=client_credentials`, optional `scope` (§3.3) and
//!    extra parameters) and one client authentication (§2.3): HTTP Basic with form-encoded
//!    credentials (§2.3.1, the default), credentials in the body, or an HS256 JWT assertion
//!    (RFC 7523 §2.2, built by [`jwt`]). The adapter sends [`TokenRequest`]'s method, target,
//!    headers and body, or the bytes of [`TokenRequest::write_http1`], then wipes the buffer:
//!    it held the secret.
//! 2. **Success** (RFC 6749 §5.1, 2xx): [`parse_token_response`] reads the bearer token
//!    (RFC 6750), its lifetime (defaulted, clamped and explained by [`ExpiresInSource`]), and the
//!    granted scope compared with the request ([`ScopeCheck`]).
//! 3. **Failure** (RFC 6749 §5.2, usually 400 or 401): [`parse_token_error`] reads the error
//!    code and description and classifies it ([`TokenErrorClass`]): rejected credentials are
//!    fatal, rate limits (including Genesys Cloud's 400 `invalid_request` "rate limit exceeded")
//!    and server trouble are retryable. A 2xx with an error body comes back from
//!    [`parse_token_response`] as [`ResponseError::ErrorBody`]; pass it to [`parse_token_error`].
//!
//! ```
//! use credflow_core::oauth::*;
//! use credflow_core::secret::Credentials;
//!
//! let creds = Credentials::from_strs("my-client", "my-secret").map_err(|(_, e)| e)?;
//! let cfg = TokenRequestConfig::new("https://login.mypurecloud.com/oauth/token");
//! let mut buf = [0u8; 1024];
//! let request = encode_token_request(&cfg, &creds, None, &mut buf)?;
//! # let _ = request;
//! // ... the adapter sends it and receives (status, body) ...
//! # let (status, body) = (200u16, br#"{"access_token":"eyJ0","token_type":"bearer","expires_in":86400}"#);
//! if (200..300).contains(&status) {
//!     let token: TokenResponse<2048> = parse_token_response(body, &ResponseOptions::default())?;
//!     assert_eq!(token.expires_in, credflow_core::Duration::from_secs(86400));
//! } else {
//!     let err = parse_token_error(status, body);
//!     if err.class.is_fatal() { /* stop and report err.class.likely_cause() */ }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The parsers take arbitrary bytes and never panic, which makes them direct fuzz targets.

pub mod error;
pub mod form;
pub mod jwt;
pub mod request;
pub mod response;

pub use error::{ErrorCode, OAuthError, TokenErrorClass, parse_token_error};
pub use request::{
    AuthMethod, EncodeError, JwtInputs, TokenRequest, TokenRequestConfig, encode_token_request,
};
pub use response::{
    ExpiresInSource, ResponseError, ResponseOptions, ScopeCheck, TokenResponse,
    parse_token_response, parse_token_response_into,
};
