//! Secrets (`core/src/secret.rs`): bounded credentials and tokens, never printed.

use credflow_core::secret::{
    AccessToken, CLIENT_SECRET_CAPACITY, ClientSecret, CredentialError, CredentialPart,
    Credentials, TokenError,
};

use crate::{CheckResult, shown};

/// Credentials and tokens are bounded and refuse what cannot go into a header.
pub(crate) fn credential_and_token_bounds() -> CheckResult {
    ensure_eq!(AccessToken::<4>::new("12345"), Err(TokenError::TooLong { needed: 5, capacity: 4 }));
    ensure_eq!(AccessToken::<8>::new("ab cd"), Err(TokenError::InvalidCharacter { at: 2 }));
    ensure_eq!(AccessToken::<8>::new("ab\r\n"), Err(TokenError::InvalidCharacter { at: 2 }));
    ensure_eq!(AccessToken::<8>::new(""), Err(TokenError::Empty));
    ensure_eq!(ok!(AccessToken::<4>::new("1234")).len(), 4);
    ensure_eq!(
        ClientSecret::new("secret\n").map(|_| ()),
        Err(CredentialError::ControlCharacter { at: 6 })
    );
    let long = [b'x'; CLIENT_SECRET_CAPACITY + 1];
    let long = ok!(core::str::from_utf8(&long));
    ensure_eq!(
        ClientSecret::new(long).map(|_| ()),
        Err(CredentialError::TooLong { len: 256, capacity: 255 })
    );
    ensure!(ClientSecret::new(long.get(..CLIENT_SECRET_CAPACITY).unwrap_or("")).is_ok());
    ensure_eq!(
        Credentials::from_strs("idone", "").map(|_| ()),
        Err((CredentialPart::ClientSecret, CredentialError::Empty))
    );
    Ok(())
}

/// Secrets never reach `Debug` or `Display`.
pub(crate) fn secrets_never_print() -> CheckResult {
    let creds = ok!(Credentials::from_strs("my-client", "s3cr3t-value"));
    let text = shown::<192>(format_args!("{creds:?} {} {}", creds.secret, creds.secret.clone()));
    ensure!(!text.contains("s3cr3t"), "{}", text);
    ensure!(text.contains("my-client") && text.contains("fp:"), "{}", text);
    let token = ok!(AccessToken::<64>::new("tok-abcdef123456"));
    let text = shown::<128>(format_args!("{token:?} {token}"));
    ensure!(!text.contains("abcdef123456"), "{}", text);
    ensure!(text.contains("16 bytes"), "{}", text);
    Ok(())
}
