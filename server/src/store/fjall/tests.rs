//! The writer's inline commits: a receipt commits on the caller's thread while the writer
//! thread is idle, reads nothing from the tables there, and is fsynced within the journal's
//! bound even when the writer waited without a deadline; a lone send commits and fsyncs
//! there, and one within the commit interval of the last fsync joins the writer's batch.

use std::time::{Duration, Instant};

use super::{FjallStore, FjallTuning};
use crate::model::ConvId;
use crate::store::conformance::req;
use crate::store::{Marker, MessageStore, StoreOptions, WriterCounts};

/// Waits up to 5 s for `cond`.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn inline(store: &FjallStore) -> WriterCounts {
    store.writer.writer_counts()
}

/// Receipts committed inline, and those that went to the writer for a read.
fn receipts(store: &FjallStore) -> (u64, u64) {
    let c = inline(store);
    (c.made, c.missed)
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
    assert_eq!(receipts(&store), (1, 0));
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
    assert_eq!(receipts(&store), (0, 1));
    // The writer's batch read them into its cache: the next receipt commits inline.
    store.append(req(1, 2, "m2", "x")).await.unwrap();
    until("the writer is idle", || store.writer.idle()).await;
    store.mark(2, conv, Marker::Read, 2).await.unwrap();
    assert_eq!(receipts(&store), (1, 1));
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

#[tokio::test]
async fn a_lone_send_commits_and_fsyncs_on_the_callers_thread_and_a_close_one_joins_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_millis(100);
    let tuning = FjallTuning {
        commit_interval: Some(interval),
        ..FjallTuning::default()
    };
    let store = FjallStore::open_tuned(dir.path(), &StoreOptions::default(), &tuning).unwrap();
    // However slow this machine's disk is right now (see the next test).
    let quick = || store.writer.pretend_fsyncs_take(Duration::from_micros(1));
    quick();
    until("the writer is idle", || store.writer.idle()).await;
    let first = Instant::now();
    let sent = store.append(req(1, 2, "m1", "x")).await.unwrap();
    assert_eq!(sent.seq, 1);
    assert_eq!((inline(&store).synced, inline(&store).fsyncs), (1, 1));
    assert!(!store.writer.unsynced(), "answered before its fsync");
    // Within the interval of that fsync: the writer thread takes it, and waits out the
    // rest of the interval for company first.
    let sent = store.append(req(1, 2, "m2", "x")).await.unwrap();
    assert_eq!(sent.seq, 2);
    assert_eq!((inline(&store).synced, inline(&store).fsyncs), (1, 2));
    let took = first.elapsed();
    assert!(
        took >= interval,
        "the second fsync began {took:?} after the first"
    );
    // Once the interval has passed, a send finds the writer idle again and commits inline.
    until("the writer is idle", || store.writer.idle()).await;
    tokio::time::sleep(interval).await;
    quick();
    store.append(req(2, 1, "m3", "x")).await.unwrap();
    assert_eq!((inline(&store).synced, inline(&store).fsyncs), (2, 3));
    // Stored as the writer stores them: there after a reopen, in order.
    drop(store);
    let store = FjallStore::open(dir.path()).unwrap();
    let conv = ConvId::direct(1, 2).unwrap();
    let page = store.history(conv, None, 10).await.unwrap();
    let ids: Vec<_> = page.iter().map(|m| (m.seq, m.id.as_str())).collect();
    assert_eq!(ids, [(3, "m3"), (2, "m2"), (1, "m1")], "{page:?}");
}

#[tokio::test]
async fn a_lone_send_goes_to_the_writer_while_fsyncs_are_slow() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    until("the writer is idle", || store.writer.idle()).await;
    store
        .writer
        .pretend_fsyncs_take(super::writer::INLINE_FSYNC_MAX * 4);
    store.append(req(1, 2, "m1", "x")).await.unwrap();
    assert_eq!((inline(&store).synced, inline(&store).fsyncs), (0, 1));
    // Quick again (as the average of the writer's fsyncs comes down): inline again, once
    // the commit interval since the writer's fsync has passed.
    until("the writer is idle", || store.writer.idle()).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.writer.pretend_fsyncs_take(Duration::from_micros(1));
    store.append(req(1, 2, "m2", "x")).await.unwrap();
    assert_eq!((inline(&store).synced, inline(&store).fsyncs), (1, 2));
}

#[test]
fn the_fsync_average_follows_the_last_eight_or_so() {
    use super::writer::moving_average;
    assert_eq!(moving_average(0, 800), 800, "the first sets it");
    let mut avg = 4_000_000;
    for _ in 0..16 {
        avg = moving_average(avg, 100_000);
    }
    // 100 µs + 3.9 ms × (7/8)^16, give or take the integer divisions.
    let expected = 100_000.0 + 3_900_000.0 * (7.0f64 / 8.0).powi(16);
    assert!(
        (avg as f64 - expected).abs() < 100.0,
        "{avg}, not {expected}"
    );
    assert_eq!(moving_average(1, 0), 1, "never 0 (which means none yet)");
}
