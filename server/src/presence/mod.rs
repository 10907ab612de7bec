//! Online status with hysteresis, published only to those who subscribed.
//!
//! The source design warns that broadcasting every status change is what breaks at scale,
//! so nothing is sent to anyone who did not list the user in `presence_sub`, and a change
//! is published only once it has lasted: *online* after `online_delay` of continuous
//! connection, *offline* after `offline_grace` with no device. A flap shorter than these
//! publishes nothing.
//!
//! A user is connected while at least one device holds a WebSocket, or an HTTP long poll
//! is in progress or ended less than [`HTTP_HOLD`] ago: on this node (local holds) or, in
//! cluster mode, on any other node ([`remote`]: the other nodes' holds, as they announce
//! them). Hysteresis runs on the sum, so every node publishes the same status to its own
//! subscribers.

mod remote;
mod timers;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::mpsc;

pub use self::remote::{HoldChange, NodeKey};

use crate::hub::{ConnId, DeviceHandle, Outbound};
use crate::metrics::Metrics;
use crate::model::{UserId, now_ms};
use crate::protocol::Encoded;

/// How long an HTTP-only client counts as online after its last long poll ended.
pub const HTTP_HOLD: Duration = Duration::from_secs(30);

/// A published status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Online,
    Offline,
}

/// One user's presence as answered to queries and subscribers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PresenceOut {
    pub user: UserId,
    pub status: Status,
    /// When the user's last device went away (ms), as of the last published offline.
    pub last_seen: Option<u64>,
}

#[derive(Debug)]
struct UserState {
    /// Devices and HTTP holds connected to this node now.
    holds: u32,
    /// When the first of this node's current holds began (ms).
    local_since: u64,
    /// Other nodes where the user is connected, with the time they connected there.
    remote: Vec<(NodeKey, u64)>,
    published: Status,
    published_last_seen: Option<u64>,
    /// When the last device went away (not yet necessarily published).
    went_away: Option<u64>,
    /// The change waiting for its delay, and the timer generation that may apply it.
    pending: Option<Status>,
    generation: u64,
}

impl Default for UserState {
    fn default() -> Self {
        UserState {
            holds: 0,
            local_since: 0,
            remote: Vec::new(),
            published: Status::Offline,
            published_last_seen: None,
            went_away: None,
            pending: None,
            generation: 0,
        }
    }
}

/// Presence tracking and subscriptions.
pub struct Presence {
    users: DashMap<UserId, UserState>,
    /// user → the connections watching them.
    watchers: DashMap<UserId, HashMap<ConnId, DeviceHandle>>,
    /// connection → the users it watches.
    subscriptions: DashMap<ConnId, Vec<UserId>>,
    online_delay: Duration,
    offline_grace: Duration,
    online_users: AtomicI64,
    metrics: Arc<Metrics>,
    /// Where this node's own hold changes go in cluster mode, to be announced.
    changes: OnceLock<mpsc::UnboundedSender<HoldChange>>,
    /// In cluster mode: the users each other node announced as connected there.
    by_node: DashMap<NodeKey, std::collections::HashSet<UserId>>,
    /// Changes waiting for their delay.
    timers: timers::Timers,
}

impl UserState {
    /// Holds anywhere in the cluster.
    fn total(&self) -> usize {
        self.holds as usize + self.remote.len()
    }
}

impl Presence {
    pub fn new(online_delay: Duration, offline_grace: Duration, metrics: Arc<Metrics>) -> Self {
        Presence {
            users: DashMap::new(),
            watchers: DashMap::new(),
            subscriptions: DashMap::new(),
            online_delay,
            offline_grace,
            online_users: AtomicI64::new(0),
            metrics,
            changes: OnceLock::new(),
            by_node: DashMap::new(),
            timers: timers::Timers::default(),
        }
    }

    /// A device (or an HTTP poll) of `user` connected to this node.
    pub fn connect(self: &Arc<Self>, user: UserId) {
        let now = now_ms();
        let schedule = {
            let mut st = self.users.entry(user).or_default();
            st.holds += 1;
            if st.holds != 1 {
                return;
            }
            st.local_since = now;
            self.online_users.fetch_add(1, Ordering::Relaxed);
            self.metrics.online_users.inc();
            self.announce(HoldChange::Up { user, since: now });
            self.gained(&mut st, now)
        };
        self.run(user, schedule);
    }

    /// A device (or an HTTP hold) of `user` went away from this node.
    pub fn disconnect(self: &Arc<Self>, user: UserId) {
        let now = now_ms();
        let schedule = {
            let Some(mut st) = self.users.get_mut(&user) else {
                return;
            };
            st.holds = st.holds.saturating_sub(1);
            if st.holds != 0 {
                return;
            }
            self.online_users.fetch_sub(1, Ordering::Relaxed);
            self.metrics.online_users.dec();
            self.announce(HoldChange::Down { user, ts: now });
            self.lost(&mut st, now)
        };
        self.run(user, schedule);
    }

    /// A hold was added; if it is the user's first anywhere (connected since `since`),
    /// an *online* is due once the user has been connected for the online delay.
    fn gained(&self, st: &mut UserState, since: u64) -> Option<(u64, Duration)> {
        if st.total() != 1 {
            return None;
        }
        st.generation += 1;
        if st.published == Status::Offline {
            st.pending = Some(Status::Online);
            let lasted = Duration::from_millis(now_ms().saturating_sub(since));
            Some((st.generation, self.online_delay.saturating_sub(lasted)))
        } else {
            // Back before the offline grace ran out: nothing to publish.
            st.pending = None;
            None
        }
    }

    /// A hold was removed at `ts`; if it was the user's last anywhere, an *offline* is
    /// due after the grace.
    fn lost(&self, st: &mut UserState, ts: u64) -> Option<(u64, Duration)> {
        if st.total() != 0 {
            return None;
        }
        st.went_away = Some(ts);
        st.generation += 1;
        if st.published == Status::Online {
            st.pending = Some(Status::Offline);
            let since = Duration::from_millis(now_ms().saturating_sub(ts));
            Some((st.generation, self.offline_grace.saturating_sub(since)))
        } else {
            st.pending = None;
            None
        }
    }

    /// Schedules what [`Self::gained`] or [`Self::lost`] made due. Called with no entry
    /// of the map held: a change due at once is applied here.
    fn run(self: &Arc<Self>, user: UserId, due: Option<(u64, Duration)>) {
        match due {
            Some((generation, delay)) if delay.is_zero() => self.fire(user, generation),
            Some((generation, delay)) => self.schedule(user, generation, delay),
            None => {}
        }
    }

    /// Sends a change of this node's holds to the cluster, when there is one.
    fn announce(&self, change: HoldChange) {
        if let Some(tx) = self.changes.get() {
            let _ = tx.send(change);
        }
    }

    /// Counts an HTTP long poll as a connection; the hold lasts [`HTTP_HOLD`] after the
    /// returned guard is dropped.
    pub fn http_hold(self: &Arc<Self>, user: UserId) -> HttpHold {
        self.connect(user);
        HttpHold {
            presence: self.clone(),
            user,
        }
    }

    /// Whether any device of `user` is connected now, on any node (no hysteresis): what
    /// decides push.
    pub fn is_connected(&self, user: UserId) -> bool {
        self.users.get(&user).is_some_and(|s| s.total() > 0)
    }

    /// Users connected to this node now.
    pub fn online_users(&self) -> i64 {
        self.online_users.load(Ordering::Relaxed)
    }

    fn schedule(self: &Arc<Self>, user: UserId, generation: u64, delay: Duration) {
        self.timers.after(self, delay, user, generation);
    }

    fn fire(&self, user: UserId, generation: u64) {
        let out = {
            let Some(mut st) = self.users.get_mut(&user) else {
                return;
            };
            if st.generation != generation {
                return; // cancelled by a later change
            }
            let Some(status) = st.pending.take() else {
                return;
            };
            st.published = status;
            if status == Status::Offline {
                st.published_last_seen = st.went_away;
            }
            PresenceOut {
                user,
                status,
                last_seen: st.published_last_seen,
            }
        };
        self.metrics.presence_published.inc();
        self.broadcast(&out);
    }

    /// Sends a change to the connections watching its user, and to nobody else.
    pub fn broadcast(&self, out: &PresenceOut) {
        let Some(watchers) = self.watchers.get(&out.user) else {
            return;
        };
        let frame = frame(out);
        for handle in watchers.values() {
            handle.offer(Outbound::Frame(frame.clone()));
        }
    }

    /// The published status of `user`.
    pub fn query(&self, user: UserId) -> PresenceOut {
        match self.users.get(&user) {
            Some(st) => PresenceOut {
                user,
                status: st.published,
                last_seen: st.published_last_seen,
            },
            None => PresenceOut {
                user,
                status: Status::Offline,
                last_seen: None,
            },
        }
    }

    /// Replaces what connection `handle` watches with `users`; returns the snapshot to
    /// send at once, one entry per listed user.
    pub fn subscribe(&self, handle: &DeviceHandle, users: Vec<UserId>) -> Vec<PresenceOut> {
        self.unsubscribe(handle.conn);
        for &u in &users {
            self.watchers
                .entry(u)
                .or_default()
                .insert(handle.conn, handle.clone());
        }
        let snapshot = users.iter().map(|&u| self.query(u)).collect();
        self.subscriptions.insert(handle.conn, users);
        snapshot
    }

    /// Drops every subscription of a connection (it closed, or subscribes anew).
    pub fn unsubscribe(&self, conn: ConnId) {
        if let Some((_, old)) = self.subscriptions.remove(&conn) {
            for u in old {
                self.watchers.remove_if_mut(&u, |_, w| {
                    w.remove(&conn);
                    w.is_empty()
                });
            }
        }
    }
}

/// The `presence` frame of a status.
pub fn frame(out: &PresenceOut) -> Encoded {
    #[derive(Serialize)]
    struct Frame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        out: &'a PresenceOut,
    }
    Encoded::from(
        serde_json::to_string(&Frame {
            kind: "presence",
            out,
        })
        .unwrap_or_default(),
    )
}

/// Keeps an HTTP-only client online; released [`HTTP_HOLD`] after it is dropped.
pub struct HttpHold {
    presence: Arc<Presence>,
    user: UserId,
}

impl Drop for HttpHold {
    fn drop(&mut self) {
        let presence = self.presence.clone();
        let user = self.user;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(HTTP_HOLD).await;
                presence.disconnect(user);
            });
        } else {
            presence.disconnect(user);
        }
    }
}
