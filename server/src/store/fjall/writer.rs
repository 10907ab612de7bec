//! The fjall store's writer thread: batch, apply, commit, sync, answer.
//!
//! Every write of the store runs here, so the thread is the per-store sequencer. It takes
//! every request waiting in its queue, applies them to one write batch, commits it to the
//! journal and answers each request once the batch is as durable as the request asked:
//!
//! - [`Wait::Fsync`] (messages, groups, pushes): after the journal's `fdatasync`. The
//!   journal file is preallocated, so `fdatasync` persists what `fsync` would (the data and
//!   the block allocations needed to read it back) without rewriting the inode's times.
//! - [`Wait::Journal`] (delivery and read markers): once the batch is in the journal file
//!   (the OS's buffers), which survives a crash of the process. The fsync follows with the
//!   next batch that needs one, or [`JOURNAL_SYNC_WITHIN`] later, whichever comes first,
//!   so a power loss can take back at most that much of the markers. A marker is derived
//!   state a device sends again (cumulative acks after every catch-up), and what it
//!   announced (`delivered`, `read`) was true when it was sent; at the source design's
//!   per-node load a message would otherwise cost two fsyncs, its own and its ack's.
//!
//! Many concurrent requests therefore share one commit and one fsync (group commit). An
//! fsynced commit begins at most once per commit interval
//! ([`super::tuning::DEFAULT_COMMIT_INTERVAL`] unless the store's spec says otherwise): a
//! write that needs an fsync less than the interval after the last fsynced commit began
//! waits out the rest of it, and the writes that arrive meanwhile join its batch. A write
//! after a quieter spell commits at once, so a lone message pays nothing, while a busy
//! store pays one fsync per interval instead of one per fsync's duration (which leaves each
//! fsync only the few sends that came during the last one). A batch of markers alone costs
//! no fsync and is not held: a receipt is not delayed for the message it follows.
//!
//! A write may also skip the thread altogether ([`Writer::claim_idle`]): when the writer
//! thread waits with nothing in hand, the caller applies and commits it itself. At a light
//! load, where each write is a batch of its own, the hand-off to this thread and the
//! answer back cost two thread wake-ups, several times what the commit costs; a busy
//! writer takes writes in its batches as before.
//!
//! - A marker commits inline if everything it reads is in the writer's cache
//!   ([`Inline::commit`]). It leaves the journal unsynced like a marker batch of the
//!   writer's, and the writer fsyncs it within the same [`JOURNAL_SYNC_WITHIN`]: it keeps
//!   a deadline while inline commits come, and one that finds it waiting without one
//!   wakes it.
//! - A send commits and fsyncs inline if the last fsynced commit began at least the commit
//!   interval ago and fsyncs are quick ([`Inline::commit_synced`], [`INLINE_FSYNC_MAX`]),
//!   so a lone send is durable when answered as before, and sends that come closer
//!   together still share the thread's batches. The caller's thread waits for the fsync
//!   instead of for the writer's answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use fjall::PersistMode;
use parking_lot::{Mutex, MutexGuard};

use super::{Batch, Tables, WriterCache, poisons, unavailable};
use crate::store::{StoreError, WriterCounts};

/// How many queued writes one batch takes at most.
const MAX_BATCH: usize = 4096;

/// How long a batch that waited only for the journal stays without an fsync at most.
pub(super) const JOURNAL_SYNC_WITHIN: Duration = Duration::from_millis(200);

/// The longest an fsync may take (on average, lately) for a send to commit and fsync on
/// the caller's thread ([`Inline::commit_synced`]). The caller's thread is a runtime
/// thread: while it waits for the disk, the connections it serves wait too. On this
/// project's reference disk an fsync takes 100–200 µs; on a disk whose fsyncs take
/// milliseconds, lone sends go to the writer thread, which waits for the disk while the
/// runtime goes on (and which, unlike a runtime blocked in an fsync, lets the sends that
/// arrive meanwhile share the next one).
pub(super) const INLINE_FSYNC_MAX: Duration = Duration::from_micros(500);

/// What a write's answer waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Wait {
    /// The fsync that covers the write: it survives a power loss.
    Fsync,
    /// The write in the journal file: it survives a crash of the process, and is fsynced
    /// within [`JOURNAL_SYNC_WITHIN`].
    Journal,
}

/// A write for the writer thread: what its answer waits for, known before it runs (a
/// batch of writes that wait only for the journal is not held by the commit interval),
/// and the work that applies it to the batch and returns what answers the caller once the
/// batch's fate (committed and synced, or not) is known.
pub(super) struct Job {
    pub(super) wait: Wait,
    pub(super) apply: Box<dyn for<'a> FnOnce(&mut Batch<'a>) -> Completion + Send>,
}

/// Answers one caller with the outcome of its batch; `poisoned` tells the writer that the
/// job failed after it may have written part of its work, so the batch must not commit.
pub(super) struct Completion {
    pub(super) poisoned: bool,
    pub(super) answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

/// The average of fsync durations `avg` (0 for none yet) with one more, `took`, weighing
/// the last eight or so; never 0.
pub(super) fn moving_average(avg: u64, took: u64) -> u64 {
    let avg = match avg {
        0 => took,
        avg => avg - avg / 8 + took / 8,
    };
    avg.max(1)
}

/// What the writer thread's queue carries.
enum Request {
    Job(Job),
    /// An inline commit left the journal unsynced while the thread waited without a
    /// deadline: it must take one.
    Wake,
}

/// What the writer thread shares with the callers that commit inline.
struct Shared {
    tables: Arc<Tables>,
    /// Held while a batch is applied and committed, by the thread or by an inline commit.
    state: Mutex<State>,
    /// The thread waits on its queue with no batch in hand: an inline commit may run.
    idle: AtomicBool,
    /// The thread waits on its queue without a deadline: an inline commit must wake it.
    parked: AtomicBool,
    /// Inline commits so far; the thread keeps a deadline while this moves.
    inline_commits: AtomicU64,
    /// Inline commits given up because they had to read the tree.
    inline_misses: AtomicU64,
    /// Inline commits that waited for their fsync (sends).
    inline_synced: AtomicU64,
    /// Journal fsyncs made ([`Shared::persist`]).
    fsyncs: AtomicU64,
    /// How long an fsync took lately, in nanoseconds: a moving average over the last
    /// eight or so ([`Shared::persist`]); 0 before the first.
    fsync_ns: AtomicU64,
    /// How long after one commit with an fsync began the next may begin.
    interval: Duration,
}

/// The writer's state that outlives a batch.
struct State {
    cache: WriterCache,
    /// When the oldest commit not yet fsynced was made.
    unsynced: Option<Instant>,
    /// When the last commit with an fsync began, on the thread or inline.
    last_fsync: Option<Instant>,
}

impl Shared {
    /// Writes the journal's buffer to its file, and fsyncs it for [`PersistMode::SyncData`]
    /// (counted and timed).
    fn persist(&self, mode: PersistMode) -> Result<(), StoreError> {
        let began = Instant::now();
        self.tables.db.persist(mode).map_err(unavailable)?;
        if mode != PersistMode::Buffer {
            self.fsyncs.fetch_add(1, SeqCst);
            let took = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let avg = moving_average(self.fsync_ns.load(SeqCst), took);
            self.fsync_ns.store(avg, SeqCst);
        }
        Ok(())
    }

    /// Whether fsyncs are quick enough lately to make one on a runtime thread.
    fn fsyncs_are_quick(&self) -> bool {
        Duration::from_nanos(self.fsync_ns.load(SeqCst)) <= INLINE_FSYNC_MAX
    }

    /// Fsyncs the journal if a commit waits for it. A failure is logged: those callers are
    /// answered already, and the next batch that needs an fsync meets the same failure and
    /// answers `unavailable`.
    fn sync_unsynced(&self) {
        let mut st = self.state.lock();
        if st.unsynced.take().is_some()
            && let Err(e) = self.persist(PersistMode::SyncData)
        {
            tracing::error!(error = %e, "fjall journal fsync failed");
        }
    }
}

/// The writer thread's queue and handle. Dropping it closes the queue and waits for the
/// thread to finish the batch in hand (and fsync what is not yet), so that once the last
/// handle of a store is gone the directory's lock is free: an operator command or a
/// restarted server opening the same directory right after a stop never finds it locked.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Request>>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread over `tables`, beginning a commit with an fsync at most once
    /// per `interval`.
    pub(super) fn start(tables: Arc<Tables>, interval: Duration) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            tables,
            state: Mutex::new(State {
                cache: WriterCache::default(),
                unsynced: None,
                last_fsync: None,
            }),
            idle: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            inline_commits: AtomicU64::new(0),
            inline_misses: AtomicU64::new(0),
            inline_synced: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            fsync_ns: AtomicU64::new(0),
            interval,
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fjall-writer".into())
            .spawn(move || writer_loop(&sh, &rx))
            .map_err(unavailable)?;
        Ok(Writer {
            queue: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `job` for the next batch.
    pub(super) fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.queue
            .as_ref()
            .and_then(|q| q.send(Request::Job(job)).ok())
            .ok_or_else(|| StoreError::Unavailable("the store writer has stopped".into()))
    }

    /// The right to commit a write on the caller's thread ([`Inline::commit`] for a
    /// marker, [`Inline::commit_synced`] for a send), while the writer thread waits with
    /// nothing in hand; `None` while it is busy (its batch would take the write with
    /// others) or another inline commit runs.
    pub(super) fn claim_idle(&self) -> Option<Inline<'_>> {
        if !self.shared.idle.load(SeqCst) {
            return None;
        }
        let state = self.shared.state.try_lock()?;
        Some(Inline {
            writer: self,
            state,
        })
    }

    /// Inline commits made (receipts, sends) and given up (receipts that had to read the
    /// tree), and journal fsyncs.
    pub(super) fn writer_counts(&self) -> WriterCounts {
        WriterCounts {
            made: self.shared.inline_commits.load(SeqCst),
            missed: self.shared.inline_misses.load(SeqCst),
            synced: self.shared.inline_synced.load(SeqCst),
            fsyncs: self.shared.fsyncs.load(SeqCst),
        }
    }

    /// Whether a commit waits for its fsync.
    #[cfg(test)]
    pub(super) fn unsynced(&self) -> bool {
        self.shared.state.lock().unsynced.is_some()
    }

    /// Makes the fsyncs look as slow as `took` lately.
    #[cfg(test)]
    pub(super) fn pretend_fsyncs_take(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.shared.fsync_ns.store(ns.max(1), SeqCst);
    }

    /// Whether the thread waits on its queue with nothing in hand.
    #[cfg(test)]
    pub(super) fn idle(&self) -> bool {
        self.shared.idle.load(SeqCst)
    }

    /// Whether the thread waits on its queue without a deadline.
    #[cfg(test)]
    pub(super) fn parked(&self) -> bool {
        self.shared.parked.load(SeqCst)
    }
}

/// A write committed on the caller's thread ([`Writer::claim_idle`]); holds the writer's
/// state, so the thread's next batch waits for it.
pub(super) struct Inline<'w> {
    writer: &'w Writer,
    state: MutexGuard<'w, State>,
}

impl Inline<'_> {
    /// Applies `f` to a batch of its own and commits it to the journal, without an fsync.
    /// `f` may read only what the writer's cache holds, so that no read of the tree (a
    /// disk read, at worst) runs on the caller's thread: `None` when it needed one, having
    /// written nothing (the caller then queues it). Like a batch of the thread's, a failed
    /// read or commit makes the cache start afresh.
    pub(super) fn commit<T>(
        mut self,
        f: impl for<'a> FnOnce(&mut Batch<'a>) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let (result, committed) = self.apply(true, PersistMode::Buffer, f)?;
        if !committed {
            return Some(result);
        }
        let sh = &*self.writer.shared;
        self.state.unsynced.get_or_insert_with(Instant::now);
        drop(self.state);
        sh.inline_commits.fetch_add(1, SeqCst);
        // Set after `unsynced` (under the lock the thread reads it with): either the thread
        // parks after seeing it, or its `parked` is visible here.
        if sh.parked.swap(false, SeqCst)
            && let Some(q) = &self.writer.queue
        {
            let _ = q.send(Request::Wake);
        }
        Some(result)
    }

    /// Applies `f` to a batch of its own, commits it and fsyncs the journal, all on the
    /// caller's thread: a write that waits for its fsync (a send) while the writer thread
    /// waits with nothing in hand. `None`, with nothing applied, when the last commit with
    /// an fsync began less than the commit interval ago (the write then joins the thread's
    /// next batch, which waits out the rest of it for company: group commit), or when
    /// fsyncs take longer than [`INLINE_FSYNC_MAX`] lately.
    ///
    /// Unlike [`Inline::commit`], `f` may read the tree: the caller blocks on the disk for
    /// the fsync anyway, and a send always reads its idempotency record there.
    pub(super) fn commit_synced<T>(
        mut self,
        f: impl for<'a> FnOnce(&mut Batch<'a>) -> Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        let sh = &*self.writer.shared;
        let began = Instant::now();
        let too_soon = self
            .state
            .last_fsync
            .is_some_and(|last| began < last + sh.interval);
        if too_soon || !sh.fsyncs_are_quick() {
            return None;
        }
        let (result, committed) = self.apply(false, PersistMode::SyncData, f)?;
        if committed {
            self.state.last_fsync = Some(began);
            self.state.unsynced = None;
            sh.inline_synced.fetch_add(1, SeqCst);
        }
        Some(result)
    }

    /// Applies `f` to a batch of its own (`cached_only`: reading only the writer's cache)
    /// and, unless it wrote nothing, commits it and persists the journal as `mode` says.
    /// Returns `f`'s result (or the commit's error) and whether a commit was made; `None`
    /// when a cached-only batch needed a read of the tree.
    fn apply<T>(
        &mut self,
        cached_only: bool,
        mode: PersistMode,
        f: impl for<'a> FnOnce(&mut Batch<'a>) -> Result<T, StoreError>,
    ) -> Option<(Result<T, StoreError>, bool)> {
        let sh = &*self.writer.shared;
        let t = &*sh.tables;
        let st = &mut *self.state;
        st.cache.make_room();
        let mut batch = if cached_only {
            Batch::cached_only(t, &mut st.cache)
        } else {
            Batch::new(t, &mut st.cache, 0)
        };
        let result = f(&mut batch);
        if batch.missed() {
            sh.inline_misses.fetch_add(1, SeqCst);
            return None;
        }
        if result.as_ref().err().is_some_and(poisons) {
            drop(batch);
            st.cache = WriterCache::default();
            return Some((result, false));
        }
        batch.finish();
        if batch.wb.is_empty() {
            return Some((result, false));
        }
        let committed = batch
            .wb
            .commit()
            .map_err(unavailable)
            .and_then(|()| sh.persist(mode));
        if let Err(e) = committed {
            tracing::error!(error = %e, "fjall inline commit failed; answering unavailable");
            st.cache = WriterCache::default();
            return Some((Err(e), false));
        }
        Some((result, true))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the fjall writer thread panicked");
        }
    }
}

/// The writer thread. It ends when the store (the only sender) is dropped, after
/// answering what was queued and fsyncing what was not yet.
fn writer_loop(sh: &Shared, rx: &mpsc::Receiver<Request>) {
    let t = &*sh.tables;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut items = 0;
    let mut inline_seen = 0;
    while let Some(job) = next_job(sh, rx, &mut inline_seen) {
        jobs.push(job);
        take_waiting(rx, &mut jobs);
        let fsync = jobs.iter().any(|j| j.wait == Wait::Fsync);
        if fsync {
            // Sleeping, not waiting on the queue: the writes that arrive meanwhile wake
            // nobody, and are all taken after it.
            let last_fsync = sh.state.lock().last_fsync;
            if let Some(wait) =
                last_fsync.and_then(|t| (t + sh.interval).checked_duration_since(Instant::now()))
            {
                std::thread::sleep(wait);
                take_waiting(rx, &mut jobs);
            }
        }
        let mut st = sh.state.lock();
        let State {
            cache,
            unsynced,
            last_fsync,
        } = &mut *st;
        if fsync {
            *last_fsync = Some(Instant::now());
        }
        cache.make_room();
        let mut batch = Batch::new(t, cache, items);
        let completions: Vec<Completion> =
            jobs.drain(..).map(|job| (job.apply)(&mut batch)).collect();
        batch.finish();
        items = batch.wb.len().min(MAX_BATCH * 8);
        let committed = if completions.iter().any(|c| c.poisoned) {
            Err(StoreError::Unavailable(
                "a read failed while writing the batch; nothing of it was stored".into(),
            ))
        } else {
            let mode = if fsync {
                PersistMode::SyncData
            } else {
                PersistMode::Buffer
            };
            batch
                .wb
                .commit()
                .map_err(unavailable)
                .and_then(|()| sh.persist(mode))
        };
        match &committed {
            Ok(()) if fsync => *unsynced = None,
            Ok(()) if items > 0 => {
                unsynced.get_or_insert_with(Instant::now);
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, "fjall batch not committed; answering unavailable");
                // The cache saw writes that did not land: start again from the tree.
                *cache = WriterCache::default();
            }
        }
        drop(st);
        for c in completions {
            let outcome = match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            };
            (c.answer)(outcome);
        }
    }
    sh.idle.store(false, SeqCst);
    sh.sync_unsynced();
}

/// Waits for the next job, and fsyncs the journal meanwhile once the oldest commit that
/// waits for it has waited [`JOURNAL_SYNC_WITHIN`]; `None` once the store is gone.
///
/// While inline commits come (their count moves past `inline_seen`) the wait keeps a
/// deadline even with nothing unsynced, so that they need not wake the thread; after a
/// quiet spell it waits without one, and the next inline commit wakes it
/// ([`Request::Wake`]).
fn next_job(sh: &Shared, rx: &mpsc::Receiver<Request>, inline_seen: &mut u64) -> Option<Job> {
    loop {
        let unsynced = sh.state.lock().unsynced;
        let inline = sh.inline_commits.load(SeqCst);
        let now = Instant::now();
        let deadline = match unsynced {
            Some(since) => Some(since + JOURNAL_SYNC_WITHIN),
            None if inline != *inline_seen => Some(now + JOURNAL_SYNC_WITHIN),
            None => None,
        };
        *inline_seen = inline;
        if deadline.is_some_and(|d| d <= now) {
            // Due already: a steady stream of marker batches must not put it off.
            sh.sync_unsynced();
            continue;
        }
        sh.idle.store(true, SeqCst);
        let got = match deadline {
            Some(d) => rx.recv_timeout(d - now),
            None => {
                sh.parked.store(true, SeqCst);
                if sh.state.lock().unsynced.is_some() {
                    // An inline commit came before `parked` was visible to it.
                    sh.parked.store(false, SeqCst);
                    sh.idle.store(false, SeqCst);
                    continue;
                }
                let got = rx.recv().map_err(|_| RecvTimeoutError::Disconnected);
                sh.parked.store(false, SeqCst);
                got
            }
        };
        sh.idle.store(false, SeqCst);
        match got {
            Ok(Request::Job(job)) => return Some(job),
            Ok(Request::Wake) => {}
            Err(RecvTimeoutError::Timeout) => sh.sync_unsynced(),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// Moves the writes waiting in the queue into `jobs`, up to a batch's bound.
fn take_waiting(rx: &mpsc::Receiver<Request>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Request::Job(job)) => jobs.push(job),
            // The thread is awake and takes a deadline before it next waits.
            Ok(Request::Wake) => {}
            Err(_) => break,
        }
    }
}
