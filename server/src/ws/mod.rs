//! One WebSocket session: a reader that answers the device's frames in order (so a
//! device's own sends are sequenced in the order it sent them), and a writer that drains
//! the device's bounded queue, putting live `msg` frames in inbox order.

mod pipeline;
mod reorder;
mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::future::{BoxFuture, Either, Ready, ready};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

use self::reorder::Reorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::hub::{CloseSignal, Outbound, queue};
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

/// Runs a session until either side closes it.
///
/// The socket is split before the session's future is made, so that the future holds
/// the two halves and not also the moved-from socket (about 370 bytes in every idle
/// connection's task).
pub fn session(
    socket: WebSocket,
    svc: Arc<Service>,
    who: Identity,
) -> impl std::future::Future<Output = ()> + Send {
    let (sink, stream) = socket.split();
    run(sink, stream, svc, who)
}

async fn run(
    mut sink: SplitSink<WebSocket, Message>,
    stream: SplitStream<WebSocket>,
    svc: Arc<Service>,
    who: Identity,
) {
    let (device, rx) = svc.attach(&who);
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

/// Decodes one text frame: the client frame, or the `bad_request` error that answers it
/// with the offending frame's `id` (when it had one) as `ref`. Public, and pure, so that
/// the hostile-input tests and the fuzz bench drive exactly what a session does with a
/// text frame.
pub fn decode_text(text: &str) -> Result<ClientFrame, (ApiError, Option<serde_json::Value>)> {
    serde_json::from_str::<ClientFrame>(text).map_err(|e| {
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
                close.close(read_error_close_code(e));
                return;
            }
        };
        let out = match decode_text(&text) {
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
            Err(rejected) => Err(rejected),
        };
        if !reply(tx, out, &mut budget, close).await {
            return;
        }
    }
}

/// Whether the connection goes on once an answer is queued: at once when the device's
/// queue had room (as nearly always), or after waiting for room in a boxed future.
/// Answering is not an `async fn`: its state inline would sit in every idle
/// connection's task, for a wait that is rare.
type Replied<'a> = Either<Ready<bool>, BoxFuture<'a, bool>>;

/// Sends a frame's answer, if it has one; false when the connection must end.
fn reply<'a>(
    tx: &'a queue::Sender<Outbound>,
    out: Handled,
    budget: &'a mut ErrorBudget,
    close: &'a CloseSignal,
) -> Replied<'a> {
    match out {
        Ok(Some(text)) => queue_frame(tx, Outbound::Frame(text)),
        Ok(None) => Either::Left(ready(true)),
        Err((e, reference)) => reply_error(tx, &e, reference.as_ref(), budget, close),
    }
}

/// Sends an `error` frame; false when the connection must end (budget spent or writer
/// gone).
fn reply_error<'a>(
    tx: &'a queue::Sender<Outbound>,
    e: &ApiError,
    reference: Option<&serde_json::Value>,
    budget: &'a mut ErrorBudget,
    close: &'a CloseSignal,
) -> Replied<'a> {
    let text = ServerFrame::Error {
        code: e.code.as_str(),
        message: &e.message,
        reference,
    }
    .to_json();
    let mut spend = move |sent: bool| {
        if !sent {
            return false;
        }
        if !budget.spend() {
            close.close(CLOSE_POLICY);
            return false;
        }
        true
    };
    match queue_frame(tx, Outbound::Frame(text.into())) {
        Either::Left(sent) => Either::Left(ready(spend(sent.into_inner()))),
        Either::Right(wait) => Either::Right(Box::pin(async move { spend(wait.await) })),
    }
}

/// Queues an answer for the device; false when its writer is gone. A full queue is
/// waited on: the device's own reading waits for its writing.
fn queue_frame(tx: &queue::Sender<Outbound>, item: Outbound) -> Replied<'_> {
    match tx.try_send(item) {
        Ok(()) => Either::Left(ready(true)),
        Err(queue::Refused::Closed(_)) => Either::Left(ready(false)),
        Err(queue::Refused::Full(item)) => {
            Either::Right(Box::pin(async move { tx.send(item).await.is_ok() }))
        }
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
