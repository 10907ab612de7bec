//! The server's life: the connection cap and graceful shutdown.

use std::time::Duration;

use crate::support::{Server, config, metric};

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

/// The server's `chat_runtime_tasks` gauge.
async fn runtime_tasks(s: &Server) -> i64 {
    metric(&s.http, s.addr, "chat_runtime_tasks").await
}

/// Tasks alive beyond `before`, read again for up to two seconds until `settled` holds:
/// tasks that are ending (hyper's for an upgraded connection, a closed session's) take
/// a moment to go.
async fn tasks_beyond(s: &Server, before: i64, settled: impl Fn(i64) -> bool) -> i64 {
    let mut beyond = runtime_tasks(s).await - before;
    for _ in 0..100 {
        if settled(beyond) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        beyond = runtime_tasks(s).await - before;
    }
    beyond
}

/// A WebSocket session is one task: reading, answering and writing the device's queue
/// all run in it, so an idle connection keeps one task's state (and no lock between a
/// reading and a writing half). Two tasks per connection would double the count here.
#[tokio::test]
async fn a_websocket_session_is_one_task_and_leaves_none_behind() {
    const DEVICES: i64 = 40;
    let s = Server::start().await;
    // Tasks the server starts once, on first need (presence's timers, the scrape's own
    // pooled HTTP connection), are there before the count begins.
    let mut first = s.connect(1000, "phone").await;
    first.ready().await;
    runtime_tasks(&s).await;
    let before = runtime_tasks(&s).await;
    let mut clients = Vec::new();
    for d in 0..DEVICES {
        let mut c = s.connect(1 + d as u64, "phone").await;
        c.ready().await;
        clients.push(c);
    }
    // Sending and delivering leave nothing running either.
    clients[0].send_msg("m1", "u:2", "hello").await;
    clients[1].recv_type("msg").await;
    // hyper's task for each upgraded HTTP connection ends once the upgrade is handed on.
    let during = tasks_beyond(&s, before, |n| n <= DEVICES).await;
    assert_eq!(
        during, DEVICES,
        "{DEVICES} WebSockets should run in {DEVICES} tasks"
    );
    for mut c in clients {
        c.ws.close(None).await.unwrap();
        let _ = c.closed_with().await;
    }
    let after = tasks_beyond(&s, before, |n| n == 0).await;
    assert_eq!(after, 0, "closed sessions leave no task behind");
}
