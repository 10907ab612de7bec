//! The hostile-input targets: each takes one input, runs it through the server's own
//! parsing code and says what the server answers — accepted, rejected with a contract
//! code, or the WebSocket closed with a code — or, as an `Err`, how the answer breaks
//! the contract (docs/protocol.md, "Errors and bad input"). The property tests and the
//! fuzz bench run the same targets.

// The tests and the bench each use a different part of this module.
#![allow(dead_code)]

use std::io::{Cursor, Read, Write};

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::Request;
use chat_server::auth::{Auth, AuthError};
use chat_server::error::{ApiError, Code};
use chat_server::http::{DevLogin, GroupBody, JsonBody, MarkBody, MemberBody, PushBody, SendBody};
use chat_server::model::{ClientMsgId, ConvId, DeviceId, Target, parse_user};
use chat_server::protocol::ServerFrame;
use chat_server::ws::{decode_text, read_error_close_code};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Message, error::ProtocolError};

use super::inputs::{BodyCase, BodyRoute, IdKind, TokenCase};

/// What the server answers to one hostile input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Taken as valid.
    Accepted,
    /// Refused with this error code (an `error` frame, or an HTTP error answer).
    Rejected(&'static str),
    /// The WebSocket is closed with this code.
    Closed(u16),
}

impl Outcome {
    /// How the bench's table names it.
    pub fn label(&self) -> String {
        match self {
            Outcome::Accepted => "accepted".to_owned(),
            Outcome::Rejected(code) => (*code).to_owned(),
            Outcome::Closed(code) => format!("close {code}"),
        }
    }
}

/// An outcome, or how the answer broke the contract.
pub type Checked = Result<Outcome, String>;

/// The codes of the contract's error table.
pub const CONTRACT_CODES: &[&str] = &[
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "too_large",
    "rate_limited",
    "unavailable",
    "internal",
];

/// The close codes a session may end a connection with over bad input: 1000 when the
/// peer closed, 1002 when it broke the WebSocket protocol, 1007 for text that is not
/// UTF-8, 1009 for a frame or message over 64 KiB.
pub const INPUT_CLOSE_CODES: &[u16] = &[1000, 1002, 1007, 1009];

/// Checks a rejection: its code must be one of `allowed` (contract codes this input may
/// get; never `internal`, a 500 is a bug), its message non-empty.
fn rejected(e: &ApiError, allowed: &[Code]) -> Checked {
    let code = e.code.as_str();
    if !CONTRACT_CODES.contains(&code) {
        return Err(format!("{code:?} is not a contract code"));
    }
    if !allowed.contains(&e.code) {
        return Err(format!(
            "rejected with {code} ({}); expected one of {allowed:?}",
            e.message
        ));
    }
    if e.message.is_empty() {
        return Err(format!("{code} without a message"));
    }
    Ok(Outcome::Rejected(code))
}

/// The JSON frame parser: a WebSocket text frame as the session decodes it. A frame is
/// either a client frame or `bad_request`; the `error` frame that answers it is JSON
/// whose `ref`, when present, is the offending frame's `id`.
pub fn client_frame(text: &str) -> Checked {
    match decode_text(text) {
        Ok(_) => Ok(Outcome::Accepted),
        Err((e, reference)) => {
            let out = rejected(&e, &[Code::BadRequest])?;
            let answer = ServerFrame::Error {
                code: e.code.as_str(),
                message: &e.message,
                reference: reference.as_ref(),
            }
            .to_json();
            let v: serde_json::Value = serde_json::from_str(&answer)
                .map_err(|err| format!("the error frame is not JSON ({err}): {answer}"))?;
            if v["type"] != "error" || v["code"] != "bad_request" {
                return Err(format!("the error frame has the wrong shape: {answer}"));
            }
            // `ref` comes from an object only, and is its `id`. (It is also taken from an
            // object that is not valid as a whole, e.g. one with a hostile member after
            // the `id`; a client still learns which of its frames was refused.)
            if let Some(r) = &reference {
                if !text.trim_start().starts_with('{') {
                    return Err(format!("ref {r} taken from a frame that is no object"));
                }
                if let Ok(frame) =
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                    && frame.get("id") != Some(r)
                {
                    return Err(format!("ref {r} is not the frame's id"));
                }
            }
            Ok(out)
        }
    }
}

/// The identity parsers (users, conversations, targets, message ids, devices): a value
/// that keeps its invariants and prints back to itself, or `bad_request`.
pub fn identity(kind: IdKind, text: &str) -> Checked {
    fn check<T: std::fmt::Debug + PartialEq>(
        parsed: Result<T, chat_server::model::InvalidId>,
        ok: impl Fn(&T) -> Result<(), String>,
    ) -> Checked {
        match parsed {
            Ok(v) => ok(&v).map(|()| Outcome::Accepted),
            Err(e) => rejected(&ApiError::from(e), &[Code::BadRequest]),
        }
    }
    match kind {
        IdKind::User => check(parse_user(text), |&u| {
            (u > 0).then_some(()).ok_or("user 0 accepted".to_owned())
        }),
        IdKind::Conv => check(text.parse::<ConvId>(), |c| {
            if let ConvId::Direct { lo, hi } = *c
                && (lo == 0 || lo >= hi)
            {
                return Err(format!("{text:?} parsed to {c:?}"));
            }
            if let ConvId::Group(0) = c {
                return Err(format!("{text:?} parsed to group 0"));
            }
            match c.to_string().parse::<ConvId>() {
                Ok(back) if back == *c => Ok(()),
                other => Err(format!("{c} does not parse back to itself: {other:?}")),
            }
        }),
        IdKind::Target => check(text.parse::<Target>(), |t| match t {
            Target::User(0) | Target::Group(0) => Err(format!("{text:?} parsed to {t:?}")),
            _ => Ok(()),
        }),
        IdKind::MsgId => check(text.parse::<ClientMsgId>(), |id| {
            let s = id.as_str();
            let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x20..=0x7e).contains(&b));
            ok.then_some(()).ok_or(format!("message id {s:?} accepted"))
        }),
        IdKind::Device => check(text.parse::<DeviceId>(), |d| {
            let s = d.as_str();
            let ok = (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            ok.then_some(()).ok_or(format!("device id {s:?} accepted"))
        }),
    }
}

/// The token check: a token is accepted exactly when it is an HS256 JWT signed with the
/// server's secret, unexpired, for a valid user and device — and then as that user and
/// device; anything else is `unauthorized`.
pub fn token(auth: &Auth, case: &TokenCase) -> Checked {
    match (auth.verify(&case.token), &case.expect) {
        (Ok(who), Some((user, device))) => {
            if who.user == *user && who.device.as_str() == device {
                Ok(Outcome::Accepted)
            } else {
                Err(format!(
                    "accepted as {who:?}, expected user {user} device {device}"
                ))
            }
        }
        (Ok(who), None) => Err(format!(
            "a token that must be refused was accepted as {who:?}"
        )),
        (Err(e), expect) => {
            if !matches!(e, AuthError::Invalid(_) | AuthError::Missing) {
                return Err(format!("refused as {e:?}, not as an invalid token"));
            }
            let out = rejected(&ApiError::from(e), &[Code::Unauthorized])?;
            match expect {
                None => Ok(out),
                Some(_) => Err("a valid token was refused".to_owned()),
            }
        }
    }
}

async fn body_as<T: DeserializeOwned>(req: Request<Body>) -> Result<(), ApiError> {
    JsonBody::<T>::from_request(req, &()).await.map(|_| ())
}

/// The HTTP routes' JSON bodies, through the extractor the routes use: taken, or
/// `bad_request`, or `too_large` past the body limit.
pub fn http_body(case: &BodyCase) -> Checked {
    let mut req = Request::builder().method("POST").uri("/");
    if case.json {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Body::from(case.body.clone()))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let decoded = match case.route {
        BodyRoute::Message => body_as::<SendBody>(req).now_or_never(),
        BodyRoute::Mark => body_as::<MarkBody>(req).now_or_never(),
        BodyRoute::Group => body_as::<GroupBody>(req).now_or_never(),
        BodyRoute::Member => body_as::<MemberBody>(req).now_or_never(),
        BodyRoute::Push => body_as::<PushBody>(req).now_or_never(),
        BodyRoute::DevLogin => body_as::<DevLogin>(req).now_or_never(),
    };
    match decoded {
        None => Err("decoding a body in memory did not finish at once".to_owned()),
        Some(Ok(())) => Ok(Outcome::Accepted),
        Some(Err(e)) => rejected(&e, &[Code::BadRequest, Code::TooLarge]),
    }
}

/// The bytes a client wrote, read by the server role of tungstenite; what it answers
/// goes nowhere.
struct Wire<'a> {
    input: Cursor<&'a [u8]>,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The WebSocket settings the server upgrades with (`http::ws_upgrade`).
pub fn server_ws_config() -> WebSocketConfig {
    let c = chat_server::Config::new("fuzz");
    let mut ws = WebSocketConfig::default();
    ws.read_buffer_size = c.ws_read_buffer_bytes;
    ws.write_buffer_size = c.ws_write_buffer_bytes;
    ws.max_message_size = Some(c.max_frame_bytes);
    ws.max_frame_size = Some(c.max_frame_bytes);
    ws
}

/// The frame decoder: bytes on an open WebSocket, decoded by tungstenite with the
/// server's settings and answered as a session answers them (text through the JSON
/// frame parser, binary with `bad_request`, a read error with the session's close
/// code). The outcome is the connection's end (a close code) if the bytes close it,
/// else the last rejection, else accepted.
pub fn ws_frames(bytes: &[u8]) -> Checked {
    let wire = Wire {
        input: Cursor::new(bytes),
    };
    let mut ws = WebSocket::from_raw_socket(wire, Role::Server, Some(server_ws_config()));
    let mut outcome = Outcome::Accepted;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                if let Err(e) = client_frame(t.as_str()).map(|o| {
                    if o != Outcome::Accepted {
                        outcome = o;
                    }
                }) {
                    return Err(format!("text frame: {e}"));
                }
            }
            Ok(Message::Binary(_)) => outcome = Outcome::Rejected("bad_request"),
            // The client closed: the server answers with the normal close.
            Ok(Message::Close(_)) => return Ok(Outcome::Closed(1000)),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            // The bytes ran out with the connection still open.
            Err(tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                return Ok(outcome);
            }
            Err(e) => {
                let shown = e.to_string();
                let code = read_error_close_code(axum::Error::new(e));
                return if INPUT_CLOSE_CODES.contains(&code) {
                    Ok(Outcome::Closed(code))
                } else {
                    Err(format!("closed with {code} on {shown}"))
                };
            }
        }
    }
}
