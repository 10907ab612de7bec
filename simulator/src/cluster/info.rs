//! What the report says of a cluster run: each node's share of the work, how many
//! deliveries crossed nodes, and each fault with the recovery it caused.

use serde::{Deserialize, Serialize};

use super::ClusterRun;
use super::faults::FaultEvent;
use crate::metrics::Series;

/// Seconds before a fault and after it was over within which a dropped connection is
/// put down to it.
const BEFORE_SECS: f64 = 0.5;
const AFTER_SECS: f64 = 5.0;

/// The cluster section of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub nodes: u32,
    /// One server without `[cluster]`, broken and restarted by the faults.
    #[serde(default)]
    pub solo: bool,
    /// `haproxy` or `hash`.
    pub routing: String,
    /// The shared store's kind (`postgres`, `cql`).
    pub store: String,
    pub per_node: Vec<NodeInfo>,
    /// Live first arrivals on a device of the node the message was sent to, and on
    /// another node's device (relayed through NATS).
    pub deliveries_same_node: u64,
    pub deliveries_cross_node: u64,
    /// deliveries_cross_node over both; null when the nodes were not known.
    pub cross_node_share: Option<f64>,
    /// Acknowledged messages/s over the load divided by the nodes.
    pub messages_per_sec_per_node: f64,
    /// The most connections held at once, divided by the nodes.
    pub connections_per_node: f64,
    /// Every node's CPU over the load, per acknowledged message, µs.
    pub cpu_us_per_message: Option<f64>,
    pub faults: Vec<FaultReport>,
}

/// One node's figures, all its incarnations together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    pub port: u16,
    /// Processes started for it (more than 1 after a restart).
    pub incarnations: u32,
    pub connections_peak: u64,
    pub cpu_secs: f64,
    /// Mean CPU over the run, percent of one core.
    pub cpu_percent: f64,
    pub rss_peak_mib: f64,
    /// Messages stored by sends this node took, and live `msg` frames it wrote.
    pub messages_stored: u64,
    pub messages_delivered: u64,
}

/// A fault and what it did to the clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    #[serde(flatten)]
    pub event: FaultEvent,
    /// Connections that dropped unasked around the fault and came back.
    pub devices_recovered: u64,
    /// From the drop to the device caught up again on a node, ms.
    pub recovery_p50_ms: Option<f64>,
    pub recovery_p99_ms: Option<f64>,
    pub recovery_max_ms: Option<f64>,
    /// Failed requests (sends unanswered or refused, reconnects, reads) from the fault
    /// until it was over and the next interval.
    pub errors_during: u64,
}

/// The value at quantile `q` of sorted `v`.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i.min(v.len() - 1)).copied()
}

/// What a run's figures say of the faults: `recoveries` are (drop time, seconds to
/// caught up), both seconds after the epoch.
pub fn fault_reports(
    events: &[FaultEvent],
    recoveries: &[(f64, f64)],
    series: &Series,
    interval: f64,
) -> Vec<FaultReport> {
    let end_of = |e: &FaultEvent| e.until_secs.unwrap_or(e.at_secs).max(e.at_secs);
    // Each drop goes to the latest fault that had struck by then (faults repeated every
    // few seconds overlap in their windows), if it is within that fault's window.
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); events.len()];
    for (at, secs) in recoveries {
        let owner = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.at_secs - BEFORE_SECS <= *at)
            .max_by(|a, b| a.1.at_secs.total_cmp(&b.1.at_secs))
            .filter(|(_, e)| *at <= end_of(e) + AFTER_SECS);
        if let Some((k, _)) = owner {
            took[k].push(secs * 1000.0);
        }
    }
    events
        .iter()
        .zip(took)
        .map(|(e, mut took)| {
            let end = end_of(e);
            took.sort_by(f64::total_cmp);
            let first = (e.at_secs / interval).floor() as u64;
            let last = (end / interval).floor() as u64 + 1;
            let errors_during = series
                .buckets
                .range(first..=last)
                .map(|(_, b)| b.errors)
                .sum();
            FaultReport {
                event: e.clone(),
                devices_recovered: took.len() as u64,
                recovery_p50_ms: quantile(&took, 0.5),
                recovery_p99_ms: quantile(&took, 0.99),
                recovery_max_ms: took.last().copied(),
                errors_during,
            }
        })
        .collect()
}

/// What the merged run and the cluster's own records give the report.
pub struct Figures<'a> {
    pub series: &'a Series,
    pub interval: f64,
    pub recoveries: &'a [(f64, f64)],
    pub same_node: u64,
    pub cross_node: u64,
    pub messages_acked: u64,
    pub load_secs: f64,
    pub run_secs: f64,
    pub connections_peak: i64,
}

impl ClusterRun {
    /// The cluster section of the report.
    pub fn info(&self, f: &Figures<'_>) -> ClusterInfo {
        let nodes = self.nodes.lock();
        let n = nodes.len().max(1) as f64;
        let per_node: Vec<NodeInfo> = nodes
            .iter()
            .map(|x| {
                let t = x.totals();
                NodeInfo {
                    node: x.name.clone(),
                    port: x.port,
                    incarnations: x.incarnations,
                    connections_peak: x.connections_peak,
                    cpu_secs: t.cpu_secs,
                    cpu_percent: if f.run_secs > 0.0 {
                        t.cpu_secs / f.run_secs * 100.0
                    } else {
                        0.0
                    },
                    rss_peak_mib: x.rss_peak_bytes as f64 / (1024.0 * 1024.0),
                    messages_stored: t.messages_stored,
                    messages_delivered: t.messages_delivered,
                }
            })
            .collect();
        let cpu: f64 = per_node.iter().map(|x| x.cpu_secs).sum();
        let both = f.same_node + f.cross_node;
        ClusterInfo {
            nodes: nodes.len() as u32,
            solo: self.solo,
            routing: self.routing.name().into(),
            store: crate::namespace::label_of(&self.store_spec),
            per_node,
            deliveries_same_node: f.same_node,
            deliveries_cross_node: f.cross_node,
            cross_node_share: (both > 0).then(|| f.cross_node as f64 / both as f64),
            messages_per_sec_per_node: if f.load_secs > 0.0 {
                f.messages_acked as f64 / f.load_secs / n
            } else {
                0.0
            },
            connections_per_node: f.connections_peak.max(0) as f64 / n,
            cpu_us_per_message: (f.messages_acked > 0).then(|| cpu * 1e6 / f.messages_acked as f64),
            faults: fault_reports(&self.events.lock(), f.recoveries, f.series, f.interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: f64, until: Option<f64>) -> FaultEvent {
        FaultEvent {
            kind: "kill_node".into(),
            node: Some("n2".into()),
            at_secs: at,
            until_secs: until,
            what: String::new(),
            error: None,
        }
    }

    #[test]
    fn recoveries_go_to_the_fault_that_caused_them() {
        let events = [event(10.0, Some(14.0)), event(30.0, None)];
        let recoveries = [
            (3.0, 0.1),
            (10.2, 1.0),
            (10.3, 2.0),
            (18.5, 0.5),
            (30.1, 0.3),
        ];
        let mut series = Series::default();
        series.at(10).errors = 4;
        series.at(20).errors = 7;
        let r = fault_reports(&events, &recoveries, &series, 1.0);
        assert_eq!(r[0].devices_recovered, 3);
        assert_eq!(r[0].recovery_max_ms, Some(2000.0));
        assert_eq!(r[0].recovery_p50_ms, Some(1000.0));
        assert_eq!(r[0].errors_during, 4);
        assert_eq!(r[1].devices_recovered, 1);
        assert_eq!(r[1].errors_during, 0);
    }

    #[test]
    fn repeated_faults_each_keep_their_own_recoveries() {
        // Kills 3 s apart: each window reaches into the next fault's, yet every drop
        // belongs to the kill just before it.
        let events = [
            event(5.0, Some(6.0)),
            event(8.0, Some(9.0)),
            event(11.0, Some(12.0)),
        ];
        let recoveries = [
            (5.1, 2.0),
            (5.2, 2.1),
            (8.1, 2.2),
            (11.05, 2.3),
            (11.1, 2.4),
        ];
        let r = fault_reports(&events, &recoveries, &Series::default(), 1.0);
        let counts: Vec<u64> = r.iter().map(|f| f.devices_recovered).collect();
        assert_eq!(counts, vec![2, 1, 2]);
        assert_eq!(r[2].recovery_max_ms, Some(2400.0));
    }
}
