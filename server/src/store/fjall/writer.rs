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

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use fjall::PersistMode;

use super::{Batch, CACHE_ENTRIES, Tables, WriterCache, unavailable};
use crate::store::StoreError;

/// How many queued writes one batch takes at most.
const MAX_BATCH: usize = 4096;

/// How long a batch that waited only for the journal stays without an fsync at most.
pub(super) const JOURNAL_SYNC_WITHIN: Duration = Duration::from_millis(200);

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

/// The writer thread's queue and handle. Dropping it closes the queue and waits for the
/// thread to finish the batch in hand (and fsync what is not yet), so that once the last
/// handle of a store is gone the directory's lock is free: an operator command or a
/// restarted server opening the same directory right after a stop never finds it locked.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread over `tables`, beginning a commit with an fsync at most once
    /// per `interval`.
    pub(super) fn start(tables: Arc<Tables>, interval: Duration) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fjall-writer".into())
            .spawn(move || writer_loop(&tables, &rx, interval))
            .map_err(unavailable)?;
        Ok(Writer {
            queue: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `job` for the next batch.
    pub(super) fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.queue
            .as_ref()
            .and_then(|q| q.send(job).ok())
            .ok_or_else(|| StoreError::Unavailable("the store writer has stopped".into()))
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
fn writer_loop(t: &Tables, rx: &mpsc::Receiver<Job>, interval: Duration) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut cache = WriterCache::default();
    let mut items = 0;
    // When the oldest batch committed without an fsync was committed.
    let mut unsynced: Option<Instant> = None;
    // When the last commit with an fsync began.
    let mut last_fsync: Option<Instant> = None;
    loop {
        let first = match unsynced {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(since) => rx.recv_timeout(JOURNAL_SYNC_WITHIN.saturating_sub(since.elapsed())),
        };
        let job = match first {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                unsynced = None;
                sync_journal(t);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        jobs.push(job);
        take_waiting(rx, &mut jobs);
        let fsync = jobs.iter().any(|j| j.wait == Wait::Fsync);
        if fsync {
            // Sleeping, not waiting on the queue: the writes that arrive meanwhile wake
            // nobody, and are all taken after it.
            if let Some(wait) =
                last_fsync.and_then(|t| (t + interval).checked_duration_since(Instant::now()))
            {
                std::thread::sleep(wait);
                take_waiting(rx, &mut jobs);
            }
            last_fsync = Some(Instant::now());
        }
        if cache.len() > CACHE_ENTRIES {
            cache.clear();
        }
        let mut batch = Batch::new(t, &mut cache, items);
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
                .and_then(|()| t.db.persist(mode))
                .map_err(unavailable)
        };
        match &committed {
            Ok(()) if fsync => unsynced = None,
            Ok(()) if items > 0 => {
                unsynced.get_or_insert_with(Instant::now);
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, "fjall batch not committed; answering unavailable");
                // The cache saw writes that did not land: start again from the tree.
                cache = WriterCache::default();
            }
        }
        for c in completions {
            let outcome = match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            };
            (c.answer)(outcome);
        }
    }
    if unsynced.is_some() {
        sync_journal(t);
    }
}

/// Moves the writes waiting in the queue into `jobs`, up to a batch's bound.
fn take_waiting(rx: &mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// Fsyncs the journal for the batches that waited only for it. A failure is logged: those
/// callers are answered already, and the next batch that needs an fsync meets the same
/// failure and answers `unavailable`.
fn sync_journal(t: &Tables) {
    if let Err(e) = t.db.persist(PersistMode::SyncData) {
        tracing::error!(error = %e, "fjall journal fsync failed");
    }
}
