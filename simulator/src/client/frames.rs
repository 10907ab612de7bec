//! The frames of the wire contract (docs/protocol.md), as a client reads and writes them.
//! The simulator speaks the contract on its own rather than through the server's types,
//! so it checks the server from the outside, as any other client would.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

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

impl ServerFrame {
    /// Reads a server frame; `None` for text that is not one.
    ///
    /// The frames the load brings (`msg`, `sent`, `delivered`, pages) are read in one
    /// pass into [`Flat`]: serde reads an internally tagged enum by first copying the
    /// whole frame into a tree of its own, which cost more than everything else the
    /// client does with a frame. Anything [`Flat`] does not settle (error frames, a
    /// field missing or of another type) is read by the enum as before, so what is
    /// accepted and what is not stays exactly the enum's rules.
    pub fn parse(text: &str) -> Option<ServerFrame> {
        if let Some(f) = serde_json::from_str::<Flat<'_>>(text)
            .ok()
            .and_then(Flat::into_frame)
        {
            return Some(f);
        }
        serde_json::from_str(text).ok()
    }
}

/// Every field of the frames the load brings, each optional, so one pass reads any of
/// them; [`Flat::into_frame`] builds the frame when its fields are all there.
#[derive(Deserialize)]
struct Flat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    id: Option<String>,
    conv: Option<String>,
    seq: Option<u64>,
    useq: Option<u64>,
    from: Option<u64>,
    body: Option<String>,
    items: Option<Vec<MsgFrame>>,
    messages: Option<Vec<MsgFrame>>,
    next: Option<u64>,
    more: Option<bool>,
    next_before: Option<u64>,
}

impl Flat<'_> {
    /// The frame, or `None` when the enum must decide (see [`ServerFrame::parse`]).
    fn into_frame(self) -> Option<ServerFrame> {
        Some(match &*self.kind {
            "msg" => ServerFrame::Msg(MsgFrame {
                conv: self.conv?,
                seq: self.seq?,
                useq: self.useq,
                from: self.from?,
                id: self.id?,
                body: self.body?,
            }),
            "sent" => ServerFrame::Sent {
                id: self.id?,
                conv: self.conv?,
                seq: self.seq?,
                useq: self.useq?,
            },
            "delivered" => ServerFrame::Delivered {
                conv: self.conv?,
                seq: self.seq?,
            },
            "sync" => ServerFrame::Sync {
                items: self.items?,
                next: self.next?,
                more: self.more?,
            },
            "history" => ServerFrame::History {
                conv: self.conv?,
                messages: self.messages?,
                next_before: self.next_before,
            },
            "error" => return None,
            _ => ServerFrame::Other,
        })
    }
}

/// A client frame, written straight from borrowed fields (no JSON tree in between).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame<'a> {
    Send {
        id: &'a str,
        to: &'a str,
        body: &'a str,
    },
    Ack {
        conv: &'a str,
        seq: u64,
    },
    Sync {
        after: u64,
        limit: u32,
    },
    History {
        conv: &'a str,
        limit: u32,
    },
}

fn write(f: &ClientFrame<'_>) -> String {
    // Strings and integers always serialize.
    serde_json::to_string(f).unwrap_or_default()
}

pub fn send(id: &str, to: &str, body: &str) -> String {
    write(&ClientFrame::Send { id, to, body })
}

pub fn ack(conv: &str, seq: u64) -> String {
    write(&ClientFrame::Ack { conv, seq })
}

pub fn sync(after: u64, limit: u32) -> String {
    write(&ClientFrame::Sync { after, limit })
}

pub fn history(conv: &str, limit: u32) -> String {
    write(&ClientFrame::History { conv, limit })
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

    #[test]
    fn client_frames_are_the_contract_json() {
        let v = |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap();
        assert_eq!(
            v(send("m1", "u:2", "a \"q\" \\ é\n")),
            serde_json::json!({"type": "send", "id": "m1", "to": "u:2", "body": "a \"q\" \\ é\n"})
        );
        assert_eq!(
            v(ack("d:1:2", 7)),
            serde_json::json!({"type": "ack", "conv": "d:1:2", "seq": 7})
        );
        assert_eq!(
            v(sync(3, 500)),
            serde_json::json!({"type": "sync", "after": 3, "limit": 500})
        );
        assert_eq!(
            v(history("g:4", 50)),
            serde_json::json!({"type": "history", "conv": "g:4", "limit": 50})
        );
    }

    /// The one-pass reader accepts and refuses exactly what the enum does.
    #[test]
    fn parse_agrees_with_the_enum() {
        let cases = [
            r#"{"type":"msg","conv":"d:1:2","seq":3,"useq":4,"from":1,"id":"m1","body":"h\u00e9\"","ts":5}"#,
            r#"{"type":"msg","conv":"d:1:2","seq":3,"from":1,"id":"m1","body":"x"}"#,
            r#"{"type":"msg","conv":"d:1:2","seq":3,"from":1,"id":"m1"}"#,
            r#"{"type":"msg","conv":"d:1:2","seq":"3","from":1,"id":"m1","body":"x"}"#,
            r#"{"type":"msg","conv":"d:1:2","seq":3,"from":1,"id":"m1","body":"x","items":7}"#,
            r#"{"type":"msg","conv":null,"seq":3,"from":1,"id":"m1","body":"x"}"#,
            r#"{"type":"sent","id":"m1","conv":"d:1:2","seq":3,"useq":4}"#,
            r#"{"type":"sent","id":"m1","conv":"d:1:2","seq":3}"#,
            r#"{"type":"sent","id":"m1","conv":"d:1:2","seq":3,"useq":-4}"#,
            r#"{"type":"sent","id":"m1","id":"m2","conv":"d:1:2","seq":3,"useq":4}"#,
            r#"{"type":"delivered","conv":"d:1:2","seq":9}"#,
            r#"{"type":"delivered","conv":"d:1:2"}"#,
            r#"{"type":"sync","items":[{"conv":"d:1:2","seq":1,"useq":1,"from":2,"id":"m1","body":"b"}],"next":1,"more":false}"#,
            r#"{"type":"sync","items":[{"conv":"d:1:2","seq":1}],"next":1,"more":false}"#,
            r#"{"type":"sync","items":[],"next":1}"#,
            r#"{"type":"history","conv":"d:1:2","messages":[],"next_before":null}"#,
            r#"{"type":"history","conv":"d:1:2","messages":[]}"#,
            r#"{"type":"history","conv":"d:1:2","messages":[],"next_before":4}"#,
            r#"{"type":"error","code":"bad_request","message":"x","ref":"m9"}"#,
            r#"{"type":"error","code":"bad_request","message":null}"#,
            r#"{"type":"error","code":"bad_request"}"#,
            r#"{"type":"read","conv":"d:1:2","seq":3,"user":2}"#,
            r#"{"type":"presence","users":{"1":true},"seq":"x"}"#,
            r#"{"type":7}"#,
            r#"{"conv":"d:1:2"}"#,
            r#"[1,2]"#,
            r#"not json"#,
            "",
        ];
        for text in cases {
            let enum_way = serde_json::from_str::<ServerFrame>(text).ok();
            let fast = ServerFrame::parse(text);
            assert_eq!(format!("{enum_way:?}"), format!("{fast:?}"), "{text}");
        }
    }
}
