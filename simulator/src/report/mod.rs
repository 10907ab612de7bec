//! The report directory of a run: `summary.json` ([`json`]), `summary.md` ([`md`]), a
//! self-contained `report.html` ([`html`]), PNG plots ([`plots`]) and `timeseries.csv`
//! ([`csv`]); Goose's own HTML report and the child server's log sit beside them.
//!
//! [`build`] turns the merged measurements into the summary (figures, capacity plan,
//! gates); the writers only format it.

pub mod cluster_md;
pub mod costs;
pub mod csv;
pub mod html;
pub mod json;
pub mod limit;
pub mod md;
pub mod node_memory;
pub mod plots;
pub mod storage_plot;
pub mod trend;

use std::collections::BTreeMap;
use std::path::Path;

use estimation::figures::Figure;
use estimation::{Calibration, Inputs as PlanInputs, calibrate};

use self::json::*;
use crate::checks::{self, Check};
use crate::child::ProcSample;
use crate::clock::utc_string;
use crate::metrics::{Latency, LatencySummary};
use crate::records::{Merged, RunData, Sample};
use crate::scenario::Scenario;
use crate::storage::{self, Point};

/// Everything [`build`] reads.
pub struct Inputs<'a> {
    pub scenario: &'a Scenario,
    /// The scenario file as given, and its `--set` overrides.
    pub scenario_file: &'a Path,
    pub overrides: &'a [String],
    pub started_ms: u64,
    pub finished_ms: u64,
    pub wall_secs: f64,
    pub target_kind: &'a str,
    pub http_url: &'a str,
    pub store: &'a str,
    pub server_pid: Option<u32>,
    pub capacity: Option<u64>,
    pub users_requested: u64,
    pub users: u64,
    pub devices: u64,
    pub shards: u32,
    pub cap_note: Option<String>,
    pub merged: &'a Merged,
    pub samples: &'a [Sample],
    pub server_start: Option<ProcSample>,
    pub server_end: Option<ProcSample>,
    pub disk_start: Option<u64>,
    pub disk_end: Option<u64>,
    /// The store as the run left it and settled, when the run could measure it.
    pub settle: Option<&'a Result<storage::SettleOutcome, String>>,
    /// The store's idempotency window.
    pub idempotency_window: std::time::Duration,
    pub load_cpu_secs: f64,
    pub notes: Vec<String>,
    /// The cluster's figures, for a cluster run.
    pub cluster: Option<crate::cluster::info::ClusterInfo>,
    /// Its connections per node over time.
    pub node_connections: Vec<(String, Vec<(f64, f64)>)>,
}

/// One row of the time series: one sample interval.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub elapsed_s: f64,
    pub connected: Option<i64>,
    pub sends_per_sec: f64,
    pub acked_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub errors_per_sec: f64,
    pub delivery_p50_ms: Option<f64>,
    pub delivery_p99_ms: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    pub server_cpu_percent: Option<f64>,
    pub disk_bytes: Option<u64>,
    pub stored_messages: Option<u64>,
}

/// The time series: one row per interval from the first to the last with data.
pub fn rows(data: &RunData) -> Vec<Row> {
    let iv = data.interval;
    let last_sample = data.samples.last().map_or(0, |s| (s.t / iv) as u64);
    let last_bucket = data.series.buckets.keys().next_back().copied().unwrap_or(0);
    let n = last_sample.max(last_bucket) + 1;
    let mut rows: Vec<Row> = (0..n)
        .map(|i| Row {
            elapsed_s: i as f64 * iv,
            ..Row::default()
        })
        .collect();
    for (i, b) in &data.series.buckets {
        let Some(r) = rows.get_mut(*i as usize) else {
            continue;
        };
        r.sends_per_sec = b.sends as f64 / iv;
        r.acked_per_sec = b.acked as f64 / iv;
        r.deliveries_per_sec = b.deliveries as f64 / iv;
        r.errors_per_sec = b.errors as f64 / iv;
        if !b.delivery.is_empty() {
            r.delivery_p50_ms = Some(b.delivery.value_at_quantile(0.5) as f64 / 1000.0);
            r.delivery_p99_ms = Some(b.delivery.value_at_quantile(0.99) as f64 / 1000.0);
        }
    }
    let mut prev: Option<&Sample> = None;
    for s in &data.samples {
        let i = (s.t / iv) as usize;
        if let Some(r) = rows.get_mut(i) {
            r.connected = Some(s.connected);
            r.stored_messages = Some(s.acked);
            r.disk_bytes = s.disk_bytes;
            r.server_rss_bytes = s.server.map(|p| p.rss_bytes);
            if let (Some(p), Some(now)) = (prev.and_then(|p| p.server.map(|x| (p.t, x))), s.server)
                && s.t > p.0
            {
                r.server_cpu_percent = Some((now.cpu_secs - p.1.cpu_secs) / (s.t - p.0) * 100.0);
            }
        }
        prev = Some(s);
    }
    rows
}

/// Rate over the full-load window [load start + ramp-up, load end).
fn steady_rate(data: &RunData, ramp: f64, pick: fn(&crate::metrics::Bucket) -> u64) -> f64 {
    let iv = data.interval;
    let from = ((data.load_start + ramp) / iv).ceil() as u64;
    let to = (data.load_end / iv).floor() as u64;
    if to > from {
        let n: u64 = data
            .series
            .buckets
            .range(from..to)
            .map(|(_, b)| pick(b))
            .sum();
        return n as f64 / ((to - from) as f64 * iv);
    }
    let total: u64 = data.series.buckets.values().map(pick).sum();
    let span = (data.load_end - data.load_start).max(iv);
    total as f64 / span
}

fn feature(share_used: bool, supported: Option<bool>, created_ok: bool, what: &str) -> String {
    if !share_used {
        return "not used".into();
    }
    match supported {
        Some(true) if created_ok => "exercised".into(),
        Some(true) => format!("not exercised: no {what} could be set up"),
        Some(false) => format!("not exercised: the server lacks {what}"),
        None => format!("not exercised: {what} were not probed"),
    }
}

/// Computes the summary and the data the writers need.
pub fn build(i: &Inputs<'_>) -> (Summary, RunData) {
    let s = i.scenario;
    let m = i.merged;
    let c = &m.counters;
    let data = RunData {
        series: m.series.clone(),
        samples: i.samples.to_vec(),
        latency: m.latency.clone(),
        interval: s.run.sample_interval_secs,
        load_start: m.load_start,
        load_end: m.load_end,
        source_bytes_per_message: storage::SOURCE_BYTES_PER_MESSAGE,
        disk_start: i.disk_start,
        node_connections: i.node_connections.clone(),
    };
    let ramp = s.run.ramp_up_secs as f64;
    let msg_rate = steady_rate(&data, ramp, |b| b.acked);
    let delivery_rate = steady_rate(&data, ramp, |b| b.deliveries);
    let latency_ms: BTreeMap<String, Option<LatencySummary>> = Latency::ALL
        .iter()
        .map(|&l| {
            (
                l.key().to_owned(),
                m.latency.get(l).and_then(LatencySummary::of),
            )
        })
        .collect();
    let histograms = m
        .latency
        .encode()
        .into_iter()
        .map(|(k, v)| (k.key().to_owned(), v))
        .collect();
    let connections_peak = i
        .samples
        .iter()
        .map(|s| s.connected)
        .max()
        .unwrap_or(0)
        .max(c.connected_peak);
    let error_rate = if c.requests > 0 {
        c.request_errors as f64 / c.requests as f64
    } else {
        0.0
    };
    let per_user_real = s.traffic.messages_per_user_per_day / 86_400.0;
    let users_equiv = if per_user_real > 0.0 {
        msg_rate / per_user_real
    } else {
        0.0
    };
    let counters = serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|o| o.into_iter().collect())
        .unwrap_or_default();
    let load = LoadInfo {
        ramp_up_secs: s.run.ramp_up_secs,
        duration_secs: s.run.duration_secs,
        load_secs: (m.load_end - m.load_start).max(0.0),
        intended_sends_per_sec: i.users as f64 * s.sends_per_user_per_sec(),
        sends_due: c.sends_due,
        sends_written: c.sends_written,
        messages_acknowledged: c.sends_acked,
        messages_per_sec: msg_rate,
        deliveries: c.deliveries_live + c.deliveries_catch_up,
        deliveries_per_sec: delivery_rate,
        sent_ratio: (c.sends_due > 0).then(|| c.sends_acked as f64 / c.sends_due as f64),
        requests: c.requests,
        request_errors: c.request_errors,
        error_rate,
        connections_peak,
        counters,
    };
    let gated = checks::gated(s);
    let results: Vec<CheckInfo> = Check::ALL
        .iter()
        .map(|&ch| CheckInfo {
            name: ch.name().into(),
            description: ch.describe().into(),
            passed: m.checks.passed(ch),
            gated: gated.contains(&ch),
            faults: m.checks.count(ch),
            examples: m.checks.examples.get(&ch).cloned().unwrap_or_default(),
        })
        .collect();
    let anomalies = checks::Anomaly::ALL
        .iter()
        .map(|&k| AnomalyInfo {
            kind: k.name().into(),
            description: k.describe().into(),
            count: m.checks.anomalies_of(k),
            examples: m
                .checks
                .anomaly_examples
                .get(&k)
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    let checks = ChecksInfo {
        passed: results.iter().all(|r| r.passed),
        results,
        anomalies,
        messages_checked: m.checks.messages_checked,
        devices_checked: m.checks.devices_checked,
        entries_checked: m.checks.entries_checked,
        conversations_checked: m.checks.conversations_checked,
        crossing_sends: c.crossing_sends,
    };
    let features = FeaturesInfo {
        groups: feature(
            s.groups.share > 0.0,
            m.groups_supported,
            m.groups_created > 0,
            "groups",
        ),
        presence: feature(
            s.traffic.presence_pulls_per_user_per_day > 0.0,
            m.presence_supported,
            true,
            "presence",
        ),
        groups_created: m.groups_created,
        groups_failed: m.groups_failed,
    };
    let points: Vec<Point> = i
        .samples
        .iter()
        .filter_map(|x| {
            x.disk_bytes.map(|b| Point {
                messages: x.acked as f64,
                bytes: b as f64,
            })
        })
        .collect();
    let disk = storage::Disk {
        start: i.disk_start,
        end: i.disk_end,
        points: &points,
    };
    let storage = storage::figures(
        i.store,
        disk,
        c.sends_acked,
        m.body_bytes_acked,
        i.settle,
        i.idempotency_window,
    );
    // The server this run started: one process, or every node of a cluster added up.
    let measured = i.server_pid.is_some() || i.cluster.is_some();
    let server = measured.then(|| {
        let pid = i.server_pid;
        let start = i.server_start.unwrap_or_default();
        let end = i.server_end.unwrap_or_default();
        let peak_rss = i
            .samples
            .iter()
            .filter_map(|x| x.server.map(|p| p.rss_bytes))
            .chain([start.rss_bytes, end.rss_bytes])
            .max()
            .unwrap_or(0);
        // The sample holding the most connections (the latest of equals).
        let at_peak = i
            .samples
            .iter()
            .filter(|x| x.server.is_some())
            .max_by_key(|x| (x.connected, (x.t * 1000.0) as u64));
        let per_conn = at_peak.and_then(|x| {
            let rss = x.server?.rss_bytes as f64;
            (x.connected > 0 && rss > start.rss_bytes as f64)
                .then(|| (rss - start.rss_bytes as f64) / x.connected as f64)
        });
        let cpu = (end.cpu_secs - start.cpu_secs).max(0.0);
        ServerInfo {
            pid,
            cpu_secs: cpu,
            cpu_percent_mean: if load.load_secs > 0.0 {
                cpu / load.load_secs * 100.0
            } else {
                0.0
            },
            rss_bytes_start: start.rss_bytes,
            rss_bytes_peak: peak_rss,
            rss_bytes_end: end.rss_bytes,
            connections_peak,
            memory_bytes_per_connection: per_conn,
            cpu_us_per_message: (c.sends_acked > 0).then(|| cpu * 1e6 / c.sends_acked as f64),
            costs: costs::ServerCosts::fit(i.samples, m.load_start, m.load_end),
            node_memory: node_memory::NodeMemory::fit(i.samples, m.load_start, m.load_end),
            // The second half of the steady load: caches, memtables and the store
            // writer's counters fill up to their bounds in the first.
            trend: trend::resources(
                i.samples,
                (m.load_start + s.run.ramp_up_secs as f64 + m.load_end) / 2.0,
                m.load_end,
            ),
        }
    });
    let sim_per_msg = (c.sends_acked > 0).then(|| i.load_cpu_secs * 1e6 / c.sends_acked as f64);
    let load_limit = limit::LoadLimit::judge(
        i.samples,
        m.load_start + ramp,
        m.load_end,
        crate::load_threads(),
        i.shards,
        num_cpus(),
    );
    let simulator = SimulatorInfo {
        cpu_secs: i.load_cpu_secs,
        cpu_us_per_message: sim_per_msg,
        cpu_per_message_vs_server: sim_per_msg
            .zip(server.as_ref().and_then(|x| x.cpu_us_per_message))
            .filter(|&(_, sv)| sv > 0.0)
            .map(|(sim, sv)| sim / sv),
        load_limit,
    };
    let mut notes = i.notes.clone();
    if let Some(l) = load_limit.filter(|l| l.limited) {
        notes.insert(0, l.describe());
    }
    if i.target_kind == "child" {
        notes.push(format!(
            "the server ran as a child process on this machine (store `{}`), sharing its {} CPUs with the load; runtime threads: {} in the server, {} in each load process",
            i.store,
            num_cpus(),
            threads(s.server.workers as usize),
            threads(crate::load_threads())
        ));
    }
    notes.push(format!(
        "time compressed {:.0}×: a simulated day lasted {} s, so each user sent {:.3} messages/s; {:.0} messages/s equal the real-time load of {:.0} users ({:.2} source-design nodes of {} users)",
        s.compression(),
        s.traffic.day_seconds,
        s.sends_per_user_per_sec(),
        msg_rate,
        users_equiv,
        users_equiv / s.server.connections_per_node as f64,
        s.server.connections_per_node
    ));
    if s.server.capacity_run {
        notes.push(
            "a capacity run: the calibration's messages_per_sec_per_node and connections_per_node are what this run offered and the node kept up with inside its gates; they are lower bounds of what a node sustains, so the plan from them is conservative unless the run pushed the node to its limits"
                .into(),
        );
    } else {
        notes.push(format!(
            "not a capacity run (`server.capacity_run = false`): the {msg_rate:.0} messages/s and {connections_peak} connections it offered are far below what one node sustains, so the calibration leaves them out and the capacity plan keeps the design's {} connections per server; only bytes per message and memory per connection are taken from this run",
            s.server.connections_per_node
        ));
    }
    let summary = Summary {
        schema_version: SCHEMA_VERSION,
        tool: format!("chat-sim {}", env!("CARGO_PKG_VERSION")),
        scenario: s.name.clone(),
        description: s.description.clone(),
        scenario_file: i.scenario_file.display().to_string(),
        overrides: i.overrides.to_vec(),
        scenario_resolved: serde_json::to_value(s).unwrap_or_default(),
        started_at: utc_string(i.started_ms),
        finished_at: utc_string(i.finished_ms),
        wall_secs: i.wall_secs,
        passed: false,
        failures: Vec::new(),
        target: TargetInfo {
            kind: i.target_kind.into(),
            url: i.http_url.into(),
            store: i.store.into(),
            pid: i.server_pid,
            connection_capacity: i.capacity,
        },
        host: HostInfo {
            cpus: num_cpus(),
            open_files_limit: crate::child::open_files_limit(None),
            load_processes: i.shards,
            max_devices_per_process: s.run.max_devices_per_process,
            capped: i.cap_note.is_some(),
            cap_note: i.cap_note.clone(),
        },
        scale: ScaleInfo {
            daily_active_users: s.population.daily_active_users,
            scale: s.population.scale,
            users_requested: i.users_requested,
            users_simulated: i.users,
            devices: i.devices,
            messages_per_user_per_day: s.traffic.messages_per_user_per_day,
            day_seconds: s.traffic.day_seconds,
            time_compression: s.compression(),
            sends_per_user_per_sec: s.sends_per_user_per_sec(),
            connections_per_node_source: s.server.connections_per_node,
            real_world_users_by_message_rate: users_equiv,
            real_world_nodes_by_message_rate: users_equiv / s.server.connections_per_node as f64,
            share_of_node_connections: connections_peak as f64
                / s.server.connections_per_node as f64,
        },
        load,
        latency_ms,
        histograms,
        checks,
        features,
        storage,
        server,
        simulator,
        close_codes: m
            .close_codes
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        goose: GooseInfo {
            report_files: Vec::new(),
            requests: m.goose.clone(),
        },
        calibration: Calibration::default(),
        capacity_plan: serde_json::Value::Null,
        capacity_table: Vec::new(),
        gates: Vec::new(),
        baseline: None,
        notes,
        cluster: i.cluster.clone(),
        files: Vec::new(),
    };
    (summary, data)
}

/// Fills in the calibration this run yields and the capacity plan from it. The gates call
/// it once they know whether they passed, as the calibration records that.
pub fn plan(summary: &mut Summary, s: &Scenario, gates_passed: bool) {
    // A cluster's per-node figures are its totals over its nodes.
    let nodes = summary.cluster.as_ref().map_or(1, |c| c.nodes.max(1));
    let msg_rate = summary.load.messages_per_sec / f64::from(nodes);
    let connections_peak = summary.load.connections_peak / i64::from(nodes);
    let settled = summary.storage.settled.as_ref();
    summary.calibration = Calibration {
        bytes_per_message_on_disk: summary.storage.bytes_per_message,
        settled_bytes_per_message: settled.and_then(|f| f.bytes_per_message),
        idempotency_bytes_per_message: settled.and_then(|f| f.idempotency_bytes_per_message),
        idempotency_window_secs: settled.map(|_| summary.storage.idempotency_window_secs),
        messages_per_sec_per_node: (s.server.capacity_run && msg_rate > 0.0).then_some(msg_rate),
        connections_per_node: (s.server.capacity_run && connections_peak > 0)
            .then_some(connections_peak as u64),
        memory_bytes_per_connection: summary
            .server
            .as_ref()
            .and_then(ServerInfo::plan_memory_per_connection),
        memory_bytes_per_node: summary
            .server
            .as_ref()
            .and_then(ServerInfo::plan_memory_per_node),
        gates_passed: Some(gates_passed),
        node_cpus: (summary.target.kind != "external").then_some(summary.host.cpus),
        cpu_us_per_message: summary
            .server
            .as_ref()
            .and_then(|x| x.cpu_us_per_message)
            .filter(|v| *v > 0.0),
        nodes_measured: summary.cluster.as_ref().map(|c| c.nodes),
        ..Calibration::default()
    };
    let est = estimation::Summary {
        scenario: Some(s.name.clone()),
        calibration: summary.calibration.clone(),
    };
    match calibrate(&PlanInputs::source_design(), &est) {
        Ok(plan) => {
            summary.capacity_table = plan_rows(&plan);
            summary.capacity_plan = serde_json::to_value(&plan).unwrap_or_default();
        }
        Err(e) => summary
            .notes
            .push(format!("no capacity plan from this run: {e}")),
    }
}

/// The plan as rows: each figure as the document gives it, the source design's exact
/// value and the measured plan's.
pub fn plan_rows(plan: &estimation::CalibratedPlan) -> Vec<PlanRow> {
    Figure::ALL
        .iter()
        .map(|&f| {
            let src = f.value(&plan.assumed);
            let run = f.value(&plan.measured);
            let fmt = |v: Option<f64>| v.map_or("—".to_owned(), |v| f.quantity().format(v));
            PlanRow {
                figure: f.name().into(),
                key: f.key().into(),
                document: estimation::document::document_figure(f).map(|d| d.describe()),
                source_design: src,
                source_design_text: fmt(src),
                this_run: run,
                this_run_text: fmt(run),
                ratio: plan.ratio(f),
            }
        })
        .collect()
}

pub fn num_cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Writes every file of the report.
pub fn write_all(dir: &Path, summary: &mut Summary, data: &RunData) -> std::io::Result<()> {
    let mut goose: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("goose-report"))
        .collect();
    goose.sort();
    summary.goose.report_files = goose;
    let summary = &*summary;
    let rows = rows(data);
    std::fs::write(dir.join("timeseries.csv"), csv::render(&rows))?;
    let plots = plots::render_all(&dir.join("plots"), summary, data, &rows)?;
    std::fs::write(dir.join("summary.md"), md::render(summary, &plots))?;
    std::fs::write(
        dir.join("report.html"),
        html::render(summary, &plots, &dir.join("plots"))?,
    )?;
    write_json(dir, summary)
}

fn write_json(dir: &Path, summary: &Summary) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(summary).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("summary.json"), text + "\n")
}

/// Lists the report's files into the summary and writes `summary.json` again.
pub fn reread_files(dir: &Path, mut summary: Summary) -> std::io::Result<Summary> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_dir() {
            for f in std::fs::read_dir(e.path())? {
                files.push(format!("{name}/{}", f?.file_name().to_string_lossy()));
            }
        } else {
            files.push(name);
        }
    }
    files.sort();
    summary.files = files;
    write_json(dir, &summary)?;
    Ok(summary)
}

/// A runtime's thread count as set (0: one per core).
fn threads(n: usize) -> String {
    if n == 0 {
        format!("{} (one per core)", num_cpus())
    } else {
        n.to_string()
    }
}
