//! `chat-sim run`: the whole job, from the scenario file to the report directory.
//!
//! 1. Read the scenario and apply `--set` overrides.
//! 2. Start the server as a child process (or use `--target`) and wait until it is healthy.
//! 3. Size the run to the host: at most the server's connection capacity, at most
//!    `max_devices_per_process` WebSockets per load process (more go to worker processes).
//! 4. Run the shards (Goose users, checks) while sampling the server's CPU, memory and
//!    bytes on disk and drawing the progress line.
//! 5. Merge the shards' results exactly, compute the figures, the capacity plan and the
//!    gates, and write the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::checks::{Check, CheckResults};
use crate::child::{self, ProcSample, ServeOptions, ServerChild};
use crate::client::http;
use crate::load::shard::{
    self, GooseRequestSummary, Progress, ShardCtx, ShardJob, ShardReport, count_devices, unix_ms,
};
use crate::load::stats::CountersSnapshot;
use crate::metrics::{LatencySet, Series};
use crate::progress::ProgressLine;
use crate::report;
use crate::report::json::Summary;
use crate::scenario::{Scenario, ScenarioError};
use crate::worker::{Worker, WorkerMessage};

/// What `chat-sim run` was asked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: PathBuf,
    pub out_dir: PathBuf,
    pub target: Option<String>,
    pub jwt_secret: Option<String>,
    pub baseline: Option<PathBuf>,
    pub overrides: Vec<String>,
    /// Draw the live progress line (on a terminal) or periodic lines.
    pub progress: bool,
}

/// Why a run could not produce a report. Failed gates are not errors: they are in the
/// outcome.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    #[error("cannot write the report in {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Child(#[from] child::ChildError),
    #[error("the server is not healthy: {0}")]
    Unhealthy(String),
    #[error("--target needs --jwt-secret (the secret the server signs tokens with)")]
    NoSecret,
    #[error("--target must be an http:// or https:// URL, got {0:?}")]
    BadTarget(String),
    #[error("cannot read the baseline {}: {message}", path.display())]
    Baseline { path: PathBuf, message: String },
    #[error("load shard {shard} failed: {message}")]
    Shard { shard: u32, message: String },
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub summary: Summary,
}

impl RunOutcome {
    /// One line per failed gate; empty when the run passed.
    pub fn failures(&self) -> &[String] {
        &self.summary.failures
    }
}

/// One sample of the run, taken by the parent every interval.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds after the epoch.
    pub t: f64,
    pub connected: i64,
    pub acked: u64,
    pub deliveries: u64,
    pub errors: u64,
    pub server: Option<ProcSample>,
    pub disk_bytes: Option<u64>,
    pub load_cpu_secs: f64,
}

/// Everything the report writers need beyond the summary.
pub struct RunData {
    pub series: Series,
    pub samples: Vec<Sample>,
    pub latency: LatencySet,
    pub interval: f64,
    pub load_start: f64,
    pub load_end: f64,
    /// Bytes of the source design's 100 B per stored message, for the storage plot.
    pub source_bytes_per_message: f64,
    pub disk_start: Option<u64>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `2024-05-01T12:34:56Z` for a Unix time in ms.
pub fn utc_string(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `DIR/<scenario>-<UTC time>/`, with `-2`, `-3` … if that exists already.
fn make_run_dir(out: &Path, name: &str, ms: u64) -> Result<PathBuf, RunError> {
    stamped_dir(out, name, ms).map_err(|(path, source)| RunError::Io { path, source })
}

/// Creates `DIR/<name>-<UTC time>/`, or `…-2`, `…-3` if that exists already, so two runs
/// in the same second never share a directory. An error names the path it failed on.
pub(crate) fn stamped_dir(
    out: &Path,
    name: &str,
    ms: u64,
) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    let stamp: String = utc_string(ms)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    std::fs::create_dir_all(out).map_err(|e| (out.to_owned(), e))?;
    let base = out.join(format!("{name}-{stamp}"));
    let mut dir = base.clone();
    let mut n = 2;
    loop {
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                dir = PathBuf::from(format!("{}-{n}", base.display()));
                n += 1;
            }
            Err(e) => return Err((dir, e)),
        }
    }
}

/// A secret for the child server: unique per run, never printed in the report.
fn fresh_secret() -> String {
    let mut r = crate::rng::Rng::derive(unix_ms(), &[u64::from(std::process::id())]);
    format!("sim-{:016x}{:016x}", r.next_u64(), r.next_u64())
}

/// The largest user count whose devices fit `capacity` connections.
fn users_within(scenario: &Scenario, users: u64, capacity: u64) -> u64 {
    let mut devices = 0;
    for i in 0..users {
        devices += shard::plan_devices(scenario, i).len() as u64;
        if devices > capacity {
            return i;
        }
    }
    users
}

enum Running {
    InProcess {
        ctx: Arc<ShardCtx>,
        task: tokio::task::JoinHandle<Result<ShardReport, shard::ShardError>>,
    },
    Workers {
        workers: Vec<Worker>,
        rx: std::sync::mpsc::Receiver<WorkerMessage>,
        progress: BTreeMap<u32, Progress>,
        reports: Vec<ShardReport>,
    },
}

/// Runs a scenario and writes its report.
pub async fn run(opts: RunOptions) -> Result<RunOutcome, RunError> {
    let scenario = Scenario::load(&opts.scenario, &opts.overrides)?;
    let started_ms = unix_ms();
    let wall = Instant::now();
    let dir = make_run_dir(&opts.out_dir, &scenario.name, started_ms)?;
    let mut notes: Vec<String> = Vec::new();

    // The server.
    let mut child: Option<ServerChild> = None;
    let (http_url, secret, store_name) = match &opts.target {
        Some(t) => {
            let t = t.trim_end_matches('/').to_owned();
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                return Err(RunError::BadTarget(t));
            }
            let secret = opts.jwt_secret.clone().ok_or(RunError::NoSecret)?;
            (t, secret, "external".to_owned())
        }
        None => {
            let secret = fresh_secret();
            let s = &scenario.server;
            let c = ServerChild::spawn(
                ServeOptions {
                    addr: "127.0.0.1:0".into(),
                    store: s.store.clone(),
                    jwt_secret: secret.clone(),
                    max_connections: s.max_connections,
                    send_rate: s.send_rate,
                    send_burst: s.send_burst,
                    device_queue: s.device_queue,
                },
                &dir.join("server.log"),
            )?;
            let url = c.http_url();
            child = Some(c);
            let store = scenario
                .server
                .store
                .split(':')
                .next()
                .unwrap_or("fjall")
                .to_owned();
            (url, secret, store)
        }
    };
    http::wait_healthy(&http_url, Duration::from_secs(30))
        .await
        .map_err(RunError::Unhealthy)?;
    let ws_url = format!(
        "{}/v1/ws",
        http_url
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1)
    );

    // Size the run to the host.
    let users_requested = scenario.users();
    let mut users = users_requested;
    let mut cap_note = None;
    if let Some(c) = &child {
        let fit = users_within(&scenario, users, c.capacity);
        if fit < users {
            let note = format!(
                "capped by the host: the server process can hold {} connections (its open-file limit less a margin), so {fit} of the scenario's {users} users were simulated; per-node figures come from the simulated part and the real-world figures are extrapolated from it",
                c.capacity
            );
            notes.push(note.clone());
            cap_note = Some(note);
            users = fit.max(2);
        }
    }
    let devices_total = count_devices(&scenario, 0, users);
    let per_proc = u64::from(scenario.run.max_devices_per_process);
    let shards = (u64::from(scenario.run.workers))
        .max(devices_total.div_ceil(per_proc))
        .clamp(1, users / 2)
        .max(1) as u32;
    if shards > 1 {
        notes.push(format!(
            "users split across {shards} worker processes ({devices_total} WebSockets, at most {per_proc} per process); each worker's users only talk among themselves, so every check stays exact"
        ));
    }
    let user_base = scenario
        .run
        .user_id_base
        .unwrap_or(if opts.target.is_some() {
            (started_ms / 1000) * 100_000
        } else {
            0
        });

    let epoch_ms = unix_ms();
    let epoch = Instant::now();
    let server_start = child.as_ref().and_then(ServerChild::sample);
    let disk_start = child
        .as_ref()
        .and_then(|c| c.fresh_disk_bytes(Duration::from_secs(3)));

    let jobs: Vec<ShardJob> = (0..shards)
        .map(|k| {
            let lo = users * u64::from(k) / u64::from(shards);
            let hi = users * u64::from(k + 1) / u64::from(shards);
            ShardJob {
                scenario: scenario.clone(),
                shard: k,
                shards,
                user_lo: lo,
                user_hi: hi,
                user_base,
                http_url: http_url.clone(),
                ws_url: ws_url.clone(),
                jwt_secret: secret.clone(),
                epoch_unix_ms: epoch_ms,
                goose_report: Some(
                    dir.join(if shards == 1 {
                        "goose-report.html".to_owned()
                    } else {
                        format!("goose-report-worker-{k}.html")
                    })
                    .display()
                    .to_string(),
                ),
            }
        })
        .collect();

    let mut running = if shards == 1 {
        let job = &jobs[0];
        let ctx = ShardCtx::new(job).map_err(|e| RunError::Shard {
            shard: 0,
            message: e.to_string(),
        })?;
        let task = tokio::spawn(shard::run(ctx.clone(), job.goose_report.clone()));
        Running::InProcess { ctx, task }
    } else {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut workers = Vec::new();
        for job in &jobs {
            let w = Worker::spawn(job, tx.clone()).map_err(|e| RunError::Shard {
                shard: job.shard,
                message: format!("cannot start the worker process: {e}"),
            })?;
            workers.push(w);
        }
        Running::Workers {
            workers,
            rx,
            progress: BTreeMap::new(),
            reports: Vec::new(),
        }
    };

    // Sample and draw progress until every shard reported.
    let interval = Duration::from_secs_f64(scenario.run.sample_interval_secs);
    let mut line = ProgressLine::new(opts.progress, devices_total);
    let mut samples: Vec<Sample> = Vec::new();
    let take_sample = |progress: &Progress, workers: &[u32]| -> Sample {
        let mut load_cpu = child::sample_proc(None).map_or(0.0, |s| s.cpu_secs);
        for pid in workers {
            load_cpu += child::sample_proc(Some(*pid)).map_or(0.0, |s| s.cpu_secs);
        }
        Sample {
            t: epoch.elapsed().as_secs_f64(),
            connected: progress.connected,
            acked: progress.acked,
            deliveries: progress.deliveries,
            errors: progress.errors,
            server: child.as_ref().and_then(ServerChild::sample),
            disk_bytes: child.as_ref().and_then(ServerChild::disk_bytes),
            load_cpu_secs: load_cpu,
        }
    };
    let mut worker_cpu_final = 0.0;
    let reports: Vec<ShardReport> = loop {
        let done = match &mut running {
            Running::InProcess { ctx, task } => {
                tokio::select! {
                    r = &mut *task => {
                        let report = r
                            .map_err(|e| RunError::Shard { shard: 0, message: e.to_string() })?
                            .map_err(|e| RunError::Shard { shard: 0, message: e.to_string() })?;
                        let p = ctx.progress();
                        samples.push(take_sample(&p, &[]));
                        Some(vec![report])
                    }
                    _ = tokio::time::sleep(interval) => {
                        let p = ctx.progress();
                        let s = take_sample(&p, &[]);
                        line.update(&s, p.p99_delivery_ms);
                        samples.push(s);
                        None
                    }
                }
            }
            Running::Workers {
                workers,
                rx,
                progress,
                reports,
            } => {
                let deadline = Instant::now() + interval;
                while let Ok(m) =
                    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    match m {
                        WorkerMessage::Progress { shard, progress: p } => {
                            progress.insert(shard, p);
                        }
                        WorkerMessage::Done { report } => reports.push(*report),
                        WorkerMessage::Failed { shard, error } => {
                            return Err(RunError::Shard {
                                shard,
                                message: error,
                            });
                        }
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let mut p = Progress::default();
                for q in progress.values() {
                    p.connected += q.connected;
                    p.acked += q.acked;
                    p.deliveries += q.deliveries;
                    p.errors += q.errors;
                    p.p99_delivery_ms = match (p.p99_delivery_ms, q.p99_delivery_ms) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
                let pids: Vec<u32> = workers.iter().map(Worker::pid).collect();
                let s = take_sample(&p, &pids);
                if reports.len() == workers.len() {
                    worker_cpu_final = s.load_cpu_secs;
                    samples.push(s);
                    for w in workers.drain(..) {
                        w.reap();
                    }
                    Some(std::mem::take(reports))
                } else {
                    line.update(&s, p.p99_delivery_ms);
                    samples.push(s);
                    None
                }
            }
        };
        if let Some(r) = done {
            break r;
        }
    };
    line.finish();

    // The server's last figures, then stop it.
    let disk_end = child
        .as_ref()
        .and_then(|c| c.fresh_disk_bytes(Duration::from_secs(3)));
    let server_end = child.as_ref().and_then(ServerChild::sample);
    let server_pid = child.as_ref().map(|c| c.pid);
    let capacity = child.as_ref().map(|c| c.capacity);
    if let Some(c) = child.as_mut() {
        c.stop(Duration::from_secs(5));
    }
    drop(child);

    let merged = merge(reports)?;
    let load_cpu = if shards > 1 {
        worker_cpu_final
    } else {
        child::sample_proc(None).map_or(0.0, |s| s.cpu_secs)
    };
    let baseline = match &opts.baseline {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| RunError::Baseline {
                path: p.clone(),
                message: e.to_string(),
            })?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| RunError::Baseline {
                    path: p.clone(),
                    message: e.to_string(),
                })?;
            Some((p.clone(), v))
        }
        None => None,
    };
    notes.extend(merged.notes.iter().cloned());
    let inputs = report::Inputs {
        scenario: &scenario,
        opts: &opts,
        started_ms,
        finished_ms: unix_ms(),
        wall_secs: wall.elapsed().as_secs_f64(),
        target_kind: if opts.target.is_some() {
            "external"
        } else {
            "child"
        },
        http_url: &http_url,
        store: &store_name,
        server_pid,
        capacity,
        users_requested,
        users,
        devices: devices_total,
        shards,
        cap_note,
        merged: &merged,
        samples: &samples,
        server_start,
        server_end,
        disk_start,
        disk_end,
        load_cpu_secs: load_cpu,
        notes,
        baseline,
    };
    let (mut summary, data) = report::build(&inputs);
    report::write_all(&dir, &mut summary, &data).map_err(io_err(&dir))?;
    let summary = report::reread_files(&dir, summary).map_err(io_err(&dir))?;
    Ok(RunOutcome { dir, summary })
}

/// All shards' results added together.
pub struct Merged {
    pub latency: LatencySet,
    pub series: Series,
    pub checks: CheckResults,
    pub counters: CountersSnapshot,
    pub close_codes: BTreeMap<u16, u64>,
    pub goose: Vec<GooseRequestSummary>,
    pub groups_supported: Option<bool>,
    pub groups_created: u64,
    pub groups_failed: u64,
    pub presence_supported: Option<bool>,
    pub body_bytes_acked: u64,
    pub load_start: f64,
    pub load_end: f64,
    pub notes: Vec<String>,
    pub goose_files: usize,
}

/// Merges shard reports: histograms, series, counts and checks add exactly.
pub fn merge(reports: Vec<ShardReport>) -> Result<Merged, RunError> {
    let shard_err = |e: crate::metrics::HistogramError| RunError::Shard {
        shard: 0,
        message: e.to_string(),
    };
    let mut m = Merged {
        latency: LatencySet::default(),
        series: Series::default(),
        checks: CheckResults::default(),
        counters: CountersSnapshot::default(),
        close_codes: BTreeMap::new(),
        goose: Vec::new(),
        groups_supported: None,
        groups_created: 0,
        groups_failed: 0,
        presence_supported: None,
        body_bytes_acked: 0,
        load_start: f64::INFINITY,
        load_end: 0.0,
        notes: Vec::new(),
        goose_files: reports.len(),
    };
    let mut goose: BTreeMap<String, (GooseRequestSummary, f64)> = BTreeMap::new();
    for r in reports {
        m.latency
            .merge(&LatencySet::decode(&r.latency).map_err(shard_err)?)
            .map_err(shard_err)?;
        m.series
            .merge(&Series::from_wire(&r.series).map_err(shard_err)?)
            .map_err(shard_err)?;
        m.checks.merge(&r.checks);
        m.counters.merge(&r.counters);
        for (c, n) in r.close_codes {
            *m.close_codes.entry(c).or_default() += n;
        }
        for g in r.goose {
            let e = goose.entry(g.name.clone()).or_insert_with(|| {
                (
                    GooseRequestSummary {
                        name: g.name.clone(),
                        ok: 0,
                        failed: 0,
                        mean_ms: 0.0,
                        max_ms: 0.0,
                    },
                    0.0,
                )
            });
            let n = (g.ok + g.failed) as f64;
            e.1 += g.mean_ms * n;
            e.0.ok += g.ok;
            e.0.failed += g.failed;
            e.0.max_ms = e.0.max_ms.max(g.max_ms);
        }
        m.groups_supported = match (m.groups_supported, r.groups_supported) {
            (Some(a), Some(b)) => Some(a && b),
            (a, b) => a.or(b),
        };
        m.presence_supported = match (m.presence_supported, r.presence_supported) {
            (Some(a), Some(b)) => Some(a && b),
            (a, b) => a.or(b),
        };
        m.groups_created += r.groups_created;
        m.groups_failed += r.groups_failed;
        m.body_bytes_acked += r.body_bytes_acked;
        m.load_start = m.load_start.min(r.load_start_secs);
        m.load_end = m.load_end.max(r.load_end_secs);
        for n in r.notes {
            if !m.notes.contains(&n) {
                m.notes.push(n);
            }
        }
    }
    m.goose = goose
        .into_values()
        .map(|(mut g, total)| {
            let n = (g.ok + g.failed) as f64;
            g.mean_ms = if n > 0.0 { total / n } else { 0.0 };
            g
        })
        .collect();
    if !m.load_start.is_finite() {
        m.load_start = 0.0;
    }
    Ok(m)
}

/// Whether a check failed in the merged results (for callers that want one answer).
pub fn check_failed(m: &Merged, c: Check) -> bool {
    m.checks.count(c) > 0
}

/// What a scenario would run, in words (`chat-sim check`).
pub fn describe(path: &Path, overrides: &[String]) -> Result<String, RunError> {
    let s = Scenario::load(path, overrides)?;
    let users = s.users();
    let devices = count_devices(&s, 0, users);
    let shards = (u64::from(s.run.workers))
        .max(devices.div_ceil(u64::from(s.run.max_devices_per_process)))
        .max(1);
    Ok(format!(
        "scenario `{}`: {users} users ({} daily active × {}), {devices} WebSockets, {shards} load process(es)\n\
         {:.3} sends/s per user ({} a day, a day in {} s: {:.0}× compression), {:.1} sends/s in all\n\
         ramp-up {} s, full load {} s; server store `{}`; checks gated: {:?}",
        s.name,
        s.population.daily_active_users,
        s.population.scale,
        s.sends_per_user_per_sec(),
        s.traffic.messages_per_user_per_day,
        s.traffic.day_seconds,
        s.compression(),
        users as f64 * s.sends_per_user_per_sec(),
        s.run.ramp_up_secs,
        s.run.duration_secs,
        s.server.store,
        crate::gates::gated_checks(&s)
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_strings() {
        assert_eq!(utc_string(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_string(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_string(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn run_dirs_do_not_collide() {
        let tmp = tempfile::tempdir().unwrap();
        let a = make_run_dir(tmp.path(), "x", 0).unwrap();
        let b = make_run_dir(tmp.path(), "x", 0).unwrap();
        assert_ne!(a, b);
        assert!(a.ends_with("x-19700101T000000Z"));
        assert!(b.ends_with("x-19700101T000000Z-2"));
    }
}
