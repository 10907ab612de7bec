//! Scenario files: the TOML people edit and CI runs, how `--set key=value` overrides a
//! field by its dotted path, and the checks that turn a bad value into an error naming the
//! file and the field instead of a panic or a silently odd run.
//!
//! A scenario scales the source design down to one machine: `population` says how many of
//! the design's daily active users are simulated and with which devices, `traffic` how
//! often they write (per *simulated* day, with a day compressed into `day_seconds` real
//! seconds), `contacts` who writes to whom, `groups`, `churn`, `run`, `server` and `gates`
//! the rest. Every field has a default except `name`; `scenarios/README.md` documents
//! them all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a scenario could not be used.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: field `{field}`: {message}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("--set {assignment}: {message}")]
    Override { assignment: String, message: String },
}

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

impl Default for Population {
    fn default() -> Self {
        Population {
            daily_active_users: 500_000_000,
            scale: 2e-7,
            devices_per_user: 1.0,
            device_kinds: vec![DeviceKind::default()],
        }
    }
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

impl Default for DeviceKind {
    fn default() -> Self {
        DeviceKind {
            name: "phone".into(),
            share: 1.0,
            history_reads_per_day: 10.0,
            history_page_size: 50,
        }
    }
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

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            messages_per_user_per_day: 40.0,
            day_seconds: 60.0,
            presence_pulls_per_user_per_day: 0.0,
            message_size: MessageSize::default(),
        }
    }
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

impl Default for MessageSize {
    fn default() -> Self {
        MessageSize {
            distribution: SizeDistribution::Lognormal,
            mean_bytes: 100.0,
            sigma: 0.5,
            min_bytes: 8,
            max_bytes: 4096,
        }
    }
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

impl Default for Contacts {
    fn default() -> Self {
        Contacts {
            contacts_per_user: 8,
            zipf_exponent: 1.1,
            popularity_exponent: 0.6,
            crossing_share: 0.0,
        }
    }
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

impl Default for Groups {
    fn default() -> Self {
        Groups {
            share: 0.0,
            groups_per_user: 1.0,
            min_size: 3,
            max_size: 8,
            required: false,
        }
    }
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

impl Default for Churn {
    fn default() -> Self {
        Churn {
            disconnects_per_device_per_day: 0.0,
            offline_secs_min: 1.0,
            offline_secs_max: 5.0,
            storms: Vec::new(),
        }
    }
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

impl Default for Run {
    fn default() -> Self {
        Run {
            duration_secs: 20,
            ramp_up_secs: 3,
            sample_interval_secs: 1.0,
            drain_secs: 10.0,
            seed: 1,
            workers: 0,
            max_devices_per_process: 18_000,
            request_timeout_secs: 10.0,
            user_id_base: None,
        }
    }
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
    /// Whether this run loads one node to the design's per-node load, so that the message
    /// rate and connections it held may stand for a node's capacity in the capacity plan.
    /// A run that is not (a smoke test, a correctness scenario) offers far less than a
    /// node sustains; its rate and connections are left out of the calibration and the
    /// plan keeps the design's assumptions for them.
    pub capacity_run: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            store: "fjall".into(),
            connections_per_node: 50_000,
            max_connections: 0,
            send_rate: 0,
            send_burst: 0,
            device_queue: 1024,
            capacity_run: false,
        }
    }
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

impl Default for CheckSelection {
    fn default() -> Self {
        CheckSelection::Word("all".into())
    }
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
    /// Which correctness checks must pass.
    pub checks: CheckSelection,
    /// Relative change against `--baseline` that counts as a regression (0.2 = 20 %).
    pub baseline_tolerance: f64,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            p50_send_to_sent_ms: None,
            p99_send_to_sent_ms: None,
            p50_send_to_delivery_ms: None,
            p99_send_to_delivery_ms: None,
            p999_send_to_delivery_ms: None,
            p99_send_to_delivered_ms: None,
            p99_history_ms: None,
            p99_reconnect_ms: None,
            max_error_rate: Some(0.001),
            min_sent_ratio: None,
            max_bytes_per_message: None,
            checks: CheckSelection::default(),
            baseline_tolerance: 0.2,
        }
    }
}

/// The names of the correctness checks, in report order.
pub const CHECK_NAMES: [&str; 5] = [
    "order",
    "gaps",
    "exactly_once",
    "no_phantoms",
    "consistency",
];

impl Scenario {
    /// Reads a scenario file and applies `--set` overrides (`key=value`, dotted keys).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path, overrides)
    }

    /// Parses scenario text; `path` only names the source in errors.
    pub fn from_toml_str(
        text: &str,
        path: &Path,
        overrides: &[String],
    ) -> Result<Scenario, ScenarioError> {
        let parse_err = |message: String| ScenarioError::Parse {
            path: path.to_owned(),
            message,
        };
        // The file alone first, so its errors point at its own lines and fields.
        let scenario: Scenario = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        if overrides.is_empty() {
            scenario.validate(path)?;
            return Ok(scenario);
        }
        // Overrides apply to the scenario with every default filled in, so a list the
        // file left out (e.g. `population.device_kinds.0.share`) can be indexed too.
        let mut table = match toml::Value::try_from(&scenario) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::from_str(text).map_err(|e| parse_err(e.to_string()))?,
        };
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
        }
        let de = toml::Value::Table(table);
        let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            // Name the override that touched the failing field, if one did.
            let assignment = overrides
                .iter()
                .find(|a| {
                    a.split_once('=').is_some_and(|(k, _)| {
                        field.starts_with(k.trim()) || k.trim().starts_with(&field)
                    })
                })
                .cloned()
                .unwrap_or_else(|| overrides.join(" "));
            ScenarioError::Override {
                assignment,
                message: format!("field `{field}`: {message}"),
            }
        })?;
        scenario.validate(path)?;
        Ok(scenario)
    }

    /// Simulated users: round(DAU × scale).
    pub fn users(&self) -> u64 {
        (self.population.daily_active_users as f64 * self.population.scale).round() as u64
    }

    /// Sends per user per real second.
    pub fn sends_per_user_per_sec(&self) -> f64 {
        self.traffic.messages_per_user_per_day / self.traffic.day_seconds
    }

    /// Converts a per-simulated-day rate into a per-real-second rate.
    pub fn per_sec(&self, per_day: f64) -> f64 {
        per_day / self.traffic.day_seconds
    }

    /// Time compression: simulated seconds per real second.
    pub fn compression(&self) -> f64 {
        86_400.0 / self.traffic.day_seconds
    }

    /// Whether the named check must pass.
    pub fn check_gated(&self, name: &str) -> bool {
        match &self.gates.checks {
            CheckSelection::Word(w) => w == "all",
            CheckSelection::List(l) => l.iter().any(|n| n == name),
        }
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self, path: &Path) -> Result<(), ScenarioError> {
        let bad = |field: &str, message: String| {
            Err(ScenarioError::Field {
                path: path.to_owned(),
                field: field.to_owned(),
                message,
            })
        };
        let finite_at_least = |field: &str, v: f64, min: f64| {
            if v.is_finite() && v >= min {
                Ok(())
            } else {
                bad(
                    field,
                    format!("must be a finite number of at least {min}, got {v}"),
                )
            }
        };
        let share = |field: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                bad(field, format!("must be between 0 and 1, got {v}"))
            }
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "name",
                format!(
                    "must be 1-64 letters, digits, `-` or `_` (it names the report directory), got {:?}",
                    self.name
                ),
            );
        }
        let p = &self.population;
        if p.daily_active_users == 0 {
            return bad("population.daily_active_users", "must be at least 1".into());
        }
        if !(p.scale.is_finite() && p.scale > 0.0 && p.scale <= 1.0) {
            return bad(
                "population.scale",
                format!("must be more than 0 and at most 1, got {}", p.scale),
            );
        }
        let users = self.users();
        if users < 2 {
            return bad(
                "population.scale",
                format!("daily_active_users × scale gives {users} users; at least 2 are needed"),
            );
        }
        if users > 10_000_000 {
            return bad(
                "population.scale",
                format!("{users} simulated users is more than this tool drives (10 M)"),
            );
        }
        if !(p.devices_per_user.is_finite() && (1.0..=16.0).contains(&p.devices_per_user)) {
            return bad(
                "population.devices_per_user",
                format!("must be between 1 and 16, got {}", p.devices_per_user),
            );
        }
        if p.device_kinds.is_empty() {
            return bad(
                "population.device_kinds",
                "must list at least one kind".into(),
            );
        }
        let mut total_share = 0.0;
        for (i, k) in p.device_kinds.iter().enumerate() {
            let f = |name: &str| format!("population.device_kinds[{i}].{name}");
            if k.name.is_empty()
                || k.name.len() > 16
                || !k
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(
                    &f("name"),
                    format!("must be 1-16 letters, digits, `-` or `_`, got {:?}", k.name),
                );
            }
            finite_at_least(&f("share"), k.share, 0.0)?;
            total_share += k.share;
            finite_at_least(&f("history_reads_per_day"), k.history_reads_per_day, 0.0)?;
            if !(1..=200).contains(&k.history_page_size) {
                return bad(
                    &f("history_page_size"),
                    format!("must be between 1 and 200, got {}", k.history_page_size),
                );
            }
        }
        if total_share <= 0.0 {
            return bad("population.device_kinds", "the shares add up to 0".into());
        }
        let t = &self.traffic;
        finite_at_least(
            "traffic.messages_per_user_per_day",
            t.messages_per_user_per_day,
            0.0,
        )?;
        if !(t.day_seconds.is_finite() && t.day_seconds > 0.0) {
            return bad(
                "traffic.day_seconds",
                format!(
                    "must be a positive number of seconds, got {}",
                    t.day_seconds
                ),
            );
        }
        finite_at_least(
            "traffic.presence_pulls_per_user_per_day",
            t.presence_pulls_per_user_per_day,
            0.0,
        )?;
        let m = &t.message_size;
        if m.min_bytes == 0 || m.min_bytes > m.max_bytes {
            return bad(
                "traffic.message_size.min_bytes",
                format!(
                    "must be at least 1 and at most max_bytes ({}), got {}",
                    m.max_bytes, m.min_bytes
                ),
            );
        }
        if m.max_bytes > 65_000 {
            return bad(
                "traffic.message_size.max_bytes",
                format!(
                    "must be at most 65000 (a WebSocket frame is at most 64 KiB), got {}",
                    m.max_bytes
                ),
            );
        }
        if !(m.mean_bytes.is_finite()
            && m.mean_bytes >= f64::from(m.min_bytes)
            && m.mean_bytes <= f64::from(m.max_bytes))
        {
            return bad(
                "traffic.message_size.mean_bytes",
                format!(
                    "must be between min_bytes ({}) and max_bytes ({}), got {}",
                    m.min_bytes, m.max_bytes, m.mean_bytes
                ),
            );
        }
        if !(m.sigma.is_finite() && (0.0..=3.0).contains(&m.sigma)) {
            return bad(
                "traffic.message_size.sigma",
                format!("must be between 0 and 3, got {}", m.sigma),
            );
        }
        let c = &self.contacts;
        if c.contacts_per_user == 0 || u64::from(c.contacts_per_user) >= users {
            return bad(
                "contacts.contacts_per_user",
                format!(
                    "must be at least 1 and less than the {users} simulated users, got {}",
                    c.contacts_per_user
                ),
            );
        }
        finite_at_least("contacts.zipf_exponent", c.zipf_exponent, 0.0)?;
        finite_at_least("contacts.popularity_exponent", c.popularity_exponent, 0.0)?;
        share("contacts.crossing_share", c.crossing_share)?;
        let g = &self.groups;
        share("groups.share", g.share)?;
        finite_at_least("groups.groups_per_user", g.groups_per_user, 0.0)?;
        if g.min_size < 2 || g.min_size > g.max_size {
            return bad(
                "groups.min_size",
                format!(
                    "must be at least 2 and at most max_size ({}), got {}",
                    g.max_size, g.min_size
                ),
            );
        }
        if g.max_size > 256 || u64::from(g.max_size) > users {
            return bad(
                "groups.max_size",
                format!(
                    "must be at most 256 (the protocol's default group limit) and at most the {users} users, got {}",
                    g.max_size
                ),
            );
        }
        let ch = &self.churn;
        finite_at_least(
            "churn.disconnects_per_device_per_day",
            ch.disconnects_per_device_per_day,
            0.0,
        )?;
        finite_at_least("churn.offline_secs_min", ch.offline_secs_min, 0.0)?;
        if !(ch.offline_secs_max.is_finite() && ch.offline_secs_max >= ch.offline_secs_min) {
            return bad(
                "churn.offline_secs_max",
                format!(
                    "must be at least offline_secs_min ({}), got {}",
                    ch.offline_secs_min, ch.offline_secs_max
                ),
            );
        }
        for (i, s) in ch.storms.iter().enumerate() {
            finite_at_least(&format!("churn.storms[{i}].at_secs"), s.at_secs, 0.0)?;
            share(&format!("churn.storms[{i}].share"), s.share)?;
            finite_at_least(
                &format!("churn.storms[{i}].offline_secs"),
                s.offline_secs,
                0.0,
            )?;
        }
        let r = &self.run;
        if r.duration_secs == 0 {
            return bad("run.duration_secs", "must be at least 1".into());
        }
        if r.duration_secs + r.ramp_up_secs > 7 * 86_400 {
            return bad(
                "run.duration_secs",
                "the run may last at most a week".into(),
            );
        }
        if !(r.sample_interval_secs.is_finite() && (0.1..=3600.0).contains(&r.sample_interval_secs))
        {
            return bad(
                "run.sample_interval_secs",
                format!(
                    "must be between 0.1 and 3600, got {}",
                    r.sample_interval_secs
                ),
            );
        }
        finite_at_least("run.drain_secs", r.drain_secs, 0.0)?;
        if r.max_devices_per_process < 10 {
            return bad("run.max_devices_per_process", "must be at least 10".into());
        }
        if r.workers > 64 {
            return bad(
                "run.workers",
                format!("must be at most 64, got {}", r.workers),
            );
        }
        if !(r.request_timeout_secs.is_finite() && r.request_timeout_secs > 0.0) {
            return bad(
                "run.request_timeout_secs",
                format!(
                    "must be a positive number of seconds, got {}",
                    r.request_timeout_secs
                ),
            );
        }
        let s = &self.server;
        if s.store.is_empty() {
            return bad(
                "server.store",
                "must name a store: fjall, memory or a --store string".into(),
            );
        }
        if s.connections_per_node == 0 {
            return bad("server.connections_per_node", "must be at least 1".into());
        }
        if s.device_queue == 0 {
            return bad("server.device_queue", "must be at least 1".into());
        }
        let gates = &self.gates;
        for (field, v) in [
            ("gates.p50_send_to_sent_ms", gates.p50_send_to_sent_ms),
            ("gates.p99_send_to_sent_ms", gates.p99_send_to_sent_ms),
            (
                "gates.p50_send_to_delivery_ms",
                gates.p50_send_to_delivery_ms,
            ),
            (
                "gates.p99_send_to_delivery_ms",
                gates.p99_send_to_delivery_ms,
            ),
            (
                "gates.p999_send_to_delivery_ms",
                gates.p999_send_to_delivery_ms,
            ),
            (
                "gates.p99_send_to_delivered_ms",
                gates.p99_send_to_delivered_ms,
            ),
            ("gates.p99_history_ms", gates.p99_history_ms),
            ("gates.p99_reconnect_ms", gates.p99_reconnect_ms),
            ("gates.max_bytes_per_message", gates.max_bytes_per_message),
        ] {
            if let Some(v) = v {
                finite_at_least(field, v, 0.0)?;
            }
        }
        if let Some(v) = gates.max_error_rate {
            share("gates.max_error_rate", v)?;
        }
        if let Some(v) = gates.min_sent_ratio {
            share("gates.min_sent_ratio", v)?;
        }
        finite_at_least("gates.baseline_tolerance", gates.baseline_tolerance, 0.0)?;
        match &gates.checks {
            CheckSelection::Word(w) if w == "all" || w == "none" => {}
            CheckSelection::Word(w) => {
                return bad(
                    "gates.checks",
                    format!("must be \"all\", \"none\" or a list of {CHECK_NAMES:?}, got {w:?}"),
                );
            }
            CheckSelection::List(list) => {
                for n in list {
                    if !CHECK_NAMES.contains(&n.as_str()) {
                        return bad(
                            "gates.checks",
                            format!("unknown check {n:?}; the checks are {CHECK_NAMES:?}"),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// Sets one dotted key in the TOML table. Intermediate tables are created; a number
/// segment indexes an array (`population.device_kinds.0.share=0.5`).
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ScenarioError> {
    let err = |message: String| ScenarioError::Override {
        assignment: assignment.to_owned(),
        message,
    };
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| err("expected key=value, e.g. run.duration_secs=10".into()))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(err(
            "the key must be a dotted path such as load.users".into()
        ));
    }
    let value = parse_value(raw.trim());
    let segments: Vec<&str> = key.split('.').collect();
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set_path(&mut root, &segments, value);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result.map_err(err)
}

/// Puts `value` at `segments` below `root`, creating missing tables on the way.
fn set_path(root: &mut toml::Value, segments: &[&str], value: toml::Value) -> Result<(), String> {
    let (last, parents) = segments.split_last().ok_or("empty key")?;
    let mut cursor = root;
    for seg in parents {
        cursor = step(cursor, seg)?;
    }
    match cursor {
        toml::Value::Table(t) => {
            t.insert((*last).to_owned(), value);
            Ok(())
        }
        toml::Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("`{last}` indexes a list: use a number"))?;
            let len = a.len();
            let slot = a
                .get_mut(i)
                .ok_or_else(|| format!("the list has {len} entries, no index {i}"))?;
            *slot = value;
            Ok(())
        }
        _ => Err(format!("`{last}` goes inside a value that is not a table")),
    }
}

fn step<'a>(v: &'a mut toml::Value, seg: &str) -> Result<&'a mut toml::Value, String> {
    match v {
        toml::Value::Table(t) => {
            if !t.contains_key(seg) {
                t.insert(seg.to_owned(), toml::Value::Table(toml::Table::new()));
            }
            t.get_mut(seg).ok_or_else(|| format!("no field `{seg}`"))
        }
        toml::Value::Array(a) => {
            let i: usize = seg
                .parse()
                .map_err(|_| format!("`{seg}` indexes a list: use a number"))?;
            let len = a.len();
            a.get_mut(i)
                .ok_or_else(|| format!("the list has {len} entries, no index {i}"))
        }
        _ => Err(format!("`{seg}` goes inside a value that is not a table")),
    }
}

/// A TOML value when the text is one (`10`, `0.5`, `true`, `"x"`, `[1, 2]`), else the
/// text as a string, so `--set server.store=memory` needs no quotes.
fn parse_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, overrides: &[&str]) -> Result<Scenario, ScenarioError> {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Scenario::from_toml_str(text, Path::new("test.toml"), &o)
    }

    #[test]
    fn minimal_scenario_takes_defaults() {
        let s = parse("name = \"x\"", &[]).unwrap();
        assert_eq!(s.users(), 100);
        assert_eq!(s.traffic.messages_per_user_per_day, 40.0);
        assert_eq!(s.traffic.message_size.mean_bytes, 100.0);
        assert!(s.check_gated("order"));
    }

    #[test]
    fn overrides_set_fields_by_dotted_path() {
        let s = parse(
            "name = \"x\"\n[run]\nduration_secs = 5\n",
            &[
                "run.duration_secs=9",
                "server.store=memory",
                "gates.p99_send_to_sent_ms=12.5",
                "population.device_kinds.0.share=2",
                "gates.checks=[\"order\", \"gaps\"]",
            ],
        )
        .unwrap();
        assert_eq!(s.run.duration_secs, 9);
        assert_eq!(s.server.store, "memory");
        assert_eq!(s.gates.p99_send_to_sent_ms, Some(12.5));
        assert_eq!(s.population.device_kinds[0].share, 2.0);
        assert!(s.check_gated("gaps"));
        assert!(!s.check_gated("consistency"));
    }

    #[test]
    fn unknown_keys_are_clear_errors() {
        let e = parse("name = \"x\"", &["run.durashun=3"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--set run.durashun=3") && e.contains("durashun"),
            "{e}"
        );
        let e = parse("name = \"x\"\n[run]\nfoo = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("test.toml") && e.contains("foo"), "{e}");
        let e = parse("name = \"x\"", &["novalue"]).unwrap_err().to_string();
        assert!(e.contains("key=value"), "{e}");
        let e = parse("name = \"x\"", &["run.duration_secs=soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("run.duration_secs"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            ("name = \"a b\"", "name"),
            (
                "name = \"x\"\n[population]\nscale = 2.0",
                "population.scale",
            ),
            (
                "name = \"x\"\n[population]\nscale = 1e-9",
                "population.scale",
            ),
            (
                "name = \"x\"\n[traffic]\nday_seconds = 0",
                "traffic.day_seconds",
            ),
            (
                "name = \"x\"\n[traffic.message_size]\nmean_bytes = 5000",
                "traffic.message_size.mean_bytes",
            ),
            (
                "name = \"x\"\n[groups]\nmin_size = 9\nmax_size = 4",
                "groups.min_size",
            ),
            ("name = \"x\"\n[gates]\nchecks = \"some\"", "gates.checks"),
            ("name = \"x\"\n[gates]\nchecks = [\"orde\"]", "gates.checks"),
            (
                "name = \"x\"\n[run]\nduration_secs = 0",
                "run.duration_secs",
            ),
            (
                "name = \"x\"\n[[population.device_kinds]]\nname = \"p\"\nhistory_page_size = 0",
                "history_page_size",
            ),
        ];
        for (text, field) in cases {
            let e = parse(text, &[]).unwrap_err().to_string();
            assert!(e.contains(field), "{text:?}: {e}");
        }
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let e = parse("name = ", &[]).unwrap_err().to_string();
        assert!(e.starts_with("test.toml"), "{e}");
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 5, "expected the five shipped scenarios, found {n}");
    }
}
