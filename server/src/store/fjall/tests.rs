//! The writer's inline commits: a receipt commits on the caller's thread while the writer
//! thread is idle, reads nothing from the tables there, and is fsynced within the journal's
//! bound even when the writer waited without a deadline.

use std::time::{Duration, Instant};

use super::FjallStore;
use crate::model::ConvId;
use crate::store::conformance::req;
use crate::store::{InlineCommits, Marker, MessageStore};

/// Waits up to 5 s for `cond`.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn inline(store: &FjallStore) -> InlineCommits {
    store.writer.inline_commits()
}

#[tokio::test]
async fn a_receipt_commits_on_the_callers_thread_while_the_writer_is_idle() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let conv = ConvId::direct(1, 2).unwrap();
    store.append(req(1, 2, "m1", "x")).await.unwrap();
    until("the writer is idle", || store.writer.idle()).await;
    let out = store.mark(2, conv, Marker::Ack, 1).await.unwrap();
    assert_eq!((out.before, out.after), (0, 1));
    assert_eq!(inline(&store), InlineCommits { made: 1, missed: 0 });
    let list = store.conversations(2, 10).await.unwrap();
    assert_eq!((list[0].ack_seq, list[0].unread), (1, 1), "{list:?}");
    // Stored as the writer would store it: it is there after a reopen.
    drop(store);
    let store = FjallStore::open(dir.path()).unwrap();
    let list = store.conversations(2, 10).await.unwrap();
    assert_eq!(list[0].ack_seq, 1, "{list:?}");
}

#[tokio::test]
async fn a_receipt_that_must_read_the_tables_goes_to_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let conv = ConvId::direct(1, 2).unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    store.append(req(1, 2, "m1", "x")).await.unwrap();
    drop(store);
    // Reopened, the writer's cache is empty: the markers are in the tables only.
    let store = FjallStore::open(dir.path()).unwrap();
    until("the writer is idle", || store.writer.idle()).await;
    let out = store.mark(2, conv, Marker::Read, 1).await.unwrap();
    assert_eq!((out.before, out.after), (0, 1));
    assert_eq!(inline(&store), InlineCommits { made: 0, missed: 1 });
    // The writer's batch read them into its cache: the next receipt commits inline.
    store.append(req(1, 2, "m2", "x")).await.unwrap();
    until("the writer is idle", || store.writer.idle()).await;
    store.mark(2, conv, Marker::Read, 2).await.unwrap();
    assert_eq!(inline(&store), InlineCommits { made: 1, missed: 1 });
    let list = store.conversations(2, 10).await.unwrap();
    assert_eq!((list[0].read_seq, list[0].unread), (2, 0), "{list:?}");
}

#[tokio::test]
async fn an_inline_commit_wakes_a_writer_waiting_without_a_deadline_for_its_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let conv = ConvId::direct(1, 2).unwrap();
    store.append(req(1, 2, "m1", "x")).await.unwrap();
    // The send was fsynced: the writer waits for the next job without a deadline.
    until("the writer parks", || store.writer.parked()).await;
    let committed = Instant::now();
    store.mark(2, conv, Marker::Ack, 1).await.unwrap();
    assert_eq!(inline(&store).made, 1);
    until("the inline commit is fsynced", || !store.writer.unsynced()).await;
    let took = committed.elapsed();
    assert!(
        took < super::writer::JOURNAL_SYNC_WITHIN + Duration::from_millis(500),
        "fsynced {took:?} after the commit"
    );
}
