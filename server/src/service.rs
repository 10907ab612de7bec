//! The chat operations, shared by the WebSocket and HTTP front ends: checks (identities,
//! limits, privacy, rate), the store call, then fan-out of what changed to online devices.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use tokio::sync::watch;

use crate::auth::{Auth, AuthError, Identity};
use crate::config::Config;
use crate::error::{ApiError, Code};
use crate::hub::Hub;
use crate::model::{ClientMsgId, ConvId, Target, UserId, now_ms};
use crate::protocol::{HistoryOut, MsgOut, SentOut, ServerFrame, SyncOut};
use crate::store::{AppendRequest, Marker, Store, StoredMessage};

/// Largest `sync` page.
pub const MAX_SYNC_LIMIT: u64 = 1000;
/// Body bytes after which a `sync` page ends early (with `more`).
pub const SYNC_PAGE_BYTES: usize = 1 << 20;
/// Largest `history` page.
pub const MAX_HISTORY_LIMIT: u64 = 200;
/// Longest long poll, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;
/// How far back an ack looks for the senders to notify before notifying everyone.
const RECEIPT_SCAN: u64 = 200;

/// A conversation in the caller's list.
#[derive(Debug, Serialize)]
pub struct ConvOut {
    pub conv: String,
    pub last_seq: u64,
    pub last_ts: u64,
    pub unread: u64,
}

/// The server's shared state: store, online devices, token keys, settings.
pub struct Service {
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    pub auth: Auth,
    pub config: Config,
    limiter: Option<DefaultKeyedRateLimiter<UserId>>,
    shutdown: watch::Receiver<bool>,
}

fn limit(given: Option<u64>, default: u64, max: u64, what: &str) -> Result<usize, ApiError> {
    match given.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n as usize),
        n => Err(ApiError::bad_request(format!(
            "{what} must be between 1 and {max}, got {n}"
        ))),
    }
}

fn frame(f: &ServerFrame<'_>) -> Utf8Bytes {
    Utf8Bytes::from(f.to_json())
}

impl Service {
    /// The service over `store`. `shutdown` turns true when the server stops: long polls
    /// then answer at once.
    pub fn new(
        store: Arc<dyn Store>,
        config: Config,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, AuthError> {
        let limiter = NonZeroU32::new(config.send_rate_per_sec).map(|rate| {
            let burst = NonZeroU32::new(config.send_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Ok(Service {
            store,
            hub: Hub::new(),
            auth: Auth::new(&config.jwt_secret)?,
            config,
            limiter,
            shutdown,
        })
    }

    /// Forgets rate-limit state of users idle long enough to be back at full burst.
    pub fn trim_rate_limits(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
        }
    }

    /// The conversation `conv` if `user` may read it: a participant of a direct chat.
    /// Groups do not exist on this server yet, so every group id is unknown.
    fn readable(&self, user: UserId, conv: &str) -> Result<ConvId, ApiError> {
        let conv: ConvId = conv.parse()?;
        match conv {
            ConvId::Direct { .. } if conv.direct_has(user) => Ok(conv),
            ConvId::Direct { .. } => {
                Err(ApiError::forbidden(format!("not a participant of {conv}")))
            }
            ConvId::Group(g) => Err(ApiError::new(Code::NotFound, format!("no group {g}"))),
        }
    }

    /// `send`: checks, stores durably, then delivers to every other online device of every
    /// participant. `conn` is the sending WebSocket, which gets `sent` instead of `msg`.
    pub async fn send(
        &self,
        who: &Identity,
        id: &str,
        to: &str,
        body: String,
        conn: Option<u64>,
    ) -> Result<SentOut, ApiError> {
        let id: ClientMsgId = id.parse()?;
        let conv = match to.parse::<Target>()? {
            Target::User(peer) => ConvId::direct(who.user, peer)?,
            Target::Group(g) => return Err(ApiError::new(Code::NotFound, format!("no group {g}"))),
        };
        if body.is_empty() {
            return Err(ApiError::bad_request("body must not be empty"));
        }
        if body.len() > self.config.max_body_bytes {
            return Err(ApiError::new(
                Code::TooLarge,
                format!(
                    "body is {} bytes, at most {} are allowed",
                    body.len(),
                    self.config.max_body_bytes
                ),
            ));
        }
        if let Some(l) = &self.limiter
            && l.check_key(&who.user).is_err()
        {
            return Err(ApiError::new(
                Code::RateLimited,
                format!(
                    "over {} sends per second: slow down and retry with the same id",
                    self.config.send_rate_per_sec
                ),
            ));
        }
        let participants = match conv {
            ConvId::Direct { lo, hi } => vec![lo, hi],
            ConvId::Group(_) => unreachable!("group sends were refused above"),
        };
        let ts = now_ms();
        let appended = self
            .store
            .append(AppendRequest {
                conv,
                from: who.user,
                id: id.clone(),
                body: body.clone(),
                ts,
                participants,
            })
            .await?;
        if !appended.duplicate {
            let stored = StoredMessage {
                conv,
                seq: appended.seq,
                from: who.user,
                id: id.as_str().to_owned(),
                body,
                ts,
            };
            self.fan_out(&stored, &appended.inboxes, who.user, conn);
        }
        Ok(SentOut {
            conv: appended.conv.to_string(),
            seq: appended.seq,
            useq: appended.useq,
            ts: appended.ts,
        })
    }

    /// Offers a stored message to every online device of its participants, each with the
    /// participant's own inbox position.
    fn fan_out(
        &self,
        stored: &StoredMessage,
        inboxes: &[(UserId, u64)],
        sender: UserId,
        conn: Option<u64>,
    ) {
        for &(user, useq) in inboxes {
            let out = MsgOut::inbox(stored, useq);
            let own = if user == sender { conn } else { None };
            self.hub
                .deliver_inbox(user, useq, &frame(&ServerFrame::Msg(&out)), own);
        }
    }

    /// `ack`: moves the caller's delivery marker; the senders of newly acknowledged
    /// messages get `delivered`.
    pub async fn ack(&self, who: &Identity, conv: &str, seq: u64) -> Result<(), ApiError> {
        let conv = self.readable(who.user, conv)?;
        let m = self.store.mark(who.user, conv, Marker::Ack, seq).await?;
        if m.after <= m.before {
            return Ok(());
        }
        let span = m.after - m.before;
        let senders: BTreeSet<UserId> = if span <= RECEIPT_SCAN {
            self.store
                .history(conv, Some(m.after + 1), span as usize)
                .await?
                .into_iter()
                .map(|msg| msg.from)
                .filter(|&u| u != who.user)
                .collect()
        } else {
            self.others(conv, who.user).collect()
        };
        let conv_s = conv.to_string();
        let f = frame(&ServerFrame::Delivered {
            conv: &conv_s,
            seq: m.after,
            user: who.user,
        });
        for user in senders {
            self.hub.send_to_user(user, &f, None);
        }
        Ok(())
    }

    /// `read`: moves the caller's read marker; the other participants get `read`.
    pub async fn read(&self, who: &Identity, conv: &str, seq: u64) -> Result<(), ApiError> {
        let conv = self.readable(who.user, conv)?;
        let m = self.store.mark(who.user, conv, Marker::Read, seq).await?;
        if m.after > m.before {
            let conv_s = conv.to_string();
            let f = frame(&ServerFrame::Read {
                conv: &conv_s,
                seq: m.after,
                user: who.user,
            });
            for user in self.others(conv, who.user) {
                self.hub.send_to_user(user, &f, None);
            }
        }
        Ok(())
    }

    fn others(&self, conv: ConvId, user: UserId) -> impl Iterator<Item = UserId> {
        conv.direct_peer(user).into_iter()
    }

    /// `typing`: relayed to the other participants' online devices, never stored.
    pub fn typing(&self, who: &Identity, conv: &str) -> Result<(), ApiError> {
        let conv = self.readable(who.user, conv)?;
        let conv_s = conv.to_string();
        let f = frame(&ServerFrame::Typing {
            conv: &conv_s,
            user: who.user,
        });
        for user in self.others(conv, who.user) {
            self.hub.send_to_user(user, &f, None);
        }
        Ok(())
    }

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

    /// `history`: a page of `conv`, newest first.
    pub async fn history(
        &self,
        who: &Identity,
        conv: &str,
        before: Option<u64>,
        limit_given: Option<u64>,
    ) -> Result<HistoryOut, ApiError> {
        let conv = self.readable(who.user, conv)?;
        let n = limit(limit_given, 50, MAX_HISTORY_LIMIT, "limit")?;
        let messages = self.store.history(conv, before, n).await?;
        Ok(HistoryOut {
            conv: conv.to_string(),
            next_before: messages.last().filter(|m| m.seq > 1).map(|m| m.seq),
            messages: messages.iter().map(MsgOut::history).collect(),
        })
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
