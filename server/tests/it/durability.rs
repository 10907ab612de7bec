//! kill -9 of a real server process on a fjall directory, under load, repeatedly: every
//! acknowledged message survives with its seq, sequences stay gap-free, retries of
//! unacknowledged ids are idempotent, and the next message continues the sequence.

use crate::child::kill9_rounds;

/// Three rounds of kill -9 under load on one fjall directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    kill9_rounds(&format!("fjall:{}", dir.path().display()), 3, "warn").await;
}

/// A marker is answered once it is in the journal file, before the fsync that follows
/// within 200 ms: a kill -9 right after the answer must still find it on restart (were it
/// left in the process's buffers, it would be gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_survive_kill_9_right_after_their_answer() {
    use crate::child::{ChildServer, token};
    use serde_json::{Value, json};

    let dir = tempfile::tempdir().unwrap();
    let store = format!("fjall:{}", dir.path().display());
    let http = reqwest::Client::new();
    let post = |addr: String, user: u64, path: &'static str, body: Value| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("http://{addr}{path}"))
                .bearer_auth(token(user))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
        }
    };
    let server = ChildServer::start(&store);
    for i in 1..=3 {
        let m = json!({"id": format!("m{i}"), "to": "u:2", "body": "hello"});
        post(server.addr.clone(), 1, "/v1/messages", m).await;
    }
    let mark = json!({"conv": "d:1:2", "seq": 2});
    post(server.addr.clone(), 2, "/v1/read", mark).await;
    server.kill9();

    let server = ChildServer::start(&store);
    let list: Value = http
        .get(format!("http://{}/v1/conversations", server.addr))
        .bearer_auth(token(2))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (list[0]["conv"].as_str(), list[0]["unread"].as_u64()),
        (Some("d:1:2"), Some(1)),
        "the read marker at 2 of 3 was lost: {list}"
    );
}
