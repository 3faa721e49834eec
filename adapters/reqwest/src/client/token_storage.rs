//! Where the session keeps its token: on the heap, sized to the token.
//!
//! The core keeps a token inline, in a buffer of its full capacity ([`TOKEN_CAPACITY`], 8 KiB,
//! for JWTs of several KiB), which a microcontroller's one session needs. A service holding a
//! client per tenant would pay those 8 KiB a thousand times for tokens of a hundred bytes:
//! here the session keeps its token in an allocation of the token's length. It accepts the same
//! tokens (the core checks them against [`TOKEN_CAPACITY`] before they are kept).
//!
//! [`TOKEN_CAPACITY`]: super::TOKEN_CAPACITY

use credflow_core::secret::TokenStorage;
use zeroize::Zeroizing;

/// A token's bytes in an allocation of its length; wiped when dropped, never printed.
#[derive(Clone)]
pub(crate) struct HeapToken(Zeroizing<Box<[u8]>>);

impl TokenStorage for HeapToken {
    fn hold(token: &str) -> Self {
        HeapToken(Zeroizing::new(Box::from(token.as_bytes())))
    }

    fn as_str(&self) -> &str {
        // Only ever filled from a `&str`; an empty string is the safe answer otherwise.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for HeapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeapToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use credflow_core::secret::{AccessToken, TokenError};

    use super::HeapToken;
    use crate::TOKEN_CAPACITY;

    type Token = AccessToken<TOKEN_CAPACITY, HeapToken>;

    #[test]
    fn holds_what_the_inline_token_holds_and_refuses_what_it_refuses() {
        let large = "j".repeat(TOKEN_CAPACITY - 1);
        for value in ["t", "tok-123", large.as_str()] {
            let heap = Token::new(value).expect("a token that fits");
            let inline = AccessToken::<TOKEN_CAPACITY>::new(value).unwrap();
            assert_eq!(heap.as_str(), value);
            assert_eq!((heap.len(), heap.fingerprint()), (inline.len(), inline.fingerprint()));
        }
        let too_long = "j".repeat(TOKEN_CAPACITY + 1);
        assert_eq!(
            Token::new(&too_long).unwrap_err(),
            TokenError::TooLong { needed: TOKEN_CAPACITY + 1, capacity: TOKEN_CAPACITY }
        );
        assert_eq!(Token::new("").unwrap_err(), TokenError::Empty);
        assert_eq!(Token::new("a b").unwrap_err(), TokenError::InvalidCharacter { at: 1 });
        let printed = format!("{:?}", Token::new("secret-token-value").unwrap());
        assert!(!printed.contains("secret-token-value"), "{printed}");
    }

    /// A client per tenant: the session does not hold the token's whole capacity inline.
    #[test]
    fn a_client_session_is_smaller_than_the_token_capacity() {
        let size = size_of::<super::super::CoreSession>();
        assert!(size < TOKEN_CAPACITY, "{size} bytes");
    }
}
