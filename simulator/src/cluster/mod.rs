//! A cluster run: the `[cluster]` section made real. The run starts NATS, N server nodes
//! over one shared store (a fresh schema or keyspace, dropped afterwards) and, with
//! `routing = "haproxy"`, HAProxy with the shipped configuration; it samples every node
//! while the load runs, breaks what `[[faults]]` says when it says, and reports per node.
//!
//! A run with `[[faults]]` but no `[cluster]` is a *solo* run: one server on the
//! scenario's own store (any store: fjall, memory, PostgreSQL, CQL), no NATS, started again
//! on the same port and the same data after each fault — the crash loop of one server,
//! with the same timeline, sampling and recovery figures as a cluster's.
//!
//! | file | holds |
//! |---|---|
//! | [`helpers`] | NATS and HAProxy processes |
//! | [`nodes`] | the nodes and what is measured of each |
//! | [`proxy`] | the relay a `store_outage` cuts |
//! | [`faults`] | running the faults and their timeline |
//! | [`info`] | what the report says of the cluster |

pub mod faults;
pub mod helpers;
pub mod info;
pub mod nodes;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use thiserror::Error;

use self::faults::FaultEvent;
use self::helpers::{Haproxy, Nats, free_port};
use self::nodes::{Node, parse_metrics};
use self::proxy::StoreProxy;
use crate::child::{ProcSample, ServeOptions};
use crate::load::route::Routes;
use crate::scenario::{FaultKind, Routing, Scenario, cluster::effective_store};

/// Why a cluster could not run.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("cannot start the cluster: {0}")]
    Start(String),
    #[error("node {node}: {message}")]
    Node { node: String, message: String },
}

/// Connections per node over the run: one row per sample.
#[derive(Debug, Clone, Default)]
pub struct NodeSeries {
    /// Seconds after the epoch, and each node's connections then (`None`: down).
    pub rows: Vec<(f64, Vec<Option<u64>>)>,
}

/// The running cluster; shared by the run, its sampler and its faults.
pub struct ClusterRun {
    pub nodes: Mutex<Vec<Node>>,
    /// NATS; none for a solo run.
    nats: Mutex<Option<Nats>>,
    /// One server without `--cluster` (see the module's doc).
    pub solo: bool,
    /// A solo run's fjall directory when the scenario named none: kept for the whole run,
    /// so every restart opens the same data.
    _store_dir: Option<tempfile::TempDir>,
    proxy: Option<StoreProxy>,
    haproxy: Option<Haproxy>,
    pub routing: Routing,
    /// The store as the nodes' data lives in it (the fresh namespace, its real address).
    pub store_spec: String,
    /// Whether the run made the namespace (and so drops it).
    made_namespace: bool,
    pub events: Mutex<Vec<FaultEvent>>,
    pub series: Mutex<NodeSeries>,
    http: reqwest::Client,
    token: String,
}

impl ClusterRun {
    /// Starts NATS, the nodes (one after another: the first creates the schema) and the
    /// load balancer, and waits until every node sees every other and answers healthy.
    pub async fn start(
        scenario: &Scenario,
        dir: &Path,
        secret: &str,
        started_ms: u64,
    ) -> Result<Arc<ClusterRun>, ClusterError> {
        let c = &scenario.cluster;
        let solo = c.nodes == 0;
        let base = effective_store(c, &scenario.server.store);
        // Unique per run even when runs start in the same second (tests run in parallel).
        let tag =
            crate::rng::Rng::derive(crate::clock::unix_ms(), &[u64::from(std::process::id())])
                .next_u64()
                & 0xff_ffff;
        let suffix = format!(
            "sim_{}_{tag:06x}",
            crate::namespace::compact_stamp(started_ms)
        );
        let mut store_dir = None;
        let (store_spec, made_namespace) = if solo && !crate::scenario::cluster::shared_store(base)
        {
            // One server on its own directory (or in memory); a database store gets a
            // fresh schema or keyspace, as a cluster's does, so runs never see each
            // other's messages.
            if base == "fjall" {
                let d = tempfile::Builder::new()
                    .prefix("chat-sim-store-")
                    .tempdir()
                    .map_err(|e| ClusterError::Start(format!("no store directory: {e}")))?;
                let spec = format!("fjall:{}", d.path().display());
                store_dir = Some(d);
                (spec, false)
            } else {
                (base.to_owned(), false)
            }
        } else {
            crate::namespace::fresh_namespace(base, &suffix)
                .map_or((base.to_owned(), false), |s| (s, true))
        };
        let needs_relay = scenario
            .faults
            .iter()
            .any(|f| f.kind == FaultKind::StoreOutage);
        let (proxy, node_store) = if needs_relay {
            let Some((upstream, _)) = proxy::reroute_postgres(&store_spec, "127.0.0.1:0") else {
                return Err(ClusterError::Start(format!(
                    "a store_outage needs a postgres:// store with one host (the relay stands between the nodes and it), got {store_spec}"
                )));
            };
            let addr = tokio::net::lookup_host(&upstream)
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| ClusterError::Start(format!("cannot resolve {upstream}")))?;
            let p = StoreProxy::start(addr).await?;
            let (_, spec) = proxy::reroute_postgres(&store_spec, &format!("127.0.0.1:{}", p.port))
                .ok_or_else(|| ClusterError::Start("cannot reroute the store".into()))?;
            (Some(p), spec)
        } else {
            (None, store_spec.clone())
        };
        let nats = if solo {
            None
        } else {
            Some(Nats::start(&dir.join("nats.log"))?)
        };
        let s = &scenario.server;
        let mut nodes: Vec<Node> = Vec::new();
        for i in 1..=c.nodes.max(1) {
            let name = format!("n{i}");
            let port = free_port()?;
            let opts = ServeOptions {
                addr: format!("127.0.0.1:{port}"),
                store: node_store.clone(),
                jwt_secret: secret.to_owned(),
                max_connections: s.max_connections,
                send_rate: s.send_rate,
                send_burst: s.send_burst,
                device_queue: s.device_queue,
                workers: s.workers,
                extra: match &nats {
                    Some(nats) => vec![
                        "--cluster".into(),
                        nats.url(),
                        "--node".into(),
                        name.clone(),
                        "--advertise".into(),
                        format!("127.0.0.1:{port}"),
                    ],
                    None => Vec::new(),
                },
            };
            let dir: PathBuf = dir.to_owned();
            let node = tokio::task::spawn_blocking(move || Node::start(name, port, opts, dir))
                .await
                .map_err(|e| ClusterError::Start(e.to_string()))??;
            nodes.push(node);
        }
        let token = {
            let auth = chat_server::auth::Auth::new(secret)
                .map_err(|e| ClusterError::Start(e.to_string()))?;
            match "probe".parse() {
                Ok(d) => auth.issue(u64::MAX - 1, &d, crate::clock::unix_ms() / 1000 + 86_400),
                Err(_) => String::new(),
            }
        };
        let run = ClusterRun {
            nodes: Mutex::new(nodes),
            nats: Mutex::new(nats),
            solo,
            _store_dir: store_dir,
            proxy,
            haproxy: None,
            // One server: every client goes to it.
            routing: if solo { Routing::Hash } else { c.routing },
            store_spec,
            made_namespace,
            events: Mutex::new(Vec::new()),
            series: Mutex::new(NodeSeries::default()),
            http: crate::client::http::client(),
            token,
        };
        run.wait_joined(Duration::from_secs(30)).await?;
        let mut run = run;
        if !solo && c.routing == Routing::Haproxy {
            let list: Vec<(String, u16)> = run
                .nodes
                .lock()
                .iter()
                .map(|n| (n.name.clone(), n.port))
                .collect();
            let h = Haproxy::start(dir, &list)?;
            crate::client::http::wait_healthy(&h.url(), Duration::from_secs(15))
                .await
                .map_err(|e| ClusterError::Start(format!("HAProxy: {e}")))?;
            run.haproxy = Some(h);
        }
        Ok(Arc::new(run))
    }

    /// Waits until every node lists all the nodes in `GET /v1/cluster` and is healthy (a
    /// solo run's server: until it is healthy).
    pub async fn wait_joined(&self, limit: Duration) -> Result<(), ClusterError> {
        let urls: Vec<(String, String)> = self
            .nodes
            .lock()
            .iter()
            .filter(|n| n.is_up())
            .map(|n| (n.name.clone(), n.http_url()))
            .collect();
        let want = urls.len();
        let deadline = Instant::now() + limit;
        for (name, url) in urls {
            loop {
                if (self.solo || self.node_sees(&url).await >= want) && self.healthy(&url).await {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(ClusterError::Node {
                        node: name,
                        message: format!(
                            "did not see all {want} nodes healthy within {} s (see its log)",
                            limit.as_secs()
                        ),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// How many nodes a node lists in `GET /v1/cluster` (0 when it does not answer).
    async fn node_sees(&self, url: &str) -> usize {
        let r = self
            .http
            .get(format!("{url}/v1/cluster"))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["nodes"].as_array().map(Vec::len))
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// Whether a node answers `/healthz` with 200.
    pub async fn healthy(&self, url: &str) -> bool {
        matches!(
            self.http.get(format!("{url}/healthz")).timeout(Duration::from_secs(2)).send().await,
            Ok(r) if r.status().is_success()
        )
    }

    /// Where clients go: HAProxy, or every node for clients that hash themselves.
    pub fn routes(&self) -> Routes {
        match &self.haproxy {
            Some(h) => Routes::single(h.url()),
            None => Routes {
                http: self.nodes.lock().iter().map(Node::http_url).collect(),
                hash: true,
            },
        }
    }

    /// Connections the host lets the nodes hold together.
    pub fn host_capacity(&self) -> u64 {
        self.nodes.lock().iter().map(|n| n.host_capacity).sum()
    }

    /// Every node's CPU (all incarnations) and resident memory (those up), added.
    pub fn sample(&self) -> Option<ProcSample> {
        let nodes = self.nodes.lock();
        Some(ProcSample {
            cpu_secs: nodes.iter().map(|n| n.totals().cpu_secs).sum(),
            rss_bytes: nodes.iter().map(|n| n.rss_bytes).sum(),
            open_fds: nodes.iter().map(|n| n.open_fds).sum(),
            threads: nodes.iter().map(|n| n.threads).sum(),
        })
    }

    /// Tasks alive on every node's runtime, added (`None` until a node reported).
    pub fn tasks(&self) -> Option<u64> {
        self.nodes
            .lock()
            .iter()
            .filter_map(|n| n.tasks)
            .reduce(|a, b| a + b)
    }

    /// The store's bytes on disk, as the first node up last reported.
    pub fn disk_bytes(&self) -> Option<u64> {
        self.nodes.lock().iter().find_map(Node::disk_bytes)
    }

    /// A fresh disk figure from the first node up.
    pub fn fresh_disk_bytes(&self, limit: Duration) -> Option<u64> {
        let nodes = self.nodes.lock();
        nodes.iter().find(|n| n.is_up())?.fresh_disk_bytes(limit)
    }

    /// Samples every node now: `/proc` and `/metrics`; `t` is seconds after the epoch.
    pub async fn sample_nodes(&self, t: f64) {
        let targets: Vec<(usize, u32, String)> = {
            let mut nodes = self.nodes.lock();
            let mut up = Vec::new();
            for (i, n) in nodes.iter_mut().enumerate() {
                // A node that died by itself is retired like a killed one.
                n.check_exited();
                if n.is_up() {
                    up.push((i, n.incarnations, n.http_url()));
                }
            }
            up
        };
        let scrapes =
            futures_util::future::join_all(targets.iter().map(|(_, _, url)| self.scrape(url)))
                .await;
        let mut nodes = self.nodes.lock();
        for ((i, inc, _), scrape) in targets.into_iter().zip(scrapes) {
            let proc = nodes[i].sample_proc();
            nodes[i].record(inc, proc, scrape);
        }
        let row: Vec<Option<u64>> = nodes
            .iter()
            .map(|n| n.is_up().then_some(n.connections))
            .collect();
        drop(nodes);
        self.series.lock().rows.push((t, row));
    }

    /// Connections per node over the run, for the plots.
    pub fn node_connections(&self) -> Vec<(String, Vec<(f64, f64)>)> {
        let names: Vec<String> = self.nodes.lock().iter().map(|n| n.name.clone()).collect();
        let series = self.series.lock();
        names
            .into_iter()
            .enumerate()
            .map(|(k, name)| {
                let pts = series
                    .rows
                    .iter()
                    .map(|(t, row)| (*t, row.get(k).copied().flatten().map_or(0.0, |c| c as f64)))
                    .collect();
                (name, pts)
            })
            .collect()
    }

    /// A node's `/metrics`, read (`None` when it does not answer within a second).
    async fn scrape(&self, base: &str) -> Option<nodes::Scrape> {
        let r = self
            .http
            .get(format!("{base}/metrics"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?;
        Some(parse_metrics(&r.text().await.ok()?))
    }

    /// Samples node `i` once more, right before a fault ends its process.
    pub async fn final_sample(&self, i: usize) {
        let (inc, url) = {
            let nodes = self.nodes.lock();
            (nodes[i].incarnations, nodes[i].http_url())
        };
        let scrape = self.scrape(&url).await;
        let mut nodes = self.nodes.lock();
        let proc = nodes[i].sample_proc();
        nodes[i].record(inc, proc, scrape);
    }

    /// Stops every node (gracefully), HAProxy and NATS.
    pub fn stop(&self, grace: Duration) {
        for n in self.nodes.lock().iter_mut() {
            n.stop(grace);
        }
        if let Some(n) = self.nats.lock().as_mut() {
            n.kill();
        }
    }

    /// Drops the run's schema or keyspace (after the storage figures were taken).
    pub async fn drop_namespace(&self) {
        if !self.made_namespace {
            return;
        }
        if let Err(e) = chat_server::store::drop_namespace(&self.store_spec).await {
            eprintln!(
                "warning: could not drop the cluster run's namespace in {} (drop it by hand): {e}",
                self.store_spec
            );
        }
    }
}
