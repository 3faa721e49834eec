//! A session keeps its token where its `TokenStorage` says: inline (the default, `N` bytes
//! whatever the token) or, for a program with an allocator, in a buffer sized to the token. Both
//! accept the same tokens, up to the capacity `N`, and refuse the same.

use credflow_core::Instant;
use credflow_core::http::Method;
use credflow_core::secret::{Credentials, InlineToken, TokenStorage};
use credflow_core::session::{
    Authorize, HostKey, RequestSpec, Session, SessionConfig, TokenEndpoint,
};
use credflow_core::{UnixTime, WallClock};

const TOKEN_URL: &str = "https://login.mypurecloud.com/oauth/token";
const CAPACITY: usize = 8192;

/// A token in a `Vec` of its length, as a `std` adapter keeps it.
#[derive(Clone)]
struct Exact(Vec<u8>);

impl TokenStorage for Exact {
    fn hold(token: &str) -> Self {
        Exact(token.as_bytes().to_vec())
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for Exact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exact(<redacted>)")
    }
}

type Sized<S> = Session<CAPACITY, 1, 256, S>;

fn session<S: TokenStorage>() -> Sized<S> {
    let creds = Credentials::from_strs("client", "secret").unwrap();
    let endpoint = TokenEndpoint::new(TOKEN_URL).unwrap();
    let mut s = Session::new(creds, endpoint, SessionConfig::default(), 7).unwrap();
    s.set_wall_clock(WallClock::new(Instant::ZERO, UnixTime::from_secs(1_800_000_000)));
    s
}

/// Sends the first token request and answers it with `token`.
fn answer<S: TokenStorage>(s: &mut Sized<S>, token: &str) {
    let mut buf = vec![0; 2048];
    let (ticket, _) = s.poll_token_request(Instant::ZERO, &mut buf).unwrap().expect("a request");
    let body = format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#);
    s.handle_token_response(Instant::ZERO, ticket, 200, &[], body.as_bytes());
}

fn authorized<S: TokenStorage>(s: &mut Sized<S>) -> Option<String> {
    let now = Instant::from_secs(1);
    let mut req =
        s.begin(now, RequestSpec::new(Method::Get, HostKey::from_host("api.mypurecloud.com")));
    match s.authorize(now, &mut req) {
        Authorize::Send { token, .. } => Some(token.as_str().to_owned()),
        _ => None,
    }
}

#[test]
fn a_session_sized_to_its_token_is_smaller_than_its_capacity_and_serves_the_same_tokens() {
    assert!(size_of::<Sized<Exact>>() < CAPACITY, "{} bytes", size_of::<Sized<Exact>>());
    assert!(size_of::<Sized<InlineToken<CAPACITY>>>() > CAPACITY);
    // A JWT near the capacity, and a short token.
    let large = "j".repeat(CAPACITY - 16);
    for token in [large.as_str(), "tok-short"] {
        let mut exact = session::<Exact>();
        answer(&mut exact, token);
        let (held, _) = exact.token(Instant::from_secs(1)).expect("the token");
        assert_eq!((held.as_str(), held.len()), (token, token.len()));
        assert_eq!(authorized(&mut exact).as_deref(), Some(token));
        let mut inline = session::<InlineToken<CAPACITY>>();
        answer(&mut inline, token);
        let (kept, _) = inline.token(Instant::from_secs(1)).expect("the token");
        assert_eq!(kept.fingerprint(), exact.token(Instant::from_secs(1)).unwrap().0.fingerprint());
    }
}

#[test]
fn a_token_past_the_capacity_is_refused_whatever_the_storage() {
    let too_long = "j".repeat(CAPACITY + 1);
    let mut exact = session::<Exact>();
    answer(&mut exact, &too_long);
    let mut inline = session::<InlineToken<CAPACITY>>();
    answer(&mut inline, &too_long);
    assert!(exact.token(Instant::from_secs(1)).is_none());
    assert!(inline.token(Instant::from_secs(1)).is_none());
    assert_eq!(exact.counters().token_failures, 1);
    assert_eq!(exact.counters(), inline.counters());
}

#[test]
fn a_token_sealed_from_one_storage_is_restored_into_another() {
    let mut exact = session::<Exact>();
    answer(&mut exact, "tok-sealed");
    let key = b"0123456789abcdef-device";
    let mut sealed = [0u8; 256];
    let n = exact.seal(Instant::from_secs(1), key, &mut sealed).unwrap();
    assert!(n > 0);
    let mut inline = session::<InlineToken<CAPACITY>>();
    inline.restore(Instant::from_secs(1), &sealed[..n], key).unwrap();
    assert_eq!(authorized(&mut inline).as_deref(), Some("tok-sealed"));
    let mut back = session::<Exact>();
    back.restore(Instant::from_secs(1), &sealed[..n], key).unwrap();
    assert_eq!(authorized(&mut back).as_deref(), Some("tok-sealed"));
}
