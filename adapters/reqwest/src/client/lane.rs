//! The steady-state lane: the session's [`Lane`] published for requests to read without its
//! lock. A request the lane covers is sent with the lane's token without `begin` and
//! `authorize`, and its plain answer is not reported (see `send::attempts`); the session
//! decides when there is a lane, and this module only carries its word.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use credflow_core::Instant;
use credflow_core::session::{Lane, RequestSpec};
use reqwest::header::HeaderValue;

use super::{SessionCell, Shared};

/// Set in [`LaneCell::sent`] once the lane is withdrawn: no request enters it any more, and a
/// request sent in it reports its answer as any other.
const CLOSED: u64 = 1 << 63;

/// A lane as published: the session's word, the header of its token, and the requests sent
/// in it not yet reported to the session.
pub(super) struct LaneCell {
    pub(super) lane: Lane,
    /// The `Authorization` header of the lane's token (the one `SessionCell::header` holds).
    pub(super) header: HeaderValue,
    /// Requests sent in the lane since the session was last told ([`Lane`]'s
    /// `settle_lane`), with [`CLOSED`] once the lane is withdrawn.
    sent: AtomicU64,
}

impl LaneCell {
    /// Whether the lane is still the session's word: not withdrawn since (a request sent in it
    /// whose plain answer comes after a change reports it, as one authorized before the
    /// change would).
    pub(super) fn holds(&self) -> bool {
        self.sent.load(Ordering::Acquire) & CLOSED == 0
    }

    /// The requests sent in the lane and not yet reported, taken (to report them now).
    fn take_sent(&self) -> u64 {
        self.sent.fetch_and(CLOSED, Ordering::AcqRel) & !CLOSED
    }

    /// Withdraws the lane; the requests sent in it and not yet reported.
    fn close(&self) -> u64 {
        self.sent.fetch_or(CLOSED, Ordering::AcqRel) & !CLOSED
    }
}

impl Shared {
    /// Enters the lane for a request described by `spec`, if there is one that covers it now:
    /// the lane and the instant the request was sent in it. Counted in the lane at once (so
    /// that the session hears of it before it decides anything else), or not at all.
    pub(super) fn enter_lane(&self, spec: &RequestSpec) -> Option<(Arc<LaneCell>, Instant)> {
        if !self.lane_live.load(Ordering::Relaxed) {
            return None;
        }
        let cell = self.lane.load_full()?;
        let now = self.clock.now();
        if !cell.lane.covers(now, spec) || self.closing.load(Ordering::Relaxed) {
            return None;
        }
        let counted = cell.sent.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |sent| {
            (sent & CLOSED == 0).then(|| sent.saturating_add(1))
        });
        counted.is_ok().then_some((cell, now))
    }

    /// Tells the session of the requests sent in the lane since it last heard (before it
    /// decides about a request, or its counters are read).
    pub(super) fn settle_lane(&self, session: &mut SessionCell) {
        // Published and withdrawn under the session's lock, as this runs.
        if !self.lane_live.load(Ordering::Relaxed) {
            return;
        }
        if let Some(cell) = self.lane.load_full() {
            let sent = cell.take_sent();
            session.core.settle_lane(&cell.lane, sent);
        }
    }

    /// After a change to the session (and before it decides about a request): the requests
    /// sent in the lane reported, and the lane the session offers now published, or the one
    /// published withdrawn. The lane as published is kept while the session offers the same
    /// (its token, its end). No lane in fleet mode: the fleet's shared budget admits each
    /// attempt.
    pub(super) fn sync_lane(&self, session: &mut SessionCell, now: Instant) {
        // Published and withdrawn under the session's lock, as this runs: most calls, where
        // no lane is published and none is offered (a server that sends rate-limit fields),
        // touch nothing else.
        let live = self.lane_live.load(Ordering::Relaxed);
        let current = if live { self.lane.load_full() } else { None };
        if let Some(cell) = &current {
            session.core.settle_lane(&cell.lane, cell.take_sent());
        }
        let offered = match self.fleet {
            None => session.core.steady_lane(now, self.api_host),
            Some(_) => None,
        };
        // The header of the lane's token: the one built when the token was published.
        let next = offered.and_then(|lane| match &session.header {
            Some((generation, header)) if *generation == lane.generation() => Some((lane, header)),
            _ => None,
        });
        if let (Some(cell), Some((lane, _))) = (&current, &next)
            && cell.lane.generation() == lane.generation()
            && cell.lane.until() == lane.until()
            && cell.holds()
        {
            return;
        }
        if current.is_none() && next.is_none() {
            return;
        }
        if let Some(cell) = &current {
            session.core.settle_lane(&cell.lane, cell.close());
        }
        let next = next.map(|(lane, header)| {
            Arc::new(LaneCell { lane, header: header.clone(), sent: AtomicU64::new(0) })
        });
        self.lane_live.store(next.is_some(), Ordering::Relaxed);
        self.lane.store(next);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use reqwest::Method;

    use self::peer::{Hostile, Reply};

    use super::*;
    use crate::config::credentials;
    use crate::{Client, Target};

    const TOKEN: &str = r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#;

    /// A scripted HTTP/1.1 server on 127.0.0.1 for these tests (the workspace's emulator is not
    /// published, and this file is): answers each request as the test says, and records them.
    mod peer {
        use std::convert::Infallible;
        use std::sync::{Arc, Mutex};

        use bytes::Bytes;
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;

        /// A request as the server read it.
        #[derive(Clone)]
        pub(super) struct Recorded {
            path: String,
            headers: Vec<(String, String)>,
        }

        impl Recorded {
            /// The target's path, without the query.
            pub(super) fn path(&self) -> &str {
                &self.path
            }

            /// The first value of header `name` (any case).
            pub(super) fn header(&self, name: &str) -> Option<&str> {
                let found = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
                found.map(|(_, v)| v.as_str())
            }
        }

        /// An answer: a status, headers and a body.
        pub(super) struct Reply {
            status: u16,
            headers: Vec<(String, String)>,
            body: String,
        }

        impl Reply {
            pub(super) fn status(status: u16) -> Reply {
                Reply { status, headers: Vec::new(), body: String::new() }
            }

            pub(super) fn json(status: u16, body: &str) -> Reply {
                Reply::status(status).header("content-type", "application/json").body(body)
            }

            pub(super) fn header(mut self, name: &str, value: &str) -> Reply {
                self.headers.push((name.to_owned(), value.to_owned()));
                self
            }

            fn body(mut self, body: &str) -> Reply {
                self.body = body.to_owned();
                self
            }
        }

        type Answer = dyn Fn(&Recorded) -> Reply + Send + Sync;

        /// The server; stops when dropped.
        pub(super) struct Hostile {
            addr: std::net::SocketAddr,
            seen: Arc<Mutex<Vec<Recorded>>>,
            task: tokio::task::JoinHandle<()>,
        }

        impl Hostile {
            /// Starts serving on an ephemeral port of 127.0.0.1 (on the test's runtime).
            pub(super) fn start(
                answer: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
            ) -> Hostile {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
                listener.set_nonblocking(true).expect("non-blocking");
                let addr = listener.local_addr().expect("its address");
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio");
                let seen = Arc::new(Mutex::new(Vec::new()));
                let answer: Arc<Answer> = Arc::new(answer);
                let recorded = Arc::clone(&seen);
                let task = tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let (answer, seen) = (Arc::clone(&answer), Arc::clone(&recorded));
                        let service =
                            service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                                let (answer, seen) = (Arc::clone(&answer), Arc::clone(&seen));
                                async move {
                                    let (head, body) = request.into_parts();
                                    // Read whole (a token request's form), so the connection stays.
                                    let _ = body.collect().await;
                                    let headers = head.headers.iter().map(|(n, v)| {
                                        (
                                            n.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into(),
                                        )
                                    });
                                    let got = Recorded {
                                        path: head.uri.path().to_owned(),
                                        headers: headers.collect(),
                                    };
                                    let reply = answer(&got);
                                    seen.lock().unwrap().push(got);
                                    let mut response =
                                        hyper::Response::builder().status(reply.status);
                                    for (name, value) in &reply.headers {
                                        response = response.header(name, value);
                                    }
                                    let body = Full::new(Bytes::from(reply.body));
                                    Ok::<_, Infallible>(response.body(body).expect("a response"))
                                }
                            });
                        tokio::spawn(
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service),
                        );
                    }
                });
                Hostile { addr, seen, task }
            }

            pub(super) fn url(&self, path: &str) -> String {
                format!("http://{}{path}", self.addr)
            }

            /// Every request read so far, in order.
            pub(super) fn requests(&self) -> Vec<Recorded> {
                self.seen.lock().unwrap().clone()
            }

            /// How many requests to `path` were read.
            pub(super) fn requests_to(&self, path: &str) -> usize {
                self.seen.lock().unwrap().iter().filter(|r| r.path == path).count()
            }
        }

        impl Drop for Hostile {
            fn drop(&mut self) {
                self.task.abort();
            }
        }
    }

    fn client(server: &Hostile) -> Client {
        let target =
            Target::Custom { token_url: server.url("/oauth/token"), api_base: server.url("/api/") };
        Client::builder(target, credentials("client-1", "secret-1").unwrap())
            .seed(7)
            .build()
            .unwrap()
    }

    /// Token `n`'s grant.
    fn grant(n: usize) -> Reply {
        Reply::json(200, &TOKEN.replace("tok-1", &format!("tok-{n}")))
    }

    async fn get(client: &Client, path: &str) -> Result<reqwest::Response, crate::Error> {
        client.send(client.request(Method::GET, path).unwrap().build().unwrap()).await
    }

    /// The lane published now, if any.
    fn published(client: &Client) -> Option<Arc<LaneCell>> {
        client.shared().lane.load_full()
    }

    /// Requests sent in `cell` not yet reported to the session.
    fn pending(cell: &LaneCell) -> u64 {
        cell.sent.load(Ordering::Acquire) & !CLOSED
    }

    /// Sends plain requests until one goes in a lane; that lane.
    async fn into_lane(client: &Client) -> Arc<LaneCell> {
        for _ in 0..200 {
            let _ = get(client, "ok").await.expect("a plain answer");
            if let Some(cell) = published(client).filter(|c| c.holds() && pending(c) > 0) {
                return cell;
            }
        }
        panic!("no request went in a lane");
    }

    /// Ordinary successes go in the lane once the session offers one, each counted: the
    /// client's counters say every request and attempt.
    #[tokio::test]
    async fn plain_successes_go_in_the_lane_and_are_counted() {
        let server = Hostile::start(|req| match req.path() {
            "/oauth/token" => grant(1),
            _ => Reply::json(200, "{}"),
        });
        let client = client(&server);
        let cell = into_lane(&client).await;
        for _ in 0..10 {
            get(&client, "ok").await.unwrap();
        }
        assert!(pending(&cell) >= 10, "the requests after went in the lane too");
        let sent = server.requests_to("/api/ok") as u64;
        let counters = client.counters();
        assert_eq!((counters.requests, counters.attempts), (sent, sent));
        assert_eq!(pending(&cell), 0, "reported to the session");
        let requests = server.requests();
        assert!(
            requests
                .iter()
                .filter(|r| r.path() == "/api/ok")
                .all(|r| r.header("authorization") == Some("Bearer tok-1"))
        );
    }

    /// A 401 answering a request sent in the lane is judged by the session: the token is
    /// dropped, the lane withdrawn, the request retried once with a new token; the next lane
    /// is the new token's.
    #[tokio::test]
    async fn a_401_in_the_lane_leaves_it() {
        let grants = AtomicUsize::new(0);
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusing = Arc::clone(&refuse);
        let server = Hostile::start(move |req| match req.path() {
            "/oauth/token" => grant(grants.fetch_add(1, Ordering::SeqCst) + 1),
            _ if refusing.load(Ordering::SeqCst)
                && req.header("authorization") == Some("Bearer tok-1") =>
            {
                Reply::status(401)
            }
            _ => Reply::json(200, "{}"),
        });
        let client = client(&server);
        let cell = into_lane(&client).await;
        refuse.store(true, Ordering::SeqCst);
        let response = get(&client, "me").await.expect("retried with a new token");
        assert_eq!(response.status(), 200);
        assert!(!cell.holds(), "the lane of the refused token was withdrawn");
        let me: Vec<_> = server.requests().into_iter().filter(|r| r.path() == "/api/me").collect();
        let sent_with: Vec<_> = me.iter().map(|r| r.header("authorization")).collect();
        assert_eq!(sent_with, [Some("Bearer tok-1"), Some("Bearer tok-2")]);
        let counters = client.counters();
        assert_eq!((counters.unauthorized, counters.retries), (1, 1));
        let next = into_lane(&client).await;
        assert_eq!(next.lane.generation().0, client.token().await.unwrap().generation());
        assert_ne!(next.lane.generation(), cell.lane.generation());
    }

    /// A 429 answering a request sent in the lane is judged by the session: the lane is
    /// withdrawn before the caller has the verdict, and while the 429's wait is in force no
    /// request goes without asking (here the wait, an hour, is longer than the retry policy
    /// accepts: the request fails at once, and so does the next).
    #[tokio::test]
    async fn a_429_in_the_lane_leaves_it() {
        let server = Hostile::start(move |req| match req.path() {
            "/oauth/token" => grant(1),
            "/api/limited" => Reply::status(429).header("retry-after", "3600"),
            _ => Reply::json(200, "{}"),
        });
        let client = client(&server);
        let cell = into_lane(&client).await;
        let e = get(&client, "limited").await.expect_err("a wait past max_wait");
        assert!(e.to_string().contains("RateLimited"), "{e}");
        assert!(!cell.holds(), "the lane was withdrawn with the verdict");
        assert!(published(&client).is_none(), "no lane while the 429's wait is in force");
        let sent = server.requests().len();
        let e = get(&client, "ok").await.expect_err("held by the 429");
        assert!(e.to_string().contains("RateLimited"), "{e}");
        assert_eq!(server.requests().len(), sent, "nothing sent while held");
        assert_eq!(client.counters().rate_limited, 1);
    }

    /// A refresh (the token replaced) withdraws the lane: no request goes with the old token
    /// after it.
    #[tokio::test]
    async fn a_refresh_leaves_the_lane() {
        let grants = AtomicUsize::new(0);
        let server = Hostile::start(move |req| match req.path() {
            "/oauth/token" => grant(grants.fetch_add(1, Ordering::SeqCst) + 1),
            _ => Reply::json(200, "{}"),
        });
        let client = client(&server);
        let cell = into_lane(&client).await;
        let fresh = client.refresh().await.expect("a new token");
        assert_eq!(fresh.as_str(), "tok-2");
        assert!(!cell.holds(), "the old token's lane was withdrawn");
        let before = server.requests().len();
        for _ in 0..30 {
            get(&client, "after").await.unwrap();
        }
        let after = server.requests();
        assert!(
            after[before..]
                .iter()
                .filter(|r| r.path() == "/api/after")
                .all(|r| r.header("authorization") == Some("Bearer tok-2"))
        );
        let next = published(&client).expect("a lane again");
        assert_eq!(next.lane.generation().0, fresh.generation());
    }

    /// The origin check stays on every request: with a lane published, a request for another
    /// origin is refused before anything is sent, and is not counted in the lane.
    #[tokio::test]
    async fn nothing_goes_to_another_origin_in_the_lane() {
        let server = Hostile::start(|req| match req.path() {
            "/oauth/token" => grant(1),
            _ => Reply::json(200, "{}"),
        });
        let other_seen = Arc::new(Mutex::new(0usize));
        let seen = Arc::clone(&other_seen);
        let other = Hostile::start(move |_| {
            *seen.lock().unwrap() += 1;
            Reply::json(200, "{}")
        });
        let client = client(&server);
        let cell = into_lane(&client).await;
        let counted = pending(&cell);
        let url = reqwest::Url::parse(&other.url("/api/ok")).unwrap();
        let e =
            client.send(reqwest::Request::new(Method::GET, url)).await.expect_err("another origin");
        assert_eq!(e.kind(), crate::ErrorKind::Config, "{e}");
        assert_eq!(*other_seen.lock().unwrap(), 0, "nothing sent to the other origin");
        assert_eq!(pending(&cell), counted, "not counted in the lane");
        assert!(cell.holds());
    }
}
