//! The conformance suite on the CQL backend against a real Apache Cassandra, each check in
//! a fresh keyspace, plus what only this backend has to show: rows a crashed batch left
//! past the counters stay invisible and are overwritten; kill -9 of a real server loses
//! nothing acknowledged (ten kills at random moments); an outage of Cassandra during load
//! (the node stopped once; cut off through a relay five times) makes sends `unavailable`,
//! loses nothing acknowledged, and the service comes back by itself.
//!
//! The node is `CHAT_TEST_CQL_ADDR` (default 127.0.0.1:9042), e.g. started with
//! `scripts/cassandra.sh start`. When nothing answers there the tests say so and skip;
//! with `CI=true` a skip is a failure.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use chat_server::model::ConvId;
use chat_server::store::conformance::Subject;
use chat_server::store::{AppendRequest, CqlSettings, CqlStore, MessageStore};
use serde_json::{Value, json};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use crate::child::{
    Acked, ChildServer, CrashLoop, check_histories, crash_loop, healthz, record, skip, time_until,
    token,
};

fn cql_addr() -> String {
    std::env::var("CHAT_TEST_CQL_ADDR").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

/// Why the CQL tests cannot run here, if they cannot: nothing accepts connections on the
/// node's address. Under `CI=true` that is a failure, not a skip.
pub(crate) fn unreachable() -> Option<String> {
    use std::net::ToSocketAddrs;
    let addr = cql_addr();
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        return None;
    }
    let why = format!(
        "no Cassandra at {addr} (CHAT_TEST_CQL_ADDR); start one with scripts/cassandra.sh start"
    );
    skip("Cassandra", &why);
    Some(why)
}

/// The outage test stops the node; every other CQL test holds this for reading meanwhile.
static NODE: LazyLock<Arc<RwLock<()>>> = LazyLock::new(|| Arc::new(RwLock::new(())));

/// A keyspace name no other test uses.
fn keyspace(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t_{tag}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn spec(ks: &str) -> String {
    format!("cql://{}/{ks}", cql_addr())
}

/// A keyspace of its own for a test whose stores are opened elsewhere (the cluster tests'
/// nodes): holds the node for reading, like every CQL test, and drops the keyspace when
/// the test passed.
pub(crate) struct Keyspace {
    spec: String,
    _node: OwnedRwLockReadGuard<()>,
}

impl Keyspace {
    /// A fresh keyspace name on the test node, or `None` (a skip, a failure under CI) when
    /// no node answers.
    pub(crate) async fn new(tag: &str) -> Option<Keyspace> {
        if unreachable().is_some() {
            return None;
        }
        Some(Keyspace {
            spec: spec(&keyspace(tag)),
            _node: NODE.clone().read_owned().await,
        })
    }

    /// The `--store` spec of the keyspace (single-node; `serve --cluster` adds
    /// `shared=true`).
    pub(crate) fn spec(&self) -> String {
        self.spec.clone()
    }
}

impl Drop for Keyspace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // Drop runs inside a test's runtime, which must not be blocked on: use a thread
        // with a runtime of its own.
        let spec = self.spec.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            if let Err(e) = rt.block_on(CqlStore::drop_keyspace(&spec)) {
                eprintln!("could not drop the keyspace of {spec}: {e}");
            }
        })
        .join();
    }
}

/// Drops the test's keyspace when the test passed (a failed one keeps it to look at).
struct DropKeyspace {
    store: Arc<CqlStore>,
    _node: OwnedRwLockReadGuard<()>,
}

impl Drop for DropKeyspace {
    fn drop(&mut self) {
        use tokio::runtime::{Handle, RuntimeFlavor};
        if std::thread::panicking() {
            return;
        }
        let Ok(handle) = Handle::try_current() else {
            return;
        };
        if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
            return;
        }
        let ks = self.store.settings().keyspace.clone();
        let session = self.store.session();
        let dropped = tokio::task::block_in_place(|| {
            handle
                .block_on(session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ()))
                .is_ok()
        });
        if !dropped {
            eprintln!("could not drop keyspace {ks}");
        }
    }
}

async fn fresh() -> Subject {
    let node = NODE.clone().read_owned().await;
    let store = Arc::new(
        CqlStore::open(&spec(&keyspace("conf")))
            .await
            .expect("open the cql store"),
    );
    Subject {
        store: store.clone(),
        guard: Box::new(DropKeyspace { store, _node: node }),
    }
}

mod conformance {
    use super::*;

    // A block with `return` ends the generated test when the node is not there.
    chat_server::store_conformance!({
        if unreachable().is_some() {
            return;
        }
        fresh()
    });
}

fn req(from: u64, to: u64, id: &str) -> AppendRequest {
    AppendRequest {
        conv: ConvId::direct(from, to).unwrap(),
        from,
        id: id.parse().unwrap(),
        body: format!("body of {id}"),
        ts: chat_server::model::now_ms(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_reopen_and_sequences_continue() {
    if unreachable().is_some() {
        return;
    }
    let node = NODE.clone().read_owned().await;
    let ks = keyspace("reopen");
    chat_server::store::conformance::fill_before_reopen(&CqlStore::open(&spec(&ks)).await.unwrap())
        .await;
    let store = Arc::new(CqlStore::open(&spec(&ks)).await.unwrap());
    let _drop = DropKeyspace {
        store: store.clone(),
        _node: node,
    };
    chat_server::store::conformance::check_after_reopen(&*store).await;
}

/// What a crash between the two write phases leaves: message, inbox and idempotency rows
/// past the counters. Readers do not see them, the next sends take their positions, and
/// the orphan's id is not a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_the_counters_are_invisible_and_overwritten() {
    if unreachable().is_some() {
        return;
    }
    let ks = keyspace("orphan");
    let store = Arc::new(CqlStore::open(&spec(&ks)).await.unwrap());
    let _drop = DropKeyspace {
        store: store.clone(),
        _node: NODE.clone().read_owned().await,
    };
    let conv = ConvId::direct(1, 2).unwrap();
    for i in 1..=3 {
        store.append(req(1, 2, &format!("m{i}"))).await.unwrap();
    }
    // Phase 1 of a fourth message, without phase 2.
    let s = store.session();
    for q in [
        format!(
            "INSERT INTO {ks}.messages (conv, bucket, seq, sender, client_id, body, ts) \
             VALUES ('d:1:2', 0, 4, 1, 'orphan', 'never acknowledged', 5)"
        ),
        format!(
            "INSERT INTO {ks}.inbox (user, bucket, useq, conv, seq) VALUES (1, 0, 4, 'd:1:2', 4)"
        ),
        format!(
            "INSERT INTO {ks}.inbox (user, bucket, useq, conv, seq) VALUES (2, 0, 4, 'd:1:2', 4)"
        ),
        format!(
            "INSERT INTO {ks}.idem (user, client_id, conv, seq, useq, ts) \
             VALUES (1, 'orphan', 'd:1:2', 4, 4, 5)"
        ),
    ] {
        s.query_unpaged(q, ()).await.unwrap();
    }
    // A fresh sequencer, as after a restart.
    let store = CqlStore::open(&spec(&ks)).await.unwrap();
    assert_eq!(store.history(conv, None, 10).await.unwrap().len(), 3);
    assert_eq!(store.inbox(2, 0, 10).await.unwrap().len(), 3);
    assert_eq!(store.inbox_head(2).await.unwrap(), 3);
    let next = store.append(req(2, 1, "m4")).await.unwrap();
    assert_eq!((next.seq, next.useq, next.duplicate), (4, 4, false));
    let top = &store.history(conv, None, 1).await.unwrap()[0];
    assert_eq!((top.seq, top.id.as_str(), top.from), (4, "m4", 2));
    // The orphan's record points at a seq another message holds now: not a duplicate.
    let retry = store.append(req(1, 2, "orphan")).await.unwrap();
    assert!(!retry.duplicate);
    assert_eq!(retry.seq, 5);
    let ids: Vec<String> = store
        .inbox(1, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.msg.id)
        .collect();
    assert_eq!(ids, ["m1", "m2", "m3", "m4", "orphan"]);
}

// ---------------------------------------------------------------------------------------
// A real `chat-server` process on the CQL store.

async fn send_http(
    http: &reqwest::Client,
    addr: &str,
    from: u64,
    to: u64,
    id: &str,
) -> Option<Value> {
    http.post(format!("http://{addr}/v1/messages"))
        .bearer_auth(token(from))
        .json(&json!({"id": id, "to": format!("u:{to}"), "body": format!("body of {id}")}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Sends one message after the other until `stop`, retrying an `unavailable` send with the
/// same id; records what was acknowledged, and returns the id in flight at the end and how
/// many sends were `unavailable`.
/// The senders of every pair against `addr`: what they acknowledged, the flag that stops
/// them, and their tasks.
#[allow(clippy::type_complexity)]
fn start_senders(
    addr: &str,
) -> (
    Acked,
    Arc<AtomicBool>,
    Vec<tokio::task::JoinHandle<(Option<String>, u64)>>,
) {
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = PAIRS
        .iter()
        .map(|&(from, to)| {
            tokio::spawn(sender(
                addr.to_owned(),
                from,
                to,
                0,
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    (acked, stop, tasks)
}

async fn sender(
    addr: String,
    from: u64,
    to: u64,
    round: usize,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> (Option<String>, u64) {
    let http = reqwest::Client::new();
    let mut unavailable = 0;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("r{round}-{from}-{i}");
        loop {
            let Some(v) = send_http(&http, &addr, from, to, &id).await else {
                return (Some(id), unavailable);
            };
            if let Some(seq) = v["seq"].as_u64() {
                let _ = seq;
                record(&acked, from, &id, &v, &format!("body of {id}"));
                break;
            }
            assert_eq!(v["error"]["code"], "unavailable", "{v}");
            unavailable += 1;
            if stop.load(Ordering::Relaxed) {
                return (Some(id), unavailable);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        i += 1;
    }
    (None, unavailable)
}

const PAIRS: [(u64, u64); 6] = [(1, 2), (2, 1), (3, 4), (4, 3), (5, 6), (6, 5)];
const CONVS: [&str; 3] = ["d:1:2", "d:3:4", "d:5:6"];

/// Every acknowledged message is stored; every conversation is gap-free and holds each
/// (sender, id) once.
async fn check_acknowledged(addr: &str, acked: &Acked) {
    check_histories(addr, &CONVS, acked).await;
}

/// kill -9 of a real server on the CQL store, under load, ten times at random moments
/// ([`crash_loop`]): nothing acknowledged is lost from any history or inbox, sequences stay
/// gap-free, and retries are idempotent across crashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    if unreachable().is_some() {
        return;
    }
    let _node = NODE.clone().read_owned().await;
    let ks = keyspace("kill9");
    let report = crash_loop(CrashLoop::new("Cassandra", spec(&ks), 10)).await;
    assert!(report.acked > 100, "{report:?}");
    let store = CqlStore::open(&spec(&ks)).await.unwrap();
    let _ = store
        .session()
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await;
}

fn cassandra_sh(arg: &str) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cassandra.sh");
    Command::new("bash")
        .args([script, arg])
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/cassandra.sh")
}

/// Cassandra stopped under load (scripts/cassandra.sh stop): sends answer `unavailable`
/// while it is down, nothing acknowledged is lost, and after scripts/cassandra.sh start
/// the same server process serves again by itself (the driver reconnects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_outage_under_load_loses_nothing_and_recovers() {
    if unreachable().is_some() {
        return;
    }
    let status = cassandra_sh("status");
    let ours = String::from_utf8_lossy(&status.stdout).starts_with("running (pid")
        && cql_addr() == "127.0.0.1:9042";
    if !ours {
        skip(
            "Cassandra outage",
            "the node under test was not started by scripts/cassandra.sh, so this test \
             cannot stop it",
        );
        return;
    }
    let node = NODE.clone().write_owned().await;
    let ks = keyspace("outage");
    let store = spec(&ks);
    let server = ChildServer::start(&store);
    let (acked, stop, tasks) = start_senders(&server.addr);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 10, "load was running: {before} acknowledged");

    let t = Instant::now();
    let out = tokio::task::spawn_blocking(|| cassandra_sh("stop"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("cassandra stopped in {:?}", t.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        acked.lock().unwrap().len(),
        during,
        "nothing is acknowledged while Cassandra is down"
    );

    let t = Instant::now();
    let out = tokio::task::spawn_blocking(|| cassandra_sh("start"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("cassandra answered again after {:?}", t.elapsed());
    let t = Instant::now();
    loop {
        if acked.lock().unwrap().len() > during + 20 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "sends did not resume within 90 s of Cassandra answering"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("sends resumed {:?} after Cassandra answered", t.elapsed());
    stop.store(true, Ordering::Relaxed);
    let mut unavailable = 0;
    for t in tasks {
        unavailable += t.await.unwrap().1;
    }
    assert!(
        unavailable > 0,
        "sends were refused while Cassandra was down"
    );
    eprintln!(
        "{} acknowledged, {unavailable} sends answered unavailable",
        acked.lock().unwrap().len()
    );
    check_acknowledged(&server.addr, &acked).await;
    drop(server);
    drop(node);
    let store = CqlStore::open(&store).await.unwrap();
    let _ = store
        .session()
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await;
}

/// A TCP relay in front of the Cassandra node that can be cut (every relayed connection
/// dropped, new ones closed at once) and resumed: an outage of the node as its clients see
/// it, without stopping the node other tests use. The driver reaches the node through the
/// relay's port only (it learns the node's address with the port it connected to).
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn({
            let up = up.clone();
            let cut = cut.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let mut cut_rx = cut.subscribe();
                    let target = target.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut_rx.changed() => {}
                        }
                    });
                }
            }
        });
        Relay {
            port,
            up,
            cut,
            task,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn resume(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}

/// Cassandra cut off five times under load (through a [`Relay`]): while it is cut, sends
/// are answered `unavailable` and `/healthz` 503, nothing is acknowledged; once it is back
/// the same server process serves again by itself; after the last outage nothing
/// acknowledged is missing. Prints, per outage, how long after Cassandra was reachable
/// again `/healthz` answered 200 and the first send was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_cut_off_five_times_under_load_loses_nothing_and_recovers() {
    if unreachable().is_some() {
        return;
    }
    let _node = NODE.clone().read_owned().await;
    let relay = Relay::start(cql_addr()).await;
    let ks = keyspace("outages");
    let store = format!("cql://127.0.0.1:{}/{ks}", relay.port);
    let server = ChildServer::start_logging(&store, "off");
    let (acked, stop, tasks) = start_senders(&server.addr);
    let count = |acked: &Acked| acked.lock().unwrap().len();
    crate::child::wait_until("load", Duration::from_secs(60), || count(&acked) >= 30).await;
    const OUTAGES: usize = 5;
    let mut recoveries = Vec::new();
    for _ in 0..OUTAGES {
        relay.cut();
        let down = Instant::now();
        time_until("/healthz 503", down, Duration::from_secs(30), async || {
            healthz(&server.addr).await == 503
        })
        .await;
        // Sends under way when the cut came may still be answered; then none is.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = count(&acked);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            count(&acked),
            during,
            "nothing is acknowledged while Cassandra is cut off"
        );
        relay.resume();
        let back = Instant::now();
        let (health, first) = tokio::join!(
            time_until("/healthz 200", back, Duration::from_secs(90), async || {
                healthz(&server.addr).await == 200
            }),
            time_until(
                "a send acknowledged",
                back,
                Duration::from_secs(90),
                async || { count(&acked) > during }
            )
        );
        crate::child::wait_until("the load resumes", Duration::from_secs(60), || {
            count(&acked) >= during + 20
        })
        .await;
        recoveries.push((back - down, health, first));
    }
    stop.store(true, Ordering::Relaxed);
    let mut unavailable = 0;
    for t in tasks {
        let (in_flight, n) = t.await.unwrap();
        assert_eq!(
            in_flight, None,
            "every sender ends with its last send acknowledged"
        );
        unavailable += n;
    }
    assert!(
        unavailable > 0,
        "sends were refused while Cassandra was cut off"
    );
    check_acknowledged(&server.addr, &acked).await;
    let mut out = format!(
        "Cassandra outages (relay cut): {OUTAGES}, {} acknowledged, {unavailable} sends \
         answered unavailable; after Cassandra was reachable again:",
        count(&acked)
    );
    for (i, (down_for, health, first)) in recoveries.iter().enumerate() {
        out.push_str(&format!(
            "\n  outage {}: cut {:.1} s, /healthz 200 after {} ms, first acknowledged send \
             after {} ms",
            i + 1,
            down_for.as_secs_f64(),
            health.as_millis(),
            first.as_millis()
        ));
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{out}\n").as_bytes());
    drop(server);
    drop(relay);
    let store = CqlStore::open(&spec(&ks)).await.unwrap();
    let _ = store
        .session()
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await;
}

// ---------------------------------------------------------------------------------------
// What sequencing costs: figures, not a test of speed. Run on purpose:
// cargo test --release -p chat-server --test it store_cql::measure -- --ignored --nocapture

/// Appends per second and append latency with 1 and 64 concurrent senders (each sender in
/// its own direct conversation): the single-node store (in-process sequencer, the fast
/// path), the shared store (`shared=true`: lease and one compare-and-set per batch) as one
/// node, and two shared instances over one keyspace with the senders split between them,
/// as two nodes of a cluster taking the lease in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; run with --ignored --nocapture"]
async fn measure_append_cost_single_node_vs_shared() {
    if unreachable().is_some() {
        return;
    }
    let _node = NODE.clone().read_owned().await;
    let (ks_single, ks_shared) = (keyspace("msingle"), keyspace("mshared"));
    let single = Arc::new(CqlStore::open(&spec(&ks_single)).await.unwrap());
    let shared_spec = format!("{}?shared=true", spec(&ks_shared));
    let shared = Arc::new(CqlStore::open(&shared_spec).await.unwrap());
    let shared2 = Arc::new(CqlStore::open(&shared_spec).await.unwrap());
    for senders in [1u64, 64] {
        let per_sender = if senders == 1 { 400 } else { 60 };
        for mode in ["single-node", "shared", "shared x2"] {
            let started = Instant::now();
            let tasks: Vec<_> = (0..senders)
                .map(|i| {
                    let store = match mode {
                        "single-node" => single.clone(),
                        "shared x2" if i % 2 == 1 => shared2.clone(),
                        _ => shared.clone(),
                    };
                    let base = match mode {
                        "shared x2" => 1_000_000,
                        _ => 0,
                    } + senders * 1000;
                    tokio::spawn(async move {
                        let (from, to) = (base + 2 * i + 1, base + 2 * i + 2);
                        let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                        for n in 0..per_sender {
                            let r = req(from, to, &format!("m-{n}"));
                            let t = Instant::now();
                            store.append(r).await.unwrap();
                            hist.record(t.elapsed().as_micros() as u64).unwrap();
                        }
                        hist
                    })
                })
                .collect();
            let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            for t in tasks {
                hist.add(t.await.unwrap()).unwrap();
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{mode:>11} senders={senders:>2} appends={:>5} {:>7.0}/s p50={:>6.2} ms p99={:>6.2} ms",
                hist.len(),
                hist.len() as f64 / secs,
                hist.value_at_quantile(0.5) as f64 / 1000.0,
                hist.value_at_quantile(0.99) as f64 / 1000.0,
            );
        }
    }
    for ks in [&ks_single, &ks_shared] {
        let _ = single
            .session()
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_namespace_removes_the_keyspace() {
    if unreachable().is_some() {
        return;
    }
    let _node = NODE.clone().read_owned().await;
    let ks = keyspace("dropped");
    let store = CqlStore::open(&spec(&ks))
        .await
        .expect("open the cql store");
    store.append(req(1, 2, "a")).await.unwrap();
    async fn count(store: &CqlStore, ks: &str) -> usize {
        store
            .session()
            .query_unpaged(
                "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
                (ks,),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .rows_num()
    }
    assert_eq!(count(&store, &ks).await, 1);
    let dropped = chat_server::store::drop_namespace(&spec(&ks))
        .await
        .unwrap();
    assert_eq!(dropped.as_deref(), Some(ks.as_str()));
    assert_eq!(count(&store, &ks).await, 0, "the keyspace is gone");
}

/// Idempotency records are written with the window as their TTL: once it passed,
/// Cassandra has dropped them and a repeated id is a new send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_records_expire_after_the_window() {
    if unreachable().is_some() {
        return;
    }
    let node = NODE.clone().read_owned().await;
    let window = Duration::from_secs(2);
    let mut settings = CqlSettings::parse(&spec(&keyspace("idem_ttl"))).unwrap();
    settings.idempotency_window = window;
    let store = Arc::new(CqlStore::open_with(settings).await.unwrap());
    let _drop = DropKeyspace {
        store: store.clone(),
        _node: node,
    };
    chat_server::store::conformance::idempotency_expires_after_the_window(&*store, window).await;
}
