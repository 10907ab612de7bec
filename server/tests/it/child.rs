//! What the tests of every durable store share: a real `chat-server serve` process (the
//! library's [`ServerProcess`]) to kill -9, tokens, senders that record what was
//! acknowledged, reading a conversation's whole history back and checking it against that
//! record, the crash loop (kill -9 under load at random or chosen moments, round after
//! round, every conversation and inbox checked), and the skip rule for a backend whose
//! service is absent.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// The status `GET /healthz` answers now (0 when nothing answers).
pub async fn healthz(addr: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// How long from `since` until `ok` holds (polled every 10 ms), failing the test after
/// `limit`.
pub async fn time_until(
    what: &str,
    since: Instant,
    limit: Duration,
    mut ok: impl AsyncFnMut() -> bool,
) -> Duration {
    loop {
        if ok().await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The crash loop: kill -9 under load at random (or chosen) moments, round after round, on
// the same data, with clients that reconnect and retry.

/// A small deterministic generator (splitmix64) for a test's random choices, so a seed
/// replays them.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// The seed of a test's random choices: `CHAT_CRASH_SEED` when set (to replay a failure),
/// else one from the clock. Printed either way.
pub fn crash_seed(what: &str) -> u64 {
    let seed = std::env::var("CHAT_CRASH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Rng::new(t.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64()
        });
    let _ = writeln!(
        std::io::stderr(),
        "{what}: seed {seed} (CHAT_CRASH_SEED={seed} replays its random kill delays)"
    );
    seed
}

/// Moments to kill the server at, looked for every millisecond while the load runs (the
/// crash window of a store: a journal rotation, a memtable flush).
pub trait KillWindow: Send {
    /// A new round begins: take note of how things stand.
    fn arm(&mut self, round: usize);
    /// The kind of moment it is now, if it is one to kill at.
    fn poll(&mut self) -> Option<&'static str>;
    /// Right after the kill (the process is gone): whether it landed inside the window,
    /// the operation it was meant to interrupt unfinished.
    fn landed_inside(&mut self, kind: &'static str) -> bool;
}

/// What a crash loop runs.
pub struct CrashLoop {
    /// The backend, in what it prints.
    pub name: &'static str,
    /// The `--store` spec, the same for every restart.
    pub spec: String,
    pub rounds: usize,
    pub rust_log: &'static str,
    /// Further `serve` flags.
    pub extra_args: Vec<String>,
    /// Longest wait from a round's first acknowledged send to its kill, chosen at random
    /// below it; with a [`KillWindow`], how long to look for a moment before killing anyway.
    pub max_delay: Duration,
    /// Kills at the moments it finds instead of after a random wait.
    pub window: Option<Box<dyn KillWindow>>,
    /// Bytes of each message of two more senders in a conversation of their own (users 101
    /// and 102, over HTTP), to fill the store fast; 0: none. Their conversation is checked
    /// by its counters, not read back.
    pub ballast_bytes: usize,
}

impl CrashLoop {
    /// A loop of `rounds` random kills on `spec`, within 1.5 s of each round's start.
    pub fn new(name: &'static str, spec: String, rounds: usize) -> CrashLoop {
        CrashLoop {
            name,
            spec,
            rounds,
            rust_log: "error",
            extra_args: Vec::new(),
            max_delay: Duration::from_millis(1500),
            window: None,
            ballast_bytes: 0,
        }
    }
}

/// What a crash loop did.
#[derive(Debug, Default)]
pub struct CrashReport {
    pub seed: u64,
    pub rounds: usize,
    /// Messages acknowledged in the checked conversations, and to the ballast senders.
    pub acked: usize,
    pub ballast_acked: usize,
    pub elapsed: Duration,
    /// Times a sender lost its server and sent again once it was back.
    pub reconnects: u64,
    /// Ids acknowledged before a crash and sent again after it, answered with their first
    /// position (by the senders after reconnecting, and sampled over HTTP).
    pub replays: u64,
    /// Per kind of moment: kills at it, and how many landed inside the window.
    pub windows: BTreeMap<&'static str, (usize, usize)>,
    /// Kills after a random wait (or when no moment came in time).
    pub random_kills: usize,
}

/// The state the loop and its senders share.
struct Shared {
    /// The server's address while it is up.
    live: Mutex<Option<String>>,
    acked: Acked,
    ballast: Acked,
    stop: AtomicBool,
    reconnects: AtomicU64,
    replays: AtomicU64,
}

impl Shared {
    fn live(&self) -> Option<String> {
        self.live.lock().unwrap().clone()
    }
}

/// The body of message `id`: short, or `bytes` of letters drawn from the id (the same for
/// every retry, and not compressible).
pub fn body_for(id: &str, bytes: usize) -> String {
    if bytes == 0 {
        return format!("body of {id}");
    }
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = Rng::new(id.bytes().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }));
    let mut s = String::with_capacity(bytes);
    s.push_str(id);
    s.push(' ');
    while s.len() < bytes {
        let mut r = rng.next_u64();
        for _ in 0..8 {
            s.push(ALPHABET[(r & 63) as usize] as char);
            r >>= 8;
        }
    }
    s.truncate(bytes);
    s
}

/// One attempt at a send.
enum Attempt {
    Sent(Value),
    /// Answered `unavailable`: nothing was stored, send it again.
    Unavailable,
    /// The server is gone (connection refused or dropped).
    Gone,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A sender's way to the server: a WebSocket (reopened after a loss) or HTTP.
enum Conn {
    Ws(Option<Box<Ws>>),
    Http(reqwest::Client),
}

impl Conn {
    async fn attempt(&mut self, addr: &str, from: u64, id: &str, to: &str, body: &str) -> Attempt {
        match self {
            Conn::Ws(slot) => {
                if slot.is_none() {
                    let url = format!("ws://{addr}/v1/ws?token={}", token(from));
                    match tokio_tungstenite::connect_async(url).await {
                        Ok((ws, _)) => *slot = Some(Box::new(ws)),
                        Err(_) => return Attempt::Gone,
                    }
                }
                let ws = slot.as_mut().unwrap();
                let frame = json!({"type": "send", "id": id, "to": to, "body": body});
                if ws.send(Message::text(frame.to_string())).await.is_err() {
                    *slot = None;
                    return Attempt::Gone;
                }
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            let v: Value = serde_json::from_str(&t).unwrap();
                            if v["type"] == "sent" && v["id"] == id {
                                return Attempt::Sent(v);
                            }
                            if v["type"] == "error" {
                                assert_eq!(v["code"], "unavailable", "{from} sending {id}: {v}");
                                return Attempt::Unavailable;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => {
                            *slot = None;
                            return Attempt::Gone;
                        }
                    }
                }
            }
            Conn::Http(http) => {
                let r = http
                    .post(format!("http://{addr}/v1/messages"))
                    .bearer_auth(token(from))
                    .json(&json!({"id": id, "to": to, "body": body}))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await;
                let Ok(r) = r else {
                    return Attempt::Gone;
                };
                let status = r.status().as_u16();
                let Ok(v) = r.json::<Value>().await else {
                    return Attempt::Gone;
                };
                match status {
                    200 => Attempt::Sent(v),
                    503 => Attempt::Unavailable,
                    _ => panic!("{from} sending {id}: {status} {v}"),
                }
            }
        }
    }
}

/// A client of the crash loop: sends one message after the other (to `to`, every fourth
/// to `group`), each until it is acknowledged, whatever server is up meanwhile. After
/// losing its server it first sends its last acknowledged id again, which must come back
/// with the position it had before the crash, then retries the unacknowledged one with the
/// same id.
async fn crash_sender(
    sh: Arc<Shared>,
    mut conn: Conn,
    from: u64,
    to: String,
    group: Option<String>,
    bytes: usize,
) {
    let ballast = matches!(conn, Conn::Http(_));
    let book = if ballast { &sh.ballast } else { &sh.acked };
    let mut last: Option<(String, String)> = None;
    let mut lost = false;
    let mut i = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        let id = format!("c{from}-{i}");
        let target = match &group {
            Some(g) if i % 4 == 3 => g.clone(),
            _ => to.clone(),
        };
        let body = body_for(&id, bytes);
        loop {
            let Some(addr) = sh.live() else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if lost {
                if let Some((lid, lto)) = &last {
                    match conn
                        .attempt(&addr, from, lid, lto, &body_for(lid, bytes))
                        .await
                    {
                        Attempt::Sent(v) => {
                            record(book, from, lid, &v, &body_for(lid, bytes));
                            sh.replays.fetch_add(1, Ordering::Relaxed);
                        }
                        Attempt::Unavailable => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                        Attempt::Gone => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                }
                lost = false;
            }
            match conn.attempt(&addr, from, &id, &target, &body).await {
                Attempt::Sent(v) => {
                    record(book, from, &id, &v, &body);
                    break;
                }
                Attempt::Unavailable => tokio::time::sleep(Duration::from_millis(100)).await,
                Attempt::Gone => {
                    lost = true;
                    sh.reconnects.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        last = Some((id, target));
        i += 1;
    }
}

/// A conversation the checks read, with its participants.
#[derive(Clone, Debug)]
pub struct Conv {
    pub conv: String,
    pub members: Vec<u64>,
}

/// Every inbox entry of `user`, oldest first, read with `GET /v1/sync`.
pub async fn inbox(addr: &str, user: u64) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let url = format!("http://{addr}/v1/sync?after={after}&limit=1000");
        let page = get_json(&http, &url, user).await;
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        after = page["next"].as_u64().expect("next");
        if page["more"] != true {
            return out;
        }
    }
}

/// Reads every conversation's whole history and every participant's whole inbox, with no
/// send under way, and checks them against `acked`:
///
/// - every conversation's seqs are 1, 2, … without a gap, each (sender, id) once;
/// - every acknowledged message is at its seq with its id, sender and body;
/// - every participant's inbox positions are 1, 2, … without a gap, and it holds each
///   message of each of the participant's conversations exactly once, as the history has
///   it, and nothing else;
/// - with `exact`, the store holds nothing that was not acknowledged (every send was
///   retried until it was).
///
/// Returns how many messages the conversations hold.
pub async fn check_store(addr: &str, convs: &[Conv], acked: &Acked, exact: bool) -> usize {
    let acked_now = acked.lock().unwrap().clone();
    let mut stored: BTreeMap<(String, u64), Value> = BTreeMap::new();
    for c in convs {
        let mut msgs = history(addr, c.members[0], &c.conv).await;
        msgs.reverse();
        let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{}: seqs gap-free from 1",
            c.conv
        );
        let mut ids: Vec<(u64, &str)> = msgs
            .iter()
            .map(|m| (m["from"].as_u64().unwrap(), m["id"].as_str().unwrap()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), msgs.len(), "{}: each (sender, id) once", c.conv);
        for m in msgs {
            stored.insert((c.conv.clone(), m["seq"].as_u64().unwrap()), m);
        }
    }
    for ((from, id), (conv, seq, body)) in &acked_now {
        let m = stored
            .get(&(conv.clone(), *seq))
            .unwrap_or_else(|| panic!("acknowledged {id} (seq {seq} in {conv}) was lost"));
        assert_eq!(
            (m["id"].as_str(), m["from"].as_u64()),
            (Some(id.as_str()), Some(*from)),
            "{conv} seq {seq} holds another message than the acknowledged {id}"
        );
        assert!(
            m["body"] == body.as_str(),
            "{conv} seq {seq}: the body of {id} changed"
        );
    }
    if exact {
        for ((conv, seq), m) in &stored {
            let key = (
                m["from"].as_u64().unwrap(),
                m["id"].as_str().unwrap().to_owned(),
            );
            assert!(
                acked_now.contains_key(&key),
                "{conv} seq {seq} holds {key:?}, which no sender had acknowledged"
            );
        }
    }
    let mut users: Vec<u64> = convs.iter().flat_map(|c| c.members.clone()).collect();
    users.sort_unstable();
    users.dedup();
    for user in users {
        let items = inbox(addr, user).await;
        let useqs: Vec<u64> = items.iter().map(|m| m["useq"].as_u64().unwrap()).collect();
        assert_eq!(
            useqs,
            (1..=items.len() as u64).collect::<Vec<_>>(),
            "user {user}'s inbox positions gap-free from 1"
        );
        let mut seen = std::collections::BTreeSet::new();
        for m in &items {
            let key = (
                m["conv"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
            );
            let h = stored.get(&key).unwrap_or_else(|| {
                panic!("user {user}'s inbox holds {key:?}, which no history has: {m}")
            });
            assert_eq!(
                (&m["id"], &m["from"], &m["body"]),
                (&h["id"], &h["from"], &h["body"]),
                "user {user}'s inbox and the history disagree on {key:?}"
            );
            assert!(
                seen.insert(key.clone()),
                "{key:?} twice in user {user}'s inbox"
            );
        }
        let mine: usize = convs
            .iter()
            .filter(|c| c.members.contains(&user))
            .map(|c| stored.keys().filter(|(conv, _)| *conv == c.conv).count())
            .sum();
        assert_eq!(
            seen.len(),
            mine,
            "user {user}'s inbox holds every message of their conversations"
        );
    }
    stored.len()
}

/// The ballast conversation (users 101 and 102): its acknowledged seqs are distinct and
/// none is past the last seq it lists; with `exact` (no send under way) they are exactly
/// 1..=last_seq, so none was lost, reused or skipped. Returns how many were acknowledged.
async fn check_ballast(addr: &str, ballast: &Acked, exact: bool) -> usize {
    let mut seqs: Vec<u64> = ballast
        .lock()
        .unwrap()
        .values()
        .map(|(_, s, _)| *s)
        .collect();
    seqs.sort_unstable();
    let http = reqwest::Client::new();
    let list = get_json(&http, &format!("http://{addr}/v1/conversations"), 101).await;
    let last = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conv"] == "d:101:102")
        .map_or(0, |c| c["last_seq"].as_u64().unwrap());
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ballast: two acknowledged messages share a seq"
    );
    assert!(
        seqs.last().is_none_or(|s| *s <= last),
        "ballast: seq {:?} was acknowledged, the conversation ends at {last}",
        seqs.last()
    );
    if exact {
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "ballast: seqs acknowledged"
        );
    }
    seqs.len()
}

/// Sends acknowledged ids again over HTTP, `n` of them chosen with `rng`: each must come
/// back with the position it was acknowledged with (`record` checks it).
async fn replay_some(addr: &str, acked: &Acked, rng: &mut Rng, n: usize) -> u64 {
    type Entry = ((u64, String), (String, u64, String));
    let entries: Vec<Entry> = {
        let a = acked.lock().unwrap();
        let mut v: Vec<_> = a.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort();
        v
    };
    let mut done = 0;
    for _ in 0..n.min(entries.len()) {
        let ((from, id), (conv, seq, body)) = &entries[rng.below(entries.len() as u64) as usize];
        let to = match conv.strip_prefix("d:").and_then(|r| r.split_once(':')) {
            Some((lo, hi)) if lo == from.to_string() => format!("u:{hi}"),
            Some((lo, _)) => format!("u:{lo}"),
            None => conv.clone(),
        };
        let r = reqwest::Client::new()
            .post(format!("http://{addr}/v1/messages"))
            .bearer_auth(token(*from))
            .json(&json!({"id": id, "to": to, "body": body}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "replay of {id}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (v["conv"].as_str(), v["seq"].as_u64()),
            (Some(conv.as_str()), Some(*seq)),
            "{id}, acknowledged as {conv} seq {seq} before a crash, sent again after it"
        );
        record(acked, *from, id, &v, body);
        done += 1;
    }
    done
}

/// kill -9 of a real server under load, `rounds` times, restarting it on the same data:
/// six WebSocket clients in three direct conversations and a group of all six send one
/// message after the other, reconnecting after each crash and retrying what got no
/// answer with the same id. Each kill comes a random time (from a printed seed) after the
/// round's first acknowledged send, or at a moment the [`KillWindow`] finds. After each
/// restart, with the clients held back, every conversation and every participant's inbox
/// are checked against what was acknowledged ([`check_store`]) and acknowledged ids sent
/// again keep their positions; after the last round the clients finish, and the store
/// must hold exactly what was acknowledged, once more after one last kill and restart.
pub async fn crash_loop(mut cfg: CrashLoop) -> CrashReport {
    let started = Instant::now();
    let seed = crash_seed(&format!("crash loop on {}", cfg.name));
    let mut rng = Rng::new(seed);
    let mut report = CrashReport {
        seed,
        rounds: cfg.rounds,
        ..CrashReport::default()
    };
    let extra = cfg.extra_args.clone();
    let args: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (spec, rust_log) = (cfg.spec.clone(), cfg.rust_log);
    let start = || ChildServer::start_with(&spec, rust_log, &args);
    let mut server = start();
    let group = reqwest::Client::new()
        .post(format!("http://{}/v1/groups", server.addr))
        .bearer_auth(token(1))
        .json(&json!({"name": "all", "members": [2, 3, 4, 5, 6]}))
        .send()
        .await
        .unwrap();
    assert_eq!(group.status().as_u16(), 201, "the group is created");
    let group: Value = group.json().await.unwrap();
    let conv_of_group = group["conv"].as_str().unwrap().to_owned();
    let convs = vec![
        Conv {
            conv: "d:1:2".into(),
            members: vec![1, 2],
        },
        Conv {
            conv: "d:3:4".into(),
            members: vec![3, 4],
        },
        Conv {
            conv: "d:5:6".into(),
            members: vec![5, 6],
        },
        Conv {
            conv: conv_of_group.clone(),
            members: (1..=6).collect(),
        },
    ];
    let sh = Arc::new(Shared {
        live: Mutex::new(Some(server.addr.clone())),
        acked: Arc::default(),
        ballast: Arc::default(),
        stop: AtomicBool::new(false),
        reconnects: AtomicU64::new(0),
        replays: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for (from, to) in [(1u64, 2u64), (2, 1), (3, 4), (4, 3), (5, 6), (6, 5)] {
        tasks.push(tokio::spawn(crash_sender(
            sh.clone(),
            Conn::Ws(None),
            from,
            format!("u:{to}"),
            Some(conv_of_group.clone()),
            0,
        )));
    }
    if cfg.ballast_bytes > 0 {
        for (from, to) in [(101u64, 102u64), (102, 101)] {
            tasks.push(tokio::spawn(crash_sender(
                sh.clone(),
                Conn::Http(reqwest::Client::new()),
                from,
                format!("u:{to}"),
                None,
                cfg.ballast_bytes,
            )));
        }
    }
    let count = |sh: &Shared| sh.acked.lock().unwrap().len() + sh.ballast.lock().unwrap().len();
    for round in 0..cfg.rounds {
        // Under load: the round's first acknowledgement.
        let before = count(&sh);
        wait_until("a send acknowledged", Duration::from_secs(60), || {
            count(&sh) > before
        })
        .await;
        let delay = Duration::from_micros(rng.below(cfg.max_delay.as_micros() as u64));
        match cfg.window.take() {
            None => {
                tokio::time::sleep(delay).await;
                *sh.live.lock().unwrap() = None;
                server.kill9();
                report.random_kills += 1;
            }
            Some(mut window) => {
                window.arm(round);
                let limit = cfg.max_delay;
                let (window_back, kind, inside) = tokio::task::spawn_blocking(move || {
                    let until = Instant::now() + limit;
                    let kind = loop {
                        if let Some(kind) = window.poll() {
                            break Some(kind);
                        }
                        if Instant::now() >= until {
                            break None;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    };
                    server.kill9();
                    let inside = kind.is_some_and(|k| window.landed_inside(k));
                    (window, kind, inside)
                })
                .await
                .unwrap();
                *sh.live.lock().unwrap() = None;
                cfg.window = Some(window_back);
                match kind {
                    Some(kind) => {
                        let e = report.windows.entry(kind).or_default();
                        e.0 += 1;
                        e.1 += usize::from(inside);
                    }
                    None => report.random_kills += 1,
                }
            }
        }
        server = start();
        check_store(&server.addr, &convs, &sh.acked, false).await;
        if cfg.ballast_bytes > 0 {
            check_ballast(&server.addr, &sh.ballast, false).await;
        }
        report.replays += replay_some(&server.addr, &sh.acked, &mut rng, 3).await;
        *sh.live.lock().unwrap() = Some(server.addr.clone());
    }
    // The clients finish what they have under way, then nothing is sent any more.
    sh.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("the clients finish their last send")
            .unwrap();
    }
    check_store(&server.addr, &convs, &sh.acked, true).await;
    // One more crash with nothing under way, and every acknowledged id sent again keeps its
    // position.
    *sh.live.lock().unwrap() = None;
    server.kill9();
    let server = start();
    report.acked = check_store(&server.addr, &convs, &sh.acked, true).await;
    report.replays += replay_some(&server.addr, &sh.acked, &mut rng, 10).await;
    if cfg.ballast_bytes > 0 {
        report.ballast_acked = check_ballast(&server.addr, &sh.ballast, false).await;
    }
    assert_eq!(
        report.acked,
        check_store(&server.addr, &convs, &sh.acked, true).await,
        "replays stored nothing new"
    );
    server.kill9();
    report.reconnects = sh.reconnects.load(Ordering::Relaxed);
    report.replays += sh.replays.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    let _ = writeln!(
        std::io::stderr(),
        "crash loop on {}: {} rounds in {:.1} s, {} messages acknowledged{}, {} reconnects, \
         {} acknowledged ids re-sent after a crash with their first position, kills: {} at \
         random{} (seed {})",
        cfg.name,
        report.rounds,
        report.elapsed.as_secs_f64(),
        report.acked,
        if cfg.ballast_bytes > 0 {
            format!(
                " (+{} ballast of {} bytes)",
                report.ballast_acked, cfg.ballast_bytes
            )
        } else {
            String::new()
        },
        report.reconnects,
        report.replays,
        report.random_kills,
        report
            .windows
            .iter()
            .map(|(k, (n, inside))| format!(", {n} at a {k} ({inside} inside it)"))
            .collect::<String>(),
        report.seed,
    );
    report
}

impl ChildServer {
    /// The server's process: its pid, and its memory and CPU as `/proc` tells them.
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }
}
