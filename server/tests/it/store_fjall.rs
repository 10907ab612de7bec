//! The conformance suite on the fjall backend, each check in a fresh directory, plus what
//! only a durable backend can show: what was acknowledged is there after a reopen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_server::model::ConvId;
use chat_server::store::conformance::Subject;
use chat_server::store::{
    AppendRequest, FjallStore, FjallTuning, Marker, MessageStore, StoreOptions, Table,
};

async fn fresh() -> Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_owned();
    let store = tokio::task::spawn_blocking(move || FjallStore::open(&path))
        .await
        .unwrap()
        .expect("open fjall");
    Subject {
        store: Arc::new(store),
        guard: Box::new(dir),
    }
}

chat_server::store_conformance!(fresh());

#[tokio::test]
async fn acknowledged_writes_survive_a_reopen_and_sequences_continue() {
    let dir = tempfile::tempdir().unwrap();
    chat_server::store::conformance::fill_before_reopen(&FjallStore::open(dir.path()).unwrap())
        .await;
    chat_server::store::conformance::check_after_reopen(&FjallStore::open(dir.path()).unwrap())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_records_expire_after_the_window_and_leave_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_secs(2);
    let store = FjallStore::open_with(
        dir.path(),
        &StoreOptions {
            idempotency_window: window,
        },
    )
    .unwrap();
    chat_server::store::conformance::idempotency_expires_after_the_window(&store, window).await;
    // The expired records leave the table itself: 3,000 records settled take their room,
    // and once they expired and the store settled again, hardly anything is left.
    for i in 0..3_000u64 {
        store
            .append(send(5, 6, &format!("expiring-{i}")))
            .await
            .unwrap();
    }
    store.settle().await.unwrap();
    let idem_bytes = |r: &chat_server::store::StorageReport| {
        r.tables.get(&Table::Idempotency).copied().unwrap_or(0)
    };
    let full = idem_bytes(&store.storage().await.unwrap().unwrap());
    tokio::time::sleep(window + Duration::from_millis(300)).await;
    store.settle().await.unwrap();
    let left = idem_bytes(&store.storage().await.unwrap().unwrap());
    assert!(
        left * 4 < full,
        "expired records still take {left} B of the {full} B they took"
    );
}

fn send(from: u64, to: u64, id: &str) -> AppendRequest {
    AppendRequest {
        conv: ConvId::direct(from, to).unwrap(),
        from,
        id: id.parse().unwrap(),
        body: format!("body of {id}"),
        ts: chat_server::model::now_ms(),
    }
}

/// A settled store of N messages: every byte of its directory is in one table or the
/// journal, the messages hold most of it, and the figures are what `du` would say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_store_reports_tables_that_add_up_to_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    for i in 0..5_000u64 {
        let from = 1 + i % 50;
        let to = 51 + i % 7;
        store
            .append(AppendRequest {
                conv: ConvId::direct(from, to).unwrap(),
                from,
                id: format!("m{i}").parse().unwrap(),
                body: format!("{i:>100}"),
                ts: chat_server::model::now_ms(),
            })
            .await
            .unwrap();
    }
    let before = store.storage().await.unwrap().unwrap();
    assert!(
        before.journal.unwrap() > 0,
        "unflushed writes are in the journal"
    );
    store.settle().await.unwrap();
    let after = store.storage().await.unwrap().unwrap();
    let total = store.disk_bytes().await.unwrap().unwrap();
    assert_eq!(
        after.table_bytes() + after.journal.unwrap() + after.unaccounted,
        total,
        "{after:?} adds up to the directory's {total} B"
    );
    assert!(
        after.table_bytes() + after.journal.unwrap() <= total,
        "the live tables and the journal are files of the directory: {after:?}, {total} B"
    );
    for table in [
        Table::Messages,
        Table::Inbox,
        Table::Idempotency,
        Table::Markers,
    ] {
        assert!(after.tables[&table] > 0, "{table:?} is on disk: {after:?}");
    }
    assert!(
        after.tables[&Table::Messages] > after.tables[&Table::Markers],
        "{after:?}"
    );
    // Chat-like records compress: the keys are sequential, the bodies padded digits.
    let ratio = after.compression_ratio().unwrap();
    assert!(ratio > 1.0, "compression ratio {ratio} of {after:?}");
    // Everything survives settling.
    let page = store
        .history(ConvId::direct(1, 51).unwrap(), None, 200)
        .await
        .unwrap();
    assert!(!page.is_empty());
}

/// Writes `items` straight into a fjall directory, as another version of the store would
/// have left it.
fn write_raw(path: &std::path::Path, items: &[(&str, &[u8], &[u8])]) {
    let db = fjall::Database::builder(path).open().unwrap();
    for &(keyspace, key, value) in items {
        db.keyspace(keyspace, fjall::KeyspaceCreateOptions::default)
            .unwrap()
            .insert(key, value)
            .unwrap();
    }
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

/// A directory whose keys another version laid out is refused, not read with the wrong
/// keys (that would find no messages and hand out seq 1 again), and nothing in it changes.
#[test]
fn a_directory_of_another_key_format_is_refused_untouched() {
    // Format 1: a message keyed by fixed 8-byte ids, and no format mark.
    let old = tempfile::tempdir().unwrap();
    let mut key = b"d".to_vec();
    for n in [1u64, 2, 1] {
        key.extend_from_slice(&n.to_be_bytes());
    }
    write_raw(old.path(), &[("msgs", &key, b"a message")]);
    let refused = FjallStore::open(old.path()).err().expect("refused");
    assert!(refused.to_string().contains("key format 1"), "{refused}");
    // Asked twice: the first refusal did not mark the directory as the new format.
    let again = FjallStore::open(old.path()).err().expect("refused again");
    assert!(again.to_string().contains("key format 1"), "{again}");

    // A format from a later version.
    let newer = tempfile::tempdir().unwrap();
    write_raw(newer.path(), &[("meta", b"key_format", &[3])]);
    let refused = FjallStore::open(newer.path()).err().expect("refused");
    assert!(refused.to_string().contains("key format 3"), "{refused}");

    // A new directory is marked with the current format and opens again.
    let fresh = tempfile::tempdir().unwrap();
    drop(FjallStore::open(fresh.path()).unwrap());
    FjallStore::open(fresh.path()).expect("a directory of this version opens");
}

/// The writer keeps a bounded cache of the counters it hands out and forgets it all when
/// the bound is passed: sequences read back from the tree after that must continue where
/// the cache left them. One sender writes to 20,000 contacts (80,000 cache entries: each
/// conversation's counter, both users' markers in it and each recipient's inbox head),
/// then to the first hundred again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_continue_after_the_writers_cache_passed_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    const CONTACTS: u64 = 20_000;
    for chunk in (2..2 + CONTACTS).collect::<Vec<_>>().chunks(1_000) {
        let reqs = chunk
            .iter()
            .map(|&to| send(1, to, &format!("first-{to}")))
            .collect();
        for r in store.append_all(reqs).await {
            assert_eq!(r.unwrap().seq, 1);
        }
    }
    for (k, to) in (2..102u64).enumerate() {
        let a = store
            .append(send(1, to, &format!("again-{to}")))
            .await
            .unwrap();
        assert_eq!(a.seq, 2, "conversation 1-{to}");
        assert_eq!(a.useq, CONTACTS + 1 + k as u64, "the sender's inbox");
        assert_eq!(a.inboxes, vec![(1, a.useq), (to, 2)], "conversation 1-{to}");
    }
}

/// A commit with an fsync begins at most once per commit interval: the writes that come
/// while the writer waits out the rest of it share one commit, a marker (no fsync) is not
/// held, and a write after a quieter spell commits at once. The interval is a second here,
/// so that the bounds leave room for a slow machine (an fsync would have to take a second
/// to break them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_begins_at_most_once_per_commit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_secs(1);
    let tuning = FjallTuning {
        commit_interval: Some(interval),
        ..FjallTuning::default()
    };
    let store = FjallStore::open_tuned(dir.path(), &StoreOptions::default(), &tuning).unwrap();

    let start = Instant::now();
    store.append(send(1, 2, "alone")).await.unwrap();
    let alone = start.elapsed();
    assert!(
        alone < interval,
        "the first write of a quiet store waited {alone:?}"
    );
    // A marker needs no fsync: the interval does not hold it.
    store
        .mark(2, ConvId::direct(1, 2).unwrap(), Marker::Ack, 1)
        .await
        .unwrap();
    let marked = start.elapsed();
    assert!(
        marked < interval,
        "a marker right after a commit was answered {marked:?} after it began"
    );

    let (a, b, c) = tokio::join!(
        store.append(send(1, 2, "a")),
        store.append(send(3, 4, "b")),
        store.append(send(1, 2, "c")),
    );
    let together = start.elapsed();
    assert_eq!(
        [a.unwrap().seq, b.unwrap().seq, c.unwrap().seq],
        [2, 1, 3],
        "sequenced in the order they came"
    );
    assert!(
        together >= interval,
        "writes right after a commit were answered {together:?} after it began, within the interval"
    );
    assert!(
        together < interval * 2,
        "three writes that came within one interval took {together:?}: not one commit"
    );

    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let quiet = Instant::now();
    store
        .append(send(3, 4, "after a quiet spell"))
        .await
        .unwrap();
    let waited = quiet.elapsed();
    assert!(
        waited < interval,
        "a write after a quiet spell waited {waited:?}"
    );
}

/// The `chat_store_*` gauges of a server's `/metrics`, by name.
async fn store_gauges(server: &crate::support::Server) -> std::collections::BTreeMap<String, u64> {
    crate::support::metrics_text(&server.http, server.addr)
        .await
        .lines()
        .filter(|l| l.starts_with("chat_store_m") || l.starts_with("chat_store_cache"))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.trim().parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_give_the_memtables_size_and_their_bound() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = FjallTuning {
        memtable_bytes: Some(1 << 20),
        ..FjallTuning::default()
    };
    let store = FjallStore::open_tuned(dir.path(), &StoreOptions::default(), &tuning).unwrap();
    let server = crate::support::Server::with(crate::support::config(), Arc::new(store)).await;
    let before = store_gauges(&server).await;
    // Eight keyspaces of 1 MiB; fjall's default block cache of 32 MiB.
    assert_eq!(
        before["chat_store_memtable_limit_bytes"],
        8 << 20,
        "{before:?}"
    );
    assert_eq!(
        before["chat_store_cache_capacity_bytes"],
        32 << 20,
        "{before:?}"
    );
    let mut alice = server.connect(1, "phone").await;
    alice.ready().await;
    let body = "x".repeat(500);
    for i in 0..20 {
        let sent = alice.send_msg(&format!("m{i}"), "u:2", &body).await;
        assert_eq!(sent["type"], "sent", "{sent}");
    }
    let after = store_gauges(&server).await;
    let grown = after["chat_store_memtable_bytes"] - before["chat_store_memtable_bytes"];
    assert!(
        grown >= 20 * 500,
        "memtables grew {grown} bytes for 20 bodies of 500"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_store_without_memtables_reports_none() {
    let server = crate::support::Server::start().await;
    assert!(store_gauges(&server).await.is_empty());
    server.stop().await;
}

#[test]
fn a_reopened_store_reports_the_memtable_size_its_keyspaces_keep() {
    let dir = tempfile::tempdir().unwrap();
    let open = |bytes: Option<u64>| {
        let tuning = FjallTuning {
            memtable_bytes: bytes,
            ..FjallTuning::default()
        };
        FjallStore::open_tuned(dir.path(), &StoreOptions::default(), &tuning).unwrap()
    };
    let limit = |store: &FjallStore| store.memory().unwrap().tables_limit_bytes;
    let first = open(Some(1 << 20));
    assert_eq!(limit(&first), 8 << 20);
    drop(first);
    // fjall keeps the size a keyspace was created with, whatever a later spec asks.
    assert_eq!(limit(&open(Some(2 << 20))), 8 << 20);
    assert_eq!(limit(&open(None)), 8 << 20);
}

/// A receipt answered while the writer thread was idle was committed on the request's
/// thread; answered, it is in the journal file, so it survives a kill -9 of the process
/// (read markers move `unread`, which a restarted server reads back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_committed_on_the_callers_thread_survive_a_kill_9() {
    use crate::child::{ChildServer, get_json, token};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("fjall:{}", dir.path().display());
    let server = ChildServer::start(&spec);
    let http = reqwest::Client::new();
    let post = |user: u64, path: &str, body: serde_json::Value| {
        http.post(format!("http://{}{path}", server.addr))
            .bearer_auth(token(user))
            .json(&body)
            .send()
    };
    let convs = format!("http://{}/v1/conversations", server.addr);
    for (i, to) in [2u64, 3, 4].into_iter().enumerate() {
        let r = post(
            1,
            "/v1/messages",
            json!({"id": format!("m{i}"), "to": format!("u:{to}"), "body": "hi"}),
        )
        .await
        .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let conv = format!("d:1:{to}");
        assert_eq!(get_json(&http, &convs, to).await[0]["unread"], 1);
        // The writer waits with nothing in hand a moment after the send's answer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = post(to, "/v1/read", json!({"conv": conv, "seq": 1}))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let inline: u64 =
        crate::support::metric(&http, &server.addr, "chat_store_inline_commits_total").await;
    assert!(inline >= 2, "{inline} of 3 receipts committed inline");
    server.kill9();
    let server = ChildServer::start(&spec);
    let convs = format!("http://{}/v1/conversations", server.addr);
    for to in [2u64, 3, 4] {
        let list = get_json(&http, &convs, to).await;
        assert_eq!(list[0]["unread"], 0, "user {to}: {list}");
    }
}
