//! What the tests of every durable store share: a real `chat-server serve` process (the
//! library's [`ServerProcess`]) to kill -9, tokens, senders that record what was
//! acknowledged, reading a conversation's whole history back and checking it against that
//! record, the whole kill -9 loop, and the skip rule for a backend whose service is absent.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_server::auth::{Auth, now_secs};
use chat_server::process::ServerProcess;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::SECRET;

/// A server child process, killed with SIGKILL when dropped.
pub struct ChildServer {
    process: ServerProcess,
    pub addr: String,
}

impl ChildServer {
    /// Starts a server on `store` (any `--store` value) with warnings logged.
    pub fn start(store: &str) -> ChildServer {
        Self::start_logging(store, "warn")
    }

    /// Starts a server on `store` with `RUST_LOG=rust_log`; returns once it listens.
    pub fn start_logging(store: &str, rust_log: &str) -> ChildServer {
        Self::start_with(store, rust_log, &[])
    }

    /// Starts a server on `store` with further flags (`--cluster …`).
    pub fn start_with(store: &str, rust_log: &str, extra: &[&str]) -> ChildServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-server"));
        cmd.args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--send-rate",
            "0",
            "--jwt-secret",
            SECRET,
            "--store",
            store,
        ])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::inherit());
        let process =
            ServerProcess::spawn(cmd, Duration::from_secs(60), |_| {}).expect("start chat-server");
        let addr = process.addr.to_string();
        ChildServer { process, addr }
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(mut self) {
        self.process.kill9();
    }
}

/// A token for `user` on device `d`, valid for ten minutes.
pub fn token(user: u64) -> String {
    Auth::new(SECRET)
        .unwrap()
        .issue(user, &"d".parse().unwrap(), now_secs() + 600)
}

/// (sender, id) → (conv, seq, body) of every acknowledged message.
pub type Acked = Arc<Mutex<HashMap<(u64, String), (String, u64, String)>>>;

/// The whole history of `conv` as `user` reads it over HTTP, newest first.
pub async fn history(addr: &str, user: u64, conv: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut url = format!("http://{addr}/v1/conversations/{conv}/messages?limit=200");
        if let Some(b) = before {
            url.push_str(&format!("&before={b}"));
        }
        let page = get_json(&http, &url, user).await;
        out.extend(page["messages"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => return out,
        }
    }
}

/// GET `url` as `user`; the answer as JSON.
pub async fn get_json(http: &reqwest::Client, url: &str, user: u64) -> Value {
    http.get(url)
        .bearer_auth(token(user))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Records an acknowledged send (the `sent` frame or HTTP answer `v`); the same
/// (sender, id) acknowledged twice must carry the same position.
pub fn record(acked: &Acked, from: u64, id: &str, v: &Value, body: &str) {
    let conv = v["conv"].as_str().expect("conv").to_owned();
    let seq = v["seq"].as_u64().expect("seq");
    let prev = acked
        .lock()
        .unwrap()
        .insert((from, id.to_owned()), (conv.clone(), seq, body.to_owned()));
    if let Some((c, s, _)) = prev {
        assert_eq!((c, s), (conv, seq), "{id} acknowledged twice, differently");
    }
}

/// Sends over a WebSocket as fast as `sent` comes back until the connection dies; records
/// what was acknowledged and returns the id that was in flight.
pub async fn ws_sender(
    addr: String,
    from: u64,
    to: u64,
    round: usize,
    acked: Acked,
) -> Option<String> {
    let url = format!("ws://{addr}/v1/ws?token={}", token(from));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
    let mut i = 0;
    loop {
        let id = format!("r{round}-{from}-{i}");
        let body = format!("body of {id}");
        let frame = json!({"type": "send", "id": id, "to": format!("u:{to}"), "body": body});
        if ws.send(Message::text(frame.to_string())).await.is_err() {
            return Some(id);
        }
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "sent" {
                        assert_eq!(v["id"], id.as_str());
                        record(&acked, from, &id, &v, &body);
                        break;
                    }
                    assert_ne!(v["type"], "error", "{v}");
                }
                Some(Ok(_)) => {}
                _ => return Some(id),
            }
        }
        i += 1;
    }
}

/// Every acknowledged message is stored with its seq, id, sender and body; every
/// conversation of `convs` (`d:LO:HI`, read as LO) is gap-free from 1 and holds each
/// (sender, id) once.
pub async fn check_histories(addr: &str, convs: &[&str], acked: &Acked) {
    let mut per_conv: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for conv in convs {
        let user: u64 = conv[2..].split(':').next().unwrap().parse().unwrap();
        per_conv.insert((*conv).to_owned(), history(addr, user, conv).await);
    }
    let acked_now = acked.lock().unwrap().clone();
    for ((from, id), (conv, seq, body)) in &acked_now {
        let msgs = &per_conv[conv];
        let found = msgs
            .iter()
            .find(|m| m["seq"] == *seq)
            .unwrap_or_else(|| panic!("acknowledged {id} (seq {seq} in {conv}) was lost"));
        assert_eq!(
            (found["id"].as_str(), found["from"].as_u64()),
            (Some(id.as_str()), Some(*from))
        );
        assert_eq!(found["body"], body.as_str());
    }
    for (conv, msgs) in &per_conv {
        let mut seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        seqs.reverse();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "gap-free {conv}"
        );
        let mut ids: Vec<(u64, &str)> = msgs
            .iter()
            .map(|m| (m["from"].as_u64().unwrap(), m["id"].as_str().unwrap()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), msgs.len(), "no duplicates in {conv}");
    }
}

/// Gives up on a test that cannot run here (its service is not reachable): a failure under
/// `CI=true`, where every backend's tests must run, otherwise one line on standard error
/// per test binary and backend (written past the harness's capture, so it shows) and a
/// skip.
pub fn skip(backend: &'static str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the {backend} tests cannot run: {reason}");
    }
    static SAID: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.contains(&backend) {
        said.push(backend);
        let _ = writeln!(std::io::stderr(), "SKIPPED {backend} tests: {reason}");
    }
}

/// Posts a message over HTTP; returns the status and the answer.
pub async fn send_http(addr: &str, from: u64, to: u64, id: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/messages"))
        .bearer_auth(token(from))
        .json(&json!({"id": id, "to": format!("u:{to}"), "body": format!("body of {id}")}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until `ok` holds, failing the test after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// kill -9 of a real server on `spec` under load, `rounds` times, restarting it on the
/// same data each time: six WebSocket senders in three conversations, killed once the load
/// is well under way. After each restart every acknowledged message is there once with its
/// seq, the conversations are gap-free, a retry of what was in flight is idempotent, and
/// the sequence continues.
pub async fn kill9_rounds(spec: &str, rounds: usize, rust_log: &str) {
    let spec = spec.to_owned();
    let acked: Acked = Arc::default();
    let pairs: Vec<(u64, u64)> = vec![(1, 2), (2, 1), (3, 4), (4, 3), (5, 6), (6, 5)];
    let convs = ["d:1:2", "d:3:4", "d:5:6"];
    for round in 0..rounds {
        let server = ChildServer::start_logging(&spec, rust_log);
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
        // Kill it mid-stream, once the load is well under way (however busy the machine).
        let before = acked.lock().unwrap().len();
        wait_until("load", Duration::from_secs(30), || {
            acked.lock().unwrap().len() >= before + 30
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.kill9();
        let mut in_flight = Vec::new();
        for (t, &(from, to)) in tasks.into_iter().zip(&pairs) {
            if let Some(id) = t.await.unwrap() {
                in_flight.push((from, to, id));
            }
        }
        let server = ChildServer::start_logging(&spec, rust_log);
        let acked_now = acked.lock().unwrap().len();
        assert!(acked_now > 10, "load was running: {acked_now} acknowledged");
        check_histories(&server.addr, &convs, &acked).await;
        // Retrying what was in flight is idempotent: stored once at most.
        for (from, to, id) in &in_flight {
            let (s1, first) = send_http(&server.addr, *from, *to, id).await;
            let (s2, again) = send_http(&server.addr, *from, *to, id).await;
            assert_eq!((s1, s2), (200, 200), "{first} {again}");
            assert_eq!(first, again);
            record(&acked, *from, id, &first, &format!("body of {id}"));
        }
        // The sequence continues.
        for conv in convs {
            let lo: u64 = conv[2..3].parse().unwrap();
            let last = history(&server.addr, lo, conv)
                .await
                .first()
                .map_or(0, |m| m["seq"].as_u64().unwrap());
            let id = format!("after-{round}-{conv}");
            let (status, next) = send_http(&server.addr, lo, lo + 1, &id).await;
            assert_eq!(status, 200, "{next}");
            assert_eq!(next["seq"].as_u64(), Some(last + 1), "{conv} continues");
            record(&acked, lo, &id, &next, &format!("body of {id}"));
        }
        server.kill9();
    }
    let server = ChildServer::start_logging(&spec, rust_log);
    check_histories(&server.addr, &convs, &acked).await;
}
