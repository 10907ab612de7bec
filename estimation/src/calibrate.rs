//! Calibration: the fields a simulator run writes to its `summary.json`, how
//! they are read and checked, and the measured capacity plan they give
//! beside the assumed one.
//!
//! # The `summary.json` calibration fields
//!
//! `chat-estimate --calibrate PATH` reads one object, `"calibration"`, from
//! the top level of the summary, plus an optional top-level `"scenario"`
//! name. Every other field is ignored, so the simulator may write as much
//! else as it likes. [`Summary`] and [`Calibration`] are the Rust form; a
//! simulator that depends on this crate can serialize them directly.
//!
//! | field | JSON type | meaning |
//! | --- | --- | --- |
//! | `scenario` | string, optional | name of the simulated scenario, echoed in the report |
//! | `calibration.version` | integer, optional (default 1) | format version; this build reads version [`CALIBRATION_VERSION`] |
//! | `calibration.bytes_per_message_on_disk` | number or null | bytes the store grew per message stored on one node (no replication) while the run went on, write-ahead log included; used only when the settled figure is absent |
//! | `calibration.settled_bytes_per_message` | number or null | bytes per stored message once the store settled (memtables flushed, compacted, write-ahead log excluded), indexes and inbox entries included, idempotency records excluded |
//! | `calibration.idempotency_bytes_per_message` | number or null | settled bytes of idempotency records per message: kept for one idempotency window, not for the retention |
//! | `calibration.idempotency_window_secs` | number or null | the idempotency window of the measured store, in seconds |
//! | `calibration.messages_per_sec_per_node` | number or null | messages per second one node accepted while staying inside its latency gates |
//! | `calibration.connections_per_node` | integer or null | concurrent connections one node held while staying inside its latency gates |
//! | `calibration.memory_bytes_per_connection` | number or null | resident memory per open connection on one node, in bytes |
//! | `calibration.memory_bytes_per_node` | number or null | resident memory of one node apart from its connections, in bytes: the process, the store's in-memory tables at their bound, its block cache; null when the run could not tell it apart (memory per connection then carries it) |
//! | `calibration.gates_passed` | boolean or null | whether the run stayed inside its latency gates |
//! | `calibration.capacity_limited_by` | string or null | what ended the capacity search that measured the per-node figures: `server` (a gate failed while the host had CPU to spare: the node's own limit), `load_generator` (the host's CPU was saturated with the load generator using as much as the server: a lower bound), `open_files` (the host's open-file cap: a lower bound), `search_range` (no step failed: a lower bound); null when the figures are not from a capacity search |
//! | `calibration.node_cpus` | integer or null | CPUs of the host the node ran on (shared with the load generator when it ran there too) |
//! | `calibration.cpu_us_per_message` | number or null | server CPU time per accepted message at the measured load, in microseconds |
//! | `calibration.nodes_measured` | integer or null | server nodes the per-node figures were measured on (a cluster's totals divided by its nodes); null: one server process |
//! | `calibration.scaling_efficiency` | number or null | per-node throughput on `nodes_measured` nodes over per-node throughput on one node, from a scaling run (1 = linear); the per-node figures already carry it |
//!
//! A measured field that is null or absent was not measured: the plan keeps
//! the assumption and says so. A measured field that is zero, negative or
//! not a number is an error. Sizes are bytes and rates are per second.
//!
//! # How the measurements replace assumptions
//!
//! * The storage overhead factor (bytes on disk ÷ the assumed message size,
//!   so bandwidth still uses the payload size while storage and shards use
//!   what the disk holds) comes from the **settled** figure when the run has
//!   one: `settled_bytes_per_message` for every message of the retention,
//!   plus the idempotency records of one window only —
//!   `idempotency_bytes_per_message × window ÷ retention` per message, since
//!   the store holds a window's worth of them at any time. Without a settled
//!   figure, `bytes_per_message_on_disk` (what the run saw, journal and all)
//!   is used, and the plan says it is transient. The run should send
//!   messages of the planned average size for the two to be comparable.
//! * `messages_per_sec_per_node` becomes the per-server message rate, so the
//!   chat tier is also sized for the peak message rate.
//! * `connections_per_node` replaces the connections per server. A run that
//!   did not push connections to the node's limit understates it, which
//!   makes the plan conservative.
//! * `memory_bytes_per_connection` gives memory per chat server and in total, and
//!   `memory_bytes_per_node`, when measured, adds to each chat server.
//! * `capacity_limited_by`, `node_cpus` and `cpu_us_per_message` change no figure; they
//!   qualify the per-node figures in the plan's warnings: anything but `server` means the
//!   per-node figures are lower bounds, so the plan's server counts are upper bounds.
//!
//! ```
//! use estimation::{Inputs, calibrate::{Summary, calibrate}};
//! let summary = Summary::from_json_str(r#"{
//!     "scenario": "steady",
//!     "latency_ms": {"p99": 40},
//!     "calibration": {
//!         "version": 1,
//!         "bytes_per_message_on_disk": 250.0,
//!         "messages_per_sec_per_node": 20000.0,
//!         "connections_per_node": 25000,
//!         "memory_bytes_per_connection": null,
//!         "gates_passed": true
//!     }
//! }"#).unwrap();
//! let plan = calibrate(&Inputs::source_design(), &summary).unwrap();
//! assert_eq!(plan.measured.servers, 20_000);
//! assert_eq!(plan.ratio(estimation::figures::Figure::Servers), Some(2.0));
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::figures::{Figure, Quantity};
use crate::model::{InputError, Inputs, Plan};

/// The calibration format version this build reads and writes.
pub const CALIBRATION_VERSION: u32 = 1;

/// The part of a simulator's `summary.json` that calibration reads.
///
/// Unknown fields are ignored when reading, so this can be read out of a
/// larger summary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Name of the simulated scenario, if the run had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// What the run measured.
    pub calibration: Calibration,
}

/// What one simulator run measured on one node. See the
/// [module documentation](self) for each field's meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Format version, [`CALIBRATION_VERSION`].
    #[serde(default = "current_version")]
    pub version: u32,
    /// Bytes on disk per stored message on one node (no replication) while the run
    /// went on: the transient figure, write-ahead log included.
    #[serde(default)]
    pub bytes_per_message_on_disk: Option<f64>,
    /// Bytes per stored message once the store settled, idempotency records excluded.
    #[serde(default)]
    pub settled_bytes_per_message: Option<f64>,
    /// Settled bytes of idempotency records per message.
    #[serde(default)]
    pub idempotency_bytes_per_message: Option<f64>,
    /// The measured store's idempotency window, in seconds.
    #[serde(default)]
    pub idempotency_window_secs: Option<f64>,
    /// Messages per second one node accepted inside its latency gates.
    #[serde(default)]
    pub messages_per_sec_per_node: Option<f64>,
    /// Concurrent connections one node held inside its latency gates.
    #[serde(default)]
    pub connections_per_node: Option<u64>,
    /// Resident memory per open connection, in bytes.
    #[serde(default)]
    pub memory_bytes_per_connection: Option<f64>,
    /// Resident memory of a node apart from its connections, in bytes.
    #[serde(default)]
    pub memory_bytes_per_node: Option<f64>,
    /// Whether the run stayed inside its latency gates.
    #[serde(default)]
    pub gates_passed: Option<bool>,
    /// What ended the capacity search that measured the per-node figures.
    #[serde(default)]
    pub capacity_limited_by: Option<CapacityLimit>,
    /// CPUs of the host the node ran on.
    #[serde(default)]
    pub node_cpus: Option<u64>,
    /// Server CPU time per accepted message at the measured load, in microseconds.
    #[serde(default)]
    pub cpu_us_per_message: Option<f64>,
    /// Server nodes the per-node figures were measured on (a cluster run's totals
    /// divided by its nodes); `None`: one server process.
    #[serde(default)]
    pub nodes_measured: Option<u32>,
    /// Per-node throughput on `nodes_measured` nodes over that on one node, from a
    /// scaling run: how far from linear adding nodes is.
    #[serde(default)]
    pub scaling_efficiency: Option<f64>,
}

/// What ended a capacity search: whether its per-node figures are the node's own limit
/// or lower bounds set by something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityLimit {
    /// A gate failed while the host had CPU to spare: the node's own limit.
    Server,
    /// The host's CPU was saturated and the load generator used at least as much of it as
    /// the server: the node would sustain more on a host of its own.
    LoadGenerator,
    /// The host's open-file cap bounded the connections before any gate failed.
    OpenFiles,
    /// No step of the search failed.
    SearchRange,
}

impl CapacityLimit {
    /// Every limit, in the order of the documentation.
    pub const ALL: [CapacityLimit; 4] = [
        CapacityLimit::Server,
        CapacityLimit::LoadGenerator,
        CapacityLimit::OpenFiles,
        CapacityLimit::SearchRange,
    ];

    /// The JSON name.
    pub fn key(self) -> &'static str {
        match self {
            CapacityLimit::Server => "server",
            CapacityLimit::LoadGenerator => "load_generator",
            CapacityLimit::OpenFiles => "open_files",
            CapacityLimit::SearchRange => "search_range",
        }
    }

    /// Whether the per-node figures are the node's own limit rather than lower bounds.
    pub fn is_the_nodes(self) -> bool {
        self == CapacityLimit::Server
    }

    /// What stopped the search, in words.
    pub fn describe(self) -> &'static str {
        match self {
            CapacityLimit::Server => "a gate failed while the host had CPU to spare",
            CapacityLimit::LoadGenerator => {
                "the host's CPU was saturated, the load generator using at least as much as the server"
            }
            CapacityLimit::OpenFiles => "the host's open-file cap bounded the connections",
            CapacityLimit::SearchRange => "no step of the search failed",
        }
    }
}

fn current_version() -> u32 {
    CALIBRATION_VERSION
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            version: CALIBRATION_VERSION,
            bytes_per_message_on_disk: None,
            settled_bytes_per_message: None,
            idempotency_bytes_per_message: None,
            idempotency_window_secs: None,
            messages_per_sec_per_node: None,
            connections_per_node: None,
            memory_bytes_per_connection: None,
            memory_bytes_per_node: None,
            gates_passed: None,
            capacity_limited_by: None,
            node_cpus: None,
            cpu_us_per_message: None,
            nodes_measured: None,
            scaling_efficiency: None,
        }
    }
}

/// Which storage figure a calibration gives per message of the retention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StoragePerMessage {
    /// The settled figure, with the idempotency records of one window spread over the
    /// retention: `bytes` = settled + idempotency × window ÷ retention.
    Settled { bytes: f64 },
    /// Only the figure seen while the run went on (journal included).
    Transient(f64),
    /// Nothing measured.
    None,
}

impl StoragePerMessage {
    /// The bytes per message the plan uses, if measured.
    pub fn bytes(self) -> Option<f64> {
        match self {
            StoragePerMessage::Settled { bytes } | StoragePerMessage::Transient(bytes) => {
                Some(bytes)
            }
            StoragePerMessage::None => None,
        }
    }

    fn field(self) -> &'static str {
        match self {
            StoragePerMessage::Transient(_) => "bytes_per_message_on_disk",
            _ => "settled_bytes_per_message",
        }
    }

    fn label(self) -> &'static str {
        match self {
            StoragePerMessage::Transient(_) => "bytes on disk per message (transient)",
            _ => "bytes on disk per message (settled)",
        }
    }
}

impl Calibration {
    /// The storage per message over a retention of `retention_secs`: settled when the
    /// run settled its store, else transient. The idempotency records count for one
    /// window (24 h unless the summary says), not for the whole retention.
    pub fn storage_per_message(&self, retention_secs: f64) -> StoragePerMessage {
        match (
            self.settled_bytes_per_message,
            self.bytes_per_message_on_disk,
        ) {
            (Some(settled), _) => {
                let window = self.idempotency_window_secs.unwrap_or(86_400.0);
                let share = (window / retention_secs.max(1.0)).min(1.0);
                let idem = self.idempotency_bytes_per_message.unwrap_or(0.0);
                StoragePerMessage::Settled {
                    bytes: settled + idem * share,
                }
            }
            (None, Some(transient)) => StoragePerMessage::Transient(transient),
            (None, None) => StoragePerMessage::None,
        }
    }
}

/// Why a summary cannot be used for calibration.
#[derive(Debug, Error)]
pub enum CalibrationError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("not valid JSON")]
    Json(#[from] serde_json::Error),
    /// The JSON does not have the expected shape.
    #[error("{0}")]
    Shape(&'static str),
    /// A calibration field has the wrong type or an impossible value.
    #[error("calibration.{field} must be {expected}, got {value}")]
    Field {
        /// The field name inside `"calibration"`.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was, as JSON.
        value: String,
    },
    /// The calibration was written in a format this build does not read.
    #[error("calibration.version {found} is not supported; this build reads version {supported}")]
    UnsupportedVersion {
        /// The version in the file.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// The assumed or measured inputs are out of range.
    #[error("cannot compute the plan")]
    Input(#[from] InputError),
}

impl Summary {
    /// Reads and checks a summary file.
    pub fn read(path: &Path) -> Result<Self, CalibrationError> {
        let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    /// Parses and checks summary JSON.
    ///
    /// Fields are checked one by one rather than through `serde`'s derive so
    /// that a bad value is reported by name with what it should be, and so
    /// that a whole-number float such as `25000.0` is accepted for the
    /// connection count.
    pub fn from_json_str(text: &str) -> Result<Self, CalibrationError> {
        let value: Value = serde_json::from_str(text)?;
        let top = value
            .as_object()
            .ok_or(CalibrationError::Shape("the summary is not a JSON object"))?;
        let scenario = match top.get("scenario") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name.clone()),
            Some(_) => {
                return Err(CalibrationError::Shape(
                    "the summary's \"scenario\" is not a string",
                ));
            }
        };
        let fields = match top.get("calibration") {
            Some(Value::Object(fields)) => fields,
            Some(_) => {
                return Err(CalibrationError::Shape(
                    "the summary's \"calibration\" is not an object",
                ));
            }
            None => {
                return Err(CalibrationError::Shape(
                    "the summary has no \"calibration\" object",
                ));
            }
        };
        let version = match fields.get("version") {
            None | Some(Value::Null) => CALIBRATION_VERSION,
            Some(Value::Number(n)) if n.as_u64() == Some(u64::from(CALIBRATION_VERSION)) => {
                CALIBRATION_VERSION
            }
            Some(other) => {
                return Err(CalibrationError::UnsupportedVersion {
                    found: other.to_string(),
                    supported: CALIBRATION_VERSION,
                });
            }
        };
        let calibration = Calibration {
            version,
            bytes_per_message_on_disk: positive_number(fields, "bytes_per_message_on_disk")?,
            settled_bytes_per_message: positive_number(fields, "settled_bytes_per_message")?,
            idempotency_bytes_per_message: non_negative_number(
                fields,
                "idempotency_bytes_per_message",
            )?,
            idempotency_window_secs: positive_number(fields, "idempotency_window_secs")?,
            messages_per_sec_per_node: positive_number(fields, "messages_per_sec_per_node")?,
            connections_per_node: positive_whole(fields, "connections_per_node")?,
            memory_bytes_per_connection: positive_number(fields, "memory_bytes_per_connection")?,
            memory_bytes_per_node: positive_number(fields, "memory_bytes_per_node")?,
            gates_passed: boolean(fields, "gates_passed")?,
            capacity_limited_by: capacity_limit(fields)?,
            node_cpus: positive_whole(fields, "node_cpus")?,
            cpu_us_per_message: positive_number(fields, "cpu_us_per_message")?,
            nodes_measured: positive_whole(fields, "nodes_measured")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            scaling_efficiency: positive_number(fields, "scaling_efficiency")?,
        };
        Ok(Self {
            scenario,
            calibration,
        })
    }
}

impl Calibration {
    /// Checks that every measured value is positive and finite and that the
    /// version is supported, for a `Calibration` built in code.
    pub fn validate(&self) -> Result<(), CalibrationError> {
        if self.version != CALIBRATION_VERSION {
            return Err(CalibrationError::UnsupportedVersion {
                found: self.version.to_string(),
                supported: CALIBRATION_VERSION,
            });
        }
        if let Some(v) = self.idempotency_bytes_per_message
            && !(v.is_finite() && v >= 0.0)
        {
            return Err(CalibrationError::Field {
                field: "idempotency_bytes_per_message",
                expected: NON_NEGATIVE_NUMBER,
                value: v.to_string(),
            });
        }
        let numbers = [
            ("bytes_per_message_on_disk", self.bytes_per_message_on_disk),
            ("settled_bytes_per_message", self.settled_bytes_per_message),
            ("idempotency_window_secs", self.idempotency_window_secs),
            ("messages_per_sec_per_node", self.messages_per_sec_per_node),
            (
                "memory_bytes_per_connection",
                self.memory_bytes_per_connection,
            ),
            ("memory_bytes_per_node", self.memory_bytes_per_node),
            ("cpu_us_per_message", self.cpu_us_per_message),
            ("scaling_efficiency", self.scaling_efficiency),
        ];
        for (field, value) in numbers {
            match value {
                Some(value) if !(value.is_finite() && value > 0.0) => {
                    return Err(CalibrationError::Field {
                        field,
                        expected: POSITIVE_NUMBER,
                        value: value.to_string(),
                    });
                }
                _ => {}
            }
        }
        for (field, value) in [
            ("connections_per_node", self.connections_per_node),
            ("node_cpus", self.node_cpus),
        ] {
            if value == Some(0) {
                return Err(CalibrationError::Field {
                    field,
                    expected: POSITIVE_WHOLE,
                    value: "0".to_owned(),
                });
            }
        }
        Ok(())
    }
}

const POSITIVE_NUMBER: &str = "a positive number or null";
const NON_NEGATIVE_NUMBER: &str = "a number of at least 0, or null";

const POSITIVE_WHOLE: &str = "a positive whole number or null";

fn positive_number(
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<f64>, CalibrationError> {
    number(fields, field, false)
}

fn non_negative_number(
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<f64>, CalibrationError> {
    number(fields, field, true)
}

/// A finite number above 0 (or at least 0 with `zero_ok`), or null.
fn number(
    fields: &Map<String, Value>,
    field: &'static str,
    zero_ok: bool,
) -> Result<Option<f64>, CalibrationError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_f64() {
            Some(n) if n.is_finite() && (n > 0.0 || (zero_ok && n == 0.0)) => Ok(Some(n)),
            _ => Err(CalibrationError::Field {
                field,
                expected: if zero_ok {
                    NON_NEGATIVE_NUMBER
                } else {
                    POSITIVE_NUMBER
                },
                value: value.to_string(),
            }),
        },
    }
}

fn positive_whole(
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<u64>, CalibrationError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let whole = value.as_u64().or_else(|| {
                value
                    .as_f64()
                    .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n < u64::MAX as f64)
                    .map(|n| n as u64)
            });
            match whole {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(CalibrationError::Field {
                    field,
                    expected: POSITIVE_WHOLE,
                    value: value.to_string(),
                }),
            }
        }
    }
}

const CAPACITY_LIMIT: &str =
    "one of \"server\", \"load_generator\", \"open_files\", \"search_range\", or null";

fn capacity_limit(fields: &Map<String, Value>) -> Result<Option<CapacityLimit>, CalibrationError> {
    let field = "capacity_limited_by";
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => CapacityLimit::ALL
            .into_iter()
            .find(|l| value.as_str() == Some(l.key()))
            .map(Some)
            .ok_or_else(|| CalibrationError::Field {
                field,
                expected: CAPACITY_LIMIT,
                value: value.to_string(),
            }),
    }
}

fn boolean(
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<bool>, CalibrationError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(value) => Err(CalibrationError::Field {
            field,
            expected: "true, false or null",
            value: value.to_string(),
        }),
    }
}

/// One assumption and what the run measured in its place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replacement {
    /// The calibration field, e.g. `"connections_per_node"`.
    pub field: &'static str,
    /// The assumption in words.
    pub label: &'static str,
    /// The assumed value, if the assumptions had one.
    pub assumed: Option<f64>,
    /// The measured value, if the run measured it.
    pub measured: Option<f64>,
    /// How the values are formatted.
    #[serde(skip)]
    pub quantity: Quantity,
}

impl Replacement {
    /// Whether the measurement replaced the assumption.
    pub fn applied(&self) -> bool {
        self.measured.is_some()
    }
}

/// The assumed plan and the plan from measured figures, side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibratedPlan {
    /// The run's scenario name, if it had one.
    pub scenario: Option<String>,
    /// Whether the run stayed inside its latency gates, if it said.
    pub gates_passed: Option<bool>,
    /// Whether the assumed plan is the source design's.
    pub assumed_is_source_design: bool,
    /// Each assumption the calibration can replace, with both values.
    pub replacements: Vec<Replacement>,
    /// Caveats about the measured plan, in words.
    pub warnings: Vec<String>,
    /// The plan from the assumptions (the source design by default).
    pub assumed: Plan,
    /// The plan with measured figures in place of assumptions.
    pub measured: Plan,
    /// measured ÷ assumed for each figure, by JSON field name; `null` where
    /// either plan has no value or the assumed value is zero.
    pub ratios: BTreeMap<&'static str, Option<f64>>,
}

impl CalibratedPlan {
    /// measured ÷ assumed for `figure`.
    pub fn ratio(&self, figure: Figure) -> Option<f64> {
        ratio(&self.assumed, &self.measured, figure)
    }
}

fn ratio(assumed: &Plan, measured: &Plan, figure: Figure) -> Option<f64> {
    let base = figure.value(assumed)?;
    let value = figure.value(measured)?;
    (base != 0.0).then(|| value / base)
}

/// Computes the plan from `assumed` and the plan with `summary`'s
/// measurements in place of the assumptions they cover.
pub fn calibrate(assumed: &Inputs, summary: &Summary) -> Result<CalibratedPlan, CalibrationError> {
    let measured_values = &summary.calibration;
    measured_values.validate()?;
    let assumed_plan = assumed.plan()?;

    let mut inputs = assumed.clone();
    let storage = measured_values.storage_per_message(assumed.retention_secs());
    if let Some(bytes) = storage.bytes() {
        inputs.storage_overhead_factor = bytes / assumed.message_size_bytes;
    }
    if let Some(rate) = measured_values.messages_per_sec_per_node {
        inputs.messages_per_sec_per_server = Some(rate);
    }
    if let Some(connections) = measured_values.connections_per_node {
        inputs.connections_per_server = connections;
    }
    if let Some(memory) = measured_values.memory_bytes_per_connection {
        inputs.memory_bytes_per_connection = Some(memory);
    }
    if let Some(memory) = measured_values.memory_bytes_per_node {
        inputs.memory_bytes_per_node = Some(memory);
    }
    let measured_plan = inputs.plan()?;

    let replacements = vec![
        Replacement {
            field: storage.field(),
            label: storage.label(),
            assumed: Some(assumed.message_size_bytes * assumed.storage_overhead_factor),
            measured: storage.bytes(),
            quantity: Quantity::Bytes,
        },
        Replacement {
            field: "messages_per_sec_per_node",
            label: "messages per second per chat server",
            assumed: assumed.messages_per_sec_per_server,
            measured: measured_values.messages_per_sec_per_node,
            quantity: Quantity::CountPerSec,
        },
        Replacement {
            field: "connections_per_node",
            label: "connections per chat server",
            assumed: Some(assumed.connections_per_server as f64),
            measured: measured_values.connections_per_node.map(|n| n as f64),
            quantity: Quantity::Count,
        },
        Replacement {
            field: "memory_bytes_per_connection",
            label: "memory per connection",
            assumed: assumed.memory_bytes_per_connection,
            measured: measured_values.memory_bytes_per_connection,
            quantity: Quantity::Bytes,
        },
        Replacement {
            field: "memory_bytes_per_node",
            label: "memory per chat server apart from its connections",
            assumed: assumed.memory_bytes_per_node,
            measured: measured_values.memory_bytes_per_node,
            quantity: Quantity::Bytes,
        },
    ];

    let mut warnings = Vec::new();
    match storage {
        StoragePerMessage::Transient(_) => warnings.push(
            "the storage figure is transient (measured while the run went on, write-ahead log \
             included, nothing compacted): it describes a journal more than five years of \
             messages; a settled figure would replace it"
                .to_owned(),
        ),
        StoragePerMessage::Settled { .. } => {
            if let Some(transient) = measured_values.bytes_per_message_on_disk {
                warnings.push(format!(
                    "storage uses the settled figure; while the run went on the store held {} \
                     per message (write-ahead log included)",
                    Quantity::Bytes.format(transient)
                ));
            }
        }
        StoragePerMessage::None => {}
    }
    match measured_values.gates_passed {
        Some(true) => {}
        Some(false) => warnings.push(
            "the run did not stay inside its latency gates, so its per-node figures are not a \
             sustained capacity and the measured plan is optimistic"
                .to_owned(),
        ),
        None => warnings.push(
            "the summary does not say whether the run stayed inside its latency gates".to_owned(),
        ),
    }
    if let Some(limit) = measured_values.capacity_limited_by
        && !limit.is_the_nodes()
    {
        warnings.push(format!(
            "the per-node figures are lower bounds, not the node's limit: the capacity search \
             stopped because {}; the server counts are upper bounds",
            limit.describe()
        ));
    }
    if let Some(cpus) = measured_values.node_cpus {
        let per_message = measured_values
            .cpu_us_per_message
            .map(|us| format!(", {us:.1} µs of server CPU per message"))
            .unwrap_or_default();
        match measured_values.nodes_measured.filter(|&n| n > 1) {
            Some(n) => warnings.push(format!(
                "a node is what was measured: one of {n} cluster nodes sharing a host with {cpus} CPU(s){per_message}, its figures the cluster's divided by {n}; a node of its own carries more"
            )),
            None => warnings.push(format!(
                "a node is what was measured: one server process on a host with {cpus} CPU(s){per_message}; a larger node carries more"
            )),
        }
    }
    if let Some(e) = measured_values.scaling_efficiency {
        warnings.push(format!(
            "scaling measured, not assumed: {} nodes kept {:.0} % of one node's throughput per node; the plan's server counts hold only if that efficiency holds at full scale",
            measured_values.nodes_measured.unwrap_or(1),
            e * 100.0
        ));
    }
    for replacement in &replacements {
        // A node's own memory matters only beside a measured memory per connection.
        let moot = replacement.field == "memory_bytes_per_node"
            && measured_values.memory_bytes_per_connection.is_none();
        if replacement.measured.is_some() || moot {
            continue;
        }
        warnings.push(match replacement.assumed {
            Some(value) => format!(
                "{} was not measured; the assumption ({}) is kept",
                replacement.label,
                replacement.quantity.format(value)
            ),
            None => format!(
                "{} was neither measured nor assumed, so the plan does without it",
                replacement.label
            ),
        });
    }

    let ratios = Figure::ALL
        .iter()
        .map(|&figure| (figure.key(), ratio(&assumed_plan, &measured_plan, figure)))
        .collect();

    Ok(CalibratedPlan {
        scenario: summary.scenario.clone(),
        gates_passed: measured_values.gates_passed,
        assumed_is_source_design: assumed.is_source_design(),
        replacements,
        warnings,
        assumed: assumed_plan,
        measured: measured_plan,
        ratios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(calibration: &str) -> Result<Summary, CalibrationError> {
        Summary::from_json_str(&format!(r#"{{"calibration": {calibration}}}"#))
    }

    #[test]
    fn reads_all_fields_and_ignores_unknown_ones() {
        let parsed = Summary::from_json_str(
            r#"{"scenario": "soak", "histogram": [1, 2, 3],
                "calibration": {"version": 1, "bytes_per_message_on_disk": 180.5,
                "messages_per_sec_per_node": 12000, "connections_per_node": 8000.0,
                "memory_bytes_per_connection": 20480, "gates_passed": false, "extra": "x"}}"#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            Summary {
                scenario: Some("soak".to_owned()),
                calibration: Calibration {
                    version: 1,
                    bytes_per_message_on_disk: Some(180.5),
                    messages_per_sec_per_node: Some(12000.0),
                    connections_per_node: Some(8000),
                    memory_bytes_per_connection: Some(20480.0),
                    gates_passed: Some(false),
                    ..Calibration::default()
                },
            }
        );
    }

    #[test]
    fn serialized_summary_reads_back() {
        let written = Summary {
            scenario: Some("steady".to_owned()),
            calibration: Calibration {
                bytes_per_message_on_disk: Some(120.0),
                connections_per_node: Some(3),
                ..Calibration::default()
            },
        };
        let text = serde_json::to_string(&written).unwrap();
        assert_eq!(Summary::from_json_str(&text).unwrap(), written);
        let derived: Summary = serde_json::from_str(&text).unwrap();
        assert_eq!(derived, written);
    }

    #[test]
    fn reads_the_capacity_search_fields() {
        for limit in CapacityLimit::ALL {
            let parsed = summary(&format!(
                r#"{{"capacity_limited_by": "{}", "node_cpus": 2, "cpu_us_per_message": 41.5}}"#,
                limit.key()
            ))
            .unwrap();
            assert_eq!(parsed.calibration.capacity_limited_by, Some(limit));
            assert_eq!(parsed.calibration.node_cpus, Some(2));
            assert_eq!(parsed.calibration.cpu_us_per_message, Some(41.5));
            let text = serde_json::to_string(&parsed).unwrap();
            assert_eq!(Summary::from_json_str(&text).unwrap(), parsed);
        }
    }

    #[test]
    fn a_search_stopped_by_the_host_makes_the_figures_lower_bounds() {
        let plan_for = |limit: &str| {
            let s = summary(&format!(
                r#"{{"messages_per_sec_per_node": 2000, "connections_per_node": 15000,
                    "gates_passed": true, "capacity_limited_by": "{limit}", "node_cpus": 2}}"#
            ))
            .unwrap();
            calibrate(&Inputs::source_design(), &s).unwrap()
        };
        let bound = plan_for("load_generator");
        assert!(
            bound.warnings.iter().any(|w| w.contains("lower bounds")),
            "{:?}",
            bound.warnings
        );
        assert!(bound.warnings.iter().any(|w| w.contains("2 CPU(s)")));
        let own = plan_for("server");
        assert!(!own.warnings.iter().any(|w| w.contains("lower bounds")));
        // The qualifiers change no figure.
        assert_eq!(bound.measured, own.measured);
    }

    #[test]
    fn absent_and_null_fields_are_not_measured() {
        let parsed = summary(r#"{"messages_per_sec_per_node": null}"#).unwrap();
        assert_eq!(parsed.calibration, Calibration::default());
    }

    #[test]
    fn rejects_bad_values_by_name() {
        let cases = [
            (
                r#"{"bytes_per_message_on_disk": -1}"#,
                "calibration.bytes_per_message_on_disk",
            ),
            (
                r#"{"messages_per_sec_per_node": 0}"#,
                "calibration.messages_per_sec_per_node",
            ),
            (
                r#"{"connections_per_node": -5}"#,
                "calibration.connections_per_node",
            ),
            (
                r#"{"connections_per_node": 2.5}"#,
                "calibration.connections_per_node",
            ),
            (
                r#"{"memory_bytes_per_connection": "4kB"}"#,
                "calibration.memory_bytes_per_connection",
            ),
            (r#"{"gates_passed": "yes"}"#, "calibration.gates_passed"),
            (r#"{"version": 2}"#, "version 2 is not supported"),
            (
                r#"{"capacity_limited_by": "cpu"}"#,
                "calibration.capacity_limited_by must be one of",
            ),
            (r#"{"node_cpus": 0}"#, "calibration.node_cpus"),
            (
                r#"{"cpu_us_per_message": -3}"#,
                "calibration.cpu_us_per_message",
            ),
        ];
        for (json, expected) in cases {
            let message = summary(json).unwrap_err().to_string();
            assert!(
                message.contains(expected),
                "{message:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        for text in [
            "",
            "[1]",
            "{}",
            r#"{"calibration": 3}"#,
            r#"{"scenario": 1, "calibration": {}}"#,
        ] {
            assert!(Summary::from_json_str(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let error = Summary::read(Path::new("/nonexistent/summary.json")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/summary.json"));
    }

    #[test]
    fn calibrated_plan_replaces_assumptions() {
        let measured = Summary {
            scenario: None,
            calibration: Calibration {
                settled_bytes_per_message: Some(300.0),
                messages_per_sec_per_node: Some(1_000.0),
                connections_per_node: Some(5_000),
                memory_bytes_per_connection: Some(50e3),
                memory_bytes_per_node: Some(300e6),
                gates_passed: Some(true),
                ..Calibration::default()
            },
        };
        let plan = calibrate(&Inputs::source_design(), &measured).unwrap();
        assert!(plan.assumed_is_source_design);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        assert_eq!(plan.assumed.servers, 10_000);
        assert_eq!(plan.measured.servers_by_connections, 100_000);
        assert_eq!(plan.measured.servers_by_message_rate, Some(232));
        assert_eq!(plan.measured.servers, 100_000);
        assert_eq!(plan.ratio(Figure::Servers), Some(10.0));
        assert_eq!(plan.measured.storage_bytes_total_provisioned, 3.65e15 * 3.0);
        assert_eq!(plan.ratio(Figure::StorageBytesTotalProvisioned), Some(3.0));
        assert_eq!(plan.ratio(Figure::BandwidthIn), Some(1.0));
        // 3.65 PB × 3 / 4 TB = 2737.5 → 2738 shards.
        assert_eq!(plan.measured.shards, 2738);
        assert_eq!(plan.ratio(Figure::ServersByMessageRate), None);
        assert_eq!(plan.ratios["servers"], Some(10.0));
        assert_eq!(
            plan.measured.memory_bytes_per_server,
            Some(300e6 + 5_000.0 * 50e3)
        );
        // Memory per connection alone: the plan says it has no memory per node.
        let per_connection_only = Summary {
            calibration: Calibration {
                memory_bytes_per_node: None,
                ..measured.calibration
            },
            ..measured
        };
        let plan = calibrate(&Inputs::source_design(), &per_connection_only).unwrap();
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(plan.warnings[0].contains("apart from its connections was neither measured"));
        assert_eq!(plan.measured.memory_bytes_per_server, Some(5_000.0 * 50e3));
    }

    #[test]
    fn unmeasured_fields_keep_assumptions_and_warn() {
        let plan = calibrate(&Inputs::source_design(), &Summary::default()).unwrap();
        assert_eq!(plan.assumed, plan.measured);
        assert_eq!(plan.warnings.len(), 5);
        assert!(plan.warnings[0].contains("latency gates"));
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("connections per chat server was not measured"))
        );
    }

    #[test]
    fn failed_gates_warn() {
        let failed = Summary {
            scenario: None,
            calibration: Calibration {
                gates_passed: Some(false),
                ..Calibration::default()
            },
        };
        let plan = calibrate(&Inputs::source_design(), &failed).unwrap();
        assert!(plan.warnings[0].contains("optimistic"));
    }

    #[test]
    fn invalid_calibration_built_in_code_is_rejected() {
        let bad = Summary {
            scenario: None,
            calibration: Calibration {
                bytes_per_message_on_disk: Some(f64::NAN),
                ..Calibration::default()
            },
        };
        assert!(calibrate(&Inputs::source_design(), &bad).is_err());
    }

    #[test]
    fn the_settled_figure_wins_and_idempotency_counts_for_one_window() {
        let s = summary(
            r#"{"bytes_per_message_on_disk": 523.0, "settled_bytes_per_message": 140.0,
                "idempotency_bytes_per_message": 36.5, "idempotency_window_secs": 86400}"#,
        )
        .unwrap();
        let inputs = Inputs::source_design();
        let per = s.calibration.storage_per_message(inputs.retention_secs());
        // One day of a five-year retention: 36.5 B × 1/1825 = 0.02 B per message.
        let StoragePerMessage::Settled { bytes } = per else {
            panic!("{per:?}")
        };
        assert!((bytes - 140.02).abs() < 1e-9, "{bytes}");
        let plan = calibrate(&inputs, &s).unwrap();
        assert_eq!(plan.replacements[0].field, "settled_bytes_per_message");
        assert_eq!(plan.replacements[0].measured, Some(bytes));
        assert!(
            plan.warnings.iter().any(|w| w.contains("settled figure")),
            "{:?}",
            plan.warnings
        );
        // Only the transient figure: used, and said to be transient.
        let t = summary(r#"{"bytes_per_message_on_disk": 523.0}"#).unwrap();
        let plan = calibrate(&inputs, &t).unwrap();
        assert_eq!(plan.replacements[0].field, "bytes_per_message_on_disk");
        assert!(plan.warnings.iter().any(|w| w.contains("transient")));
    }

    #[test]
    fn the_new_storage_fields_are_checked() {
        for (json, field) in [
            (
                r#"{"settled_bytes_per_message": 0}"#,
                "settled_bytes_per_message",
            ),
            (
                r#"{"idempotency_bytes_per_message": -1}"#,
                "idempotency_bytes_per_message",
            ),
            (
                r#"{"idempotency_window_secs": "1d"}"#,
                "idempotency_window_secs",
            ),
        ] {
            let e = summary(json).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        assert!(summary(r#"{"idempotency_bytes_per_message": 0}"#).is_ok());
    }
}
