//! What identifies a message across the run: its conversation, its sender and the number
//! of its client id, a hash of its body; and what the shard sent and the server answered.
//! Devices, the send registry and every check speak of messages in these terms.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// A conversation id as the protocol writes it: `d:<lo>:<hi>` or `g:<group>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conv {
    Direct(u64, u64),
    Group(u64),
}

impl Conv {
    /// The direct conversation of two users.
    pub fn direct(a: u64, b: u64) -> Conv {
        Conv::Direct(a.min(b), a.max(b))
    }
}

impl fmt::Display for Conv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conv::Direct(lo, hi) => write!(f, "d:{lo}:{hi}"),
            Conv::Group(g) => write!(f, "g:{g}"),
        }
    }
}

impl FromStr for Conv {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("not a conversation id: {s:?}");
        let mut parts = s.split(':');
        let conv = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("d"), Some(lo), Some(hi), None) => Conv::Direct(
                lo.parse().map_err(|_| bad())?,
                hi.parse().map_err(|_| bad())?,
            ),
            (Some("g"), Some(g), None, None) => Conv::Group(g.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        Ok(conv)
    }
}

/// A message's identity: its sender and the number in its client id `m<n>`.
pub type MsgKey = (u64, u64);

/// The client message id of the n-th send of a user.
pub fn client_id(n: u64) -> String {
    format!("m{n}")
}

/// The n of a client id `m<n>`, or `None` for an id this simulator never makes.
pub fn parse_client_id(id: &str) -> Option<u64> {
    id.strip_prefix('m')?.parse().ok()
}

/// A stable 64-bit hash of a body, so logs need not keep bodies.
pub fn body_hash(body: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

/// What the shard sent: one record per send attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRecord {
    pub conv: Conv,
    pub body_hash: u64,
    /// What the server answered.
    pub outcome: Outcome,
}

/// The server's answer to a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No answer yet (or none before the timeout): it may or may not be stored.
    Unknown,
    /// `sent`: stored at `seq`, at `useq` in the sender's inbox.
    Acked { seq: u64, useq: u64 },
    /// An `error` answer: nothing stored.
    Refused,
}
