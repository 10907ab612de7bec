//! One phase against a fresh server process: connect the pairs, run them, and gather
//! throughput, latency, CPU and memory.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

use crate::common::{ServerProcess, Tokens, Ws};

use crate::*;

/// Everything one phase measured.
pub(crate) struct PhaseResult {
    pub(crate) spec: PhaseSpec,
    pub(crate) sent_in_window: u64,
    pub(crate) attempted: u64,
    pub(crate) acked: u64,
    pub(crate) errors: u64,
    pub(crate) unacked: u64,
    pub(crate) behind: u64,
    pub(crate) delivered: u64,
    pub(crate) delivered_in_window: u64,
    pub(crate) send_to_delivery: Histogram<u64>,
    pub(crate) actual_to_delivery: Histogram<u64>,
    pub(crate) send_to_sent: Histogram<u64>,
    pub(crate) send_lag: Histogram<u64>,
    pub(crate) timeline: Vec<Second>,
    pub(crate) server_cpu_s: f64,
    /// CPU seconds over the window by server thread name.
    pub(crate) server_threads: Vec<(String, f64)>,
    pub(crate) client_cpu_s: f64,
    /// The whole machine's busy and iowait CPU seconds over the window.
    pub(crate) machine_busy_s: f64,
    pub(crate) machine_iowait_s: f64,
    pub(crate) server_max_rss: u64,
    pub(crate) client_max_rss: u64,
    pub(crate) lost: u64,
    pub(crate) violations: Violations,
    pub(crate) problems: Vec<String>,
    pub(crate) server_exit: String,
}

impl PhaseResult {
    pub(crate) fn window_secs(&self) -> f64 {
        self.spec.duration.as_secs_f64()
    }

    pub(crate) fn rate(&self) -> f64 {
        self.delivered_in_window as f64 / self.window_secs()
    }

    pub(crate) fn server_cpu_us_per_msg(&self) -> f64 {
        if self.delivered_in_window == 0 {
            return f64::NAN;
        }
        self.server_cpu_s * 1e6 / self.delivered_in_window as f64
    }

    pub(crate) fn p_ms(h: &Histogram<u64>, q: f64) -> f64 {
        if h.is_empty() {
            return f64::NAN;
        }
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

pub(crate) async fn connect_pairs(server: &ServerProcess, pairs: usize) -> Result<Vec<(Ws, Ws)>> {
    let tokens = Tokens::new()?;
    let addr = server.addr;
    let mut jobs = Vec::with_capacity(pairs);
    for k in 0..pairs as u64 {
        let s = tokens.issue(2 * k + 1, "bench")?;
        let r = tokens.issue(2 * k + 2, "bench")?;
        jobs.push(async move {
            let s = common::connect(addr, &s, 64 * 1024)
                .await
                .with_context(|| format!("sender {}", 2 * k + 1))?;
            let r = common::connect(addr, &r, 64 * 1024)
                .await
                .with_context(|| format!("receiver {}", 2 * k + 2))?;
            anyhow::Ok((s, r))
        });
    }
    futures_util::stream::iter(jobs)
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

pub(crate) async fn run_phase(
    store: StoreKind,
    spec: PhaseSpec,
    args: &Args,
) -> Result<PhaseResult> {
    let data_dir = match store {
        StoreKind::Memory => None,
        StoreKind::Fjall => Some(match &args.data_dir {
            Some(d) => tempfile::Builder::new()
                .prefix("chat-bench-")
                .tempdir_in(d)?,
            None => tempfile::Builder::new().prefix("chat-bench-").tempdir()?,
        }),
    };
    let store_arg = match &data_dir {
        None => "memory".to_string(),
        Some(d) => format!("fjall:{}", d.path().join("data").display()),
    };
    let mut server = common::start_server(&[
        "--store".into(),
        store_arg,
        "--send-rate".into(),
        "0".into(),
        "--max-body-bytes".into(),
        spec.body_bytes.max(4096).to_string(),
        "--shutdown-grace".into(),
        "5".into(),
    ])?;
    let conns = connect_pairs(&server, spec.pairs).await?;

    let from_us = spec.warmup.as_micros() as u64;
    let to_us = from_us + spec.duration.as_micros() as u64;
    let clock = Arc::new(Clock {
        // A short lead lets every task be spawned before the first send.
        t0: Instant::now() + Duration::from_millis(100),
        from_us,
        to_us,
        give_up_us: to_us + spec.drain.as_micros() as u64,
    });
    let body: Arc<str> = "x".repeat(spec.body_bytes).into();
    let mut senders = Vec::with_capacity(spec.pairs);
    let mut receivers = Vec::with_capacity(spec.pairs);
    for (k, (s, r)) in conns.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel();
        receivers.push(tokio::spawn(receiver(k, r, clock.clone(), rx)));
        senders.push(tokio::spawn(sender(
            k,
            s,
            spec,
            clock.clone(),
            body.clone(),
            tx,
        )));
    }

    sleep_until(clock.at(clock.from_us)).await;
    let server_cpu0 = server.cpu_secs()?;
    let threads0 = common::thread_cpu_secs(server.pid)?;
    let machine0 = common::machine_cpu_secs()?;
    let client_cpu0 = common::self_cpu_secs()?;
    sleep_until(clock.at(clock.to_us)).await;
    let server_cpu1 = server.cpu_secs()?;
    let threads1 = common::thread_cpu_secs(server.pid)?;
    let machine1 = common::machine_cpu_secs()?;
    let client_cpu1 = common::self_cpu_secs()?;

    let mut r = PhaseResult {
        spec,
        sent_in_window: 0,
        attempted: 0,
        acked: 0,
        errors: 0,
        unacked: 0,
        behind: 0,
        delivered: 0,
        delivered_in_window: 0,
        send_to_delivery: histogram(),
        actual_to_delivery: histogram(),
        send_to_sent: histogram(),
        send_lag: histogram(),
        timeline: Vec::new(),
        server_cpu_s: server_cpu1 - server_cpu0,
        server_threads: threads1
            .into_iter()
            .map(|(name, t1)| {
                let t0 = threads0
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0.0, |(_, t)| *t);
                (name, t1 - t0)
            })
            .filter(|(_, t)| *t > 0.0)
            .collect(),
        client_cpu_s: client_cpu1 - client_cpu0,
        machine_busy_s: machine1.0 - machine0.0,
        machine_iowait_s: machine1.1 - machine0.1,
        server_max_rss: 0,
        client_max_rss: 0,
        lost: 0,
        violations: Violations::default(),
        problems: Vec::new(),
        server_exit: String::new(),
    };
    for s in senders {
        let s = s.await.context("sender task")?;
        r.sent_in_window += s.sent_in_window;
        r.attempted += s.attempted;
        r.acked += s.acked;
        r.errors += s.errors;
        r.unacked += s.unacked;
        r.behind += s.behind;
        r.send_to_sent.add(&s.send_to_sent)?;
        r.send_lag.add(&s.send_lag)?;
        r.violations.count += s.violations.count;
        for v in s.violations.first {
            if r.violations.first.len() < 10 {
                r.violations.first.push(v);
            }
        }
        r.problems.extend(s.problem);
    }
    for (k, rc) in receivers.into_iter().enumerate() {
        let rc = rc.await.context("receiver task")?;
        r.delivered += rc.delivered;
        r.delivered_in_window += rc.delivered_in_window;
        r.send_to_delivery.add(&rc.send_to_delivery)?;
        r.actual_to_delivery.add(&rc.actual_to_delivery)?;
        merge_timeline(&mut r.timeline, &rc.timeline);
        r.violations.count += rc.violations.count;
        for v in rc.violations.first {
            if r.violations.first.len() < 10 {
                r.violations.first.push(v);
            }
        }
        r.problems.extend(rc.problem);
        // Exactly once: what the sender attempted and was not refused must have arrived.
        if let Some(f) = rc.expected {
            let want = f.attempted.saturating_sub(f.errors);
            if rc.delivered < want {
                r.lost += want - rc.delivered;
                r.violations.add(format!(
                    "receiver {k}: {} of {want} messages never arrived",
                    want - rc.delivered
                ));
            }
        }
    }
    r.server_max_rss = server.max_rss_bytes()?;
    r.client_max_rss = common::self_max_rss_bytes()?;
    let (status, killed) = server.terminate(Duration::from_secs(15))?;
    r.server_exit = if killed {
        format!("did not stop within 15 s of SIGTERM: killed ({status})")
    } else if status.success() {
        "stopped cleanly".into()
    } else {
        format!("exited with {status}")
    };
    drop(data_dir);
    Ok(r)
}
