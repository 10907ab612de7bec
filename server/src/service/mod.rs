//! The chat operations, shared by the WebSocket and HTTP front ends: checks (identities,
//! limits, privacy, rate), the store call, then fan-out of what changed to online devices.
//!
//! Each concept of the source design has its module: [`conversation`] (send, receipts,
//! typing, history), [`inbox`] (sync, long poll, the conversation list), [`groups`], and
//! [`session`] (a WebSocket device's life: attached to the hub and presence, detached
//! once). The state is private; the front ends go through methods.

mod cluster;
mod conversation;
mod groups;
mod inbox;
mod session;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use tokio::sync::watch;

pub use self::conversation::SendRequest;
pub use self::session::{Device, msg_frame};
use crate::auth::{Auth, AuthError, Identity};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::{ConvId, DeviceId, UserId, now_ms};
use crate::presence::{Presence, PresenceOut};
use crate::protocol::{Encoded, ServerFrame};
use crate::push::Pusher;
use crate::store::cache::Cached;
use crate::store::timed::Timed;
use crate::store::{Backend, Group, GroupStore, MessageStore, PushRegistration, Store, rules};

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
    /// The backend, timed, with the recent-conversations cache in front of messages and
    /// groups when the backend is across a network.
    store: Arc<dyn Store>,
    hub: Hub,
    presence: Arc<Presence>,
    auth: Auth,
    config: Config,
    metrics: Arc<Metrics>,
    pusher: Option<Pusher>,
    limiter: Option<DefaultKeyedRateLimiter<UserId>>,
    shutdown: watch::Receiver<bool>,
    /// This node's end of the cluster, in cluster mode.
    cluster: Option<Arc<Cluster>>,
    /// Whether the last store probe was answered.
    store_ok: AtomicBool,
    /// When the service started (ms).
    started: u64,
}

fn limit(given: Option<u64>, default: u64, max: u64, what: &str) -> Result<usize, ApiError> {
    match given.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n as usize),
        n => Err(ApiError::bad_request(format!(
            "{what} must be between 1 and {max}, got {n}"
        ))),
    }
}

fn frame(f: &ServerFrame<'_>) -> Encoded {
    f.encode()
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
    /// The service over `backend` (timed into the metrics), in `cluster` when given.
    /// `shutdown` turns true when the server stops: long polls then answer at once.
    pub fn new(
        backend: Backend,
        config: Config,
        cluster: Option<Arc<Cluster>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, AuthError> {
        let base = backend.store();
        let mut metrics = Metrics::new();
        metrics.register_collector(Box::new(crate::store::StoreCollector::new(&base)));
        let metrics = Arc::new(metrics);
        // The cache would go stale in a cluster: other nodes write behind its back.
        let (messages, groups): (Arc<dyn MessageStore>, Arc<dyn GroupStore>) =
            if backend.is_networked() && cluster.is_none() {
                let cached = Arc::new(Cached::new(base.clone(), base.clone(), &metrics));
                (cached.clone(), cached)
            } else {
                (base.clone(), base.clone())
            };
        let store: Arc<dyn Store> = Arc::new(Timed::new(messages, groups, base, metrics.clone()));
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
            .map(|p| Pusher::start(p, store.clone(), metrics.clone(), shutdown.clone()));
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
            cluster,
            store_ok: AtomicBool::new(true),
            started: now_ms(),
        })
    }

    /// The settings the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Signs a token for `user` on `device`, valid until `exp` (seconds since the epoch).
    pub fn issue_token(&self, user: UserId, device: &DeviceId, exp: u64) -> String {
        self.auth.issue(user, device, exp)
    }

    /// Checks a bearer token.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.auth.verify(token)
    }

    /// WebSocket devices connected now.
    pub fn online_devices(&self) -> u64 {
        self.hub.online_devices()
    }

    /// Asks every WebSocket to close with `code` (shutdown).
    pub fn close_all(&self, code: u16) {
        self.hub.close_all(code);
    }

    /// Waits, at most `grace`, for the work the service started in the background (push
    /// deliveries) to end after the shutdown signal, so the store is no longer in use.
    pub async fn finish(&self, grace: Duration) {
        if let Some(pusher) = &self.pusher
            && !pusher.stop(grace).await
        {
            tracing::warn!("push deliveries still running after the shutdown grace");
        }
    }

    /// Forgets rate-limit state of users idle long enough to be back at full burst.
    pub fn trim_rate_limits(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
        }
    }

    /// The other participants of `conv`, if `user` may read it: a participant of a direct
    /// chat, a current member of a group ([`rules::participants`]).
    async fn access(&self, user: UserId, conv: ConvId) -> Result<Vec<UserId>, ApiError> {
        let group = match conv {
            ConvId::Group(g) => self.store.group(g).await?,
            ConvId::Direct { .. } => None,
        };
        let mut list = rules::participants(conv, user, group.as_ref())?;
        list.remove(0);
        Ok(list)
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
