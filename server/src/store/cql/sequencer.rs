//! The in-process sequencer: one writer task per store that hands out every `seq`, `useq`,
//! group id and dead-letter id, so they stay gap-free on a store without transactions.
//!
//! The task owns the **committed state** ([`Cache`]): the counters and markers as
//! Cassandra holds them, loaded lazily on first use. It takes every request waiting in its
//! queue (up to [`MAX_JOBS`]) and applies them with the shared rules of
//! [`crate::store::sequencing`] to an overlay ([`Pass`]). `WriteTables` is synchronous, so a
//! pass never waits for Cassandra: a value it does not have yet is recorded as missing and
//! a harmless default is used; the task then loads everything missing at once
//! (concurrently) and runs the pass again from scratch, until a pass needs nothing new.
//! Usually that is the first pass, or the second for a conversation or user not seen
//! before.
//!
//! The batch is then written in two phases, and the callers are answered only after
//! Cassandra acknowledged both at the configured consistency:
//!
//! 1. **data rows**: messages, inbox entries, idempotency records, dead letters, all
//!    concurrently. They are invisible so far: readers never look past the counters.
//! 2. **counter rows and markers** (`convs`, `users`, `marks`, `groups`, `meta`) in one
//!    LOGGED batch, so they land all or none (Cassandra's batchlog replays a batch whose
//!    coordinator died half-way).
//!
//! Why this cannot leave a half-applied message behind:
//!
//! - A crash (of this process or of Cassandra) before phase 2 leaves rows past the
//!   counters. Nobody reads them; the next run loads the old counters and writes its own
//!   messages over those positions. An idempotency record of such a message points at a
//!   seq that is either beyond the counter or holds another message; both are checked
//!   before a record counts as a duplicate.
//! - A failed write whose outcome is unknown (a timeout, a lost connection, the node
//!   down) may still land later. The task therefore never hands those positions out
//!   again: it keeps rewriting the same batch (idempotent upserts) until Cassandra
//!   acknowledges it, and answers every request that arrives meanwhile with
//!   `unavailable`. The callers of the failed batch got `unavailable` too; a retry with the
//!   same id then finds the stored outcome (`duplicate`). Writes carry client-side
//!   timestamps from one monotonic generator, so a late copy of an older write never wins
//!   over a newer one.
//! - A write Cassandra refused outright (an invalid request, such as a batch over its size
//!   limit) did not land: the committed state is dropped and reloaded.
//!
//! This is correct for **one server process per keyspace** (the embedded and single-node
//! deployment). Two processes sequencing the same keyspace would each trust their own
//! counters and overwrite each other's messages; several nodes need a sequencer per
//! conversation owner, or compare-and-set on the counters (lightweight transactions),
//! whose cost is measured in the store's tests.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;
use tokio::sync::{mpsc, oneshot};

use super::{Shared, big, bounded, conv_text, is_definite_refusal, parse_conv};
use crate::model::{ConvId, UserId};
use crate::store::rules::Marks;
use crate::store::sequencing::{self, ConvMeta, IdemRecord, WriteTables};
use crate::store::{
    AppendRequest, Appended, DeadLetter, Group, MarkOutcome, Marker, MemberChange, StoreError,
    bucket_of,
};

/// How many queued requests one batch takes at most.
const MAX_JOBS: usize = 256;
/// How many counter and marker rows one LOGGED batch holds at most (beyond one request).
/// About 60 bytes each, this keeps a batch well under Cassandra's default
/// `batch_size_fail_threshold` of 50 KiB.
const MAX_COUNTER_ROWS: usize = 512;
/// How many data-row writes of a batch are in flight at once.
const WRITE_CONCURRENCY: usize = 256;
/// Past this many cached keys the committed state is dropped between two batches (it is
/// all in Cassandra) and reloaded on demand, so memory stays bounded.
const MAX_CACHED: usize = 1_000_000;

pub(super) const META_LAST_GROUP: &str = "last_group";
pub(super) const META_LAST_DEAD: &str = "last_dead";

/// A write for the sequencer.
pub(super) enum Op {
    Append(AppendRequest),
    Mark {
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    },
    CreateGroup {
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    },
    ChangeMembers {
        group: u64,
        change: MemberChange,
    },
    DeadLetter(DeadLetter),
}

/// What a write returns.
pub(super) enum Done {
    Appended(Appended),
    Marked(MarkOutcome),
    Group(Group),
    DeadLetter(u64),
}

pub(super) struct Job {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Done, StoreError>>,
}

/// Starts the writer task; it ends when every sender is dropped.
pub(super) fn spawn(shared: Arc<Shared>) -> mpsc::UnboundedSender<Job> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        Writer {
            shared,
            rx,
            pending: VecDeque::new(),
            cache: Cache::default(),
        }
        .run(),
    );
    tx
}

/// Counters and markers as Cassandra holds them (everything acknowledged), loaded lazily.
#[derive(Default)]
struct Cache {
    convs: HashMap<ConvId, ConvMeta>,
    users: HashMap<UserId, u64>,
    /// `None`: known to have no row.
    marks: HashMap<(UserId, ConvId), Option<Marks>>,
    groups: HashMap<u64, Option<Group>>,
    last_group: Option<u64>,
    last_dead: Option<u64>,
}

impl Cache {
    fn len(&self) -> usize {
        self.convs.len() + self.users.len() + self.marks.len() + self.groups.len()
    }
}

/// What one batch read that is not worth keeping beyond it.
#[derive(Default)]
struct Fetched {
    /// Idempotency records, already checked against the committed state.
    idem: HashMap<(UserId, String), Option<IdemRecord>>,
    /// Messages of `user` in `conv` with `after < seq <= upto`, committed ones only.
    counts: HashMap<(ConvId, u64, u64, UserId), u64>,
}

/// A value a pass needed and did not have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Need {
    Idem(UserId, String),
    Conv(ConvId),
    User(UserId),
    Marks(UserId, ConvId),
    Group(u64),
    Meta(&'static str),
    Count(ConvId, u64, u64, UserId),
}

/// A row to write: which statement, with which values.
#[derive(Clone)]
pub(super) struct Row {
    stmt: Stmt,
    values: Vec<CqlValue>,
}

#[derive(Clone, Copy)]
enum Stmt {
    Message,
    Inbox,
    Idem,
    Dead,
    Conv,
    User,
    Marks,
    DeleteMarks,
    Group,
    Meta,
}

impl Row {
    /// Rough size of the row's values, for the store's own size accounting.
    fn bytes(&self) -> u64 {
        self.values
            .iter()
            .map(|v| match v {
                CqlValue::Text(s) => s.len() as u64 + 2,
                CqlValue::List(l) => 8 * l.len() as u64 + 4,
                _ => 8,
            })
            .sum()
    }
}

/// One pass over a batch: an overlay of the committed state with read-your-writes, the
/// rows to write, and the values that were missing.
struct Pass<'a> {
    cache: &'a Cache,
    fetched: &'a Fetched,
    missing: HashSet<Need>,
    convs: HashMap<ConvId, ConvMeta>,
    users: HashMap<UserId, u64>,
    /// `None`: removed.
    marks: HashMap<(UserId, ConvId), Option<Marks>>,
    groups: HashMap<u64, Group>,
    last_group: Option<u64>,
    last_dead: Option<u64>,
    idem: HashMap<(UserId, String), IdemRecord>,
    /// (conversation, seq, sender) of the messages of this pass.
    msgs: Vec<(ConvId, u64, UserId)>,
    data: Vec<Row>,
}

impl<'a> Pass<'a> {
    fn new(cache: &'a Cache, fetched: &'a Fetched) -> Self {
        Pass {
            cache,
            fetched,
            missing: HashSet::new(),
            convs: HashMap::new(),
            users: HashMap::new(),
            marks: HashMap::new(),
            groups: HashMap::new(),
            last_group: None,
            last_dead: None,
            idem: HashMap::new(),
            msgs: Vec::new(),
            data: Vec::new(),
        }
    }

    fn counter_rows_len(&self) -> usize {
        self.convs.len()
            + self.users.len()
            + self.marks.len()
            + self
                .groups
                .values()
                .map(|g| 1 + g.members.len() / 8)
                .sum::<usize>()
            + 2
    }

    /// Phase 2: the counters and markers this pass moved.
    fn counter_rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (conv, m) in &self.convs {
            rows.push(Row {
                stmt: Stmt::Conv,
                values: vec![
                    big(m.last_seq),
                    big(m.last_ts),
                    CqlValue::Text(conv_text(*conv)),
                ],
            });
        }
        for (user, useq) in &self.users {
            rows.push(Row {
                stmt: Stmt::User,
                values: vec![big(*useq), big(*user)],
            });
        }
        for ((user, conv), marks) in &self.marks {
            rows.push(match marks {
                Some(m) => Row {
                    stmt: Stmt::Marks,
                    values: vec![
                        big(*user),
                        CqlValue::Text(conv_text(*conv)),
                        big(m.ack),
                        big(m.read),
                        big(m.last_own),
                        big(m.own_after_read),
                    ],
                },
                None => Row {
                    stmt: Stmt::DeleteMarks,
                    values: vec![big(*user), CqlValue::Text(conv_text(*conv))],
                },
            });
        }
        for g in self.groups.values() {
            rows.push(Row {
                stmt: Stmt::Group,
                values: vec![
                    big(g.id),
                    CqlValue::Text(g.name.clone()),
                    big(g.admin),
                    CqlValue::List(g.members.iter().map(|&u| big(u)).collect()),
                ],
            });
        }
        for (name, v) in [
            (META_LAST_GROUP, self.last_group),
            (META_LAST_DEAD, self.last_dead),
        ] {
            if let Some(v) = v {
                rows.push(Row {
                    stmt: Stmt::Meta,
                    values: vec![big(v), CqlValue::Text(name.to_owned())],
                });
            }
        }
        rows
    }

    fn meta(&mut self, name: &'static str) -> u64 {
        let (overlay, cached) = match name {
            META_LAST_GROUP => (self.last_group, self.cache.last_group),
            _ => (self.last_dead, self.cache.last_dead),
        };
        overlay.or(cached).unwrap_or_else(|| {
            self.missing.insert(Need::Meta(name));
            0
        })
    }

    fn put_dead_letter(&mut self, letter: &DeadLetter) -> u64 {
        let id = self.meta(META_LAST_DEAD) + 1;
        self.last_dead = Some(id);
        self.data.push(Row {
            stmt: Stmt::Dead,
            values: vec![
                big(bucket_of(id)),
                big(id),
                CqlValue::Text(letter.payload.clone()),
                CqlValue::Text(letter.error.clone()),
                big(letter.ts),
            ],
        });
        id
    }
}

impl WriteTables for Pass<'_> {
    fn idem_get(&mut self, user: UserId, id: &str) -> Result<Option<IdemRecord>, StoreError> {
        let key = (user, id.to_owned());
        if let Some(r) = self.idem.get(&key) {
            return Ok(Some(*r));
        }
        match self.fetched.idem.get(&key) {
            Some(r) => Ok(*r),
            None => {
                self.missing.insert(Need::Idem(user, key.1));
                Ok(None)
            }
        }
    }
    fn idem_put(&mut self, user: UserId, id: &str, rec: IdemRecord) {
        let conv: ConvId = rec.conv.into();
        self.data.push(Row {
            stmt: Stmt::Idem,
            values: vec![
                big(user),
                CqlValue::Text(id.to_owned()),
                CqlValue::Text(conv_text(conv)),
                big(rec.seq),
                big(rec.useq),
                big(rec.ts),
            ],
        });
        self.idem.insert((user, id.to_owned()), rec);
    }
    fn conv_get(&mut self, conv: ConvId) -> Result<ConvMeta, StoreError> {
        if let Some(m) = self
            .convs
            .get(&conv)
            .or_else(|| self.cache.convs.get(&conv))
        {
            return Ok(*m);
        }
        self.missing.insert(Need::Conv(conv));
        Ok(ConvMeta::default())
    }
    fn conv_put(&mut self, conv: ConvId, meta: ConvMeta) {
        self.convs.insert(conv, meta);
    }
    fn last_useq(&mut self, user: UserId) -> Result<u64, StoreError> {
        if let Some(u) = self
            .users
            .get(&user)
            .or_else(|| self.cache.users.get(&user))
        {
            return Ok(*u);
        }
        self.missing.insert(Need::User(user));
        Ok(0)
    }
    fn last_useq_put(&mut self, user: UserId, useq: u64) {
        self.users.insert(user, useq);
    }
    fn marks_get(&mut self, user: UserId, conv: ConvId) -> Result<Option<Marks>, StoreError> {
        let key = (user, conv);
        if let Some(m) = self.marks.get(&key).or_else(|| self.cache.marks.get(&key)) {
            return Ok(*m);
        }
        self.missing.insert(Need::Marks(user, conv));
        Ok(None)
    }
    fn marks_put(&mut self, user: UserId, conv: ConvId, marks: Marks) {
        self.marks.insert((user, conv), Some(marks));
    }
    fn marks_remove(&mut self, user: UserId, conv: ConvId) {
        self.marks.insert((user, conv), None);
    }
    fn group_get(&mut self, id: u64) -> Result<Option<Group>, StoreError> {
        if let Some(g) = self.groups.get(&id) {
            return Ok(Some(g.clone()));
        }
        if let Some(g) = self.cache.groups.get(&id) {
            return Ok(g.clone());
        }
        self.missing.insert(Need::Group(id));
        Ok(None)
    }
    fn group_put(&mut self, group: &Group) {
        self.groups.insert(group.id, group.clone());
    }
    fn last_group_id(&mut self) -> Result<u64, StoreError> {
        Ok(self.meta(META_LAST_GROUP))
    }
    fn last_group_id_put(&mut self, id: u64) {
        self.last_group = Some(id);
    }
    fn message_put(&mut self, msg: &crate::store::StoredMessage) {
        self.data.push(Row {
            stmt: Stmt::Message,
            values: vec![
                CqlValue::Text(conv_text(msg.conv)),
                big(bucket_of(msg.seq)),
                big(msg.seq),
                big(msg.from),
                CqlValue::Text(msg.id.clone()),
                CqlValue::Text(msg.body.clone()),
                big(msg.ts),
            ],
        });
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
        // Messages of this pass are not in Cassandra yet; committed ones are not here.
        let mut n = self
            .msgs
            .iter()
            .filter(|&&(c, seq, from)| c == conv && seq > after && seq <= upto && from == user)
            .count() as u64;
        let Some(committed) = self.cache.convs.get(&conv).map(|m| m.last_seq) else {
            self.missing.insert(Need::Conv(conv));
            return Ok(n);
        };
        let hi = upto.min(committed);
        if after < hi {
            match self.fetched.counts.get(&(conv, after, hi, user)) {
                Some(c) => n += c,
                None => {
                    self.missing.insert(Need::Count(conv, after, hi, user));
                }
            }
        }
        Ok(n)
    }
    fn inbox_put(&mut self, user: UserId, useq: u64, conv: ConvId, seq: u64) {
        self.data.push(Row {
            stmt: Stmt::Inbox,
            values: vec![
                big(user),
                big(bucket_of(useq)),
                big(useq),
                CqlValue::Text(conv_text(conv)),
                big(seq),
            ],
        });
    }
}

fn run(op: &Op, t: &mut Pass<'_>) -> Result<Done, StoreError> {
    match op {
        Op::Append(req) => sequencing::append(t, req).map(Done::Appended),
        Op::Mark {
            user,
            conv,
            marker,
            seq,
        } => sequencing::mark(t, *user, *conv, *marker, *seq).map(Done::Marked),
        Op::CreateGroup {
            name,
            admin,
            members,
        } => sequencing::create_group(t, name, *admin, members).map(Done::Group),
        Op::ChangeMembers { group, change } => {
            sequencing::change_members(t, *group, *change).map(Done::Group)
        }
        Op::DeadLetter(letter) => Ok(Done::DeadLetter(t.put_dead_letter(letter))),
    }
}

/// A value loaded for [`Need`].
enum Loaded {
    Idem(
        (UserId, String),
        Option<IdemRecord>,
        Option<(ConvId, ConvMeta)>,
    ),
    Conv(ConvId, ConvMeta),
    User(UserId, u64),
    Marks((UserId, ConvId), Option<Marks>),
    Group(u64, Option<Group>),
    Meta(&'static str, u64),
    Count((ConvId, u64, u64, UserId), u64),
}

struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Job>,
    /// Requests taken from the queue that did not fit into the last batch.
    pending: VecDeque<Job>,
    cache: Cache,
}

impl Writer {
    async fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                match self.rx.recv().await {
                    Some(job) => self.pending.push_back(job),
                    None => return,
                }
            }
            while self.pending.len() < MAX_JOBS {
                match self.rx.try_recv() {
                    Ok(job) => self.pending.push_back(job),
                    Err(_) => break,
                }
            }
            let n = self.pending.len().min(MAX_JOBS);
            let jobs: Vec<Job> = self.pending.drain(..n).collect();
            self.batch(jobs).await;
            if self.cache.len() > MAX_CACHED {
                self.cache = Cache::default();
            }
        }
    }

    /// Sequences, writes and answers one batch; requests that did not fit go back to the
    /// front of the queue.
    async fn batch(&mut self, mut jobs: Vec<Job>) {
        let mut fetched = Fetched::default();
        let mut limit = jobs.len();
        let mut rounds = 0;
        let (results, data, counters, overlay_commit) = loop {
            let mut pass = Pass::new(&self.cache, &fetched);
            let mut results = Vec::with_capacity(limit);
            let mut overflow = None;
            for (i, job) in jobs[..limit].iter().enumerate() {
                results.push(run(&job.op, &mut pass));
                if i > 0 && pass.counter_rows_len() > MAX_COUNTER_ROWS {
                    overflow = Some(i);
                    break;
                }
            }
            if !pass.missing.is_empty() {
                rounds += 1;
                let needs: Vec<Need> = pass.missing.into_iter().collect();
                if rounds > 16 {
                    // Cannot happen with the rules as they are: each round loads more.
                    let e = StoreError::Unavailable("the sequencer did not converge".into());
                    return answer_all(jobs, &e);
                }
                if let Err(e) = self.load(needs, &mut fetched).await {
                    return answer_all(jobs, &e);
                }
                continue;
            }
            if let Some(fit) = overflow {
                limit = fit;
                continue;
            }
            let data = std::mem::take(&mut pass.data);
            let counters = pass.counter_rows();
            let commit = Overlay::from(pass);
            break (results, data, counters, commit);
        };
        for job in jobs.drain(limit..).rev() {
            self.pending.push_front(job);
        }
        if data.is_empty() && counters.is_empty() {
            // Duplicates, refusals, markers that did not move: nothing to make durable.
            return answer(jobs, results);
        }
        match write(&self.shared, &data, &counters).await {
            Ok(()) => {
                overlay_commit.apply(&mut self.cache);
                answer(jobs, results);
            }
            Err(e) => {
                tracing::error!(error = %e, "cql batch not acknowledged; answering unavailable");
                let refused = is_refusal(&e);
                answer_all(jobs, &StoreError::Unavailable(e.to_string()));
                if refused {
                    // Nothing of it landed; the counters may still be trusted, but reload
                    // them anyway: what Cassandra holds is the truth.
                    self.cache = Cache::default();
                } else {
                    self.write_until_acknowledged(&data, &counters).await;
                    overlay_commit.apply(&mut self.cache);
                }
            }
        }
    }

    /// Rewrites a batch whose outcome is unknown until Cassandra acknowledges it, answering
    /// every request that arrives meanwhile with `unavailable`: the positions it took are
    /// never handed out twice.
    async fn write_until_acknowledged(&mut self, data: &[Row], counters: &[Row]) {
        let mut delay = Duration::from_millis(100);
        let mut attempts = 0u64;
        loop {
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            for job in self.pending.drain(..) {
                refuse(job);
            }
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    job = self.rx.recv() => match job {
                        Some(job) => refuse(job),
                        None => { (&mut sleep).await; break }
                    },
                }
            }
            attempts += 1;
            match write(&self.shared, data, counters).await {
                Ok(()) => {
                    tracing::warn!(attempts, "cql batch acknowledged after retrying");
                    return;
                }
                Err(e) if is_refusal(&e) => {
                    tracing::error!(error = %e, "cql batch refused on retry; reloading counters");
                    self.cache = Cache::default();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempts, "cql batch still not acknowledged");
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Loads everything a pass found missing, concurrently.
    async fn load(&mut self, needs: Vec<Need>, fetched: &mut Fetched) -> Result<(), StoreError> {
        let shared = &self.shared;
        let cache = &self.cache;
        let loaded = bounded(needs, WRITE_CONCURRENCY, |need| {
            load_one(shared, cache, need)
        })
        .await?;
        for l in loaded {
            match l {
                Loaded::Idem(key, rec, conv) => {
                    fetched.idem.insert(key, rec);
                    if let Some((c, m)) = conv {
                        self.cache.convs.entry(c).or_insert(m);
                    }
                }
                Loaded::Conv(c, m) => {
                    self.cache.convs.insert(c, m);
                }
                Loaded::User(u, v) => {
                    self.cache.users.insert(u, v);
                }
                Loaded::Marks(k, m) => {
                    self.cache.marks.insert(k, m);
                }
                Loaded::Group(id, g) => {
                    self.cache.groups.insert(id, g);
                }
                Loaded::Meta(META_LAST_GROUP, v) => self.cache.last_group = Some(v),
                Loaded::Meta(_, v) => self.cache.last_dead = Some(v),
                Loaded::Count(k, n) => {
                    fetched.counts.insert(k, n);
                }
            }
        }
        Ok(())
    }
}

/// The counter-side writes of a pass, kept to update the committed state once acknowledged.
struct Overlay {
    convs: HashMap<ConvId, ConvMeta>,
    users: HashMap<UserId, u64>,
    marks: HashMap<(UserId, ConvId), Option<Marks>>,
    groups: HashMap<u64, Group>,
    last_group: Option<u64>,
    last_dead: Option<u64>,
}

impl From<Pass<'_>> for Overlay {
    fn from(p: Pass<'_>) -> Self {
        Overlay {
            convs: p.convs,
            users: p.users,
            marks: p.marks,
            groups: p.groups,
            last_group: p.last_group,
            last_dead: p.last_dead,
        }
    }
}

impl Overlay {
    fn apply(self, cache: &mut Cache) {
        cache.convs.extend(self.convs);
        cache.users.extend(self.users);
        cache.marks.extend(self.marks);
        cache
            .groups
            .extend(self.groups.into_iter().map(|(id, g)| (id, Some(g))));
        if self.last_group.is_some() {
            cache.last_group = self.last_group;
        }
        if self.last_dead.is_some() {
            cache.last_dead = self.last_dead;
        }
    }
}

async fn load_one(shared: &Shared, cache: &Cache, need: Need) -> Result<Loaded, StoreError> {
    Ok(match need {
        Need::Idem(user, id) => {
            let (rec, conv) = load_idem(shared, cache, user, &id).await?;
            Loaded::Idem((user, id), rec, conv)
        }
        Need::Conv(c) => Loaded::Conv(c, shared.conv_meta(c).await?),
        Need::User(u) => Loaded::User(u, shared.last_useq(u).await?),
        Need::Marks(u, c) => Loaded::Marks((u, c), shared.marks(u, c).await?),
        Need::Group(id) => Loaded::Group(id, shared.group(id).await?),
        Need::Meta(name) => Loaded::Meta(name, shared.meta(name).await?),
        Need::Count(conv, after, upto, user) => {
            let mut n = 0;
            for b in bucket_of(after + 1)..=bucket_of(upto) {
                let rows: Vec<(i64,)> = shared
                    .select(
                        &shared.st.select_senders,
                        (conv_text(conv), b as i64, after as i64, upto as i64),
                    )
                    .await?;
                n += rows.iter().filter(|(s,)| *s as u64 == user).count() as u64;
            }
            Loaded::Count((conv, after, upto, user), n)
        }
    })
}

/// An idempotency record counts only when the message it points at is committed and is
/// that sender's message with that id: a record written by a batch that never completed
/// points past the counter, or at a position another message took since.
async fn load_idem(
    shared: &Shared,
    cache: &Cache,
    user: UserId,
    id: &str,
) -> Result<(Option<IdemRecord>, Option<(ConvId, ConvMeta)>), StoreError> {
    let rows: Vec<(String, i64, i64, i64)> = shared
        .select(&shared.st.select_idem, (user as i64, id))
        .await?;
    let Some((conv, seq, useq, ts)) = rows.into_iter().next() else {
        return Ok((None, None));
    };
    let conv = parse_conv(&conv)?;
    let (seq, useq, ts) = (seq as u64, useq as u64, ts as u64);
    let (meta, loaded) = match cache.convs.get(&conv) {
        Some(m) => (*m, None),
        None => {
            let m = shared.conv_meta(conv).await?;
            (m, Some((conv, m)))
        }
    };
    if seq == 0 || seq > meta.last_seq {
        return Ok((None, loaded));
    }
    let msg: Vec<(i64, String, String, i64)> = shared
        .select(
            &shared.st.select_message,
            (conv_text(conv), bucket_of(seq) as i64, seq as i64),
        )
        .await?;
    let valid = matches!(msg.first(), Some((from, cid, _, _)) if *from as u64 == user && cid == id);
    let rec = valid.then_some(IdemRecord {
        conv: conv.into(),
        seq,
        useq,
        ts,
    });
    Ok((rec, loaded))
}

/// Phase 1, then phase 2; `Ok` once Cassandra acknowledged both.
async fn write(shared: &Shared, data: &[Row], counters: &[Row]) -> Result<(), WriteError> {
    let rows: Vec<&Row> = data.iter().collect();
    bounded(rows, WRITE_CONCURRENCY, |row| {
        shared
            .session
            .execute_unpaged(stmt(shared, row.stmt), &row.values)
    })
    .await
    .map_err(WriteError)?;
    match counters {
        [] => {}
        [one] => {
            shared
                .session
                .execute_unpaged(stmt(shared, one.stmt), &one.values)
                .await
                .map_err(WriteError)?;
        }
        many => {
            let mut batch = Batch::new(BatchType::Logged);
            for row in many {
                batch.append_statement(stmt(shared, row.stmt).clone());
            }
            batch.set_is_idempotent(true);
            let values: Vec<&Vec<CqlValue>> = many.iter().map(|r| &r.values).collect();
            shared
                .session
                .batch(&batch, values)
                .await
                .map_err(WriteError)?;
        }
    }
    let bytes: u64 = data.iter().chain(counters).map(Row::bytes).sum();
    shared.written.fetch_add(bytes, Ordering::Relaxed);
    Ok(())
}

/// A write that failed, with the driver's error.
#[derive(Debug)]
struct WriteError(scylla::errors::ExecutionError);

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn is_refusal(e: &WriteError) -> bool {
    is_definite_refusal(&e.0)
}

fn stmt(shared: &Shared, s: Stmt) -> &PreparedStatement {
    let st = &shared.st;
    match s {
        Stmt::Message => &st.insert_message,
        Stmt::Inbox => &st.insert_inbox,
        Stmt::Idem => &st.insert_idem,
        Stmt::Dead => &st.insert_dead,
        Stmt::Conv => &st.update_conv,
        Stmt::User => &st.update_user,
        Stmt::Marks => &st.insert_marks,
        Stmt::DeleteMarks => &st.delete_marks,
        Stmt::Group => &st.insert_group,
        Stmt::Meta => &st.update_meta,
    }
}

fn answer(jobs: Vec<Job>, results: Vec<Result<Done, StoreError>>) {
    for (job, r) in jobs.into_iter().zip(results) {
        let _ = job.reply.send(r);
    }
}

fn answer_all(jobs: Vec<Job>, e: &StoreError) {
    let msg = match e {
        StoreError::Unavailable(m) => m.clone(),
        other => other.to_string(),
    };
    for job in jobs {
        let _ = job.reply.send(Err(StoreError::Unavailable(msg.clone())));
    }
}

fn refuse(job: Job) {
    let _ = job.reply.send(Err(StoreError::Unavailable(
        "the store is retrying an unacknowledged write to Cassandra".into(),
    )));
}
