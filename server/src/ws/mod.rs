//! One WebSocket session: it answers the device's frames in order (so a device's own
//! sends are sequenced in the order it sent them) and drains the device's bounded queue,
//! putting live `msg` frames in inbox order, all in one task.

mod conn;
mod pipeline;
mod reorder;
mod session;

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};

use crate::auth::Identity;
use crate::error::ApiError;
use crate::protocol::{ClientFrame, Encoded, FrameRef, ServerFrame};
use crate::service::{Device, SendRequest, Service};

/// Normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// The server is going away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// A frame that breaks the WebSocket protocol (unmasked, reserved bits or opcodes).
pub const CLOSE_PROTOCOL: u16 = 1002;
/// A text frame that is not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Too many bad frames.
pub const CLOSE_POLICY: u16 = 1008;
/// A frame over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The server failed (the store could not be read for the live stream).
pub const CLOSE_INTERNAL: u16 = 1011;

/// Runs a session until either side closes it, in one task ([`session::run`]).
///
/// The device is attached and the socket put in its [`conn::Conn`] before the session's
/// future is made, so that the future holds the connection once, not also the
/// moved-from socket (about 370 bytes in every idle connection's task).
pub fn session(
    socket: WebSocket,
    svc: Arc<Service>,
    who: Identity,
) -> impl std::future::Future<Output = ()> + Send {
    let (device, rx) = svc.attach(&who);
    let own = device.handle.own.clone();
    let conn = conn::Conn::new(socket, rx, svc.clone(), who.user, own);
    session::run(conn, device, svc, who)
}

/// An encoded frame as a WebSocket text message. [`Encoded`] is only ever built from a
/// `String`, so the UTF-8 check cannot fail; were it to, the frame would go out as a
/// `ping` the client ignores rather than as broken text.
fn text_message(frame: Encoded) -> Message {
    match Utf8Bytes::try_from(frame.into_bytes()) {
        Ok(text) => Message::Text(text),
        Err(e) => {
            tracing::error!(error = %e, "an encoded frame is not UTF-8: dropped");
            Message::Ping(Default::default())
        }
    }
}

fn close_message(code: u16) -> Message {
    let reason = match code {
        CLOSE_GOING_AWAY => "server shutting down",
        CLOSE_INVALID_DATA => "text frames must be UTF-8",
        CLOSE_POLICY => "too many bad frames",
        CLOSE_TOO_BIG => "frame too large",
        crate::hub::CLOSE_OVERFLOW => "outgoing queue overflow: reconnect and sync",
        CLOSE_INTERNAL => "internal error",
        _ => "",
    };
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Decodes one text frame: the client frame, or the `bad_request` error that answers it
/// with the offending frame's `id` (when it had one) as `ref`. Public, and pure, so that
/// the hostile-input tests and the fuzz bench drive exactly what a session does with a
/// text frame.
pub fn decode_text(text: &str) -> Result<ClientFrame, (ApiError, Option<serde_json::Value>)> {
    ClientFrame::decode(text).map_err(|e| {
        // Only an object has an `id`: serde would also read `[1]` as a `FrameRef` whose
        // `id` is its first element.
        let object = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{');
        let reference = object
            .then(|| serde_json::from_str::<FrameRef>(text).ok())
            .flatten()
            .and_then(|r| r.id);
        (
            ApiError::bad_request(format!("malformed frame: {e}")),
            reference,
        )
    })
}

/// The code a session closes with when reading its socket failed: 1009 for a frame or
/// message over the size limit, 1007 for text that is not UTF-8, 1000 for anything else
/// (the peer broke the WebSocket protocol or went away). Public for the same reason as
/// [`decode_text`]: the fuzz bench feeds hostile bytes to tungstenite and maps its errors
/// here.
pub fn read_error_close_code(e: axum::Error) -> u16 {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) if matches!(*e, tungstenite::Error::Capacity(_)) => CLOSE_TOO_BIG,
        Ok(e) if matches!(*e, tungstenite::Error::Utf8(_)) => CLOSE_INVALID_DATA,
        Ok(e) if matches!(*e, tungstenite::Error::Protocol(_)) => CLOSE_PROTOCOL,
        _ => CLOSE_NORMAL,
    }
}

pub(super) type Handled = Result<Option<Encoded>, (ApiError, Option<serde_json::Value>)>;

/// Answers one frame: the text to send back, if any, or the error with the frame's id.
async fn handle(svc: &Service, who: &Identity, me: &Device, frame: ClientFrame) -> Handled {
    let no_ref = |e: ApiError| (e, None);
    let text = match frame {
        // The read loop hands sends to the pipeline itself, with those queued behind them.
        ClientFrame::Send { id, to, body } => {
            let sends = vec![SendRequest { id, to, body }];
            return pipeline::answer(svc, who, me, sends)
                .await
                .pop()
                .unwrap_or(Ok(None));
        }
        ClientFrame::Ack { conv, seq } => {
            svc.ack(who, conv, seq).await.map_err(no_ref)?;
            return Ok(None);
        }
        ClientFrame::Read { conv, seq } => {
            svc.read(who, conv, seq).await.map_err(no_ref)?;
            return Ok(None);
        }
        ClientFrame::Typing { conv } => {
            svc.typing(who, conv).await.map_err(no_ref)?;
            return Ok(None);
        }
        ClientFrame::PresenceSub { users } => {
            svc.subscribe_presence(me, users).await.map_err(no_ref)?;
            return Ok(None);
        }
        ClientFrame::Sync { after, limit } => {
            let out = svc.sync(who, after, limit).await.map_err(no_ref)?;
            ServerFrame::Sync(&out).to_json()
        }
        ClientFrame::History {
            conv,
            before,
            limit,
        } => {
            let out = svc
                .history(who, conv, before, limit)
                .await
                .map_err(no_ref)?;
            ServerFrame::History(&out).to_json()
        }
        ClientFrame::Ping {} => ServerFrame::Pong {}.to_json(),
    };
    Ok(Some(text.into()))
}
