//! The servers a run drives: one elsewhere (`--target`), one child process, or a cluster
//! of child nodes; how each is started, sampled, stopped, and its store settled and
//! measured afterwards.

use std::sync::Arc;
use std::time::Duration;

use super::{IDEMPOTENCY_WINDOW, RunError, RunOptions, fresh_secret};
use crate::child::{ProcSample, ServeOptions, ServerChild};
use crate::cluster::ClusterRun;
use crate::load::route::Routes;
use crate::scenario::Scenario;
use crate::storage;

/// What the run's servers are.
pub enum Servers {
    External,
    One(ServerChild),
    Cluster(Arc<ClusterRun>),
}

/// Where the run's clients go, and how they sign in.
pub struct Entry {
    /// The first entry point (Goose's host, groups, the health check).
    pub http_url: String,
    pub routes: Routes,
    pub secret: String,
    /// The store's kind for the report: `fjall`, `postgres`, … or `external`.
    pub store_name: String,
}

impl Servers {
    /// Starts what the scenario asks for (or nothing, with `--target`).
    pub async fn start(
        scenario: &Scenario,
        opts: &RunOptions,
        dir: &std::path::Path,
        started_ms: u64,
    ) -> Result<(Servers, Entry), RunError> {
        if let Some(t) = &opts.target {
            if !scenario.faults.is_empty() {
                return Err(RunError::FaultsNeedChild);
            }
            let t = t.trim_end_matches('/').to_owned();
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                return Err(RunError::BadTarget(t));
            }
            let secret = opts.jwt_secret.clone().ok_or(RunError::NoSecret)?;
            let entry = Entry {
                routes: Routes::single(t.clone()),
                http_url: t,
                secret,
                store_name: "external".into(),
            };
            return Ok((Servers::External, entry));
        }
        let secret = fresh_secret();
        // Faults without [cluster] break one server the run starts and restarts itself.
        if scenario.cluster.nodes > 0 || !scenario.faults.is_empty() {
            let c = ClusterRun::start(scenario, dir, &secret, started_ms)
                .await
                .map_err(|e| RunError::Cluster(e.to_string()))?;
            let routes = c.routes();
            let entry = Entry {
                http_url: routes.http.first().cloned().unwrap_or_default(),
                routes,
                secret,
                store_name: crate::namespace::label_of(&c.store_spec),
            };
            return Ok((Servers::Cluster(c), entry));
        }
        let s = &scenario.server;
        let c = ServerChild::spawn(
            ServeOptions {
                addr: "127.0.0.1:0".into(),
                store: s.store.clone(),
                jwt_secret: secret.clone(),
                max_connections: s.max_connections,
                send_rate: s.send_rate,
                send_burst: s.send_burst,
                device_queue: s.device_queue,
                workers: s.workers,
                extra: Vec::new(),
            },
            &dir.join("server.log"),
        )?;
        let url = c.http_url();
        let entry = Entry {
            routes: Routes::single(url.clone()),
            http_url: url,
            secret,
            store_name: crate::namespace::scheme(&s.store).to_owned(),
        };
        Ok((Servers::One(c), entry))
    }

    /// The cluster, when the run has one.
    pub fn cluster(&self) -> Option<&Arc<ClusterRun>> {
        match self {
            Servers::Cluster(c) => Some(c),
            _ => None,
        }
    }

    /// Whether the run started its servers itself.
    pub fn is_child(&self) -> bool {
        !matches!(self, Servers::External)
    }

    /// Connections the host lets the servers hold, whatever their own caps.
    pub fn host_capacity(&self) -> Option<u64> {
        match self {
            Servers::External => None,
            Servers::One(c) => Some(c.host_capacity),
            Servers::Cluster(c) => Some(c.host_capacity()),
        }
    }

    /// Connections the servers can hold with their own caps.
    pub fn capacity(&self) -> Option<u64> {
        match self {
            Servers::External => None,
            Servers::One(c) => Some(c.capacity),
            Servers::Cluster(c) => Some(c.host_capacity()),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Servers::One(c) => Some(c.pid),
            _ => None,
        }
    }

    /// CPU and memory of the server (every node's, added).
    pub fn sample(&self) -> Option<ProcSample> {
        match self {
            Servers::External => None,
            Servers::One(c) => c.sample(),
            Servers::Cluster(c) => c.sample(),
        }
    }

    pub fn disk_bytes(&self) -> Option<u64> {
        match self {
            Servers::External => None,
            Servers::One(c) => c.disk_bytes(),
            Servers::Cluster(c) => c.disk_bytes(),
        }
    }

    pub fn fresh_disk_bytes(&self, limit: Duration) -> Option<u64> {
        match self {
            Servers::External => None,
            Servers::One(c) => c.fresh_disk_bytes(limit),
            Servers::Cluster(c) => c.fresh_disk_bytes(limit),
        }
    }

    /// Stops the servers, then settles and measures the run's data as a long-running
    /// store would hold it (with the server stopped, before a temporary directory or a
    /// run's namespace goes).
    pub async fn stop_and_settle(
        &mut self,
        scenario: &Scenario,
    ) -> Option<Result<storage::SettleOutcome, String>> {
        let target = match self {
            Servers::External => None,
            Servers::One(c) => {
                c.stop(Duration::from_secs(5));
                match c.store_dir() {
                    Some(dir) => Some(storage::SettleTarget::Fjall(dir)),
                    None => match scenario.server.store.split_once(':') {
                        Some(("fjall", path)) => Some(storage::SettleTarget::Fjall(path.into())),
                        Some(("postgres" | "postgresql" | "cql", _)) => {
                            Some(storage::SettleTarget::Spec(scenario.server.store.clone()))
                        }
                        _ => None,
                    },
                }
            }
            Servers::Cluster(c) if c.solo => {
                let spec = c.store_spec.clone();
                let c = c.clone();
                let _ = tokio::task::spawn_blocking(move || c.stop(Duration::from_secs(5))).await;
                match spec.split_once(':') {
                    Some(("fjall", path)) => Some(storage::SettleTarget::Fjall(path.into())),
                    Some(("postgres" | "postgresql" | "cql", _)) => {
                        Some(storage::SettleTarget::Spec(spec))
                    }
                    _ => None,
                }
            }
            Servers::Cluster(c) => {
                let c = c.clone();
                let _ = tokio::task::spawn_blocking(move || c.stop(Duration::from_secs(5))).await;
                // Opened as the nodes open it (a shared CQL keyspace refuses a
                // single-node store).
                self.cluster().map(|c| {
                    storage::SettleTarget::Spec(chat_server::store::cluster_spec(&c.store_spec))
                })
            }
        };
        let settle = match target {
            Some(t) => Some(storage::settle_and_measure(&t, IDEMPOTENCY_WINDOW).await),
            None => None,
        };
        if let Some(c) = self.cluster() {
            c.drop_namespace().await;
        }
        settle
    }
}
