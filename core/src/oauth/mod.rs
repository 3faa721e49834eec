//! The OAuth 2.0 client-credentials codec (RFC 6749 §4.4, §5.1, §5.2; RFC 7523; RFC 6750).

pub mod error;
pub mod form;
pub mod jwt;
pub mod request;
pub mod response;
