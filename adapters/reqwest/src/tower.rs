//! credflow as a tower [`Layer`](tower_layer::Layer) (feature `tower`), for stacks built on
//! `http::Request<B>`: a hyper-util client, tonic, axum's client users.
//!
//! ```no_run
//! # async fn demo(credflow: credflow_reqwest::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client as HyperClient;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Layer, ServiceExt};
//!
//! // The inner client sends `reqwest::Body`, credflow's body type.
//! let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<reqwest::Body>();
//! let service = credflow_reqwest::tower::CredflowLayer::new(credflow.clone()).layer(hyper);
//! let request = http::Request::get(credflow.url("/api/v2/users/me")?.as_str())
//!     .body(Full::new(bytes::Bytes::new()))?;
//! let response = service.oneshot(request).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```
//!
//! The verdicts are [`Client::send`]'s, by the same loop: the token attached (only for the API
//! base's origin: a request for another origin fails with a configuration error before it
//! reaches the inner service), pacing to the rate limit, a 401 answered with one refresh and
//! one retry, a 429's wait honoured, transient failures retried by the core's policy and
//! budget, breakers. Per-request [`RequestOptions`] go in the request's extensions.
//!
//! What the layer does with the request:
//!
//! - **Body.** A body whose size is known exactly and at most [`REPLAYABLE_BODY`] bytes
//!   (`Full`, `Empty`, a `String`) is read into memory first, so that a retry can send it
//!   again. Any other body (a stream) is sent once and never retried, as with
//!   [`Client::send`].
//! - **Timeout.** Each attempt, response headers and error body included, is bounded by
//!   [`Config::request_timeout`](crate::Config::request_timeout); the response body handed
//!   back carries the same deadline (a body still arriving after it fails with a timeout), as
//!   reqwest's own timeout does.
//! - **Errors.** The inner service's errors are transport failures, classified by the
//!   [`std::io::Error`] in their source chain (refused connection, reset, timeout); the
//!   service's error type is credflow's [`Error`].
//! - **Readiness.** `poll_ready` is always ready; each attempt waits for a clone of the inner
//!   service to be ready, so the inner service must be `Clone` (hyper-util's client is).
//!
//! Redirects are the inner service's: hyper-util's client follows none, so every 3xx comes
//! back as it is. Token requests never go through the inner service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use credflow_core::retry::policy::TransportKind;
use http_body::{Body as HttpBody, Frame};

use crate::client::{BoxError, Client, RequestOptions};
use crate::error::Error;

/// The largest request body of known size the layer reads into memory so that a retry can
/// resend it: 1 MiB. A larger one, or one of unknown size, is sent once.
pub const REPLAYABLE_BODY: u64 = 1 << 20;

/// A tower layer that sends requests through a credflow [`Client`]: see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct CredflowLayer {
    client: Client,
}

impl CredflowLayer {
    /// The layer of `client` (cheap: the client is an `Arc` inside).
    pub fn new(client: Client) -> Self {
        CredflowLayer { client }
    }
}

impl<S> tower_layer::Layer<S> for CredflowLayer {
    type Service = CredflowService<S>;

    fn layer(&self, inner: S) -> CredflowService<S> {
        CredflowService { client: self.client.clone(), inner }
    }
}

/// The service of [`CredflowLayer`] around an inner service `S` that sends
/// `http::Request<reqwest::Body>`.
#[derive(Clone, Debug)]
pub struct CredflowService<S> {
    client: Client,
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower_service::Service<http::Request<B>> for CredflowService<S>
where
    S: tower_service::Service<http::Request<reqwest::Body>, Response = http::Response<RB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: HttpBody + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
    RB: HttpBody + Send + Sync + 'static,
    RB::Data: Into<Bytes>,
    RB::Error: Into<BoxError>,
{
    type Response = http::Response<reqwest::Body>;
    type Error = Error;
    type Future = BoxFuture<Result<http::Response<reqwest::Body>, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Each attempt waits for its own clone of the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let client = self.client.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let options = request.extensions().get::<RequestOptions>().copied().unwrap_or_default();
            let (parts, body) = request.into_parts();
            let body = replayable(body).await?;
            let request = reqwest::Request::try_from(http::Request::from_parts(parts, body))
                .map_err(|e| Error::from_reqwest("the request's URI", e))?;
            let response = client
                // `false`: the inner service may have no timeout; each attempt gets one.
                .send_through(request, options, false, move |_, attempt| {
                    attempt_through(inner.clone(), attempt)
                })
                .await?;
            Ok(http::Response::<reqwest::Body>::from(response))
        })
    }
}

/// `body` as a `reqwest::Body`: in memory (replayable) if its size is known and small enough,
/// else wrapped as a stream (sent once).
async fn replayable<B>(body: B) -> Result<reqwest::Body, Error>
where
    B: HttpBody + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    let exact = body.size_hint().exact().filter(|&n| n <= REPLAYABLE_BODY);
    let Some(size) = exact else {
        return Ok(reqwest::Body::wrap(body));
    };
    let mut body = std::pin::pin!(body);
    let mut read = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame =
            frame.map_err(|e| Error::transport_boxed("reading the request body", e.into()))?;
        if let Ok(data) = frame.into_data() {
            let data: Bytes = data.into();
            // A body that sends more than it announced: refused rather than grown without bound.
            if u64::try_from(read.len().saturating_add(data.len())).unwrap_or(u64::MAX) > size {
                return Err(Error::config(format!(
                    "the request body is longer than the {size} bytes its size hint announced"
                )));
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(reqwest::Body::from(read))
}

/// One attempt through a clone of the inner service, bounded by the attempt's timeout (set by
/// the send loop); the response body carries the same deadline.
fn attempt_through<S, RB>(
    mut inner: S,
    attempt: reqwest::Request,
) -> impl Future<Output = Result<reqwest::Response, (TransportKind, BoxError)>> + Send
where
    S: tower_service::Service<http::Request<reqwest::Body>, Response = http::Response<RB>>
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    RB: HttpBody + Send + Sync + 'static,
    RB::Data: Into<Bytes>,
    RB::Error: Into<BoxError>,
{
    let timeout = attempt.timeout().copied();
    let converted = http::Request::<reqwest::Body>::try_from(attempt);
    async move {
        let request = converted.map_err(|e| (TransportKind::Other, Box::new(e) as BoxError))?;
        // A timeout past the clock's range (`Duration::MAX` for "never") bounds nothing.
        let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
        let sent = async {
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await.map_err(classify)?;
            inner.call(request).await.map_err(classify)
        };
        let response = match deadline {
            Some(at) => tokio::time::timeout_at(at, sent).await.map_err(|_| timed_out())??,
            None => sent.await?,
        };
        let response = response.map(|body| match deadline {
            Some(at) => reqwest::Body::wrap(Deadline {
                body: Box::pin(body),
                sleep: Box::pin(tokio::time::sleep_until(at)),
            }),
            None => reqwest::Body::wrap(body),
        });
        Ok(reqwest::Response::from(response))
    }
}

/// The timeout error of an attempt that outlived its deadline.
fn timed_out() -> (TransportKind, BoxError) {
    let error = std::io::Error::new(std::io::ErrorKind::TimedOut, "the attempt timed out");
    (TransportKind::Timeout, Box::new(error))
}

/// An inner service's error as a transport failure, by the `io::Error` in its source chain.
fn classify(error: impl Into<BoxError>) -> (TransportKind, BoxError) {
    let error = error.into();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    let mut kind = TransportKind::Other;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            kind = match io.kind() {
                K::ConnectionRefused
                | K::AddrNotAvailable
                | K::HostUnreachable
                | K::NetworkUnreachable => TransportKind::Connect,
                K::TimedOut => TransportKind::Timeout,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    TransportKind::Reset
                }
                _ => TransportKind::Other,
            };
            break;
        }
        source = e.source();
    }
    (kind, error)
}

/// A response body that fails with a timeout once the attempt's deadline passed.
struct Deadline<B> {
    body: Pin<Box<B>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<B> HttpBody for Deadline<B>
where
    B: HttpBody,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.get_mut();
        // The deadline first: a body that always has a frame ready (an endless stream, a
        // decompression layer on a gzip bomb) would otherwise never let it be looked at.
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(timed_out().1)));
        }
        this.body.as_mut().poll_frame(cx).map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
