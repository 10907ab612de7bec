//! Two people chatting in two browser windows: sign-in by user id, the conversation list
//! and unread counts, ticks from sent to read, typing, presence, bodies shown as text, and
//! a group created, grown and shrunk by its admin.

use std::sync::Arc;
use std::time::Duration;

use chat_server::store::MemoryStore;
use serde_json::json;

use super::driver::Driver;
use crate::support::{Server, config};

/// A server with `--dev-login` and presence that reacts within a fraction of a second.
async fn server() -> Server {
    let mut c = config();
    c.dev_login = true;
    c.presence_online_delay = Duration::from_millis(200);
    c.presence_offline_grace = Duration::from_millis(500);
    Server::with(c, Arc::new(MemoryStore::new())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_ticks_reach_read_typing_and_presence_show() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let srv = server().await;
    let base = srv.url("");
    let alice = driver.window().await;
    let bob = driver.window().await;
    alice.sign_in(&base, 1, "laptop").await;
    bob.sign_in(&base, 2, "phone").await;

    // Alice opens a chat with Bob, who is online: the header says so.
    alice.open_direct(2).await;
    alice
        .wait("Bob online", |s| s.text("presence") == "online")
        .await;

    // Alice writes; Bob's window has the conversation in its list with one unread, so
    // Bob's device acknowledged it: Alice's tick says delivered.
    alice.send("Hello Bob").await;
    alice
        .wait("her message delivered", |s| {
            s.state_of("Hello Bob").as_deref() == Some("delivered")
        })
        .await;
    bob.wait("one unread from Alice", |s| s.unread("User 1") == Some(1))
        .await;

    // Bob opens it: it is read, Alice's tick turns to read, Bob's count to zero.
    bob.click_conv("User 1").await;
    bob.wait("Alice's message", |s| s.bodies() == ["Hello Bob"])
        .await;
    alice
        .wait("her message read", |s| {
            s.state_of("Hello Bob").as_deref() == Some("read")
        })
        .await;
    bob.wait("nothing unread", |s| s.unread("User 1") == Some(0))
        .await;

    // Bob types: Alice sees it. Then he answers, and she reads it at once (it is open).
    bob.fill("#composer-input", "Hi").await;
    alice
        .wait("Bob typing", |s| s.text("typing") == "User 2 is typing…")
        .await;
    bob.send("Hi Alice").await;
    alice
        .wait("Bob's answer", |s| s.bodies() == ["Hello Bob", "Hi Alice"])
        .await;
    alice
        .wait("no typing once he sent", |s| s.text("typing").is_empty())
        .await;
    bob.wait("his answer read", |s| {
        s.state_of("Hi Alice").as_deref() == Some("read")
    })
    .await;

    // A body that looks like markup is shown as the characters it is.
    let markup = "<b>bold</b> <img src=x onerror=\"document.title='owned'\">";
    bob.send(markup).await;
    let seen = alice
        .wait("the markup as text", |s| s.bodies().len() == 3)
        .await;
    assert_eq!(seen.bodies()[2], markup);
    assert!(
        !seen.0["messages"][2]["html"]
            .as_str()
            .unwrap()
            .contains("<b>"),
        "a body became markup: {:#}",
        seen.0
    );
    let title = alice.client.title().await.expect("the document's title");
    assert_eq!(title, "Chat · User 1");
    alice.screenshot("chat").await;

    // Bob closes his window: Alice sees him go offline, with when he was last seen.
    bob.close().await;
    let s = alice
        .wait("Bob offline with a last-seen time", |s| {
            s.text("presence").starts_with("last seen ")
        })
        .await;
    assert!(
        !s.0["convs"][0]["online"].as_bool().unwrap_or(true),
        "{:#}",
        s.0
    );
    alice.close().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_a_group_adds_and_removes_members() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let srv = server().await;
    let base = srv.url("");
    let alice = driver.window().await;
    let bob = driver.window().await;
    alice.sign_in(&base, 1, "laptop").await;
    bob.sign_in(&base, 2, "phone").await;

    alice.fill("#new-group-name", "Climbing").await;
    alice.fill("#new-group-members", "2, 3").await;
    alice.click("#new-group button[type=submit]").await;
    alice
        .wait("the new group open", |s| {
            s.text("title") == "Climbing" && s.0["members"].as_array().is_some_and(|m| m.len() == 3)
        })
        .await;
    alice.send("Saturday?").await;
    bob.wait("the group in his list", |s| s.unread("Climbing") == Some(1))
        .await;
    bob.click_conv("Climbing").await;
    bob.wait("the group's message", |s| s.bodies() == ["Saturday?"])
        .await;
    alice
        .wait("read by Bob", |s| {
            s.state_of("Saturday?").as_deref() == Some("read")
        })
        .await;

    // The admin adds user 4 and removes user 3.
    alice.click("#members summary").await;
    alice.fill("#add-member-user", "4").await;
    alice.click("#add-member button[type=submit]").await;
    alice
        .wait("user 4 a member", |s| {
            s.0["members"].to_string().contains("User 4")
        })
        .await;
    alice
        .click("#member-list button[aria-label='remove user 3']")
        .await;
    alice
        .wait("user 3 gone", |s| {
            !s.0["members"].to_string().contains("User 3")
        })
        .await;
    let (status, group) = srv.get(1, "/v1/groups/1").await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["members"], json!([1, 2, 4]));
    alice.screenshot("group").await;
    alice.close().await;
    bob.close().await;
    srv.stop().await;
}
