//! `chat-sim`: run chat scenarios against the reference server (or any server speaking the
//! protocol) and gate on the results.

use std::process::ExitCode;

use anyhow::Result;
use chat_sim::capacity::{CapacityOptions, ValidateOptions};
use chat_sim::cli::{Cli, Command};
use chat_sim::compare::CompareOptions;
use chat_sim::run::RunOptions;
use clap::Parser;

/// The allocator of the load and of the server child: see the `mimalloc` feature.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    chat_server::allocator::tune();
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
    chat_sim::set_load_threads(cli.threads);
    let rt = match &cli.command {
        Command::ServeChild(o) => o.runtime()?,
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if cli.threads > 0 {
                b.worker_threads(cli.threads);
            }
            b.enable_all().build()?
        }
    };
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
                dir_name: None,
                dashboard: a.dashboard,
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
        Command::Capacity(a) => {
            let outcome = rt.block_on(chat_sim::capacity::capacity(CapacityOptions {
                scenario: a.scenario,
                out_dir: a.out,
                overrides: a.set,
                progress: !a.quiet,
            }))?;
            let r = &outcome.report;
            println!("capacity: {}", outcome.dir.display());
            for s in &r.searches {
                println!(
                    "{} search: highest passing {} {} ({} messages/s, {} connections), limited by {}",
                    s.grow.name(),
                    s.highest_passing_level
                        .map_or("none".to_owned(), |l| format!("{l:.0}")),
                    s.unit,
                    s.messages_per_sec
                        .map_or("—".to_owned(), |v| format!("{v:.0}")),
                    s.connections.map_or("—".to_owned(), |c| c.to_string()),
                    s.limited_by.key()
                );
            }
            for v in &r.validations {
                println!(
                    "validation {} from {}: largest error {}",
                    v.target_dir,
                    v.base_dir,
                    v.max_abs_error
                        .map_or("—".to_owned(), |e| format!("{:.1} %", e * 100.0))
                );
            }
            if r.failures.is_empty() {
                println!("PASSED: capacity of `{}`", r.scenario);
                Ok(ExitCode::SUCCESS)
            } else {
                for f in &r.failures {
                    println!("{f}");
                }
                Ok(ExitCode::from(1))
            }
        }
        Command::Validate(a) => {
            let outcome = rt.block_on(chat_sim::capacity::validate_plan(ValidateOptions {
                scenario: a.scenario,
                out_dir: a.out,
                overrides: a.set,
                grow: a.grow,
                factor: a.factor,
                progress: !a.quiet,
            }))?;
            println!("validation: {}", outcome.dir.display());
            let v = &outcome.validation;
            for f in &v.figures {
                println!(
                    "{}: predicted {:.4e}, measured {:.4e} {}, error {:+.1} %",
                    f.figure,
                    f.predicted,
                    f.measured,
                    f.unit,
                    f.error * 100.0
                );
            }
            if v.within_target {
                println!("PASSED: every prediction within 15 %");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("VALIDATION FAILED: a prediction is off by more than 15 %");
                Ok(ExitCode::from(1))
            }
        }
        Command::Scale(a) => {
            let outcome =
                rt.block_on(chat_sim::scaling::scale(chat_sim::scaling::ScaleOptions {
                    scenario: a.scenario,
                    nodes: a.nodes,
                    out_dir: a.out,
                    overrides: a.set,
                    progress: !a.quiet,
                }))?;
            println!("scaling: {}", outcome.dir.display());
            let sc = &outcome.scaling;
            for st in &sc.steps {
                println!(
                    "{} node(s): {:.0} messages/s ({:.0} per node), {} µs CPU per message, efficiency {}",
                    st.nodes,
                    st.messages_per_sec,
                    st.messages_per_sec_per_node,
                    st.cpu_us_per_message
                        .map_or("—".to_owned(), |v| format!("{v:.0}")),
                    st.cpu_efficiency
                        .map_or("—".to_owned(), |v| format!("{v:.2}")),
                );
            }
            if sc.steps.iter().all(|s| s.passed) {
                println!("PASSED: every step passed its gates and checks");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("SCALING FAILED: a step failed a gate or check (see its report)");
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
