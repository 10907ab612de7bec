//! Every performance target of the project against its measurement, in one run:
//! `cargo bench -p simulator --bench targets -- [--peer-bench DIR] [--quick] [--only|--skip PARTS]`.
//!
//! The targets are ratios and percentiles measured side by side, not timed tests, so this
//! is a program that runs the measurements and prints one table, `target | measured |
//! met?`, with the source of each figure under it; it writes the same as `targets.json`
//! and `targets.md` (and every measurement's raw output) into `--out` (default
//! `reports/targets-<UTC time>/`). It does not fail on a target that is not met: it
//! fails only when it cannot measure. Before the first part it reads, for two seconds,
//! how busy other processes keep the host, and the report's head says so by name
//! ([`host`]): a ratio measured beside a busy process is not this server's.
//!
//! The parts (`--only` / `--skip` take their names):
//!
//! * `sat`, `rate`, `idle`: a neutral load generator that runs this server and Centrifugo
//!   side by side (peerbench; `--peer-bench DIR` or `PEER_BENCH` names its folder) — the
//!   server pinned to one core, so delivered msgs/s are per core; medians of 3
//!   repetitions. Without the folder these rows print "not run (no --peer-bench)".
//! * `fjall-latency`: the server's `delivery` bench, open model with the fjall store at
//!   half the fjall saturation median (without `sat`: after its own closed loop), read
//!   per second from its `--json` output, since the target bounds every second.
//! * `seed-node`, `smoke`: `chat-sim run` of those scenarios; their `summary.json` has
//!   the server's and the simulator's CPU per message, memory per connection and the
//!   fitted cost model.
//! * `node-rate`: peerbench's open model at seed-node's message rate on as many
//!   connections (463 msgs/s, 10,000), against ours-fjall and cf-history: what a
//!   well-known server and a minimal generator cost per message at the design's per-node
//!   load. Rows 3a and 5a carry it as a note ([`node_rate`]); it judges nothing.
//! * `delay`: the smoke scenario and peerbench's open model at the same 200 msgs/s
//!   against one fjall server at the same time: how much latency the simulator adds.
//!
//! The server runs as the simulator runs it: `chat-sim serve-child` (the server library's
//! `serve`, the code path of `chat-server serve`); `--chat-server PATH` gives peerbench a
//! `chat-server` binary instead.
//!
//! Duration on a 2-core machine: the full run about 14 minutes (measured: sat 2.5, rate
//! 1.5, idle 1.5, fjall-latency 3, seed-node 2.5, node-rate 2, smoke 0.5, delay 0.5),
//! plus building Centrifugo (run.sh, the first time) and the delivery bench (cargo, when
//! stale); `--quick` (one repetition, 5-second windows, 10 for node-rate, a 60-second
//! seed-node) about 5 — measured before node-rate: sat 29 s, rate 14, idle 14,
//! fjall-latency 20, seed-node 100, smoke 23, delay 21. Run nothing else meanwhile:
//! every figure is CPU.

mod figures;
mod host;
mod node_rate;
mod parts;
mod peer;
mod render;
mod run_delay;
mod run_local;
mod run_peer;
mod verdict;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use chat_sim::clock::{unix_ms, utc_string};
use clap::Parser;

use crate::parts::Part;
use crate::render::{PartRun, Report};
use crate::run_peer::PeerBench;
use crate::verdict::{FIXED_RATE, Figures, IDLE_CONNS};

/// How long the host's load is read before the first part.
const HOST_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// Every performance target against its measurement, printed as one table.
#[derive(Parser, Debug)]
#[command(name = "targets", bin_name = "targets")]
struct Args {
    /// The folder of the neutral load generator that runs this server and Centrifugo
    /// side by side (peerbench: run.sh, main.go).
    #[arg(long, env = "PEER_BENCH", value_name = "DIR")]
    peer_bench: Option<PathBuf>,
    /// Where the report and every measurement's output go [default:
    /// reports/targets-<UTC time>/].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Run only these parts (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "PARTS")]
    only: Vec<Part>,
    /// Skip these parts (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "PARTS")]
    skip: Vec<Part>,
    /// Shorter runs for a developer: one repetition, 5-second windows, a 60-second
    /// seed-node. The figures are noisier.
    #[arg(long)]
    quick: bool,
    /// A `chat-server` binary for peerbench's runs instead of `chat-sim serve-child`.
    #[arg(long, env = "CHAT_SERVER", value_name = "PATH")]
    chat_server: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    // `cargo test --benches` runs this program with no arguments at all (`cargo bench`
    // passes --bench): it is a half-hour measurement, not a test, so say so and stop.
    if std::env::args_os().len() == 1 {
        println!("targets: a benchmark, not a test: cargo bench -p simulator --bench targets");
        return Ok(());
    }
    let args = Args::parse();
    let parts = parts::chosen(&args.only, &args.skip).map_err(anyhow::Error::msg)?;
    let started = unix_ms();
    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            let stamp: String = utc_string(started)
                .chars()
                .filter(|c| *c != '-' && *c != ':')
                .collect();
            run_local::workspace()
                .join("reports")
                .join(format!("targets-{stamp}"))
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let peer = match &args.peer_bench {
        Some(dir) => Some(PeerBench::new(
            dir,
            args.chat_server.as_deref(),
            &run_local::chat_sim(),
        )?),
        None => None,
    };
    eprintln!(
        "targets: parts {}; output in {}",
        parts
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", "),
        out.display()
    );

    // Before anything of ours runs: what else is using the machine.
    let host = host::sample(HOST_WINDOW);
    // The note for the terminal, without the Markdown report's emphasis.
    let host_line = host.as_ref().map(|h| host::note(h).replace("**", ""));
    if let Some(line) = &host_line {
        eprintln!("targets: {line}");
    }

    let reps = if args.quick { 1 } else { 3 };
    let mut f = Figures {
        sat: Err("not chosen".into()),
        rate: Err("not chosen".into()),
        idle: Err("not chosen".into()),
        fjall_latency: Err("not chosen".into()),
        fjall_rate: Err("not chosen".into()),
        seed_node: Err("not chosen".into()),
        node_rate: Err("not chosen".into()),
        smoke: Err("not chosen".into()),
        delay: Err("not chosen".into()),
        reps,
    };
    let mut runs = Vec::new();
    for part in parts {
        let t = Instant::now();
        let outcome = match (part.needs_peer_bench(), &peer) {
            (true, None) => Err("no --peer-bench".to_string()),
            _ => measure(part, &args, peer.as_ref(), &out, &mut f).map_err(|e| format!("{e:#}")),
        };
        let secs = t.elapsed().as_secs_f64();
        let text = match &outcome {
            Ok(()) => "ok".to_string(),
            Err(e) if e == "no --peer-bench" => format!("not run: {e}"),
            Err(e) => {
                eprintln!("targets: {} failed: {e}", part.name());
                format!("failed: {e}")
            }
        };
        eprintln!("targets: {} {text} ({secs:.0} s)", part.name());
        runs.push(PartRun {
            part,
            outcome: text,
            secs,
        });
        if let Err(e) = outcome {
            let why = if e == "no --peer-bench" {
                e
            } else {
                format!("{} failed", part.name())
            };
            set(&mut f, part, why);
        }
    }

    let report = Report {
        started_at: utc_string(started),
        finished_at: utc_string(unix_ms()),
        quick: args.quick,
        peer_bench: args.peer_bench.as_ref().map(|p| p.display().to_string()),
        host,
        parts: runs,
        rows: verdict::rows(&f),
    };
    let table = render::text(&report.rows);
    println!();
    if let Some(line) = &host_line {
        println!("{line}\n");
    }
    println!("{table}");
    write(
        &out.join("targets.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    write(&out.join("targets.md"), &render::markdown(&report))?;
    println!("written: {}/targets.{{json,md}}", out.display());
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Records why a part has no figures where the targets read it.
fn set(f: &mut Figures, part: Part, why: String) {
    match part {
        Part::Sat => f.sat = Err(why),
        Part::Rate => f.rate = Err(why),
        Part::Idle => f.idle = Err(why),
        Part::FjallLatency => f.fjall_latency = Err(why),
        Part::SeedNode => f.seed_node = Err(why),
        Part::NodeRate => f.node_rate = Err(why),
        Part::Smoke => f.smoke = Err(why),
        Part::Delay => f.delay = Err(why),
    }
}

/// run.sh's knobs for one mode.
fn peer_env(args: &Args, configs: &str, mode: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("CONFIGS", configs.to_string()),
        ("MODES", mode.to_string()),
        ("REPS", if args.quick { "1" } else { "3" }.to_string()),
    ];
    if args.quick {
        env.push(("DURATION", "5".into()));
        env.push(("WARMUP", "1".into()));
    }
    env
}

/// Runs one part and stores its figures in `f`; later parts read earlier ones (the fjall
/// latency runs at half the saturation `sat` measured).
fn measure(
    part: Part,
    args: &Args,
    peer: Option<&PeerBench>,
    out: &Path,
    f: &mut Figures,
) -> Result<()> {
    let peer = || peer.context("no --peer-bench");
    match part {
        Part::Sat => {
            let env = peer_env(args, "ours-fjall cf-history ours-memory cf-memory", "sat");
            f.sat = Ok(peer()?.run(&out.join("peer-sat"), &env)?);
        }
        Part::Rate => {
            let mut env = peer_env(args, "ours-memory cf-memory", "rate");
            env.push(("RATE", format!("{FIXED_RATE:.0}")));
            f.rate = Ok(peer()?.run(&out.join("peer-rate"), &env)?);
        }
        Part::Idle => {
            let mut env = peer_env(args, "ours-memory ours-fjall", "idle");
            let (steps, settle) = if args.quick {
                (format!("{IDLE_CONNS}"), "3")
            } else {
                (format!("5000,{IDLE_CONNS}"), "5")
            };
            env.push(("IDLE_CONNS", steps));
            env.push(("SETTLE", settle.into()));
            f.idle = Ok(peer()?.run(&out.join("peer-idle"), &env)?);
        }
        Part::FjallLatency => {
            // Half the fjall saturation median, when `sat` measured it; otherwise the
            // delivery bench finds its own saturation first.
            let rate = match &f.sat {
                Ok(runs) => Some(
                    peer::median_of(runs, "ours-fjall", "sat", |r| r.msgs_per_s)
                        .context("the sat results hold no ours-fjall figure")?
                        .value
                        / 2.0,
                ),
                Err(_) => None,
            };
            f.fjall_latency = Ok(run_local::delivery(
                &out.join("delivery-fjall.json"),
                rate,
                args.quick,
            )?);
            // Both servers at the same rate, as peerbench runs them: whether the rate is
            // within what either carries in an open model.
            f.fjall_rate = match (rate, peer()) {
                (Some(r), Ok(p)) => {
                    let mut env = peer_env(args, "ours-fjall cf-history", "rate");
                    env.push(("RATE", format!("{r:.0}")));
                    p.run(&out.join("peer-rate-fjall"), &env)
                        .map_err(|e| format!("peerbench rate beside 2b failed: {e:#}"))
                }
                (None, _) => Err("no sat figure: no rate for peerbench".into()),
                (_, Err(e)) => Err(format!("{e:#}")),
            };
        }
        Part::SeedNode => {
            let sets: Vec<String> = if args.quick {
                ["run.duration_secs=60", "run.drain_secs=5"]
                    .iter()
                    .flat_map(|s| ["--set".to_string(), s.to_string()])
                    .collect()
            } else {
                Vec::new()
            };
            f.seed_node = Ok(run_local::scenario(&out.join("sim"), "seed-node", &sets)?);
        }
        Part::NodeRate => {
            let file = run_local::workspace().join("scenarios/seed-node.toml");
            let scenario = chat_sim::scenario::Scenario::load(&file, &[])?;
            let (rate, conns) = node_rate::plan(&scenario).map_err(anyhow::Error::msg)?;
            // Longer windows than the other modes': at a few hundred messages a second a
            // 10-second window holds too few for a steady CPU figure.
            let (duration, warmup) = if args.quick { ("10", "2") } else { ("15", "3") };
            let mut env = peer_env(args, "ours-fjall cf-history", "rate");
            env.retain(|(k, _)| !matches!(*k, "DURATION" | "WARMUP"));
            env.extend([
                ("RATE", format!("{rate:.0}")),
                ("PAIRS", (conns / 2).to_string()),
                ("DURATION", duration.into()),
                ("WARMUP", warmup.into()),
            ]);
            let runs = peer()?.run(&out.join("peer-node-rate"), &env)?;
            f.node_rate = Ok(node_rate::NodeRate { rate, conns, runs });
        }
        Part::Smoke => {
            f.smoke = Ok(run_local::scenario(&out.join("sim"), "smoke", &[])?);
        }
        Part::Delay => {
            let bin = peer()?.peerbench()?;
            f.delay = Ok(run_delay::run(&out.join("delay"), &bin)?);
        }
    }
    Ok(())
}
