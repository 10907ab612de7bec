//! History that loads older pages as one scrolls up, with the page size the client chose
//! (`?page=N`), every message once and in order; on a server without `--dev-login`,
//! where the page says sign-in by user id is not offered and a pasted token signs in.

use std::sync::Arc;

use chat_server::store::MemoryStore;
use serde_json::json;

use super::driver::Driver;
use crate::support::{Server, config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrolling_up_loads_older_pages_until_the_start() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let srv = Server::with(config(), Arc::new(MemoryStore::new())).await;
    // Carol writes first, Bob after: his conversation comes first in the list (later, or
    // as late and with the larger seq).
    let (status, body) = srv
        .post(
            3,
            "/v1/messages",
            &json!({"id": "c1", "to": "u:1", "body": "from Carol"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    const N: usize = 45;
    for i in 1..=N {
        let (status, body) = srv
            .post(
                2,
                "/v1/messages",
                &json!({"id": format!("h{i}"), "to": "u:1", "body": format!("history {i}")}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let alice = driver.window().await;
    alice.goto(&srv.url("/?page=10")).await;
    alice.fill("#login-user", "1").await;
    alice.click("#dev-form button[type=submit]").await;
    alice
        .wait("that sign-in by user id is off", |s| {
            s.text("loginError").contains("--dev-login") && s.0["signedIn"] == false
        })
        .await;
    alice
        .sign_in_with_token(&srv.url("/?page=10"), &srv.token(1, "laptop"))
        .await;
    alice
        .wait("45 unread from Bob, 1 from Carol, most recent first", |s| {
            s.unread("User 2") == Some(N as u64)
                && s.unread("User 3") == Some(1)
                && s.conv_titles() == ["User 2", "User 3"]
        })
        .await;
    alice.click_conv("User 2").await;
    let first = alice
        .wait("the newest page", |s| {
            s.bodies().last().map(String::as_str) == Some("history 45")
        })
        .await;
    assert!(
        first.bodies().len() < N,
        "the first screen should hold only the newest pages: {:?}",
        first.bodies()
    );

    // Scroll to the top until the start of the conversation is there.
    let mut shown = first;
    for _ in 0..20 {
        if shown.bodies().first().map(String::as_str) == Some("history 1") {
            break;
        }
        let before = shown.bodies().len();
        alice
            .client
            .execute(
                "document.getElementById('messages').scrollTop = 0; return null;",
                vec![],
            )
            .await
            .expect("scroll up");
        shown = alice
            .wait("an older page", |s| s.bodies().len() > before)
            .await;
    }
    let want: Vec<String> = (1..=N).map(|i| format!("history {i}")).collect();
    assert_eq!(shown.bodies(), want, "every message once, oldest first");
    let seqs: Vec<String> = (1..=N).map(|i| i.to_string()).collect();
    assert_eq!(shown.seqs(), seqs);
    alice.close().await;
    srv.stop().await;
}
