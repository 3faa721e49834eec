//! # credflow-firmware
//!
//! Firmware-shaped programs that link `credflow-embedded` for a Cortex-M4F
//! (`thumbv7em-none-eabihf`), to prove it builds bare-metal and to measure its footprint
//! (`scripts/firmware-size`, results in BENCHMARKS.md). Three builds of one runtime:
//!
//! - `credflow-firmware` (this file), the **API client**: it keeps a token and sends API
//!   requests with it (a token request, then an API request), the whole path a device that
//!   talks to the platform through credflow runs;
//! - `credflow-firmware-token` (`token.rs`), the **token keeper**: it keeps a token and hands it
//!   to code of its own (an MQTT or WebSocket connection, another HTTP client), so the API
//!   request path (pacing, breakers, response classification) is not linked;
//! - `credflow-firmware-baseline` (`baseline.rs`): the same runtime without credflow, whose
//!   size is subtracted from the others to give what core and adapter cost.
//!
//! All three run over a stub transport that answers from canned bytes (a real device plugs
//! embassy-net and a TLS stream in the same place); a tick time driver and a busy-polling
//! executor stand in for the HAL's and embassy-executor.
//!
//! Capacities measured: token `N = 1024` bytes, `H = 1` API host, token endpoint `E = 64` bytes,
//! `tx` 1 KiB, `rx` 4 KiB.
//!
//! On the host these binaries are empty stubs, so `cargo test --workspace` can link them.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod runtime;

#[cfg(target_os = "none")]
mod client;

#[cfg(target_os = "none")]
mod firmware {
    use cortex_m_rt::entry;
    use credflow_embedded::Request;

    use crate::client::{RX, RX_BUF, TX, TX_BUF, init};
    use crate::runtime::block_on;

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
}
