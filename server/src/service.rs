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
use crate::metrics::Metrics;
use crate::model::{ClientMsgId, ConvId, Target, UserId, now_ms};
use crate::presence::{Presence, PresenceOut};
use crate::protocol::{HistoryOut, MsgOut, SentOut, ServerFrame, SyncOut};
use crate::push::{PushJob, Pusher};
use crate::store::cache::Cached;
use crate::store::timed::Timed;
use crate::store::{
    AppendRequest, Group, Marker, MemberChange, PushRegistration, Store, StoredMessage,
};

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

/// The server's shared state: store, online devices, presence, push, token keys,
/// settings and metrics.
pub struct Service {
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    pub presence: Arc<Presence>,
    pub auth: Auth,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pusher: Option<Pusher>,
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

/// A group as `GET /v1/groups/{id}` answers it.
#[derive(Debug, Serialize)]
pub struct GroupOut {
    pub group: u64,
    pub name: String,
    pub members: Vec<UserId>,
    pub admin: UserId,
}

impl From<Group> for GroupOut {
    fn from(g: Group) -> Self {
        GroupOut {
            group: g.id,
            name: g.name,
            members: g.members,
            admin: g.admin,
        }
    }
}

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME: usize = 100;
/// Users one `presence_sub` or presence query may list.
pub const MAX_PRESENCE_USERS: usize = 1000;

impl Service {
    /// The service over `store` (timed into the metrics). `shutdown` turns true when the
    /// server stops: long polls then answer at once.
    pub fn new(
        store: Arc<dyn Store>,
        config: Config,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, AuthError> {
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn Store> = if store.is_remote() {
            Arc::new(Cached::new(store, &metrics))
        } else {
            store
        };
        let store: Arc<dyn Store> = Arc::new(Timed::new(store, metrics.clone()));
        let limiter = NonZeroU32::new(config.send_rate_per_sec).map(|rate| {
            let burst = NonZeroU32::new(config.send_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let presence = Arc::new(Presence::new(
            config.presence_online_delay,
            config.presence_offline_grace,
            metrics.clone(),
        ));
        let pusher = config
            .push
            .clone()
            .map(|p| Pusher::start(p, store.clone(), metrics.clone()));
        Ok(Service {
            auth: Auth::new(&config.jwt_secret)?,
            store,
            hub: Hub::new(),
            presence,
            config,
            metrics,
            pusher,
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

    /// The conversation `conv` and its other participants, if `user` may read it: a
    /// participant of a direct chat, a current member of a group.
    async fn access(&self, user: UserId, conv: &str) -> Result<(ConvId, Vec<UserId>), ApiError> {
        let conv: ConvId = conv.parse()?;
        match conv {
            ConvId::Direct { .. } => match conv.direct_peer(user) {
                Some(peer) => Ok((conv, vec![peer])),
                None => Err(ApiError::forbidden(format!("not a participant of {conv}"))),
            },
            ConvId::Group(g) => {
                let group = self.member_of(user, g).await?;
                let others = group.members.into_iter().filter(|&u| u != user).collect();
                Ok((conv, others))
            }
        }
    }

    /// The group, if it exists and `user` is a current member.
    async fn member_of(&self, user: UserId, g: u64) -> Result<Group, ApiError> {
        let group = self
            .store
            .group(g)
            .await?
            .ok_or_else(|| ApiError::new(Code::NotFound, format!("no group {g}")))?;
        if !group.has(user) {
            return Err(ApiError::forbidden(format!("not a member of group {g}")));
        }
        Ok(group)
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
            Target::Group(g) => ConvId::Group(g),
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
        let started = std::time::Instant::now();
        let ts = now_ms();
        let appended = self
            .store
            .append(AppendRequest {
                conv,
                from: who.user,
                id: id.clone(),
                body: body.clone(),
                ts,
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
            self.metrics.messages_stored.inc();
            self.fan_out(&stored, &appended.inboxes, who.user, conn);
            self.push_offline(&stored, &appended.inboxes);
        }
        self.metrics
            .send_latency
            .observe(started.elapsed().as_secs_f64());
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
    pub async fn ack(&self, who: &Identity, conv: &str, seq: u64) -> Result<(), ApiError> {
        let (conv, others) = self.access(who.user, conv).await?;
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
            others.into_iter().collect()
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
        let (conv, others) = self.access(who.user, conv).await?;
        let m = self.store.mark(who.user, conv, Marker::Read, seq).await?;
        if m.after > m.before {
            let conv_s = conv.to_string();
            let f = frame(&ServerFrame::Read {
                conv: &conv_s,
                seq: m.after,
                user: who.user,
            });
            for user in others {
                self.hub.send_to_user(user, &f, None);
            }
        }
        Ok(())
    }

    /// `typing`: relayed to the other participants' online devices, never stored.
    pub async fn typing(&self, who: &Identity, conv: &str) -> Result<(), ApiError> {
        let (conv, others) = self.access(who.user, conv).await?;
        let conv_s = conv.to_string();
        let f = frame(&ServerFrame::Typing {
            conv: &conv_s,
            user: who.user,
        });
        for user in others {
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

    /// `history`: a page of `conv`, newest first.
    pub async fn history(
        &self,
        who: &Identity,
        conv: &str,
        before: Option<u64>,
        limit_given: Option<u64>,
    ) -> Result<HistoryOut, ApiError> {
        let (conv, _) = self.access(who.user, conv).await?;
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

    /// Creates a group; the caller is a member and the admin.
    pub async fn create_group(
        &self,
        who: &Identity,
        name: &str,
        members: &[UserId],
    ) -> Result<GroupOut, ApiError> {
        let name = name.trim();
        if name.is_empty() || name.len() > MAX_GROUP_NAME {
            return Err(ApiError::bad_request(format!(
                "a group name is 1 to {MAX_GROUP_NAME} bytes"
            )));
        }
        if members.contains(&0) {
            return Err(ApiError::bad_request(
                "user ids are integers greater than 0",
            ));
        }
        let mut all: Vec<UserId> = members.to_vec();
        all.push(who.user);
        all.sort_unstable();
        all.dedup();
        if all.len() > self.config.max_group_members {
            return Err(ApiError::bad_request(format!(
                "a group has at most {} members, {} were given",
                self.config.max_group_members,
                all.len()
            )));
        }
        let group = self
            .store
            .create_group(name.to_owned(), who.user, all)
            .await?;
        Ok(group.into())
    }

    /// A group's details, for its members.
    pub async fn group(&self, who: &Identity, id: u64) -> Result<GroupOut, ApiError> {
        Ok(self.member_of(who.user, id).await?.into())
    }

    /// Adds a member (the admin only).
    pub async fn add_member(
        &self,
        who: &Identity,
        id: u64,
        user: UserId,
    ) -> Result<GroupOut, ApiError> {
        if user == 0 {
            return Err(ApiError::bad_request(
                "user ids are integers greater than 0",
            ));
        }
        let change = MemberChange::Add {
            by: who.user,
            user,
            max_members: self.config.max_group_members,
        };
        Ok(self.store.change_members(id, change).await?.into())
    }

    /// Removes a member (the admin, or the member leaving).
    pub async fn remove_member(
        &self,
        who: &Identity,
        id: u64,
        user: UserId,
    ) -> Result<(), ApiError> {
        let change = MemberChange::Remove { by: who.user, user };
        self.store.change_members(id, change).await?;
        Ok(())
    }

    /// The published presence of up to [`MAX_PRESENCE_USERS`] users.
    pub fn presence_of(&self, users: &[UserId]) -> Result<Vec<PresenceOut>, ApiError> {
        check_presence_list(users)?;
        Ok(users.iter().map(|&u| self.presence.query(u)).collect())
    }

    /// Registers the caller's device for push.
    pub async fn register_push(
        &self,
        who: &Identity,
        device: &str,
        platform: &str,
        token: &str,
    ) -> Result<(), ApiError> {
        if device != who.device.as_str() {
            return Err(ApiError::forbidden(
                "a device registers itself: the path names another device than the token",
            ));
        }
        if platform.is_empty() || platform.len() > 32 {
            return Err(ApiError::bad_request("platform is 1 to 32 bytes"));
        }
        if token.is_empty() || token.len() > 4096 {
            return Err(ApiError::bad_request("token is 1 to 4096 bytes"));
        }
        self.store
            .put_push(PushRegistration {
                user: who.user,
                device: device.to_owned(),
                platform: platform.to_owned(),
                token: token.to_owned(),
            })
            .await?;
        Ok(())
    }
}

/// A presence list: at most [`MAX_PRESENCE_USERS`] valid user ids.
pub fn check_presence_list(users: &[UserId]) -> Result<(), ApiError> {
    if users.len() > MAX_PRESENCE_USERS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_PRESENCE_USERS} users, {} were given",
            users.len()
        )));
    }
    if users.contains(&0) {
        return Err(ApiError::bad_request(
            "user ids are integers greater than 0",
        ));
    }
    Ok(())
}
