//! A user's inbox: `sync` pages of everything sent to them after a position, the long
//! poll that waits for the next entry, and their conversation list.

use std::time::Duration;

use super::{ConvOut, MAX_SYNC_LIMIT, SYNC_PAGE_BYTES, Service, limit};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::protocol::{MsgOut, SyncOut};

impl Service {
    /// `sync`: the caller's inbox entries after `after`, oldest first.
    pub async fn sync(
        &self,
        who: &Identity,
        after: u64,
        limit_given: Option<u64>,
    ) -> Result<SyncOut, ApiError> {
        let n = limit(limit_given, 100, MAX_SYNC_LIMIT, "limit")?;
        let mut items = self.store.inbox(who.user, after, n + 1).await?;
        let mut more = items.len() > n;
        items.truncate(n);
        // Keep one answer a reasonable frame: past SYNC_PAGE_BYTES of bodies the page ends
        // early and `more` says to continue from `next`.
        let mut bytes = 0;
        if let Some(cut) = items.iter().position(|i| {
            bytes += i.msg.body.len();
            bytes > SYNC_PAGE_BYTES
        }) {
            items.truncate(cut.max(1));
            more = true;
        }
        Ok(SyncOut {
            next: items.last().map_or(after, |i| i.useq),
            items: items.iter().map(MsgOut::from).collect(),
            more,
        })
    }

    /// Long-poll `sync`: answers at once when entries exist, else when the first arrives,
    /// else after `wait` with no items.
    pub async fn sync_wait(
        &self,
        who: &Identity,
        after: u64,
        limit_given: Option<u64>,
        wait: Duration,
    ) -> Result<SyncOut, ApiError> {
        if wait.is_zero() {
            return self.sync(who, after, limit_given).await;
        }
        let deadline = tokio::time::Instant::now() + wait;
        // A long poll in progress counts as being online.
        let _hold = self.presence.http_hold(who.user);
        let notifier = self.hub.inbox_notifier(who.user);
        let mut shutdown = self.shutdown.clone();
        let result = loop {
            let notified = notifier.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let out = match self.sync(who, after, limit_given).await {
                Ok(out) => out,
                Err(e) => break Err(e),
            };
            if !out.items.is_empty() || *shutdown.borrow() {
                break Ok(out);
            }
            tokio::select! {
                () = &mut notified => continue,
                () = tokio::time::sleep_until(deadline) => break Ok(out),
                _ = shutdown.changed() => break Ok(out),
            }
        };
        drop(notifier);
        self.hub.release_notifier(who.user);
        result
    }

    /// The caller's conversations, most recent activity first.
    pub async fn conversations(
        &self,
        who: &Identity,
        limit_given: Option<u64>,
    ) -> Result<Vec<ConvOut>, ApiError> {
        let n = limit(limit_given, 50, MAX_SYNC_LIMIT, "limit")?;
        Ok(self
            .store
            .conversations(who.user, n)
            .await?
            .into_iter()
            .map(|c| ConvOut {
                conv: c.conv.to_string(),
                last_seq: c.last_seq,
                last_ts: c.last_ts,
                unread: c.unread,
            })
            .collect())
    }
}
