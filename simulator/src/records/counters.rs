//! Counters of a shard, shared by its users and connection tasks, and their plain snapshot
//! that travels to the parent and into the summary.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Live counters of one shard.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(#[doc = $doc] pub $name: AtomicU64,)*
            /// Devices connected right now.
            pub connected: AtomicI64,
            /// Most devices connected at once.
            pub connected_peak: AtomicI64,
        }

        /// A snapshot of [`Counters`]; adds up across shards.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct CountersSnapshot {
            $(#[doc = $doc] pub $name: u64,)*
            pub connected: i64,
            pub connected_peak: i64,
        }

        impl Counters {
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot {
                    $($name: self.$name.load(Relaxed),)*
                    connected: self.connected.load(Relaxed),
                    connected_peak: self.connected_peak.load(Relaxed),
                }
            }
        }

        impl CountersSnapshot {
            /// Adds another shard's counts; peaks add too, since shards hold different
            /// devices at the same time.
            pub fn merge(&mut self, o: &CountersSnapshot) {
                $(self.$name += o.$name;)*
                self.connected += o.connected;
                self.connected_peak += o.connected_peak;
            }
        }
    };
}

counters! {
    sends_due: "Sends whose intended time came during the load.",
    sends_written: "Sends written to a WebSocket.",
    sends_acked: "Sends answered with `sent`.",
    sends_refused: "Sends answered with `error` (nothing stored).",
    sends_unanswered: "Sends with no answer in time or whose connection dropped first.",
    sends_skipped_offline: "Sends that fell due while every device of the user was offline.",
    crossing_sends: "Sends made as one half of a crossing pair.",
    group_sends: "Sends to a group.",
    deliveries_live: "First arrivals of a message on a device through a live `msg`.",
    deliveries_catch_up: "First arrivals of a message on a device through `sync`.",
    deliveries_same_node: "Live first arrivals on a device connected to the node the message was sent to.",
    deliveries_cross_node: "Live first arrivals on a device connected to another node than the one the message was sent to.",
    receipts: "Messages whose first `delivered` receipt reached the sender.",
    history_reads: "History pages read.",
    history_errors: "History reads that failed.",
    presence_pulls: "Presence pulls made.",
    presence_errors: "Presence pulls that failed.",
    connects: "Connections opened (first connects and reconnects).",
    connect_errors: "Connection attempts that failed.",
    reconnects: "Reconnects that caught up.",
    disconnects_planned: "Disconnects the scenario made (churn and storms).",
    disconnects_unexpected: "Connections the server or the network ended.",
    requests: "Requests of every kind (sends, reads, pulls, connects) for the error rate.",
    request_errors: "Requests that failed.",
    unmatched_errors: "`error` frames that answered no pending request.",
}

impl Counters {
    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// One more device connected.
    pub fn connected_up(&self) {
        let now = self.connected.fetch_add(1, Relaxed) + 1;
        self.connected_peak.fetch_max(now, Relaxed);
    }

    pub fn connected_down(&self) {
        self.connected.fetch_sub(1, Relaxed);
    }
}
