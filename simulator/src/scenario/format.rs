//! The scenario file's format: the sections a scenario TOML has, field by field, as
//! serde reads and writes them. Each section is its own type so a file may leave any of
//! them out; the values used then are in `defaults.rs`.

use serde::{Deserialize, Serialize};

pub use super::cluster::{Cluster, Fault, FaultKind, Routing};

/// A whole scenario. See `scenarios/README.md` for every knob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name: it names the report directory, so letters, digits, `-` and `_` only.
    pub name: String,
    /// What the scenario is for, in a sentence or two.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub population: Population,
    #[serde(default)]
    pub traffic: Traffic,
    #[serde(default)]
    pub contacts: Contacts,
    #[serde(default)]
    pub groups: Groups,
    #[serde(default)]
    pub churn: Churn,
    #[serde(default)]
    pub run: Run,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub gates: Gates,
    /// How `chat-sim capacity` searches for what one node sustains (ignored by `run`).
    #[serde(default)]
    pub capacity: Capacity,
    /// Several server nodes instead of one.
    #[serde(default)]
    pub cluster: Cluster,
    /// What the run breaks, and when.
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// Who is simulated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Population {
    /// The source design's daily active users (500 M) or any other real-world figure.
    pub daily_active_users: u64,
    /// Share of `daily_active_users` that is simulated: users = round(DAU × scale).
    pub scale: f64,
    /// Mean devices per user; each user has ⌊mean⌋ or ⌈mean⌉ devices, each a WebSocket.
    pub devices_per_user: f64,
    /// The device kinds and how often each reads history.
    pub device_kinds: Vec<DeviceKind>,
}

/// A kind of device (phone, desktop, web …) with its reading habits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceKind {
    /// Short name, part of the device id: letters, digits, `-`, `_`.
    pub name: String,
    /// Relative share of devices of this kind.
    pub share: f64,
    /// History page reads per device per simulated day.
    pub history_reads_per_day: f64,
    /// Messages per history page (1..=200).
    pub history_page_size: u32,
}

/// How much is written and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traffic {
    /// Messages each user sends per simulated day (the source design: 40).
    pub messages_per_user_per_day: f64,
    /// Time compression: one simulated day lasts this many real seconds.
    pub day_seconds: f64,
    /// Presence pulls (`GET /v1/presence` for the user's contacts) per user per simulated day.
    pub presence_pulls_per_user_per_day: f64,
    pub message_size: MessageSize,
}

/// The shape of message body sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeDistribution {
    /// Every body is `mean_bytes` long.
    Fixed,
    /// Uniform between `min_bytes` and `2 × mean − min` (clamped to `max_bytes`).
    Uniform,
    /// Log-normal with the given `sigma`, scaled so the mean is `mean_bytes`; clamped.
    Lognormal,
}

/// Message body sizes in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageSize {
    pub distribution: SizeDistribution,
    /// Mean body size (the source design: 100 B).
    pub mean_bytes: f64,
    /// Spread of the log-normal distribution (ignored by the others).
    pub sigma: f64,
    pub min_bytes: u32,
    pub max_bytes: u32,
}

/// Who talks to whom: a skewed contact graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Contacts {
    /// Contacts each user writes to (the graph adds the reverse edges too).
    pub contacts_per_user: u32,
    /// How strongly a user prefers its first contacts: weight of the k-th ∝ 1/k^s.
    pub zipf_exponent: f64,
    /// How strongly some users are everyone's contact: a user of popularity rank r is
    /// picked as a contact with weight ∝ 1/r^s (0 = uniform).
    pub popularity_exponent: f64,
    /// Share of each user's messages sent as crossing pairs: the user and its partner
    /// write to each other at the same intended instant (the source design's M1/M2 case).
    pub crossing_share: f64,
}

/// Group chats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Groups {
    /// Share of messages sent to a group instead of a contact.
    pub share: f64,
    /// Groups each user belongs to, on average.
    pub groups_per_user: f64,
    /// Members per group, creator included: uniform in min..=max.
    pub min_size: u32,
    pub max_size: u32,
    /// Fail the run when the server does not serve groups (otherwise the report says the
    /// group share was sent as direct messages).
    pub required: bool,
}

/// Disconnects, offline periods and reconnect storms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    /// Random disconnects per device per simulated day.
    pub disconnects_per_device_per_day: f64,
    /// Offline period after a random disconnect, real seconds, uniform in min..=max.
    pub offline_secs_min: f64,
    pub offline_secs_max: f64,
    /// Reconnect storms: a share of all devices drop at once and come back together.
    pub storms: Vec<Storm>,
}

/// One reconnect storm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storm {
    /// Seconds after the load started.
    pub at_secs: f64,
    /// Share of devices that drop.
    pub share: f64,
    /// How long they stay away before all reconnecting at once.
    pub offline_secs: f64,
}

/// How long and how the run goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Run {
    /// Seconds at full load after the ramp-up.
    pub duration_secs: u64,
    /// Seconds over which users are started (Goose's hatch rate = users / ramp-up).
    pub ramp_up_secs: u64,
    /// Seconds between two rows of the time series and two progress updates.
    pub sample_interval_secs: f64,
    /// Longest wait after the load for answers still on their way before the final sync.
    pub drain_secs: f64,
    /// Seeds every random choice; the same seed gives the same graph and schedule.
    pub seed: u64,
    /// Worker processes that share the users; 0 = as many as the host's open-file limit
    /// requires (one when everything fits in this process).
    pub workers: u32,
    /// WebSockets one process may hold before users are split across workers (the hosts
    /// cap a process at 20 000 open files; keep a margin for everything else).
    pub max_devices_per_process: u32,
    /// Seconds a request (send, sync, history, connect) may take before it counts as failed.
    pub request_timeout_secs: f64,
    /// First user id minus one. Absent: 0 against the server this run starts, a
    /// time-derived base against `--target` so runs do not share users.
    pub user_id_base: Option<u64>,
}

/// The server the run starts itself (ignored with `--target`, except the node figures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// `fjall` (a fresh directory inside the report), `memory`, or any `--store` string
    /// the server accepts (`fjall:PATH`, `postgres://…`, `cql://…` pass through).
    pub store: String,
    /// The source design's connections per chat server, for the real-world figures.
    pub connections_per_node: u64,
    /// The server's connection cap; 0 keeps its default.
    pub max_connections: u64,
    /// Per-user send rate limit of the server (sends/s); 0 turns it off.
    pub send_rate: u32,
    /// Burst above the send rate; 0 = twice the rate.
    pub send_burst: u32,
    /// Frames a device's outgoing queue holds before the server cuts it off.
    pub device_queue: u32,
    /// Runtime threads of each server the run starts (its `--workers`; 0: one per core).
    /// One by default: the server shares the host with the load generator, and at a node's
    /// light per-connection load one thread spends the fewest wake-ups per message (extra
    /// threads wake each other to look for work).
    pub workers: u32,
    /// Whether this run loads one node to the design's per-node load, so that the message
    /// rate and connections it held may stand for a node's capacity in the capacity plan.
    /// A run that is not (a smoke test, a correctness scenario) offers far less than a
    /// node sustains; its rate and connections are left out of the calibration and the
    /// plan keeps the design's assumptions for them.
    pub capacity_run: bool,
}

/// Which checks must pass: all of them, none, or a list of names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CheckSelection {
    /// `"all"` or `"none"`.
    Word(String),
    /// Check names: `order`, `gaps`, `exactly_once`, `no_phantoms`, `consistency`.
    List(Vec<String>),
}

/// Thresholds a run must meet; any miss exits non-zero with one line per failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gates {
    pub p50_send_to_sent_ms: Option<f64>,
    pub p99_send_to_sent_ms: Option<f64>,
    pub p50_send_to_delivery_ms: Option<f64>,
    pub p99_send_to_delivery_ms: Option<f64>,
    pub p999_send_to_delivery_ms: Option<f64>,
    pub p99_send_to_delivered_ms: Option<f64>,
    pub p99_history_ms: Option<f64>,
    pub p99_reconnect_ms: Option<f64>,
    /// Failed requests (sends, reads, reconnects, pulls) over all requests.
    pub max_error_rate: Option<f64>,
    /// Acknowledged sends over intended sends (the server kept up with the schedule).
    pub min_sent_ratio: Option<f64>,
    /// Bytes on disk per stored message.
    pub max_bytes_per_message: Option<f64>,
    /// The server's mean CPU over the load, in percent of one core (200 = two cores).
    pub max_server_cpu_percent: Option<f64>,
    /// The server's peak resident memory, in MiB.
    pub max_server_rss_mib: Option<f64>,
    /// The slowest reconnect → caught up of any device whose connection a fault dropped,
    /// ms (a cluster run with faults).
    pub max_fault_recovery_ms: Option<f64>,
    /// Growth per minute over the second half of the steady load of the server's resident
    /// memory (MiB), open files and runtime tasks: bounds for a soak, where anything that
    /// keeps growing is a leak.
    pub max_rss_growth_mib_per_min: Option<f64>,
    pub max_fds_growth_per_min: Option<f64>,
    pub max_tasks_growth_per_min: Option<f64>,
    /// Which correctness checks must pass.
    pub checks: CheckSelection,
    /// Relative change against `--baseline` that counts as a regression (0.2 = 20 %).
    pub baseline_tolerance: f64,
}

/// The names of the correctness checks, in report order.
pub const CHECK_NAMES: [&str; 5] = [
    "order",
    "gaps",
    "exactly_once",
    "no_phantoms",
    "consistency",
];

/// `chat-sim capacity`: one or more searches, each raising one kind of load step by step
/// from the scenario's own until a gate fails, then narrowing down between the last step
/// that passed and the first that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capacity {
    /// Seconds of full load per step (the step's `run.duration_secs`); 0 keeps the
    /// scenario's.
    pub hold_secs: u64,
    /// Ramp-up per step; absent keeps the scenario's.
    pub ramp_up_secs: Option<u64>,
    /// Bisections between the last passing and the first failing step.
    pub refine: u32,
    /// Reruns of a failing step before it counts as failed: one stall on a shared host
    /// does not end a search. Every attempt keeps its report.
    pub confirm: u32,
    /// Host CPU (server and load generator together, percent of all the host's cores) at
    /// or above which a failing step is put down to the host rather than the server when
    /// the load generator used at least as much CPU as the server.
    pub max_host_cpu_percent: f64,
    /// The searches, in order; empty: one search growing users.
    pub search: Vec<CapacitySearch>,
    /// CI gate: the search must sustain at least this many messages/s per node.
    pub min_messages_per_sec: Option<f64>,
    /// CI gate: the search must sustain at least this many connections per node.
    pub min_connections: Option<u64>,
}

/// One capacity search: what grows, from where, by how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacitySearch {
    pub grow: Grow,
    /// The first step's level: users for `users` and `connections`, messages/s for
    /// `rate`; 0 = the scenario's own.
    pub start: f64,
    /// Added at each step; 0 = the first step's level (so steps 1×, 2×, 3× …).
    pub step: f64,
    /// Steps at most before narrowing down (refinements not counted).
    pub max_steps: u32,
}

/// What a capacity search raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grow {
    /// More users at the scenario's per-user activity: connections and message rate grow
    /// together.
    Users,
    /// The scenario's users with their day compressed further: every per-day activity,
    /// sends included, grows; connections stay.
    Rate,
    /// More users with the total message rate held at the scenario's: connections grow.
    Connections,
}

impl Grow {
    /// The name in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Grow::Users => "users",
            Grow::Rate => "rate",
            Grow::Connections => "connections",
        }
    }

    /// The unit of its level.
    pub fn unit(self) -> &'static str {
        match self {
            Grow::Users | Grow::Connections => "users",
            Grow::Rate => "messages/s",
        }
    }
}
