//! Presence with hysteresis, to subscribers only. Delays are short here (hundreds of
//! milliseconds) and the checks leave wide margins: they test what is published, not how
//! fast.

use std::sync::Arc;
use std::time::Duration;

use chat_server::store::MemoryStore;
use serde_json::{Value, json};

use crate::support::{Client, Server, config};

const ONLINE_DELAY: Duration = Duration::from_millis(400);
const OFFLINE_GRACE: Duration = Duration::from_millis(600);

async fn server() -> Server {
    let mut c = config();
    c.presence_online_delay = ONLINE_DELAY;
    c.presence_offline_grace = OFFLINE_GRACE;
    Server::with(c, Arc::new(MemoryStore::new())).await
}

fn presences(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|f| f["type"] == "presence").collect()
}

async fn subscribe(c: &mut Client, users: &[u64]) -> Vec<Value> {
    c.send_json(json!({"type": "presence_sub", "users": users}))
        .await;
    let mut out = Vec::new();
    for _ in users {
        out.push(c.recv_type("presence").await);
    }
    out
}

#[tokio::test]
async fn subscribers_get_a_snapshot_then_changes_after_the_delays() {
    let s = server().await;
    let mut a = s.connect(1, "a").await;
    let snap = subscribe(&mut a, &[2, 3]).await;
    assert_eq!(
        snap,
        vec![
            json!({"type": "presence", "user": 2, "status": "offline", "last_seen": null}),
            json!({"type": "presence", "user": 3, "status": "offline", "last_seen": null}),
        ]
    );
    let b = s.connect(2, "b").await;
    // Not before the online delay…
    let early = a.drain(ONLINE_DELAY / 3).await;
    assert!(presences(&early).is_empty(), "{early:?}");
    // …but after it.
    let online = a.recv_type("presence").await;
    assert_eq!(
        (online["user"].as_u64(), online["status"].as_str()),
        (Some(2), Some("online"))
    );
    let (_, q) = s.get(1, "/v1/presence?users=2,3").await;
    assert_eq!(q[0]["status"], "online");
    assert_eq!(q[1]["status"], "offline");
    drop(b);
    let offline = a.recv_type("presence").await;
    assert_eq!(offline["status"], "offline");
    assert!(offline["last_seen"].as_u64().unwrap() > 1_600_000_000_000);
    let (_, q) = s.get(1, "/v1/presence?users=2").await;
    assert_eq!(q[0]["last_seen"], offline["last_seen"]);
}

#[tokio::test]
async fn flaps_shorter_than_the_delays_publish_nothing() {
    let s = server().await;
    let mut a = s.connect(1, "a").await;
    subscribe(&mut a, &[2]).await;
    // A flap while offline: connected for less than the online delay.
    let b = s.connect(2, "b").await;
    tokio::time::sleep(ONLINE_DELAY / 4).await;
    drop(b);
    let frames = a.drain(ONLINE_DELAY * 2).await;
    assert!(presences(&frames).is_empty(), "{frames:?}");
    // Online for real, then a short disconnect inside the offline grace.
    let _b = s.connect(2, "b").await;
    assert_eq!(a.recv_type("presence").await["status"], "online");
    let b2 = s.connect(2, "b2").await;
    drop(_b);
    drop(b2);
    tokio::time::sleep(OFFLINE_GRACE / 4).await;
    let _b3 = s.connect(2, "b3").await;
    let frames = a.drain(OFFLINE_GRACE * 2).await;
    assert!(presences(&frames).is_empty(), "{frames:?}");
}

#[tokio::test]
async fn only_subscribers_hear_of_changes_and_a_new_list_replaces_the_old() {
    let s = server().await;
    let mut watcher = s.connect(1, "w").await;
    let mut bystander = s.connect(9, "x").await;
    subscribe(&mut watcher, &[2]).await;
    subscribe(&mut watcher, &[3]).await; // replaces [2]
    let _b = s.connect(2, "b").await;
    let _c = s.connect(3, "c").await;
    let got = watcher.recv_type("presence").await;
    assert_eq!(
        (got["user"].as_u64(), got["status"].as_str()),
        (Some(3), Some("online"))
    );
    let rest = watcher.drain(ONLINE_DELAY).await;
    assert!(presences(&rest).is_empty(), "no news of user 2: {rest:?}");
    let heard = bystander.drain(ONLINE_DELAY).await;
    assert!(presences(&heard).is_empty(), "{heard:?}");
}

#[tokio::test]
async fn an_http_only_client_is_online_while_it_long_polls() {
    let s = server().await;
    let poll = {
        let http = s.http.clone();
        let url = s.url("/v1/sync?after=0&wait=3");
        let token = s.token(4, "http-only");
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(ONLINE_DELAY * 2).await;
    let (_, q) = s.get(1, "/v1/presence?users=4").await;
    assert_eq!(q[0]["status"], "online");
    assert_eq!(poll.await.unwrap().unwrap(), 200);
    // Still online right after the poll ended (a 30 s hold).
    let (_, q) = s.get(1, "/v1/presence?users=4").await;
    assert_eq!(q[0]["status"], "online");
}

#[tokio::test]
async fn presence_lists_are_checked() {
    let s = server().await;
    let mut a = s.connect(1, "a").await;
    let many: Vec<u64> = (1..=1001).collect();
    a.send_json(json!({"type": "presence_sub", "users": many}))
        .await;
    assert_eq!(a.recv_type("error").await["code"], "bad_request");
    a.send_json(json!({"type": "presence_sub", "users": [0]}))
        .await;
    assert_eq!(a.recv_type("error").await["code"], "bad_request");
    let (st, b) = s.get(1, "/v1/presence?users=1,x").await;
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (st, _) = s.get(1, "/v1/presence?users=").await;
    assert_eq!(st, 200);
}
