//! What nodes say to each other over NATS.
//!
//! Two kinds of subject:
//!
//! - `chat.n.<node>`: frames for devices on that node ([`Relay`], a small binary layout:
//!   a sender writes one message per node per operation, however many users it covers);
//! - `chat.cluster`: every node's heartbeat and presence holds ([`Control`], JSON), one
//!   subject so that each node's announcements reach the others in the order it made them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::UserId;
use crate::protocol::Encoded;

/// The subject every node's control messages go to.
pub const CONTROL_SUBJECT: &str = "chat.cluster";

/// The subject of frames for devices on `node`.
pub fn node_subject(node: &str) -> String {
    format!("chat.n.{node}")
}

/// Frames for devices on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// Inbox positions: `(user, useq, msg frame)`, delivered in useq order per device.
    Inbox(Vec<(UserId, u64, Encoded)>),
    /// One frame outside the inbox stream (receipt, typing) for every device of `users`.
    Frame { frame: Encoded, users: Vec<UserId> },
    /// The sending node has just learnt that these users are connected on this node, so
    /// it relays their frames here from now on; what it stored for them before went
    /// nowhere live, and their devices here read it from the store.
    Seen(Vec<UserId>),
}

const INBOX: u8 = b'I';
const FRAME: u8 = b'F';
const SEEN: u8 = b'S';

/// A relay message that could not be read: a peer of another version, or damage.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unreadable relay message: {0}")]
pub struct WireError(&'static str);

impl Relay {
    /// The message's bytes.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Relay::Inbox(entries) => {
                b.put_u8(INBOX);
                for (user, useq, frame) in entries {
                    b.put_u64(*user);
                    b.put_u64(*useq);
                    put_frame(&mut b, frame);
                }
            }
            Relay::Frame { frame, users } => {
                b.put_u8(FRAME);
                put_frame(&mut b, frame);
                put_users(&mut b, users);
            }
            Relay::Seen(users) => {
                b.put_u8(SEEN);
                put_users(&mut b, users);
            }
        }
        b.freeze()
    }

    /// Reads a message [`Relay::encode`] wrote.
    pub fn decode(mut b: Bytes) -> Result<Relay, WireError> {
        if b.is_empty() {
            return Err(WireError("empty"));
        }
        match b.get_u8() {
            INBOX => {
                let mut entries = Vec::new();
                while b.has_remaining() {
                    let user = get_u64(&mut b)?;
                    let useq = get_u64(&mut b)?;
                    entries.push((user, useq, get_frame(&mut b)?));
                }
                Ok(Relay::Inbox(entries))
            }
            FRAME => {
                let frame = get_frame(&mut b)?;
                Ok(Relay::Frame {
                    frame,
                    users: get_users(&mut b)?,
                })
            }
            SEEN => Ok(Relay::Seen(get_users(&mut b)?)),
            _ => Err(WireError("unknown kind")),
        }
    }
}

fn put_frame(b: &mut BytesMut, frame: &Encoded) {
    let bytes = frame.bytes();
    b.put_u32(bytes.len() as u32);
    b.put_slice(bytes);
}

/// A list of users that runs to the end of the message.
fn put_users(b: &mut BytesMut, users: &[UserId]) {
    for user in users {
        b.put_u64(*user);
    }
}

fn get_users(b: &mut Bytes) -> Result<Vec<UserId>, WireError> {
    let mut users = Vec::with_capacity(b.remaining() / 8);
    while b.has_remaining() {
        users.push(get_u64(b)?);
    }
    Ok(users)
}

fn get_u64(b: &mut Bytes) -> Result<u64, WireError> {
    if b.remaining() < 8 {
        return Err(WireError("truncated integer"));
    }
    Ok(b.get_u64())
}

fn get_frame(b: &mut Bytes) -> Result<Encoded, WireError> {
    if b.remaining() < 4 {
        return Err(WireError("truncated frame length"));
    }
    let len = b.get_u32() as usize;
    if b.remaining() < len {
        return Err(WireError("truncated frame"));
    }
    Encoded::from_utf8(b.split_to(len)).ok_or(WireError("not UTF-8"))
}

/// A control message on [`CONTROL_SUBJECT`]. `node` and `inc` (the node's start time, ms:
/// its incarnation) say who speaks; a message of an older incarnation is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Control {
    /// Once a second: the node is alive, where clients reach it, how loaded it is.
    Beat {
        node: String,
        inc: u64,
        addr: String,
        connections: u64,
    },
    /// Changes of the node's presence holds, in the order they happened.
    Holds {
        node: String,
        inc: u64,
        changes: Vec<HoldWire>,
    },
    /// Asks `to` (every node when `None`) for a [`Control::Snapshot`] of its holds.
    SyncRequest { node: String, to: Option<String> },
    /// A part of the node's holds: `(user, connected since ms)`. The first part of a
    /// snapshot has `reset` (what it does not list is gone), the others add to it.
    Snapshot {
        node: String,
        inc: u64,
        reset: bool,
        users: Vec<(UserId, u64)>,
    },
    /// The node may have lost relay messages (NATS dropped it or its queue overflowed):
    /// every node catches its devices up from the store.
    Resync { node: String },
}

/// One change of [`Control::Holds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum HoldWire {
    Up { user: UserId, since: u64 },
    Down { user: UserId, ts: u64 },
}

impl Control {
    /// The node that sent it.
    pub fn node(&self) -> &str {
        match self {
            Control::Beat { node, .. }
            | Control::Holds { node, .. }
            | Control::SyncRequest { node, .. }
            | Control::Snapshot { node, .. }
            | Control::Resync { node } => node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Encoded {
        Encoded::from(s.to_owned())
    }

    #[test]
    fn relays_read_back_as_written() {
        let inbox = Relay::Inbox(vec![(1, 7, f("{\"a\":1}")), (u64::MAX, 1, f(""))]);
        assert_eq!(Relay::decode(inbox.encode()), Ok(inbox));
        let frame = Relay::Frame {
            frame: f("{\"type\":\"typing\"}"),
            users: vec![3, 4],
        };
        assert_eq!(Relay::decode(frame.encode()), Ok(frame));
        let seen = Relay::Seen(vec![3, u64::MAX]);
        assert_eq!(Relay::decode(seen.encode()), Ok(seen));
        let mut cut = Relay::Seen(vec![3]).encode().to_vec();
        cut.pop();
        assert!(Relay::decode(Bytes::from(cut)).is_err());
    }

    #[test]
    fn damaged_relays_are_refused_not_misread() {
        let good = Relay::Inbox(vec![(1, 7, f("{\"a\":1}"))]).encode();
        for cut in 0..good.len() {
            if cut == 1 {
                continue; // the kind byte alone is an empty, valid list
            }
            assert!(Relay::decode(good.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(Relay::decode(Bytes::from_static(b"X")).is_err());
        let mut bad = BytesMut::new();
        bad.put_u8(FRAME);
        bad.put_u32(2);
        bad.put_slice(&[0xff, 0xfe]);
        assert_eq!(Relay::decode(bad.freeze()), Err(WireError("not UTF-8")));
    }

    #[test]
    fn control_messages_are_tagged_json() {
        let c = Control::Holds {
            node: "a".into(),
            inc: 5,
            changes: vec![HoldWire::Up { user: 1, since: 2 }],
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(
            text,
            r#"{"t":"holds","node":"a","inc":5,"changes":[{"k":"up","user":1,"since":2}]}"#
        );
        assert_eq!(serde_json::from_str::<Control>(&text).unwrap(), c);
    }
}
