//! Cluster mode: several server processes (nodes) sharing one store and talking through
//! NATS (docs/protocol.md, "Cluster mode").
//!
//! The store stays the record; NATS carries only what is live:
//!
//! - each node listens on its own subject for frames for its devices ([`wire::Relay`]);
//!   a sender finds the nodes where a recipient is connected in the replicated presence
//!   holds and writes one message per node per operation;
//! - every node announces on one control subject its heartbeat and its presence holds,
//!   and answers a snapshot request with all its holds ([`wire::Control`]), so each node
//!   knows where every online user is connected and runs presence hysteresis on the sum;
//! - a frame NATS lost cannot lose a message: every device is caught up from the store a
//!   moment after it connects, after this node's NATS connection came back, after a slow
//!   consumer report, and when another node says it may have dropped relays
//!   ([`wire::Control::Resync`]).
//!
//! Nothing here blocks a send: relays go into a bounded queue that a task drains into
//! NATS; when it overflows the relay is dropped and the others are told to resync.

mod nodes;
mod tasks;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc;

use self::nodes::Nodes;
pub use self::nodes::{NODE_TIMEOUT, NodeInfo};
use self::wire::{CONTROL_SUBJECT, Control, Relay, node_subject};
use crate::model::now_ms;
use crate::presence::NodeKey;

/// Relays waiting for NATS at most; past it they are dropped (and the others resync).
const OUTGOING_QUEUE: usize = 65_536;
/// Messages a subscription buffers before NATS reports a slow consumer.
const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// What the cluster's tasks need of the node they serve (the chat service).
pub trait LocalNode: Send + Sync + 'static {
    /// Frames another node relayed for devices here.
    fn relayed(&self, relay: Relay);
    /// Asks every device here to read what its live stream may have missed from the
    /// store.
    fn catch_up_all(&self);
    /// This node's presence: local holds, and the others' as they announce them.
    fn presence(&self) -> &Arc<crate::presence::Presence>;
    /// WebSocket devices connected here.
    fn online_devices(&self) -> u64;
}

/// How a node joins a cluster: `--cluster`, `--node`, `--advertise`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The NATS server, `nats://HOST:PORT`.
    pub url: String,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Where clients reach this node, as `GET /v1/cluster` lists it.
    pub advertise: String,
}

/// Why a node could not join.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("--node {0:?}: 1-64 characters of [A-Za-z0-9_-]")]
    NodeName(String),
    #[error("--cluster {url}: {reason}")]
    Nats { url: String, reason: String },
}

/// `GET /v1/cluster`: this node and every node heard from lately.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub node: String,
    pub nodes: Vec<NodeInfo>,
}

/// This node's end of the cluster.
pub struct Cluster {
    /// The NATS server joined, for messages.
    url: String,
    node: String,
    key: NodeKey,
    /// This incarnation: the node's start time (ms).
    inc: u64,
    advertise: String,
    client: async_nats::Client,
    out: mpsc::Sender<(String, Bytes)>,
    out_rx: parking_lot::Mutex<Option<mpsc::Receiver<(String, Bytes)>>>,
    events: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<async_nats::Event>>>,
    nodes: Nodes,
    /// Set when a relay of this node may not have reached its node: the others are asked
    /// to resync once NATS is back.
    lost: AtomicBool,
}

fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Cluster {
    /// Connects to NATS. The node starts even when NATS is not up yet (it reports
    /// itself unhealthy until it is); a URL NATS cannot parse is refused.
    pub async fn connect(config: &ClusterConfig) -> Result<Arc<Cluster>, ClusterError> {
        if !valid_node_name(&config.node) {
            return Err(ClusterError::NodeName(config.node.clone()));
        }
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name(format!("chat-server {}", config.node))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .event_callback(move |event| {
                let tx = ev_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(config.url.as_str())
            .await
            .map_err(|e| ClusterError::Nats {
                url: config.url.clone(),
                reason: e.to_string(),
            })?;
        let (out, out_rx) = mpsc::channel(OUTGOING_QUEUE);
        Ok(Arc::new(Cluster {
            url: config.url.clone(),
            node: config.node.clone(),
            key: config.node.as_str().into(),
            inc: now_ms(),
            advertise: config.advertise.clone(),
            client,
            out,
            out_rx: parking_lot::Mutex::new(Some(out_rx)),
            events: parking_lot::Mutex::new(Some(ev_rx)),
            nodes: Nodes::default(),
            lost: AtomicBool::new(false),
        }))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether NATS is reachable now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Sends `relay` to the devices on `node`, without waiting.
    pub fn relay(&self, node: &NodeKey, relay: &Relay) {
        if *node == self.key {
            return;
        }
        if self
            .out
            .try_send((node_subject(node), relay.encode()))
            .is_err()
        {
            self.lost.store(true, Ordering::Relaxed);
        }
    }

    /// Publishes a control message, without waiting.
    fn control(&self, msg: &Control) {
        let payload = match serde_json::to_vec(msg) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::error!(error = %e, "control message not encodable");
                return;
            }
        };
        if self
            .out
            .try_send((CONTROL_SUBJECT.to_owned(), payload))
            .is_err()
        {
            self.lost.store(true, Ordering::Relaxed);
        }
    }

    /// This node and the others heard from lately; `connections` is this node's own.
    pub fn view(&self, connections: u64) -> ClusterView {
        let mut nodes = self.nodes.list();
        nodes.push(NodeInfo {
            node: self.node.clone(),
            addr: self.advertise.clone(),
            connections,
            since: self.inc,
        });
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        ClusterView {
            node: self.node.clone(),
            nodes,
        }
    }
}
