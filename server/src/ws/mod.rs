//! One WebSocket session: a reader that answers the device's frames in order (so a
//! device's own sends are sequenced in the order it sent them), and a writer that drains
//! the device's bounded queue, putting live `msg` frames in inbox order.

mod pipeline;
mod reorder;
mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use self::reorder::Reorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::hub::{CloseSignal, Outbound};
use crate::protocol::{ClientFrame, Encoded, FrameRef, ServerFrame};
use crate::service::{Device, SendRequest, Service};

/// Normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// The server is going away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// A text frame that is not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Too many bad frames.
pub const CLOSE_POLICY: u16 = 1008;
/// A frame over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The server failed (the store could not be read for the live stream).
pub const CLOSE_INTERNAL: u16 = 1011;

/// Runs a session until either side closes it.
pub async fn session(socket: WebSocket, svc: Arc<Service>, who: Identity) {
    let (device, rx) = svc.attach(&who);
    let (mut sink, stream) = socket.split();
    let head = match svc.inbox_head(who.user).await {
        Ok(head) => head,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the inbox head: closing");
            drop(device);
            let _ = sink.send(close_message(CLOSE_INTERNAL)).await;
            return;
        }
    };
    let close = device.close().clone();
    let writer = tokio::spawn(
        writer::Writer {
            sink,
            rx,
            close: close.clone(),
            order: Reorder::new(head),
            svc: svc.clone(),
            user: who.user,
            own: device.handle.own.clone(),
        }
        .run(),
    );
    read_loop(stream, &svc, &who, &device).await;
    // Detached before the writer finishes: nothing new is queued for a closing device.
    drop(device);
    close.close(CLOSE_NORMAL);
    let _ = writer.await;
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

/// Counts a connection's errors over a sliding minute.
struct ErrorBudget {
    window_start: Instant,
    count: u32,
    max: u32,
}

impl ErrorBudget {
    /// Records one error; false when the budget for this minute is spent.
    fn spend(&mut self) -> bool {
        if self.window_start.elapsed() >= Duration::from_secs(60) {
            self.window_start = Instant::now();
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.max
    }
}

async fn read_loop(mut stream: SplitStream<WebSocket>, svc: &Service, who: &Identity, me: &Device) {
    let tx = &me.handle.tx;
    let close = &*me.handle.close;
    let mut budget = ErrorBudget {
        window_start: Instant::now(),
        count: 0,
        max: svc.config().errors_per_minute,
    };
    let mut carried: Option<pipeline::Next> = None;
    loop {
        let next = match carried.take() {
            Some(next) => next,
            None => tokio::select! {
                next = stream.next() => next,
                _ = close.requested() => return,
            },
        };
        let text = match next {
            None | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                let e = ApiError::bad_request("binary frames are not part of the protocol");
                if !reply_error(tx, &e, None, &mut budget, close).await {
                    return;
                }
                continue;
            }
            Some(Ok(_)) => continue, // ping/pong are answered by the WebSocket layer
            Some(Err(e)) => {
                let code = match e.into_inner().downcast::<tungstenite::Error>() {
                    Ok(e) if matches!(*e, tungstenite::Error::Capacity(_)) => CLOSE_TOO_BIG,
                    Ok(e) if matches!(*e, tungstenite::Error::Utf8(_)) => CLOSE_INVALID_DATA,
                    _ => CLOSE_NORMAL,
                };
                close.close(code);
                return;
            }
        };
        let out = match serde_json::from_str::<ClientFrame>(&text) {
            Ok(ClientFrame::Send { id, to, body }) => {
                let (sends, next) = pipeline::gather(SendRequest { id, to, body }, &mut stream);
                carried = next;
                for out in Box::pin(pipeline::answer(svc, who, me, sends)).await {
                    if !reply(tx, out, &mut budget, close).await {
                        return;
                    }
                }
                continue;
            }
            // Boxed: the operations' state is large and only lives while a frame is
            // handled; inline it would sit in every idle connection's task.
            Ok(frame) => Box::pin(handle(svc, who, me, frame)).await,
            Err(e) => {
                let reference = serde_json::from_str::<FrameRef>(&text)
                    .ok()
                    .and_then(|r| r.id);
                Err((
                    ApiError::bad_request(format!("malformed frame: {e}")),
                    reference,
                ))
            }
        };
        if !reply(tx, out, &mut budget, close).await {
            return;
        }
    }
}

/// Sends a frame's answer, if it has one; false when the connection must end.
async fn reply(
    tx: &mpsc::Sender<Outbound>,
    out: Handled,
    budget: &mut ErrorBudget,
    close: &CloseSignal,
) -> bool {
    match out {
        Ok(Some(text)) => tx.send(Outbound::Frame(text)).await.is_ok(),
        Ok(None) => true,
        Err((e, reference)) => reply_error(tx, &e, reference.as_ref(), budget, close).await,
    }
}

/// Sends an `error` frame; false when the connection must end (budget spent or writer
/// gone).
async fn reply_error(
    tx: &mpsc::Sender<Outbound>,
    e: &ApiError,
    reference: Option<&serde_json::Value>,
    budget: &mut ErrorBudget,
    close: &CloseSignal,
) -> bool {
    let text = ServerFrame::Error {
        code: e.code.as_str(),
        message: &e.message,
        reference,
    }
    .to_json();
    if tx.send(Outbound::Frame(text.into())).await.is_err() {
        return false;
    }
    if !budget.spend() {
        close.close(CLOSE_POLICY);
        return false;
    }
    true
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
