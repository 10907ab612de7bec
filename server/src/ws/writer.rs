//! The writer of a WebSocket session: drains the device's bounded queue, writes answers
//! as they come and live `msg` frames in inbox order ([`Reorder`]), and reads from the
//! store what the live stream is missing: a position still absent after a short wait (a
//! gap), or everything past the last position written when asked to catch up (cluster
//! mode: a relay may have been lost).
//!
//! A read from the store must not bring this device's own sends back as `msg` (they are
//! answered with `sent`): it only runs while none of the device's sends is under way, and
//! is used only if none began while it ran ([`OwnSends`]), so every own position it
//! returns has been noted by then.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;

use super::reorder::Reorder;
use super::{CLOSE_INTERNAL, CLOSE_NORMAL, close_message, text_message};
use crate::hub::{CLOSE_OVERFLOW, CloseSignal, Outbound, OwnSends, queue};
use crate::service::{Service, msg_frame};

/// How long the writer tries to deliver a close frame before dropping the connection.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames written between two flushes at most: under load many frames share one write
/// to the socket, when idle each goes out at once.
const MAX_FRAMES_PER_FLUSH: usize = 256;
/// Inbox positions a catch-up reads at most; a device further behind is closed (1013)
/// to reconnect and `sync`.
const MAX_CATCH_UP: u64 = 1000;

/// What the stream reads from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refill {
    /// The missing positions before the first early arrival.
    Gap,
    /// Everything past the last position written, up to the inbox head.
    CatchUp,
}

/// One device's writer.
pub(super) struct Writer {
    pub sink: SplitSink<WebSocket, Message>,
    pub rx: queue::Receiver<Outbound>,
    pub close: Arc<CloseSignal>,
    pub order: Reorder,
    pub svc: Arc<Service>,
    pub user: u64,
    pub own: Arc<OwnSends>,
}

impl Writer {
    /// Writes until the connection closes, then sends the close frame. Not an `async fn`:
    /// that would keep the writer twice in the task (the argument and its binding), in
    /// every idle connection.
    #[allow(clippy::manual_async_fn)]
    pub fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let code = self.serve().await;
            if code == CLOSE_OVERFLOW {
                self.svc.overflow_closed();
            }
            // A device cut off for not reading may still read later: give its close
            // frame time to get through the full socket before dropping the connection.
            let sink = &mut self.sink;
            let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, sink.send(close_message(code))).await;
            let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, sink.close()).await;
        }
    }

    /// The loop; returns the close code.
    async fn serve(&mut self) -> u16 {
        let gap_wait = self.svc.config().gap_wait;
        let mut gap_deadline: Option<tokio::time::Instant> = None;
        let mut refill: Option<Refill> = None;
        loop {
            let first = tokio::select! {
                biased;
                code = self.close.requested() => return code,
                item = self.rx.recv() => match item {
                    Some(item) => Some(item),
                    None => return CLOSE_NORMAL,
                },
                () = sleep_until(gap_deadline) => None,
            };
            if first.is_none() {
                // A position stayed missing: read it from the store.
                gap_deadline = None;
                refill = refill.or(Some(Refill::Gap));
            }
            // Take whatever else is queued, write it all, then flush once.
            let mut item = first;
            let mut written = 0;
            loop {
                match item.take() {
                    Some(Outbound::Frame(frame)) => {
                        if let Err(code) = self.feed(text_message(frame)).await {
                            return code;
                        }
                        written += 1;
                    }
                    Some(Outbound::Inbox { useq, frame }) => self.order.push(useq, Some(frame)),
                    Some(Outbound::Own { useq }) => self.order.push(useq, None),
                    Some(Outbound::CatchUp) => refill = Some(Refill::CatchUp),
                    None => {}
                }
                match self.write_ready().await {
                    Ok(n) => written += n,
                    Err(code) => return code,
                }
                if written >= MAX_FRAMES_PER_FLUSH {
                    break;
                }
                match self.rx.try_recv() {
                    Some(next) => item = Some(next),
                    None => break,
                }
            }
            if let Some(what) = refill
                && let Some(begun) = self.own.quiet()
            {
                match Box::pin(self.refill(what, begun)).await {
                    Ok(true) => refill = None,
                    Ok(false) => {} // a send began meanwhile: again once it is answered
                    Err(code) => return code,
                }
                match self.write_ready().await {
                    Ok(n) => written += n,
                    Err(code) => return code,
                }
            }
            if written > 0 {
                let flushed = tokio::select! {
                    r = self.sink.flush() => r.map_err(|_| CLOSE_NORMAL),
                    code = self.close.requested() => Err(code),
                };
                if let Err(code) = flushed {
                    return code;
                }
            }
            gap_deadline = match (self.order.gap(), gap_deadline) {
                (None, _) => None,
                (Some(_), Some(d)) => Some(d),
                (Some(_), None) => Some(tokio::time::Instant::now() + gap_wait),
            };
        }
    }

    /// Queues a frame for writing, with a way out: a close request abandons a write the
    /// peer does not read. The sink writes to the socket by itself once its buffer is
    /// full.
    async fn feed(&mut self, msg: Message) -> Result<(), u16> {
        tokio::select! {
            r = self.sink.feed(msg) => r.map_err(|_| CLOSE_NORMAL),
            code = self.close.requested() => Err(code),
        }
    }

    /// Writes the live positions that are next in order; returns how many frames.
    async fn write_ready(&mut self) -> Result<usize, u16> {
        let mut written = 0;
        let mut passed_own = false;
        while let Some(next) = self.order.pop() {
            let Some(frame) = next else {
                passed_own = true;
                continue;
            };
            self.feed(text_message(frame)).await?;
            self.svc.delivered_one();
            written += 1;
        }
        if passed_own {
            self.own.passed(self.order.next());
        }
        Ok(written)
    }

    /// Reads what `what` asks for from the store into the stream. `begun` is the number
    /// of this device's sends begun, none under way; false when one began meanwhile (the
    /// read is then not used).
    async fn refill(&mut self, what: Refill, begun: u64) -> Result<bool, u16> {
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        // Boxed: a timer is large and a gap is rare; inline it would sit in every idle
        // connection's task.
        Some(d) => Box::pin(tokio::time::sleep_until(d)).await,
        None => std::future::pending().await,
    }
}
