//! Delivery throughput and latency of the chat server, end to end over real WebSockets.
//!
//! The server binary runs as a child process on loopback (`--send-rate 0`), once per store
//! (`memory`, and `fjall` in a fresh temporary directory). N sender/receiver pairs each hold
//! their own WebSocket: sender user 2k+1 sends to receiver user 2k+2. The program measures
//!
//! * delivered messages per second: `msg` frames arriving at the receivers during the
//!   measurement window, divided by its length;
//! * send→delivery latency (to the receiver's `msg`) and send→sent latency (to the
//!   sender's `sent`, which comes only after durable storage), in an HDR histogram;
//! * the server's CPU time per delivered message and its peak RSS, and the client's own
//!   CPU, so one can tell whether the load generator rather than the server is the limit.
//!
//! Phase 1 is closed loop (each sender keeps `--window` sends unanswered at most and sends
//! again as soon as one is answered) and finds the maximum rate; latency is measured from
//! the actual send. Phase 2 is an open model at half the rate phase 1 reached: sends are
//! scheduled by the clock and latency is measured from the *scheduled* time, so a stall
//! that delays sends shows up in the figures instead of being hidden by it. With
//! `--rate R` only one open-model phase at R runs.
//!
//! Correctness is checked on the way: every message reaches its receiver exactly once and
//! in send order, with `seq` and `useq` growing by exactly 1; any violation is printed.
//! The performance targets (≥ 60K msg/s with fjall, ≥ 100K msg/s with memory, p99
//! send→delivery ≤ 20 ms at half that rate) are reported as met or not; the program does
//! not fail on them.
//!
//! `cargo bench -p chat-server --bench delivery -- --help` lists the flags.

mod clock;
#[path = "../common/mod.rs"]
mod common;
mod pairs;
mod phase;
mod table;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};

pub(crate) use self::clock::*;
pub(crate) use self::pairs::*;
pub(crate) use self::phase::*;
pub(crate) use self::table::*;

/// Delivered messages per second the targets ask for, by store.
pub(crate) const TARGET_MEMORY: f64 = 100_000.0;
pub(crate) const TARGET_FJALL: f64 = 60_000.0;
/// p99 send→delivery the target asks for at half the maximum rate, in milliseconds.
pub(crate) const TARGET_P99_MS: f64 = 20.0;
/// Largest latency the histograms hold (60 s), in microseconds.
pub(crate) const HIST_MAX_US: u64 = 60_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StoreKind {
    /// In-memory store.
    Memory,
    /// Embedded durable store in a fresh temporary directory.
    Fjall,
}

impl StoreKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Fjall => "fjall",
        }
    }

    pub(crate) fn target(self) -> f64 {
        match self {
            StoreKind::Memory => TARGET_MEMORY,
            StoreKind::Fjall => TARGET_FJALL,
        }
    }
}

/// Delivery throughput and latency of the chat server over WebSockets on loopback.
///
/// For each store: a closed-loop phase finds the maximum delivered rate, then an
/// open-model phase at half that rate measures latency from the scheduled send times.
/// A fresh server process runs each phase.
#[derive(Parser, Debug)]
#[command(name = "delivery", bin_name = "delivery")]
pub(crate) struct Args {
    /// Stores to measure, in turn (comma-separated): memory, fjall.
    #[arg(long, value_delimiter = ',', default_value = "memory,fjall")]
    pub(crate) stores: Vec<StoreKind>,
    /// Sender/receiver pairs; each of the 2N users holds one WebSocket.
    #[arg(long, default_value_t = 200)]
    pub(crate) pairs: usize,
    /// Length of the measurement window, in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Seconds of load before the measurement window; not counted.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Total send rate in messages per second, spread evenly over the pairs (open model:
    /// latency from the scheduled send time). 0 = closed loop as fast as possible, then a
    /// second, open-model phase at half the rate reached.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Size of each message body, in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) body_bytes: usize,
    /// Sends a sender keeps unanswered at most. The server answers a connection's frames
    /// one at a time, so a larger window only queues on the socket: parallelism comes
    /// from the pairs.
    #[arg(long, default_value_t = 4)]
    pub(crate) window: usize,
    /// Seconds to wait after the window for outstanding answers and deliveries; an open
    /// phase that fell behind its schedule also stops sending then.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) drain: f64,
    /// Skip the open-model phase at half the closed-loop rate.
    #[arg(long)]
    pub(crate) no_half_rate: bool,
    /// Directory in which the fjall store's temporary data directories are made.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Worker threads of the client's runtime (default: one per core).
    #[arg(long)]
    pub(crate) client_threads: Option<usize>,
    /// Also print, per second of the phase, messages delivered, the share over 20 ms and
    /// the worst send→delivery latency (by scheduled send time).
    #[arg(long)]
    pub(crate) timeline: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub(crate) bench: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.pairs == 0 || args.window == 0 || args.body_bytes == 0 {
        bail!("--pairs, --window and --body-bytes must be at least 1");
    }
    // The server closes a connection whose frame exceeds 64 KiB.
    if args.body_bytes > 60_000 {
        bail!("--body-bytes must be at most 60000 (a frame must stay under 64 KiB)");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    if !(0.0..=600.0).contains(&args.warmup) || !(0.0..=600.0).contains(&args.drain) {
        bail!("--warmup and --drain must be in [0, 600] seconds");
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        bail!("--rate must be 0 or a positive number");
    }
    // Each pair holds two client sockets and the server two more; stay below the limits.
    if args.pairs > 8000 {
        bail!("--pairs must be at most 8000 (two sockets per pair within the open-file limit)");
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.client_threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(common::unless_interrupted(run(&args)))
}

async fn run(args: &Args) -> Result<()> {
    let base = PhaseSpec {
        rate: args.rate,
        pairs: args.pairs,
        window: args.window,
        body_bytes: args.body_bytes,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        drain: Duration::from_secs_f64(args.drain),
    };
    println!(
        "delivery: {} pairs, {} B bodies, window {}, {:.1} s warm-up + {:.1} s measured per phase, \
         {} cores, server {}",
        args.pairs,
        args.body_bytes,
        args.window,
        args.warmup,
        args.duration,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        env!("CARGO_BIN_EXE_chat-server")
    );
    let mut verdicts = Vec::new();
    for &store in &args.stores {
        let mut results = Vec::new();
        println!("[{}] phase 1: {} ...", store.name(), base.label());
        let first = run_phase(store, base, args)
            .await
            .with_context(|| format!("store {}: {}", store.name(), base.label()))?;
        let max_rate = first.rate();
        results.push(first);
        if args.rate == 0.0 && !args.no_half_rate && max_rate > 0.0 {
            let half = PhaseSpec {
                rate: max_rate / 2.0,
                ..base
            };
            println!("[{}] phase 2: {} ...", store.name(), half.label());
            let r = run_phase(store, half, args)
                .await
                .with_context(|| format!("store {}: {}", store.name(), half.label()))?;
            results.push(r);
        }
        print_table(store, &results, args.timeline);

        let closed = &results[0];
        if args.rate == 0.0 {
            let target = store.target();
            verdicts.push(format!(
                "{}: max delivered rate {:.0} msg/s vs target ≥ {:.0}: {}",
                store.name(),
                closed.rate(),
                target,
                if closed.rate() >= target {
                    "met"
                } else {
                    "NOT met"
                }
            ));
        }
        if let Some(open) = results.iter().find(|r| r.spec.rate > 0.0) {
            let p99 = PhaseResult::p_ms(&open.send_to_delivery, 0.99);
            verdicts.push(format!(
                "{}: p99 send→delivery {} ms at {:.0} msg/s vs target ≤ {TARGET_P99_MS} ms: {}",
                store.name(),
                fmt_ms(p99),
                open.spec.rate,
                if p99 <= TARGET_P99_MS {
                    "met"
                } else {
                    "NOT met"
                }
            ));
        }
    }
    println!();
    println!("targets:");
    for v in verdicts {
        println!("  {v}");
    }
    Ok(())
}
