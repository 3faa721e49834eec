//! `credflow-sim`: runs every scenario with every strategy and prints the comparison.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use credflow_sim::{Report, Strategy, chart, report, run, scenario};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Markdown,
    Json,
}

/// Fleet simulator: naive, the reference guide, credflow and credflow in fleet mode, same seed,
/// same workload.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Shorter runs: every scenario in a few seconds.
    #[arg(long)]
    quick: bool,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// Only these scenarios (repeatable): steady-overload, startup-burst, token-expiry,
    /// token-outage, daily-limit.
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Also run the guide with one SDK client per worker (its "trap").
    #[arg(long)]
    trap: bool,
    /// Write one SVG chart per scenario into this directory.
    #[arg(long, value_name = "DIR")]
    svg: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut scenarios = scenario::all(args.quick);
    if !args.scenarios.is_empty() {
        if let Some(unknown) =
            args.scenarios.iter().find(|n| !scenarios.iter().any(|s| s.name == n.as_str()))
        {
            eprintln!("unknown scenario {unknown:?}");
            return ExitCode::from(2);
        }
        scenarios.retain(|s| args.scenarios.iter().any(|n| n == s.name));
    }
    let mut strategies = vec![Strategy::Naive, Strategy::Guide];
    if args.trap {
        strategies.push(Strategy::GuideTrap);
    }
    strategies.extend([Strategy::Credflow, Strategy::CredflowShared]);
    let mut reports: Vec<Report> = Vec::new();
    for s in &scenarios {
        for &strategy in &strategies {
            match run(s, strategy, args.seed) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    eprintln!("{}: {e}", s.name);
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if let Some(dir) = &args.svg {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        for s in &scenarios {
            let rows: Vec<&Report> = reports.iter().filter(|r| r.scenario == s.name).collect();
            let path = dir.join(format!("{}.svg", s.name));
            let written = chart::svg(s, &rows)
                .and_then(|svg| std::fs::write(&path, svg).map_err(|e| e.to_string()));
            if let Err(e) = written {
                eprintln!("cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    match args.format {
        Format::Markdown => print!("{}", report::markdown(&scenarios, &reports)),
        Format::Json => {
            let all: Vec<_> = reports.iter().map(Report::to_json).collect();
            println!("{}", serde_json::Value::Array(all));
        }
    }
    ExitCode::SUCCESS
}
