//! What the dashboard shows, as the events it sends: the run's description at the start
//! ([`Info`]), one [`Frame`] per sample, the verdict at the end ([`Done`]). Rates are per
//! second over the interval since the previous sample; latency is that of the last
//! complete interval.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::checks::Check;
use crate::cluster::ClusterRun;
use crate::cluster::faults::FaultEvent;
use crate::records::{Progress, Sample};

/// The run, as known once it is sized.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub scenario: String,
    pub users: u64,
    pub devices: u64,
    pub interval_secs: f64,
    pub duration_secs: f64,
    /// Every check, by name, with what it guarantees.
    pub checks: Vec<(String, String)>,
    /// The cluster's nodes (empty for a single server).
    pub nodes: Vec<String>,
}

impl Info {
    pub fn checks() -> Vec<(String, String)> {
        Check::ALL
            .iter()
            .map(|c| (c.name().to_owned(), c.describe().to_owned()))
            .collect()
    }
}

/// One node's connections at a sample (`None`: down).
#[derive(Debug, Clone, Serialize)]
pub struct NodeConnections {
    pub node: String,
    pub connections: Option<u64>,
}

/// One sample as the page draws it.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    /// Seconds since the run's epoch.
    pub t: f64,
    pub connected: i64,
    /// Messages per second: sends that fell due (offered), answered with `sent`, first
    /// deliveries to devices.
    pub offered_per_sec: f64,
    pub sent_per_sec: f64,
    pub delivered_per_sec: f64,
    pub errors: u64,
    pub errors_per_sec: f64,
    /// Delivery latency of the last complete interval, ms: p50, p90, p99.
    pub delivery_ms: Option<[f64; 3]>,
    /// Server CPU in percent of one core over the interval, and resident memory in MiB.
    pub server_cpu_percent: Option<f64>,
    pub server_rss_mib: Option<f64>,
    /// The load generator's CPU (this process and its workers), percent of one core.
    pub load_cpu_percent: Option<f64>,
    pub nodes: Vec<NodeConnections>,
    /// Faults found so far, by check name (every check listed, zero included).
    pub faults: BTreeMap<String, u64>,
    /// The fault timeline so far (cluster runs with faults).
    pub fault_events: Vec<FaultEvent>,
}

fn per_sec(now: u64, before: u64, dt: f64) -> f64 {
    if dt > 0.0 {
        now.saturating_sub(before) as f64 / dt
    } else {
        0.0
    }
}

impl Frame {
    /// The frame of sample `s` (with the shards' progress `p`), after `prev` (the
    /// previous sample and the offered count then).
    pub fn new(
        prev: Option<(&Sample, u64)>,
        s: &Sample,
        p: &Progress,
        cluster: Option<&ClusterRun>,
    ) -> Frame {
        let zero = Sample::default();
        let (before, offered_before) = prev.unwrap_or((&zero, 0));
        let prev = prev.map(|(b, _)| b);
        let dt = s.t - before.t;
        let cpu = |now: f64, then: f64| (dt > 0.0).then(|| (now - then).max(0.0) / dt * 100.0);
        let server_cpu = match (prev.and_then(|b| b.server), s.server) {
            (Some(b), Some(n)) => cpu(n.cpu_secs, b.cpu_secs),
            _ => None,
        };
        let faults = Check::ALL
            .iter()
            .map(|c| (c.name().to_owned(), p.faults.get(c).copied().unwrap_or(0)))
            .collect();
        let (nodes, fault_events) = match cluster {
            Some(c) => {
                let names: Vec<String> = c.nodes.lock().iter().map(|n| n.name.clone()).collect();
                let row = c.series.lock().rows.last().map(|(_, r)| r.clone());
                let nodes = names
                    .into_iter()
                    .enumerate()
                    .map(|(k, node)| NodeConnections {
                        node,
                        connections: row.as_ref().and_then(|r| r.get(k).copied().flatten()),
                    })
                    .collect();
                (nodes, c.events.lock().clone())
            }
            None => (Vec::new(), Vec::new()),
        };
        Frame {
            t: s.t,
            connected: s.connected,
            offered_per_sec: per_sec(p.offered, offered_before, dt),
            sent_per_sec: per_sec(s.acked, before.acked, dt),
            delivered_per_sec: per_sec(s.deliveries, before.deliveries, dt),
            errors: s.errors,
            errors_per_sec: per_sec(s.errors, before.errors, dt),
            delivery_ms: p.recent_delivery_ms,
            server_cpu_percent: server_cpu,
            server_rss_mib: s.server.map(|x| x.rss_bytes as f64 / (1024.0 * 1024.0)),
            load_cpu_percent: prev.and_then(|b| cpu(s.load_cpu_secs, b.load_cpu_secs)),
            nodes,
            faults,
            fault_events,
        }
    }
}

/// The verdict at the end of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub passed: bool,
    pub failures: Vec<String>,
    pub report: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::ProcSample;

    fn sample(t: f64, acked: u64, deliveries: u64, cpu: f64) -> Sample {
        Sample {
            t,
            connected: 4,
            acked,
            deliveries,
            server: Some(ProcSample {
                cpu_secs: cpu,
                rss_bytes: 64 << 20,
                ..ProcSample::default()
            }),
            ..Sample::default()
        }
    }

    #[test]
    fn rates_are_per_second_since_the_previous_sample() {
        let mut p = Progress {
            offered: 30,
            ..Progress::default()
        };
        p.faults.insert(Check::Gaps, 2);
        let a = sample(2.0, 20, 40, 1.0);
        let first = Frame::new(None, &a, &p, None);
        assert_eq!(first.sent_per_sec, 10.0);
        assert_eq!(
            first.server_cpu_percent, None,
            "no CPU rate without a previous sample"
        );
        let b = sample(4.0, 60, 140, 1.5);
        p.offered = 70;
        let f = Frame::new(Some((&a, 30)), &b, &p, None);
        assert_eq!(f.offered_per_sec, 20.0);
        assert_eq!(f.sent_per_sec, 20.0);
        assert_eq!(f.delivered_per_sec, 50.0);
        assert_eq!(f.server_cpu_percent, Some(25.0));
        assert_eq!(f.server_rss_mib, Some(64.0));
        assert_eq!(f.faults.len(), Check::ALL.len(), "every check is listed");
        assert_eq!(f.faults["gaps"], 2);
        assert_eq!(f.faults["order"], 0);
    }
}
