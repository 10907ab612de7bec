//! `chat-sim run`: the whole job, from the scenario file to the report directory.
//!
//! 1. Read the scenario and apply `--set` overrides.
//! 2. Start the server as a child process, or a cluster of nodes (`[cluster]`), or use
//!    `--target`, and wait until it is healthy ([`servers`]); a cluster's faults run
//!    from when the load starts.
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

use self::servers::{Entry, Servers};
use crate::child;
use crate::client::http;
use crate::clock::{unix_ms, utc_string};
use crate::dashboard::Dashboard;
use crate::dashboard::frame::{Done, Info};
use crate::gates;
use crate::load::setup::{self, ShardJob, count_devices};
use crate::load::shard::{self, ShardCtx};
use crate::progress::ProgressLine;
use crate::records::{self, Progress, Sample, ShardReport};
use crate::report;
use crate::report::json::Summary;
use crate::scenario::{Scenario, ScenarioError};
use crate::worker::{Worker, WorkerMessage};

mod servers;

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
    /// The run directory's name inside `out_dir` instead of `<scenario>-<UTC time>`
    /// (a capacity search names its steps); it must not exist yet.
    pub dir_name: Option<String>,
    /// Serve the live dashboard on this address (`HOST:PORT`) while the run lasts; no
    /// port is opened without it.
    pub dashboard: Option<String>,
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
    #[error(
        "the scenario's [[faults]] kill and restart servers the run starts itself; leave out --target"
    )]
    FaultsNeedChild,
    #[error("cannot read the baseline {}: {message}", path.display())]
    Baseline { path: PathBuf, message: String },
    #[error("{0}")]
    Cluster(String),
    #[error("load shard {shard} failed: {message}")]
    Shard { shard: u32, message: String },
    #[error("{0}")]
    Dashboard(#[from] crate::dashboard::DashboardError),
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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_owned(),
        source,
    }
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
        devices += setup::plan_devices(scenario, i).len() as u64;
        if devices > capacity {
            return i;
        }
    }
    users
}

enum Running {
    InProcess {
        ctx: Arc<ShardCtx>,
        task: tokio::task::JoinHandle<Result<ShardReport, setup::ShardError>>,
    },
    Workers {
        workers: Vec<Worker>,
        rx: std::sync::mpsc::Receiver<WorkerMessage>,
        progress: BTreeMap<u32, Progress>,
        reports: Vec<ShardReport>,
    },
}

/// The idempotency window of the child server (the server's default): its records count
/// for one window in the storage figures.
const IDEMPOTENCY_WINDOW: Duration = chat_server::store::StoreOptions::DEFAULT_IDEMPOTENCY_WINDOW;

/// Runs a scenario and writes its report.
pub async fn run(opts: RunOptions) -> Result<RunOutcome, RunError> {
    let scenario = Scenario::load(&opts.scenario, &opts.overrides)?;
    let started_ms = unix_ms();
    let wall = Instant::now();
    let dir = match &opts.dir_name {
        Some(name) => {
            let dir = opts.out_dir.join(name);
            std::fs::create_dir_all(&opts.out_dir).map_err(io_err(&opts.out_dir))?;
            std::fs::create_dir(&dir).map_err(io_err(&dir))?;
            dir
        }
        None => make_run_dir(&opts.out_dir, &scenario.name, started_ms)?,
    };
    let mut notes: Vec<String> = Vec::new();
    // The live dashboard, first, so its address is the first thing printed.
    let dash = match &opts.dashboard {
        Some(addr) => {
            let d = Dashboard::start(addr).await?;
            eprintln!("dashboard: {}", d.url);
            Some(d)
        }
        None => None,
    };

    // The servers.
    let (mut servers, entry) = Servers::start(&scenario, &opts, &dir, started_ms).await?;
    let Entry {
        http_url,
        routes,
        secret,
        store_name,
    } = entry;
    http::wait_healthy(&http_url, Duration::from_secs(30))
        .await
        .map_err(RunError::Unhealthy)?;
    // Every strike of the scenario's faults, at its time.
    let strikes = crate::scenario::cluster::expand(&scenario.faults, scenario.run.seed);
    if servers.cluster().is_some_and(|c| c.solo) {
        notes.push(format!(
            "one server over {store_name}, broken by the scenario's {} fault(s) and started again on the same port and the same data each time",
            strikes.len()
        ));
    } else if let Some(c) = servers.cluster() {
        notes.push(format!(
            "a cluster of {} nodes over {store_name} joined through NATS; clients routed by {}",
            scenario.cluster.nodes,
            match c.routing {
                crate::scenario::Routing::Haproxy =>
                    "HAProxy (deploy/haproxy/haproxy.cfg: consistent hashing on the token's user id)",
                crate::scenario::Routing::Hash =>
                    "the clients themselves (rendezvous hashing of the user id over the nodes, the next node when one refuses)",
            }
        ));
    }

    // Size the run to the host.
    let users_requested = scenario.users();
    let mut users = users_requested;
    let mut cap_note = None;
    if let Some(host_capacity) = servers.host_capacity() {
        let fit = users_within(&scenario, users, host_capacity);
        if fit < users {
            let note = format!(
                "capped by the host: the server process(es) can hold {host_capacity} connections (the open-file limit less a margin), so {fit} of the scenario's {users} users were simulated; per-node figures come from the simulated part and the real-world figures are extrapolated from it"
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

    if let Some(d) = &dash {
        d.publish(
            "info",
            &Info {
                scenario: scenario.name.clone(),
                users,
                devices: devices_total,
                interval_secs: scenario.run.sample_interval_secs,
                duration_secs: (scenario.run.ramp_up_secs + scenario.run.duration_secs) as f64,
                checks: Info::checks(),
                nodes: servers.cluster().map_or_else(Vec::new, |c| {
                    c.nodes.lock().iter().map(|n| n.name.clone()).collect()
                }),
            },
        );
    }
    let publish = |s: &Sample, p: &Progress| {
        if let Some(d) = &dash {
            d.sample(s, p, servers.cluster().map(|c| &**c));
        }
    };

    let epoch_ms = unix_ms();
    let epoch = Instant::now();
    // This process's CPU before the load: a process that runs several runs (compare,
    // capacity) counts each run's own.
    let own_cpu_start = child::cpu_secs(None).unwrap_or(0.0);
    // A cluster's figures are what its nodes reported last: sample them now, or the
    // run's start would read as no memory and no CPU (every node's baseline and start-up
    // counted as the load's).
    if let Some(c) = servers.cluster() {
        c.sample_nodes(0.0).await;
    }
    let server_start = servers.sample();
    let disk_start = servers.fresh_disk_bytes(Duration::from_secs(3));
    // A cluster's nodes are sampled in the background: the loop below may block.
    let sampler = servers.cluster().map(|c| {
        let c = c.clone();
        let every = Duration::from_secs_f64(scenario.run.sample_interval_secs);
        tokio::spawn(async move {
            loop {
                c.sample_nodes(epoch.elapsed().as_secs_f64()).await;
                tokio::time::sleep(every).await;
            }
        })
    });
    // One child server's runtime tasks and store memory, read from its /metrics in the
    // background (a cluster's tasks come with its nodes' samples).
    let child_scrape = Arc::new(std::sync::Mutex::new(None::<crate::cluster::nodes::Scrape>));
    let tasks_sampler = (servers.is_child() && servers.cluster().is_none()).then(|| {
        let (latest, url) = (child_scrape.clone(), format!("{http_url}/metrics"));
        let every = Duration::from_secs_f64(scenario.run.sample_interval_secs);
        tokio::spawn(async move {
            // No idle connection kept between scrapes: a server counts every TCP
            // connection against its `--max-connections`, and this probe must not take
            // a device's place.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_default();
            loop {
                let r = http.get(&url).timeout(Duration::from_secs(1)).send().await;
                if let Ok(r) = r
                    && let Ok(text) = r.text().await
                    && let Ok(mut latest) = latest.lock()
                {
                    *latest = Some(crate::cluster::nodes::parse_metrics(&text));
                }
                tokio::time::sleep(every).await;
            }
        })
    });
    let mut faults: Option<tokio::task::JoinHandle<()>> = None;
    let mut start_faults = |load_start: Option<f64>| {
        if faults.is_none()
            && let (Some(c), Some(at)) = (servers.cluster(), load_start)
            && !scenario.faults.is_empty()
        {
            faults = Some(tokio::spawn(crate::cluster::faults::run(
                c.clone(),
                strikes.clone(),
                epoch,
                at,
            )));
        }
    };

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
                routes: routes.clone(),
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
    // Each worker's CPU as last seen: a worker that finished and exited has no /proc
    // entry left to read, and its CPU still counts.
    let worker_cpu = std::cell::RefCell::new(BTreeMap::<u32, f64>::new());
    let take_sample = |progress: &Progress, workers: &[u32]| -> Sample {
        let mut load_cpu = child::cpu_secs(None).unwrap_or(0.0) - own_cpu_start;
        let mut seen = worker_cpu.borrow_mut();
        for pid in workers {
            let last = seen.entry(*pid).or_default();
            if let Some(cpu) = child::cpu_secs(Some(*pid)) {
                *last = last.max(cpu);
            }
            load_cpu += *last;
        }
        let scrape = child_scrape.lock().ok().and_then(|s| *s);
        Sample {
            t: epoch.elapsed().as_secs_f64(),
            connected: progress.connected,
            connects: progress.connects,
            acked: progress.acked,
            deliveries: progress.deliveries,
            errors: progress.errors,
            server: servers.sample(),
            server_tasks: match servers.cluster() {
                Some(c) => c.tasks(),
                None => scrape.and_then(|s| s.tasks),
            },
            store_memory: scrape.and_then(|s| s.store_memory),
            disk_bytes: servers.disk_bytes(),
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
                        let p = ctx.records.progress();
                        let s = take_sample(&p, &[]);
                        publish(&s, &p);
                        samples.push(s);
                        Some(vec![report])
                    }
                    _ = tokio::time::sleep(interval) => {
                        let p = ctx.records.progress();
                        start_faults(p.load_start_secs);
                        let s = take_sample(&p, &[]);
                        line.update(&s, p.p99_delivery_ms);
                        publish(&s, &p);
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
                // The faults count from when every shard's load started.
                if progress.len() == workers.len()
                    && progress.values().all(|q| q.load_start_secs.is_some())
                {
                    start_faults(
                        progress
                            .values()
                            .filter_map(|q| q.load_start_secs)
                            .reduce(f64::max),
                    );
                }
                for q in progress.values() {
                    p.merge(q);
                }
                let pids: Vec<u32> = workers.iter().map(Worker::pid).collect();
                let s = take_sample(&p, &pids);
                publish(&s, &p);
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

    if let Some(f) = faults {
        // A fault still under way when the load ended is cut short.
        f.abort();
    }
    // The server's last figures, then stop it and settle its data.
    let disk_end = servers.fresh_disk_bytes(Duration::from_secs(3));
    if let Some(c) = servers.cluster() {
        c.sample_nodes(epoch.elapsed().as_secs_f64()).await;
    }
    if let Some(t) = sampler {
        t.abort();
    }
    if let Some(t) = tasks_sampler {
        t.abort();
    }
    let server_end = servers.sample();
    let server_pid = servers.pid();
    let capacity = servers.capacity();
    let settle = servers.stop_and_settle(&scenario).await;

    let merged = records::merge(reports).map_err(|e| RunError::Shard {
        shard: 0,
        message: e.to_string(),
    })?;
    // The load's CPU when the last shard finished: settling the store (in this process,
    // for fjall) is not load.
    let load_cpu = if shards > 1 {
        worker_cpu_final
    } else {
        samples.last().map_or(0.0, |s| s.load_cpu_secs)
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
    let cluster = servers.cluster().map(|c| {
        let load_secs = (merged.load_end - merged.load_start).max(0.0);
        c.info(&crate::cluster::info::Figures {
            series: &merged.series,
            interval: scenario.run.sample_interval_secs,
            recoveries: &merged.recoveries,
            same_node: merged.counters.deliveries_same_node,
            cross_node: merged.counters.deliveries_cross_node,
            messages_acked: merged.counters.sends_acked,
            load_secs,
            run_secs: samples.last().map_or(0.0, |s| s.t),
            connections_peak: merged.counters.connected_peak,
        })
    });
    let inputs = report::Inputs {
        scenario: &scenario,
        scenario_file: &opts.scenario,
        overrides: &opts.overrides,
        started_ms,
        finished_ms: unix_ms(),
        wall_secs: wall.elapsed().as_secs_f64(),
        target_kind: if !servers.is_child() {
            "external"
        } else if servers.cluster().is_some_and(|c| !c.solo) {
            "cluster"
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
        settle: settle.as_ref(),
        idempotency_window: IDEMPOTENCY_WINDOW,
        load_cpu_secs: load_cpu,
        notes,
        node_connections: servers
            .cluster()
            .map_or_else(Vec::new, |c| c.node_connections()),
        cluster,
    };
    let (mut summary, data) = report::build(&inputs);
    gates::judge(&scenario, &mut summary, baseline.as_ref());
    report::write_all(&dir, &mut summary, &data).map_err(io_err(&dir))?;
    let summary = report::reread_files(&dir, summary).map_err(io_err(&dir))?;
    if let Some(d) = &dash {
        d.publish(
            "done",
            &Done {
                passed: summary.failures.is_empty(),
                failures: summary.failures.clone(),
                report: dir.display().to_string(),
            },
        );
    }
    Ok(RunOutcome { dir, summary })
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
        crate::checks::gated(&s)
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
