//! [`TokenSource`]: what an application that sends its own requests needs of a credflow
//! client (a token, and a way to report one the API rejected), as a trait it can mock.

use std::future::Future;
use std::pin::Pin;

use crate::client::{Client, Token};
use crate::error::Error;

/// The future of [`TokenSource::token`].
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send + 'a>>;

/// A provider of bearer tokens for requests the application sends itself (through another
/// HTTP stack): [`Client`] is one; a mock of the application's tests is another (build its
/// tokens with [`Token::new`]). Object-safe, so an application can hold an
/// `Arc<dyn TokenSource>`.
///
/// The contract: call [`token`](Self::token) before each request (it is cheap: a cached token
/// comes back without I/O), and when the API answers 401, report the token with
/// [`invalidate`](Self::invalidate), take a new one and retry once.
///
/// ```
/// use std::time::Duration;
/// use credflow_reqwest::{Error, Token, TokenFuture, TokenSource};
///
/// /// The application's code, written against the trait.
/// async fn call(source: &dyn TokenSource) -> Result<String, Error> {
///     let token = source.token().await?;
///     let rejected = token.as_str() == "expired"; // a 401 from the application's stack
///     if rejected && source.invalidate(&token) {
///         return Ok(source.token().await?.as_str().to_owned());
///     }
///     Ok(token.as_str().to_owned())
/// }
///
/// /// Its test double: a fixed token, then a fresh one once the first is reported.
/// struct Mock(std::sync::Mutex<u32>);
///
/// impl TokenSource for Mock {
///     fn token(&self) -> TokenFuture<'_> {
///         let generation = *self.0.lock().unwrap();
///         let value = if generation == 1 { "expired" } else { "fresh" };
///         Box::pin(async move { Token::new(value, generation, Duration::from_secs(60)) })
///     }
///     fn invalidate(&self, token: &Token) -> bool {
///         let mut current = self.0.lock().unwrap();
///         let dropped = token.generation() == *current;
///         if dropped {
///             *current += 1;
///         }
///         dropped
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// assert_eq!(call(&Mock(std::sync::Mutex::new(1))).await.unwrap(), "fresh");
/// # });
/// ```
pub trait TokenSource: Send + Sync {
    /// A valid token ([`Client::token`]).
    fn token(&self) -> TokenFuture<'_>;

    /// Reports that the API rejected `token`; returns whether it was dropped (`false` if a
    /// newer one is current already) ([`Client::invalidate`]).
    fn invalidate(&self, token: &Token) -> bool;
}

impl TokenSource for Client {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(Client::token(self))
    }

    fn invalidate(&self, token: &Token) -> bool {
        Client::invalidate(self, token)
    }
}
