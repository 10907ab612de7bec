//! Presence in cluster mode: the holds of the other nodes.
//!
//! Each node announces its own hold changes (a user's first device connecting to it, the
//! last one leaving) and, when asked, a snapshot of all of them; every node applies what
//! the others announce here. A user's status is then decided on the sum of local and
//! remote holds by the same hysteresis everywhere, so each node can answer queries and
//! feed its own subscribers without asking anyone. When a node falls silent its holds are
//! dropped as if its users had left at the moment it was last heard from.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::Presence;
use crate::model::{UserId, now_ms};

/// A node's name, shared by every entry that mentions it.
pub type NodeKey = Arc<str>;

/// A change of this node's own holds, to announce to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldChange {
    /// The user's first device connected here at `since` (ms).
    Up { user: UserId, since: u64 },
    /// The user's last device left here at `ts` (ms).
    Down { user: UserId, ts: u64 },
}

impl Presence {
    /// Sends this node's hold changes to `tx` from now on (cluster mode). Set once.
    pub fn announce_to(&self, tx: mpsc::UnboundedSender<HoldChange>) {
        let _ = self.changes.set(tx);
    }

    /// This node's holds: each connected user with the time its first current hold began.
    pub fn local_holds(&self) -> Vec<(UserId, u64)> {
        self.users
            .iter()
            .filter(|e| e.holds > 0)
            .map(|e| (*e.key(), e.local_since))
            .collect()
    }

    /// The other nodes where `user` is connected now.
    pub fn nodes_of(&self, user: UserId) -> Vec<NodeKey> {
        self.users
            .get(&user)
            .map(|st| st.remote.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default()
    }

    /// Node `node` announced that `user` connected there at `since`. Answers whether the
    /// hold is new to this node: frames for the user went to that node only from now on.
    pub fn remote_up(self: &Arc<Self>, node: &NodeKey, user: UserId, since: u64) -> bool {
        let (new, due) = {
            let mut st = self.users.entry(user).or_default();
            if let Some(entry) = st.remote.iter_mut().find(|(n, _)| n == node) {
                entry.1 = since;
                (false, None)
            } else {
                st.remote.push((node.clone(), since));
                (true, self.gained(&mut st, since))
            }
        };
        self.by_node.entry(node.clone()).or_default().insert(user);
        self.run(user, due);
        new
    }

    /// Node `node` announced that `user` left it at `ts`.
    pub fn remote_down(self: &Arc<Self>, node: &NodeKey, user: UserId, ts: u64) {
        self.forget(node, user, ts);
        if let Some(mut set) = self.by_node.get_mut(node) {
            set.remove(&user);
        }
    }

    fn forget(self: &Arc<Self>, node: &NodeKey, user: UserId, ts: u64) {
        let due = {
            let Some(mut st) = self.users.get_mut(&user) else {
                return;
            };
            let before = st.remote.len();
            st.remote.retain(|(n, _)| n != node);
            if st.remote.len() == before {
                return;
            }
            self.lost(&mut st, ts)
        };
        self.run(user, due);
    }

    /// Node `node`'s holds are exactly `holds` now (a snapshot it sent): users it no
    /// longer lists left it now. Answers the holds new to this node.
    pub fn replace_node(self: &Arc<Self>, node: &NodeKey, holds: &[(UserId, u64)]) -> Vec<UserId> {
        let listed: HashSet<UserId> = holds.iter().map(|&(u, _)| u).collect();
        let gone: Vec<UserId> = self
            .by_node
            .get(node)
            .map(|set| set.difference(&listed).copied().collect())
            .unwrap_or_default();
        let now = now_ms();
        for user in gone {
            self.remote_down(node, user, now);
        }
        self.add_holds(node, holds)
    }

    /// Adds holds of `node` (part of a snapshot). Answers the holds new to this node.
    pub fn add_holds(self: &Arc<Self>, node: &NodeKey, holds: &[(UserId, u64)]) -> Vec<UserId> {
        holds
            .iter()
            .filter(|&&(user, since)| self.remote_up(node, user, since))
            .map(|&(user, _)| user)
            .collect()
    }

    /// Node `node` fell silent (or restarted) after it was last heard from at `ts`: each
    /// of its users left it then.
    pub fn drop_node(self: &Arc<Self>, node: &NodeKey, ts: u64) {
        let Some((_, users)) = self.by_node.remove(node) else {
            return;
        };
        for user in users {
            self.forget(node, user, ts);
        }
    }
}
