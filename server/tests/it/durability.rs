//! kill -9 of a real server process on a fjall directory, under load, repeatedly: every
//! acknowledged message survives with its seq, sequences stay gap-free, retries of
//! unacknowledged ids are idempotent, and the next message continues the sequence.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::child::{Acked, ChildServer, check_histories, history, token, ws_sender};

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
                tokio::spawn(ws_sender(
                    server.addr.clone(),
                    from,
                    to,
                    round,
                    acked.clone(),
                ))
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
        check_histories(&server.addr, &["d:1:2", "d:3:4", "d:5:6"], &acked).await;
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
