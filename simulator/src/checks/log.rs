//! The record each device keeps so the checks can run: its user's inbox as this device
//! learned it (live `msg` frames, `sync` pages, its own `sent` answers) and, per
//! connection, the order live frames came in.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Check, CheckResults, Conv, MsgKey, ordering};

/// One message as a device holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub conv: Conv,
    pub seq: u64,
    pub from: u64,
    /// `None` when the client id is not one of ours (a phantom).
    pub n: Option<u64>,
    pub body_hash: u64,
}

impl Entry {
    pub fn key(&self) -> Option<MsgKey> {
        self.n.map(|n| (self.from, n))
    }

    fn describe(&self) -> String {
        match self.n {
            Some(n) => format!("{}:m{n} at {} seq {}", self.from, self.conv, self.seq),
            None => format!(
                "{}:<foreign id> at {} seq {}",
                self.from, self.conv, self.seq
            ),
        }
    }
}

/// How a device learned of an inbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Live,
    Sync,
    /// The device's own `sent` answer.
    Own,
}

/// What [`DeviceLog::observe`] made of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// First time this device holds this message.
    New,
    /// The position was already known with the same message.
    Known,
    /// The position was known with a different message (already recorded as a fault).
    Conflict,
}

/// Everything one device learned, for the checks.
#[derive(Debug, Default)]
pub struct DeviceLog {
    pub user: u64,
    pub device: String,
    /// The inbox as this device knows it: useq → entry.
    pub inbox: BTreeMap<u64, Entry>,
    /// Where each message sits in this device's inbox (more than one place is a fault).
    pub positions: HashMap<MsgKey, Vec<u64>>,
    /// The largest k with 1..=k all known: where a sync resumes.
    pub contiguous: u64,
    /// The live-order state of each open connection, by connection number. A device
    /// usually has one, but a connection it closed can still bring frames for a moment
    /// after the next one opened (the server answers the close only after what it had
    /// queued): each connection is checked on its own, never mixed with the next.
    pub(super) epochs: HashMap<u64, Epoch>,
    /// Faults found while the run went on.
    pub online: CheckResults,
}

/// What one connection of a device delivered live, for the live-order rules.
#[derive(Debug, Default)]
pub(super) struct Epoch {
    /// Live useqs, in arrival order.
    pub live: Vec<u64>,
    pub live_set: HashSet<u64>,
    /// Useqs of the device's own sends answered on this connection.
    pub own: HashSet<u64>,
}

impl DeviceLog {
    pub fn new(user: u64, device: String) -> Self {
        DeviceLog {
            user,
            device,
            ..Default::default()
        }
    }

    /// `user/device`, for fault messages.
    pub fn who(&self) -> String {
        format!("{}/{}", self.user, self.device)
    }

    /// Records an entry at `useq` learned `via` on the device's only connection.
    pub fn observe(&mut self, useq: u64, entry: Entry, via: Via) -> Observed {
        self.observe_on(0, useq, entry, via)
    }

    /// Records an entry at `useq` learned `via` on connection `conn`. Live frames also go
    /// through the live-order rules of [`ordering`] for that connection.
    pub fn observe_on(&mut self, conn: u64, useq: u64, entry: Entry, via: Via) -> Observed {
        if via == Via::Live {
            ordering::on_live(self, conn, useq);
        }
        if via == Via::Own {
            self.epochs.entry(conn).or_default().own.insert(useq);
        }
        if let Some(known) = self.inbox.get(&useq) {
            if *known == entry {
                return Observed::Known;
            }
            let (who, known) = (self.who(), *known);
            self.online.fault(Check::Consistency, || {
                format!(
                    "device {who}: inbox position {useq} held {} and then {}",
                    known.describe(),
                    entry.describe()
                )
            });
            return Observed::Conflict;
        }
        self.inbox.insert(useq, entry);
        if let Some(k) = entry.key() {
            self.positions.entry(k).or_default().push(useq);
        }
        while self.inbox.contains_key(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
        Observed::New
    }

    /// Ends the device's only connection (see [`DeviceLog::end_connection_of`]).
    pub fn end_connection(&mut self) {
        self.end_connection_of(0);
    }

    /// Ends connection `conn`: checks that its live stream skipped only the device's own
    /// sends, then forgets its order state.
    pub fn end_connection_of(&mut self, conn: u64) {
        if let Some(epoch) = self.epochs.remove(&conn) {
            ordering::check_live_gaps(self, &epoch);
        }
    }

    /// Whether the device holds message `key`.
    pub fn holds(&self, key: &MsgKey) -> bool {
        self.positions.contains_key(key)
    }
}
