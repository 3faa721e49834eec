//! `scopes`: the rate-limit scope comparison ([`credflow_sim::scopes`]) as a markdown table.
//!
//! `cargo run --release -p credflow-sim --bin scopes [-- --quick] [-- --seed N]`

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let seed = match args.iter().position(|a| a == "--seed") {
        Some(i) => match args.get(i + 1).and_then(|s| s.parse().ok()) {
            Some(seed) => seed,
            None => {
                eprintln!("--seed needs a number");
                return ExitCode::from(2);
            }
        },
        None => 42,
    };
    let tables = credflow_sim::scopes::compare(quick, seed).and_then(|fleet| {
        let pacing = credflow_sim::scopes::compare_pacing(quick, seed)?;
        Ok((fleet, pacing))
    });
    match tables {
        Ok((fleet, pacing)) => {
            print!("{}", credflow_sim::scopes::markdown(&fleet));
            println!();
            print!("{}", credflow_sim::scopes::pacing_markdown(&pacing));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
