//! The catalogue of plan figures: one [`Figure`] per output, with its JSON
//! name, its label, its kind of quantity and how to read it off a
//! [`Plan`].
//!
//! Tables, JSON ratios and the calibrated comparison all walk
//! [`Figure::ALL`], so a figure added here shows up everywhere at once.

use crate::model::{Inputs, Plan};
use crate::units::{format_bytes, format_bytes_per_sec, format_count};

/// One output of the capacity model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Figure {
    /// Messages sent per day.
    MessagesPerDay,
    /// Average messages per second.
    MessagesPerSecAvg,
    /// Peak messages per second.
    MessagesPerSecPeak,
    /// Raw storage per day.
    StorageBytesPerDay,
    /// Raw storage over the retention.
    StorageBytesTotal,
    /// Storage per day with overhead and replication.
    StorageBytesPerDayProvisioned,
    /// Storage over the retention with overhead and replication.
    StorageBytesTotalProvisioned,
    /// Average incoming bandwidth.
    BandwidthIn,
    /// Average outgoing bandwidth.
    BandwidthOut,
    /// Peak incoming bandwidth.
    BandwidthInPeak,
    /// Peak outgoing bandwidth.
    BandwidthOutPeak,
    /// Concurrent connections at the busiest moment.
    ConcurrentConnections,
    /// Chat servers needed for the connections.
    ServersByConnections,
    /// Chat servers needed for the peak message rate.
    ServersByMessageRate,
    /// Chat servers needed.
    Servers,
    /// Memory per chat server.
    MemoryBytesPerServer,
    /// Memory across the chat tier.
    MemoryBytesTotal,
    /// Logical database shards.
    Shards,
    /// Physical database servers.
    DbServers,
}

/// What kind of number a figure is, which decides how it is formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// A number of things.
    Count,
    /// A number of things per second.
    CountPerSec,
    /// Bytes.
    Bytes,
    /// Bytes per second.
    BytesPerSec,
}

impl Quantity {
    /// Formats `value` for people, with decimal units.
    pub fn format(self, value: f64) -> String {
        match self {
            Self::Count => format_count(value),
            Self::CountPerSec => format!("{}/s", format_count(value)),
            Self::Bytes => format_bytes(value),
            Self::BytesPerSec => format_bytes_per_sec(value),
        }
    }
}

impl Figure {
    /// Every figure, in report order.
    pub const ALL: [Figure; 19] = [
        Figure::MessagesPerDay,
        Figure::MessagesPerSecAvg,
        Figure::MessagesPerSecPeak,
        Figure::StorageBytesPerDay,
        Figure::StorageBytesTotal,
        Figure::StorageBytesPerDayProvisioned,
        Figure::StorageBytesTotalProvisioned,
        Figure::BandwidthIn,
        Figure::BandwidthOut,
        Figure::BandwidthInPeak,
        Figure::BandwidthOutPeak,
        Figure::ConcurrentConnections,
        Figure::ServersByConnections,
        Figure::ServersByMessageRate,
        Figure::Servers,
        Figure::MemoryBytesPerServer,
        Figure::MemoryBytesTotal,
        Figure::Shards,
        Figure::DbServers,
    ];

    /// The figure's field name in a serialized [`Plan`] (and so in
    /// `chat-estimate --json`).
    pub fn key(self) -> &'static str {
        match self {
            Self::MessagesPerDay => "messages_per_day",
            Self::MessagesPerSecAvg => "messages_per_sec_avg",
            Self::MessagesPerSecPeak => "messages_per_sec_peak",
            Self::StorageBytesPerDay => "storage_bytes_per_day",
            Self::StorageBytesTotal => "storage_bytes_total",
            Self::StorageBytesPerDayProvisioned => "storage_bytes_per_day_provisioned",
            Self::StorageBytesTotalProvisioned => "storage_bytes_total_provisioned",
            Self::BandwidthIn => "bandwidth_in_bytes_per_sec",
            Self::BandwidthOut => "bandwidth_out_bytes_per_sec",
            Self::BandwidthInPeak => "bandwidth_in_peak_bytes_per_sec",
            Self::BandwidthOutPeak => "bandwidth_out_peak_bytes_per_sec",
            Self::ConcurrentConnections => "concurrent_connections",
            Self::ServersByConnections => "servers_by_connections",
            Self::ServersByMessageRate => "servers_by_message_rate",
            Self::Servers => "servers",
            Self::MemoryBytesPerServer => "memory_bytes_per_server",
            Self::MemoryBytesTotal => "memory_bytes_total",
            Self::Shards => "shards",
            Self::DbServers => "db_servers",
        }
    }

    /// What the figure is, in words, without parameters: for tables that
    /// compare plans whose parameters differ.
    pub fn name(self) -> &'static str {
        match self {
            Self::MessagesPerDay => "messages per day",
            Self::MessagesPerSecAvg => "messages per second, average",
            Self::MessagesPerSecPeak => "messages per second, peak",
            Self::StorageBytesPerDay => "storage per day, raw",
            Self::StorageBytesTotal => "storage over the retention, raw",
            Self::StorageBytesPerDayProvisioned => "storage per day, provisioned",
            Self::StorageBytesTotalProvisioned => "storage over the retention, provisioned",
            Self::BandwidthIn => "bandwidth in, average",
            Self::BandwidthOut => "bandwidth out, average",
            Self::BandwidthInPeak => "bandwidth in, peak",
            Self::BandwidthOutPeak => "bandwidth out, peak",
            Self::ConcurrentConnections => "concurrent connections",
            Self::ServersByConnections => "chat servers by connections",
            Self::ServersByMessageRate => "chat servers by peak message rate",
            Self::Servers => "chat servers needed",
            Self::MemoryBytesPerServer => "memory per chat server",
            Self::MemoryBytesTotal => "memory across the chat tier",
            Self::Shards => "logical shards",
            Self::DbServers => "database servers",
        }
    }

    /// What the figure is, in words, with the plan's own parameters (e.g.
    /// the retention) filled in.
    pub fn label(self, plan: &Plan) -> String {
        let inputs = &plan.inputs;
        match self {
            Self::MessagesPerDay => "messages per day".to_owned(),
            Self::MessagesPerSecAvg => "messages per second, average".to_owned(),
            Self::MessagesPerSecPeak => {
                format!("messages per second, peak (×{})", inputs.peak_to_average)
            }
            Self::StorageBytesPerDay => "storage per day, raw".to_owned(),
            Self::StorageBytesTotal => {
                format!("storage over {} years, raw", inputs.retention_years)
            }
            Self::StorageBytesPerDayProvisioned => {
                format!("storage per day, provisioned ({})", provisioning(inputs))
            }
            Self::StorageBytesTotalProvisioned => format!(
                "storage over {} years, provisioned ({})",
                inputs.retention_years,
                provisioning(inputs)
            ),
            Self::BandwidthIn => "bandwidth in, average".to_owned(),
            Self::BandwidthOut => format!("bandwidth out, average (fan-out ×{})", inputs.fan_out),
            Self::BandwidthInPeak => "bandwidth in, peak".to_owned(),
            Self::BandwidthOutPeak => "bandwidth out, peak".to_owned(),
            Self::ConcurrentConnections => format!(
                "concurrent connections ({}% of daily users)",
                format_count(inputs.concurrent_fraction * 100.0)
            ),
            Self::ServersByConnections => format!(
                "chat servers by connections ({} each)",
                format_count(inputs.connections_per_server as f64)
            ),
            Self::ServersByMessageRate => match inputs.messages_per_sec_per_server {
                Some(rate) => format!(
                    "chat servers by peak message rate ({} each)",
                    Quantity::CountPerSec.format(rate)
                ),
                None => "chat servers by peak message rate".to_owned(),
            },
            Self::Servers => "chat servers needed".to_owned(),
            Self::MemoryBytesPerServer => match (
                inputs.memory_bytes_per_connection,
                inputs.memory_bytes_per_node,
            ) {
                (Some(memory), Some(node)) => format!(
                    "memory per chat server ({} + {} per connection)",
                    format_bytes(node),
                    format_bytes(memory)
                ),
                (Some(memory), None) => format!(
                    "memory per chat server ({} per connection)",
                    format_bytes(memory)
                ),
                (None, _) => "memory per chat server".to_owned(),
            },
            Self::MemoryBytesTotal => "memory across the chat tier".to_owned(),
            Self::Shards => format!(
                "logical shards ({} each)",
                format_bytes(inputs.shard_size_bytes)
            ),
            Self::DbServers => format!(
                "database servers ({} shard{} each)",
                plan.shards_per_db_server,
                if plan.shards_per_db_server == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        }
    }

    /// The kind of number the figure is.
    pub fn quantity(self) -> Quantity {
        match self {
            Self::MessagesPerDay
            | Self::ConcurrentConnections
            | Self::ServersByConnections
            | Self::ServersByMessageRate
            | Self::Servers
            | Self::Shards
            | Self::DbServers => Quantity::Count,
            Self::MessagesPerSecAvg | Self::MessagesPerSecPeak => Quantity::CountPerSec,
            Self::StorageBytesPerDay
            | Self::StorageBytesTotal
            | Self::StorageBytesPerDayProvisioned
            | Self::StorageBytesTotalProvisioned
            | Self::MemoryBytesPerServer
            | Self::MemoryBytesTotal => Quantity::Bytes,
            Self::BandwidthIn
            | Self::BandwidthOut
            | Self::BandwidthInPeak
            | Self::BandwidthOutPeak => Quantity::BytesPerSec,
        }
    }

    /// The figure's value in `plan`, or `None` where the plan cannot say
    /// (no per-server message rate, no memory per connection).
    pub fn value(self, plan: &Plan) -> Option<f64> {
        Some(match self {
            Self::MessagesPerDay => plan.messages_per_day,
            Self::MessagesPerSecAvg => plan.messages_per_sec_avg,
            Self::MessagesPerSecPeak => plan.messages_per_sec_peak,
            Self::StorageBytesPerDay => plan.storage_bytes_per_day,
            Self::StorageBytesTotal => plan.storage_bytes_total,
            Self::StorageBytesPerDayProvisioned => plan.storage_bytes_per_day_provisioned,
            Self::StorageBytesTotalProvisioned => plan.storage_bytes_total_provisioned,
            Self::BandwidthIn => plan.bandwidth_in_bytes_per_sec,
            Self::BandwidthOut => plan.bandwidth_out_bytes_per_sec,
            Self::BandwidthInPeak => plan.bandwidth_in_peak_bytes_per_sec,
            Self::BandwidthOutPeak => plan.bandwidth_out_peak_bytes_per_sec,
            Self::ConcurrentConnections => plan.concurrent_connections as f64,
            Self::ServersByConnections => plan.servers_by_connections as f64,
            Self::ServersByMessageRate => plan.servers_by_message_rate? as f64,
            Self::Servers => plan.servers as f64,
            Self::MemoryBytesPerServer => plan.memory_bytes_per_server?,
            Self::MemoryBytesTotal => plan.memory_bytes_total?,
            Self::Shards => plan.shards as f64,
            Self::DbServers => plan.db_servers as f64,
        })
    }

    /// The figure's value formatted for people, or why there is none.
    pub fn display(self, plan: &Plan) -> String {
        match self.value(plan) {
            Some(value) => {
                let text = self.quantity().format(value);
                if self == Self::Servers {
                    format!("{text} (bound by {})", plan.servers_bound_by.describe())
                } else {
                    text
                }
            }
            None => match self {
                Self::ServersByMessageRate => "not considered".to_owned(),
                _ => "unknown".to_owned(),
            },
        }
    }
}

/// The storage multipliers in words, e.g. `overhead ×1.5, 3 replicas`.
fn provisioning(inputs: &Inputs) -> String {
    let replicas = inputs.replication_factor;
    format!(
        "overhead ×{}, {replicas} {}",
        inputs.storage_overhead_factor,
        if replicas == 1 { "copy" } else { "copies" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_serialized_plan() {
        let plan = Inputs {
            messages_per_sec_per_server: Some(1e3),
            memory_bytes_per_connection: Some(1e4),
            ..Inputs::source_design()
        }
        .plan()
        .unwrap();
        let json = serde_json::to_value(&plan).unwrap();
        for figure in Figure::ALL {
            let field = &json[figure.key()];
            let value = figure.value(&plan).unwrap();
            assert_eq!(field.as_f64(), Some(value), "{}", figure.key());
        }
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<_> = Figure::ALL.iter().map(|f| f.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Figure::ALL.len());
    }
}
