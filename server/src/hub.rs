//! The `user_id → connections` table of the push model: which devices are online, and the
//! bounded outgoing queue of each.
//!
//! Fan-out never waits: a frame for another user's device is offered to that device's
//! queue with `try_send`, and a device whose queue is full is cut off (close code 1013)
//! rather than allowed to grow the server's memory. Nothing stored is lost by that: the
//! device catches up with `sync` when it reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::model::{DeviceId, UserId};
use crate::protocol::Encoded;

pub mod queue;

/// One connection of a device, unique within this process for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Close code for a device whose outgoing queue overflowed (RFC 6455 "try again later").
pub const CLOSE_OVERFLOW: u16 = 1013;

/// What a device's session receives through its queue.
#[derive(Debug)]
pub enum Outbound {
    /// A frame outside the inbox stream (answers, receipts, typing): written as it comes.
    Frame(Encoded),
    /// A `msg` frame at inbox position `useq` of the device's user: written in useq order.
    Inbox { useq: u64, frame: Encoded },
    /// Inbox position `useq` is this device's own send, answered with `sent`: the live
    /// stream moves past it without a `msg`.
    Own { useq: u64 },
    /// Live frames may have been lost on the way (cluster mode): read the inbox past the
    /// last position written from the store.
    CatchUp,
}

/// Asks a connection to close with a code, from outside its tasks.
#[derive(Default)]
pub struct CloseSignal {
    code: AtomicU16,
    notify: Notify,
}

impl CloseSignal {
    /// Requests the close; the first code asked for wins.
    pub fn close(&self, code: u16) {
        if self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_waiters();
        }
    }

    /// Waits until a close is requested and returns its code. Both tasks of a connection
    /// wait on this, so every waiter is woken; interest is registered before the check so
    /// a close between the two is not missed.
    pub async fn requested(&self) -> u16 {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let code = self.code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            notified.await;
        }
    }
}

/// A device's own sends, as its live stream must know them: a position this device
/// sent is answered with `sent` and must never also come as `msg`, even when the stream
/// reads it from the store (a gap fill, a catch-up) before the position's
/// [`Outbound::Own`] reached the session.
#[derive(Default)]
pub struct OwnSends {
    started: AtomicU64,
    done: AtomicU64,
    /// Inbox positions of this device's sends that the stream has not passed yet.
    positions: parking_lot::Mutex<std::collections::BTreeSet<u64>>,
}

impl OwnSends {
    /// A send of this device begins.
    pub fn begin(&self) {
        self.started.fetch_add(1, Ordering::AcqRel);
    }

    /// The send that began last ended (its position, if any, is noted).
    pub fn end(&self) {
        self.done.fetch_add(1, Ordering::AcqRel);
    }

    /// Notes that position `useq` is this device's own.
    pub fn note(&self, useq: u64) {
        self.positions.lock().insert(useq);
    }

    /// The number of sends begun, if none is under way; a store read is then safe to
    /// use as long as this number has not moved when it returns.
    pub fn quiet(&self) -> Option<u64> {
        let started = self.started.load(Ordering::Acquire);
        (self.done.load(Ordering::Acquire) == started).then_some(started)
    }

    /// Whether the sends begun are still `begun` (none began since).
    pub fn unchanged(&self, begun: u64) -> bool {
        self.started.load(Ordering::Acquire) == begun
    }

    /// Whether `useq` is this device's own position.
    pub fn is_own(&self, useq: u64) -> bool {
        self.positions.lock().contains(&useq)
    }

    /// Forgets the positions below `useq` (the stream passed them).
    pub fn passed(&self, useq: u64) {
        let mut p = self.positions.lock();
        if p.first().is_some_and(|&f| f < useq) {
            *p = p.split_off(&useq);
        }
    }
}

/// One online device: its queue, its close signal and its own sends.
#[derive(Clone)]
pub struct DeviceHandle {
    pub conn: ConnId,
    pub device: DeviceId,
    pub tx: queue::Sender<Outbound>,
    pub close: Arc<CloseSignal>,
    pub own: Arc<OwnSends>,
}

impl DeviceHandle {
    /// Offers a frame without waiting; a full queue cuts the device off.
    pub fn offer(&self, item: Outbound) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(queue::Refused::Full(_)) => {
                tracing::info!(conn = %self.conn, device = %self.device, "outgoing queue full: closing 1013");
                self.close.close(CLOSE_OVERFLOW);
            }
            Err(queue::Refused::Closed(_)) => {}
        }
    }
}

#[derive(Default)]
struct UserEntry {
    devices: Vec<DeviceHandle>,
    /// Woken whenever the user's inbox grows: long polls wait on it.
    inbox_grew: Option<Arc<Notify>>,
}

/// The registry of online devices.
#[derive(Default)]
pub struct Hub {
    /// Hashed with foldhash: a lookup per delivery, where SipHash showed in profiles.
    users: DashMap<UserId, UserEntry, foldhash::fast::RandomState>,
    next_conn: AtomicU64,
    online_devices: AtomicU64,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh connection number.
    pub fn next_conn(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Puts a device online.
    pub fn register(&self, user: UserId, handle: DeviceHandle) {
        // Exactly one more slot: most users have one device, and a Vec's first push would
        // make room for four (about 170 bytes of every idle connection).
        let mut entry = self.users.entry(user).or_default();
        entry.devices.reserve_exact(1);
        entry.devices.push(handle);
        self.online_devices.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a connection offline.
    pub fn unregister(&self, user: UserId, conn: ConnId) {
        let mut removed = false;
        self.users.remove_if_mut(&user, |_, entry| {
            let before = entry.devices.len();
            entry.devices.retain(|d| d.conn != conn);
            removed = entry.devices.len() < before;
            entry.devices.is_empty() && entry.inbox_grew.is_none()
        });
        if removed {
            self.online_devices.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Devices online now.
    pub fn online_devices(&self) -> u64 {
        self.online_devices.load(Ordering::Relaxed)
    }

    /// Delivers inbox position `useq` of `user` to each online device: `frame` to all but
    /// `own_conn` (the connection that sent it, which got `sent`). Long polls wake up.
    pub fn deliver_inbox(
        &self,
        user: UserId,
        useq: u64,
        frame: &Encoded,
        own_conn: Option<ConnId>,
    ) {
        let Some(entry) = self.users.get(&user) else {
            return;
        };
        for d in &entry.devices {
            if Some(d.conn) == own_conn {
                d.own.note(useq);
                d.offer(Outbound::Own { useq });
            } else {
                d.offer(Outbound::Inbox {
                    useq,
                    frame: frame.clone(),
                });
            }
        }
        if let Some(n) = &entry.inbox_grew {
            n.notify_waiters();
        }
    }

    /// Sends a frame outside the inbox stream to every online device of `user`, except
    /// `skip_conn`.
    pub fn send_to_user(&self, user: UserId, frame: &Encoded, skip_conn: Option<ConnId>) {
        if let Some(entry) = self.users.get(&user) {
            for d in entry.devices.iter().filter(|d| Some(d.conn) != skip_conn) {
                d.offer(Outbound::Frame(frame.clone()));
            }
        }
    }

    /// The notifier a long poll of `user` waits on. Register interest (`notified()`)
    /// before checking the store, so no growth between the check and the wait is missed.
    pub fn inbox_notifier(&self, user: UserId) -> Arc<Notify> {
        self.users
            .entry(user)
            .or_default()
            .inbox_grew
            .get_or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Drops the long-poll notifier of `user` when nobody waits on it any more.
    pub fn release_notifier(&self, user: UserId) {
        self.users.remove_if_mut(&user, |_, entry| {
            if entry
                .inbox_grew
                .as_ref()
                .is_some_and(|n| Arc::strong_count(n) == 1)
            {
                entry.inbox_grew = None;
            }
            entry.devices.is_empty() && entry.inbox_grew.is_none()
        });
    }

    /// Offers an item to every online device of `user`.
    pub fn offer_user(&self, user: UserId, item: impl Fn() -> Outbound) {
        if let Some(entry) = self.users.get(&user) {
            for d in &entry.devices {
                d.offer(item());
            }
        }
    }

    /// Offers an item to every online device.
    pub fn offer_all(&self, item: impl Fn() -> Outbound) {
        for entry in self.users.iter() {
            for d in &entry.devices {
                d.offer(item());
            }
        }
    }

    /// Asks every connection to close with `code` (used at shutdown).
    pub fn close_all(&self, code: u16) {
        for entry in self.users.iter() {
            for d in &entry.devices {
                d.close.close(code);
            }
        }
    }
}
