//! The tasks of a node in a cluster: the publisher that drains relays into NATS, the two
//! subscriptions (this node's relays, everyone's control messages), the announcer of this
//! node's presence holds, the heartbeat that also expires silent nodes, and the watcher of
//! NATS connection events.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::nodes::{Heard, NODE_TIMEOUT};
use super::wire::{CONTROL_SUBJECT, Control, HoldWire, Relay, node_subject};
use super::{Cluster, ClusterError, LocalNode};
use crate::presence::{HoldChange, NodeKey};

/// How often a node says it is alive.
const BEAT: Duration = Duration::from_secs(1);
/// Users per snapshot message: about 30 bytes each in JSON, well under NATS's 1 MB.
const SNAPSHOT_CHUNK: usize = 5_000;
/// Users per [`Relay::Seen`] message: 8 bytes each.
const SEEN_CHUNK: usize = 50_000;
/// Hold changes per announcement at most.
const HOLDS_BATCH: usize = 2_000;

impl Cluster {
    /// Starts the node's tasks over `svc`. They run until the returned set is dropped or
    /// aborted.
    pub async fn start(
        self: &Arc<Self>,
        svc: Arc<dyn LocalNode>,
    ) -> Result<JoinSet<()>, ClusterError> {
        let nats_error = |e: &dyn std::fmt::Display| ClusterError::Nats {
            url: self.url.clone(),
            reason: e.to_string(),
        };
        let relays = self
            .client
            .subscribe(node_subject(&self.node))
            .await
            .map_err(|e| nats_error(&e))?;
        let controls = self
            .client
            .subscribe(CONTROL_SUBJECT)
            .await
            .map_err(|e| nats_error(&e))?;
        let (holds_tx, holds_rx) = mpsc::unbounded_channel();
        svc.presence().announce_to(holds_tx);
        let mut set = JoinSet::new();
        if let Some(rx) = self.out_rx.lock().take() {
            set.spawn(self.clone().publish(rx));
        }
        if let Some(rx) = self.events.lock().take() {
            set.spawn(self.clone().watch_events(rx, svc.clone()));
        }
        set.spawn(receive_relays(relays, svc.clone()));
        set.spawn(self.clone().receive_controls(controls, svc.clone()));
        set.spawn(self.clone().announce(holds_rx));
        set.spawn(self.clone().beat(svc.clone()));
        // Whatever the others hold now, and what they should know of this node.
        self.control(&Control::SyncRequest {
            node: self.node.clone(),
            to: None,
        });
        Ok(set)
    }

    async fn publish(self: Arc<Self>, mut rx: mpsc::Receiver<(String, bytes::Bytes)>) {
        while let Some((subject, payload)) = rx.recv().await {
            if let Err(e) = self.client.publish(subject, payload).await {
                tracing::warn!(error = %e, "relay not published");
                self.lost.store(true, Ordering::Relaxed);
            }
        }
    }

    async fn watch_events(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<async_nats::Event>,
        svc: Arc<dyn LocalNode>,
    ) {
        let mut was_down = false;
        while let Some(event) = rx.recv().await {
            match event {
                async_nats::Event::Connected if was_down => {
                    was_down = false;
                    tracing::info!(node = %self.node, "NATS connected again: catching up");
                    // Whatever was relayed to this node meanwhile is in the store; what
                    // this node relayed may not have arrived; holds changed unseen.
                    svc.catch_up_all();
                    self.lost.store(true, Ordering::Relaxed);
                    self.send_snapshot(svc.as_ref());
                    self.control(&Control::SyncRequest {
                        node: self.node.clone(),
                        to: None,
                    });
                }
                async_nats::Event::Connected => {
                    tracing::info!(node = %self.node, "NATS connected");
                }
                async_nats::Event::Disconnected => {
                    was_down = true;
                    tracing::warn!(node = %self.node, "NATS disconnected");
                }
                async_nats::Event::SlowConsumer(sid) => {
                    tracing::warn!(sid, "NATS dropped messages for this slow node: catching up");
                    svc.catch_up_all();
                }
                other => tracing::info!(event = %other, "NATS"),
            }
        }
    }

    async fn receive_controls(
        self: Arc<Self>,
        mut sub: async_nats::Subscriber,
        svc: Arc<dyn LocalNode>,
    ) {
        while let Some(msg) = sub.next().await {
            match serde_json::from_slice::<Control>(&msg.payload) {
                Ok(c) => self.on_control(c, svc.as_ref()),
                Err(e) => tracing::warn!(error = %e, "unreadable control message"),
            }
        }
    }

    fn on_control(&self, msg: Control, svc: &dyn LocalNode) {
        if msg.node() == self.node {
            return;
        }
        let presence = svc.presence();
        if let Control::SyncRequest { to, .. } = &msg {
            if to.as_deref().is_none_or(|t| t == self.node) {
                self.send_snapshot(svc);
            }
            return;
        }
        if let Control::Resync { node } = &msg {
            tracing::info!(from = %node, "a node may have lost relays: catching up");
            svc.catch_up_all();
            return;
        }
        let inc = match &msg {
            Control::Beat { inc, .. }
            | Control::Holds { inc, .. }
            | Control::Snapshot { inc, .. } => *inc,
            Control::SyncRequest { .. } | Control::Resync { .. } => return,
        };
        let key = match self.nodes.heard(msg.node(), inc) {
            Heard::Stale => return,
            Heard::Known(key) => key,
            Heard::New(key) => {
                if !matches!(msg, Control::Snapshot { reset: true, .. }) {
                    self.ask_snapshot(&key);
                }
                key
            }
            Heard::Restarted(key, last) => {
                presence.drop_node(&key, last);
                // Its earlier life may have stored messages it never relayed.
                svc.catch_up_all();
                if !matches!(msg, Control::Snapshot { reset: true, .. }) {
                    self.ask_snapshot(&key);
                }
                key
            }
        };
        let new_holds = match msg {
            Control::Beat {
                addr, connections, ..
            } => {
                self.nodes.beat(&key, &addr, connections);
                Vec::new()
            }
            Control::Holds { changes, .. } => {
                let mut new = Vec::new();
                for change in changes {
                    match change {
                        HoldWire::Up { user, since } => {
                            if presence.remote_up(&key, user, since) {
                                new.push(user);
                            }
                        }
                        HoldWire::Down { user, ts } => presence.remote_down(&key, user, ts),
                    }
                }
                new
            }
            Control::Snapshot { reset, users, .. } => {
                if reset {
                    presence.replace_node(&key, &users)
                } else {
                    presence.add_holds(&key, &users)
                }
            }
            Control::SyncRequest { .. } | Control::Resync { .. } => Vec::new(),
        };
        // What this node stored for those users before it knew of their holds there went
        // nowhere live: the holder reads it from the store once it hears this.
        for part in new_holds.chunks(SEEN_CHUNK) {
            self.relay(&key, &Relay::Seen(part.to_vec()));
        }
    }

    fn ask_snapshot(&self, node: &NodeKey) {
        self.control(&Control::SyncRequest {
            node: self.node.clone(),
            to: Some(node.to_string()),
        });
    }

    /// Sends all of this node's holds, in parts.
    fn send_snapshot(&self, svc: &dyn LocalNode) {
        let holds = svc.presence().local_holds();
        let mut parts = holds.chunks(SNAPSHOT_CHUNK);
        let first = parts.next().unwrap_or(&[]);
        self.control(&Control::Snapshot {
            node: self.node.clone(),
            inc: self.inc,
            reset: true,
            users: first.to_vec(),
        });
        for part in parts {
            self.control(&Control::Snapshot {
                node: self.node.clone(),
                inc: self.inc,
                reset: false,
                users: part.to_vec(),
            });
        }
    }

    async fn announce(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<HoldChange>) {
        let wire = |c: HoldChange| match c {
            HoldChange::Up { user, since } => HoldWire::Up { user, since },
            HoldChange::Down { user, ts } => HoldWire::Down { user, ts },
        };
        while let Some(first) = rx.recv().await {
            let mut changes = vec![wire(first)];
            while changes.len() < HOLDS_BATCH {
                match rx.try_recv() {
                    Ok(c) => changes.push(wire(c)),
                    Err(_) => break,
                }
            }
            self.control(&Control::Holds {
                node: self.node.clone(),
                inc: self.inc,
                changes,
            });
        }
    }

    async fn beat(self: Arc<Self>, svc: Arc<dyn LocalNode>) {
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.control(&Control::Beat {
                node: self.node.clone(),
                inc: self.inc,
                addr: self.advertise.clone(),
                connections: svc.online_devices(),
            });
            let gone = self.nodes.expire(NODE_TIMEOUT);
            for (node, last) in &gone {
                tracing::warn!(%node, "node silent: its users are taken to have left it");
                svc.presence().drop_node(node, *last);
            }
            if !gone.is_empty() {
                // A node that died may have stored messages it never relayed.
                svc.catch_up_all();
            }
            if self.is_connected() && self.lost.swap(false, Ordering::Relaxed) {
                self.control(&Control::Resync {
                    node: self.node.clone(),
                });
            }
        }
    }
}

async fn receive_relays(mut sub: async_nats::Subscriber, svc: Arc<dyn LocalNode>) {
    while let Some(msg) = sub.next().await {
        match Relay::decode(msg.payload) {
            Ok(relay) => svc.relayed(relay),
            Err(e) => tracing::warn!(error = %e, "relay dropped"),
        }
    }
}
