//! `summary.json`: every figure of a run in one document whose shape is fixed by
//! `simulator/schema/summary.schema.json` (checked by the tests).
//!
//! Its `scenario` and `calibration` fields are exactly what `chat-estimate --calibrate`
//! reads (`estimation::Summary`); `capacity_plan` holds the plan the estimation crate
//! computes from them, beside the source design's.

use std::collections::BTreeMap;

use estimation::Calibration;
use serde::Serialize;

use crate::metrics::LatencySummary;
use crate::records::GooseRequestSummary;
use crate::storage::StorageFigures;

/// The version of this document's shape.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub tool: String,
    /// The scenario's name (read by `chat-estimate --calibrate`).
    pub scenario: String,
    pub description: String,
    pub scenario_file: String,
    pub overrides: Vec<String>,
    /// The scenario after overrides, as the run used it.
    pub scenario_resolved: serde_json::Value,
    pub started_at: String,
    pub finished_at: String,
    pub wall_secs: f64,
    /// Whether every gate (checks included) passed.
    pub passed: bool,
    /// One line per failed gate, as printed.
    pub failures: Vec<String>,
    pub target: TargetInfo,
    pub host: HostInfo,
    pub scale: ScaleInfo,
    pub load: LoadInfo,
    /// Latency percentiles by measurement (milliseconds; null when nothing was measured).
    pub latency_ms: BTreeMap<String, Option<LatencySummary>>,
    /// The same histograms in HdrHistogram V2 deflate format, base64 (microseconds).
    pub histograms: BTreeMap<String, String>,
    pub checks: ChecksInfo,
    pub features: FeaturesInfo,
    pub storage: StorageFigures,
    pub server: Option<ServerInfo>,
    pub simulator: SimulatorInfo,
    /// Close codes of connections the server ended (not the scenario's own disconnects).
    pub close_codes: BTreeMap<String, u64>,
    pub goose: GooseInfo,
    /// What this run measured, in the form `chat-estimate --calibrate` reads.
    pub calibration: Calibration,
    /// The capacity plan at the source design's full scale from this run's measurements,
    /// beside the source design's own (estimation crate, `calibrate`).
    pub capacity_plan: serde_json::Value,
    /// The same plan as rows: the document's figure, the exact source figure, this run's.
    pub capacity_table: Vec<PlanRow>,
    pub gates: Vec<GateResult>,
    pub baseline: Option<BaselineInfo>,
    pub notes: Vec<String>,
    /// A cluster run's nodes, cross-node deliveries and faults; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::info::ClusterInfo>,
    /// Files of the report directory.
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// `child` (the server this run started) or `external` (`--target`).
    pub kind: String,
    pub url: String,
    pub store: String,
    pub pid: Option<u32>,
    /// Connections the server can hold (child only).
    pub connection_capacity: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub cpus: u64,
    pub open_files_limit: Option<u64>,
    /// Processes that ran users (1 = this one).
    pub load_processes: u32,
    pub max_devices_per_process: u32,
    /// Whether the host's limits made the run smaller than the scenario asked.
    pub capped: bool,
    pub cap_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleInfo {
    pub daily_active_users: u64,
    pub scale: f64,
    pub users_requested: u64,
    pub users_simulated: u64,
    pub devices: u64,
    pub messages_per_user_per_day: f64,
    pub day_seconds: f64,
    /// Simulated seconds per real second.
    pub time_compression: f64,
    pub sends_per_user_per_sec: f64,
    pub connections_per_node_source: u64,
    /// Real-time users whose 40-a-day (or the scenario's) messages equal this run's
    /// acknowledged message rate.
    pub real_world_users_by_message_rate: f64,
    /// Source-design nodes (connections_per_node users each) that message rate equals.
    pub real_world_nodes_by_message_rate: f64,
    /// Peak connections as a share of one source-design node's connections.
    pub share_of_node_connections: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadInfo {
    pub ramp_up_secs: u64,
    pub duration_secs: u64,
    /// Seconds from the first user's start to the last user's stop.
    pub load_secs: f64,
    /// The scenario's send rate at full load, all users.
    pub intended_sends_per_sec: f64,
    pub sends_due: u64,
    pub sends_written: u64,
    pub messages_acknowledged: u64,
    /// Acknowledged messages per second at full load (after the ramp-up).
    pub messages_per_sec: f64,
    /// First arrivals on devices (live and catch-up).
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    /// Acknowledged over intended sends.
    pub sent_ratio: Option<f64>,
    pub requests: u64,
    pub request_errors: u64,
    pub error_rate: f64,
    pub connections_peak: i64,
    /// Every counter, by name.
    pub counters: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckInfo {
    pub name: String,
    pub description: String,
    pub passed: bool,
    pub gated: bool,
    pub faults: u64,
    pub examples: Vec<String>,
}

/// One kind of anomaly in Jepsen's terms: how many, and examples.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyInfo {
    pub kind: String,
    pub description: String,
    pub count: u64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChecksInfo {
    pub passed: bool,
    pub results: Vec<CheckInfo>,
    /// The same faults by kind of anomaly, every kind listed (zero or not).
    pub anomalies: Vec<AnomalyInfo>,
    pub messages_checked: u64,
    pub devices_checked: u64,
    pub entries_checked: u64,
    pub conversations_checked: u64,
    pub crossing_sends: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeaturesInfo {
    /// `exercised`, `not used`, or `not exercised: <why>`.
    pub groups: String,
    pub presence: String,
    pub groups_created: u64,
    pub groups_failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// The server process; null for a cluster, whose figures add up every node's.
    pub pid: Option<u32>,
    pub cpu_secs: f64,
    /// Mean CPU use over the load, in percent of one core.
    pub cpu_percent_mean: f64,
    pub rss_bytes_start: u64,
    pub rss_bytes_peak: u64,
    pub rss_bytes_end: u64,
    pub connections_peak: i64,
    /// (RSS at peak connections − RSS before the load) / peak connections.
    pub memory_bytes_per_connection: Option<f64>,
    pub cpu_us_per_message: Option<f64>,
    /// CPU and memory split into a fixed part, a part per connection and a part per
    /// message, fitted from the samples; what `chat-sim validate` predicts from.
    pub costs: Option<super::costs::ServerCosts>,
    /// Memory per node and per connection with the store's memtables at their bound, when
    /// the server reports them (fjall): what the capacity plan sizes memory from.
    pub node_memory: Option<super::node_memory::NodeMemory>,
    /// Memory, open files, threads and tasks per minute over the second half of the
    /// steady load: ≈ 0 when nothing leaks.
    pub trend: Option<super::trend::ResourceTrend>,
}

impl ServerInfo {
    /// Memory per connection for a capacity plan: the fitted figure beside the store's
    /// memtables at their bound when the server reports them; otherwise RSS growth over
    /// connections, which then also carries what the run's messages filled.
    pub fn plan_memory_per_connection(&self) -> Option<f64> {
        match self.node_memory {
            Some(n) => Some(n.bytes_per_connection),
            None => self.memory_bytes_per_connection,
        }
    }

    /// Memory per node apart from its connections for a capacity plan, when the server
    /// reports its memtables ([`Self::plan_memory_per_connection`] is the other half).
    pub fn plan_memory_per_node(&self) -> Option<f64> {
        self.node_memory.map(|n| n.node_bytes)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SimulatorInfo {
    /// CPU of the load processes (this one and its workers), seconds.
    pub cpu_secs: f64,
    pub cpu_us_per_message: Option<f64>,
    /// Its CPU per message over the server's (at most 0.5 lets one machine load a node).
    pub cpu_per_message_vs_server: Option<f64>,
    /// Whether the load generator, not the server, was the limit (when sampled).
    pub load_limit: Option<super::limit::LoadLimit>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GooseInfo {
    pub report_files: Vec<String>,
    pub requests: Vec<GooseRequestSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    pub figure: String,
    pub key: String,
    pub document: Option<String>,
    pub source_design: Option<f64>,
    pub source_design_text: String,
    pub this_run: Option<f64>,
    pub this_run_text: String,
    pub ratio: Option<f64>,
}

/// One gate and how the run did.
#[derive(Debug, Clone, Serialize)]
pub struct GateResult {
    pub name: String,
    pub threshold: Option<f64>,
    pub value: Option<f64>,
    pub passed: bool,
    /// The failure line (`GATE FAILED: …`) or a short pass note.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineInfo {
    pub path: String,
    pub tolerance: f64,
    pub results: Vec<GateResult>,
}
