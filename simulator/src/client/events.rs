//! What a WebSocket device reports as it observes the server: connections opening and
//! ending, close codes, messages arriving, answers to sends, receipts, history pages and
//! frames that break the contract.
//!
//! The device only speaks the wire protocol and keeps its own log; what the observations
//! mean for the run (latencies, counters, the time series, faults) is decided by whoever
//! implements [`DeviceEvents`], the load layer. So the client never reaches up into the
//! load and can be driven by any recorder.

use std::time::Instant;

use super::frames::MsgFrame;
use crate::checks::{Anomaly, Check, Conv, MsgKey, Via};

/// The sink a device reports to. Called from the device's connection task, once per event,
/// so implementations must be cheap and must not block.
pub trait DeviceEvents: Send + Sync {
    /// A connection of a device opened.
    fn connected(&self);

    /// The server closed a connection, with this close code (1005 when it gave none).
    fn closed_by_server(&self, code: u16);

    /// A connection ended; `planned` when the device itself had closed it first.
    fn disconnected(&self, planned: bool);

    /// A frame that is not a server frame of the contract, or an error frame that answers
    /// no request.
    fn unmatched_frame(&self);

    /// A frame that breaks a check before it could reach the device's log; `detail` is
    /// only called when the check keeps another example.
    fn fault(&self, check: Check, detail: &dyn Fn() -> String);

    /// The same, for a fault of a kind the check does not usually find.
    fn fault_as(&self, check: Check, kind: Anomaly, detail: &dyn Fn() -> String);

    /// The highest seq of `conv` whose `sent` has come back so far (0 for none): a read
    /// of the conversation made after this must hold it.
    fn acked_high(&self, conv: Conv) -> u64;

    /// A message reached a device for the first time, live or through sync; `key` names
    /// it when its client id is one of the simulator's; `node` is the device's node
    /// ([`node_index`](DeviceEvents::node_index) of the name the server gave); `at` is
    /// when the frame reached the socket ([`ReadClock`](super::stamped::ReadClock)).
    fn arrived(&self, key: Option<MsgKey>, via: Via, node: u16, at: Instant);

    /// A small number for a node name a server answered with, the same for the same name
    /// in this process.
    fn node_index(&self, name: &str) -> u16;

    /// The server acknowledged send `n` of `user` (the shard's user `user_idx`) at `seq`
    /// of `conv` and `useq` of the sender's inbox. Returns the body hash the send was
    /// registered with, or `None` when no such send was made. `at`: as for
    /// [`arrived`](DeviceEvents::arrived).
    #[allow(clippy::too_many_arguments)]
    fn acked(
        &self,
        user: u64,
        user_idx: u32,
        n: u64,
        conv: Conv,
        seq: u64,
        useq: u64,
        at: Instant,
    ) -> Option<u64>;

    /// The server says every message of `conv` up to `seq` from user `user_idx` was
    /// delivered (read from the socket at `at`).
    fn receipt(&self, user_idx: u32, conv: Conv, seq: u64, at: Instant);

    /// The server refused send `n` of `user`.
    fn refused(&self, user: u64, n: u64);

    /// A history page of `conv` arrived at device `device` of `user`.
    fn history_page(
        &self,
        user: u64,
        device: &str,
        conv: &str,
        messages: &[MsgFrame],
        next_before: Option<u64>,
    );
}
