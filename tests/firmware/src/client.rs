//! The client both credflow builds link: a stub connector over [`Canned`] connections and the
//! client, built into a static.

use credflow_core::secret::Credentials;
use credflow_core::session::{Session, SessionConfig, TokenEndpoint};
use credflow_embedded::{Client, ClientConfig, Connector, Target};
use static_cell::StaticCell;

use crate::runtime::{API_RESPONSE, Canned, TOKEN_RESPONSE, halt};

/// Token capacity in bytes (Genesys Cloud tokens are far shorter).
pub const N: usize = 1024;
/// API hosts with their own circuit breaker.
pub const H: usize = 1;
/// Token endpoint capacity: the token URL (no scope, no extra parameters).
pub const E: usize = 64;
pub const TX: usize = 1024;
pub const RX: usize = 4096;

// `https`, as on a real device (plain `http` is refused off loopback): the stub stands in for
// the TLS stream as it does for TCP.
const TOKEN_URL: &str = "https://login.example/oauth/token";
const API_BASE: &str = "https://api.example";

/// Stands in for embassy-net + a TLS stream.
pub struct StubNet;

impl Connector for StubNet {
    type Connection = Canned;
    type Error = core::convert::Infallible;

    async fn connect(&mut self, target: &Target) -> Result<Canned, Self::Error> {
        let response =
            if target.host().starts_with("login") { TOKEN_RESPONSE } else { API_RESPONSE };
        Ok(Canned { response })
    }
}

pub type Device = Client<StubNet, N, H, E>;

static CLIENT: StaticCell<Device> = StaticCell::new();
pub static TX_BUF: StaticCell<[u8; TX]> = StaticCell::new();
pub static RX_BUF: StaticCell<[u8; RX]> = StaticCell::new();

/// Builds the client into its static. Out of line on purpose: the session and the client
/// are assembled in this function's frame (several KiB) and moved into the static, and that
/// frame is released when it returns; inlined into `main`, which never returns, it would
/// stay reserved under the request loop for the life of the device.
#[inline(never)]
pub fn init() -> &'static mut Device {
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
