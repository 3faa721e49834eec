//! # credflow-firmware
//!
//! A firmware-shaped program that links `credflow-embedded` for a Cortex-M4F
//! (`thumbv7em-none-eabihf`), to prove it builds bare-metal and to measure its footprint
//! (`scripts/firmware-size`, results in BENCHMARKS.md).
//!
//! It runs the whole path a device runs: a token request, then an API request with the token,
//! over a stub transport that answers from canned bytes (a real device plugs embassy-net and a
//! TLS stream in the same place). A minimal time driver and a busy-polling executor stand in for
//! the HAL's and embassy-executor, so what is measured is credflow, cortex-m-rt and little else.
//!
//! Capacities measured: token `N = 1024` bytes, `H = 1` API host, token endpoint `E = 64` bytes,
//! `tx` 1 KiB, `rx` 4 KiB.
//!
//! On the host this binary is an empty stub, so `cargo test --workspace` can link it.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod firmware {
    use core::convert::Infallible;
    use core::future::Future;
    use core::pin::pin;
    use core::sync::atomic::{AtomicU32, Ordering};
    use core::task::{Context, Poll, Waker};

    use cortex_m_rt::entry;
    use credflow_core::secret::Credentials;
    use credflow_core::session::{Session, SessionConfig, TokenEndpoint};
    use credflow_embedded::{Client, ClientConfig, Connector, Request, Target};
    use static_cell::StaticCell;

    /// Token capacity in bytes (Genesys Cloud tokens are far shorter).
    const N: usize = 1024;
    /// API hosts with their own circuit breaker.
    const H: usize = 1;
    /// Token endpoint capacity: the token URL (no scope, no extra parameters).
    const E: usize = 64;
    const TX: usize = 1024;
    const RX: usize = 4096;

    const TOKEN_URL: &str = "http://login.example/oauth/token";
    const API_BASE: &str = "http://api.example";

    const TOKEN_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
        Content-Length: 70\r\n\r\n\
        {\"access_token\":\"abcdefghijkl\",\"token_type\":\"bearer\",\"expires_in\":86400}";
    const API_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
        inin-ratelimit-count: 1\r\ninin-ratelimit-allowed: 300\r\ninin-ratelimit-reset: 60\r\n\
        Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";

    /// A connection that swallows the request and replays a canned response.
    struct Canned {
        response: &'static [u8],
    }

    impl embedded_io_async::ErrorType for Canned {
        type Error = Infallible;
    }

    impl embedded_io_async::Read for Canned {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            let n = buf.len().min(self.response.len());
            let (now, later) = self.response.split_at(n);
            if let Some(dst) = buf.get_mut(..n) {
                dst.copy_from_slice(now);
            }
            self.response = later;
            Ok(n)
        }
    }

    impl embedded_io_async::Write for Canned {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
            Ok(buf.len())
        }

        async fn flush(&mut self) -> Result<(), Infallible> {
            Ok(())
        }
    }

    /// Stands in for embassy-net + a TLS stream.
    struct StubNet;

    impl Connector for StubNet {
        type Connection = Canned;
        type Error = Infallible;

        async fn connect(&mut self, target: &Target) -> Result<Canned, Infallible> {
            let response =
                if target.host().starts_with("login") { TOKEN_RESPONSE } else { API_RESPONSE };
            Ok(Canned { response })
        }
    }

    /// A tick counter instead of a hardware timer: every read advances 1 ms.
    struct TickDriver(AtomicU32);

    impl embassy_time_driver::Driver for TickDriver {
        fn now(&self) -> u64 {
            u64::from(self.0.fetch_add(1, Ordering::Relaxed))
        }

        fn schedule_wake(&self, _at: u64, waker: &Waker) {
            // The busy-polling executor polls again anyway.
            waker.wake_by_ref();
        }
    }

    embassy_time_driver::time_driver_impl!(static DRIVER: TickDriver = TickDriver(AtomicU32::new(0)));

    /// Polls `fut` to completion (embassy-executor's place on a real device).
    fn block_on<F: Future>(fut: F) -> F::Output {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    static CLIENT: StaticCell<Client<StubNet, N, H, E>> = StaticCell::new();
    static TX_BUF: StaticCell<[u8; TX]> = StaticCell::new();
    static RX_BUF: StaticCell<[u8; RX]> = StaticCell::new();

    #[entry]
    fn main() -> ! {
        let client = init();
        let tx = TX_BUF.init([0; TX]);
        let rx = RX_BUF.init([0; RX]);
        loop {
            let status = block_on(async {
                let request = Request::get("/api/v2/routing/queues?pageSize=1");
                let _ = client.maintain(tx, rx).await;
                match client.request(&request, tx, rx).await {
                    Ok(response) => response.status,
                    Err(_) => 0,
                }
            });
            core::hint::black_box(status);
        }
    }

    /// Builds the client into its static. Out of line on purpose: the session and the client
    /// are assembled in this function's frame (several KiB) and moved into the static, and that
    /// frame is released when it returns; inlined into `main`, which never returns, it would
    /// stay reserved under the request loop for the life of the device.
    #[inline(never)]
    fn init() -> &'static mut Client<StubNet, N, H, E> {
        CLIENT.init_with(|| {
            let (Ok(credentials), Ok(endpoint)) = (
                Credentials::from_strs("client-id", "client-secret"),
                TokenEndpoint::<E>::new(TOKEN_URL),
            ) else {
                halt()
            };
            // The seed comes from the device's RNG on real hardware.
            let Ok(session) =
                Session::<N, H, E>::new(credentials, endpoint, SessionConfig::default(), 7)
            else {
                halt()
            };
            match Client::new(StubNet, session, API_BASE, ClientConfig::default()) {
                Ok(client) => client,
                Err(_) => halt(),
            }
        })
    }

    fn halt() -> ! {
        loop {
            core::hint::spin_loop();
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        halt()
    }
}
