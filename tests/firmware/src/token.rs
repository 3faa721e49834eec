//! # credflow-firmware-token
//!
//! The token keeper: a device that keeps a token with credflow and hands it to code of its own
//! (see `main.rs` for the three builds). Only the token path is linked.

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

    use crate::client::{RX, RX_BUF, TX, TX_BUF, init};
    use crate::runtime::block_on;

    #[entry]
    fn main() -> ! {
        let client = init();
        let tx = TX_BUF.init([0; TX]);
        let rx = RX_BUF.init([0; RX]);
        loop {
            let len = block_on(async {
                let _ = client.maintain(tx, rx).await;
                // The device's own connection would carry the token from here.
                client.token(tx, rx).await.map_or(0, |token| token.len())
            });
            core::hint::black_box(len);
        }
    }
}
