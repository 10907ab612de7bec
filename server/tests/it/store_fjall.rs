//! The conformance suite on the fjall backend, each check in a fresh directory, plus what
//! only a durable backend can show: what was acknowledged is there after a reopen.

use std::sync::Arc;

use chat_server::model::ConvId;
use chat_server::store::conformance::Subject;
use chat_server::store::{AppendRequest, FjallStore, MessageStore};

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
    let conv = ConvId::direct(1, 2).unwrap();
    let req = |id: &str| AppendRequest {
        conv,
        from: 1,
        id: id.parse().unwrap(),
        body: format!("body of {id}"),
        ts: 5,
    };
    {
        let store = FjallStore::open(dir.path()).unwrap();
        for i in 0..50 {
            store.append(req(&format!("r{i}"))).await.unwrap();
        }
    }
    let store = FjallStore::open(dir.path()).unwrap();
    assert_eq!(store.history(conv, None, 100).await.unwrap().len(), 50);
    assert_eq!(store.inbox_head(2).await.unwrap(), 50);
    let again = store.append(req("r7")).await.unwrap();
    assert!(again.duplicate, "idempotency survives the reopen");
    assert_eq!(again.seq, 8);
    let next = store.append(req("new")).await.unwrap();
    assert_eq!((next.seq, next.useq), (51, 51));
}
