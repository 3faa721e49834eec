//! What every firmware build here shares and what is not credflow: the stub transport, a tick
//! time driver, a busy-polling executor and the panic handler. The `baseline` build links this
//! alone, so its size is what the other builds spend besides core and adapter.

use core::convert::Infallible;
use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll, Waker};

pub const TOKEN_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
    Content-Length: 70\r\n\r\n\
    {\"access_token\":\"abcdefghijkl\",\"token_type\":\"bearer\",\"expires_in\":86400}";
pub const API_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
    inin-ratelimit-count: 1\r\ninin-ratelimit-allowed: 300\r\ninin-ratelimit-reset: 60\r\n\
    Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";

/// A connection that swallows the request and replays a canned response.
pub struct Canned {
    pub response: &'static [u8],
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
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

pub fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    halt()
}
