//! NUCLEO-F767ZI bring-up shared by both programs, so that they differ only in how they get
//! and use a token: clocks (216 MHz from the ST-LINK's 8 MHz, 48 MHz for the RNG), Ethernet
//! (the board's LAN8742A over RMII), embassy-net with DHCP and DNS, the hardware RNG, and the
//! green (LD1) and red (LD3) user LEDs that show the last API call's outcome.
//!
//! What each program sets at build time:
//! - `GENESYS_CLIENT_ID`, `GENESYS_CLIENT_SECRET`: the OAuth client (required: the build
//!   fails without them; a production device reads them from its provisioned flash);
//! - `GENESYS_ENV_NAME`: the region, e.g. `mypurecloud.ie` (default `mypurecloud.com`);
//! - the certificate authority the servers' chains lead to: [`GENESYS_CA`].

#![no_std]

use embassy_executor::Spawner;
use embassy_net::{Runner, Stack, StackResources};
use embassy_stm32::eth::{self, Ethernet, GenericPhy, PacketQueue};
use embassy_stm32::gpio::{Level, Output, Speed};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts};
use static_cell::StaticCell;

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

/// The OAuth client id, set at build time.
pub const CLIENT_ID: &str = env!("GENESYS_CLIENT_ID");
/// The OAuth client secret, set at build time.
pub const CLIENT_SECRET: &str = env!("GENESYS_CLIENT_SECRET");
/// The Genesys Cloud region (`GENESYS_ENV_NAME`, default `mypurecloud.com`).
pub const REGION: &str = match option_env!("GENESYS_ENV_NAME") {
    Some(name) => name,
    None => "mypurecloud.com",
};

/// The certificate authority (DER) that signed the last certificate of the chain the
/// Genesys Cloud servers send: Amazon Root CA 3 (ECDSA P-256), for chains of Amazon's ECDSA
/// certificates. Check what your region serves (`openssl s_client -connect
/// api.mypurecloud.com:443 -showcerts`): an RSA chain needs embedded-tls's `rsa` feature,
/// and an allocator, and its root here.
pub const GENESYS_CA: &[u8] = include_bytes!("../ca/amazon-root-ca-3.der");

/// The MAC address: locally administered (bit 1 of the first byte), unicast.
const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xc7, 0xed, 0x01];

/// The network stack, the RNG and the LEDs, with the stack's runner spawned.
pub struct Board {
    /// embassy-net, configured by DHCP (address, gateway, DNS servers).
    pub stack: Stack<'static>,
    /// The hardware RNG (a `rand_core` 0.6 `CryptoRng`).
    pub rng: Rng<'static, RNG>,
    /// LD1: the last API call succeeded.
    pub green: Output<'static>,
    /// LD3: the last API call failed.
    pub red: Output<'static>,
}

type Device = Ethernet<'static, ETH, GenericPhy<eth::Sma<'static, ETH_SMA>>>;

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Device>) -> ! {
    runner.run().await
}

/// Brings the board up and waits until DHCP has configured the network.
pub async fn init(spawner: Spawner) -> Board {
    let p = embassy_stm32::init(clocks());
    let mut rng = Rng::new(p.RNG, Irqs);

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::new()),
        p.ETH,
        Irqs,
        p.PA1,  // REF_CLK
        p.PA7,  // CRS_DV
        p.PC4,  // RXD0
        p.PC5,  // RXD1
        p.PG13, // TXD0
        p.PB13, // TXD1
        p.PG11, // TX_EN
        MAC,
        p.ETH_SMA,
        p.PA2, // MDIO
        p.PC1, // MDC
    );

    // Sockets: DHCP, DNS, and the one TCP connection the programs open at a time.
    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let config = embassy_net::Config::dhcpv4(Default::default());
    let seed = rng.next_u64();
    let (stack, runner) =
        embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
    spawner.spawn(net_task(runner).expect("the network task is spawned once"));
    stack.wait_config_up().await;

    Board {
        stack,
        rng,
        green: Output::new(p.PB0, Level::Low, Speed::Low),
        red: Output::new(p.PB14, Level::Low, Speed::Low),
    }
}

/// 216 MHz from the ST-LINK's 8 MHz clock (HSE bypass), 48 MHz on PLL Q for the RNG.
fn clocks() -> Config {
    use embassy_stm32::rcc::{
        AHBPrescaler, APBPrescaler, Hse, HseMode, Pll, PllMul, PllPDiv, PllPreDiv, PllQDiv,
        PllSource, Sysclk,
    };
    let mut config = Config::default();
    config.rcc.hse = Some(Hse { freq: Hertz(8_000_000), mode: HseMode::Bypass });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL216,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV9),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}

/// Stops on a panic; the watchdog, if the application arms one, restarts the board.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
