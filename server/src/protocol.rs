//! The frames of WebSocket protocol v1 (docs/protocol.md) and their JSON form. HTTP
//! answers reuse the same objects.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::model::{ClientMsgId, ConvId, Target, UserId};
use crate::store::{InboxItem, StoredMessage};

/// A frame from a client, with its identities parsed and checked while it is decoded:
/// a frame with a bad id, target or conversation does not decode. Limits (page sizes,
/// body length) are the service's.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Send {
        id: ClientMsgId,
        to: Target,
        body: String,
    },
    Ack {
        conv: ConvId,
        seq: u64,
    },
    Read {
        conv: ConvId,
        seq: u64,
    },
    Sync {
        #[serde(default)]
        after: u64,
        limit: Option<u64>,
    },
    History {
        conv: ConvId,
        before: Option<u64>,
        limit: Option<u64>,
    },
    Typing {
        conv: ConvId,
    },
    PresenceSub {
        users: Vec<UserId>,
    },
    Ping {},
}

impl ClientFrame {
    /// Decodes a client frame. A `send` (nearly every frame a busy client writes) is read
    /// straight into its fields first: serde reads an internally tagged enum by buffering
    /// the whole frame into a tree of owned values to find `type`, and at saturation that
    /// was about as much CPU as the rest of the frame's decoding. Anything that is not a
    /// well-formed `send` is decoded again the general way, which gives the same frame or
    /// the same error it always did.
    pub fn decode(text: &str) -> serde_json::Result<ClientFrame> {
        match serde_json::from_str::<SendFrame>(text) {
            Ok(SendFrame { id, to, body, .. }) => Ok(ClientFrame::Send { id, to, body }),
            Err(_) => serde_json::from_str(text),
        }
    }
}

/// A `send` frame's fields, for [`ClientFrame::decode`]. Unknown fields are ignored, as
/// the enum ignores them.
#[derive(Deserialize)]
struct SendFrame {
    #[serde(rename = "type")]
    _kind: SendTag,
    id: ClientMsgId,
    to: Target,
    body: String,
}

/// The only `type` a [`SendFrame`] takes.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum SendTag {
    Send,
}

/// What a client frame that failed to parse still tells: its `id`, to echo as `ref`.
#[derive(Deserialize)]
pub struct FrameRef {
    pub id: Option<serde_json::Value>,
}

/// A message as `msg` frames, `sync` items and `history` entries carry it. `useq` is the
/// recipient's inbox position; history leaves it out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MsgOut {
    pub conv: String,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub useq: Option<u64>,
    pub from: u64,
    pub id: String,
    pub body: String,
    pub ts: u64,
}

impl MsgOut {
    /// A message for history (no inbox position).
    pub fn history(m: &StoredMessage) -> Self {
        Self::at(m, None)
    }

    /// A message at position `useq` of the recipient's inbox.
    pub fn inbox(m: &StoredMessage, useq: u64) -> Self {
        Self::at(m, Some(useq))
    }

    fn at(m: &StoredMessage, useq: Option<u64>) -> Self {
        MsgOut {
            conv: m.conv.to_string(),
            seq: m.seq,
            useq,
            from: m.from,
            id: m.id.clone(),
            body: m.body.clone(),
            ts: m.ts,
        }
    }
}

impl From<&InboxItem> for MsgOut {
    fn from(i: &InboxItem) -> Self {
        MsgOut::inbox(&i.msg, i.useq)
    }
}

/// The answer to `sync` (and `GET /v1/sync`).
#[derive(Debug, Serialize, Deserialize)]
pub struct SyncOut {
    pub items: Vec<MsgOut>,
    pub next: u64,
    pub more: bool,
}

/// The answer to `history` (and `GET /v1/conversations/{conv}/messages`).
#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryOut {
    pub conv: String,
    pub messages: Vec<MsgOut>,
    pub next_before: Option<u64>,
}

/// The answer to `send` (and `POST /v1/messages`).
#[derive(Debug, Serialize, Deserialize)]
pub struct SentOut {
    pub conv: String,
    pub seq: u64,
    pub useq: u64,
    pub ts: u64,
}

/// A server frame encoded once as JSON text and shared by every device it fans out to
/// (cloning it copies no bytes). Only the WebSocket layer turns it into the transport's
/// own type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(Bytes);

impl Encoded {
    /// The frame's bytes (UTF-8 JSON).
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The frame's bytes, taken.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// A frame from bytes another node encoded; `None` unless they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Option<Self> {
        std::str::from_utf8(&bytes)
            .is_ok()
            .then_some(Encoded(bytes))
    }
}

impl From<String> for Encoded {
    fn from(mut text: String) -> Self {
        // serde_json grows its buffer by doubling, so a frame just past a power of two
        // would hold nearly twice its bytes for as long as it is queued: a stalled
        // device's full queue of 4 KB messages took 8 KB a frame. Give large slack back.
        if text.capacity() - text.len() > text.len() / 4 + 64 {
            text.shrink_to_fit();
        }
        Encoded(Bytes::from(text))
    }
}

/// A frame from the server.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Sent {
        id: &'a str,
        #[serde(flatten)]
        sent: &'a SentOut,
    },
    Msg(&'a MsgOut),
    Delivered {
        conv: &'a str,
        seq: u64,
        user: u64,
    },
    Read {
        conv: &'a str,
        seq: u64,
        user: u64,
    },
    Sync(&'a SyncOut),
    History(&'a HistoryOut),
    Typing {
        conv: &'a str,
        user: u64,
    },
    Pong {},
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a serde_json::Value>,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The frame encoded for fan-out.
    pub fn encode(&self) -> Encoded {
        Encoded::from(self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_documented_shape() {
        let sent = SentOut {
            conv: "d:1:2".into(),
            seq: 3,
            useq: 4,
            ts: 5,
        };
        let v: serde_json::Value = serde_json::from_str(
            &ServerFrame::Sent {
                id: "a",
                sent: &sent,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"sent","id":"a","conv":"d:1:2","seq":3,"useq":4,"ts":5})
        );
        let err = ServerFrame::Error {
            code: "bad_request",
            message: "m",
            reference: None,
        };
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"bad_request","message":"m"}"#
        );
        assert_eq!(ServerFrame::Pong {}.to_json(), r#"{"type":"pong"}"#);
    }

    #[test]
    fn client_frames_parse_and_reject_unknown_types() {
        let f: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert!(matches!(f, ClientFrame::Ping {}));
        let f: ClientFrame = serde_json::from_str(r#"{"type":"sync"}"#).unwrap();
        assert!(matches!(
            f,
            ClientFrame::Sync {
                after: 0,
                limit: None
            }
        ));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"ack","conv":"d:1:2"}"#).is_err());
        // Identities are checked while decoding.
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"send","id":"m1","to":"u:2","body":"b"}"#).unwrap();
        assert!(matches!(
            f,
            ClientFrame::Send {
                to: Target::User(2),
                ..
            }
        ));
        for bad in [
            r#"{"type":"send","id":"","to":"u:2","body":"b"}"#,
            r#"{"type":"send","id":"m1","to":"u:0","body":"b"}"#,
            r#"{"type":"read","conv":"d:2:1","seq":1}"#,
            r#"{"type":"typing","conv":7}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }

    /// `decode` reads a `send` by its own path: it must give what the enum gives, frame
    /// for frame and refusal for refusal, whatever the order, extra or repeated fields.
    #[test]
    fn decode_gives_what_the_enum_gives() {
        let frames = [
            r#"{"type":"send","id":"m1","to":"u:2","body":"b"}"#,
            r#"{"body":"b\u00e9\n\"q\"","to":"g:7","id":"m 2","type":"send"}"#,
            r#"{"type":"send","id":"m1","to":"u:2","body":"b","extra":[1,{"x":2}]}"#,
            r#"  {"type":"send","id":"m1","to":"u:2","body":""}  "#,
            r#"{"type":"send","id":"m1","to":"u:2"}"#,
            r#"{"type":"send","id":"m1","to":"u:2","body":7}"#,
            r#"{"type":"send","id":"m1","to":"u:0","body":"b"}"#,
            r#"{"type":"send","id":"","to":"u:2","body":"b"}"#,
            r#"{"type":"send","id":"m1","to":"u:2","body":"b","id":"m2"}"#,
            r#"{"type":"send","id":"m1","to":"u:2","body":"b","type":"ack"}"#,
            r#"{"type":"ack","id":"m1","to":"u:2","body":"b","conv":"d:1:2","seq":3}"#,
            r#"{"type":"Send","id":"m1","to":"u:2","body":"b"}"#,
            r#"{"type":7,"id":"m1","to":"u:2","body":"b"}"#,
            r#"{"type":"send","id":"m1","to":"u:2","body":"b"} x"#,
            r#"["send","m1","u:2","b"]"#,
            r#"{"type":"read","conv":"d:1:2","seq":4}"#,
            r#"{"type":"sync"}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"nope"}"#,
            r#""#,
        ];
        for text in frames {
            let fast = ClientFrame::decode(text).map(|f| format!("{f:?}"));
            let general = serde_json::from_str::<ClientFrame>(text).map(|f| format!("{f:?}"));
            match (&fast, &general) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{text}: decode {fast:?}, enum {general:?}"),
            }
        }
        assert!(matches!(
            ClientFrame::decode(frames[1]),
            Ok(ClientFrame::Send { to: Target::Group(7), ref body, .. }) if body == "bé\n\"q\""
        ));
    }
}
