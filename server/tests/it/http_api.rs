//! The pull model over HTTP: sends, offline catch-up, long polls, history pages, the
//! conversation list and markers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Server;

fn seqs(v: &Value, key: &str) -> Vec<u64> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn http_send_reaches_every_websocket_device() {
    let s = Server::start().await;
    let mut a_ws = s.connect(1, "a-ws").await;
    let mut b_ws = s.connect(2, "b-ws").await;
    let (status, sent) = s
        .post(
            1,
            "/v1/messages",
            &json!({"id": "h1", "to": "u:2", "body": "over http"}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["conv"], "d:1:2");
    assert_eq!(
        (sent["seq"].as_u64(), sent["useq"].as_u64()),
        (Some(1), Some(1))
    );
    for dev in [&mut a_ws, &mut b_ws] {
        let m = dev.recv_type("msg").await;
        assert_eq!((m["id"].as_str(), m["seq"].as_u64()), (Some("h1"), Some(1)));
    }
    // Idempotent over HTTP too.
    let (_, again) = s
        .post(
            1,
            "/v1/messages",
            &json!({"id": "h1", "to": "u:2", "body": "retry"}),
        )
        .await;
    assert_eq!(again, sent);
    assert!(b_ws.drain(Duration::from_millis(200)).await.is_empty());
}

#[tokio::test]
async fn an_offline_device_catches_up_with_sync_and_misses_nothing() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    for i in 1..=5 {
        a.send_msg(&format!("o{i}"), "u:2", &format!("while offline {i}"))
            .await;
    }
    a.send_msg("other", "u:3", "another conversation").await;
    // B comes online; messages keep coming while it catches up.
    let mut b = s.connect(2, "b").await;
    let sender = tokio::spawn(async move {
        for i in 6..=10 {
            a.send_msg(&format!("o{i}"), "u:2", "live").await;
        }
    });
    let mut seen = std::collections::BTreeMap::new();
    let mut after = 0;
    loop {
        let (status, page) = s.get(2, &format!("/v1/sync?after={after}&limit=2")).await;
        assert_eq!(status, 200);
        for m in page["items"].as_array().unwrap() {
            seen.insert(
                m["useq"].as_u64().unwrap(),
                m["id"].as_str().unwrap().to_owned(),
            );
        }
        after = page["next"].as_u64().unwrap();
        if !page["more"].as_bool().unwrap() {
            break;
        }
    }
    sender.await.unwrap();
    // Live frames fill in whatever the sync did not see yet.
    while seen.len() < 10 {
        let m = b.recv_type("msg").await;
        seen.insert(
            m["useq"].as_u64().unwrap(),
            m["id"].as_str().unwrap().to_owned(),
        );
    }
    let ids: Vec<String> = seen.values().cloned().collect();
    let want: Vec<String> = (1..=10).map(|i| format!("o{i}")).collect();
    assert_eq!(ids, want);
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_long_poll_waits_then_answers_empty() {
    let s = Server::start().await;
    let t = Instant::now();
    let (status, out) = s.get(2, "/v1/sync?after=0&wait=1").await;
    assert_eq!(status, 200);
    assert_eq!(out, json!({"items": [], "next": 0, "more": false}));
    assert!(t.elapsed() >= Duration::from_millis(900), "it waited");
}

#[tokio::test]
async fn a_long_poll_wakes_when_a_message_arrives() {
    let s = Server::start().await;
    let poll = {
        let http = s.http.clone();
        let url = s.url("/v1/sync?after=0&wait=30");
        let token = s.token(2, "poller");
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            let started = Instant::now();
            (crate::support::status_json(r).await, started)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    s.post(
        1,
        "/v1/messages",
        &json!({"id": "wake", "to": "u:2", "body": "ping"}),
    )
    .await;
    let ((status, out), _) = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the poll wakes long before its 30 s")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(out["items"][0]["id"], "wake");
    assert_eq!(out["next"], 1);
    assert!(t.elapsed() < Duration::from_secs(10));
    // Entries that exist already answer at once.
    let (_, out) = s.get(2, "/v1/sync?after=0&wait=30").await;
    assert_eq!(out["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn history_pages_walk_back_to_the_first_message() {
    let s = Server::start().await;
    for i in 1..=120 {
        let who = if i % 2 == 0 { 1 } else { 2 };
        let to = if who == 1 { "u:2" } else { "u:1" };
        s.post(
            who,
            "/v1/messages",
            &json!({"id": format!("p{i}"), "to": to, "body": format!("{i}")}),
        )
        .await;
    }
    let (status, p1) = s.get(1, "/v1/conversations/d:1:2/messages?limit=50").await;
    assert_eq!(status, 200);
    assert_eq!(seqs(&p1, "messages"), (71..=120).rev().collect::<Vec<_>>());
    assert_eq!(p1["next_before"], 71);
    assert_eq!(p1["conv"], "d:1:2");
    let (_, p2) = s
        .get(2, "/v1/conversations/d:1:2/messages?limit=50&before=71")
        .await;
    assert_eq!(seqs(&p2, "messages"), (21..=70).rev().collect::<Vec<_>>());
    let (_, p3) = s
        .get(2, "/v1/conversations/d:1:2/messages?limit=50&before=21")
        .await;
    assert_eq!(seqs(&p3, "messages"), (1..=20).rev().collect::<Vec<_>>());
    assert_eq!(p3["next_before"], Value::Null);
    let (_, dflt) = s.get(2, "/v1/conversations/d:1:2/messages").await;
    assert_eq!(
        dflt["messages"].as_array().unwrap().len(),
        50,
        "default page size"
    );
    let m = &p3["messages"][19];
    assert_eq!(
        (m["id"].as_str(), m["body"].as_str(), m["from"].as_u64()),
        (Some("p1"), Some("1"), Some(2))
    );
}

#[tokio::test]
async fn conversations_list_recent_first_with_unread_and_markers() {
    let s = Server::start().await;
    s.post(
        2,
        "/v1/messages",
        &json!({"id": "a", "to": "u:1", "body": "x"}),
    )
    .await;
    s.post(
        2,
        "/v1/messages",
        &json!({"id": "b", "to": "u:1", "body": "y"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.post(
        3,
        "/v1/messages",
        &json!({"id": "c", "to": "u:1", "body": "z"}),
    )
    .await;
    let (status, list) = s.get(1, "/v1/conversations").await;
    assert_eq!(status, 200);
    let got: Vec<(String, u64, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["conv"].as_str().unwrap().into(),
                c["last_seq"].as_u64().unwrap(),
                c["unread"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![("d:1:3".into(), 1, 1), ("d:1:2".into(), 2, 2)]);
    assert!(list[0]["last_ts"].as_u64().unwrap() >= list[1]["last_ts"].as_u64().unwrap());
    let (status, body) = s
        .post(1, "/v1/read", &json!({"conv": "d:1:2", "seq": 1}))
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _) = s
        .post(1, "/v1/ack", &json!({"conv": "d:1:3", "seq": 1}))
        .await;
    assert_eq!(status, 204);
    let (_, list) = s.get(1, "/v1/conversations?limit=1").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = s.get(1, "/v1/conversations").await;
    assert_eq!(list[1]["unread"], 1, "read up to 1 of 2");
    assert_eq!(list[0]["unread"], 1, "an ack is not a read");
}
