//! `credflow-emulator`: a local Genesys Cloud look-alike for testing OAuth client-credentials
//! clients. Prints its address and the demo credentials, serves until Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use credflow_emulator::{Emulator, EmulatorArgs, print_banner};

/// A local Genesys Cloud look-alike (token endpoint and a few API routes) on 127.0.0.1.
#[derive(Parser)]
#[command(name = "credflow-emulator", version, about)]
struct Cli {
    #[command(flatten)]
    args: EmulatorArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match Emulator::run_until_ctrl_c(cli.args.to_config(), print_banner) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("credflow-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
