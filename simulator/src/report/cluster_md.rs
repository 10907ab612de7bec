//! The report's cluster section: routing, each node's share, deliveries across nodes, and
//! the fault timeline with the recovery each fault caused.

use super::md::Block;
use crate::cluster::info::ClusterInfo;

fn ms(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}"))
}

/// The blocks of the cluster section.
pub fn blocks(c: &ClusterInfo) -> Vec<Block> {
    let mut d = Vec::new();
    if c.solo {
        d.push(Block::Heading(format!(
            "One server over {}, broken by faults",
            c.store
        )));
        d.push(Block::Para(format!(
            "The server was started again on the same port and the same data after each fault: {} processes in all.",
            c.per_node.iter().map(|n| n.incarnations).sum::<u32>()
        )));
    } else {
        d.push(Block::Heading(format!(
            "Cluster: {} nodes over {}, routing `{}`",
            c.nodes, c.store, c.routing
        )));
    }
    if !c.solo {
        d.push(Block::Para(format!(
        "{:.1} acknowledged messages/s per node and {:.0} connections per node at the peak (the cluster's totals divided by its {} nodes){}. {} of {} live deliveries ({}) reached a device on another node than the one the message was sent to.",
        c.messages_per_sec_per_node,
        c.connections_per_node,
        c.nodes,
        c.cpu_us_per_message
            .map_or(String::new(), |v| format!("; {v:.0} µs of node CPU per message, all nodes together")),
        c.deliveries_cross_node,
        c.deliveries_same_node + c.deliveries_cross_node,
        c.cross_node_share
            .map_or("nodes unknown".into(), |v| format!("{:.1} %", v * 100.0)),
    )));
    }
    d.push(Block::Table {
        head: [
            "node",
            "processes",
            "peak connections",
            "CPU s",
            "CPU % (mean)",
            "peak RSS MiB",
            "messages stored",
            "msg frames delivered",
        ]
        .map(String::from)
        .to_vec(),
        rows: c
            .per_node
            .iter()
            .map(|n| {
                vec![
                    n.node.clone(),
                    n.incarnations.to_string(),
                    n.connections_peak.to_string(),
                    format!("{:.1}", n.cpu_secs),
                    format!("{:.0}", n.cpu_percent),
                    format!("{:.0}", n.rss_peak_mib),
                    n.messages_stored.to_string(),
                    n.messages_delivered.to_string(),
                ]
            })
            .collect(),
    });
    if !c.faults.is_empty() {
        d.push(Block::Heading("Faults".into()));
        d.push(Block::Para(
            "Times are seconds after the run's start (the plots' axis). Recovery: from a connection dropping unasked to the device connected again and caught up with its whole inbox.".into(),
        ));
        d.push(Block::Table {
            head: [
                "at s",
                "over at s",
                "fault",
                "what happened",
                "devices recovered",
                "recovery p50 ms",
                "p99 ms",
                "max ms",
                "failed requests",
            ]
            .map(String::from)
            .to_vec(),
            rows: c
                .faults
                .iter()
                .map(|f| {
                    let e = &f.event;
                    let what = match &e.error {
                        Some(err) => format!("{} — failed: {err}", e.what),
                        None => e.what.clone(),
                    };
                    vec![
                        format!("{:.1}", e.at_secs),
                        e.until_secs.map_or("—".into(), |t| format!("{t:.1}")),
                        match &e.node {
                            Some(n) => format!("{} {n}", e.kind),
                            None => e.kind.clone(),
                        },
                        what,
                        f.devices_recovered.to_string(),
                        ms(f.recovery_p50_ms),
                        ms(f.recovery_p99_ms),
                        ms(f.recovery_max_ms),
                        f.errors_during.to_string(),
                    ]
                })
                .collect(),
        });
    }
    d
}
