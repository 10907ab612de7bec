//! Bad input of every kind gets the contract's error and loses nothing; abusive or slow
//! connections are closed with the contract's codes.

use chat_server::auth::{Auth, now_secs};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Server, config};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn tokens_missing_malformed_expired_or_forged_get_401() {
    let s = Server::start().await;
    let dev = "d".parse().unwrap();
    let expired = s.auth.issue(1, &dev, now_secs() - 10);
    let forged = Auth::new("another-secret")
        .unwrap()
        .issue(1, &dev, now_secs() + 60);
    for token in [
        None,
        Some("garbage".to_owned()),
        Some(expired),
        Some(forged),
    ] {
        let mut req = s.http.get(s.url("/v1/conversations"));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let (status, body) = crate::support::status_json(req.send().await.unwrap()).await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(code(&body), "unauthorized");
        assert!(body["error"]["message"].as_str().is_some());
        // The WebSocket upgrade is refused before it happens, header or query form.
        let url = match &token {
            Some(t) => format!("ws://{}/v1/ws?token={t}", s.addr),
            None => format!("ws://{}/v1/ws", s.addr),
        };
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
            other => panic!("upgrade not refused: {:?}", other.map(|_| ())),
        }
    }
    // The query form works with a good token.
    let url = format!("ws://{}/v1/ws?token={}", s.addr, s.token(1, "browser"));
    assert!(tokio_tungstenite::connect_async(url).await.is_ok());
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_the_connection_stays_open() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    let long_id = "x".repeat(65);
    let cases = [
        json!("not an object"),
        json!({"type": "no_such_type"}),
        json!({"type": "send", "id": "m1", "to": "u:2"}),
        json!({"type": "send", "id": long_id, "to": "u:2", "body": "b"}),
        json!({"type": "send", "id": "m2", "to": "u:1", "body": "to myself"}),
        json!({"type": "send", "id": "m3", "to": "user2", "body": "b"}),
        json!({"type": "send", "id": "m4", "to": "u:2", "body": ""}),
        json!({"type": "send", "id": 5, "to": "u:2", "body": "b"}),
        json!({"type": "ack", "conv": "d:2:1", "seq": 1}),
        json!({"type": "ack", "conv": "d:1:2", "seq": 99}),
        json!({"type": "sync", "limit": 0}),
        json!({"type": "sync", "limit": 1001}),
        json!({"type": "history", "conv": "d:1:2", "limit": 201}),
        json!({"type": "history", "conv": "d:1:2", "before": -1}),
    ];
    for case in &cases {
        a.send_json(case.clone()).await;
        let e = a.recv_type("error").await;
        assert_eq!(e["code"], "bad_request", "{case} -> {e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    a.ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(a.recv_type("error").await["code"], "bad_request");
    a.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(a.recv_type("error").await["code"], "bad_request");
    // `ref` names the offending frame's id when it had one.
    let e = a.send_msg("m2", "u:1", "self").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("bad_request"), Some("m2"))
    );
    // Still open, and nothing was stored by all of that.
    let sent = a.send_msg("ok", "u:2", "fine").await;
    assert_eq!(
        (sent["type"].as_str(), sent["seq"].as_u64()),
        (Some("sent"), Some(1))
    );
}

#[tokio::test]
async fn http_bad_requests_answer_json_errors() {
    let s = Server::start().await;
    let (st, b) = s
        .post(
            1,
            "/v1/messages",
            &json!({"id": "x", "to": "u:1", "body": "me"}),
        )
        .await;
    assert_eq!((st, code(&b)), (400, "bad_request"));
    let (st, b) = s
        .post(1, "/v1/messages", &json!({"to": "u:2", "body": "no id"}))
        .await;
    assert_eq!((st, code(&b)), (400, "bad_request"));
    let r = s
        .http
        .post(s.url("/v1/messages"))
        .bearer_auth(s.token(1, "d"))
        .header("content-type", "application/json")
        .body("{broken")
        .send()
        .await
        .unwrap();
    let (st, b) = crate::support::status_json(r).await;
    assert_eq!((st, code(&b)), (400, "bad_request"));
    let (st, b) = s.get(1, "/v1/sync?after=minus").await;
    assert_eq!((st, code(&b)), (400, "bad_request"));
    let (st, b) = s.get(1, "/v1/sync?wait=61").await;
    assert_eq!((st, code(&b)), (400, "bad_request"));
    let (st, b) = s.get(1, "/v1/conversations/d:x:2/messages").await;
    assert_eq!((st, code(&b)), (400, "bad_request"));
    let (st, b) = s.get(1, "/v1/conversations?limit=0").await;
    assert_eq!((st, code(&b)), (400, "bad_request"));
}

#[tokio::test]
async fn only_participants_read_a_conversation() {
    let s = Server::start().await;
    s.post(
        1,
        "/v1/messages",
        &json!({"id": "secret", "to": "u:2", "body": "between us"}),
    )
    .await;
    let (st, b) = s.get(3, "/v1/conversations/d:1:2/messages").await;
    assert_eq!((st, code(&b)), (403, "forbidden"));
    let (st, b) = s
        .post(3, "/v1/ack", &json!({"conv": "d:1:2", "seq": 1}))
        .await;
    assert_eq!((st, code(&b)), (403, "forbidden"));
    let (st, b) = s
        .post(3, "/v1/read", &json!({"conv": "d:1:2", "seq": 1}))
        .await;
    assert_eq!((st, code(&b)), (403, "forbidden"));
    let mut c = s.connect(3, "c").await;
    c.send_json(json!({"type": "history", "conv": "d:1:2"}))
        .await;
    assert_eq!(c.recv_type("error").await["code"], "forbidden");
    c.send_json(json!({"type": "read", "conv": "d:1:2", "seq": 1}))
        .await;
    assert_eq!(c.recv_type("error").await["code"], "forbidden");
    // Nothing of it shows in the outsider's inbox or list.
    let (_, sync) = s.get(3, "/v1/sync").await;
    assert_eq!(sync["items"], json!([]));
    let (_, list) = s.get(3, "/v1/conversations").await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn unknown_groups_and_routes_are_not_found() {
    let s = Server::start().await;
    let (st, b) = s
        .post(
            1,
            "/v1/messages",
            &json!({"id": "g", "to": "g:5", "body": "x"}),
        )
        .await;
    assert_eq!((st, code(&b)), (404, "not_found"));
    let (st, b) = s.get(1, "/v1/conversations/g:5/messages").await;
    assert_eq!((st, code(&b)), (404, "not_found"));
    let (st, b) = s.get(1, "/v1/nothing-here").await;
    assert_eq!((st, code(&b)), (404, "not_found"));
    let mut a = s.connect(1, "a").await;
    let e = a.send_msg("g1", "g:5", "x").await;
    assert_eq!(e["code"], "not_found");
}

#[tokio::test]
async fn oversized_bodies_are_too_large_and_oversized_frames_close_1009() {
    let s = Server::start().await;
    let big = "b".repeat(4097);
    let (st, b) = s
        .post(
            1,
            "/v1/messages",
            &json!({"id": "big", "to": "u:2", "body": big}),
        )
        .await;
    assert_eq!((st, code(&b)), (413, "too_large"));
    let mut a = s.connect(1, "a").await;
    let e = a.send_msg("big", "u:2", &big).await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("too_large"), Some("big"))
    );
    // Exactly the limit is fine, in bytes of UTF-8.
    let ok = a.send_msg("edge", "u:2", &"é".repeat(2048)).await;
    assert_eq!(ok["type"], "sent");
    let huge = "z".repeat(65 * 1024);
    let _ = a.ws.send(Message::text(huge)).await;
    assert_eq!(a.closed_with().await, 1009);
    let (_, h) = s.get(2, "/v1/conversations/d:1:2/messages").await;
    assert_eq!(
        h["messages"].as_array().unwrap().len(),
        1,
        "nothing else stored"
    );
}

#[tokio::test]
async fn invalid_utf8_text_closes_1007() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    use tokio_tungstenite::tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    };
    let frame = Frame::message(vec![0xff, 0xfe, 0x80], OpCode::Data(Data::Text), true);
    a.ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(a.closed_with().await, 1007);
}

#[tokio::test]
async fn senders_over_their_rate_get_rate_limited() {
    let mut cfg = config();
    cfg.send_rate_per_sec = 1;
    cfg.send_burst = 3;
    let s = Server::with(
        cfg,
        std::sync::Arc::new(chat_server::store::MemoryStore::new()),
    )
    .await;
    let mut a = s.connect(1, "a").await;
    for i in 0..3 {
        assert_eq!(
            a.send_msg(&format!("ok{i}"), "u:2", "x").await["type"],
            "sent"
        );
    }
    let e = a.send_msg("over", "u:2", "x").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("rate_limited"), Some("over"))
    );
    let (st, b) = s
        .post(
            1,
            "/v1/messages",
            &json!({"id": "over2", "to": "u:2", "body": "x"}),
        )
        .await;
    assert_eq!((st, code(&b)), (429, "rate_limited"));
    // Another user has a bucket of their own.
    let (st, _) = s
        .post(
            2,
            "/v1/messages",
            &json!({"id": "b", "to": "u:1", "body": "x"}),
        )
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_connection_sending_garbage_is_closed_1008() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    for _ in 0..101 {
        if a.ws.send(Message::text("garbage")).await.is_err() {
            break;
        }
    }
    assert_eq!(a.closed_with().await, 1008);
}

/// A device that does not read is cut off with 1013 instead of growing the server's
/// memory; what was sent to it is stored and reaches it through `sync`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_does_not_read_is_closed_1013_and_loses_nothing() {
    let mut cfg = config();
    cfg.device_queue = 16;
    let s = Server::with(
        cfg,
        std::sync::Arc::new(chat_server::store::MemoryStore::new()),
    )
    .await;
    // B connects and then never reads its socket.
    let mut req = format!("ws://{}/v1/ws", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", s.token(2, "stuck")).parse().unwrap(),
    );
    let (mut stuck, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut a = s.connect(1, "a").await;
    let body = "q".repeat(4000);
    // Kernel socket buffers absorb some megabytes before the server's queue fills: send
    // well past that (10 MB).
    const SENT: usize = 2500;
    for i in 0..SENT {
        let r = a.send_msg(&format!("f{i}"), "u:2", &body).await;
        assert_eq!(r["type"], "sent");
    }
    // Now read what reached the stuck device: some messages, then a 1013 close.
    let mut live = 0;
    let code = loop {
        match tokio::time::timeout(crate::support::WAIT, stuck.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => live += 1,
            Ok(Some(Ok(Message::Close(Some(c))))) => break u16::from(c.code),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame after {live} messages, got {other:?}"),
        }
    };
    assert_eq!(code, 1013);
    assert!(
        live < SENT,
        "the device was cut off before getting everything live"
    );
    let mut b = s.connect(2, "fresh").await;
    let mut after = 0;
    let mut got = 0;
    loop {
        b.send_json(json!({"type": "sync", "after": after, "limit": 1000}))
            .await;
        let page = b.recv_type("sync").await;
        got += page["items"].as_array().unwrap().len();
        after = page["next"].as_u64().unwrap();
        if !page["more"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(got, SENT, "everything sent is there to sync");
}
