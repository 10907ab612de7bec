//! `chat-sim`: run chat scenarios against the reference server (or any server speaking the
//! protocol) and gate on the results.

use std::process::ExitCode;

use anyhow::Result;
use chat_sim::cli::{Cli, Command};
use chat_sim::compare::CompareOptions;
use chat_sim::run::RunOptions;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match &cli.command {
        Command::ServeChild(_) => "warn",
        _ => "warn,goose=error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run(a) => {
            let outcome = rt.block_on(chat_sim::run::run(RunOptions {
                scenario: a.scenario,
                out_dir: a.out,
                target: a.target,
                jwt_secret: a.jwt_secret,
                baseline: a.baseline,
                overrides: a.set,
                progress: !a.quiet,
            }))?;
            println!("report: {}", outcome.dir.display());
            if outcome.failures().is_empty() {
                println!(
                    "PASSED: every gate and check of `{}`",
                    outcome.summary.scenario
                );
                Ok(ExitCode::SUCCESS)
            } else {
                for f in outcome.failures() {
                    println!("{f}");
                }
                Ok(ExitCode::from(1))
            }
        }
        Command::Compare(a) => {
            let outcome = rt.block_on(chat_sim::compare::compare(CompareOptions {
                scenario: a.scenario,
                stores: vec![a.stores],
                out_dir: a.out,
                overrides: a.set,
                progress: !a.quiet,
                keep_data: a.keep_data,
            }))?;
            println!("comparison: {}", outcome.dir.display());
            if outcome.failures().is_empty() {
                println!(
                    "PASSED: every backend ran and passed every gate of `{}`",
                    outcome.comparison.scenario
                );
                Ok(ExitCode::SUCCESS)
            } else {
                for f in outcome.failures() {
                    println!("{f}");
                }
                Ok(ExitCode::from(1))
            }
        }
        Command::Check(a) => {
            println!("{}", chat_sim::run::describe(&a.scenario, &a.set)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::ServeChild(o) => {
            rt.block_on(chat_sim::child::serve(o))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => {
            rt.block_on(chat_sim::worker::worker_main())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
