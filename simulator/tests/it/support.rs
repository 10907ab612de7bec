//! Test support: the `chat-sim` binary, a reference server in this process, tiny
//! scenarios, and a proxy that breaks the protocol on purpose.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const SECRET: &str = "proxy-test-secret";

/// A tiny scenario: a handful of users writing fast for a few seconds.
pub const TINY: &str = r#"
name = "tiny"
description = "a few users for a few seconds, for tests"

[population]
daily_active_users = 1_000
scale = 0.008                 # 8 users
devices_per_user = 1.5

[[population.device_kinds]]
name = "phone"
share = 1
history_reads_per_day = 20
history_page_size = 20

[traffic]
messages_per_user_per_day = 40
day_seconds = 5               # 8 sends/s per user
presence_pulls_per_user_per_day = 0

[contacts]
contacts_per_user = 3
crossing_share = 0.2

[run]
duration_secs = 4
ramp_up_secs = 1
drain_secs = 3
request_timeout_secs = 5

[server]
store = "memory"

[gates]
p99_send_to_sent_ms = 5000
max_error_rate = 0.01
checks = "all"
"#;

/// Writes the tiny scenario (with extra TOML appended) into `dir`.
pub fn tiny_scenario(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(&path, format!("{TINY}\n{extra}")).unwrap();
    path
}

/// Checks `value` against `simulator/schema/<file>`, listing every mismatch.
pub fn assert_schema(file: &str, value: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let v = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{file} does not match:\n{}",
        errors.join("\n")
    );
}

/// Runs `chat-sim` with `args` to the end.
pub fn chat_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chat-sim"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("chat-sim runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The run directory `chat-sim run` printed.
pub fn report_dir(out: &Output) -> PathBuf {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report line:\n{}", text(out)));
    PathBuf::from(line.trim())
}

pub fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// A reference server in this process (memory store, no rate limit) on its own runtime.
pub struct Server {
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    pub fn start() -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let addr = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut config = chat_server::Config::new(SECRET);
            config.send_rate_per_sec = 0;
            let store = Arc::new(chat_server::store::MemoryStore::new());
            tokio::spawn(chat_server::run(
                listener,
                config,
                store,
                std::future::pending(),
            ));
            addr
        });
        Server { addr, _rt: rt }
    }
}

/// What the proxy breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a transparent proxy.
    None,
    /// Drops the n-th live `msg` and hides that message from every later frame, as a
    /// server that lost a stored message would.
    Lose(usize),
    /// Delivers the n-th live `msg` twice.
    Duplicate(usize),
    /// Swaps the n-th live `msg` with the next one on the same connection.
    Reorder(usize),
    /// Changes the seq of the n-th live `msg`.
    Renumber(usize),
    /// Injects a message nobody sent before the n-th live `msg`.
    Phantom(usize),
    /// From the n-th history page on, leaves each page's newest message out, as a
    /// server reading from a lagging replica or a stale cache would.
    StaleHistory(usize),
    /// Answers `POST /v1/groups` with 404, as a server without groups.
    NoGroups,
}

#[derive(Default)]
struct FaultState {
    msgs: usize,
    histories: usize,
    /// (from, id) of the message the proxy "lost".
    lost: Option<(u64, String)>,
}

#[derive(Clone)]
struct Proxy {
    upstream: SocketAddr,
    fault: Fault,
    state: Arc<Mutex<FaultState>>,
    http: reqwest::Client,
}

/// A proxy in front of `upstream` that applies `fault`, on its own runtime.
pub struct FaultProxy {
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr, fault: Fault) -> FaultProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let proxy = Proxy {
            upstream,
            fault,
            state: Arc::new(Mutex::new(FaultState::default())),
            http: reqwest::Client::new(),
        };
        let addr = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = Router::new()
                .route("/v1/ws", axum::routing::get(ws_handler))
                .fallback(forward)
                .with_state(proxy);
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        });
        FaultProxy { addr, _rt: rt }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    if p.fault == Fault::NoGroups && uri.path().starts_with("/v1/groups") {
        return (
            StatusCode::NOT_FOUND,
            "{\"error\":{\"code\":\"not_found\",\"message\":\"no route\"}}",
        )
            .into_response();
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let url = format!(
        "http://{}{}",
        p.upstream,
        uri.path_and_query().map(|x| x.as_str()).unwrap_or("/")
    );
    let mut r = p.http.request(method, url).body(body.to_vec());
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            r = r.header(name, v.clone());
        }
    }
    match r.send().await {
        Ok(resp) => {
            let status = resp.status();
            let bytes = resp.bytes().await.unwrap_or_default();
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(bytes))
                .unwrap()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

async fn ws_handler(
    State(p): State<Proxy>,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let mut req = format!(
        "ws://{}{}",
        p.upstream,
        uri.path_and_query().map(|x| x.as_str()).unwrap_or("/v1/ws")
    )
    .into_client_request()
    .unwrap();
    if let Some(v) = headers.get("authorization") {
        req.headers_mut().insert("authorization", v.clone());
    }
    let Ok((up, _)) = tokio_tungstenite::connect_async(req).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    ws.on_upgrade(move |client| relay(p, client, up))
}

async fn relay(
    p: Proxy,
    client: WebSocket,
    up: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    let (mut c_tx, mut c_rx) = client.split();
    let (mut u_tx, mut u_rx) = up.split();
    let to_server = async move {
        while let Some(Ok(m)) = c_rx.next().await {
            let m = match m {
                AxMessage::Text(t) => TMessage::text(t.as_str().to_owned()),
                AxMessage::Close(_) => {
                    let _ = u_tx.send(TMessage::Close(None)).await;
                    break;
                }
                _ => continue,
            };
            if u_tx.send(m).await.is_err() {
                break;
            }
        }
    };
    let to_client = async move {
        let mut held: Option<String> = None;
        while let Some(Ok(m)) = u_rx.next().await {
            let text = match m {
                TMessage::Text(t) => t.as_str().to_owned(),
                TMessage::Close(_) => break,
                _ => continue,
            };
            for out in p.transform(text, &mut held) {
                if c_tx.send(AxMessage::text(out)).await.is_err() {
                    return;
                }
            }
        }
        let _ = c_tx.send(AxMessage::Close(None)).await;
    };
    tokio::select! {
        _ = to_server => {}
        _ = to_client => {}
    }
}

fn is_lost(m: &Value, lost: &Option<(u64, String)>) -> bool {
    match lost {
        Some((from, id)) => {
            m["from"].as_u64() == Some(*from) && m["id"].as_str() == Some(id.as_str())
        }
        None => false,
    }
}

impl Proxy {
    /// What the client gets for one server frame.
    fn transform(&self, text: String, held: &mut Option<String>) -> Vec<String> {
        let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
            return vec![text];
        };
        let mut st = self.state.lock();
        match v["type"].as_str() {
            Some("msg") => {
                if is_lost(&v, &st.lost) {
                    return vec![];
                }
                st.msgs += 1;
                let n = st.msgs;
                if let Some(h) = held.take() {
                    return vec![text, h];
                }
                match self.fault {
                    Fault::Lose(k) if n == k => {
                        st.lost = Some((
                            v["from"].as_u64().unwrap_or(0),
                            v["id"].as_str().unwrap_or("").to_owned(),
                        ));
                        vec![]
                    }
                    Fault::Duplicate(k) if n == k => vec![text.clone(), text],
                    Fault::Reorder(k) if n == k => {
                        *held = Some(text);
                        vec![]
                    }
                    Fault::Renumber(k) if n == k => {
                        let seq = v["seq"].as_u64().unwrap_or(0);
                        v["seq"] = Value::from(seq + 1000);
                        vec![v.to_string()]
                    }
                    Fault::Phantom(k) if n == k => {
                        let mut ghost = v.clone();
                        ghost["id"] = Value::from("zz-ghost");
                        ghost["body"] = Value::from("nobody sent this");
                        vec![ghost.to_string(), text]
                    }
                    _ => vec![text],
                }
            }
            Some("sync") if st.lost.is_some() => {
                if let Some(items) = v["items"].as_array_mut() {
                    items.retain(|m| !is_lost(m, &st.lost));
                }
                vec![v.to_string()]
            }
            Some("history") if matches!(self.fault, Fault::StaleHistory(_)) => {
                st.histories += 1;
                if let Fault::StaleHistory(k) = self.fault
                    && st.histories >= k
                    && let Some(items) = v["messages"].as_array_mut()
                    && !items.is_empty()
                {
                    items.remove(0);
                }
                vec![v.to_string()]
            }
            Some("history") if st.lost.is_some() => {
                if let Some(items) = v["messages"].as_array_mut() {
                    items.retain(|m| !is_lost(m, &st.lost));
                }
                vec![v.to_string()]
            }
            _ => vec![text],
        }
    }
}

/// Waits until `url` answers (the proxy and the server start at once).
pub fn wait_up(url: &str) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{url} never came up");
}
