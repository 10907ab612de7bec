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
    /// Strike this many times (1-1000): a crash loop, outages again and again.
    #[serde(default = "one")]
    pub repeat: u32,
    /// With `repeat`: the mean time from one strike to the next, s. Each gap is drawn
    /// uniformly between half and one and a half of it from the run's seed, so the
    /// moments are random (never in step with the load's own rhythm) yet a rerun with the
    /// same seed strikes at the same ones. It must leave room for the fault to be over.
    #[serde(default)]
    pub every_secs: Option<f64>,
}

fn one() -> u32 {
    1
}

/// The faults one by one, each repeat at its own time (seconds after the load started),
/// drawn from `seed`; sorted by time.
pub fn expand(faults: &[Fault], seed: u64) -> Vec<Fault> {
    let mut out = Vec::new();
    for (k, f) in faults.iter().enumerate() {
        let mut rng = crate::rng::Rng::derive(seed, &[0xfa17, k as u64]);
        let mut at = f.at_secs;
        for i in 0..f.repeat.max(1) {
            if i > 0 {
                let every = f.every_secs.unwrap_or(0.0);
                at += every * (0.5 + rng.f64());
            }
            out.push(Fault {
                at_secs: at,
                repeat: 1,
                every_secs: None,
                ..f.clone()
            });
        }
    }
    out.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    out
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
/// The most strikes one fault entry may ask for.
const MAX_REPEAT: u32 = 1000;

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
        // Without [cluster] the run starts one server and the faults break it.
        let nodes = cluster.nodes.max(1);
        if cluster.nodes == 0 && f.kind == FaultKind::NatsOutage {
            return bad(
                field("kind"),
                "nats_outage needs a [cluster] (nodes = 1 or more): one server without it uses no NATS".into(),
            );
        }
        if f.repeat == 0 || f.repeat > MAX_REPEAT {
            return bad(
                field("repeat"),
                format!("must be from 1 to {MAX_REPEAT}, got {}", f.repeat),
            );
        }
        match (f.repeat, f.every_secs) {
            (1, Some(_)) => {
                return bad(
                    field("every_secs"),
                    "is the time between repeats: give `repeat` too".into(),
                );
            }
            (2.., None) => {
                return bad(
                    field("every_secs"),
                    format!("repeat = {} needs the mean time between strikes", f.repeat),
                );
            }
            (2.., Some(e)) => {
                // The shortest gap is half the mean: the fault must be over by then.
                let lasts = f.secs.unwrap_or(0.0);
                if !(e.is_finite() && e / 2.0 > lasts && e <= MAX_FAULT_SECS) {
                    return bad(
                        field("every_secs"),
                        format!(
                            "must be more than twice the fault's own {lasts} s (the shortest gap is half of it) and at most {MAX_FAULT_SECS} s, got {e}"
                        ),
                    );
                }
            }
            _ => {}
        }
        if f.kind == FaultKind::StoreOutage
            && cluster.nodes == 0
            && !["postgres://", "postgresql://"]
                .iter()
                .any(|p| server_store.starts_with(p))
        {
            return bad(
                field("kind"),
                format!(
                    "store_outage cuts the server off a PostgreSQL store through a relay; {server_store:?} is not one"
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
                Some(n) if (1..=nodes).contains(&n) => {}
                Some(n) => {
                    return bad(
                        field("node"),
                        format!("must be a node from 1 to {nodes}, got {n}"),
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
            repeat: 1,
            every_secs: None,
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

    #[test]
    fn one_server_takes_kills_and_postgres_outages() {
        let solo = Cluster::default();
        check(&solo, &[fault(FaultKind::KillNode, Some(1), Some(1.0))]).unwrap();
        let e = check(&solo, &[fault(FaultKind::KillNode, Some(2), Some(1.0))]).unwrap_err();
        assert!(e.contains("faults.0.node") && e.contains("1 to 1"), "{e}");
        // A store outage needs a relay, which only a PostgreSQL store has.
        let e = check(&solo, &[fault(FaultKind::StoreOutage, None, Some(1.0))]).unwrap_err();
        assert!(e.contains("PostgreSQL"), "{e}");
        validate(
            &solo,
            &[fault(FaultKind::StoreOutage, None, Some(1.0))],
            "postgres://chat:chat@127.0.0.1:5433/chat",
            Path::new("t.toml"),
        )
        .unwrap();
    }

    #[test]
    fn repeats_need_room_between_strikes() {
        let solo = Cluster::default();
        let mut f = fault(FaultKind::KillNode, Some(1), Some(1.0));
        f.repeat = 10;
        let e = check(&solo, std::slice::from_ref(&f)).unwrap_err();
        assert!(e.contains("faults.0.every_secs"), "{e}");
        f.every_secs = Some(2.0);
        let e = check(&solo, std::slice::from_ref(&f)).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        f.every_secs = Some(5.0);
        check(&solo, std::slice::from_ref(&f)).unwrap();
        f.repeat = 0;
        assert!(check(&solo, &[f]).unwrap_err().contains("faults.0.repeat"));
    }

    #[test]
    fn repeats_strike_at_seeded_random_moments() {
        let mut f = fault(FaultKind::KillNode, Some(1), Some(1.0));
        f.repeat = 10;
        f.every_secs = Some(4.0);
        let a = expand(std::slice::from_ref(&f), 7);
        assert_eq!(a.len(), 10);
        assert_eq!(a[0].at_secs, 5.0);
        let gaps: Vec<f64> = a.windows(2).map(|w| w[1].at_secs - w[0].at_secs).collect();
        assert!(gaps.iter().all(|g| (2.0..=6.0).contains(g)), "{gaps:?}");
        // Not evenly spaced, and the same for the same seed.
        assert!(gaps.iter().any(|g| (g - gaps[0]).abs() > 0.01), "{gaps:?}");
        assert_eq!(a, expand(std::slice::from_ref(&f), 7));
        assert_ne!(a, expand(&[f], 8));
    }
}
