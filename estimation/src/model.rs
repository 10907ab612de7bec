//! The capacity model: named [`Inputs`], the [`Plan`] computed from them, and
//! the validation that keeps every figure finite and meaningful.
//!
//! The arithmetic follows the source design step by step so that each output
//! can be traced to the document:
//!
//! * messages per day = daily active users × messages per user per day;
//! * storage per day (raw) = messages per day × average message size;
//! * storage over the retention (raw) = storage per day × 365 × years;
//! * bandwidth in = storage per day / 86,400 s (the bytes that arrive are the
//!   bytes that are stored); bandwidth out = bandwidth in × fan-out;
//! * chat servers by connections = ⌈concurrent connections / connections per
//!   server⌉;
//! * logical shards = ⌈raw storage over the retention × overhead / shard
//!   size⌉.
//!
//! On top of that it adds what a real plan needs and the document leaves
//! out: a peak-to-average ratio, a storage overhead factor and replication,
//! a per-server message-rate limit, memory per connection and the number of
//! physical database servers.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::source;
use crate::units::{DAYS_PER_YEAR, per_day_to_per_sec};

/// The assumptions a capacity plan is computed from.
///
/// [`Inputs::default`] is the source design ([`Inputs::source_design`]).
/// Rates and sizes are `f64` because averages need not be whole; counts of
/// people, connections and replicas are integers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// Users who use the service on a given day.
    pub daily_active_users: u64,
    /// Messages each daily user sends per day, on average.
    pub messages_per_user_per_day: f64,
    /// Average message payload in bytes: what crosses the network and what is
    /// stored before any overhead.
    pub message_size_bytes: f64,
    /// How long messages are kept, in years of 365 days.
    pub retention_years: f64,
    /// Concurrent connections one chat server holds.
    pub connections_per_server: u64,
    /// Share of daily active users connected at the busiest moment, in
    /// (0, 1]. The source design assumes every daily user holds a
    /// connection at once, i.e. 1.0.
    pub concurrent_fraction: f64,
    /// Messages per second one chat server sustains within its latency
    /// targets. `None` means the message rate is not a constraint, which is
    /// how the source design sizes the chat tier (by connections alone).
    pub messages_per_sec_per_server: Option<f64>,
    /// Memory one open connection costs on a chat server, in bytes. `None`
    /// means unknown: memory is then not estimated.
    pub memory_bytes_per_connection: Option<f64>,
    /// Memory one chat server holds apart from its connections, in bytes: the process,
    /// its store's in-memory tables at their bound and its caches. `None` counts none
    /// (memory per connection then has to carry it).
    pub memory_bytes_per_node: Option<f64>,
    /// Size of one logical database shard, in bytes.
    pub shard_size_bytes: f64,
    /// Storage one physical database server holds, in bytes. `None` means
    /// one shard per server (capacity = shard size).
    pub db_server_capacity_bytes: Option<f64>,
    /// Copies of every shard kept on separate database servers; at least 1.
    pub replication_factor: u32,
    /// Bytes on disk per byte of message payload, covering indexes, inbox
    /// entries and compaction headroom. 1.0 stores the payload alone, as the
    /// source design does; values below 1 model compression.
    pub storage_overhead_factor: f64,
    /// Busiest second's message rate over the daily average; at least 1.
    /// The source design gives no peak and sizes for the average, i.e. 1.0.
    pub peak_to_average: f64,
    /// Recipients each message is delivered to, on average; at least 1.
    /// One-to-one chat is 1.0, so bandwidth out equals bandwidth in; group
    /// chats raise it. It does not change storage: a message is stored once,
    /// and per-recipient inbox entries belong in the overhead factor.
    pub fan_out: f64,
}

impl Default for Inputs {
    fn default() -> Self {
        Self::source_design()
    }
}

impl Inputs {
    /// The retention in seconds.
    pub fn retention_secs(&self) -> f64 {
        self.retention_years * DAYS_PER_YEAR * crate::units::SECONDS_PER_DAY
    }

    /// The source design's assumptions: 500 M daily users sending 40
    /// messages of 100 B each, kept 5 years; 50 K connections per server;
    /// 4 TB shards; no replication, overhead or peak.
    pub fn source_design() -> Self {
        Self {
            daily_active_users: source::DAILY_ACTIVE_USERS,
            messages_per_user_per_day: source::MESSAGES_PER_USER_PER_DAY,
            message_size_bytes: source::MESSAGE_SIZE_BYTES,
            retention_years: source::RETENTION_YEARS,
            connections_per_server: source::CONNECTIONS_PER_SERVER,
            concurrent_fraction: 1.0,
            messages_per_sec_per_server: None,
            memory_bytes_per_connection: None,
            memory_bytes_per_node: None,
            shard_size_bytes: source::SHARD_SIZE_BYTES,
            db_server_capacity_bytes: None,
            replication_factor: 1,
            storage_overhead_factor: 1.0,
            peak_to_average: 1.0,
            fan_out: 1.0,
        }
    }

    /// Whether these are exactly the source design's inputs, i.e. whether
    /// the document's figures apply to the plan.
    pub fn is_source_design(&self) -> bool {
        *self == Self::source_design()
    }

    /// Checks every input, reporting the first that is out of range.
    pub fn validate(&self) -> Result<(), InputError> {
        if self.daily_active_users == 0 {
            return Err(InputError::invalid("daily active users", 0.0, "at least 1"));
        }
        positive("messages per user per day", self.messages_per_user_per_day)?;
        positive("message size in bytes", self.message_size_bytes)?;
        positive("retention in years", self.retention_years)?;
        if self.connections_per_server == 0 {
            return Err(InputError::invalid(
                "connections per server",
                0.0,
                "at least 1",
            ));
        }
        let fraction = self.concurrent_fraction;
        if !(fraction.is_finite() && fraction > 0.0 && fraction <= 1.0) {
            return Err(InputError::invalid(
                "concurrent fraction",
                fraction,
                "more than 0 and at most 1",
            ));
        }
        if let Some(rate) = self.messages_per_sec_per_server {
            positive("messages per second per server", rate)?;
        }
        if let Some(memory) = self.memory_bytes_per_connection {
            positive("memory per connection in bytes", memory)?;
        }
        if let Some(memory) = self.memory_bytes_per_node {
            positive(
                "memory per server apart from its connections in bytes",
                memory,
            )?;
        }
        positive("shard size in bytes", self.shard_size_bytes)?;
        if let Some(capacity) = self.db_server_capacity_bytes {
            positive("database server capacity in bytes", capacity)?;
            if capacity < self.shard_size_bytes {
                return Err(InputError::invalid(
                    "database server capacity in bytes",
                    capacity,
                    "at least the shard size, so that a server holds a whole shard",
                ));
            }
        }
        if self.replication_factor == 0 {
            return Err(InputError::invalid("replication factor", 0.0, "at least 1"));
        }
        positive("storage overhead factor", self.storage_overhead_factor)?;
        at_least_one("peak-to-average ratio", self.peak_to_average)?;
        at_least_one("fan-out", self.fan_out)?;
        Ok(())
    }

    /// Validates the inputs and computes the capacity plan.
    ///
    /// ```
    /// use estimation::Inputs;
    /// let plan = Inputs::source_design().plan().unwrap();
    /// assert_eq!(plan.messages_per_day, 20e9);
    /// assert_eq!(plan.servers, 10_000);
    /// assert_eq!(plan.shards, 913);
    /// ```
    pub fn plan(&self) -> Result<Plan, InputError> {
        Plan::compute(self)
    }
}

/// Which constraint decided the number of chat servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerBound {
    /// Concurrent connections per server.
    Connections,
    /// Peak messages per second per server.
    MessageRate,
}

impl ServerBound {
    /// A short phrase for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::MessageRate => "message rate",
        }
    }
}

/// A capacity plan: every figure computed from one set of [`Inputs`].
///
/// Byte figures are in bytes and rates are per second, as plain numbers; the
/// [`report`](crate::report) module formats them for people. Serialized, the
/// field names are the `--json` field names of `chat-estimate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The inputs this plan was computed from.
    pub inputs: Inputs,
    /// Messages sent per day.
    pub messages_per_day: f64,
    /// Messages per second averaged over the day.
    pub messages_per_sec_avg: f64,
    /// Messages per second in the busiest second (average × peak ratio).
    pub messages_per_sec_peak: f64,
    /// Message payload bytes stored per day, before overhead and replication.
    pub storage_bytes_per_day: f64,
    /// Payload bytes stored over the retention, before overhead and
    /// replication.
    pub storage_bytes_total: f64,
    /// Disk bytes written per day across all replicas (raw × overhead ×
    /// replication).
    pub storage_bytes_per_day_provisioned: f64,
    /// Disk bytes over the retention across all replicas (raw × overhead ×
    /// replication).
    pub storage_bytes_total_provisioned: f64,
    /// Average bytes per second arriving at the chat servers.
    pub bandwidth_in_bytes_per_sec: f64,
    /// Average bytes per second delivered to recipients (in × fan-out).
    pub bandwidth_out_bytes_per_sec: f64,
    /// Bytes per second arriving in the busiest second.
    pub bandwidth_in_peak_bytes_per_sec: f64,
    /// Bytes per second delivered in the busiest second.
    pub bandwidth_out_peak_bytes_per_sec: f64,
    /// Connections open at the busiest moment (daily users × concurrent
    /// fraction, rounded up).
    pub concurrent_connections: u64,
    /// Chat servers needed to hold the concurrent connections.
    pub servers_by_connections: u64,
    /// Chat servers needed to carry the peak message rate, when a per-server
    /// rate is known.
    pub servers_by_message_rate: Option<u64>,
    /// Chat servers needed: the larger of the two above.
    pub servers: u64,
    /// Which constraint gave [`Plan::servers`].
    pub servers_bound_by: ServerBound,
    /// Connections each chat server holds once the fleet is sized.
    pub connections_per_server_used: f64,
    /// Memory each chat server needs: its connections, plus what it holds apart
    /// from them when that is known; when memory per connection is known.
    pub memory_bytes_per_server: Option<f64>,
    /// Memory across the chat tier (every concurrent connection, plus every
    /// server's memory apart from its connections when known), when memory
    /// per connection is known.
    pub memory_bytes_total: Option<f64>,
    /// Logical shards: ⌈raw storage over the retention × overhead / shard
    /// size⌉. Replicas are copies of these, not more of them.
    pub shards: u64,
    /// Shard replicas one database server holds.
    pub shards_per_db_server: u64,
    /// Physical database servers: ⌈shards × replication / shards per
    /// server⌉.
    pub db_servers: u64,
}

impl Plan {
    /// Validates `inputs` and computes every figure.
    pub fn compute(inputs: &Inputs) -> Result<Self, InputError> {
        inputs.validate()?;

        let messages_per_day = finite(
            "messages per day",
            inputs.daily_active_users as f64 * inputs.messages_per_user_per_day,
        )?;
        let messages_per_sec_avg = per_day_to_per_sec(messages_per_day);
        let messages_per_sec_peak = finite(
            "peak messages per second",
            messages_per_sec_avg * inputs.peak_to_average,
        )?;

        let storage_bytes_per_day = finite(
            "storage per day",
            messages_per_day * inputs.message_size_bytes,
        )?;
        let retention_days = inputs.retention_years * DAYS_PER_YEAR;
        let storage_bytes_total = finite(
            "storage over the retention",
            storage_bytes_per_day * retention_days,
        )?;
        let disk_factor = inputs.storage_overhead_factor * f64::from(inputs.replication_factor);
        let storage_bytes_per_day_provisioned = finite(
            "provisioned storage per day",
            storage_bytes_per_day * disk_factor,
        )?;
        let storage_bytes_total_provisioned = finite(
            "provisioned storage over the retention",
            storage_bytes_total * disk_factor,
        )?;

        let bandwidth_in_bytes_per_sec = per_day_to_per_sec(storage_bytes_per_day);
        let bandwidth_out_bytes_per_sec =
            finite("bandwidth out", bandwidth_in_bytes_per_sec * inputs.fan_out)?;
        let bandwidth_in_peak_bytes_per_sec = finite(
            "peak bandwidth in",
            bandwidth_in_bytes_per_sec * inputs.peak_to_average,
        )?;
        let bandwidth_out_peak_bytes_per_sec = finite(
            "peak bandwidth out",
            bandwidth_out_bytes_per_sec * inputs.peak_to_average,
        )?;

        let concurrent_connections = ceil_count(
            "concurrent connections",
            inputs.daily_active_users as f64 * inputs.concurrent_fraction,
        )?
        .max(1);
        let servers_by_connections = concurrent_connections.div_ceil(inputs.connections_per_server);
        let servers_by_message_rate = inputs
            .messages_per_sec_per_server
            .map(|rate| ceil_count("servers by message rate", messages_per_sec_peak / rate))
            .transpose()?;
        let (servers, servers_bound_by) = match servers_by_message_rate {
            Some(by_rate) if by_rate > servers_by_connections => {
                (by_rate, ServerBound::MessageRate)
            }
            _ => (servers_by_connections, ServerBound::Connections),
        };
        let connections_per_server_used = concurrent_connections as f64 / servers as f64;
        let per_node = inputs.memory_bytes_per_node.unwrap_or(0.0);
        let memory_bytes_per_server = inputs
            .memory_bytes_per_connection
            .map(|memory| {
                finite(
                    "memory per server",
                    per_node + memory * connections_per_server_used,
                )
            })
            .transpose()?;
        let memory_bytes_total = inputs
            .memory_bytes_per_connection
            .map(|memory| {
                finite(
                    "memory in total",
                    memory * concurrent_connections as f64 + per_node * servers as f64,
                )
            })
            .transpose()?;

        let shards = ceil_count(
            "shards",
            storage_bytes_total * inputs.storage_overhead_factor / inputs.shard_size_bytes,
        )?
        .max(1);
        let shards_per_db_server = match inputs.db_server_capacity_bytes {
            // Validation guarantees capacity >= shard size, so this is >= 1.
            Some(capacity) => ((capacity / inputs.shard_size_bytes).floor() as u64).max(1),
            None => 1,
        };
        let shard_replicas = shards
            .checked_mul(u64::from(inputs.replication_factor))
            .ok_or(InputError::TooLarge {
                figure: "shard replicas",
            })?;
        let db_servers = shard_replicas.div_ceil(shards_per_db_server);

        Ok(Self {
            inputs: inputs.clone(),
            messages_per_day,
            messages_per_sec_avg,
            messages_per_sec_peak,
            storage_bytes_per_day,
            storage_bytes_total,
            storage_bytes_per_day_provisioned,
            storage_bytes_total_provisioned,
            bandwidth_in_bytes_per_sec,
            bandwidth_out_bytes_per_sec,
            bandwidth_in_peak_bytes_per_sec,
            bandwidth_out_peak_bytes_per_sec,
            concurrent_connections,
            servers_by_connections,
            servers_by_message_rate,
            servers,
            servers_bound_by,
            connections_per_server_used,
            memory_bytes_per_server,
            memory_bytes_total,
            shards,
            shards_per_db_server,
            db_servers,
        })
    }
}

/// Why inputs cannot be planned for.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InputError {
    /// An input is out of its range.
    #[error("{input} must be {expected}, got {value}")]
    Invalid {
        /// Which input, in words.
        input: &'static str,
        /// The value given, as text.
        value: String,
        /// The range it must be in.
        expected: &'static str,
    },
    /// The inputs are in range but a figure overflows.
    #[error("{figure} is too large to compute; the inputs are out of any realistic range")]
    TooLarge {
        /// Which figure overflowed.
        figure: &'static str,
    },
}

impl InputError {
    fn invalid(input: &'static str, value: f64, expected: &'static str) -> Self {
        Self::Invalid {
            input,
            value: value.to_string(),
            expected,
        }
    }
}

fn positive(input: &'static str, value: f64) -> Result<(), InputError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(InputError::invalid(
            input,
            value,
            "a positive finite number",
        ))
    }
}

fn at_least_one(input: &'static str, value: f64) -> Result<(), InputError> {
    if value.is_finite() && value >= 1.0 {
        Ok(())
    } else {
        Err(InputError::invalid(
            input,
            value,
            "a finite number of at least 1",
        ))
    }
}

fn finite(figure: &'static str, value: f64) -> Result<f64, InputError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(InputError::TooLarge { figure })
    }
}

/// Rounds a quantity of things up to a whole count.
///
/// A quotient that should be whole can come out a hair above it in floating
/// point (e.g. 3.0000000000000004), and plain `ceil` would then add a whole
/// server or shard. Values within a billionth (relative) of an integer are
/// taken as that integer. The result is still non-decreasing in `value`,
/// which the monotonicity properties rely on.
fn ceil_count(figure: &'static str, value: f64) -> Result<u64, InputError> {
    let value = finite(figure, value)?;
    let nearest = value.round();
    let count = if (value - nearest).abs() <= 1e-9 * nearest.abs().max(1.0) {
        nearest
    } else {
        value.ceil()
    };
    if count >= u64::MAX as f64 {
        return Err(InputError::TooLarge { figure });
    }
    Ok(count.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_plan() -> Plan {
        Inputs::source_design()
            .plan()
            .expect("the source design is valid")
    }

    #[test]
    fn reproduces_the_source_design_exactly() {
        let plan = source_plan();
        assert_eq!(plan.messages_per_day, 20_000_000_000.0);
        assert_eq!(plan.storage_bytes_per_day, 2_000_000_000_000.0);
        assert_eq!(plan.storage_bytes_total, 3_650_000_000_000_000.0);
        assert_eq!(
            plan.storage_bytes_per_day_provisioned,
            plan.storage_bytes_per_day
        );
        assert_eq!(
            plan.storage_bytes_total_provisioned,
            plan.storage_bytes_total
        );
        assert_eq!(plan.concurrent_connections, 500_000_000);
        assert_eq!(plan.servers_by_connections, 10_000);
        assert_eq!(plan.servers_by_message_rate, None);
        assert_eq!(plan.servers, 10_000);
        assert_eq!(plan.servers_bound_by, ServerBound::Connections);
        assert_eq!(plan.shards, 913);
        assert_eq!(plan.db_servers, 913);
        assert_eq!(plan.memory_bytes_per_server, None);
    }

    #[test]
    fn source_design_bandwidth_is_23_1_mb_per_sec_each_way() {
        let plan = source_plan();
        assert_eq!(plan.bandwidth_in_bytes_per_sec, 2e12 / 86_400.0);
        assert_eq!(
            format!("{:.1}", plan.bandwidth_in_bytes_per_sec / 1e6),
            "23.1"
        );
        assert_eq!(
            plan.bandwidth_out_bytes_per_sec,
            plan.bandwidth_in_bytes_per_sec
        );
        assert_eq!(
            plan.bandwidth_in_peak_bytes_per_sec,
            plan.bandwidth_in_bytes_per_sec
        );
    }

    #[test]
    fn source_design_message_rates() {
        let plan = source_plan();
        assert_eq!(plan.messages_per_sec_avg, 2e10 / 86_400.0);
        assert_eq!(plan.messages_per_sec_avg.round(), 231_481.0);
        assert_eq!(plan.messages_per_sec_peak, plan.messages_per_sec_avg);
    }

    #[test]
    fn message_rate_binds_when_servers_are_slow() {
        let inputs = Inputs {
            messages_per_sec_per_server: Some(10.0),
            peak_to_average: 2.0,
            ..Inputs::source_design()
        };
        let plan = inputs.plan().unwrap();
        // 231,481.48 × 2 / 10 = 46,296.3 → 46,297 servers.
        assert_eq!(plan.servers_by_message_rate, Some(46_297));
        assert_eq!(plan.servers, 46_297);
        assert_eq!(plan.servers_bound_by, ServerBound::MessageRate);
        assert_eq!(plan.servers_by_connections, 10_000);
    }

    #[test]
    fn message_rate_that_does_not_bind() {
        let inputs = Inputs {
            messages_per_sec_per_server: Some(1_000.0),
            ..Inputs::source_design()
        };
        let plan = inputs.plan().unwrap();
        assert_eq!(plan.servers_by_message_rate, Some(232));
        assert_eq!(plan.servers, 10_000);
        assert_eq!(plan.servers_bound_by, ServerBound::Connections);
    }

    #[test]
    fn overhead_replication_and_db_servers() {
        let inputs = Inputs {
            storage_overhead_factor: 1.5,
            replication_factor: 3,
            db_server_capacity_bytes: Some(16e12),
            ..Inputs::source_design()
        };
        let plan = inputs.plan().unwrap();
        assert_eq!(plan.storage_bytes_total, 3.65e15);
        assert_eq!(plan.storage_bytes_total_provisioned, 3.65e15 * 4.5);
        // 3.65 PB × 1.5 / 4 TB = 1368.75 → 1369 shards; × 3 replicas, 4 per server.
        assert_eq!(plan.shards, 1369);
        assert_eq!(plan.shards_per_db_server, 4);
        assert_eq!(plan.db_servers, (1369 * 3_u64).div_ceil(4));
    }

    #[test]
    fn memory_and_concurrency() {
        let inputs = Inputs {
            concurrent_fraction: 0.1,
            memory_bytes_per_connection: Some(10e3),
            ..Inputs::source_design()
        };
        let plan = inputs.plan().unwrap();
        assert_eq!(plan.concurrent_connections, 50_000_000);
        assert_eq!(plan.servers, 1_000);
        assert_eq!(plan.memory_bytes_per_server, Some(50_000.0 * 10e3));
        assert_eq!(plan.memory_bytes_total, Some(50e6 * 10e3));
        // What each server holds apart from its connections counts once per server.
        let with_node = Inputs {
            memory_bytes_per_node: Some(300e6),
            ..inputs
        }
        .plan()
        .unwrap();
        assert_eq!(
            with_node.memory_bytes_per_server,
            Some(300e6 + 50_000.0 * 10e3)
        );
        assert_eq!(
            with_node.memory_bytes_total,
            Some(50e6 * 10e3 + 1_000.0 * 300e6)
        );
    }

    #[test]
    fn fan_out_scales_outgoing_bandwidth_only() {
        let inputs = Inputs {
            fan_out: 3.0,
            ..Inputs::source_design()
        };
        let plan = inputs.plan().unwrap();
        assert_eq!(
            plan.bandwidth_out_bytes_per_sec,
            3.0 * plan.bandwidth_in_bytes_per_sec
        );
        assert_eq!(plan.storage_bytes_total, 3.65e15);
    }

    #[test]
    fn rejects_out_of_range_inputs() {
        let cases: Vec<(Inputs, &str)> = vec![
            (
                Inputs {
                    daily_active_users: 0,
                    ..Inputs::default()
                },
                "daily active users",
            ),
            (
                Inputs {
                    messages_per_user_per_day: -1.0,
                    ..Inputs::default()
                },
                "messages per user",
            ),
            (
                Inputs {
                    message_size_bytes: f64::NAN,
                    ..Inputs::default()
                },
                "message size",
            ),
            (
                Inputs {
                    retention_years: 0.0,
                    ..Inputs::default()
                },
                "retention",
            ),
            (
                Inputs {
                    connections_per_server: 0,
                    ..Inputs::default()
                },
                "connections per server",
            ),
            (
                Inputs {
                    concurrent_fraction: 1.5,
                    ..Inputs::default()
                },
                "concurrent fraction",
            ),
            (
                Inputs {
                    messages_per_sec_per_server: Some(0.0),
                    ..Inputs::default()
                },
                "messages per second",
            ),
            (
                Inputs {
                    memory_bytes_per_connection: Some(-5.0),
                    ..Inputs::default()
                },
                "memory",
            ),
            (
                Inputs {
                    memory_bytes_per_node: Some(0.0),
                    ..Inputs::default()
                },
                "memory per server",
            ),
            (
                Inputs {
                    shard_size_bytes: f64::INFINITY,
                    ..Inputs::default()
                },
                "shard size",
            ),
            (
                Inputs {
                    db_server_capacity_bytes: Some(1e12),
                    ..Inputs::default()
                },
                "at least the shard size",
            ),
            (
                Inputs {
                    replication_factor: 0,
                    ..Inputs::default()
                },
                "replication",
            ),
            (
                Inputs {
                    storage_overhead_factor: 0.0,
                    ..Inputs::default()
                },
                "overhead",
            ),
            (
                Inputs {
                    peak_to_average: 0.5,
                    ..Inputs::default()
                },
                "peak-to-average",
            ),
            (
                Inputs {
                    fan_out: 0.9,
                    ..Inputs::default()
                },
                "fan-out",
            ),
        ];
        for (inputs, expected) in cases {
            let message = inputs.plan().unwrap_err().to_string();
            assert!(
                message.contains(expected),
                "{message:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let inputs = Inputs {
            daily_active_users: u64::MAX,
            messages_per_user_per_day: 1e300,
            ..Inputs::default()
        };
        assert!(matches!(inputs.plan(), Err(InputError::TooLarge { .. })));
        let inputs = Inputs {
            shard_size_bytes: 1e-300,
            ..Inputs::default()
        };
        assert!(matches!(inputs.plan(), Err(InputError::TooLarge { .. })));
    }

    #[test]
    fn ceil_count_ignores_floating_point_noise() {
        assert_eq!(ceil_count("x", 3.0000000000000004).unwrap(), 3);
        assert_eq!(ceil_count("x", 912.5).unwrap(), 913);
        assert_eq!(ceil_count("x", 2.999_999_999_999_999_6).unwrap(), 3);
        assert_eq!(ceil_count("x", 0.2).unwrap(), 1);
    }
}
