//! A conversation's operations: `send` (checks, the durable append, fan-out to online
//! devices, push to offline users), the receipts `ack` and `read`, `typing`, and history
//! pages.

use std::collections::BTreeSet;

use super::{RECEIPT_SCAN, Service, frame, limit};
use crate::auth::Identity;
use crate::error::{ApiError, Code};
use crate::hub::ConnId;
use crate::model::{ClientMsgId, ConvId, Target, UserId, now_ms};
use crate::protocol::{HistoryOut, MsgOut, SentOut, ServerFrame};
use crate::push::PushJob;
use crate::service::MAX_HISTORY_LIMIT;
use crate::store::{AppendRequest, Appended, Marker, StoreError, StoredMessage};

/// One `send` as the client asked for it.
pub struct SendRequest {
    pub id: ClientMsgId,
    pub to: Target,
    pub body: String,
}

impl Service {
    /// `send`: checks, stores durably, then delivers to every other online device of every
    /// participant. `conn` is the sending WebSocket, which gets `sent` instead of `msg`.
    pub async fn send(
        &self,
        who: &Identity,
        id: ClientMsgId,
        to: Target,
        body: String,
        conn: Option<ConnId>,
    ) -> Result<SentOut, ApiError> {
        let req = self.check_send(who, SendRequest { id, to, body })?;
        let started = std::time::Instant::now();
        let appended = self.store.append(req.clone()).await?;
        Ok(self.sent(req, appended, conn, started))
    }

    /// Several `send`s of one device that arrived together, answered in their order as
    /// [`Service::send`] answers each: one store call sequences them all (on the embedded
    /// stores one batch), so a device that pipelines pays for one wake-up, not one each.
    pub async fn send_all(
        &self,
        who: &Identity,
        sends: Vec<SendRequest>,
        conn: Option<ConnId>,
    ) -> Vec<Result<SentOut, ApiError>> {
        let checked: Vec<Result<AppendRequest, ApiError>> =
            sends.into_iter().map(|s| self.check_send(who, s)).collect();
        let reqs: Vec<AppendRequest> = checked
            .iter()
            .filter_map(|c| c.as_ref().ok().cloned())
            .collect();
        let started = std::time::Instant::now();
        let mut appended = self.store.append_all(reqs).await.into_iter();
        checked
            .into_iter()
            .map(|c| {
                let req = c?;
                let a = appended.next().unwrap_or_else(|| {
                    Err(StoreError::Unavailable("the store gave no answer".into()))
                })?;
                Ok(self.sent(req, a, conn, started))
            })
            .collect()
    }

    /// A send's checks before the store: the target, the body, the sender's rate.
    fn check_send(&self, who: &Identity, s: SendRequest) -> Result<AppendRequest, ApiError> {
        let conv = match s.to {
            Target::User(peer) => ConvId::direct(who.user, peer)?,
            Target::Group(g) => ConvId::Group(g),
        };
        if s.body.is_empty() {
            return Err(ApiError::bad_request("body must not be empty"));
        }
        if s.body.len() > self.config.max_body_bytes {
            return Err(ApiError::new(
                Code::TooLarge,
                format!(
                    "body is {} bytes, at most {} are allowed",
                    s.body.len(),
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
        Ok(AppendRequest {
            conv,
            from: who.user,
            id: s.id,
            body: s.body,
            ts: now_ms(),
        })
    }

    /// A stored send's delivery (unless it was a duplicate) and its answer.
    fn sent(
        &self,
        req: AppendRequest,
        appended: Appended,
        conn: Option<ConnId>,
        started: std::time::Instant,
    ) -> SentOut {
        if !appended.duplicate {
            let stored = StoredMessage {
                conv: req.conv,
                seq: appended.seq,
                from: req.from,
                id: req.id.as_str().to_owned(),
                body: req.body,
                ts: req.ts,
            };
            self.metrics.messages_stored.inc();
            self.fan_out(&stored, &appended.inboxes, req.from, conn);
            self.push_offline(&stored, &appended.inboxes);
        }
        self.metrics
            .send_latency
            .observe(started.elapsed().as_secs_f64());
        SentOut {
            conv: appended.conv.to_string(),
            seq: appended.seq,
            useq: appended.useq,
            ts: appended.ts,
        }
    }

    /// Offers a stored message to every online device of its participants, each with the
    /// participant's own inbox position.
    fn fan_out(
        &self,
        stored: &StoredMessage,
        inboxes: &[(UserId, u64)],
        sender: UserId,
        conn: Option<ConnId>,
    ) {
        let mut relays = self.inbox_relays();
        for &(user, useq) in inboxes {
            let out = MsgOut::inbox(stored, useq);
            let own = if user == sender { conn } else { None };
            relays.deliver(user, useq, frame(&ServerFrame::Msg(&out)), own);
        }
        relays.send();
    }

    /// Offers a push for every recipient with no device connected.
    fn push_offline(&self, stored: &StoredMessage, inboxes: &[(UserId, u64)]) {
        let Some(pusher) = &self.pusher else {
            return;
        };
        for &(user, _) in inboxes {
            if user != stored.from && !self.presence.is_connected(user) {
                pusher.notify(PushJob {
                    user,
                    conv: stored.conv,
                    seq: stored.seq,
                    from: stored.from,
                    body: stored.body.clone(),
                });
            }
        }
    }

    /// `ack`: moves the caller's delivery marker; the senders of newly acknowledged
    /// messages get `delivered`.
    pub async fn ack(&self, who: &Identity, conv: ConvId, seq: u64) -> Result<(), ApiError> {
        let others = self.access(who.user, conv).await?;
        let m = self.store.mark(who.user, conv, Marker::Ack, seq).await?;
        if m.after <= m.before {
            return Ok(());
        }
        let span = m.after - m.before;
        let peer = conv.direct_peer(who.user).filter(|&p| p != who.user);
        let senders: BTreeSet<UserId> = if let Some(peer) = peer.filter(|_| m.last_own < m.after) {
            // The newest message acknowledged is not the user's own, so it is the peer's:
            // no read of the messages the ack covers (a hop to the store's readers per ack).
            BTreeSet::from([peer])
        } else if span <= RECEIPT_SCAN {
            self.store
                .history(conv, Some(m.after + 1), span as usize)
                .await?
                .into_iter()
                .map(|msg| msg.from)
                .filter(|&u| u != who.user)
                .collect()
        } else {
            others.into_iter().collect()
        };
        let conv_s = conv.to_string();
        let f = frame(&ServerFrame::Delivered {
            conv: &conv_s,
            seq: m.after,
            user: who.user,
        });
        self.send_everywhere(senders, &f);
        Ok(())
    }

    /// `read`: moves the caller's read marker; the other participants get `read`.
    pub async fn read(&self, who: &Identity, conv: ConvId, seq: u64) -> Result<(), ApiError> {
        let others = self.access(who.user, conv).await?;
        let m = self.store.mark(who.user, conv, Marker::Read, seq).await?;
        if m.after > m.before {
            let conv_s = conv.to_string();
            let f = frame(&ServerFrame::Read {
                conv: &conv_s,
                seq: m.after,
                user: who.user,
            });
            self.send_everywhere(others, &f);
        }
        Ok(())
    }

    /// `typing`: relayed to the other participants' online devices, never stored.
    pub async fn typing(&self, who: &Identity, conv: ConvId) -> Result<(), ApiError> {
        let others = self.access(who.user, conv).await?;
        let conv_s = conv.to_string();
        let f = frame(&ServerFrame::Typing {
            conv: &conv_s,
            user: who.user,
        });
        self.send_everywhere(others, &f);
        Ok(())
    }

    /// `history`: a page of `conv`, newest first.
    pub async fn history(
        &self,
        who: &Identity,
        conv: ConvId,
        before: Option<u64>,
        limit_given: Option<u64>,
    ) -> Result<HistoryOut, ApiError> {
        self.access(who.user, conv).await?;
        let n = limit(limit_given, 50, MAX_HISTORY_LIMIT, "limit")?;
        let messages = self.store.history(conv, before, n).await?;
        Ok(HistoryOut {
            conv: conv.to_string(),
            next_before: messages.last().filter(|m| m.seq > 1).map(|m| m.seq),
            messages: messages.iter().map(MsgOut::history).collect(),
        })
    }
}
