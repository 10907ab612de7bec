//! Test support: a real server on 127.0.0.1:0 and real WebSocket and HTTP clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_server::Config;
use chat_server::auth::{Auth, now_secs};
use chat_server::store::{Backend, MemoryStore};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret";
/// How long a test waits for a frame that must come.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub auth: Auth,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Settings tests use unless they say otherwise: no rate limit.
pub fn config() -> Config {
    let mut c = Config::new(SECRET);
    c.send_rate_per_sec = 0;
    c.shutdown_grace = Duration::from_secs(5);
    c
}

impl Server {
    /// A server with the memory store and the test settings.
    pub async fn start() -> Server {
        Self::with(config(), Arc::new(MemoryStore::new())).await
    }

    /// A server with the given settings and store.
    pub async fn with(config: Config, store: impl Into<Backend>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let backend = store.into();
        let task = tokio::spawn(chat_server::run(listener, config, backend, async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            auth: Auth::new(SECRET).unwrap(),
            http: reqwest::Client::new(),
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn token(&self, user: u64, device: &str) -> String {
        self.auth
            .issue(user, &device.parse().unwrap(), now_secs() + 3600)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A device's WebSocket, connected with the header form of the token.
    pub async fn connect(&self, user: u64, device: &str) -> Client {
        let mut req = format!("ws://{}/v1/ws", self.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token(user, device))
                .parse()
                .unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        Client { ws }
    }

    /// GET with a user's token; returns status and JSON (Null when empty).
    pub async fn get(&self, user: u64, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(self.token(user, "http"))
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    /// POST JSON with a user's token; returns status and JSON (Null when empty).
    pub async fn post(&self, user: u64, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(self.token(user, "http"))
            .json(body)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    /// Stops the server gracefully and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(WAIT, t)
                .await
                .expect("server stops in time")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A server's `/metrics`, as text.
pub async fn metrics_text(http: &reqwest::Client, addr: impl std::fmt::Display) -> String {
    http.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name` (with its labels, if any) in a server's `/metrics`;
/// panics when the server has no such sample.
pub async fn metric<T: std::str::FromStr>(
    http: &reqwest::Client,
    addr: impl std::fmt::Display,
    name: &str,
) -> T {
    metrics_text(http, addr)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

pub async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, v)
}

/// One device's WebSocket.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn send_json(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next text frame as JSON; panics after [`WAIT`] or on close.
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("connection open")
                .expect("no socket error");
            match m {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Close(c) => panic!("closed by the server: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Writes all of `frames` and then flushes once, so they reach the server together
    /// (a client that pipelines).
    pub async fn send_burst(&mut self, frames: &[Value]) {
        for v in frames {
            self.ws.feed(Message::text(v.to_string())).await.unwrap();
        }
        self.ws.flush().await.unwrap();
    }

    /// Waits until the session is set up: its live stream starts at the inbox head read
    /// at connect, so a message stored before that comes only with `sync`.
    pub async fn ready(&mut self) {
        self.send_json(json!({"type": "ping"})).await;
        self.recv_type("pong").await;
    }

    /// The next frame of the given type, skipping others.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Frames that arrive within `d`.
    pub async fn drain(&mut self, d: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Message::Text(t) = m {
                out.push(serde_json::from_str(&t).unwrap());
            }
        }
        out
    }

    /// Sends a message and returns the `sent` answer (skipping other frames).
    pub async fn send_msg(&mut self, id: &str, to: &str, body: &str) -> Value {
        self.send_json(json!({"type": "send", "id": id, "to": to, "body": body}))
            .await;
        loop {
            let v = self.recv().await;
            if v["type"] == "sent" && v["id"] == id {
                return v;
            }
            if v["type"] == "error" && v["ref"] == id {
                return v;
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn closed_with(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a close in time")
            {
                Some(Ok(Message::Close(Some(c)))) => return c.code.into(),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error instead of a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}
