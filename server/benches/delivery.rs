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

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;

use common::{ServerProcess, Tokens, Ws, human_bytes};

/// Delivered messages per second the targets ask for, by store.
const TARGET_MEMORY: f64 = 100_000.0;
const TARGET_FJALL: f64 = 60_000.0;
/// p99 send→delivery the target asks for at half the maximum rate, in milliseconds.
const TARGET_P99_MS: f64 = 20.0;
/// Largest latency the histograms hold (60 s), in microseconds.
const HIST_MAX_US: u64 = 60_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// In-memory store.
    Memory,
    /// Embedded durable store in a fresh temporary directory.
    Fjall,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Fjall => "fjall",
        }
    }

    fn target(self) -> f64 {
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
struct Args {
    /// Stores to measure, in turn (comma-separated): memory, fjall.
    #[arg(long, value_delimiter = ',', default_value = "memory,fjall")]
    stores: Vec<StoreKind>,
    /// Sender/receiver pairs; each of the 2N users holds one WebSocket.
    #[arg(long, default_value_t = 200)]
    pairs: usize,
    /// Length of the measurement window, in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measurement window; not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Total send rate in messages per second, spread evenly over the pairs (open model:
    /// latency from the scheduled send time). 0 = closed loop as fast as possible, then a
    /// second, open-model phase at half the rate reached.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Size of each message body, in bytes.
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// Sends a sender keeps unanswered at most. The server answers a connection's frames
    /// one at a time, so a larger window only queues on the socket: parallelism comes
    /// from the pairs.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Seconds to wait after the window for outstanding answers and deliveries; an open
    /// phase that fell behind its schedule also stops sending then.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// Skip the open-model phase at half the closed-loop rate.
    #[arg(long)]
    no_half_rate: bool,
    /// Directory in which the fjall store's temporary data directories are made.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Worker threads of the client's runtime (default: one per core).
    #[arg(long)]
    client_threads: Option<usize>,
    /// Also print, per second of the phase, messages delivered, the share over 20 ms and
    /// the worst send→delivery latency (by scheduled send time).
    #[arg(long)]
    timeline: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What one phase asks of the load generator.
#[derive(Clone, Copy, Debug)]
struct PhaseSpec {
    /// Total messages per second (open model), or 0 for closed loop.
    rate: f64,
    pairs: usize,
    window: usize,
    body_bytes: usize,
    warmup: Duration,
    duration: Duration,
    drain: Duration,
}

impl PhaseSpec {
    fn label(&self) -> String {
        if self.rate > 0.0 {
            format!("open {:.0}/s", self.rate)
        } else {
            format!("closed w={}", self.window)
        }
    }
}

/// The phase's clock: microseconds since `t0`.
struct Clock {
    t0: Instant,
    /// Start and end of the measurement window.
    from_us: u64,
    to_us: u64,
    /// When senders and receivers stop waiting.
    give_up_us: u64,
}

impl Clock {
    fn now_us(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.t0)
            .as_micros() as u64
    }

    fn at(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    fn in_window(&self, us: u64) -> bool {
        (self.from_us..self.to_us).contains(&us)
    }
}

/// A server frame, read without copying its strings (our ids and codes hold no escapes).
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(default)]
    id: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    useq: Option<u64>,
    #[serde(default)]
    code: Option<&'a str>,
    #[serde(default, rename = "ref")]
    reference: Option<&'a str>,
}

/// A client message id, `<n>.<scheduled µs>.<actual µs>`: the sender's counter, the time
/// the send was meant to happen and the time it was made (equal in closed loop).
#[derive(Clone, Copy)]
struct MsgId {
    n: u64,
    scheduled: u64,
    actual: u64,
}

fn parse_id(id: &str) -> Option<MsgId> {
    let mut parts = id.splitn(3, '.');
    let mut next = || parts.next()?.parse().ok();
    Some(MsgId {
        n: next()?,
        scheduled: next()?,
        actual: next()?,
    })
}

/// Per-second figures over the phase, for `--timeline`.
#[derive(Clone, Copy, Default)]
struct Second {
    delivered: u64,
    over_target: u64,
    max_us: u64,
}

fn merge_timeline(into: &mut Vec<Second>, from: &[Second]) {
    if into.len() < from.len() {
        into.resize(from.len(), Second::default());
    }
    for (a, b) in into.iter_mut().zip(from) {
        a.delivered += b.delivered;
        a.over_target += b.over_target;
        a.max_us = a.max_us.max(b.max_us);
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// What a sender tells its receiver when it stops.
#[derive(Clone, Copy, Default)]
struct SenderFinal {
    attempted: u64,
    errors: u64,
}

struct SenderOutcome {
    attempted: u64,
    acked: u64,
    errors: u64,
    sent_in_window: u64,
    unacked: u64,
    /// Open model: sends scheduled within the window but never made (fell behind).
    behind: u64,
    send_to_sent: Histogram<u64>,
    /// Open model: actual send time less scheduled time (client lag or a full window).
    send_lag: Histogram<u64>,
    violations: Violations,
    problem: Option<String>,
}

#[derive(Default)]
struct Violations {
    count: u64,
    first: Vec<String>,
}

impl Violations {
    fn add(&mut self, what: String) {
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(what);
        }
    }
}

struct ReceiverOutcome {
    delivered: u64,
    delivered_in_window: u64,
    send_to_delivery: Histogram<u64>,
    /// From the actual send time (differs from the above in the open model only).
    actual_to_delivery: Histogram<u64>,
    timeline: Vec<Second>,
    violations: Violations,
    /// What the sender made and had refused, once it stopped.
    expected: Option<SenderFinal>,
    problem: Option<String>,
}

async fn sender(
    pair: usize,
    ws: Ws,
    spec: PhaseSpec,
    clock: Arc<Clock>,
    body: Arc<str>,
    done: oneshot::Sender<SenderFinal>,
) -> SenderOutcome {
    let peer = 2 * pair as u64 + 2;
    let (mut sink, mut stream) = ws.split();
    let open = spec.rate > 0.0;
    // Open model: pair k sends at offset + i·interval, offsets spread over one interval.
    let interval_us = if open {
        spec.pairs as f64 * 1e6 / spec.rate
    } else {
        0.0
    };
    let offset_us = interval_us * pair as f64 / spec.pairs as f64;
    let scheduled = |n: u64| (offset_us + n as f64 * interval_us) as u64;
    let mut out = SenderOutcome {
        attempted: 0,
        acked: 0,
        errors: 0,
        sent_in_window: 0,
        unacked: 0,
        behind: 0,
        send_to_sent: histogram(),
        send_lag: histogram(),
        violations: Violations::default(),
        problem: None,
    };
    let mut in_flight = 0usize;
    let mut stopped = false;
    let give_up = clock.at(clock.give_up_us);
    loop {
        if stopped && in_flight == 0 {
            break;
        }
        let can_send = !stopped && in_flight < spec.window;
        let next_us = scheduled(out.attempted);
        // Open model: wait for the scheduled time; closed loop: only for the start.
        let wait_until = if open {
            Some(clock.at(next_us))
        } else if out.attempted == 0 {
            Some(clock.t0)
        } else {
            None
        };
        let ready = async move {
            if let Some(t) = wait_until {
                sleep_until(t).await;
            }
        };
        tokio::select! {
            biased;
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => {
                        out.problem = Some(format!("sender {pair}: closed by the server: {c:?}"));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        out.problem = Some(format!("sender {pair}: socket error: {e}"));
                        break;
                    }
                    None => {
                        out.problem = Some(format!("sender {pair}: connection ended"));
                        break;
                    }
                };
                let now = clock.now_us();
                match serde_json::from_str::<Incoming>(text.as_str()) {
                    Ok(f) if f.ty == "sent" => {
                        in_flight = in_flight.saturating_sub(1);
                        out.acked += 1;
                        match f.id.and_then(parse_id) {
                            Some(id) => {
                                if id.scheduled >= clock.from_us {
                                    out.send_to_sent.saturating_record(now.saturating_sub(id.scheduled));
                                }
                                // Answers come in send order; this sender alone writes the
                                // conversation and its own inbox, so seq = useq = n + 1
                                // (less the sends refused before).
                                let stored = id.n + 1 - out.errors.min(id.n);
                                if id.n + 1 != out.acked + out.errors
                                    || f.seq != Some(stored)
                                    || f.useq != Some(stored)
                                {
                                    out.violations.add(format!(
                                        "sender {pair}: answer #{} is {}",
                                        out.acked + out.errors,
                                        text.as_str()
                                    ));
                                }
                            }
                            None => out.violations.add(format!("sender {pair}: foreign id in {}", text.as_str())),
                        }
                    }
                    Ok(f) if f.ty == "error" => {
                        out.errors += 1;
                        if f.reference.is_some() {
                            in_flight = in_flight.saturating_sub(1);
                        }
                        if out.problem.is_none() {
                            out.problem = Some(format!(
                                "sender {pair}: error {} for {:?}: {}",
                                f.code.unwrap_or("?"),
                                f.reference,
                                text.as_str()
                            ));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if out.problem.is_none() {
                            out.problem = Some(format!("sender {pair}: unreadable frame ({e}): {}", text.as_str()));
                        }
                    }
                }
            }
            () = ready, if can_send => {
                let now = clock.now_us();
                let intended = if open { next_us } else { now };
                if intended >= clock.to_us || now >= clock.give_up_us {
                    stopped = true;
                    if open {
                        // Scheduled within the window but never sent: the sender fell behind.
                        let mut n = out.attempted;
                        while scheduled(n) < clock.to_us {
                            out.behind += 1;
                            n += 1;
                        }
                    }
                    continue;
                }
                let mut frame = String::with_capacity(body.len() + 80);
                let _ = write!(
                    frame,
                    r#"{{"type":"send","id":"{}.{}.{}","to":"u:{}","body":""#,
                    out.attempted, intended, now, peer
                );
                frame.push_str(&body);
                frame.push_str("\"}");
                // Bounded: a server that stops reading must not hang the benchmark.
                match tokio::time::timeout_at(give_up, sink.send(Message::text(frame))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        out.problem = Some(format!("sender {pair}: send failed: {e}"));
                        break;
                    }
                    Err(_) => {
                        out.problem = Some(format!("sender {pair}: a send blocked past the drain time"));
                        break;
                    }
                }
                out.attempted += 1;
                in_flight += 1;
                if clock.in_window(intended) {
                    out.sent_in_window += 1;
                    if open {
                        out.send_lag.saturating_record(now.saturating_sub(intended));
                    }
                }
            }
            () = sleep_until(give_up), if stopped => break,
        }
    }
    out.unacked = in_flight as u64;
    let _ = done.send(SenderFinal {
        attempted: out.attempted,
        errors: out.errors,
    });
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    out
}

async fn receiver(
    pair: usize,
    ws: Ws,
    clock: Arc<Clock>,
    mut done: oneshot::Receiver<SenderFinal>,
) -> ReceiverOutcome {
    let (mut sink, mut stream) = ws.split();
    let mut out = ReceiverOutcome {
        delivered: 0,
        delivered_in_window: 0,
        send_to_delivery: histogram(),
        actual_to_delivery: histogram(),
        timeline: Vec::new(),
        violations: Violations::default(),
        expected: None,
        problem: None,
    };
    let mut next_n = 0u64;
    let mut last_seq = 0u64;
    let mut last_useq = 0u64;
    // Receivers outwait the senders a little: the last `msg` may trail the last `sent`.
    let give_up = clock.at(clock.give_up_us) + Duration::from_secs(1);
    let complete = |out: &ReceiverOutcome| {
        out.expected
            .is_some_and(|f| out.delivered >= f.attempted.saturating_sub(f.errors))
    };
    loop {
        tokio::select! {
            biased;
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => {
                        out.problem = Some(format!("receiver {pair}: closed by the server: {c:?}"));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        out.problem = Some(format!("receiver {pair}: socket error: {e}"));
                        break;
                    }
                    None => {
                        out.problem = Some(format!("receiver {pair}: connection ended"));
                        break;
                    }
                };
                let now = clock.now_us();
                let f = match serde_json::from_str::<Incoming>(text.as_str()) {
                    Ok(f) => f,
                    Err(e) => {
                        out.violations.add(format!("receiver {pair}: unreadable frame ({e}): {}", text.as_str()));
                        continue;
                    }
                };
                if f.ty != "msg" {
                    out.violations.add(format!("receiver {pair}: unexpected frame {}", text.as_str()));
                    continue;
                }
                out.delivered += 1;
                if clock.in_window(now) {
                    out.delivered_in_window += 1;
                }
                match f.id.and_then(parse_id) {
                    Some(MsgId { n, scheduled, actual }) => {
                        if n < next_n {
                            out.violations.add(format!("receiver {pair}: message {n} again or out of order (expected {next_n})"));
                        } else {
                            if n > next_n {
                                out.violations.add(format!("receiver {pair}: messages {next_n}..{n} skipped"));
                            }
                            next_n = n + 1;
                        }
                        let latency = now.saturating_sub(scheduled);
                        if scheduled >= clock.from_us {
                            out.send_to_delivery.saturating_record(latency);
                            out.actual_to_delivery.saturating_record(now.saturating_sub(actual));
                        }
                        let second = (scheduled / 1_000_000) as usize;
                        if out.timeline.len() <= second {
                            out.timeline.resize(second + 1, Second::default());
                        }
                        let b = &mut out.timeline[second];
                        b.delivered += 1;
                        b.max_us = b.max_us.max(latency);
                        if latency > (TARGET_P99_MS * 1000.0) as u64 {
                            b.over_target += 1;
                        }
                    }
                    None => out.violations.add(format!("receiver {pair}: foreign id in {}", text.as_str())),
                }
                match f.useq {
                    Some(u) if u == last_useq + 1 => last_useq = u,
                    u => {
                        out.violations.add(format!("receiver {pair}: useq {u:?} after {last_useq}"));
                        if let Some(u) = u {
                            last_useq = u;
                        }
                    }
                }
                match f.seq {
                    Some(s) if s == last_seq + 1 => last_seq = s,
                    s => {
                        out.violations.add(format!("receiver {pair}: seq {s:?} after {last_seq}"));
                        if let Some(s) = s {
                            last_seq = s;
                        }
                    }
                }
                if complete(&out) {
                    break;
                }
            }
            f = &mut done, if out.expected.is_none() => {
                out.expected = Some(f.unwrap_or_default());
                if complete(&out) {
                    break;
                }
            }
            () = sleep_until(give_up) => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    out
}

/// Everything one phase measured.
struct PhaseResult {
    spec: PhaseSpec,
    sent_in_window: u64,
    attempted: u64,
    acked: u64,
    errors: u64,
    unacked: u64,
    behind: u64,
    delivered: u64,
    delivered_in_window: u64,
    send_to_delivery: Histogram<u64>,
    actual_to_delivery: Histogram<u64>,
    send_to_sent: Histogram<u64>,
    send_lag: Histogram<u64>,
    timeline: Vec<Second>,
    server_cpu_s: f64,
    /// CPU seconds over the window by server thread name.
    server_threads: Vec<(String, f64)>,
    client_cpu_s: f64,
    /// The whole machine's busy and iowait CPU seconds over the window.
    machine_busy_s: f64,
    machine_iowait_s: f64,
    server_max_rss: u64,
    client_max_rss: u64,
    lost: u64,
    violations: Violations,
    problems: Vec<String>,
    server_exit: String,
}

impl PhaseResult {
    fn window_secs(&self) -> f64 {
        self.spec.duration.as_secs_f64()
    }

    fn rate(&self) -> f64 {
        self.delivered_in_window as f64 / self.window_secs()
    }

    fn server_cpu_us_per_msg(&self) -> f64 {
        if self.delivered_in_window == 0 {
            return f64::NAN;
        }
        self.server_cpu_s * 1e6 / self.delivered_in_window as f64
    }

    fn p_ms(h: &Histogram<u64>, q: f64) -> f64 {
        if h.is_empty() {
            return f64::NAN;
        }
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

async fn connect_pairs(server: &ServerProcess, pairs: usize) -> Result<Vec<(Ws, Ws)>> {
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

async fn run_phase(store: StoreKind, spec: PhaseSpec, args: &Args) -> Result<PhaseResult> {
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

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn print_table(store: StoreKind, results: &[PhaseResult], timeline: bool) {
    println!();
    println!("== store: {} ==", store.name());
    println!(
        "{:<16} {:>5} {:>5} {:>9} {:>9} {:>9} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>9} {:>10} | {:>8} {:>8}",
        "phase",
        "pairs",
        "dur s",
        "sent",
        "delivered",
        "msg/s",
        "d p50",
        "d p90",
        "d p99",
        "d max",
        "s p50",
        "s p99",
        "srv µs/msg",
        "srv maxRSS",
        "srv CPU",
        "cli CPU"
    );
    for r in results {
        let h = &r.send_to_delivery;
        let s = &r.send_to_sent;
        let secs = r.window_secs();
        println!(
            "{:<16} {:>5} {:>5.1} {:>9} {:>9} {:>9.0} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>9.1} {:>10} | {:>7.0}% {:>7.0}%",
            r.spec.label(),
            r.spec.pairs,
            secs,
            r.sent_in_window,
            r.delivered_in_window,
            r.rate(),
            fmt_ms(PhaseResult::p_ms(h, 0.50)),
            fmt_ms(PhaseResult::p_ms(h, 0.90)),
            fmt_ms(PhaseResult::p_ms(h, 0.99)),
            fmt_ms(if h.is_empty() {
                f64::NAN
            } else {
                h.max() as f64 / 1000.0
            }),
            fmt_ms(PhaseResult::p_ms(s, 0.50)),
            fmt_ms(PhaseResult::p_ms(s, 0.99)),
            r.server_cpu_us_per_msg(),
            human_bytes(r.server_max_rss as f64),
            100.0 * r.server_cpu_s / secs,
            100.0 * r.client_cpu_s / secs,
        );
    }
    println!(
        "(latencies in ms: d = send→delivery, s = send→sent; sent/delivered/msg/s count the \
         measurement window; CPU in % of one core over the window)"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    for r in results {
        let label = r.spec.label();
        println!(
            "[{label}] totals: {} sends made, {} answered sent, {} errors, {} unanswered at the end, \
             {} delivered; client max RSS {}; server {}",
            r.attempted,
            r.acked,
            r.errors,
            r.unacked,
            r.delivered,
            human_bytes(r.client_max_rss as f64),
            r.server_exit
        );
        let threads: Vec<String> = r
            .server_threads
            .iter()
            .map(|(n, t)| format!("{n} {:.0}%", 100.0 * t / r.window_secs()))
            .collect();
        println!(
            "[{label}] server CPU by thread (% of one core, summed by name): {}",
            threads.join(", ")
        );
        if r.spec.rate > 0.0 {
            println!(
                "[{label}] open model: send lag (actual - scheduled send, incl. the client timer's \
                 1 ms granularity) p50/p99/max {}/{}/{} ms; \
                 send→delivery from the actual send p50/p99/max {}/{}/{} ms",
                fmt_ms(PhaseResult::p_ms(&r.send_lag, 0.5)),
                fmt_ms(PhaseResult::p_ms(&r.send_lag, 0.99)),
                fmt_ms(PhaseResult::p_ms(&r.send_lag, 1.0)),
                fmt_ms(PhaseResult::p_ms(&r.actual_to_delivery, 0.5)),
                fmt_ms(PhaseResult::p_ms(&r.actual_to_delivery, 0.99)),
                fmt_ms(PhaseResult::p_ms(&r.actual_to_delivery, 1.0)),
            );
        }
        if timeline {
            println!(
                "[{label}] timeline (by scheduled send second; window is {:.0}..{:.0} s):",
                r.spec.warmup.as_secs_f64(),
                (r.spec.warmup + r.spec.duration).as_secs_f64()
            );
            for (i, b) in r.timeline.iter().enumerate() {
                println!(
                    "    {i:>3} s: {:>8} delivered, {:>6.2}% over {TARGET_P99_MS} ms, max {} ms",
                    b.delivered,
                    100.0 * b.over_target as f64 / b.delivered.max(1) as f64,
                    fmt_ms(b.max_us as f64 / 1000.0)
                );
            }
        }
        if r.behind > 0 {
            println!(
                "[{label}] the load fell behind its schedule: {} scheduled sends never made",
                r.behind
            );
        }
        let others =
            (r.machine_busy_s - r.server_cpu_s - r.client_cpu_s).max(0.0) / r.window_secs();
        println!(
            "[{label}] machine: {:.0}% busy of {cores} cores ({:.0}% iowait); other processes \
             and the kernel's own threads {:.0}%{}",
            100.0 * r.machine_busy_s / r.window_secs(),
            100.0 * r.machine_iowait_s / r.window_secs(),
            100.0 * others,
            if others > 0.25 {
                ": something else loaded the machine, the figures are disturbed"
            } else {
                ""
            }
        );
        let busy = (r.server_cpu_s + r.client_cpu_s) / r.window_secs();
        if busy >= 0.9 * cores {
            println!(
                "[{label}] note: server + client used {:.0}% of {} cores: the load generator \
                 competes with the server for CPU, so the rate is a lower bound",
                100.0 * busy,
                cores
            );
        }
        if r.violations.count == 0 && r.lost == 0 {
            println!(
                "[{label}] correctness: OK: every message delivered exactly once, in order, \
                 seq and useq +1"
            );
        } else {
            println!(
                "[{label}] correctness: {} VIOLATIONS ({} messages lost); first:",
                r.violations.count, r.lost
            );
            for v in &r.violations.first {
                println!("    {v}");
            }
        }
        for p in r.problems.iter().take(5) {
            println!("[{label}] problem: {p}");
        }
        if r.problems.len() > 5 {
            println!("[{label}] ... {} more problems", r.problems.len() - 5);
        }
    }
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
