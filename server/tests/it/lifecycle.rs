//! The server's life: the connection cap and graceful shutdown.

use std::time::Duration;

use crate::support::{Server, config};

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let mut cfg = config();
    cfg.max_connections = 2;
    let s = Server::with(
        cfg,
        std::sync::Arc::new(chat_server::store::MemoryStore::new()),
    )
    .await;
    let a = s.connect(1, "a").await;
    let _b = s.connect(2, "b").await;
    let third = {
        let url = format!("ws://{}/v1/ws?token={}", s.addr, s.token(3, "c"));
        tokio::spawn(async move { tokio_tungstenite::connect_async(url).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served over a cap of 2"
    );
    drop(a);
    tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a slot is free")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_closes_websockets_1001_and_answers_long_polls() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    a.send_msg("before", "u:2", "x").await;
    let poll = {
        let http = s.http.clone();
        let url = s.url("/v1/sync?after=1&wait=60");
        let token = s.token(1, "poller");
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(s.stop());
    assert_eq!(a.closed_with().await, 1001);
    let status = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the long poll answers at shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("run returns after draining")
        .unwrap();
}
