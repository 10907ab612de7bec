//! The service's side of cluster mode and of health: frames that must also reach devices
//! on other nodes, relays arriving from them, catching every device up from the store
//! when NATS may have lost something, and whether this node is fit to take users
//! (`GET /healthz`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Service;
use crate::cluster::wire::Relay;
use crate::cluster::{ClusterView, LocalNode};
use crate::hub::{ConnId, Outbound};
use crate::model::UserId;
use crate::presence::{NodeKey, Presence};
use crate::protocol::Encoded;

/// How long a store probe may take before the store counts as unreachable.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Inbox frames of one operation, gathered per node so each node gets one relay.
pub(super) struct InboxRelays<'a> {
    svc: &'a Service,
    per_node: HashMap<NodeKey, Vec<(UserId, u64, Encoded)>>,
}

impl InboxRelays<'_> {
    /// Delivers inbox position `useq` of `user` to its devices here (all but `own`, which
    /// sent it) and notes it for the other nodes where the user is connected.
    pub(super) fn deliver(&mut self, user: UserId, useq: u64, frame: Encoded, own: Option<ConnId>) {
        self.svc.hub.deliver_inbox(user, useq, &frame, own);
        if self.svc.cluster.is_some() {
            for node in self.svc.presence.nodes_of(user) {
                self.per_node
                    .entry(node)
                    .or_default()
                    .push((user, useq, frame.clone()));
            }
        }
    }

    /// Sends what was gathered.
    pub(super) fn send(self) {
        if let Some(cluster) = &self.svc.cluster {
            for (node, entries) in self.per_node {
                cluster.relay(&node, &Relay::Inbox(entries));
            }
        }
    }
}

impl Service {
    /// A gatherer of inbox frames for this node's devices and the others'.
    pub(super) fn inbox_relays(&self) -> InboxRelays<'_> {
        InboxRelays {
            svc: self,
            per_node: HashMap::new(),
        }
    }

    /// Sends a frame outside the inbox stream to every device of `users`, on this node
    /// and on the others.
    pub(super) fn send_everywhere(&self, users: impl IntoIterator<Item = UserId>, frame: &Encoded) {
        let mut per_node: HashMap<NodeKey, Vec<UserId>> = HashMap::new();
        for user in users {
            self.hub.send_to_user(user, frame, None);
            if self.cluster.is_some() {
                for node in self.presence.nodes_of(user) {
                    per_node.entry(node).or_default().push(user);
                }
            }
        }
        if let Some(cluster) = &self.cluster {
            for (node, users) in per_node {
                cluster.relay(
                    &node,
                    &Relay::Frame {
                        frame: frame.clone(),
                        users,
                    },
                );
            }
        }
    }
}

impl LocalNode for Service {
    fn relayed(&self, relay: Relay) {
        match relay {
            Relay::Inbox(entries) => {
                for (user, useq, frame) in entries {
                    self.hub.deliver_inbox(user, useq, &frame, None);
                }
            }
            Relay::Frame { frame, users } => {
                for user in users {
                    self.hub.send_to_user(user, &frame, None);
                }
            }
            Relay::Seen(users) => {
                for user in users {
                    self.hub.offer_user(user, || Outbound::CatchUp);
                }
            }
        }
    }

    fn catch_up_all(&self) {
        self.hub.offer_all(|| Outbound::CatchUp);
    }

    fn presence(&self) -> &Arc<Presence> {
        &self.presence
    }

    fn online_devices(&self) -> u64 {
        Service::online_devices(self)
    }
}

impl Service {
    /// Whether this node is in a cluster.
    pub fn is_clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// `GET /v1/cluster`: this node and the others heard from (a node outside a cluster
    /// lists itself alone).
    pub fn cluster_view(&self) -> ClusterView {
        match &self.cluster {
            Some(c) => c.view(self.online_devices()),
            None => ClusterView {
                node: self.config.node.clone(),
                nodes: vec![crate::cluster::NodeInfo {
                    node: self.config.node.clone(),
                    addr: self.config.advertise.clone().unwrap_or_default(),
                    connections: self.online_devices(),
                    since: self.started,
                }],
            },
        }
    }

    /// Why this node should not be given users now, if it should not: its store or NATS
    /// is unreachable.
    pub fn unhealthy(&self) -> Option<&'static str> {
        if !self.store_ok.load(Ordering::Relaxed) {
            return Some("the store is unreachable");
        }
        if self.cluster.as_ref().is_some_and(|c| !c.is_connected()) {
            return Some("NATS is unreachable");
        }
        None
    }

    /// Reads one row of the store to learn whether it answers; the result is what
    /// [`Service::unhealthy`] says until the next probe.
    pub async fn probe_store(&self) {
        let ok = matches!(
            tokio::time::timeout(STORE_PROBE_TIMEOUT, self.store.inbox_head(UserId::MAX)).await,
            Ok(Ok(_))
        );
        if self.store_ok.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("store reachable again");
            } else {
                tracing::warn!("store unreachable: /healthz answers 503");
            }
        }
    }
}
