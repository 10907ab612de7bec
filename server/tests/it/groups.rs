//! Group chats: creation and inspection, admin rules, member cap, one sequence per group,
//! fan-out to members, and removal that cuts a member off.

use std::sync::Arc;
use std::time::Duration;

use chat_server::store::MemoryStore;
use serde_json::json;

use crate::support::{Server, config};

async fn server(max_members: usize) -> Server {
    let mut c = config();
    c.max_group_members = max_members;
    Server::with(c, Arc::new(MemoryStore::new())).await
}

async fn create(s: &Server, admin: u64, members: &[u64]) -> u64 {
    let (st, b) = s
        .post(
            admin,
            "/v1/groups",
            &json!({"name": "team", "members": members}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let id = b["group"].as_u64().unwrap();
    assert_eq!(b["conv"], format!("g:{id}"));
    id
}

#[tokio::test]
async fn create_inspect_and_the_admin_rules() {
    let s = server(4).await;
    let g = create(&s, 1, &[2, 3]).await;
    let (st, info) = s.get(2, &format!("/v1/groups/{g}")).await;
    assert_eq!(st, 200);
    assert_eq!(
        info,
        json!({"group": g, "name": "team", "members": [1, 2, 3], "admin": 1})
    );
    let (st, b) = s.get(9, &format!("/v1/groups/{g}")).await;
    assert_eq!((st, b["error"]["code"].as_str()), (403, Some("forbidden")));
    let (st, b) = s.get(1, "/v1/groups/999").await;
    assert_eq!((st, b["error"]["code"].as_str()), (404, Some("not_found")));
    let (st, _) = s.get(1, "/v1/groups/abc").await;
    assert_eq!(st, 400);
    // Only the admin adds; the cap holds.
    let (st, _) = s
        .post(2, &format!("/v1/groups/{g}/members"), &json!({"user": 4}))
        .await;
    assert_eq!(st, 403);
    let (st, info) = s
        .post(1, &format!("/v1/groups/{g}/members"), &json!({"user": 4}))
        .await;
    assert_eq!((st, info["members"].clone()), (200, json!([1, 2, 3, 4])));
    let (st, b) = s
        .post(1, &format!("/v1/groups/{g}/members"), &json!({"user": 5}))
        .await;
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    // Creating over the cap, with no name, or with user 0 is refused.
    let (st, _) = s
        .post(
            1,
            "/v1/groups",
            &json!({"name": "big", "members": [2, 3, 4, 5]}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .post(1, "/v1/groups", &json!({"name": " ", "members": [2]}))
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .post(1, "/v1/groups", &json!({"name": "x", "members": [0]}))
        .await;
    assert_eq!(st, 400);
    // Only the admin removes others; anyone may leave.
    let del = |by: u64, user: u64| {
        let req = s
            .http
            .delete(s.url(&format!("/v1/groups/{g}/members/{user}")))
            .bearer_auth(s.token(by, "d"));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(del(2, 3).await, 403);
    assert_eq!(del(3, 3).await, 204);
    assert_eq!(del(1, 4).await, 204);
    let (_, info) = s.get(1, &format!("/v1/groups/{g}")).await;
    assert_eq!(info["members"], json!([1, 2]));
}

#[tokio::test]
async fn one_sequence_fanned_out_to_every_member_device() {
    let s = server(256).await;
    let g = create(&s, 1, &[2, 3]).await;
    let conv = format!("g:{g}");
    let mut a1 = s.connect(1, "a1").await;
    let mut a2 = s.connect(1, "a2").await;
    let mut b = s.connect(2, "b").await;
    let mut c = s.connect(3, "c").await;
    let mut outsider = s.connect(4, "x").await;
    let first = a1.send_msg("g1", &format!("g:{g}"), "hello team").await;
    assert_eq!(
        (first["conv"].as_str(), first["seq"].as_u64()),
        (Some(conv.as_str()), Some(1))
    );
    // B's live frame of g1 comes before B's own send (which skips other frames).
    assert_eq!(b.recv_type("msg").await["id"], "g1");
    let second = b.send_msg("g2", &format!("g:{g}"), "hi").await;
    assert_eq!(second["seq"], 2);
    for dev in [&mut a2, &mut c] {
        let m1 = dev.recv_type("msg").await;
        let m2 = dev.recv_type("msg").await;
        assert_eq!(
            (m1["seq"].as_u64(), m1["from"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(
            (m2["seq"].as_u64(), m2["from"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(m1["conv"], conv.as_str());
    }
    assert!(outsider.drain(Duration::from_millis(200)).await.is_empty());
    let e = outsider.send_msg("x", &format!("g:{g}"), "let me in").await;
    assert_eq!(e["code"], "forbidden");
    // Receipts: an ack reaches the sender of what it covers; a read reaches every other
    // member; typing reaches the other members only.
    c.send_json(json!({"type": "ack", "conv": conv, "seq": 1}))
        .await;
    let d = a1.recv_type("delivered").await;
    assert_eq!((d["seq"].as_u64(), d["user"].as_u64()), (Some(1), Some(3)));
    c.send_json(json!({"type": "read", "conv": conv, "seq": 2}))
        .await;
    assert_eq!(b.recv_type("read").await["user"], 3);
    assert_eq!(a2.recv_type("read").await["seq"], 2);
    c.send_json(json!({"type": "typing", "conv": conv})).await;
    assert_eq!(b.recv_type("typing").await["user"], 3);
    assert!(
        c.drain(Duration::from_millis(200))
            .await
            .iter()
            .all(|f| f["type"] != "typing")
    );
    // Group history and the conversation list.
    let (_, h) = s
        .get(3, &format!("/v1/conversations/{conv}/messages"))
        .await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 2);
    let (_, list) = s.get(3, "/v1/conversations").await;
    assert_eq!(
        (list[0]["conv"].as_str(), list[0]["unread"].as_u64()),
        (Some(conv.as_str()), Some(0))
    );
}

#[tokio::test]
async fn a_removed_member_gets_nothing_newer_and_cannot_read() {
    let s = server(256).await;
    let g = create(&s, 1, &[2]).await;
    let conv = format!("g:{g}");
    let mut removed = s.connect(2, "r").await;
    let (_, before) = s
        .post(
            1,
            "/v1/messages",
            &json!({"id": "m1", "to": conv, "body": "still in"}),
        )
        .await;
    assert_eq!(before["seq"], 1);
    assert_eq!(removed.recv_type("msg").await["id"], "m1");
    let st = s
        .http
        .delete(s.url(&format!("/v1/groups/{g}/members/2")))
        .bearer_auth(s.token(1, "d"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, 204);
    s.post(
        1,
        "/v1/messages",
        &json!({"id": "m2", "to": conv, "body": "after"}),
    )
    .await;
    assert!(
        removed
            .drain(Duration::from_millis(300))
            .await
            .iter()
            .all(|f| f["type"] != "msg")
    );
    let (st, _) = s
        .get(2, &format!("/v1/conversations/{conv}/messages"))
        .await;
    assert_eq!(st, 403);
    let (_, sync) = s.get(2, "/v1/sync").await;
    assert_eq!(
        sync["items"].as_array().unwrap().len(),
        1,
        "only what came while a member"
    );
    let (_, list) = s.get(2, "/v1/conversations").await;
    assert_eq!(list, json!([]));
    let e = removed.send_msg("m3", &conv, "hello?").await;
    assert_eq!(e["code"], "forbidden");
}
