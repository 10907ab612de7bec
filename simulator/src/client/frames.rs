//! The frames of the wire contract (docs/protocol.md), as a client reads and writes them.
//! The simulator speaks the contract on its own rather than through the server's types,
//! so it checks the server from the outside, as any other client would.

use serde::Deserialize;
use serde_json::json;

/// A message as `msg` frames, `sync` items and `history` entries carry it.
#[derive(Debug, Clone, Deserialize)]
pub struct MsgFrame {
    pub conv: String,
    pub seq: u64,
    /// The recipient's inbox position (absent in history pages).
    #[serde(default)]
    pub useq: Option<u64>,
    pub from: u64,
    pub id: String,
    pub body: String,
}

/// A frame from the server. Frames the simulator does not use (`read`, `typing`,
/// `presence`, …) parse as [`ServerFrame::Other`].
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Sent {
        id: String,
        conv: String,
        seq: u64,
        useq: u64,
    },
    Msg(MsgFrame),
    Delivered {
        conv: String,
        seq: u64,
    },
    Sync {
        items: Vec<MsgFrame>,
        next: u64,
        more: bool,
    },
    History {
        conv: String,
        messages: Vec<MsgFrame>,
        next_before: Option<u64>,
    },
    Error {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    #[serde(other)]
    Other,
}

pub fn send(id: &str, to: &str, body: &str) -> String {
    json!({"type": "send", "id": id, "to": to, "body": body}).to_string()
}

pub fn ack(conv: &str, seq: u64) -> String {
    json!({"type": "ack", "conv": conv, "seq": seq}).to_string()
}

pub fn sync(after: u64, limit: u32) -> String {
    json!({"type": "sync", "after": after, "limit": limit}).to_string()
}

pub fn history(conv: &str, limit: u32) -> String {
    json!({"type": "history", "conv": conv, "limit": limit}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_frames() {
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"sent","id":"m1","conv":"d:1:2","seq":3,"useq":4,"ts":5}"#,
        )
        .unwrap();
        assert!(matches!(
            f,
            ServerFrame::Sent {
                seq: 3,
                useq: 4,
                ..
            }
        ));
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"msg","conv":"d:1:2","seq":3,"useq":4,"from":1,"id":"m1","body":"hi","ts":5}"#,
        )
        .unwrap();
        assert!(matches!(
            f,
            ServerFrame::Msg(MsgFrame { useq: Some(4), .. })
        ));
        let f: ServerFrame =
            serde_json::from_str(r#"{"type":"read","conv":"d:1:2","seq":3,"user":2}"#).unwrap();
        assert!(matches!(f, ServerFrame::Other));
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"error","code":"bad_request","message":"x","ref":"m9"}"#,
        )
        .unwrap();
        assert!(matches!(
            f,
            ServerFrame::Error {
                reference: Some(_),
                ..
            }
        ));
        let f: ServerFrame = serde_json::from_str(
            r#"{"type":"history","conv":"d:1:2","messages":[],"next_before":null}"#,
        )
        .unwrap();
        assert!(matches!(
            f,
            ServerFrame::History {
                next_before: None,
                ..
            }
        ));
    }
}
