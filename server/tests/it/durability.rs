//! kill -9 of a real server process on a fjall directory, under load, repeatedly: every
//! acknowledged message survives with its seq, sequences stay gap-free, retries of
//! unacknowledged ids are idempotent, and the next message continues the sequence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::child::{Acked, ChildServer, history, token};

/// Sends as fast as `sent` comes back until the connection dies; records what was
/// acknowledged and the id that was in flight.
async fn sender(addr: String, from: u64, to: u64, round: usize, acked: Acked) -> Option<String> {
    let url = format!("ws://{addr}/v1/ws?token={}", token(from));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let mut i = 0;
    loop {
        let id = format!("r{round}-{from}-{i}");
        let body = format!("body of {id}");
        let frame = json!({"type": "send", "id": id, "to": format!("u:{to}"), "body": body});
        if ws.send(Message::text(frame.to_string())).await.is_err() {
            return Some(id);
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "sent" {
                        assert_eq!(v["id"], id.as_str());
                        let conv = v["conv"].as_str().unwrap().to_owned();
                        let seq = v["seq"].as_u64().unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .insert((from, id.clone()), (conv, seq, body.clone()));
                        break;
                    }
                    assert_ne!(v["type"], "error", "{v}");
                }
                Some(Ok(_)) => {}
                _ => return Some(id),
            }
        }
        i += 1;
    }
}

async fn send_http(addr: &str, from: u64, to: u64, id: &str) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/messages"))
        .bearer_auth(token(from))
        .json(&json!({"id": id, "to": format!("u:{to}"), "body": format!("body of {id}")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    // Users 1..=4 and 5..=8 talk in pairs, both directions at once.
    let pairs: Vec<(u64, u64)> = vec![(1, 2), (2, 1), (3, 4), (4, 3), (5, 6), (6, 5)];
    for round in 0..3 {
        let server = ChildServer::start(&format!("fjall:{}", dir.path().display()));
        let tasks: Vec<_> = pairs
            .iter()
            .map(|&(from, to)| {
                tokio::spawn(sender(server.addr.clone(), from, to, round, acked.clone()))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.kill9();
        let mut in_flight = Vec::new();
        for (t, &(from, to)) in tasks.into_iter().zip(&pairs) {
            if let Some(id) = t.await.unwrap() {
                in_flight.push((from, to, id));
            }
        }
        // Restart on the same directory.
        let server = ChildServer::start(&format!("fjall:{}", dir.path().display()));
        let acked_now = acked.lock().unwrap().clone();
        assert!(
            acked_now.len() > 10,
            "load was running: {} acknowledged",
            acked_now.len()
        );
        let mut per_conv: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for conv in ["d:1:2", "d:3:4", "d:5:6"] {
            let user: u64 = conv[2..3].parse().unwrap();
            per_conv.insert(conv.to_owned(), history(&server.addr, user, conv).await);
        }
        for ((from, id), (conv, seq, body)) in &acked_now {
            let msgs = &per_conv[conv];
            let found = msgs.iter().find(|m| m["seq"] == *seq).unwrap_or_else(|| {
                panic!("acknowledged {id} (seq {seq} in {conv}) lost after kill -9")
            });
            assert_eq!(
                (found["id"].as_str(), found["from"].as_u64()),
                (Some(id.as_str()), Some(*from))
            );
            assert_eq!(found["body"], body.as_str());
        }
        for (conv, msgs) in &per_conv {
            let mut seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
            seqs.reverse();
            assert_eq!(
                seqs,
                (1..=seqs.len() as u64).collect::<Vec<_>>(),
                "gap-free {conv}"
            );
            let mut ids: Vec<(u64, &str)> = msgs
                .iter()
                .map(|m| (m["from"].as_u64().unwrap(), m["id"].as_str().unwrap()))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), msgs.len(), "no duplicates in {conv}");
        }
        // Retrying what was in flight is idempotent: stored once at most.
        for (from, to, id) in &in_flight {
            let first = send_http(&server.addr, *from, *to, id).await;
            let again = send_http(&server.addr, *from, *to, id).await;
            assert_eq!(first, again);
            let conv = first["conv"].as_str().unwrap().to_owned();
            acked.lock().unwrap().insert(
                (*from, id.clone()),
                (
                    conv,
                    first["seq"].as_u64().unwrap(),
                    format!("body of {id}"),
                ),
            );
        }
        // The sequence continues.
        for conv in ["d:1:2", "d:3:4", "d:5:6"] {
            let lo: u64 = conv[2..3].parse().unwrap();
            let last = history(&server.addr, lo, conv)
                .await
                .first()
                .map_or(0, |m| m["seq"].as_u64().unwrap());
            let next = send_http(&server.addr, lo, lo + 1, &format!("after-{round}-{conv}")).await;
            assert_eq!(next["seq"].as_u64(), Some(last + 1), "{conv} continues");
            acked.lock().unwrap().insert(
                (lo, format!("after-{round}-{conv}")),
                (
                    conv.to_owned(),
                    last + 1,
                    format!("body of after-{round}-{conv}"),
                ),
            );
        }
        server.kill9();
    }
}
