//! Running `[[faults]]`: each at its time after the load started, one after another, with
//! what happened written down (the timeline the report tables and the plots mark).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ClusterRun;
use super::nodes::Node;
use crate::scenario::{Fault, FaultKind};

/// How long a drained node may take to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a restarted node may take to be healthy and see the others.
const REJOIN_LIMIT: Duration = Duration::from_secs(60);

/// One fault as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    pub kind: String,
    /// The node, for node faults.
    pub node: Option<String>,
    /// When it struck and when it was over (the node back and healthy, the outage
    /// ended), seconds after the run's epoch (the plots' time axis).
    pub at_secs: f64,
    pub until_secs: Option<f64>,
    /// What was done, in words.
    pub what: String,
    /// Why it could not be done or undone, if so.
    pub error: Option<String>,
}

fn secs_since(epoch: Instant) -> f64 {
    epoch.elapsed().as_secs_f64()
}

/// Runs the faults in time order, `at_secs` after `load_start` (seconds after `epoch`).
pub async fn run(
    cluster: Arc<ClusterRun>,
    mut faults: Vec<Fault>,
    epoch: Instant,
    load_start: f64,
) {
    faults.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
    for f in faults {
        let due = epoch + Duration::from_secs_f64((load_start + f.at_secs).max(0.0));
        tokio::time::sleep_until(due.into()).await;
        let ev = strike(&cluster, &f, epoch).await;
        cluster.events.lock().push(ev);
    }
}

async fn strike(cluster: &Arc<ClusterRun>, f: &Fault, epoch: Instant) -> FaultEvent {
    let mut ev = FaultEvent {
        kind: f.kind.name().into(),
        node: None,
        at_secs: secs_since(epoch),
        until_secs: None,
        what: String::new(),
        error: None,
    };
    match f.kind {
        FaultKind::KillNode | FaultKind::StopNode => {
            let i = f.node.unwrap_or(1).saturating_sub(1) as usize;
            let name = cluster.nodes.lock().get(i).map(|n| n.name.clone());
            let Some(name) = name else {
                ev.error = Some(format!("no node {}", i + 1));
                return ev;
            };
            ev.node = Some(name.clone());
            cluster.final_sample(i).await;
            ev.at_secs = secs_since(epoch);
            if f.kind == FaultKind::KillNode {
                cluster.nodes.lock()[i].kill9();
                ev.what = format!("{name} killed (SIGKILL)");
            } else {
                // The drain takes a while: take the process out and stop it off the
                // runtime, so the sampler keeps going.
                let child = cluster.nodes.lock()[i].retire();
                if let Some(mut c) = child {
                    let _ = tokio::task::spawn_blocking(move || c.terminate(STOP_GRACE)).await;
                }
                ev.what = format!("{name} stopped (SIGTERM, drained)");
            }
            if let Some(after) = f.secs {
                tokio::time::sleep(Duration::from_secs_f64(after)).await;
                match restart(cluster, i).await {
                    Ok(()) => {
                        ev.until_secs = Some(secs_since(epoch));
                        ev.what.push_str(&format!(
                            "; started again after {after} s, {} {:.1} s later",
                            if cluster.solo {
                                "healthy"
                            } else {
                                "healthy and joined"
                            },
                            ev.until_secs.unwrap_or(0.0) - ev.at_secs - after
                        ));
                    }
                    Err(e) => ev.error = Some(e),
                }
            }
        }
        FaultKind::StoreOutage => {
            let secs = f.secs.unwrap_or(1.0);
            match &cluster.proxy {
                Some(p) => {
                    p.cut();
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                    match p.resume().await {
                        Ok(()) => {
                            ev.until_secs = Some(secs_since(epoch));
                            ev.what = format!(
                                "every connection to the store cut and new ones refused for {secs} s"
                            );
                        }
                        Err(e) => ev.error = Some(e.to_string()),
                    }
                }
                None => ev.error = Some("the run has no store relay".into()),
            }
        }
        FaultKind::NatsOutage => {
            let secs = f.secs.unwrap_or(1.0);
            let Some(()) = cluster.nats.lock().as_mut().map(|n| n.kill()) else {
                ev.error = Some("the run has no NATS (one server without [cluster])".into());
                return ev;
            };
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            let c = cluster.clone();
            let r = tokio::task::spawn_blocking(move || match c.nats.lock().as_mut() {
                Some(n) => n.restart(),
                None => Ok(()),
            })
            .await;
            match r {
                Ok(Ok(())) => {
                    ev.until_secs = Some(secs_since(epoch));
                    ev.what = format!("NATS killed and started again {secs} s later");
                }
                Ok(Err(e)) => ev.error = Some(e.to_string()),
                Err(e) => ev.error = Some(e.to_string()),
            }
        }
    }
    ev
}

/// Starts node `i` again on its port and waits until it is healthy and has joined.
async fn restart(cluster: &Arc<ClusterRun>, i: usize) -> Result<(), String> {
    let (opts, dir, name, inc) = cluster.nodes.lock()[i].restart_plan();
    let child = tokio::task::spawn_blocking(move || Node::spawn_child(&opts, &dir, &name, inc))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    cluster.nodes.lock()[i].adopt(child);
    cluster
        .wait_joined(REJOIN_LIMIT)
        .await
        .map_err(|e| e.to_string())
}
