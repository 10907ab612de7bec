//! The embedded, durable default backend: fjall, an LSM-tree with a write-ahead journal.
//!
//! Writes go through one writer thread ([`writer`]). It takes every request waiting in
//! its queue, applies them to one write batch (sequencing them with the shared rules of
//! [`super::sequencing`]), commits the batch and fsyncs the journal once, and only then
//! answers the batch's requests (markers excepted: they wait for the journal, not the
//! fsync). Many concurrent sends therefore share one fsync (group commit), and the single
//! writer is the per-store sequencer that keeps `seq` and `useq` gap-free. A marker, or a
//! send that comes at least a commit interval after the last fsync while fsyncs are quick,
//! that finds the writer idle commits on the caller's thread under the writer's lock
//! instead ([`writer::Writer::claim_idle`]). Reads go straight to the LSM-tree from a fixed
//! set of reader threads ([`readers`]).
//!
//! The counters are not stored on their own: a conversation's last seq and time are those
//! of its newest message, a user's last useq that of their newest inbox entry. The writer
//! keeps them (and the markers) in memory once read, so a send costs no point lookups for
//! them, and writes five keys: the message, two inbox entries, the sender's markers and
//! the idempotency record.
//!
//! Key layout (integers in conversation and user keys are short and order-preserving, see
//! [`keys`]; group and dead-letter ids are 8 bytes big-endian):
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `msgs`  | conv ‖ seq | from, ts, client id, body |
//! | `inbox` | user ‖ useq | conv ‖ seq (a pointer into `msgs`) |
//! | `marks` | user ‖ conv | ack, read |
//! | `idem`  | user ‖ client id | conv, seq, useq, ts of the first send |
//! | `groups` | group | name, admin, members |
//! | `pushes` | user ‖ device | platform, token |
//! | `dead`  | id | a push that failed for good |
//! | `meta`  | name | counters: last group id, last dead-letter id; the key format |
//!
//! conv is `d` ‖ lo ‖ hi or `g` ‖ group.

use foldhash::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use fjall::compaction::filter::Factory;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::rules::{Marks, unread};
use super::sequencing::{self, ConvMeta, IdemRecord, WriteTables, decode, encode};
use super::{
    AppendRequest, Appended, ConvSummary, DeadLetter, Group, GroupStore, InboxItem, MarkOutcome,
    Marker, MemberChange, MessageStore, PushRegistration, PushStore, StorageReport, StoreError,
    StoreOptions, StoredMessage,
};
use crate::model::{ConvId, UserId};

mod keys;
mod maintenance;
mod readers;
#[cfg(test)]
mod tests;
mod tuning;
mod writer;

pub use self::tuning::FjallTuning;

use self::keys::{
    conv_key, idem_key, inbox_key, inbox_useq, marks_conv, marks_key, msg_key, push_key,
    split_msg_key, user_key,
};
use self::maintenance::{IdemExpiry, allocated_bytes};
use self::readers::Readers;
use self::writer::{Completion, Job, Wait, Writer};

/// The fjall store.
pub struct FjallStore {
    tables: Arc<Tables>,
    readers: Readers,
    writer: Writer,
}

struct Tables {
    path: std::path::PathBuf,
    /// The idempotency window, in ms.
    window_ms: u64,
    db: Database,
    msgs: Keyspace,
    inbox: Keyspace,
    marks: Keyspace,
    idem: Keyspace,
    groups: Keyspace,
    pushes: Keyspace,
    dead: Keyspace,
    meta: Keyspace,
    /// The memtable size the keyspaces were opened with.
    memtable_bytes: u64,
}

const META_LAST_GROUP: &[u8] = b"last_group";
const META_LAST_DEAD: &[u8] = b"last_dead";
/// The memtable size the keyspaces were created with ([`memtable_size`]).
const META_MEMTABLE_BYTES: &[u8] = b"memtable_bytes";

/// The memtable size the store's keyspaces keep. fjall stores it with each keyspace when
/// it creates it and ignores the size asked for on a later open, so the store records it
/// beside them: a spec that asks for another size is told so, and the memory the store
/// reports ([`MessageStore::memory`]) has the size in force. A directory created before
/// the record was kept reports the size asked for.
fn memtable_size(
    meta: &Keyspace,
    created: bool,
    tuning: &FjallTuning,
    path: &Path,
) -> Result<u64, StoreError> {
    let asked = tuning.memtable_bytes();
    if created {
        meta.insert(META_MEMTABLE_BYTES, encode(&asked))
            .map_err(unavailable)?;
        return Ok(asked);
    }
    let kept = get(meta, META_MEMTABLE_BYTES)?
        .map(|v| decode::<u64>(&v, "memtable size"))
        .transpose()?;
    match kept {
        Some(kept) => {
            if tuning.memtable_bytes.is_some_and(|b| b != kept) {
                tracing::warn!(
                    path = %path.display(),
                    asked,
                    kept,
                    "memtable_bytes applies to a new store directory: this one keeps the size it was created with"
                );
            }
            Ok(kept)
        }
        None => Ok(asked),
    }
}

/// Whether a job's error keeps its batch from committing: it may have written part of its
/// work (a refusal is raised before anything is written).
fn poisons(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_) | StoreError::Corrupt(_))
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl FjallStore {
    /// Opens (or creates) the store in `path` with the default options and starts its
    /// writer thread. Blocking: call it from a blocking context.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, &StoreOptions::default())
    }

    /// Opens (or creates) the store in `path`; idempotency records older than the options'
    /// window are dropped by compaction ([`IdemExpiry`]). Blocking.
    pub fn open_with(path: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        Self::open_tuned(path, options, &FjallTuning::default())
    }

    /// [`Self::open_with`], with fjall's sizes as `tuning` sets them. Blocking.
    pub fn open_tuned(
        path: &Path,
        options: &StoreOptions,
        tuning: &FjallTuning,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(unavailable)?;
        let window_ms = u64::try_from(options.idempotency_window.as_millis()).unwrap_or(u64::MAX);
        let expiry: Arc<dyn Factory> = Arc::new(IdemExpiry { window_ms });
        let db = Database::builder(path)
            // We decide when the journal is fsynced: once per batch, before answering.
            .manual_journal_persist(true)
            .with_compaction_filter_factories(Arc::new(move |keyspace: &str| {
                (keyspace == "idem").then(|| expiry.clone())
            }))
            .open()
            .map_err(unavailable)?;
        let created = !db.keyspace_exists("msgs");
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(tuning.memtable_bytes())
            })
        };
        let meta = ks("meta").map_err(unavailable)?;
        let memtable_bytes = memtable_size(&meta, created, tuning, path)?;
        let tables = Arc::new(Tables {
            msgs: ks("msgs").map_err(unavailable)?,
            inbox: ks("inbox").map_err(unavailable)?,
            marks: ks("marks").map_err(unavailable)?,
            idem: ks("idem").map_err(unavailable)?,
            groups: ks("groups").map_err(unavailable)?,
            pushes: ks("pushes").map_err(unavailable)?,
            dead: ks("dead").map_err(unavailable)?,
            meta,
            db,
            path: path.to_owned(),
            window_ms,
            memtable_bytes,
        });
        tables.check_format()?;
        let readers = Readers::start(tuning.read_threads())?;
        let writer = Writer::start(tables.clone(), tuning.commit_interval())?;
        Ok(FjallStore {
            tables,
            readers,
            writer,
        })
    }

    /// Deletes the idempotency records older than the window, on the writer thread: a
    /// record written again meanwhile (an id re-sent after its record expired) is kept.
    async fn expire_idempotency(&self) -> Result<u64, StoreError> {
        let window_ms = self.tables.window_ms;
        self.write(move |b| {
            let cutoff = crate::model::now_ms().saturating_sub(window_ms);
            let mut expired = Vec::new();
            for g in b.t.idem.iter() {
                let (k, v) = g.into_inner().map_err(unavailable)?;
                let old =
                    decode::<IdemRecord>(&v, "idempotency record").is_ok_and(|r| r.ts < cutoff);
                if old && !b.has_fresh_idem(&k) {
                    expired.push(k);
                }
            }
            let n = expired.len() as u64;
            for k in expired {
                b.wb.remove(&b.t.idem, k);
            }
            Ok(n)
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tables) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let tables = self.tables.clone();
        self.readers.run(move || f(&tables)).await
    }

    /// Runs `f` on the writer thread inside the next batch and answers once that batch is
    /// durable. Refusals ([`StoreError::Refused`]) must be raised
    /// before `f` writes anything; any other error keeps the whole batch from committing.
    async fn write<T: Send + 'static>(
        &self,
        f: impl for<'a> FnOnce(&mut Batch<'a>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(Wait::Fsync, f).await
    }

    /// [`Self::write`] for sends: a lone one commits and fsyncs on this thread while the
    /// writer's is idle and fsyncs are quick ([`writer::Inline::commit_synced`]); sends
    /// that come closer together share the writer's batches.
    async fn write_send<T: Send + 'static>(
        &self,
        f: impl for<'a> Fn(&mut Batch<'a>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let Some(done) = self.writer.claim_idle().and_then(|w| w.commit_synced(&f)) {
            return done;
        }
        self.write(f).await
    }

    /// [`Self::write`], answered once the batch is as durable as `wait` says.
    async fn write_with<T: Send + 'static>(
        &self,
        wait: Wait,
        f: impl for<'a> FnOnce(&mut Batch<'a>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            wait,
            apply: Box::new(move |batch| {
                let result = f(batch);
                let poisoned = result.as_ref().err().is_some_and(poisons);
                Completion {
                    poisoned,
                    answer: Box::new(move |committed| {
                        let _ = tx.send(committed.and(result));
                    }),
                }
            }),
        };
        self.writer.submit(job)?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?
    }
}

/// Entries the writer's cache holds before it starts afresh (between batches).
///
/// The bound is on memory: a marker entry takes about 73 bytes of its map's table, and a
/// map's table doubles as it grows, holding the old and the new table at once while it
/// rehashes. At 32 Ki entries the maps stay under about 9 MiB in all. At the source
/// design's per-node load (`seed-node`: 10 K users, ten contacts each) the working set is
/// about 100 K (user, conversation) pairs: the markers alone took 10 MiB, more while a
/// table grew, and a bound of a million let them grow with the users a node serves to
/// about 150 MiB. Bounded, the same run's server grew 0.9 KiB less per connection, for
/// point reads that cost a few microseconds a message at that rate. A saturating load
/// over few conversations (the peer benchmark's 500 pairs use about 3 K entries) never
/// reaches the bound.
const CACHE_ENTRIES: usize = 1 << 15;

/// What the writer knows of the counters and markers, so a send needs no point lookups
/// for them: the writer is the only one who changes them, so its copy is the truth. A
/// miss reads the tree; the copy is dropped after a failed commit.
#[derive(Default)]
struct WriterCache {
    /// Last seq and time per conversation (derived from its newest message on a miss).
    convs: HashMap<ConvId, ConvMeta>,
    /// Last useq per user (derived from the newest inbox entry on a miss).
    users: HashMap<UserId, u64>,
    /// Markers per (user, conversation); `None` caches an absent entry.
    marks: HashMap<(UserId, ConvId), Option<Marks>>,
    groups: HashMap<u64, Group>,
    last_group: Option<u64>,
    last_dead: Option<u64>,
}

impl WriterCache {
    fn len(&self) -> usize {
        self.convs.len() + self.users.len() + self.marks.len() + self.groups.len()
    }

    /// Makes room before a batch, by the writer thread or an inline commit: past
    /// [`CACHE_ENTRIES`], the cache starts afresh.
    fn make_room(&mut self) {
        if self.len() > CACHE_ENTRIES {
            self.clear();
        }
    }

    /// Forgets every entry and keeps the maps' tables: a cache that filled up fills up
    /// again, and regrowing the tables would rehash each of them all over again.
    fn clear(&mut self) {
        self.convs.clear();
        self.users.clear();
        self.marks.clear();
        self.groups.clear();
        self.last_group = None;
        self.last_dead = None;
    }
}

/// One write batch. Requests of the same batch see each other's writes through the
/// writer's cache (counters, markers, groups) and the batch's own idempotency records and
/// messages, before anything is committed.
struct Batch<'a> {
    t: &'a Tables,
    wb: OwnedWriteBatch,
    cache: &'a mut WriterCache,
    /// Idempotency records written in this batch, by their key in `idem`.
    idem: HashMap<Vec<u8>, IdemRecord>,
    /// (conversation, seq, sender) of the messages written in this batch.
    msgs: Vec<(ConvId, u64, UserId)>,
    /// Markers this batch changed, written once each when it commits ([`Batch::finish`]):
    /// a device's pipelined sends move the sender's marker once per send.
    marks: HashSet<(UserId, ConvId)>,
    /// The batch's messages, inbox entries and idempotency records, put in the write
    /// batch in key order when it commits ([`Batch::finish`]).
    sorted: [Vec<(fjall::Slice, fjall::Slice)>; 3],
    /// Reads of the tree are refused: the batch runs on the caller's thread
    /// ([`writer::Inline`]), which must not wait on the disk.
    cached_only: bool,
    /// A read of the tree was refused.
    missed: bool,
}

/// The tables whose writes a batch sorts: most of a send's memtable inserts.
#[derive(Clone, Copy)]
enum Sorted {
    Msgs = 0,
    Inbox = 1,
    Idem = 2,
}

impl Sorted {
    const ALL: [Sorted; 3] = [Sorted::Msgs, Sorted::Inbox, Sorted::Idem];

    fn table(self, t: &Tables) -> &Keyspace {
        match self {
            Sorted::Msgs => &t.msgs,
            Sorted::Inbox => &t.inbox,
            Sorted::Idem => &t.idem,
        }
    }
}

impl<'a> Batch<'a> {
    /// Whether this batch wrote the idempotency record stored under `key`.
    fn has_fresh_idem(&self, key: &[u8]) -> bool {
        self.idem.contains_key(key)
    }

    /// A batch with room for `items` writes (the last batch's count: growing the write
    /// list item by item copies it over and over at high rates).
    fn new(t: &'a Tables, cache: &'a mut WriterCache, items: usize) -> Self {
        Batch {
            t,
            wb: OwnedWriteBatch::with_capacity(t.db.clone(), items),
            cache,
            idem: HashMap::default(),
            msgs: Vec::new(),
            marks: HashSet::default(),
            sorted: Default::default(),
            cached_only: false,
            missed: false,
        }
    }

    /// A batch of one write that may read only the writer's cache ([`Self::tree`]).
    fn cached_only(t: &'a Tables, cache: &'a mut WriterCache) -> Self {
        Batch {
            cached_only: true,
            ..Batch::new(t, cache, 0)
        }
    }

    /// Whether a read of the tree was refused: the batch must not commit.
    fn missed(&self) -> bool {
        self.missed
    }

    /// The tables, for a read the cache could not answer; refused in a cached-only batch.
    /// A marker, the one write such a batch runs, reads all it needs before it writes, so
    /// a refused read leaves it having written nothing, and it goes to the writer thread.
    fn tree(&mut self) -> Result<&'a Tables, StoreError> {
        if self.cached_only {
            self.missed = true;
            return Err(StoreError::Unavailable(
                "a read of the tree in a cached-only batch".into(),
            ));
        }
        Ok(self.t)
    }

    /// Queues a write to one of the [`Sorted`] tables.
    fn put_sorted(&mut self, table: Sorted, key: &[u8], value: impl Into<fjall::Slice>) {
        self.sorted[table as usize].push((key.into(), value.into()));
    }

    /// Writes the markers the batch changed, each as it stands last, and the sorted
    /// tables' writes in key order; the batch is then ready to commit.
    ///
    /// Key order is for the memtables: each insert searches a skiplist from its head,
    /// and a search that follows the previous one's path finds its nodes in the CPU's
    /// caches, where a batch in arrival order (conversations interleaved) missed them.
    /// The sort is stable, so two writes of one key keep their order.
    fn finish(&mut self) {
        for table in Sorted::ALL {
            let writes = &mut self.sorted[table as usize];
            writes.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, value) in writes.drain(..) {
                self.wb.insert(table.table(self.t), key, value);
            }
        }
        for (user, conv) in self.marks.drain() {
            let key = marks_key(user, conv);
            match self.cache.marks.get(&(user, conv)) {
                Some(Some(marks)) => self.wb.insert(&self.t.marks, &*key, encode(marks)),
                _ => self.wb.remove(&self.t.marks, &*key),
            }
        }
    }
}

/// Applies each send of `reqs` to `b`. A failed read may leave part of a request written:
/// none of the batch may commit then (its writer answers all of it `unavailable`).
fn append_each(
    b: &mut Batch<'_>,
    reqs: &[AppendRequest],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let out: Vec<_> = reqs.iter().map(|req| sequencing::append(b, req)).collect();
    match out
        .iter()
        .find_map(|r| r.as_ref().err().filter(|e| poisons(e)))
    {
        Some(e) => Err(StoreError::Unavailable(e.to_string())),
        None => Ok(out),
    }
}

fn get(ks: &Keyspace, key: &[u8]) -> Result<Option<fjall::Slice>, StoreError> {
    ks.get(key).map_err(unavailable)
}

impl WriteTables for Batch<'_> {
    fn idem_get(&mut self, user: UserId, id: &str) -> Result<Option<IdemRecord>, StoreError> {
        let key = idem_key(user, id);
        if let Some(r) = self.idem.get(&key) {
            return Ok(Some(*r));
        }
        get(&self.tree()?.idem, &key)?
            .map(|v| decode(&v, "idempotency record"))
            .transpose()
    }
    fn idem_put(&mut self, user: UserId, id: &str, rec: IdemRecord) {
        let key = idem_key(user, id);
        self.put_sorted(Sorted::Idem, &key, encode(&rec));
        self.idem.insert(key, rec);
    }
    fn conv_get(&mut self, conv: ConvId) -> Result<ConvMeta, StoreError> {
        if let Some(m) = self.cache.convs.get(&conv) {
            return Ok(*m);
        }
        let meta = self.tree()?.conv_meta(conv)?;
        self.cache.convs.insert(conv, meta);
        Ok(meta)
    }
    fn conv_put(&mut self, conv: ConvId, meta: ConvMeta) {
        // Nothing to write: the conversation's newest message carries its seq and time.
        self.cache.convs.insert(conv, meta);
    }
    fn last_useq(&mut self, user: UserId) -> Result<u64, StoreError> {
        if let Some(u) = self.cache.users.get(&user) {
            return Ok(*u);
        }
        let useq = self.tree()?.inbox_head(user)?;
        self.cache.users.insert(user, useq);
        Ok(useq)
    }
    fn last_useq_put(&mut self, user: UserId, useq: u64) {
        // Nothing to write: the newest inbox entry carries it.
        self.cache.users.insert(user, useq);
    }
    fn marks_get(&mut self, user: UserId, conv: ConvId) -> Result<Option<Marks>, StoreError> {
        if let Some(m) = self.cache.marks.get(&(user, conv)) {
            return Ok(*m);
        }
        let marks = get(&self.tree()?.marks, &marks_key(user, conv))?
            .map(|v| decode(&v, "marker record"))
            .transpose()?;
        self.cache.marks.insert((user, conv), marks);
        Ok(marks)
    }
    fn marks_put(&mut self, user: UserId, conv: ConvId, marks: Marks) {
        self.cache.marks.insert((user, conv), Some(marks));
        self.marks.insert((user, conv));
    }
    fn message_put(&mut self, msg: &StoredMessage) {
        let value = MsgValue {
            from: msg.from,
            ts: msg.ts,
            id: &msg.id,
            body: &msg.body,
        };
        self.put_sorted(Sorted::Msgs, &msg_key(msg.conv, msg.seq), encode(&value));
        self.msgs.push((msg.conv, msg.seq, msg.from));
    }
    fn count_from(
        &mut self,
        conv: ConvId,
        after: u64,
        upto: u64,
        user: UserId,
    ) -> Result<u64, StoreError> {
        if after >= upto {
            return Ok(0);
        }
        // Messages of this batch are not in the tree yet; those in the tree are not here.
        let mut n = sequencing::own_pending(&self.msgs, conv, after, upto, user);
        for g in self
            .tree()?
            .msgs
            .range(msg_key(conv, after + 1)..=msg_key(conv, upto))
        {
            let (k, v) = g.into_inner().map_err(unavailable)?;
            if decode_message(&k, &v)?.from == user {
                n += 1;
            }
        }
        Ok(n)
    }
    fn inbox_put(&mut self, user: UserId, useq: u64, conv: ConvId, seq: u64) {
        self.put_sorted(Sorted::Inbox, &inbox_key(user, useq), &*msg_key(conv, seq));
    }
    fn marks_remove(&mut self, user: UserId, conv: ConvId) {
        self.cache.marks.insert((user, conv), None);
        self.marks.insert((user, conv));
    }
    fn group_get(&mut self, id: u64) -> Result<Option<Group>, StoreError> {
        if let Some(g) = self.cache.groups.get(&id) {
            return Ok(Some(g.clone()));
        }
        let group = self.tree()?.group(id)?;
        if let Some(g) = &group {
            self.cache.groups.insert(id, g.clone());
        }
        Ok(group)
    }
    fn group_put(&mut self, group: &Group) {
        self.wb
            .insert(&self.t.groups, group.id.to_be_bytes(), encode(group));
        self.cache.groups.insert(group.id, group.clone());
    }
    fn last_group_id(&mut self) -> Result<u64, StoreError> {
        match self.cache.last_group {
            Some(id) => Ok(id),
            None => self.tree()?.counter(META_LAST_GROUP),
        }
    }
    fn last_group_id_put(&mut self, id: u64) {
        self.wb.insert(&self.t.meta, META_LAST_GROUP, encode(&id));
        self.cache.last_group = Some(id);
    }
}

impl Batch<'_> {
    /// Hands out the next dead-letter id.
    fn next_dead_id(&mut self) -> Result<u64, StoreError> {
        let id = match self.cache.last_dead {
            Some(id) => id,
            None => self.tree()?.counter(META_LAST_DEAD)?,
        } + 1;
        self.wb.insert(&self.t.meta, META_LAST_DEAD, encode(&id));
        self.cache.last_dead = Some(id);
        Ok(id)
    }
}

/// The stored value of a message; the conversation and seq are in the key.
#[derive(Serialize, Deserialize)]
struct MsgValue<'a> {
    from: UserId,
    ts: u64,
    id: &'a str,
    body: &'a str,
}

fn decode_message(key: &[u8], value: &[u8]) -> Result<StoredMessage, StoreError> {
    let (conv, seq) = split_msg_key(key)?;
    let v: MsgValue = decode(value, "message")?;
    Ok(StoredMessage {
        conv,
        seq,
        from: v.from,
        id: v.id.to_owned(),
        body: v.body.to_owned(),
        ts: v.ts,
    })
}

impl Tables {
    /// Makes sure the directory's keys are laid out as this version reads them: a new
    /// directory is marked with [`keys::FORMAT`]; one written by a version with another
    /// layout is refused with what it holds left untouched (reading it with these keys
    /// would find no messages and hand out seq 1 again).
    fn check_format(&self) -> Result<(), StoreError> {
        let found = get(&self.meta, keys::FORMAT_KEY)?
            .map(|v| decode::<u32>(&v, "key format"))
            .transpose()?;
        let format = match found {
            Some(f) => f,
            None => {
                let holds_data = [
                    &self.msgs,
                    &self.inbox,
                    &self.marks,
                    &self.idem,
                    &self.pushes,
                ]
                .iter()
                .any(|ks| ks.first_key_value().is_some());
                if !holds_data {
                    self.meta
                        .insert(keys::FORMAT_KEY, encode(&keys::FORMAT))
                        .and_then(|()| self.db.persist(fjall::PersistMode::SyncAll))
                        .map_err(unavailable)?;
                    return Ok(());
                }
                1
            }
        };
        if format == keys::FORMAT {
            return Ok(());
        }
        Err(StoreError::Unavailable(format!(
            "{}: this fjall directory uses key format {format}, this server reads format {} \
             (serve it with the version that wrote it, or start from a new directory)",
            self.path.display(),
            keys::FORMAT
        )))
    }

    /// A conversation's last seq and time: those of its newest message.
    fn conv_meta(&self, conv: ConvId) -> Result<ConvMeta, StoreError> {
        match self.msgs.prefix(conv_key(conv)).next_back() {
            None => Ok(ConvMeta::default()),
            Some(g) => {
                let (k, v) = g.into_inner().map_err(unavailable)?;
                let m = decode_message(&k, &v)?;
                Ok(ConvMeta {
                    last_seq: m.seq,
                    last_ts: m.ts,
                })
            }
        }
    }

    /// A user's last useq: that of the newest inbox entry.
    fn inbox_head(&self, user: UserId) -> Result<u64, StoreError> {
        match self.inbox.prefix(user_key(user)).next_back() {
            None => Ok(0),
            Some(g) => inbox_useq(&g.key().map_err(unavailable)?),
        }
    }

    fn group(&self, id: u64) -> Result<Option<Group>, StoreError> {
        get(&self.groups, &id.to_be_bytes())?
            .map(|v| decode(&v, "group record"))
            .transpose()
    }

    fn counter(&self, name: &[u8]) -> Result<u64, StoreError> {
        Ok(get(&self.meta, name)?
            .map(|v| decode(&v, "counter"))
            .transpose()?
            .unwrap_or(0))
    }

    fn message(&self, key: &[u8]) -> Result<StoredMessage, StoreError> {
        let value = get(&self.msgs, key)?
            .ok_or_else(|| StoreError::Corrupt("inbox entry points at no message".into()))?;
        decode_message(key, &value)
    }
}

#[async_trait]
impl MessageStore for FjallStore {
    fn name(&self) -> &'static str {
        "fjall"
    }

    async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        self.write_send(move |b| sequencing::append(b, &req)).await
    }

    async fn append_all(&self, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        let n = reqs.len();
        if n == 0 {
            return Vec::new();
        }
        let batch = self.write_send(move |b| append_each(b, &reqs)).await;
        batch.unwrap_or_else(|e| {
            (0..n)
                .map(|_| Err(StoreError::Unavailable(e.to_string())))
                .collect()
        })
    }

    async fn history(
        &self,
        conv: ConvId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |t| {
            let start = msg_key(conv, 0);
            let end = msg_key(conv, before.unwrap_or(u64::MAX));
            t.msgs
                .range(start..end)
                .rev()
                .take(limit)
                .map(|g| {
                    let (k, v) = g.into_inner().map_err(unavailable)?;
                    decode_message(&k, &v)
                })
                .collect()
        })
        .await
    }

    async fn inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        self.read(move |t| {
            let start = inbox_key(user, after.saturating_add(1));
            let end = inbox_key(user, u64::MAX);
            t.inbox
                .range(start..=end)
                .take(limit)
                .map(|g| {
                    let (k, v) = g.into_inner().map_err(unavailable)?;
                    let useq = inbox_useq(&k)?;
                    Ok(InboxItem {
                        useq,
                        msg: t.message(&v)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn inbox_head(&self, user: UserId) -> Result<u64, StoreError> {
        self.read(move |t| t.inbox_head(user)).await
    }

    async fn mark(
        &self,
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    ) -> Result<MarkOutcome, StoreError> {
        // A marker is derived state a device sends again: it waits for the journal, not
        // for the fsync (see `Wait::Journal`), and it may commit on this thread while the
        // writer's is idle (see `Writer::claim_idle`).
        let mark = move |b: &mut Batch<'_>| sequencing::mark(b, user, conv, marker, seq);
        if let Some(done) = self.writer.claim_idle().and_then(|w| w.commit(mark)) {
            return done;
        }
        self.write_with(Wait::Journal, mark).await
    }

    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConvSummary>, StoreError> {
        self.read(move |t| {
            let mut list = Vec::new();
            for g in t.marks.prefix(user_key(user)) {
                let (k, v) = g.into_inner().map_err(unavailable)?;
                let conv = marks_conv(&k)?;
                let marks: Marks = decode(&v, "marker record")?;
                let meta = t.conv_meta(conv)?;
                list.push(ConvSummary {
                    conv,
                    last_seq: meta.last_seq,
                    last_ts: meta.last_ts,
                    read_seq: marks.read,
                    ack_seq: marks.ack,
                    unread: unread(meta.last_seq, &marks),
                });
            }
            super::sort_recent_first(&mut list);
            list.truncate(limit);
            Ok(list)
        })
        .await
    }

    async fn disk_bytes(&self) -> Result<Option<u64>, StoreError> {
        // Walk the directory for the blocks really allocated (what `du` reports): fjall's
        // own figure counts the journal's 64 MiB sparse pre-allocation as used.
        self.read(|t| allocated_bytes(&t.path).map(Some).map_err(unavailable))
            .await
    }

    /// The live tables of each keyspace (fjall's current version), the journal's blocks
    /// apart, and the rest of the directory as `unaccounted`: the parts add up to
    /// [`MessageStore::disk_bytes`]. Counting the logical bytes scans every keyspace:
    /// for measurements, not for the serving path.
    async fn storage(&self) -> Result<Option<StorageReport>, StoreError> {
        self.read(|t| t.storage().map(Some)).await
    }

    /// Deletes the expired idempotency records, flushes every keyspace's memtable to a
    /// table and compacts each keyspace into one sorted run, then waits briefly for fjall
    /// to retire the journals nothing needs any more. (While serving, compaction drops
    /// expired records by itself; a store that is not written does not compact, hence the
    /// explicit deletion here.)
    async fn settle(&self) -> Result<(), StoreError> {
        self.expire_idempotency().await?;
        self.read(|t| t.settle()).await
    }

    /// The memtables' size as fjall counts it, and their bound: every keyspace's memtable
    /// at the size it was created with ([`memtable_size`]). The size and the cache's
    /// capacity come from fjall's unstable accessors.
    fn memory(&self) -> Option<crate::store::StoreMemory> {
        let t = &self.tables;
        Some(crate::store::StoreMemory {
            tables_bytes: t.db.write_buffer_size(),
            tables_limit_bytes: t
                .memtable_bytes
                .saturating_mul(t.db.keyspace_count() as u64),
            cache_capacity_bytes: t.db.cache_capacity(),
        })
    }

    fn writer_counts(&self) -> Option<crate::store::WriterCounts> {
        Some(self.writer.writer_counts())
    }
}

#[async_trait]
impl GroupStore for FjallStore {
    async fn create_group(
        &self,
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    ) -> Result<Group, StoreError> {
        self.write(move |b| sequencing::create_group(b, &name, admin, &members))
            .await
    }

    async fn group(&self, id: u64) -> Result<Option<Group>, StoreError> {
        self.read(move |t| t.group(id)).await
    }

    async fn change_members(&self, group: u64, change: MemberChange) -> Result<Group, StoreError> {
        self.write(move |b| sequencing::change_members(b, group, change))
            .await
    }
}

#[async_trait]
impl PushStore for FjallStore {
    async fn put_push(&self, reg: PushRegistration) -> Result<(), StoreError> {
        self.write(move |b| {
            let key = push_key(reg.user, reg.device.as_str());
            b.wb.insert(&b.t.pushes, key, encode(&reg));
            Ok(())
        })
        .await
    }

    async fn pushes(&self, user: UserId) -> Result<Vec<PushRegistration>, StoreError> {
        self.read(move |t| {
            t.pushes
                .prefix(user_key(user))
                .map(|g| {
                    let (_, v) = g.into_inner().map_err(unavailable)?;
                    decode(&v, "push registration")
                })
                .collect()
        })
        .await
    }

    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<u64, StoreError> {
        self.write(move |b| {
            let id = b.next_dead_id()?;
            b.wb.insert(&b.t.dead, id.to_be_bytes(), encode(&letter));
            Ok(id)
        })
        .await
    }

    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        self.read(move |t| {
            t.dead
                .range(after.saturating_add(1).to_be_bytes()..)
                .take(limit)
                .map(|g| {
                    let (k, v) = g.into_inner().map_err(unavailable)?;
                    let id = <[u8; 8]>::try_from(&*k)
                        .map(u64::from_be_bytes)
                        .map_err(|_| StoreError::Corrupt("bad dead-letter key".into()))?;
                    Ok((id, decode(&v, "dead letter")?))
                })
                .collect()
        })
        .await
    }

    async fn remove_dead_letter(&self, id: u64) -> Result<(), StoreError> {
        self.write(move |b| {
            b.wb.remove(&b.t.dead, id.to_be_bytes());
            Ok(())
        })
        .await
    }
}
