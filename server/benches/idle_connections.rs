//! Server memory per idle WebSocket connection.
//!
//! Most of a chat server's connections are idle most of the time, so the memory each one
//! holds decides how many users a machine can keep online. This program starts the server
//! binary as a child process on loopback (memory store), reads its resident memory
//! (VmRSS) once it listens, then opens authenticated WebSocket connections, each for a
//! distinct user, that send nothing, in steps (`--counts 1000,10000`). After each step
//! settles it reads the RSS again and prints the growth over the baseline per connection.
//!
//! The design target is at most 5 KiB of server memory per idle connection (for scale:
//! Centrifugo is reported at 30–50 KB, a tuned Go server at about 8 KB); the program says
//! whether it is met and does not fail on it. The client's own RSS is printed for
//! reference.
//!
//! `cargo bench -p chat-server --bench idle_connections -- --help` lists the flags.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::{Tokens, Ws, human_bytes};

/// Server memory per idle connection the design allows, in bytes.
const TARGET_BYTES_PER_CONN: f64 = 5.0 * 1024.0;
/// Connections checked with a `ping` at the end, to show they are live sessions.
const PING_SAMPLE: usize = 100;

/// Server memory per idle authenticated WebSocket connection.
///
/// Starts the server (memory store), reads its RSS, opens idle connections in steps
/// and reads the RSS after each step.
#[derive(Parser, Debug)]
#[command(name = "idle_connections", bin_name = "idle_connections")]
struct Args {
    /// Total connections after each step, increasing (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    counts: Vec<usize>,
    /// Connections opened concurrently.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Seconds to wait after a step before reading the RSS.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Client read buffer per connection, in bytes.
    #[arg(long, default_value_t = 4096)]
    client_buffer: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The soft open-file limit of this process.
fn open_file_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.counts.is_empty() || args.counts.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--counts must be increasing, e.g. 1000,10000");
    }
    if args.counts[0] == 0 {
        bail!("--counts must be positive");
    }
    let max = *args.counts.last().unwrap_or(&0);
    // One socket per connection here (the server has its own limit); keep room for the rest.
    let limit = open_file_limit().unwrap_or(1024);
    if max + 256 > limit {
        bail!("{max} connections do not fit this process's open-file limit of {limit}");
    }
    if !(0.0..=600.0).contains(&args.settle) || args.batch == 0 || args.client_buffer < 256 {
        bail!("--settle must be in [0, 600], --batch ≥ 1, --client-buffer ≥ 256");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(common::unless_interrupted(run(&args)))
}

async fn run(args: &Args) -> Result<()> {
    let max = *args.counts.last().unwrap_or(&0);
    let mut server = common::start_server(&[
        "--store".into(),
        "memory".into(),
        "--max-connections".into(),
        (max + 1000).to_string(),
        "--shutdown-grace".into(),
        "5".into(),
    ])?;
    let settle = Duration::from_secs_f64(args.settle);
    tokio::time::sleep(settle).await;
    let base = server.rss_bytes()?;
    let client_base = common::self_rss_bytes()?;
    println!(
        "idle_connections: server pid {} on {}, memory store; baseline server RSS {}, client RSS {}",
        server.pid,
        server.addr,
        human_bytes(base as f64),
        human_bytes(client_base as f64)
    );

    let tokens = Tokens::new()?;
    let mut conns: Vec<Ws> = Vec::with_capacity(max);
    // (connections, server RSS, client RSS, seconds to open the step)
    let mut rows: Vec<(usize, u64, u64, f64)> = Vec::new();
    for &count in &args.counts {
        let start = Instant::now();
        let from = conns.len();
        let mut jobs = Vec::with_capacity(count - from);
        for i in from..count {
            let user = i as u64 + 1;
            let token = tokens.issue(user, "idle")?;
            let addr = server.addr;
            let buffer = args.client_buffer;
            jobs.push(async move {
                common::connect(addr, &token, buffer)
                    .await
                    .with_context(|| format!("connection {i} (user {user})"))
            });
        }
        let opened: Vec<Result<Ws>> = futures_util::stream::iter(jobs)
            .buffer_unordered(args.batch)
            .collect()
            .await;
        let mut failures = 0usize;
        let mut first_failure = None;
        for c in opened {
            match c {
                Ok(ws) => conns.push(ws),
                Err(e) => {
                    failures += 1;
                    first_failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_failure {
            return Err(e.context(format!("{failures} of {} connections failed", count - from)));
        }
        let took = start.elapsed().as_secs_f64();
        tokio::time::sleep(settle).await;
        if let Some(status) = server.exited() {
            bail!("the server exited while holding {count} connections: {status}");
        }
        let rss = server.rss_bytes()?;
        let client = common::self_rss_bytes()?;
        println!(
            "  {count} connections open ({} new in {took:.2} s): server RSS {}",
            count - from,
            human_bytes(rss as f64)
        );
        rows.push((count, rss, client, took));
    }

    // The connections are live, authenticated sessions: a sample answers `ping`.
    let step = (conns.len() / PING_SAMPLE).max(1);
    let mut answered = 0usize;
    let mut asked = 0usize;
    for ws in conns.iter_mut().step_by(step).take(PING_SAMPLE) {
        asked += 1;
        ws.send(Message::text(r#"{"type":"ping"}"#)).await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        if let Ok(Some(Ok(Message::Text(t)))) = reply
            && t.as_str().contains("\"pong\"")
        {
            answered += 1;
        }
    }
    let server_max = server.max_rss_bytes()?;
    drop(conns);
    let (status, killed) = server.terminate(Duration::from_secs(15))?;

    println!();
    println!(
        "{:>11} {:>12} {:>12} {:>12} {:>14} {:>12} {:>8}",
        "connections",
        "server RSS",
        "delta",
        "bytes/conn",
        "marginal B/conn",
        "client RSS",
        "open s"
    );
    println!(
        "{:>11} {:>12} {:>12} {:>12} {:>14} {:>12} {:>8}",
        0,
        human_bytes(base as f64),
        "-",
        "-",
        "-",
        human_bytes(client_base as f64),
        "-"
    );
    let mut prev = (0usize, base);
    for &(count, rss, client, took) in &rows {
        let delta = rss as f64 - base as f64;
        let marginal = (rss as f64 - prev.1 as f64) / (count - prev.0) as f64;
        println!(
            "{:>11} {:>12} {:>12} {:>12.0} {:>14.0} {:>12} {:>8.2}",
            count,
            human_bytes(rss as f64),
            human_bytes(delta),
            delta / count as f64,
            marginal,
            human_bytes(client as f64),
            took
        );
        prev = (count, rss);
    }
    println!(
        "(delta = server RSS over the baseline before any connection; marginal = growth per \
         connection since the previous step)"
    );
    println!(
        "server peak RSS {}; {answered} of {asked} sampled connections answered ping; server {}",
        human_bytes(server_max as f64),
        if killed {
            format!("did not stop within 15 s of SIGTERM: killed ({status})")
        } else if status.success() {
            "stopped cleanly".to_string()
        } else {
            format!("exited with {status}")
        }
    );
    if let Some(&(count, rss, _, _)) = rows.last() {
        let per = (rss as f64 - base as f64) / count as f64;
        println!(
            "target: ≤ {:.0} bytes (5 KiB) of server memory per idle connection: {:.0} bytes at \
             {count} connections: {}",
            TARGET_BYTES_PER_CONN,
            per,
            if per <= TARGET_BYTES_PER_CONN {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    if answered < asked {
        bail!(
            "{} of {asked} sampled connections did not answer ping",
            asked - answered
        );
    }
    Ok(())
}
