//! Persistent storage behind one trait.
//!
//! Every backend keeps the same data model, in the spirit of the source design:
//!
//! - **messages**, stored once, partitioned by conversation and a seq bucket
//!   (`seq / 65536`) so no partition grows without bound, ordered by seq;
//! - a per-user **inbox**: the ordered stream (`useq` = 1, 2, …) of every message of every
//!   conversation the user takes part in; an entry points at the stored message;
//! - per conversation its last seq and time; per (user, conversation) the cumulative
//!   delivery-ack and read markers;
//! - per (user, client message id) the outcome of the first send, for idempotency.
//!
//! [`Store::append`] is the sequencer: it assigns the conversation's next `seq` and each
//! participant's next `useq` and makes all of it durable before it returns, so the
//! server acknowledges (`sent`) only what survives a crash.
//!
//! Backends are chosen by [`open`] from the `--store` string; the conformance suite in
//! [`conformance`] is what each of them must pass unchanged.

pub mod cache;
pub mod conformance;
mod cql;
mod fjall;
mod memory;
mod postgres;
pub mod rules;
mod sequencing;
mod storage;
pub mod timed;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::model::{ClientMsgId, ConvId, UserId};

pub use self::cql::{CqlStore, Settings as CqlSettings};
pub use self::fjall::{FjallStore, FjallTuning};
pub use self::memory::MemoryStore;
pub use self::postgres::PostgresStore;
pub use self::storage::{StorageReport, StoreCollector, StoreMemory, Table, WriterCounts};

/// Messages of one conversation sharing a storage partition bucket: `seq / BUCKET_SIZE`.
pub const BUCKET_SIZE: u64 = 65_536;

/// The bucket a seq belongs to. With big-endian keys, `conv ‖ bucket ‖ offset` is
/// byte-identical to `conv ‖ seq`, so an ordered store reads a page with one scan.
pub fn bucket_of(seq: u64) -> u64 {
    seq / BUCKET_SIZE
}

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend is down, overloaded or failed to make the write durable. Nothing of the
    /// operation was stored; the client may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A rule of the chat refused the operation; nothing was stored.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Stored data could not be decoded: a bug or a damaged store.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// The `--store` spec or a setting of the backend is not one it can use.
    #[error("{0}")]
    Spec(String),
    /// The backend cannot do this operation (a maintenance operation it leaves to its own
    /// tools).
    #[error("not supported by this store: {0}")]
    Unsupported(&'static str),
}

/// A rule of the chat that an operation broke ([`rules`] decides them all). The text is
/// meant for the client; [`Refusal::kind`] says which error code answers it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("no group {0}")]
    NoGroup(u64),
    #[error("user {user} is not a participant of {conv}")]
    NotParticipant { user: UserId, conv: ConvId },
    #[error("user {user} is not a member of group {group}")]
    NotMember { user: UserId, group: u64 },
    #[error("only the admin adds members")]
    AdminAdds,
    #[error("only the admin removes others; anyone may leave")]
    AdminRemoves,
    #[error("user {0} is already a member")]
    AlreadyMember(UserId),
    #[error("user {0} is not a member")]
    NoSuchMember(UserId),
    #[error("the group is full ({0} members)")]
    GroupFull(usize),
    #[error("seq {seq} is beyond the last message of {conv} ({last})")]
    BeyondLast { seq: u64, conv: ConvId, last: u64 },
    #[error("{what} {value} is out of range")]
    OutOfRange { what: &'static str, value: u64 },
}

/// How a [`Refusal`] is answered: the contract's `not_found`, `forbidden` or
/// `bad_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    NotFound,
    Forbidden,
    Invalid,
}

impl Refusal {
    /// Which kind of refusal this is.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::NoGroup(_) => RefusalKind::NotFound,
            Refusal::NotParticipant { .. }
            | Refusal::NotMember { .. }
            | Refusal::AdminAdds
            | Refusal::AdminRemoves => RefusalKind::Forbidden,
            Refusal::AlreadyMember(_)
            | Refusal::NoSuchMember(_)
            | Refusal::GroupFull(_)
            | Refusal::BeyondLast { .. }
            | Refusal::OutOfRange { .. } => RefusalKind::Invalid,
        }
    }
}

impl StoreError {
    /// The kind of refusal, when a rule refused the operation.
    pub fn refusal_kind(&self) -> Option<RefusalKind> {
        match self {
            StoreError::Refused(r) => Some(r.kind()),
            _ => None,
        }
    }
}

/// A group: its members, with the admin among them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub admin: UserId,
    /// Members in ascending order.
    pub members: Vec<UserId>,
}

impl Group {
    /// Whether `user` is a current member.
    pub fn has(&self, user: UserId) -> bool {
        self.members.binary_search(&user).is_ok()
    }
}

/// A change of group membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// `by` (the admin) adds `user`; refused past `max_members`.
    Add {
        by: UserId,
        user: UserId,
        max_members: usize,
    },
    /// `by` (the admin, or `user` themself) removes `user`. When the admin leaves, the
    /// longest-standing... the lowest remaining user id becomes admin.
    Remove { by: UserId, user: UserId },
}

/// A device registered for push notifications.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushRegistration {
    pub user: UserId,
    pub device: String,
    pub platform: String,
    pub token: String,
}

/// A push notification that still failed after every retry, kept for an operator to
/// replay. The payload is what was posted to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    pub payload: String,
    /// The last error, for the operator.
    pub error: String,
    /// When it was given up on, ms since the epoch.
    pub ts: u64,
}

/// A stored message, as history and sync return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub conv: ConvId,
    pub seq: u64,
    pub from: UserId,
    /// The sender's client message id.
    pub id: String,
    pub body: String,
    /// Server time of the send, ms since the epoch.
    pub ts: u64,
}

/// One entry of a user's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    pub useq: u64,
    pub msg: StoredMessage,
}

/// A send to make durable. The store resolves the participants itself (the two users of a
/// direct chat, the current members of a group) inside the sequencer, so a membership
/// change and a send are ordered: a removed member gets nothing newer than the removal.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub conv: ConvId,
    pub from: UserId,
    pub id: ClientMsgId,
    pub body: String,
    pub ts: u64,
}

/// What [`Store::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub conv: ConvId,
    pub seq: u64,
    /// The sender's inbox position of the message.
    pub useq: u64,
    pub ts: u64,
    /// The inbox position the message got in each participant's inbox, sender included.
    /// Empty for a duplicate: nothing new was stored, nothing is to be delivered.
    pub inboxes: Vec<(UserId, u64)>,
    /// True when the (sender, id) pair was already used: this is the first send's outcome.
    pub duplicate: bool,
}

/// Which cumulative marker a [`Store::mark`] moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// Delivered to a device of the user.
    Ack,
    /// Read by the user.
    Read,
}

/// The marker before and after a [`Store::mark`]; `after > before` when it moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkOutcome {
    pub before: u64,
    pub after: u64,
    /// The seq of the user's newest own message in the conversation when the marker moved
    /// (0: none). Below `after`, the message at `after` is another participant's, which
    /// in a direct conversation names the one sender an ack reports to without reading
    /// the messages it covers.
    pub last_own: u64,
}

/// A conversation as one user sees it in their list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvSummary {
    pub conv: ConvId,
    pub last_seq: u64,
    pub last_ts: u64,
    /// The user's read marker.
    pub read_seq: u64,
    /// The user's delivery-ack marker.
    pub ack_seq: u64,
    /// Messages from others after the read marker.
    pub unread: u64,
}

/// Messages and inboxes: the sequencer, history, sync, markers and conversation lists.
/// Every method is atomic; writes are durable when they return `Ok`.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// The backend's name for logs and reports (`memory`, `fjall`, …).
    fn name(&self) -> &'static str;

    /// Stores a message once, appends it to every participant's inbox and returns its
    /// `seq` and `useq`s. A repeated (sender, id) returns the first outcome with
    /// `duplicate = true` and stores nothing.
    async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError>;

    /// Appends several requests in the order given, each answered as [`append`] would
    /// answer it alone: one device's sends that arrived together (pipelined). The default
    /// runs them one after another; a store with one writer sequences them in one batch
    /// (one lock, one fsync), which is what makes a pipelining client cheap.
    ///
    /// [`append`]: MessageStore::append
    async fn append_all(&self, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            out.push(self.append(req).await);
        }
        out
    }

    /// Up to `limit` messages of `conv` with seq < `before` (all when `None`), newest first.
    async fn history(
        &self,
        conv: ConvId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Up to `limit` inbox entries of `user` with useq > `after`, oldest first.
    async fn inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError>;

    /// The newest useq of `user`'s inbox (0 when empty).
    async fn inbox_head(&self, user: UserId) -> Result<u64, StoreError>;

    /// Moves `user`'s cumulative marker on `conv` to `seq` if that is further. A seq beyond
    /// the conversation's last message is refused ([`Refusal::BeyondLast`]).
    async fn mark(
        &self,
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    ) -> Result<MarkOutcome, StoreError>;

    /// `user`'s conversations, most recent activity first, at most `limit`.
    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConvSummary>, StoreError>;

    /// Bytes the backend occupies on disk, when it can tell (`None` for memory).
    async fn disk_bytes(&self) -> Result<Option<u64>, StoreError>;

    /// Bytes on disk by table, with the write-ahead log (journal, WAL, commitlog) apart,
    /// as the backend can tell now (`None` for memory).
    async fn storage(&self) -> Result<Option<StorageReport>, StoreError>;

    /// Brings what is stored to its settled form, as a long-running store would hold it:
    /// memory tables flushed, tables compacted, expired idempotency records dropped.
    /// Expensive; for measurements and tests, not for the serving path.
    async fn settle(&self) -> Result<(), StoreError>;

    /// What the backend's tables hold in this process's memory and their bound; `None`
    /// when it keeps none there (PostgreSQL, CQL) or keeps everything without a bound
    /// (memory). Cheap: read at every scrape of `/metrics`.
    fn memory(&self) -> Option<StoreMemory>;

    /// The writes committed on the caller's thread and the journal fsyncs, for a backend
    /// with a writer thread (fjall); `None` for the others. Cheap: read at every scrape.
    fn writer_counts(&self) -> Option<WriterCounts> {
        None
    }
}

/// Groups and their membership. Membership changes are ordered with the sends of the
/// group by the backend's sequencer.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group with a fresh id; `admin` is a member. The caller validated names
    /// and the member cap.
    async fn create_group(
        &self,
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    ) -> Result<Group, StoreError>;

    /// A group, if it exists.
    async fn group(&self, id: u64) -> Result<Option<Group>, StoreError>;

    /// Adds or removes a member, ordered with sends (see [`MemberChange`]), with the
    /// checks of [`rules::change_members`]: an unknown group, a caller without the right,
    /// a full group or a redundant change is refused.
    async fn change_members(&self, group: u64, change: MemberChange) -> Result<Group, StoreError>;
}

/// Push registrations and the dead letters of pushes that failed for good.
#[async_trait]
pub trait PushStore: Send + Sync + 'static {
    /// Registers (or replaces) a device's push token.
    async fn put_push(&self, reg: PushRegistration) -> Result<(), StoreError>;

    /// The push registrations of a user's devices.
    async fn pushes(&self, user: UserId) -> Result<Vec<PushRegistration>, StoreError>;

    /// Records a push that failed for good; returns its id.
    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<u64, StoreError>;

    /// Up to `limit` dead letters with ids above `after`, oldest first, with their ids.
    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError>;

    /// Forgets a dead letter (after a successful replay).
    async fn remove_dead_letter(&self, id: u64) -> Result<(), StoreError>;
}

/// A whole backend: every concern of the chat in one place, as the conformance suite
/// tests it. Implemented for everything that implements the three parts.
pub trait Store: MessageStore + GroupStore + PushStore {}

impl<T: MessageStore + GroupStore + PushStore + ?Sized> Store for T {}

/// A backend whose data several server processes may read and write at once while each
/// conversation keeps one gap-free sequence: the store a cluster of nodes can share.
pub trait SharedStore: Store {}

/// An opened backend, typed by where its data lives and who may write it.
#[derive(Clone)]
pub enum Backend {
    /// In this process (memory, fjall): reads cost no round trip; one process owns it.
    Embedded(Arc<dyn Store>),
    /// Across the network, sequenced by this one process (CQL's in-process sequencer).
    Remote(Arc<dyn Store>),
    /// Across the network and shared by every node of a cluster (PostgreSQL, CQL opened
    /// with `shared=true`).
    Shared(Arc<dyn SharedStore>),
}

impl Backend {
    /// The backend as a whole.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Embedded(s) | Backend::Remote(s) => s.clone(),
            Backend::Shared(s) => s.clone(),
        }
    }

    /// Whether reads cross a network: the server then puts the recent-conversations
    /// cache ([`cache::Cached`]) in front of messages and groups.
    pub fn is_networked(&self) -> bool {
        !matches!(self, Backend::Embedded(_))
    }

    /// The backend's name for logs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded(s) | Backend::Remote(s) => s.name(),
            Backend::Shared(s) => s.name(),
        }
    }
}

impl From<Arc<MemoryStore>> for Backend {
    fn from(s: Arc<MemoryStore>) -> Self {
        Backend::Embedded(s)
    }
}

impl From<Arc<FjallStore>> for Backend {
    fn from(s: Arc<FjallStore>) -> Self {
        Backend::Embedded(s)
    }
}

/// A CQL store is shared only when opened with `shared=true`: the single-node fast path
/// must never serve a cluster.
impl From<Arc<CqlStore>> for Backend {
    fn from(s: Arc<CqlStore>) -> Self {
        if s.settings().shared {
            Backend::Shared(s)
        } else {
            Backend::Remote(s)
        }
    }
}

impl From<Arc<PostgresStore>> for Backend {
    fn from(s: Arc<PostgresStore>) -> Self {
        Backend::Shared(s)
    }
}

/// What every backend is told when it opens, besides its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a send's idempotency record must be kept: a repeated id within it gets
    /// the first outcome. Past it the record expires by itself in every backend (a sweep,
    /// a compaction filter or a TTL), so it costs no storage in the long run.
    pub idempotency_window: std::time::Duration,
}

impl StoreOptions {
    /// The protocol's default window: 24 hours after the first send.
    pub const DEFAULT_IDEMPOTENCY_WINDOW: std::time::Duration =
        std::time::Duration::from_secs(24 * 3600);
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            idempotency_window: Self::DEFAULT_IDEMPOTENCY_WINDOW,
        }
    }
}

/// Opens the backend that a `--store` value names with the default options.
pub async fn open(spec: &str) -> Result<Backend, OpenError> {
    open_with(spec, &StoreOptions::default()).await
}

/// Opens the backend that a `--store` value names: `memory`, `fjall:PATH` (options after a
/// `?`: [`FjallTuning`]), `postgres://…` or `cql://…`. Unknown schemes are refused with a
/// message listing the known ones.
pub async fn open_with(spec: &str, options: &StoreOptions) -> Result<Backend, OpenError> {
    let (scheme, rest) = match spec.split_once(':') {
        Some((s, r)) => (s, Some(r)),
        None => (spec, None),
    };
    match (scheme, rest) {
        ("memory", None) => Ok(Arc::new(MemoryStore::with_options(options)).into()),
        ("fjall", Some(rest)) if !rest.is_empty() => {
            let (path, tuning) = FjallTuning::parse(rest).map_err(OpenError::Spec)?;
            let options = options.clone();
            let store = tokio::task::spawn_blocking(move || {
                FjallStore::open_tuned(&path, &options, &tuning)
            })
            .await
            .map_err(|e| OpenError::Backend(e.to_string()))??;
            Ok(Arc::new(store).into())
        }
        ("fjall", _) => Err(OpenError::Spec(
            "fjall needs a directory: --store fjall:PATH".into(),
        )),
        ("postgres" | "postgresql", Some(rest)) if rest.starts_with("//") => {
            Ok(Arc::new(PostgresStore::open_with(spec, options).await?).into())
        }
        ("cql", Some(rest)) if rest.starts_with("//") => {
            let mut settings = CqlSettings::parse(spec).map_err(OpenError::Spec)?;
            settings.idempotency_window = options.idempotency_window;
            Ok(Arc::new(CqlStore::open_with(settings).await?).into())
        }
        _ => Err(OpenError::Spec(format!(
            "unknown store {spec:?}: expected `memory`, `fjall:PATH`, `postgres://…` or `cql://HOST:PORT/KEYSPACE`"
        ))),
    }
}

/// The spec a node of a cluster opens for `--store SPEC`: a `cql://` store is told that
/// several processes share it (`shared=true`, unless the spec says otherwise), which
/// turns its single-node sequencer into the cluster-safe one. Other specs are unchanged.
pub fn cluster_spec(spec: &str) -> String {
    if !spec.starts_with("cql://") {
        return spec.to_owned();
    }
    let query = spec.split_once('?').map_or("", |(_, q)| q);
    if query
        .split('&')
        .any(|kv| kv.split('=').next() == Some("shared"))
    {
        return spec.to_owned();
    }
    let sep = if spec.contains('?') { '&' } else { '?' };
    format!("{spec}{sep}shared=true")
}

/// Drops the schema (`postgres://…?schema=NAME`) or keyspace (`cql://…/KEYSPACE`) a
/// spec names, with all its data, and returns its name; `None` for stores without one
/// (`memory`, `fjall:PATH`, a PostgreSQL spec without `schema=`). For tools that ran on a
/// throwaway namespace.
pub async fn drop_namespace(spec: &str) -> Result<Option<String>, StoreError> {
    let scheme = spec.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("postgres" | "postgresql") => PostgresStore::drop_schema(spec).await,
        Some("cql") => CqlStore::drop_keyspace(spec).await.map(Some),
        _ => Ok(None),
    }
}

/// Why [`open`] failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The `--store` value is not one this server knows.
    #[error("{0}")]
    Spec(String),
    /// The backend could not be opened.
    #[error("cannot open store: {0}")]
    Backend(String),
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        OpenError::Backend(e.to_string())
    }
}

/// Orders a conversation list most recent activity first; ties by the newer seq, then by
/// id, so the order is the same on every call.
pub(crate) fn sort_recent_first(list: &mut [ConvSummary]) {
    list.sort_by(|a, b| {
        b.last_ts
            .cmp(&a.last_ts)
            .then(b.last_seq.cmp(&a.last_seq))
            .then(a.conv.cmp(&b.conv))
    });
}
