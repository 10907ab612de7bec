//! The reference chat server of the capacity-planning harness: one-on-one chat over
//! WebSocket and HTTP with one order on every device, offline catch-up through a per-user
//! inbox, paginated history, and durable storage behind the [`store::Store`] traits.
//!
//! [`run`] serves on a listener the caller opened, with a store the caller chose, until a
//! shutdown future resolves; the binary is a thin layer over it, and tests start it on
//! `127.0.0.1:0`.

#[cfg(feature = "mimalloc")]
pub mod allocator;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod hub;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod presence;
pub mod process;
pub mod protocol;
pub mod push;
pub mod serve;
pub mod service;
pub mod store;
pub mod web;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;

use crate::listener::CappedListener;
use crate::service::Service;

/// How often a networked store is probed for `/healthz`.
const HEALTH_PROBE: Duration = Duration::from_secs(1);

/// Connects a node to its cluster, refusing a store that only one process may write.
async fn join_cluster(
    url: &str,
    config: &Config,
    backend: &store::Backend,
) -> std::io::Result<Arc<cluster::Cluster>> {
    if !matches!(backend, store::Backend::Shared(_)) {
        return Err(std::io::Error::other(format!(
            "--cluster needs a store that several nodes can share (postgres://… or cql://…); \
             {} belongs to one process",
            backend.name()
        )));
    }
    let cfg = cluster::ClusterConfig {
        url: url.to_owned(),
        node: config.node.clone(),
        advertise: config.advertise.clone().unwrap_or_default(),
    };
    cluster::Cluster::connect(&cfg)
        .await
        .map_err(std::io::Error::other)
}

/// Serves until `shutdown` resolves, then stops accepting, asks every WebSocket to close
/// (1001), answers pending long polls, and waits up to `config.shutdown_grace` for
/// connections to drain and push deliveries to end (what they had left is dead-lettered):
/// once it returns, and the caller's handles of the backend are dropped, an embedded
/// store's directory is free for another process.
pub async fn run(
    listener: TcpListener,
    config: Config,
    backend: impl Into<store::Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = config.shutdown_grace;
    let max = config.max_connections;
    let backend = backend.into();
    let mut config = config;
    let advertise = listener.local_addr()?.to_string();
    config.advertise.get_or_insert(advertise);
    let cluster = match &config.cluster {
        Some(url) => Some(join_cluster(url, &config, &backend).await?),
        None => None,
    };
    // An embedded store fails with its process: only a networked one is probed.
    let probed = backend.is_networked();
    let (stop_tx, stop_rx) = watch::channel(false);
    let svc = Arc::new(
        Service::new(backend, config, cluster.clone(), stop_rx).map_err(std::io::Error::other)?,
    );
    let _cluster_tasks = match &cluster {
        Some(c) => Some(
            c.start(svc.clone() as Arc<dyn cluster::LocalNode>)
                .await
                .map_err(std::io::Error::other)?,
        ),
        None => None,
    };
    let health = probed.then(|| {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEALTH_PROBE);
            loop {
                tick.tick().await;
                svc.probe_store().await;
            }
        })
    });
    let trimmer = tokio::spawn({
        let svc = svc.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                svc.trim_rate_limits();
            }
        }
    });
    let app = http::router(svc.clone());
    let hub_svc = svc.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining connections");
        let _ = stop_tx.send(true);
        hub_svc.close_all(ws::CLOSE_GOING_AWAY);
    };
    let serve = axum::serve(CappedListener::new(listener, max), app).with_graceful_shutdown(signal);
    let served = serve.into_future();
    tokio::pin!(served);
    let result = served.await;
    // Upgraded WebSockets are not tracked by the HTTP server: wait for them here.
    let deadline = tokio::time::Instant::now() + grace;
    while svc.online_devices() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trimmer.abort();
    if let Some(h) = health {
        h.abort();
    }
    svc.finish(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await;
    result
}
