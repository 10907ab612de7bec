//! The fjall store's reader threads: a fixed set that runs the store's reads.
//!
//! A read of the LSM-tree may block on the disk, so it cannot run on the async runtime.
//! tokio's blocking pool would take it, but that pool starts a new thread for each read
//! that finds none idle and keeps it for ten seconds: 10 K connects (each reads its user's
//! inbox head) grew it to 11 threads in one run and 61 in another on a 2-core host, each
//! with its own stack and allocator heap, and paid a thread start for each. A fixed set,
//! sized by the store's spec ([`super::tuning::FjallTuning::read_threads`]), queues a
//! burst instead: its reads are point lookups and short scans, each over in microseconds
//! unless the disk is slow.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::unavailable;
use crate::store::StoreError;

type Task = Box<dyn FnOnce() + Send>;

/// The reader threads and their queue. Dropping it closes the queue and waits for the
/// threads to finish the reads queued, so none holds the store's tables afterwards.
pub(super) struct Readers {
    queue: Option<Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    /// Starts `n` reader threads (at least one).
    pub(super) fn start(n: usize) -> Result<Self, StoreError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Task>();
        let mut readers = Readers {
            queue: Some(tx),
            threads: Vec::with_capacity(n.max(1)),
        };
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("fjall-reader-{i}"))
                .spawn(move || reader_loop(&rx))
                .map_err(unavailable)?;
            readers.threads.push(thread);
        }
        Ok(readers)
    }

    /// Queues `f` for a reader thread; the future answers with what it returns. A read that
    /// panics is answered with an error, and its thread goes on with the next read.
    pub(super) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let task: Task = Box::new(move || {
            let out = catch_unwind(AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(StoreError::Unavailable("a store read panicked".into())));
            // The caller may have gone (its request was cancelled): nobody to answer.
            let _ = tx.send(out);
        });
        let queued = self
            .queue
            .as_ref()
            .and_then(|q| q.send(task).ok())
            .ok_or_else(|| StoreError::Unavailable("the store readers have stopped".into()));
        async move {
            queued?;
            rx.await
                .map_err(|_| StoreError::Unavailable("a store read was dropped".into()))?
        }
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.queue = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a fjall reader thread panicked");
            }
        }
    }
}

/// A reader thread: runs reads until the queue is closed and empty.
fn reader_loop(rx: &Receiver<Task>) {
    while let Ok(task) = rx.recv() {
        task();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::Readers;
    use crate::store::StoreError;

    /// Two threads run two reads at once and no more: a third waits for one of them.
    #[tokio::test]
    async fn reads_run_on_at_most_the_threads_started() {
        let readers = Arc::new(Readers::start(2).unwrap());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut reads = Vec::new();
        for _ in 0..8 {
            let (readers, running, most) = (readers.clone(), running.clone(), most.clone());
            reads.push(tokio::spawn(async move {
                readers
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Hold the thread until a second read runs beside it (or give up:
                        // one thread alone never sees two).
                        let t0 = std::time::Instant::now();
                        while most.load(Ordering::SeqCst) < 2
                            && t0.elapsed() < Duration::from_secs(5)
                        {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(std::thread::current().name().map(str::to_owned))
                    })
                    .await
            }));
        }
        let mut names = std::collections::BTreeSet::new();
        for r in reads {
            names.insert(r.await.unwrap().unwrap());
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "reads at once");
        let want: std::collections::BTreeSet<_> = ["fjall-reader-0", "fjall-reader-1"]
            .into_iter()
            .map(|n| Some(n.to_owned()))
            .collect();
        assert_eq!(names, want);
    }

    /// A read that panics answers with an error and leaves its thread serving reads.
    #[tokio::test]
    async fn a_read_that_panics_is_an_error_and_the_thread_goes_on() {
        let readers = Readers::start(1).unwrap();
        let r: Result<(), StoreError> = readers.run(|| panic!("a bad read")).await;
        assert!(
            matches!(&r, Err(StoreError::Unavailable(m)) if m.contains("panicked")),
            "{r:?}"
        );
        assert_eq!(readers.run(|| Ok(7)).await.unwrap(), 7);
    }

    /// Dropping the readers waits for the reads queued, the one in hand and the one behind
    /// it: nothing runs after the drop.
    #[test]
    fn drop_waits_for_the_reads_queued() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let readers = Readers::start(1).unwrap();
        let d = done.clone();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let read = readers.run(move || {
            started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            d.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let d = done.clone();
        let behind = readers.run(move || {
            d.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        started_rx.recv().unwrap();
        drop(readers);
        assert_eq!(done.load(Ordering::SeqCst), 2);
        rt.block_on(read).unwrap();
        rt.block_on(behind).unwrap();
    }
}
