//! One order on every device, across a crash: two windows of one user and one of the
//! other show the same history; the server is killed (-9) and started again on the same
//! address and store under the open windows; what was written meanwhile shows as pending,
//! and once every window reconnected (with backoff) and caught up (`sync` from its last
//! position), every window shows every message exactly once, in the same order.

use std::process::{Command, Stdio};
use std::time::Duration;

use chat_server::process::ServerProcess;
use serde_json::json;

use super::driver::{Driver, Page, Shown};
use crate::support::SECRET;

/// `chat-server serve` with `--dev-login` on `addr` over the fjall directory `dir`.
fn serve(addr: &str, dir: &std::path::Path) -> ServerProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    cmd.args([
        "serve",
        "--addr",
        addr,
        "--send-rate",
        "0",
        "--jwt-secret",
        SECRET,
    ])
    .arg("--store")
    .arg(format!("fjall:{}", dir.display()))
    .args(["--dev-login", "--presence-online-delay-ms", "200"])
    .args(["--presence-offline-grace-ms", "500"])
    .env("RUST_LOG", "warn")
    .stderr(Stdio::inherit());
    ServerProcess::spawn(cmd, Duration::from_secs(60), |_| {}).expect("start chat-server")
}

/// The (seq, body) pairs a window shows, once none is pending.
fn history(s: &Shown) -> Vec<(String, String)> {
    s.seqs().into_iter().zip(s.bodies()).collect()
}

async fn settled(page: &Page, want: usize) -> Vec<(String, String)> {
    let s = page
        .wait(&format!("{want} messages, none pending, connected"), |s| {
            s.text("conn") == "ready"
                && s.bodies().len() == want
                && s.seqs().iter().all(|q| !q.is_empty())
        })
        .await;
    history(&s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_catch_up_after_a_server_restart_with_nothing_lost_or_doubled() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve("127.0.0.1:0", dir.path());
    let addr = server.addr.to_string();
    let base = format!("http://{addr}");

    let alice1 = driver.window().await;
    let alice2 = driver.window().await;
    let bob = driver.window().await;
    alice1.sign_in(&base, 1, "tab1").await;
    alice2.sign_in(&base, 1, "tab2").await;
    bob.sign_in(&base, 2, "phone").await;

    alice1.open_direct(2).await;
    alice1.send("before 1").await;
    bob.wait("Alice's message in the list", |s| {
        s.unread("User 1") == Some(1)
    })
    .await;
    bob.click_conv("User 1").await;
    bob.send("before 2").await;
    alice2
        .wait("the conversation in the list", |s| {
            s.conv_titles() == ["User 2"]
        })
        .await;
    alice2.click_conv("User 2").await;
    let a1 = settled(&alice1, 2).await;
    assert_eq!(a1, settled(&alice2, 2).await, "two tabs, one history");
    assert_eq!(a1, settled(&bob, 2).await);

    // The server dies under the open windows; what Alice writes now waits, pending.
    server.kill9();
    alice1
        .wait("the connection lost", |s| s.text("conn") != "ready")
        .await;
    alice1.send("while down 1").await;
    alice1.send("while down 2").await;
    alice1
        .wait("two pending messages", |s| {
            s.state_of("while down 1").as_deref() == Some("pending")
                && s.state_of("while down 2").as_deref() == Some("pending")
        })
        .await;

    // Back on the same address and store; Bob writes from another device at once, before
    // or while the windows come back.
    let _server = serve(&addr, dir.path());
    let http = reqwest::Client::new();
    let bob_api = chat_server::auth::Auth::new(SECRET).unwrap().issue(
        2,
        &"api".parse().unwrap(),
        chat_server::auth::now_secs() + 600,
    );
    for i in 1..=2 {
        let r = http
            .post(format!("{base}/v1/messages"))
            .bearer_auth(&bob_api)
            .json(&json!({"id": format!("after-{i}"), "to": "u:1", "body": format!("after restart {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    let a1 = settled(&alice1, 6).await;
    let a2 = settled(&alice2, 6).await;
    let b = settled(&bob, 6).await;
    let seqs: Vec<String> = (1..=6).map(|i| i.to_string()).collect();
    assert_eq!(
        a1.iter().map(|(q, _)| q.clone()).collect::<Vec<_>>(),
        seqs,
        "seq 1..=6 once each: {a1:?}"
    );
    let mut bodies: Vec<&str> = a1.iter().map(|(_, b)| b.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        [
            "after restart 1",
            "after restart 2",
            "before 1",
            "before 2",
            "while down 1",
            "while down 2"
        ]
    );
    assert_eq!(a1, a2, "both of Alice's tabs show the same history");
    assert_eq!(a1, b, "Bob sees the same history");
    // Nothing was stored twice: the server's history has the six messages.
    let r = http
        .get(format!("{base}/v1/conversations/d:1:2/messages?limit=50"))
        .bearer_auth(&bob_api)
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(6), "{page}");
    for p in [alice1, alice2, bob] {
        p.close().await;
    }
}
