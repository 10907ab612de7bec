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
//! deployment): two processes sequencing the same keyspace this way would each trust their
//! own counters and overwrite each other's messages.
//!
//! **Shared mode** (`?shared=true`, what `serve --cluster` opens): the same task, the same
//! rules and the same two phases, but the counters and markers live in the one partition
//! of `seq_state` and phase 2 is a compare-and-set (a conditional batch) on it, `IF epoch
//! = ours`, made while this node holds the keyspace-wide lease ([`lease`]). A batch
//! starts by making sure the lease is held; if another node held an epoch since this
//! node's last one, the cached committed state is dropped and reloaded. A commit that lost
//! (another node took an epoch) or whose outcome is unknown makes nothing visible, or
//! made the batch visible whole: the batch is sequenced again from the reloaded state,
//! where the idempotency records of a batch that did commit turn its requests into
//! duplicates with their first outcome. Rows a lost batch wrote lie past the counters or
//! under rows of a later epoch, which carry larger timestamps ([`super::clock`]); so the
//! rewrite-until-acknowledged loop of the single-node path is not needed there. One
//! compare-and-set per batch, not per message, as long as the lease stays with one node.

mod io;
pub(super) mod lease;
mod state;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use self::io::{Loaded, count_written, is_refusal, load_one, write, write_data};
use self::lease::{Commit, IDLE, Lease};
use self::state::{Cache, Fetched, Need, Overlay, Pass, Row};
use super::{Shared, bounded};
use crate::model::{ConvId, UserId};
use crate::store::sequencing;
use crate::store::{
    AppendRequest, Appended, DeadLetter, Group, MarkOutcome, Marker, MemberChange,
    PushRegistration, StoreError,
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
/// How many times a shared-mode batch is sequenced again after its commit lost to another
/// node or failed, before its requests are answered `unavailable`.
const MAX_ATTEMPTS: u32 = 4;

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
    Push(PushRegistration),
    RemoveDeadLetter(u64),
}

/// What a write returns.
pub(super) enum Done {
    Appended(Appended),
    Marked(MarkOutcome),
    Group(Group),
    DeadLetter(u64),
    Written,
}

pub(super) struct Job {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Done, StoreError>>,
}

/// Starts the writer task; it ends when every sender is dropped. A shared store's writer
/// takes part in the keyspace's lease, whose row it creates if missing.
pub(super) async fn spawn(shared: Arc<Shared>) -> Result<mpsc::UnboundedSender<Job>, StoreError> {
    let lease = match shared.state {
        Some(_) => {
            Lease::init(&shared).await?;
            Some(Lease::new())
        }
        None => None,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        Writer {
            shared,
            rx,
            pending: VecDeque::new(),
            cache: Cache::default(),
            lease,
        }
        .run(),
    );
    Ok(tx)
}

/// A batch as the rules sequenced it, ready to write.
struct Sequenced {
    results: Vec<Result<Done, StoreError>>,
    data: Vec<Row>,
    counters: Vec<Row>,
    overlay: Overlay,
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
        Op::Push(reg) => {
            t.put_push(reg);
            Ok(Done::Written)
        }
        Op::RemoveDeadLetter(id) => {
            t.remove_dead_letter(*id);
            Ok(Done::Written)
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Job>,
    /// Requests taken from the queue that did not fit into the last batch.
    pending: VecDeque<Job>,
    cache: Cache,
    /// Shared mode: this node's side of the keyspace's lease.
    lease: Option<Lease>,
}

impl Writer {
    async fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                match self.next_job().await {
                    Some(job) => self.pending.push_back(job),
                    None => {
                        self.release().await;
                        return;
                    }
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

    /// The next request; a lease holder that waits [`IDLE`] without one gives the lease
    /// up meanwhile, so other nodes need not wait for it to run out.
    async fn next_job(&mut self) -> Option<Job> {
        if !self.lease.as_ref().is_some_and(Lease::holds) {
            return self.rx.recv().await;
        }
        match tokio::time::timeout(IDLE, self.rx.recv()).await {
            Ok(job) => job,
            Err(_) => {
                self.release().await;
                self.rx.recv().await
            }
        }
    }

    async fn release(&mut self) {
        if let Some(lease) = self.lease.as_mut()
            && let Err(e) = lease.release(&self.shared).await
        {
            tracing::warn!(error = %e, "could not give the sequencer lease up; it runs out by itself");
        }
    }

    /// Sequences, writes and answers one batch; requests that did not fit go back to the
    /// front of the queue.
    async fn batch(&mut self, mut jobs: Vec<Job>) {
        if self.lease.is_some() {
            return self.batch_shared(jobs).await;
        }
        let s = match self.sequence(&mut jobs).await {
            Ok(s) => s,
            Err(e) => return answer_all(jobs, &e),
        };
        if s.data.is_empty() && s.counters.is_empty() {
            // Duplicates, refusals, markers that did not move: nothing to make durable.
            return answer(jobs, s.results);
        }
        match write(&self.shared, &s.data, &s.counters).await {
            Ok(()) => {
                s.overlay.apply(&mut self.cache);
                answer(jobs, s.results);
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
                    self.write_until_acknowledged(&s.data, &s.counters).await;
                    s.overlay.apply(&mut self.cache);
                }
            }
        }
    }

    /// [`Writer::batch`] in shared mode: under the lease, committed by compare-and-set,
    /// sequenced again when the commit lost or its outcome is unknown.
    async fn batch_shared(&mut self, mut jobs: Vec<Job>) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(lease) = self.lease.as_mut() else {
                return;
            };
            match lease.hold(&self.shared).await {
                Ok(true) => {}
                Ok(false) => self.cache = Cache::default(),
                Err(e) => return answer_all(jobs, &e),
            }
            let s = match self.sequence(&mut jobs).await {
                Ok(s) => s,
                Err(e) => return answer_all(jobs, &e),
            };
            if s.data.is_empty() && s.counters.is_empty() {
                return answer(jobs, s.results);
            }
            if let Err(e) = write_data(&self.shared, &s.data).await {
                // Nothing is committed: the rows lie past the counters, and whatever lands
                // late loses to a later epoch's rows by its timestamp.
                tracing::error!(error = %e, "cql rows not acknowledged; answering unavailable");
                return answer_all(jobs, &StoreError::Unavailable(e.to_string()));
            }
            if s.counters.is_empty() {
                return answer(jobs, s.results);
            }
            let Some(lease) = self.lease.as_mut() else {
                return;
            };
            let failure = match lease.commit(&self.shared, &s.counters).await {
                Ok(Commit::Applied) => {
                    count_written(&self.shared, &s.counters);
                    s.overlay.apply(&mut self.cache);
                    return answer(jobs, s.results);
                }
                // The next `hold` takes a new epoch and says whether to reload.
                Ok(Commit::Lost) => StoreError::Unavailable(
                    "other nodes kept taking the keyspace's sequencer lease".into(),
                ),
                Err(e) => {
                    // It may have applied: take a new epoch (which settles the transaction)
                    // and reload what Cassandra holds.
                    tracing::warn!(error = %e, "cql commit outcome unknown; sequencing again");
                    lease.drop_epoch();
                    self.cache = Cache::default();
                    e
                }
            };
            if attempt >= MAX_ATTEMPTS {
                return answer_all(jobs, &failure);
            }
        }
    }

    /// Runs the rules over the jobs until a pass needs nothing it has not loaded; the jobs
    /// that did not fit into one batch go back to the front of the queue.
    async fn sequence(&mut self, jobs: &mut Vec<Job>) -> Result<Sequenced, StoreError> {
        let mut fetched = Fetched::default();
        let mut limit = jobs.len();
        let mut rounds = 0;
        let sequenced = loop {
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
                    return Err(StoreError::Unavailable(
                        "the sequencer did not converge".into(),
                    ));
                }
                self.load(needs, &mut fetched).await?;
                continue;
            }
            if let Some(fit) = overflow {
                limit = fit;
                continue;
            }
            let data = std::mem::take(&mut pass.data);
            let counters = pass.counter_rows();
            break Sequenced {
                results,
                data,
                counters,
                overlay: Overlay::from(pass),
            };
        };
        for job in jobs.drain(limit..).rev() {
            self.pending.push_front(job);
        }
        Ok(sequenced)
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
