//! The loop of one WebSocket session, in one task: it reads the device's frames and
//! answers them in order (so a device's own sends are sequenced in the order it sent
//! them), and meanwhile writes what the device's queue brings.
//!
//! One task per connection, not a reader and a writer: the socket needs no lock between
//! two halves, an answer goes to the socket without a hop through the queue and a second
//! task's wake-up, and an idle connection keeps one task's state instead of two (with
//! the split's shared lock).

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::conn::{Closed, Conn, sleep_until};
use super::pipeline::{self, Next};
use super::{CLOSE_INTERNAL, CLOSE_NORMAL, CLOSE_POLICY, Handled};
use super::{decode_text, handle, read_error_close_code};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::hub::Outbound;
use crate::protocol::{ClientFrame, ServerFrame};
use crate::service::{Device, SendRequest, Service};

/// The answers to a frame (several for pipelined sends), once the service has them.
type Op<'a> = BoxFuture<'a, Vec<Handled>>;

/// Runs a session until either side closes it. `conn` and `device` are made before this
/// future (see [`super::session`]): what a future is given stays in it for its whole life.
/// Not an `async fn`: that would keep them twice in the task (the argument and its
/// binding), in every idle connection.
#[allow(clippy::manual_async_fn)]
pub(super) fn run(
    mut conn: Conn,
    device: Device,
    svc: Arc<Service>,
    who: Identity,
) -> impl Future<Output = ()> + Send {
    async move {
        // Boxed, as every await here but the loop's: a future's state is as large as its
        // largest await, and only the loop's stays for the connection's life.
        match Box::pin(svc.inbox_head(who.user)).await {
            Ok(head) => conn.begin_after(head),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the inbox head: closing");
                drop(device);
                Box::pin(conn.finish(CLOSE_INTERNAL)).await;
                return;
            }
        }
        let code = serve(&mut conn, &svc, &who, &device).await;
        // Detached before the close frame: nothing new is queued for a closing device.
        drop(device);
        Box::pin(conn.finish(code)).await;
    }
}

/// What woke the session.
enum Event {
    /// The service answered the frame in hand.
    Answered(Vec<Handled>),
    /// The device's queue brought an item (`None`: it ended).
    Queued(Option<Outbound>),
    /// The socket brought a frame.
    Frame(Next),
    /// A missing live position's wait is over.
    Gap,
}

/// The session's loop; returns the close code. A frame's operation is never abandoned
/// half-way: a send whose message is stored still reaches its recipients before the
/// session ends.
async fn serve(conn: &mut Conn, svc: &Service, who: &Identity, me: &Device) -> u16 {
    let closed = me.close().requested();
    tokio::pin!(closed);
    let mut closed: Closed<'_> = closed;
    let mut session = Frames {
        svc,
        who,
        me,
        budget: ErrorBudget::new(svc.config().errors_per_minute),
        op: None,
        carried: None,
    };
    let code = loop {
        let event = tokio::select! {
            code = closed.as_mut() => break code,
            answers = in_flight(&mut session.op) => Event::Answered(answers),
            item = conn.rx.recv() => Event::Queued(item),
            next = conn.socket.next(), if session.op.is_none() => Event::Frame(next),
            () = sleep_until(conn.gap_deadline) => Event::Gap,
        };
        let handled = match event {
            Event::Answered(answers) => {
                session.op = None;
                Box::pin(session.answered(conn, answers, &mut closed)).await
            }
            // Boxed, as every handler: only the wait for an event stays in an idle
            // connection's task, not the largest of the handlers' states.
            Event::Queued(Some(item)) => Box::pin(conn.take_queued(item, &mut closed)).await,
            Event::Queued(None) => Err(CLOSE_NORMAL),
            Event::Frame(next) => Box::pin(session.frame(conn, next, &mut closed)).await,
            Event::Gap => {
                conn.gap_expired();
                Ok(())
            }
        };
        // Not `handled.and(settle)`: a handler that failed may have seen the close
        // signal resolve, and a resolved signal must not be polled again.
        if let Err(code) = handled {
            break code;
        }
        if let Err(code) = conn.settle(&mut closed).await {
            break code;
        }
    };
    if let Some(op) = session.op.take() {
        op.await;
    }
    code
}

/// Resolves with the answers of the operation in hand; pending while there is none.
fn in_flight<'o, 'a>(op: &'o mut Option<Op<'a>>) -> impl Future<Output = Vec<Handled>> + 'o {
    std::future::poll_fn(move |cx| match op {
        Some(f) => f.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

/// The reading side of a session: the frame whose answer it waits for, the frame read
/// after pipelined sends (answered next), and the budget of bad frames.
struct Frames<'a> {
    svc: &'a Service,
    who: &'a Identity,
    me: &'a Device,
    budget: ErrorBudget,
    op: Option<Op<'a>>,
    carried: Option<Next>,
}

impl<'a> Frames<'a> {
    /// Handles a frame read from the socket: an operation begins, or an error answers it.
    async fn frame(
        &mut self,
        conn: &mut Conn,
        next: Next,
        closed: &mut Closed<'_>,
    ) -> Result<(), u16> {
        let text = match next {
            None | Some(Ok(Message::Close(_))) => return Err(CLOSE_NORMAL),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                let e = ApiError::bad_request("binary frames are not part of the protocol");
                return self.reject(conn, &e, None, closed).await;
            }
            Some(Ok(_)) => return Ok(()), // ping/pong are answered by the WebSocket layer
            Some(Err(e)) => return Err(read_error_close_code(e)),
        };
        let (svc, who, me) = (self.svc, self.who, self.me);
        match decode_text(&text) {
            Ok(ClientFrame::Send { id, to, body }) => {
                let first = SendRequest { id, to, body };
                let (sends, next) = pipeline::gather(first, &mut conn.socket);
                self.carried = next;
                self.op = Some(Box::pin(pipeline::answer(svc, who, me, sends)));
                Ok(())
            }
            // Boxed: the operations' state is large and only lives while a frame is
            // handled; inline it would sit in every idle connection's task.
            Ok(frame) => {
                self.op = Some(Box::pin(
                    async move { vec![handle(svc, who, me, frame).await] },
                ));
                Ok(())
            }
            Err((e, reference)) => self.reject(conn, &e, reference.as_ref(), closed).await,
        }
    }

    /// Writes the answers of the operation that ended, after what the device's queue
    /// already holds (as they would have been queued behind it), then handles the frame
    /// read after pipelined sends, if there was one.
    async fn answered(
        &mut self,
        conn: &mut Conn,
        answers: Vec<Handled>,
        closed: &mut Closed<'_>,
    ) -> Result<(), u16> {
        if let Some(item) = conn.rx.try_recv() {
            conn.take_queued(item, closed).await?;
        }
        for answer in answers {
            match answer {
                Ok(Some(text)) => conn.write(text, closed).await?,
                Ok(None) => {}
                Err((e, reference)) => self.reject(conn, &e, reference.as_ref(), closed).await?,
            }
        }
        match self.carried.take() {
            Some(next) => self.frame(conn, next, closed).await,
            None => Ok(()),
        }
    }

    /// Answers a bad frame with an `error` frame; the connection ends once this minute's
    /// budget of bad frames is spent.
    async fn reject(
        &mut self,
        conn: &mut Conn,
        e: &ApiError,
        reference: Option<&serde_json::Value>,
        closed: &mut Closed<'_>,
    ) -> Result<(), u16> {
        let text = ServerFrame::Error {
            code: e.code.as_str(),
            message: &e.message,
            reference,
        }
        .to_json();
        conn.write(text.into(), closed).await?;
        if self.budget.spend() {
            Ok(())
        } else {
            Err(CLOSE_POLICY)
        }
    }
}

/// Counts a connection's errors over a sliding minute.
struct ErrorBudget {
    window_start: Instant,
    count: u32,
    max: u32,
}

impl ErrorBudget {
    fn new(max: u32) -> Self {
        ErrorBudget {
            window_start: Instant::now(),
            count: 0,
            max,
        }
    }

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
