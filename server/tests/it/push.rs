//! Push notifications against a real local HTTP gateway that fails on purpose: retries
//! with backoff, coalescing, dead letters and their replay, and delivery that never waits.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chat_server::push::PushConfig;
use chat_server::store::{Backend, MemoryStore, PushStore};
use serde_json::{Value, json};

use crate::support::{Server, config};

const OK: u8 = 0;
const FAIL_EVERY_OTHER: u8 = 1;
const FAIL_ALWAYS: u8 = 2;
const HANG: u8 = 3;

/// A local push gateway recording what it accepted.
#[derive(Default)]
struct Gateway {
    mode: AtomicU8,
    calls: AtomicU32,
    accepted: Mutex<Vec<Value>>,
}

async fn gateway(mode: u8) -> (Arc<Gateway>, String) {
    let gw = Arc::new(Gateway::default());
    gw.mode.store(mode, Ordering::SeqCst);
    let app = axum::Router::new()
        .route(
            "/push",
            post(
                |State(gw): State<Arc<Gateway>>, Json(v): Json<Value>| async move {
                    let n = gw.calls.fetch_add(1, Ordering::SeqCst);
                    match gw.mode.load(Ordering::SeqCst) {
                        FAIL_ALWAYS => return StatusCode::INTERNAL_SERVER_ERROR,
                        FAIL_EVERY_OTHER if n % 2 == 0 => return StatusCode::SERVICE_UNAVAILABLE,
                        HANG => tokio::time::sleep(Duration::from_secs(30)).await,
                        _ => {}
                    }
                    gw.accepted.lock().unwrap().push(v);
                    StatusCode::OK
                },
            ),
        )
        .with_state(gw.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (gw, url)
}

async fn server(url: &str, store: impl Into<Backend>) -> Server {
    let mut c = config();
    c.push = Some(PushConfig {
        gateway: url.to_owned(),
        coalesce: Duration::from_secs(30),
        attempts: 3,
        backoff: Duration::from_millis(20),
    });
    Server::with(c, store).await
}

async fn register(s: &Server, user: u64, device: &str) {
    let r = s
        .http
        .put(s.url(&format!("/v1/devices/{device}/push")))
        .bearer_auth(s.token(user, device))
        .json(&json!({"platform": "fcm", "token": format!("tok-{user}-{device}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_offline_user_is_pushed_once_per_device_through_a_flaky_gateway() {
    let (gw, url) = gateway(FAIL_EVERY_OTHER).await;
    let s = server(&url, Arc::new(MemoryStore::new())).await;
    register(&s, 2, "phone").await;
    register(&s, 2, "tablet").await;
    let (st, _) = s
        .post(
            1,
            "/v1/messages",
            &json!({"id": "p1", "to": "u:2", "body": "are you there?"}),
        )
        .await;
    assert_eq!(st, 200);
    wait_for("two pushes", || gw.accepted.lock().unwrap().len() == 2).await;
    let mut got = gw.accepted.lock().unwrap().clone();
    got.sort_by_key(|v| v["device"].as_str().unwrap().to_owned());
    assert_eq!(
        got[0],
        json!({"user": 2, "device": "phone", "platform": "fcm", "token": "tok-2-phone",
               "conv": "d:1:2", "seq": 1, "from": 1, "preview": "are you there?"})
    );
    assert_eq!(got[1]["device"], "tablet");
    assert!(
        gw.calls.load(Ordering::SeqCst) >= 3,
        "failures were retried"
    );
    // A burst in the same conversation is coalesced into what was already pushed.
    for i in 2..=5 {
        s.post(
            1,
            "/v1/messages",
            &json!({"id": format!("p{i}"), "to": "u:2", "body": "more"}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.accepted.lock().unwrap().len(), 2);
    let (_, metrics) = s.get(1, "/metrics").await;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("chat_push_sent_total 2"), "{text}");
    assert!(text.contains("chat_push_coalesced_total 4"), "{text}");
    assert!(!text.contains("chat_push_failed_total 0\n"), "{text}");
}

#[tokio::test]
async fn online_users_are_not_pushed_and_the_sender_never_is() {
    let (gw, url) = gateway(OK).await;
    let s = server(&url, Arc::new(MemoryStore::new())).await;
    register(&s, 1, "phone").await;
    register(&s, 2, "phone").await;
    let _b = s.connect(2, "laptop").await;
    s.post(
        1,
        "/v1/messages",
        &json!({"id": "x", "to": "u:2", "body": "hi"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(gw.accepted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn sends_never_wait_on_a_hanging_gateway() {
    let (_gw, url) = gateway(HANG).await;
    let s = server(&url, Arc::new(MemoryStore::new())).await;
    register(&s, 2, "phone").await;
    let mut a = s.connect(1, "a").await;
    for i in 0..20 {
        let t = Instant::now();
        let sent = a
            .send_msg(&format!("h{i}"), &format!("u:{}", 2 + i), "x")
            .await;
        assert_eq!(sent["type"], "sent");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a send waited on push"
        );
    }
}

#[tokio::test]
async fn failures_after_every_retry_are_dead_lettered_and_replayed() {
    let (gw, url) = gateway(FAIL_ALWAYS).await;
    let store = Arc::new(MemoryStore::new());
    let s = server(&url, store.clone()).await;
    register(&s, 2, "phone").await;
    register(&s, 3, "phone").await;
    s.post(
        1,
        "/v1/messages",
        &json!({"id": "d1", "to": "u:2", "body": "lost?"}),
    )
    .await;
    s.post(
        1,
        "/v1/messages",
        &json!({"id": "d2", "to": "u:3", "body": "lost too?"}),
    )
    .await;
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while letters.len() < 2 {
        assert!(Instant::now() < deadline, "no dead letters");
        tokio::time::sleep(Duration::from_millis(20)).await;
        letters = store.dead_letters(0, 10).await.unwrap();
    }
    assert_eq!(gw.calls.load(Ordering::SeqCst), 6, "3 attempts each");
    assert!(letters[0].1.error.contains("500"));
    let payload: Value = serde_json::from_str(&letters[0].1.payload).unwrap();
    assert_eq!(payload["token"], "tok-2-phone");
    // Still failing: the replay keeps them.
    let r = chat_server::push::replay(&*store, &url).await.unwrap();
    assert_eq!((r.delivered, r.still_failing), (0, 2));
    gw.mode.store(OK, Ordering::SeqCst);
    let r = chat_server::push::replay(&*store, &url).await.unwrap();
    assert_eq!((r.delivered, r.still_failing), (2, 0));
    assert!(store.dead_letters(0, 10).await.unwrap().is_empty());
    assert_eq!(gw.accepted.lock().unwrap().len(), 2);
    let (_, metrics) = s.get(1, "/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("chat_push_dead_lettered_total 2")
    );
}

/// The operator command replays what a stopped server left in its fjall store.
#[tokio::test]
async fn the_push_replay_command_works_on_a_stopped_servers_store() {
    let (gw, url) = gateway(FAIL_ALWAYS).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("fjall:{}", dir.path().display());
    let backend = chat_server::store::open(&spec).await.unwrap();
    let store = backend.store();
    let s = server(&url, backend).await;
    register(&s, 2, "phone").await;
    s.post(
        1,
        "/v1/messages",
        &json!({"id": "c1", "to": "u:2", "body": "x"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.dead_letters(0, 10).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
    drop(store);
    gw.mode.store(OK, Ordering::SeqCst);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["push-replay", "--store", &spec, "--push-gateway", &url])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "replayed: 1 delivered, 0 still failing (kept)"
    );
    assert_eq!(gw.accepted.lock().unwrap().len(), 1);
}

/// A server stopping mid-retry sends no more attempts and keeps the push as a dead
/// letter, which a replay then delivers: a stop loses no notification.
#[tokio::test]
async fn a_stop_dead_letters_the_pushes_it_did_not_finish() {
    let (gw, url) = gateway(FAIL_ALWAYS).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("fjall:{}", dir.path().display());
    let backend = chat_server::store::open(&spec).await.unwrap();
    let store = backend.store();
    let mut c = config();
    c.push = Some(PushConfig {
        gateway: url.clone(),
        coalesce: Duration::from_secs(30),
        attempts: 5,
        backoff: Duration::from_secs(60),
    });
    let s = Server::with(c, backend).await;
    register(&s, 2, "phone").await;
    s.post(
        1,
        "/v1/messages",
        &json!({"id": "c1", "to": "u:2", "body": "x"}),
    )
    .await;
    wait_for("a first attempt", || gw.calls.load(Ordering::SeqCst) >= 1).await;
    let stopping = Instant::now();
    s.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "the stop waited for the retries"
    );
    assert_eq!(
        gw.calls.load(Ordering::SeqCst),
        1,
        "no attempt after the stop"
    );
    let letters = store.dead_letters(0, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0]
            .1
            .error
            .contains("server stopped before the push was sent"),
        "{}",
        letters[0].1.error
    );
    gw.mode.store(OK, Ordering::SeqCst);
    let done = chat_server::push::replay(&*store, &url).await.unwrap();
    assert_eq!(done.delivered, 1);
    assert_eq!(gw.accepted.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn push_registration_is_checked() {
    let (_gw, url) = gateway(OK).await;
    let s = server(&url, Arc::new(MemoryStore::new())).await;
    let put = |device: &str, body: Value| {
        let req = s
            .http
            .put(s.url(&format!("/v1/devices/{device}/push")))
            .bearer_auth(s.token(1, "mine"))
            .json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        put("other", json!({"platform": "fcm", "token": "t"})).await,
        403
    );
    assert_eq!(
        put("mine", json!({"platform": "", "token": "t"})).await,
        400
    );
    assert_eq!(put("mine", json!({"platform": "fcm"})).await, 400);
    assert_eq!(
        put("mine", json!({"platform": "apns", "token": "t"})).await,
        204
    );
}

#[tokio::test]
async fn metrics_expose_the_server_figures() {
    let s = Server::start().await;
    let mut a = s.connect(1, "a").await;
    let mut b = s.connect(2, "b").await;
    a.send_msg("m", "u:2", "x").await;
    b.recv_type("msg").await;
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for needle in [
        "chat_connections 2",
        "chat_messages_stored_total 1",
        "chat_messages_delivered_total 1",
        "chat_send_seconds_bucket",
        "chat_store_op_seconds_count{op=\"append\"} 1",
        "chat_online_users",
        "chat_overflow_closed_total 0",
        "chat_push_dead_lettered_total 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}
