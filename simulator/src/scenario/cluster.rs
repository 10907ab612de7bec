//! The `[cluster]` section and the `[[faults]]` list: how many server nodes a run starts
//! behind which routing, and what it breaks at which time. Their defaults and checks are
//! here too, so cluster runs read as one piece.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ScenarioError;

/// Several server nodes sharing one store, joined through NATS (`chat-server serve
/// --cluster`). `nodes = 0` (the default): one server, as without this section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// Server nodes the run starts (1-16); 0 = no cluster.
    pub nodes: u32,
    /// The store every node shares (`postgres://…` or `cql://…`); empty = `server.store`.
    /// The run works in a fresh schema or keyspace of it, dropped afterwards.
    pub store: String,
    /// How clients reach a node.
    pub routing: Routing,
}

/// How the load generator's clients are spread over the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Through HAProxy with `deploy/haproxy/haproxy.cfg`: consistent hashing on the
    /// token's user id, health checks. One HAProxy process holds two sockets per
    /// connection under the host's open-file limit (about 9 500 WebSockets).
    Haproxy,
    /// Each client hashes its user id onto the nodes itself (rendezvous hashing, as
    /// token-aware database drivers do) and tries the next node in its order when one
    /// refuses; for runs larger than one HAProxy process can carry.
    Hash,
}

/// Something the run breaks at a given time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Seconds after the load started.
    pub at_secs: f64,
    pub kind: FaultKind,
    /// The node (1-based) for `kill_node` and `stop_node`.
    #[serde(default)]
    pub node: Option<u32>,
    /// `kill_node`, `stop_node`: start the node again this many seconds later (same name,
    /// same port); absent: it stays down. `store_outage`, `nats_outage`: how long the
    /// outage lasts.
    #[serde(default)]
    pub secs: Option<f64>,
}

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL: the node dies with whatever it held.
    KillNode,
    /// SIGTERM: the node drains and stops.
    StopNode,
    /// Every connection between the nodes and the database is cut and new ones are
    /// refused for `secs` (the database itself keeps running: a partition, as a failover
    /// looks from the nodes).
    StoreOutage,
    /// The NATS server is killed and started again `secs` later on the same port.
    NatsOutage,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillNode => "kill_node",
            FaultKind::StopNode => "stop_node",
            FaultKind::StoreOutage => "store_outage",
            FaultKind::NatsOutage => "nats_outage",
        }
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            nodes: 0,
            store: String::new(),
            routing: Routing::Haproxy,
        }
    }
}

impl Routing {
    pub fn name(self) -> &'static str {
        match self {
            Routing::Haproxy => "haproxy",
            Routing::Hash => "hash",
        }
    }
}

/// The longest outage or restart delay a fault may ask for, seconds.
const MAX_FAULT_SECS: f64 = 600.0;

/// Checks the cluster section and the faults; `server_store` is `server.store`.
pub fn validate(
    cluster: &Cluster,
    faults: &[Fault],
    server_store: &str,
    path: &Path,
) -> Result<(), ScenarioError> {
    let bad = |field: String, message: String| {
        Err(ScenarioError::Field {
            path: path.to_owned(),
            field,
            message,
        })
    };
    if cluster.nodes > 16 {
        return bad(
            "cluster.nodes".into(),
            format!("must be at most 16, got {}", cluster.nodes),
        );
    }
    let store = effective_store(cluster, server_store);
    if cluster.nodes > 0 && !shared_store(store) {
        return bad(
            "cluster.store".into(),
            format!(
                "a cluster needs a store its nodes can share (postgres://… or cql://…), got {store:?}"
            ),
        );
    }
    for (k, f) in faults.iter().enumerate() {
        let field = |name: &str| format!("faults.{k}.{name}");
        if !(f.at_secs.is_finite() && f.at_secs >= 0.0) {
            return bad(
                field("at_secs"),
                format!("must be a time of at least 0 s, got {}", f.at_secs),
            );
        }
        if cluster.nodes == 0 {
            return bad(
                field("kind"),
                format!(
                    "{} needs a [cluster] (nodes = 1 or more): faults break the cluster the run starts",
                    f.kind.name()
                ),
            );
        }
        if let Some(s) = f.secs
            && !(s.is_finite() && s > 0.0 && s <= MAX_FAULT_SECS)
        {
            return bad(
                field("secs"),
                format!("must be above 0 and at most {MAX_FAULT_SECS} s, got {s}"),
            );
        }
        match f.kind {
            FaultKind::KillNode | FaultKind::StopNode => match f.node {
                Some(n) if (1..=cluster.nodes).contains(&n) => {}
                Some(n) => {
                    return bad(
                        field("node"),
                        format!("must be a node from 1 to {}, got {n}", cluster.nodes),
                    );
                }
                None => {
                    return bad(
                        field("node"),
                        format!("{} needs the node to break (1-based)", f.kind.name()),
                    );
                }
            },
            FaultKind::StoreOutage | FaultKind::NatsOutage => {
                if f.node.is_some() {
                    return bad(
                        field("node"),
                        format!("{} breaks every node; leave `node` out", f.kind.name()),
                    );
                }
                if f.secs.is_none() {
                    return bad(
                        field("secs"),
                        format!("{} needs its length in seconds", f.kind.name()),
                    );
                }
            }
        }
    }
    Ok(())
}

/// The store a cluster's nodes share: `cluster.store`, or `server.store` when empty.
pub fn effective_store<'a>(cluster: &'a Cluster, server_store: &'a str) -> &'a str {
    if cluster.store.is_empty() {
        server_store
    } else {
        &cluster.store
    }
}

/// Whether several server processes can share a store of this spec.
pub fn shared_store(spec: &str) -> bool {
    ["postgres://", "postgresql://", "cql://"]
        .iter()
        .any(|p| spec.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(kind: FaultKind, node: Option<u32>, secs: Option<f64>) -> Fault {
        Fault {
            at_secs: 5.0,
            kind,
            node,
            secs,
        }
    }

    fn check(c: &Cluster, faults: &[Fault]) -> Result<(), String> {
        validate(c, faults, "fjall", Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_cluster_needs_a_shared_store() {
        let mut c = Cluster {
            nodes: 3,
            ..Cluster::default()
        };
        let e = check(&c, &[]).unwrap_err();
        assert!(e.contains("cluster.store") && e.contains("fjall"), "{e}");
        c.store = "postgres://chat:chat@127.0.0.1:5433/chat".into();
        check(&c, &[]).unwrap();
        c.nodes = 17;
        assert!(check(&c, &[]).unwrap_err().contains("at most 16"));
    }

    #[test]
    fn faults_name_their_field() {
        let c = Cluster {
            nodes: 3,
            store: "cql://127.0.0.1:9042/chat".into(),
            routing: Routing::Hash,
        };
        let cases = [
            (fault(FaultKind::KillNode, None, None), "faults.0.node"),
            (fault(FaultKind::KillNode, Some(4), None), "faults.0.node"),
            (fault(FaultKind::StopNode, Some(0), None), "faults.0.node"),
            (fault(FaultKind::StoreOutage, None, None), "faults.0.secs"),
            (
                fault(FaultKind::NatsOutage, Some(1), Some(2.0)),
                "faults.0.node",
            ),
            (
                fault(FaultKind::NatsOutage, None, Some(-1.0)),
                "faults.0.secs",
            ),
        ];
        for (f, field) in cases {
            let e = check(&c, std::slice::from_ref(&f)).unwrap_err();
            assert!(e.contains(field), "{f:?}: {e}");
        }
        check(&c, &[fault(FaultKind::KillNode, Some(2), Some(3.0))]).unwrap();
        check(&c, &[fault(FaultKind::StoreOutage, None, Some(3.0))]).unwrap();
        let e = check(
            &Cluster::default(),
            &[fault(FaultKind::NatsOutage, None, Some(1.0))],
        )
        .unwrap_err();
        assert!(e.contains("needs a [cluster]"), "{e}");
    }
}
