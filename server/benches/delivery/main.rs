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
//! The latency targets (p99 send→delivery ≤ 5 ms with memory, at 11,500 msg/s; ≤ 10 ms
//! with fjall at half its maximum rate, and no second of the phase with a message over
//! 50 ms) are reported as met or not; the program does not fail on them. The throughput
//! targets are ratios to Centrifugo on one core, which this program cannot measure:
//! `cargo bench -p simulator --bench targets` does, beside every other target.
//!
//! `--json FILE` writes every phase's figures, per-second timeline included, as JSON.
//!
//! `cargo bench -p chat-server --bench delivery -- --help` lists the flags.

mod clock;
#[path = "../common/mod.rs"]
mod common;
mod json;
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

/// p99 send→delivery the targets ask for, in milliseconds: memory at 11,500 msg/s, fjall
/// at half its maximum rate.
pub(crate) const TARGET_P99_MS_MEMORY: f64 = 5.0;
pub(crate) const TARGET_P99_MS_FJALL: f64 = 10.0;
/// No second of a fjall open phase may deliver a message later than this (milliseconds).
pub(crate) const TARGET_WORST_SECOND_MS: f64 = 50.0;
/// The timeline counts the deliveries over this latency, per second (milliseconds).
pub(crate) const TIMELINE_MARK_MS: f64 = 10.0;
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

    /// The p99 send→delivery target of an open phase, in milliseconds.
    pub(crate) fn p99_target_ms(self) -> f64 {
        match self {
            StoreKind::Memory => TARGET_P99_MS_MEMORY,
            StoreKind::Fjall => TARGET_P99_MS_FJALL,
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
    /// Also print, per second of the phase, messages delivered, the share over 10 ms and
    /// the worst send→delivery latency (by scheduled send time).
    #[arg(long)]
    pub(crate) timeline: bool,
    /// Also write every phase's figures, the per-second timeline included, as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
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
    let mut json_stores = Vec::new();
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
        verdicts.extend(store_verdicts(store, &results));
        if args.json.is_some() {
            json_stores.push(json::store_json(store, &results));
        }
    }
    println!();
    println!("targets:");
    for v in verdicts {
        println!("  {v}");
    }
    if let Some(path) = &args.json {
        json::write(path, args, json_stores)?;
        println!("figures as JSON: {}", path.display());
    }
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// One store's targets met or not, as printed lines.
fn store_verdicts(store: StoreKind, results: &[PhaseResult]) -> Vec<String> {
    let mut out = Vec::new();
    let closed = &results[0];
    if closed.spec.rate == 0.0 {
        out.push(format!(
            "{}: max delivered rate {:.0} msg/s (its targets are ratios to Centrifugo on one core)",
            store.name(),
            closed.rate(),
        ));
    }
    if let Some(open) = results.iter().find(|r| r.spec.rate > 0.0) {
        let p99 = PhaseResult::p_ms(&open.send_to_delivery, 0.99);
        let target = store.p99_target_ms();
        let at = match store {
            StoreKind::Memory => "at 11,500 msg/s",
            StoreKind::Fjall => "at half the maximum rate",
        };
        out.push(format!(
            "{}: p99 send→delivery {} ms at {:.0} msg/s vs target ≤ {target} ms {at}: {}",
            store.name(),
            fmt_ms(p99),
            open.spec.rate,
            met(p99 <= target)
        ));
        if store == StoreKind::Fjall {
            let from = open.spec.warmup.as_secs_f64();
            let to = from + open.spec.duration.as_secs_f64();
            let worst = open
                .timeline
                .iter()
                .enumerate()
                .filter(|(i, _)| (*i as f64) >= from && (*i as f64) < to)
                .map(|(_, b)| b.max_us as f64 / 1000.0)
                .fold(0.0, f64::max);
            out.push(format!(
                "{}: worst second's max send→delivery {} ms vs target ≤ {TARGET_WORST_SECOND_MS} ms: {}",
                store.name(),
                fmt_ms(worst),
                met(worst <= TARGET_WORST_SECOND_MS)
            ));
        }
    }
    out
}
