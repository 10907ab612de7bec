//! A session's socket and the device's live stream on it: answers are written as they
//! come, live `msg` frames in inbox order ([`Reorder`]), and what the live stream is
//! missing is read from the store: a position still absent after a short wait (a gap), or
//! everything past the last position written when asked to catch up (cluster mode: a relay
//! may have been lost).
//!
//! A read from the store must not bring this device's own sends back as `msg` (they are
//! answered with `sent`): it only runs while none of the device's sends is under way, and
//! is used only if none began while it ran ([`OwnSends`]), so every own position it
//! returns has been noted by then.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;

use super::reorder::Reorder;
use super::{CLOSE_INTERNAL, CLOSE_NORMAL, close_message, text_message};
use crate::hub::{CLOSE_OVERFLOW, Outbound, OwnSends, queue};
use crate::protocol::Encoded;
use crate::service::{Service, msg_frame};

/// How long a closing session tries to deliver its close frame before dropping the
/// connection.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames taken from the queue between two flushes at most: under load many frames share
/// one write to the socket, when idle each goes out at once.
const MAX_FRAMES_PER_FLUSH: usize = 256;
/// Inbox positions a catch-up reads at most; a device further behind is closed (1013)
/// to reconnect and `sync`.
const MAX_CATCH_UP: u64 = 1000;

/// Resolves with the close code once a close is requested ([`crate::hub::CloseSignal`]).
/// Made once per session and polled wherever the session waits, so that waiting on it
/// costs no new registration per frame. Once it has resolved the session ends: every
/// method that polls it returns the code as an error, and nothing polls it again.
pub(super) type Closed<'a> = Pin<&'a mut (dyn Future<Output = u16> + Send + 'a)>;

/// What the stream reads from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refill {
    /// The missing positions before the first early arrival.
    Gap,
    /// Everything past the last position written, up to the inbox head.
    CatchUp,
}

/// One device's socket, read and written by its session alone (one task, no lock between
/// a reading and a writing half), and its live stream.
pub(super) struct Conn {
    pub(super) socket: WebSocket,
    pub(super) rx: queue::Receiver<Outbound>,
    order: Reorder,
    svc: Arc<Service>,
    user: u64,
    own: Arc<OwnSends>,
    /// What the stream still has to read from the store.
    refill: Option<Refill>,
    /// When a position still missing is read from the store.
    pub(super) gap_deadline: Option<tokio::time::Instant>,
    /// Frames written since the last flush.
    written: usize,
}

impl Conn {
    /// A connection whose live stream begins once [`Conn::begin_after`] says where.
    pub(super) fn new(
        socket: WebSocket,
        rx: queue::Receiver<Outbound>,
        svc: Arc<Service>,
        user: u64,
        own: Arc<OwnSends>,
    ) -> Self {
        Conn {
            socket,
            rx,
            order: Reorder::new(0),
            svc,
            user,
            own,
            refill: None,
            gap_deadline: None,
            written: 0,
        }
    }

    /// Begins the live stream after inbox position `head`: everything up to the inbox
    /// head at connect time is the client's to fetch with `sync`.
    pub(super) fn begin_after(&mut self, head: u64) {
        self.order = Reorder::new(head);
    }

    /// Takes one item of the device's queue and whatever else is queued behind it, up to
    /// a flush's worth, writing what is ready.
    pub(super) async fn take_queued(
        &mut self,
        first: Outbound,
        closed: &mut Closed<'_>,
    ) -> Result<(), u16> {
        let mut item = Some(first);
        let mut taken = 0;
        while let Some(next) = item {
            self.take(next, closed).await?;
            taken += 1;
            if taken >= MAX_FRAMES_PER_FLUSH {
                break;
            }
            item = self.rx.try_recv();
        }
        Ok(())
    }

    /// Takes one item of the device's queue: an answer or receipt is written at once, a
    /// live position joins the stream (and what is next in order is written).
    async fn take(&mut self, item: Outbound, closed: &mut Closed<'_>) -> Result<(), u16> {
        match item {
            Outbound::Frame(frame) => return self.write(frame, closed).await,
            Outbound::Inbox { useq, frame } => self.order.push(useq, Some(frame)),
            Outbound::Own { useq } => self.order.push(useq, None),
            Outbound::CatchUp => self.refill = Some(Refill::CatchUp),
        }
        self.write_ready(closed).await
    }

    /// A position stayed missing past its wait: read it from the store.
    pub(super) fn gap_expired(&mut self) {
        self.gap_deadline = None;
        self.refill = self.refill.or(Some(Refill::Gap));
    }

    /// Writes one frame (flushed with the others at [`Conn::settle`]).
    pub(super) async fn write(
        &mut self,
        frame: Encoded,
        closed: &mut Closed<'_>,
    ) -> Result<(), u16> {
        self.feed(text_message(frame), closed).await?;
        self.written += 1;
        Ok(())
    }

    /// Ends a round of events: reads from the store what the stream misses (when no send
    /// of the device is under way), flushes what was written and sets the gap's deadline.
    pub(super) async fn settle(&mut self, closed: &mut Closed<'_>) -> Result<(), u16> {
        if self.unsettled() {
            Box::pin(self.flush(closed)).await?;
        }
        self.gap_deadline = match (self.order.gap(), self.gap_deadline) {
            (None, _) => None,
            (Some(_), Some(d)) => Some(d),
            (Some(_), None) => Some(tokio::time::Instant::now() + self.svc.config().gap_wait),
        };
        Ok(())
    }

    /// Whether [`Conn::flush`] has anything to do: frames to flush, or a read from the
    /// store to make now.
    fn unsettled(&self) -> bool {
        self.written > 0 || (self.refill.is_some() && self.own.quiet().is_some())
    }

    /// Reads from the store what the stream misses, if it may now, and flushes what was
    /// written.
    async fn flush(&mut self, closed: &mut Closed<'_>) -> Result<(), u16> {
        if let Some(what) = self.refill
            && let Some(begun) = self.own.quiet()
        {
            if self.read_missing(what, begun).await? {
                self.refill = None;
            } // else a send began meanwhile: again once it is answered
            self.write_ready(closed).await?;
        }
        if self.written > 0 {
            tokio::select! {
                r = self.socket.flush() => r.map_err(|_| CLOSE_NORMAL)?,
                code = closed.as_mut() => return Err(code),
            }
            self.written = 0;
        }
        Ok(())
    }

    /// Sends the close frame and closes the socket, giving a device that does not read
    /// time to take it through its full socket before the connection is dropped.
    pub(super) async fn finish(mut self, code: u16) {
        if code == CLOSE_OVERFLOW {
            self.svc.overflow_closed();
        }
        let socket = &mut self.socket;
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, socket.send(close_message(code))).await;
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, socket.close()).await;
    }

    /// Queues a frame for writing, with a way out: a close request abandons a write the
    /// peer does not read. The socket writes by itself once its buffer is full.
    async fn feed(&mut self, msg: Message, closed: &mut Closed<'_>) -> Result<(), u16> {
        tokio::select! {
            r = self.socket.feed(msg) => r.map_err(|_| CLOSE_NORMAL),
            code = closed.as_mut() => Err(code),
        }
    }

    /// Writes the live positions that are next in order.
    async fn write_ready(&mut self, closed: &mut Closed<'_>) -> Result<(), u16> {
        let mut passed_own = false;
        while let Some(next) = self.order.pop() {
            let Some(frame) = next else {
                passed_own = true;
                continue;
            };
            self.write(frame, closed).await?;
            self.svc.delivered_one();
        }
        if passed_own {
            self.own.passed(self.order.next());
        }
        Ok(())
    }

    /// Reads what `what` asks for from the store into the stream. `begun` is the number
    /// of this device's sends begun, none under way; false when one began meanwhile (the
    /// read is then not used).
    async fn read_missing(&mut self, what: Refill, begun: u64) -> Result<bool, u16> {
        let failed = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, "reading the live stream from the store failed: closing so the device resyncs");
            CLOSE_INTERNAL
        };
        let (from, to) = match what {
            Refill::Gap => match self.order.gap() {
                Some(gap) => gap,
                None => return Ok(true),
            },
            Refill::CatchUp => {
                let head = self.svc.inbox_head(self.user).await.map_err(failed)?;
                let next = self.order.next();
                if head < next {
                    return Ok(true);
                }
                if head - next >= MAX_CATCH_UP {
                    tracing::info!(
                        user = self.user,
                        behind = head - next + 1,
                        "too far behind to catch up live: closing 1013"
                    );
                    return Err(CLOSE_OVERFLOW);
                }
                (next, head + 1)
            }
        };
        let items = self
            .svc
            .inbox_entries(self.user, from - 1, (to - from) as usize)
            .await
            .map_err(failed)?;
        if !self.own.unchanged(begun) {
            return Ok(false);
        }
        for item in &items {
            let frame = (!self.own.is_own(item.useq)).then(|| msg_frame(item));
            self.order.push(item.useq, frame);
        }
        if items.len() < (to - from) as usize {
            tracing::error!(
                user = self.user,
                from,
                to,
                found = items.len(),
                "inbox positions missing in the store"
            );
            self.order.skip_to(to);
        }
        Ok(true)
    }
}

/// Resolves at `deadline`, or never without one.
pub(super) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        // Boxed: a timer is large and a gap is rare; inline it would sit in every idle
        // connection's task.
        Some(d) => Box::pin(tokio::time::sleep_until(d)).await,
        None => std::future::pending().await,
    }
}
