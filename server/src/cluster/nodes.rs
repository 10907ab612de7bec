//! The nodes heard from: who they are, where clients reach them, how many connections
//! they hold, and when they last spoke. `GET /v1/cluster` lists them; a node silent for
//! longer than [`NODE_TIMEOUT`] is taken to be gone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::model::now_ms;
use crate::presence::NodeKey;

/// How long a node may stay silent before it is taken to be gone: three missed beats and
/// some slack.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(4);

/// A node as `GET /v1/cluster` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeInfo {
    pub node: String,
    pub addr: String,
    pub connections: u64,
    /// When the node started (ms since the epoch).
    pub since: u64,
}

struct Entry {
    key: NodeKey,
    info: NodeInfo,
    heard: Instant,
    heard_ms: u64,
}

/// What a message from a node means for the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A node already known, same incarnation.
    Known(NodeKey),
    /// A node not known (new, or back after it was taken to be gone).
    New(NodeKey),
    /// The node restarted: what its earlier incarnation announced, last heard at the
    /// given time (ms), is void.
    Restarted(NodeKey, u64),
    /// A message from an incarnation older than the one known: ignore it.
    Stale,
}

/// The table of nodes heard from.
#[derive(Default)]
pub struct Nodes {
    table: Mutex<HashMap<String, Entry>>,
}

impl Nodes {
    /// Notes that `node` (incarnation `inc`) spoke now.
    pub fn heard(&self, node: &str, inc: u64) -> Heard {
        let mut table = self.table.lock();
        let now = Instant::now();
        if let Some(e) = table.get_mut(node) {
            if inc < e.info.since {
                return Heard::Stale;
            }
            let last = e.heard_ms;
            e.heard = now;
            e.heard_ms = now_ms();
            if inc == e.info.since {
                return Heard::Known(e.key.clone());
            }
            e.info.since = inc;
            e.info.connections = 0;
            return Heard::Restarted(e.key.clone(), last);
        }
        let key: NodeKey = node.into();
        table.insert(
            node.to_owned(),
            Entry {
                key: key.clone(),
                info: NodeInfo {
                    node: node.to_owned(),
                    addr: String::new(),
                    connections: 0,
                    since: inc,
                },
                heard: now,
                heard_ms: now_ms(),
            },
        );
        Heard::New(key)
    }

    /// Records what a heartbeat says (after [`Nodes::heard`]).
    pub fn beat(&self, node: &str, addr: &str, connections: u64) {
        if let Some(e) = self.table.lock().get_mut(node) {
            if e.info.addr != addr {
                e.info.addr = addr.to_owned();
            }
            e.info.connections = connections;
        }
    }

    /// Removes the nodes silent for longer than `timeout`; returns each with the time it
    /// was last heard from (ms).
    pub fn expire(&self, timeout: Duration) -> Vec<(NodeKey, u64)> {
        let mut gone = Vec::new();
        self.table.lock().retain(|_, e| {
            let alive = e.heard.elapsed() <= timeout;
            if !alive {
                gone.push((e.key.clone(), e.heard_ms));
            }
            alive
        });
        gone
    }

    /// The nodes heard from, by name.
    pub fn list(&self) -> Vec<NodeInfo> {
        let mut list: Vec<NodeInfo> = self.table.lock().values().map(|e| e.info.clone()).collect();
        list.sort_by(|a, b| a.node.cmp(&b.node));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_tell_restarts_from_stale_messages() {
        let nodes = Nodes::default();
        assert!(matches!(nodes.heard("a", 10), Heard::New(_)));
        assert!(matches!(nodes.heard("a", 10), Heard::Known(_)));
        assert_eq!(nodes.heard("a", 9), Heard::Stale);
        assert!(matches!(nodes.heard("a", 11), Heard::Restarted(_, _)));
        nodes.beat("a", "127.0.0.1:1", 5);
        assert_eq!(nodes.list()[0].connections, 5);
        assert_eq!(nodes.list()[0].since, 11);
        assert!(nodes.expire(Duration::from_secs(60)).is_empty());
        std::thread::sleep(Duration::from_millis(5));
        let gone = nodes.expire(Duration::from_millis(1));
        assert_eq!(gone.len(), 1);
        assert!(nodes.list().is_empty());
        assert!(matches!(nodes.heard("a", 11), Heard::New(_)));
    }
}
