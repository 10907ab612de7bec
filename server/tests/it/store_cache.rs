//! The recent-conversations cache must be invisible: the whole conformance suite passes
//! through it, and writes invalidate what they change.

use std::sync::Arc;

use chat_server::metrics::Metrics;
use chat_server::model::ConvId;
use chat_server::store::cache::Cached;
use chat_server::store::conformance::Subject;
use chat_server::store::timed::Timed;
use chat_server::store::{AppendRequest, Marker, MemoryStore, MessageStore};

/// The cache sits in front of messages and groups; push registrations go straight to
/// the store, assembled into one whole store as the server does it.
fn cached(store: Arc<MemoryStore>, metrics: &Arc<Metrics>) -> Timed {
    let cache = Arc::new(Cached::new(store.clone(), store.clone(), metrics));
    Timed::new(cache.clone(), cache, store, metrics.clone())
}

chat_server::store_conformance!(async {
    Subject::new(Arc::new(cached(
        Arc::new(MemoryStore::new()),
        &Arc::new(Metrics::new()),
    )))
});

fn send(from: u64, to: u64, id: &str) -> AppendRequest {
    AppendRequest {
        conv: ConvId::direct(from, to).unwrap(),
        from,
        id: id.parse().unwrap(),
        body: id.into(),
        ts: chat_server::model::now_ms(),
    }
}

#[tokio::test]
async fn hits_are_counted_and_writes_invalidate() {
    let metrics = Metrics::new();
    let inner = Arc::new(MemoryStore::new());
    let store = Cached::new(inner.clone(), inner, &metrics);
    let conv = ConvId::direct(1, 2).unwrap();
    store.append(send(1, 2, "a")).await.unwrap();
    assert_eq!(store.history(conv, None, 15).await.unwrap().len(), 1);
    assert_eq!(store.history(conv, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.conversations(2, 5).await.unwrap()[0].unread, 1);
    assert_eq!(store.conversations(2, 5).await.unwrap()[0].unread, 1);
    store.append(send(2, 1, "b")).await.unwrap();
    let page = store.history(conv, None, 15).await.unwrap();
    assert_eq!(page.len(), 2, "the append invalidated the page");
    store.mark(2, conv, Marker::Read, 1).await.unwrap();
    assert_eq!(
        store.conversations(2, 5).await.unwrap()[0].unread,
        0,
        "the read invalidated the list"
    );
    // Outside the cached window: straight to the store.
    assert_eq!(store.history(conv, Some(2), 15).await.unwrap().len(), 1);
    let text = metrics.render();
    assert!(
        text.contains("chat_cache_hits_total{cache=\"messages\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("chat_cache_misses_total{cache=\"messages\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("chat_cache_hits_total{cache=\"conversations\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("chat_cache_misses_total{cache=\"conversations\"} 2"),
        "{text}"
    );
}
