//! One-on-one chat over WebSocket: fan-out, one order on every device (the crossing case),
//! idempotency, receipts and typing.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, config};

#[tokio::test]
async fn send_fans_out_to_every_other_device_of_both_users() {
    let s = Server::start().await;
    let mut a1 = s.connect(1, "a-phone").await;
    let mut a2 = s.connect(1, "a-laptop").await;
    let mut b1 = s.connect(2, "b-phone").await;
    let mut b2 = s.connect(2, "b-tablet").await;
    let sent = a1.send_msg("m1", "u:2", "hello B").await;
    assert_eq!(sent["type"], "sent");
    assert_eq!(sent["conv"], "d:1:2");
    assert_eq!(
        (sent["seq"].as_u64(), sent["useq"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(sent["ts"].as_u64().unwrap() > 1_600_000_000_000);
    for (dev, useq) in [(&mut a2, 1), (&mut b1, 1), (&mut b2, 1)] {
        let m = dev.recv_type("msg").await;
        assert_eq!(m["conv"], "d:1:2");
        assert_eq!(m["seq"], 1);
        assert_eq!(m["useq"], useq);
        assert_eq!(m["from"], 1);
        assert_eq!(m["id"], "m1");
        assert_eq!(m["body"], "hello B");
        assert_eq!(m["ts"], sent["ts"]);
    }
    // The sending device gets `sent`, not a `msg` of its own message.
    let extra = a1.drain(Duration::from_millis(200)).await;
    assert!(extra.iter().all(|f| f["type"] != "msg"), "{extra:?}");
}

/// The source design's M1/M2 case, at scale: several devices of two users send into the
/// same conversation at once; every device sees one gap-free order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_see_one_order_on_every_device() {
    let s = Server::start().await;
    const PER_DEVICE: usize = 50;
    let devices = [(1u64, "a1"), (1, "a2"), (2, "b1"), (2, "b2")];
    let mut watchers = Vec::new();
    for (user, dev) in devices {
        watchers.push(s.connect(user, &format!("watch-{dev}")).await);
    }
    let mut senders = Vec::new();
    for (user, dev) in devices {
        let mut c = s.connect(user, dev).await;
        let to = if user == 1 { "u:2" } else { "u:1" };
        senders.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..PER_DEVICE {
                let id = format!("{dev}-{i}");
                let sent = c.send_msg(&id, to, &id).await;
                assert_eq!(sent["type"], "sent", "{sent}");
                seqs.push(sent["seq"].as_u64().unwrap());
            }
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "a device's sends keep its order"
            );
            seqs
        }));
    }
    let mut all: Vec<u64> = Vec::new();
    for t in senders {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let total = devices.len() * PER_DEVICE;
    assert_eq!(all, (1..=total as u64).collect::<Vec<_>>());
    // Every watcher device sees every message, in seq order, with gap-free useqs, and the
    // same seq -> id mapping as every other device.
    let mut mappings: Vec<HashMap<u64, String>> = Vec::new();
    for w in &mut watchers {
        let mut map = HashMap::new();
        let mut last_useq = 0;
        while map.len() < total {
            let m = w.recv_type("msg").await;
            let useq = m["useq"].as_u64().unwrap();
            assert_eq!(useq, last_useq + 1, "useq order on a device");
            last_useq = useq;
            assert_eq!(
                m["seq"], useq,
                "one conversation: seq order equals inbox order"
            );
            map.insert(useq, m["id"].as_str().unwrap().to_owned());
        }
        mappings.push(map);
    }
    assert!(
        mappings.windows(2).all(|w| w[0] == w[1]),
        "same history everywhere"
    );
}

#[tokio::test]
async fn resending_an_id_returns_the_first_outcome() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    let mut b = s.connect(2, "b").await;
    let first = a.send_msg("same-id", "u:2", "once").await;
    let again = a.send_msg("same-id", "u:2", "twice").await;
    assert_eq!(first, again);
    let got = b.drain(Duration::from_millis(300)).await;
    let msgs: Vec<&Value> = got.iter().filter(|f| f["type"] == "msg").collect();
    assert_eq!(msgs.len(), 1, "delivered once: {got:?}");
    assert_eq!(msgs[0]["body"], "once");
    // The same id over HTTP from another device of the same user is the same message too.
    let (status, http) = s
        .post(
            1,
            "/v1/messages",
            &json!({"id": "same-id", "to": "u:2", "body": "x"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(http["seq"], first["seq"]);
    assert_eq!(http["useq"], first["useq"]);
    assert_eq!(http["ts"], first["ts"]);
}

/// Sends that reach the server together are answered each in its place: in send order,
/// `seq` growing by one, a bad one refused in its place, a repeated id given its first
/// outcome, and the receiver gets them in the same order. Over the embedded durable store
/// (which stores such a burst in one batch) and the memory store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let fjall = chat_server::store::open(&format!("fjall:{}", dir.path().display()))
        .await
        .unwrap();
    for s in [Server::with(config(), fjall).await, Server::start().await] {
        let mut a = s.connect(1, "a").await;
        let mut b = s.connect(2, "b").await;
        a.ready().await;
        b.ready().await;
        let n = 40;
        let frames: Vec<Value> = (0..n)
            .map(|i| {
                let (id, body) = match i {
                    7 => ("p7".to_owned(), String::new()),
                    20 => ("p3".to_owned(), "repeated".to_owned()),
                    _ => (format!("p{i}"), format!("body {i}")),
                };
                json!({"type": "send", "id": id, "to": "u:2", "body": body})
            })
            .collect();
        a.send_burst(&frames).await;
        let mut seqs = HashMap::new();
        let mut next_seq = 1;
        for (i, f) in frames.iter().enumerate() {
            let v = a.recv().await;
            assert_eq!(
                v["id"].as_str().or(v["ref"].as_str()),
                f["id"].as_str(),
                "{i}: {v}"
            );
            match i {
                7 => assert_eq!(v["type"], "error", "an empty body is refused: {v}"),
                20 => assert_eq!(v["seq"], seqs[&3], "a repeated id: {v}"),
                _ => {
                    assert_eq!(
                        (v["type"].as_str(), v["seq"].as_u64()),
                        (Some("sent"), Some(next_seq)),
                        "{i}"
                    );
                    seqs.insert(i, next_seq);
                    next_seq += 1;
                }
            }
        }
        let stored = next_seq - 1;
        assert_eq!(stored, n - 2);
        for seq in 1..=stored {
            let m = b.recv_type("msg").await;
            assert_eq!(m["seq"], seq, "{m}");
        }
    }
}

#[tokio::test]
async fn acks_send_delivered_once_and_reads_send_read() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    let mut b = s.connect(2, "b").await;
    for i in 1..=3 {
        a.send_msg(&format!("r{i}"), "u:2", "hi").await;
    }
    for _ in 0..3 {
        b.recv_type("msg").await;
    }
    b.send_json(json!({"type": "ack", "conv": "d:1:2", "seq": 2}))
        .await;
    let d = a.recv_type("delivered").await;
    assert_eq!(
        d,
        json!({"type": "delivered", "conv": "d:1:2", "seq": 2, "user": 2})
    );
    // An ack that moves nothing sends nothing; the next one that moves does.
    b.send_json(json!({"type": "ack", "conv": "d:1:2", "seq": 1}))
        .await;
    b.send_json(json!({"type": "ack", "conv": "d:1:2", "seq": 3}))
        .await;
    let d = a.recv_type("delivered").await;
    assert_eq!(d["seq"], 3);
    b.send_json(json!({"type": "read", "conv": "d:1:2", "seq": 3}))
        .await;
    let r = a.recv_type("read").await;
    assert_eq!(
        r,
        json!({"type": "read", "conv": "d:1:2", "seq": 3, "user": 2})
    );
    let rest = a.drain(Duration::from_millis(200)).await;
    assert!(rest.iter().all(|f| f["type"] != "delivered"), "{rest:?}");
    // Acks of one's own messages notify nobody.
    let mut a2 = s.connect(1, "a2").await;
    a2.send_json(json!({"type": "ack", "conv": "d:1:2", "seq": 3}))
        .await;
    a2.send_json(json!({"type": "ping"})).await;
    assert_eq!(a2.recv_type("pong").await, json!({"type": "pong"}));
    assert!(
        b.drain(Duration::from_millis(200))
            .await
            .iter()
            .all(|f| f["type"] != "delivered")
    );
    // An ack that ends on the peer's message reports to the peer; one that ends on an own
    // message reports to the peer when it covers one of the peer's too.
    b.send_msg("b1", "u:1", "yo").await;
    a2.send_json(json!({"type": "ack", "conv": "d:1:2", "seq": 4}))
        .await;
    let d = b.recv_type("delivered").await;
    assert_eq!(
        d,
        json!({"type": "delivered", "conv": "d:1:2", "seq": 4, "user": 1})
    );
    b.send_msg("b2", "u:1", "yo").await;
    a.send_msg("r4", "u:2", "hi").await;
    a2.send_json(json!({"type": "ack", "conv": "d:1:2", "seq": 6}))
        .await;
    let d = b.recv_type("delivered").await;
    assert_eq!(
        d,
        json!({"type": "delivered", "conv": "d:1:2", "seq": 6, "user": 1})
    );
}

#[tokio::test]
async fn typing_reaches_the_other_participant_only() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    let mut b = s.connect(2, "b").await;
    let mut c = s.connect(3, "c").await;
    a.send_json(json!({"type": "typing", "conv": "d:1:2"}))
        .await;
    assert_eq!(
        b.recv_type("typing").await,
        json!({"type": "typing", "conv": "d:1:2", "user": 1})
    );
    assert!(c.drain(Duration::from_millis(200)).await.is_empty());
    c.send_json(json!({"type": "typing", "conv": "d:1:2"}))
        .await;
    let e = c.recv_type("error").await;
    assert_eq!(e["code"], "forbidden");
}

#[tokio::test]
async fn history_and_sync_over_the_socket() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    for i in 1..=7 {
        a.send_msg(&format!("h{i}"), "u:2", &format!("n{i}")).await;
    }
    a.send_json(json!({"type": "history", "conv": "d:1:2", "limit": 3}))
        .await;
    let h = a.recv_type("history").await;
    let seqs: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![7, 6, 5]);
    assert_eq!(h["next_before"], 5);
    assert!(
        h["messages"][0].get("useq").is_none(),
        "history carries no useq"
    );
    let mut b = s.connect(2, "b").await;
    b.send_json(json!({"type": "sync", "after": 4, "limit": 2}))
        .await;
    let y = b.recv_type("sync").await;
    let useqs: Vec<u64> = y["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["useq"].as_u64().unwrap())
        .collect();
    assert_eq!(useqs, vec![5, 6]);
    assert_eq!(
        (y["next"].as_u64(), y["more"].as_bool()),
        (Some(6), Some(true))
    );
}
