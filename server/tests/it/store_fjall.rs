//! The conformance suite on the fjall backend, each check in a fresh directory, plus what
//! only a durable backend can show: what was acknowledged is there after a reopen.

use std::sync::Arc;

use chat_server::store::FjallStore;
use chat_server::store::conformance::Subject;

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
