//! The conformance suite on the in-memory backend.

use std::sync::Arc;

use chat_server::store::conformance::Subject;
use chat_server::store::{MemoryStore, StoreOptions};

chat_server::store_conformance!(async { Subject::new(Arc::new(MemoryStore::new())) });

#[tokio::test]
async fn idempotency_records_expire_after_the_window() {
    let window = std::time::Duration::from_secs(2);
    let store = MemoryStore::with_options(&StoreOptions {
        idempotency_window: window,
    });
    chat_server::store::conformance::idempotency_expires_after_the_window(&store, window).await;
}
