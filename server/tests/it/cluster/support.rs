//! What the cluster tests share: a real `nats-server` on a free loopback port (stopped and
//! started again on the same port for outages), nodes over one PostgreSQL schema or one
//! Cassandra keyspace ([`Backing`]), and a device that sends its share while recording every frame of its live stream.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_server::Config;
use chat_server::store::cluster_spec;
use serde_json::{Value, json};

use crate::child::skip;
use crate::store_cql::Keyspace;
use crate::store_postgres::{Schema, database};
use crate::support::{Client, Server, config};

/// A NATS server child process, killed when dropped.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
}

impl Nats {
    /// Starts `nats-server` on a free port; `None` (a skip, a failure under CI) when the
    /// binary is not installed.
    pub fn start() -> Option<Nats> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut nats = Nats { child: None, port };
        match nats.spawn() {
            Ok(()) => Some(nats),
            Err(e) => {
                skip(
                    "cluster",
                    &format!(
                        "nats-server cannot run ({e}); install it: apt-get install nats-server"
                    ),
                );
                None
            }
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nats-server listens"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The URL nodes join with.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("nats-server starts again");
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shared store a cluster test runs over.
#[derive(Debug, Clone, Copy)]
pub enum Backing {
    Postgres,
    /// Cassandra, through the cluster-safe sequencer (`shared=true`).
    Cql,
}

/// Where the nodes of one test keep their data: a schema or a keyspace of its own, dropped
/// when the test ends.
pub enum Namespace {
    Postgres(Schema),
    Cql(Keyspace),
}

impl Namespace {
    /// The `--store` spec as an operator gives it: `serve --cluster` makes a `cql://` store
    /// shared by itself.
    pub fn spec(&self) -> String {
        match self {
            Namespace::Postgres(s) => s.spec(),
            Namespace::Cql(k) => k.spec(),
        }
    }
}

/// NATS and a fresh namespace of `backing` for one test, or `None` when either is absent
/// here (a skip; a failure under CI).
pub async fn backing(backing: Backing, prefix: &str) -> Option<(Nats, Namespace)> {
    let ns = match backing {
        Backing::Postgres => Namespace::Postgres(Schema::new(&database().await?, prefix)),
        Backing::Cql => Namespace::Cql(Keyspace::new(prefix).await?),
    };
    let nats = Nats::start()?;
    Some((nats, ns))
}

/// The test settings of a node named `name` in the cluster of `nats`.
pub fn node_config(nats: &Nats, name: &str) -> Config {
    let mut c = config();
    c.cluster = Some(nats.url());
    c.node = name.to_owned();
    c.presence_online_delay = Duration::from_millis(200);
    c.presence_offline_grace = Duration::from_millis(300);
    c
}

/// A node in this process over the test's namespace.
pub async fn node(nats: &Nats, ns: &Namespace, name: &str) -> Server {
    node_with(node_config(nats, name), ns).await
}

/// A node with the given settings over the test's namespace, opened as `serve --cluster`
/// opens it.
pub async fn node_with(config: Config, ns: &Namespace) -> Server {
    let store = chat_server::store::open(&cluster_spec(&ns.spec()))
        .await
        .expect("open the shared store");
    Server::with(config, store).await
}

/// A device of `user` on `node`, its session set up (its live stream begins).
pub async fn device(node: &Server, user: u64, name: &str) -> Client {
    let mut c = node.connect(user, name).await;
    c.ready().await;
    c
}

/// Waits until every node lists `n` nodes in `GET /v1/cluster`.
pub async fn wait_for_nodes(nodes: &[&Server], n: usize) {
    let start = Instant::now();
    for node in nodes {
        loop {
            let (status, v) = node.get(1, "/v1/cluster").await;
            if status == 200 && v["nodes"].as_array().is_some_and(|a| a.len() == n) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{n} nodes listed: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until `GET /healthz` of `node` answers `status`.
pub async fn wait_for_health(node: &Server, status: u16) {
    let start = Instant::now();
    loop {
        let r = node.http.get(node.url("/healthz")).send().await.unwrap();
        if r.status().as_u16() == status {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "/healthz answers {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one device: sends `sends` (`(id, to)`) one after another, each after the previous
/// one's `sent`, and records every `msg` and `sent` frame until `expect` inbox positions
/// were seen. Returns the frames in arrival order.
pub async fn run_device(mut c: Client, sends: Vec<(String, String)>, expect: usize) -> Vec<Value> {
    let mut frames = Vec::new();
    let mut sends = sends.into_iter();
    let mut waiting: Option<String> = None;
    loop {
        if waiting.is_none()
            && let Some((id, to)) = sends.next()
        {
            c.send_json(json!({"type": "send", "id": id, "to": to, "body": format!("body {id}")}))
                .await;
            waiting = Some(id);
        }
        if waiting.is_none() && frames.len() >= expect {
            return frames;
        }
        let v = c.recv().await;
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "sent" && waiting.as_deref() == v["id"].as_str() {
            waiting = None;
        }
        if v["type"] == "msg" || v["type"] == "sent" {
            frames.push(v);
        }
    }
}

/// The live stream of one device is whole and in order: its `msg` frames arrive in
/// strictly increasing `useq`, and with its own `sent` answers they cover 1..=n once.
pub fn assert_stream_whole(frames: &[Value], n: u64, who: &str) {
    let live: Vec<u64> = frames
        .iter()
        .filter(|v| v["type"] == "msg")
        .map(|v| v["useq"].as_u64().unwrap())
        .collect();
    assert!(
        live.windows(2).all(|w| w[0] < w[1]),
        "{who}: msg frames in useq order: {live:?}"
    );
    let mut all: Vec<u64> = frames.iter().map(|v| v["useq"].as_u64().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=n).collect::<Vec<_>>(),
        "{who}: every position once"
    );
}
