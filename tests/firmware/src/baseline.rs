//! # credflow-firmware-baseline
//!
//! The firmware runtime without credflow (see `main.rs` for the three builds): the vector
//! table, cortex-m-rt, the time driver, the executor and the stub transport, driven the way the
//! client drives it (write a request, read the response into the caller's buffer). Its size is
//! what the credflow builds spend besides core and adapter.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod runtime;

#[cfg(target_os = "none")]
mod firmware {
    use cortex_m_rt::entry;
    use embedded_io_async::{Read, Write};
    use static_cell::StaticCell;

    use crate::runtime::{API_RESPONSE, Canned, TOKEN_RESPONSE, block_on};

    const TX: usize = 1024;
    const RX: usize = 4096;

    static TX_BUF: StaticCell<[u8; TX]> = StaticCell::new();
    static RX_BUF: StaticCell<[u8; RX]> = StaticCell::new();

    #[entry]
    fn main() -> ! {
        let tx = TX_BUF.init([0; TX]);
        let rx = RX_BUF.init([0; RX]);
        let mut token_turn = true;
        loop {
            let response = if token_turn { TOKEN_RESPONSE } else { API_RESPONSE };
            token_turn = !token_turn;
            let got = block_on(async {
                let mut conn = Canned { response };
                let _ = conn.write_all(tx).await;
                let _ = conn.flush().await;
                let mut filled = 0;
                while let Some(room) = rx.get_mut(filled..) {
                    match conn.read(room).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => filled += n,
                    }
                }
                embassy_time::Instant::now().as_ticks() as usize + filled
            });
            core::hint::black_box(got);
        }
    }
}
