//! One order on every device, across a crash and a dropped network: two windows of one
//! user and one of the other show the same history; the server is killed (-9) and started
//! again on the same address and store under the open windows, and later the network
//! between browser and server drops. What is written in a window meanwhile shows as
//! pending; what others write meanwhile reaches the server directly, so a window can only
//! learn of it by catching up. Once every window reconnected (with backoff), caught up
//! (`sync` from its last position) and resent its pending messages (same ids), every
//! window shows every message exactly once, in the same order.

use std::process::{Command, Stdio};
use std::time::Duration;

use chat_server::process::ServerProcess;
use serde_json::{Value, json};

use super::driver::{Driver, Page, Shown};
use super::gate::Gate;
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

/// The (seq, body) pairs a window shows.
fn history(s: &Shown) -> Vec<(String, String)> {
    s.seqs().into_iter().zip(s.bodies()).collect()
}

/// Waits until the window is connected and shows `want` messages, none pending.
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

/// Bob writes to Alice from another device, straight to the server.
async fn bob_writes(server: &str, id: &str) {
    let r = reqwest::Client::new()
        .post(format!("http://{server}/v1/messages"))
        .bearer_auth(crate::child::token(2))
        .json(&json!({"id": id, "to": "u:1", "body": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn stored(server: &str) -> Value {
    let url = format!("http://{server}/v1/conversations/d:1:2/messages?limit=50");
    crate::child::get_json(&reqwest::Client::new(), &url, 2).await
}

/// Every window shows seqs 1..=n, each once, the same (seq → body) everywhere, and the
/// bodies are exactly `bodies`.
async fn all_agree(pages: &[&Page], bodies: &[&str]) {
    let n = bodies.len();
    let first = settled(pages[0], n).await;
    let seqs: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    assert_eq!(
        first.iter().map(|(q, _)| q.clone()).collect::<Vec<_>>(),
        seqs,
        "seq 1..={n} once each: {first:?}"
    );
    let mut got: Vec<&str> = first.iter().map(|(_, b)| b.as_str()).collect();
    got.sort_unstable();
    let mut want = bodies.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "every message once");
    for p in &pages[1..] {
        assert_eq!(settled(p, n).await, first, "one history on every window");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_catch_up_after_a_restart_and_a_dropped_network_with_nothing_lost_or_doubled() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve("127.0.0.1:0", dir.path());
    let addr = server.addr.to_string();
    let gate = Gate::start(server.addr).await;
    let base = format!("http://{}", gate.addr);

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
    let windows = [&alice1, &alice2, &bob];
    all_agree(&windows, &["before 1", "before 2"]).await;

    // The server dies under the open windows; what Alice writes now waits, pending.
    gate.shut();
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
    // Back on the same address and store. Bob writes from another device before any
    // window is back: the windows learn of it only by catching up.
    let _server = serve(&addr, dir.path());
    bob_writes(&addr, "after restart 1").await;
    bob_writes(&addr, "after restart 2").await;
    gate.open();
    let mut expected = vec![
        "before 1",
        "before 2",
        "while down 1",
        "while down 2",
        "after restart 1",
        "after restart 2",
    ];
    all_agree(&windows, &expected).await;

    // The network drops (the server stays up): the same again.
    gate.shut();
    alice2
        .wait("the connection lost", |s| s.text("conn") != "ready")
        .await;
    alice2.send("offline 1").await;
    bob_writes(&addr, "dropped 1").await;
    gate.open();
    expected.extend(["offline 1", "dropped 1"]);
    all_agree(&windows, &expected).await;

    // Nothing was stored twice.
    let page = stored(&addr).await;
    assert_eq!(
        page["messages"].as_array().map(Vec::len),
        Some(expected.len()),
        "{page}"
    );
    for p in [alice1, alice2, bob] {
        p.close().await;
    }
}
