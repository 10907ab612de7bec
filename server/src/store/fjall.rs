//! The embedded, durable default backend: fjall, an LSM-tree with a write-ahead journal.
//!
//! Writes go through one writer thread. It takes every request waiting in its queue,
//! applies them to one write batch (sequencing them with the shared rules of
//! [`super::logic`]), commits the batch and fsyncs the journal once, and only then answers
//! every request of the batch. Many concurrent sends therefore share one fsync (group
//! commit), and the single writer is the per-store sequencer that keeps `seq` and `useq`
//! gap-free. Reads go straight to the LSM-tree from a blocking thread.
//!
//! Key layout (all integers big-endian, so byte order is numeric order):
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `msgs`  | conv ‖ seq (= conv ‖ bucket ‖ offset) | from, ts, client id, body |
//! | `inbox` | user ‖ useq | conv ‖ seq (a pointer into `msgs`) |
//! | `marks` | user ‖ conv | ack, read |
//! | `convs` | conv | last seq, last ts |
//! | `users` | user | last useq |
//! | `idem`  | user ‖ client id | conv, seq, useq, ts of the first send |
//!
//! conv is `d` ‖ lo ‖ hi or `g` ‖ group.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::logic::{self, ConvMeta, IdemRecord, Marks, WriteTables, decode, encode, unread};
use super::{
    AppendRequest, Appended, ConvSummary, InboxItem, MarkOutcome, Marker, Store, StoreError,
    StoredMessage,
};
use crate::model::{ConvId, UserId};

/// How many queued writes one batch (one fsync) takes at most.
const MAX_BATCH: usize = 4096;

/// The fjall store.
pub struct FjallStore {
    tables: Arc<Tables>,
    writer: mpsc::UnboundedSender<WriteOp>,
}

struct Tables {
    path: std::path::PathBuf,
    db: Database,
    msgs: Keyspace,
    inbox: Keyspace,
    marks: Keyspace,
    convs: Keyspace,
    users: Keyspace,
    idem: Keyspace,
}

enum WriteOp {
    Append(
        Box<AppendRequest>,
        oneshot::Sender<Result<Appended, StoreError>>,
    ),
    Mark {
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
        reply: oneshot::Sender<Result<MarkOutcome, StoreError>>,
    },
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl FjallStore {
    /// Opens (or creates) the store in `path` and starts its writer thread. Blocking: call
    /// it from a blocking context.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(unavailable)?;
        let db = Database::builder(path)
            // We decide when the journal is fsynced: once per batch, before answering.
            .manual_journal_persist(true)
            .open()
            .map_err(unavailable)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        let tables = Arc::new(Tables {
            msgs: ks("msgs").map_err(unavailable)?,
            inbox: ks("inbox").map_err(unavailable)?,
            marks: ks("marks").map_err(unavailable)?,
            convs: ks("convs").map_err(unavailable)?,
            users: ks("users").map_err(unavailable)?,
            idem: ks("idem").map_err(unavailable)?,
            db,
            path: path.to_owned(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_tables = tables.clone();
        std::thread::Builder::new()
            .name("fjall-writer".into())
            .spawn(move || writer_loop(&writer_tables, rx))
            .map_err(unavailable)?;
        Ok(FjallStore { tables, writer: tx })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tables) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let tables = self.tables.clone();
        tokio::task::spawn_blocking(move || f(&tables))
            .await
            .map_err(unavailable)?
    }

    async fn write<T>(
        &self,
        op: WriteOp,
        rx: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.writer
            .send(op)
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?
    }
}

/// The writer thread: batch, apply, commit, fsync, answer. It ends when the store (the
/// last sender) is dropped.
fn writer_loop(t: &Tables, mut rx: mpsc::UnboundedReceiver<WriteOp>) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    while let Some(op) = rx.blocking_recv() {
        ops.push(op);
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut batch = Batch::new(t);
        let mut results = Vec::with_capacity(ops.len());
        for op in &ops {
            results.push(match op {
                WriteOp::Append(req, _) => logic::append(&mut batch, req).map(Done::Appended),
                WriteOp::Mark {
                    user,
                    conv,
                    marker,
                    seq,
                    ..
                } => logic::mark(&mut batch, *user, *conv, *marker, *seq).map(Done::Marked),
            });
        }
        let committed = batch
            .wb
            .commit()
            .and_then(|()| t.db.persist(PersistMode::SyncAll));
        if let Err(e) = &committed {
            tracing::error!(error = %e, "fjall commit failed; the batch is answered unavailable");
        }
        for (op, result) in ops.drain(..).zip(results) {
            let result = match &committed {
                Ok(()) => result,
                Err(e) => Err(unavailable(e)),
            };
            match (op, result) {
                (WriteOp::Append(_, reply), Ok(Done::Appended(a))) => {
                    let _ = reply.send(Ok(a));
                }
                (WriteOp::Mark { reply, .. }, Ok(Done::Marked(m))) => {
                    let _ = reply.send(Ok(m));
                }
                (WriteOp::Append(_, reply), Err(e)) => {
                    let _ = reply.send(Err(e));
                }
                (WriteOp::Mark { reply, .. }, Err(e)) => {
                    let _ = reply.send(Err(e));
                }
                (_, Ok(_)) => unreachable!("each operation yields its own kind of result"),
            }
        }
    }
}

enum Done {
    Appended(Appended),
    Marked(MarkOutcome),
}

/// One write batch with a read-your-writes overlay: later requests of the same batch must
/// see the counters earlier ones moved, before anything is committed.
struct Batch<'a> {
    t: &'a Tables,
    wb: OwnedWriteBatch,
    idem: HashMap<(UserId, String), IdemRecord>,
    convs: HashMap<ConvId, ConvMeta>,
    users: HashMap<UserId, u64>,
    marks: HashMap<(UserId, ConvId), Marks>,
    /// (conversation, seq, sender) of the messages written in this batch.
    msgs: Vec<(ConvId, u64, UserId)>,
}

impl<'a> Batch<'a> {
    fn new(t: &'a Tables) -> Self {
        Batch {
            t,
            wb: t.db.batch(),
            idem: HashMap::new(),
            convs: HashMap::new(),
            users: HashMap::new(),
            marks: HashMap::new(),
            msgs: Vec::new(),
        }
    }
}

fn get(ks: &Keyspace, key: &[u8]) -> Result<Option<fjall::Slice>, StoreError> {
    ks.get(key).map_err(unavailable)
}

impl WriteTables for Batch<'_> {
    fn idem_get(&mut self, user: UserId, id: &str) -> Result<Option<IdemRecord>, StoreError> {
        if let Some(r) = self.idem.get(&(user, id.to_owned())) {
            return Ok(Some(*r));
        }
        get(&self.t.idem, &idem_key(user, id))?
            .map(|v| decode(&v, "idempotency record"))
            .transpose()
    }
    fn idem_put(&mut self, user: UserId, id: &str, rec: IdemRecord) {
        self.wb
            .insert(&self.t.idem, idem_key(user, id), encode(&rec));
        self.idem.insert((user, id.to_owned()), rec);
    }
    fn conv_get(&mut self, conv: ConvId) -> Result<ConvMeta, StoreError> {
        if let Some(m) = self.convs.get(&conv) {
            return Ok(*m);
        }
        Ok(get(&self.t.convs, &conv_key(conv))?
            .map(|v| decode(&v, "conversation record"))
            .transpose()?
            .unwrap_or_default())
    }
    fn conv_put(&mut self, conv: ConvId, meta: ConvMeta) {
        self.wb.insert(&self.t.convs, conv_key(conv), encode(&meta));
        self.convs.insert(conv, meta);
    }
    fn last_useq(&mut self, user: UserId) -> Result<u64, StoreError> {
        if let Some(u) = self.users.get(&user) {
            return Ok(*u);
        }
        Ok(get(&self.t.users, &user.to_be_bytes())?
            .map(|v| decode(&v, "user record"))
            .transpose()?
            .unwrap_or(0))
    }
    fn last_useq_put(&mut self, user: UserId, useq: u64) {
        self.wb
            .insert(&self.t.users, user.to_be_bytes(), encode(&useq));
        self.users.insert(user, useq);
    }
    fn marks_get(&mut self, user: UserId, conv: ConvId) -> Result<Option<Marks>, StoreError> {
        if let Some(m) = self.marks.get(&(user, conv)) {
            return Ok(Some(*m));
        }
        get(&self.t.marks, &marks_key(user, conv))?
            .map(|v| decode(&v, "marker record"))
            .transpose()
    }
    fn marks_put(&mut self, user: UserId, conv: ConvId, marks: Marks) {
        self.wb
            .insert(&self.t.marks, marks_key(user, conv), encode(&marks));
        self.marks.insert((user, conv), marks);
    }
    fn message_put(&mut self, msg: &StoredMessage) {
        let value = MsgValue {
            from: msg.from,
            ts: msg.ts,
            id: &msg.id,
            body: &msg.body,
        };
        self.wb
            .insert(&self.t.msgs, msg_key(msg.conv, msg.seq), encode(&value));
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
        let mut n = self
            .msgs
            .iter()
            .filter(|&&(c, seq, from)| c == conv && seq > after && seq <= upto && from == user)
            .count() as u64;
        for g in self
            .t
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
        self.wb
            .insert(&self.t.inbox, inbox_key(user, useq), msg_key(conv, seq));
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

fn conv_key(conv: ConvId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    push_conv(&mut k, conv);
    k
}

fn push_conv(k: &mut Vec<u8>, conv: ConvId) {
    match conv {
        ConvId::Direct { lo, hi } => {
            k.push(b'd');
            k.extend_from_slice(&lo.to_be_bytes());
            k.extend_from_slice(&hi.to_be_bytes());
        }
        ConvId::Group(g) => {
            k.push(b'g');
            k.extend_from_slice(&g.to_be_bytes());
        }
    }
}

/// Reads a conv prefix back; returns it and the rest of the bytes.
fn split_conv(k: &[u8]) -> Result<(ConvId, &[u8]), StoreError> {
    let bad = || StoreError::Corrupt("bad conversation key".into());
    let u64_at = |b: &[u8], i: usize| -> Result<u64, StoreError> {
        let bytes: [u8; 8] = b
            .get(i..i + 8)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        Ok(u64::from_be_bytes(bytes))
    };
    match k.first() {
        Some(b'd') => Ok((
            ConvId::Direct {
                lo: u64_at(k, 1)?,
                hi: u64_at(k, 9)?,
            },
            &k[17..],
        )),
        Some(b'g') => Ok((ConvId::Group(u64_at(k, 1)?), &k[9..])),
        _ => Err(bad()),
    }
}

fn be_u64(b: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("bad integer in key".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn msg_key(conv: ConvId, seq: u64) -> Vec<u8> {
    let mut k = conv_key(conv);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn inbox_key(user: UserId, useq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&user.to_be_bytes());
    k[8..].copy_from_slice(&useq.to_be_bytes());
    k
}

fn marks_key(user: UserId, conv: ConvId) -> Vec<u8> {
    let mut k = user.to_be_bytes().to_vec();
    push_conv(&mut k, conv);
    k
}

fn idem_key(user: UserId, id: &str) -> Vec<u8> {
    let mut k = user.to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn decode_message(key: &[u8], value: &[u8]) -> Result<StoredMessage, StoreError> {
    let (conv, rest) = split_conv(key)?;
    let seq = be_u64(rest)?;
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
    fn message(&self, key: &[u8]) -> Result<StoredMessage, StoreError> {
        let value = get(&self.msgs, key)?
            .ok_or_else(|| StoreError::Corrupt("inbox entry points at no message".into()))?;
        decode_message(key, &value)
    }
}

#[async_trait]
impl Store for FjallStore {
    fn name(&self) -> &'static str {
        "fjall"
    }

    async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.write(WriteOp::Append(Box::new(req), tx), rx).await
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
                    let useq = be_u64(&k[8..])?;
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
        self.read(move |t| {
            Ok(get(&t.users, &user.to_be_bytes())?
                .map(|v| decode(&v, "user record"))
                .transpose()?
                .unwrap_or(0))
        })
        .await
    }

    async fn mark(
        &self,
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    ) -> Result<MarkOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.write(
            WriteOp::Mark {
                user,
                conv,
                marker,
                seq,
                reply,
            },
            rx,
        )
        .await
    }

    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConvSummary>, StoreError> {
        self.read(move |t| {
            let mut list = Vec::new();
            for g in t.marks.prefix(user.to_be_bytes()) {
                let (k, v) = g.into_inner().map_err(unavailable)?;
                let (conv, _) = split_conv(&k[8..])?;
                let marks: Marks = decode(&v, "marker record")?;
                let meta: ConvMeta = get(&t.convs, &conv_key(conv))?
                    .map(|v| decode(&v, "conversation record"))
                    .transpose()?
                    .unwrap_or_default();
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
}

/// Bytes allocated on disk below `dir`: the sum of every file's allocated blocks, so a
/// sparse, pre-allocated file counts only what was written.
fn allocated_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += allocated_bytes(&entry.path())?;
        } else {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}
