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
    use crate::child::{ChildServer, get_json, send_http, token};

    let dir = tempfile::tempdir().unwrap();
    let store = format!("fjall:{}", dir.path().display());
    let server = ChildServer::start(&store);
    for i in 1..=3 {
        let (status, answer) = send_http(&server.addr, 1, 2, &format!("m{i}")).await;
        assert_eq!(status, 200, "{answer}");
    }
    let http = reqwest::Client::new();
    let read = http
        .post(format!("http://{}/v1/read", server.addr))
        .bearer_auth(token(2))
        .json(&serde_json::json!({"conv": "d:1:2", "seq": 2}))
        .send()
        .await
        .unwrap();
    assert!(read.status().is_success(), "{}", read.status());
    server.kill9();

    let server = ChildServer::start(&store);
    let url = format!("http://{}/v1/conversations", server.addr);
    let list = get_json(&http, &url, 2).await;
    assert_eq!(
        (list[0]["conv"].as_str(), list[0]["unread"].as_u64()),
        (Some("d:1:2"), Some(1)),
        "the read marker at 2 of 3 was lost: {list}"
    );
}
