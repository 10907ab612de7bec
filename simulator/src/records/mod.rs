//! The run's records as data: what a shard reports ([`ShardReport`]), the parent's samples
//! ([`Sample`]), all shards merged ([`Merged`]) and what the report writers read
//! ([`RunData`]). The load produces these, the orchestrator collects them and the report
//! reads them, so they live here, below all three, and none of those imports another to
//! reach them.

pub mod counters;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use self::counters::CountersSnapshot;
use crate::checks::{Check, CheckResults};
use crate::child::ProcSample;
use crate::metrics::{BucketWire, HistogramError, Latency, LatencySet, Series};

/// Goose's own figures for one request kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GooseRequestSummary {
    pub name: String,
    pub ok: u64,
    pub failed: u64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

/// What a shard reports at the end. Every field merges exactly with other shards'.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardReport {
    pub shard: u32,
    pub users: u64,
    pub devices: u64,
    pub epoch_unix_ms: u64,
    /// When the load started and ended, seconds after the epoch.
    pub load_start_secs: f64,
    pub load_end_secs: f64,
    pub latency: BTreeMap<Latency, String>,
    pub series: Vec<BucketWire>,
    pub checks: CheckResults,
    pub counters: CountersSnapshot,
    /// Close codes and their counts, as `[code, count]` pairs on the wire: a worker's
    /// report travels inside an internally tagged message, where a map with integer keys
    /// would not read back.
    #[serde(with = "code_pairs")]
    pub close_codes: BTreeMap<u16, u64>,
    pub goose: Vec<GooseRequestSummary>,
    /// Whether the server serves groups (`None`: not probed, the scenario has none).
    pub groups_supported: Option<bool>,
    pub groups_created: u64,
    pub groups_failed: u64,
    pub presence_supported: Option<bool>,
    /// Bytes of message bodies sent and acknowledged.
    pub body_bytes_acked: u64,
    pub notes: Vec<String>,
    /// Reconnects after a drop the device had not asked for: (seconds after the epoch
    /// when the connection dropped, seconds until the device was caught up again).
    #[serde(default)]
    pub recoveries: Vec<(f64, f64)>,
}

/// `BTreeMap<u16, u64>` as a list of `[key, value]` pairs.
mod code_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<u16, u64>, s: S) -> Result<S::Ok, S::Error> {
        m.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u16, u64>, D::Error> {
        Ok(Vec::<(u16, u64)>::deserialize(d)?.into_iter().collect())
    }
}

/// A snapshot for the progress line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// When the shard's load started, seconds after the epoch (`None`: not yet).
    #[serde(default)]
    pub load_start_secs: Option<f64>,
    pub connected: i64,
    /// Connections opened so far (first connects and reconnects).
    #[serde(default)]
    pub connects: u64,
    pub acked: u64,
    pub deliveries: u64,
    pub errors: u64,
    pub p99_delivery_ms: Option<f64>,
    /// Sends whose intended time came so far: the offered load.
    #[serde(default)]
    pub offered: u64,
    /// Live delivery latency of the last complete series interval: p50, p90, p99 in ms.
    #[serde(default)]
    pub recent_delivery_ms: Option<[f64; 3]>,
    /// Faults found so far, by check; the checks over whole device logs add theirs at the
    /// end of the run.
    #[serde(default)]
    pub faults: BTreeMap<Check, u64>,
}

impl Progress {
    /// Adds another shard's progress: counts add up; of latencies, which cannot be merged
    /// from percentiles, the worse is kept.
    pub fn merge(&mut self, q: &Progress) {
        let worse = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.connected += q.connected;
        self.connects += q.connects;
        self.acked += q.acked;
        self.deliveries += q.deliveries;
        self.errors += q.errors;
        self.offered += q.offered;
        self.p99_delivery_ms = worse(self.p99_delivery_ms, q.p99_delivery_ms);
        self.recent_delivery_ms = match (self.recent_delivery_ms, q.recent_delivery_ms) {
            (Some(a), Some(b)) => Some([a[0].max(b[0]), a[1].max(b[1]), a[2].max(b[2])]),
            (a, b) => a.or(b),
        };
        for (c, n) in &q.faults {
            *self.faults.entry(*c).or_default() += n;
        }
    }
}

/// One sample of the run, taken by the parent every interval.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds after the epoch.
    pub t: f64,
    pub connected: i64,
    /// Connections opened so far.
    pub connects: u64,
    pub acked: u64,
    pub deliveries: u64,
    pub errors: u64,
    pub server: Option<ProcSample>,
    /// Tasks alive on the server's runtime (every node's, added), from `/metrics`.
    pub server_tasks: Option<u64>,
    /// The server's store memory gauges, from `/metrics` (one child server with fjall).
    pub store_memory: Option<chat_server::store::StoreMemory>,
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
    /// A cluster run's connections per node over time: (node, [(seconds, connections)]).
    pub node_connections: Vec<(String, Vec<(f64, f64)>)>,
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
    /// Every shard's recoveries, by the time the connection dropped.
    pub recoveries: Vec<(f64, f64)>,
}

/// Merges shard reports: histograms, series, counts and checks add exactly.
pub fn merge(reports: Vec<ShardReport>) -> Result<Merged, HistogramError> {
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
        recoveries: Vec::new(),
    };
    let mut goose: BTreeMap<String, (GooseRequestSummary, f64)> = BTreeMap::new();
    for r in reports {
        m.latency.merge(&LatencySet::decode(&r.latency)?)?;
        m.series.merge(&Series::from_wire(&r.series)?)?;
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
        m.recoveries.extend(r.recoveries);
    }
    m.recoveries.sort_by(|a, b| a.0.total_cmp(&b.0));
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
pub fn check_failed(m: &Merged, c: crate::checks::Check) -> bool {
    m.checks.count(c) > 0
}
