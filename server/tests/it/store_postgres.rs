//! The conformance suite on the PostgreSQL backend, each check in a fresh schema, plus what
//! only this backend can show: concurrent transactions that stay gap-free and never
//! deadlock, migrations, a real server killed with SIGKILL under load ten times, and
//! PostgreSQL stopped and started five times under load, each outage answered
//! `unavailable` and recovered from without help.
//!
//! The tests use the database at `CHAT_TEST_POSTGRES_URL` (default: the cluster that
//! `scripts/postgres.sh start` runs). When it cannot be reached they are skipped with the
//! reason on standard error, except under `CI=true`, where a skip is a failure. The outage
//! test starts, stops and restarts a second cluster of its own with `scripts/postgres.sh`
//! (port 5439), so that stopping it disturbs no other test.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_server::model::ConvId;
use chat_server::store::conformance::Subject;
use chat_server::store::{
    AppendRequest, GroupStore, MessageStore, PostgresStore, Store, StoreError, StoreOptions, Table,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_postgres::NoTls;
use tokio_tungstenite::tungstenite::Message;

use crate::child::{
    Acked, ChildServer, CrashLoop, check_histories, crash_loop, healthz, record, send_http, skip,
    time_until, token, wait_until,
};

/// The database the tests use unless `CHAT_TEST_POSTGRES_URL` names another.
const DEFAULT_URL: &str = "postgres://chat:chat@127.0.0.1:5433/chat";

/// The port of the outage test's own cluster.
const OUTAGE_PORT: u16 = 5439;

fn base_url() -> String {
    std::env::var("CHAT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// The URL without its password, for messages.
fn shown(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((_, host)) => format!("postgres://…@{host}"),
        None => url.to_owned(),
    }
}

/// Gives up on a test that cannot run here (see [`skip`]).
fn skip_postgres(reason: &str) {
    skip(
        "PostgreSQL store",
        &format!(
            "{reason}; start the database with `scripts/postgres.sh start` (or set \
             CHAT_TEST_POSTGRES_URL)"
        ),
    );
}

/// Connects once and runs `SELECT 1`.
async fn probe(url: &str) -> Result<tokio_postgres::Client, String> {
    let connect = tokio_postgres::connect(url, NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| {
            let mut text = e.to_string();
            if let Some(cause) = std::error::Error::source(&e) {
                text.push_str(&format!(": {cause}"));
            }
            text
        })?;
    tokio::spawn(connection);
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| e.to_string())?;
    Ok(client)
}

/// The test database's URL, or `None` when the test is skipped.
pub(crate) async fn database() -> Option<String> {
    let url = base_url();
    match probe(&url).await {
        Ok(_) => Some(url),
        Err(why) => {
            skip_postgres(&format!(
                "PostgreSQL at {} is not reachable: {why}",
                shown(&url)
            ));
            None
        }
    }
}

/// A schema of its own for one test, dropped with everything in it when the test ends.
pub(crate) struct Schema {
    url: String,
    name: String,
}

impl Schema {
    pub(crate) fn new(url: &str, prefix: &str) -> Schema {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Schema {
            url: url.to_owned(),
            name,
        }
    }

    /// The `--store` spec that keeps the store in this schema.
    pub(crate) fn spec(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.url, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop runs inside a test's runtime, which must not be blocked on: use a thread
        // with a runtime of its own.
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(client) = probe(&url).await {
                    let _ = client.batch_execute(&sql).await;
                }
            });
        })
        .join();
    }
}

async fn open(schema: &Schema) -> PostgresStore {
    PostgresStore::open(&schema.spec())
        .await
        .expect("open the PostgreSQL store")
}

async fn fresh(url: String) -> Subject {
    let schema = Schema::new(&url, "conformance");
    let store = open(&schema).await;
    Subject {
        store: Arc::new(store),
        guard: Box::new(schema),
    }
}

chat_server::store_conformance!({
    let Some(url) = database().await else {
        return;
    };
    fresh(url)
});

fn direct(from: u64, to: u64, id: &str) -> AppendRequest {
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
    let Some(url) = database().await else {
        return;
    };
    let schema = Schema::new(&url, "reopen");
    chat_server::store::conformance::fill_before_reopen(&open(&schema).await).await;
    chat_server::store::conformance::check_after_reopen(&open(&schema).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_versioned_applied_once_and_never_downgraded() {
    let Some(url) = database().await else {
        return;
    };
    let schema = Schema::new(&url, "migrations");
    // Several servers starting at once on an empty schema.
    let (a, b, c) = tokio::join!(open(&schema), open(&schema), open(&schema));
    drop((a, b, c));
    let client = probe(&url).await.unwrap();
    let rows = client
        .query(
            &format!(
                "SELECT version, name FROM {}.schema_migrations ORDER BY version",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, vec![1, 2], "each migration applied exactly once");
    // Through the server's own `--store` parsing, under both URL schemes.
    for scheme in ["postgres", "postgresql"] {
        let spec = schema.spec().replacen("postgres", scheme, 1);
        let store = chat_server::store::open(&spec).await.unwrap();
        assert_eq!(store.name(), "postgres");
    }
    // A database written by a newer server is refused, not written into.
    client
        .execute(
            &format!(
                "INSERT INTO {}.schema_migrations (version, name) VALUES (999, 'future')",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    match PostgresStore::open(&schema.spec()).await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("999"), "{msg}"),
        Err(e) => panic!("expected a refusal naming the version, got {e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_quickly() {
    // Needs no database: nothing listens on port 1.
    let start = Instant::now();
    match PostgresStore::open("postgres://chat:chat@127.0.0.1:1/chat").await {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("expected unavailable, got {e}"),
        Ok(_) => panic!("opened a store on a closed port"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        PostgresStore::open("postgres://h/db?schema=Robert');DROP").await,
        Err(StoreError::Spec(_))
    ));
}

/// Sends that share users but not conversations (every pair of six users, and a group of
/// all six) run at once: no deadlock, every conversation and every inbox gap-free, every
/// message in the inbox of each of its participants exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_concurrent_sends_stay_gap_free_without_deadlocks() {
    let Some(url) = database().await else {
        return;
    };
    let schema = Schema::new(&url, "overlap");
    let store: Arc<dyn Store> = Arc::new(open(&schema).await);
    let group = store
        .create_group("all".into(), 1, (1..=6).collect())
        .await
        .unwrap()
        .id;
    const EACH: usize = 25;
    let mut tasks = Vec::new();
    for a in 1..=6u64 {
        for b in 1..=6u64 {
            if a == b {
                continue;
            }
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    // Alternate between the pair's chat and the group, from both ends.
                    let req = if i % 5 == 0 {
                        AppendRequest {
                            conv: ConvId::Group(group),
                            from: a,
                            id: format!("g-{a}-{b}-{i}").parse().unwrap(),
                            body: "group".into(),
                            ts: 1,
                        }
                    } else {
                        direct(a, b, &format!("d-{a}-{b}-{i}"))
                    };
                    s.append(req).await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut expected: HashMap<u64, HashSet<(ConvId, u64)>> = HashMap::new();
    let mut convs: Vec<ConvId> = vec![ConvId::Group(group)];
    for a in 1..=6u64 {
        for b in a + 1..=6 {
            convs.push(ConvId::direct(a, b).unwrap());
        }
    }
    for conv in convs {
        let hist = store.history(conv, None, 100_000).await.unwrap();
        let seqs: Vec<u64> = hist.iter().rev().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{conv}");
        let members: Vec<u64> = match conv {
            ConvId::Direct { lo, hi } => vec![lo, hi],
            ConvId::Group(_) => (1..=6).collect(),
        };
        for m in &hist {
            for &u in &members {
                expected.entry(u).or_default().insert((conv, m.seq));
            }
        }
    }
    for user in 1..=6u64 {
        let items = store.inbox(user, 0, 100_000).await.unwrap();
        let useqs: Vec<u64> = items.iter().map(|i| i.useq).collect();
        assert_eq!(useqs, (1..=items.len() as u64).collect::<Vec<_>>());
        let got: HashSet<(ConvId, u64)> = items.iter().map(|i| (i.msg.conv, i.msg.seq)).collect();
        assert_eq!(got.len(), items.len(), "no message twice in {user}'s inbox");
        assert_eq!(got, expected[&user], "user {user}'s inbox");
        assert_eq!(store.inbox_head(user).await.unwrap(), items.len() as u64);
    }
}

/// Copies of one send (a client retrying while the first attempt is still running) store
/// it once, and every copy answers with the same seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_copies_of_one_send_store_it_once() {
    let Some(url) = database().await else {
        return;
    };
    let schema = Schema::new(&url, "race");
    let store: Arc<dyn Store> = Arc::new(open(&schema).await);
    for round in 0..10 {
        let id = format!("same-{round}");
        let copies: Vec<_> = (0..12)
            .map(|k| {
                let s = store.clone();
                let id = id.clone();
                // Some copies name another conversation: the first outcome stands anyway.
                let to = if k % 3 == 0 { 3 } else { 2 };
                tokio::spawn(async move { s.append(direct(1, to, &id)).await.unwrap() })
            })
            .collect();
        let mut outcomes = Vec::new();
        for c in copies {
            outcomes.push(c.await.unwrap());
        }
        let firsts: Vec<_> = outcomes.iter().filter(|o| !o.duplicate).collect();
        assert_eq!(firsts.len(), 1, "stored exactly once");
        for o in &outcomes {
            assert_eq!(
                (o.conv, o.seq, o.useq),
                (firsts[0].conv, firsts[0].seq, firsts[0].useq)
            );
        }
    }
    assert_eq!(store.inbox_head(1).await.unwrap(), 10);
    let stored = store
        .history(ConvId::direct(1, 2).unwrap(), None, 100)
        .await
        .unwrap()
        .len()
        + store
            .history(ConvId::direct(1, 3).unwrap(), None, 100)
            .await
            .unwrap()
            .len();
    assert_eq!(stored, 10);
}

/// Text that PostgreSQL's `text` type cannot hold (U+0000) round-trips like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_unicode_text_round_trips() {
    let Some(url) = database().await else {
        return;
    };
    let schema = Schema::new(&url, "nul");
    let store = open(&schema).await;
    let mut req = direct(1, 2, "nul");
    req.body = "before\0after ✓".into();
    store.append(req).await.unwrap();
    let hist = store
        .history(ConvId::direct(1, 2).unwrap(), None, 1)
        .await
        .unwrap();
    assert_eq!(hist[0].body, "before\0after ✓");
    let g = store.create_group("a\0b".into(), 1, vec![2]).await.unwrap();
    assert_eq!(store.group(g.id).await.unwrap().unwrap().name, "a\0b");
}

// ---------------------------------------------------------------------------------------
// A real server process on PostgreSQL.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let Some(url) = database().await else {
        return;
    };
    let schema = Schema::new(&url, "kill9");
    let report = crash_loop(CrashLoop::new("PostgreSQL", schema.spec(), 10)).await;
    assert!(report.acked > 100, "{report:?}");
}

// ---------------------------------------------------------------------------------------
// A PostgreSQL outage under load.

/// Runs `scripts/postgres.sh ACTION` for the cluster on `port`.
fn cluster_script(port: u16, action: &str) -> Result<(), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(action)
        .env("CHAT_PG_PORT", port.to_string())
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`scripts/postgres.sh {action}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The outage test's own cluster, run by `scripts/postgres.sh`; stopped when dropped.
struct Cluster {
    port: u16,
}

impl Cluster {
    async fn run(&self, action: &'static str) -> Result<(), String> {
        let port = self.port;
        tokio::task::spawn_blocking(move || cluster_script(port, action))
            .await
            .map_err(|e| e.to_string())?
    }

    fn url(&self) -> String {
        format!("postgres://chat:chat@127.0.0.1:{}/chat", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = cluster_script(self.port, "stop");
    }
}

/// Counts of what the outage senders saw.
#[derive(Default)]
struct Seen {
    unavailable: AtomicU64,
    reconnects: AtomicU64,
}

/// Sends until `stop` is set; a send answered `unavailable` is sent again with the same id
/// until it is acknowledged, as a client must; a dropped connection is reopened.
async fn resilient_sender(
    addr: String,
    from: u64,
    to: u64,
    stop: Arc<AtomicBool>,
    acked: Acked,
    seen: Arc<Seen>,
) {
    let url = format!("ws://{addr}/v1/ws?token={}", token(from));
    let mut i = 0;
    let mut ws = None;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("o-{from}-{i}");
        let body = format!("body of {id}");
        let frame = json!({"type": "send", "id": id, "to": format!("u:{to}"), "body": body});
        'this_id: loop {
            let socket = match ws.as_mut() {
                Some(s) => s,
                None => match tokio_tungstenite::connect_async(url.as_str()).await {
                    Ok((s, _)) => ws.insert(s),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            if socket.send(Message::text(frame.to_string())).await.is_err() {
                ws = None;
                seen.reconnects.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if v["type"] == "sent" {
                            assert_eq!(v["id"], id.as_str());
                            record(&acked, from, &id, &v, &body);
                            break 'this_id;
                        }
                        if v["type"] == "error" {
                            assert_eq!(v["code"], "unavailable", "{v}");
                            assert_eq!(v["ref"], id.as_str(), "{v}");
                            seen.unavailable.fetch_add(1, Ordering::Relaxed);
                            // Few retries a second: the server closes a connection that
                            // errs more than 100 times a minute.
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            continue 'this_id;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        // The server may close a device whose live stream it could not
                        // repair while the store was down: reconnect and resend.
                        ws = None;
                        seen.reconnects.fetch_add(1, Ordering::Relaxed);
                        continue 'this_id;
                    }
                }
            }
        }
        i += 1;
    }
}

/// PostgreSQL stopped and started again five times under load (its own cluster, with
/// `scripts/postgres.sh`): each time sends are answered `unavailable` (503 over HTTP) and
/// `/healthz` answers 503 while it is down, both come back by themselves once it is up,
/// and after the last outage nothing acknowledged is missing. Prints, per outage, how long
/// after PostgreSQL was back `/healthz` answered 200 and the first send was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outages_under_load_are_unavailable_then_recover_by_themselves() {
    if database().await.is_none() {
        return;
    }
    let cluster = Cluster { port: OUTAGE_PORT };
    if let Err(why) = cluster.run("start").await {
        skip_postgres(&format!(
            "cannot run a cluster of its own for the outage test: {why}"
        ));
        return;
    }
    let schema = Schema::new(&cluster.url(), "outage");
    let server = ChildServer::start_logging(&schema.spec(), "error");
    let acked: Acked = Arc::default();
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pairs: Vec<(u64, u64)> = vec![(1, 2), (2, 1), (3, 4), (4, 3)];
    let tasks: Vec<_> = pairs
        .iter()
        .map(|&(from, to)| {
            tokio::spawn(resilient_sender(
                server.addr.clone(),
                from,
                to,
                stop.clone(),
                acked.clone(),
                seen.clone(),
            ))
        })
        .collect();
    let count = |acked: &Acked| acked.lock().unwrap().len();
    wait_until("load", Duration::from_secs(30), || count(&acked) >= 50).await;
    const OUTAGES: usize = 5;
    let mut recoveries = Vec::new();
    for outage in 0..OUTAGES {
        cluster.run("stop").await.expect("stop PostgreSQL");
        let down = Instant::now();
        let at_outage = count(&acked);
        let unavailable = seen.unavailable.load(Ordering::Relaxed);
        wait_until("an `unavailable` answer", Duration::from_secs(30), || {
            seen.unavailable.load(Ordering::Relaxed) > unavailable
        })
        .await;
        time_until("/healthz 503", down, Duration::from_secs(30), async || {
            healthz(&server.addr).await == 503
        })
        .await;
        if outage == 0 {
            // Over HTTP the same outage is a 503 with the code `unavailable`.
            let (status, body) = send_http(&server.addr, 5, 6, "during-outage").await;
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
        }
        let during = count(&acked) - at_outage;
        assert!(
            during <= pairs.len(),
            "{during} sends acknowledged while PostgreSQL was down"
        );
        cluster.run("start").await.expect("start PostgreSQL again");
        let back = Instant::now();
        let at_restart = count(&acked);
        let (health, first) = tokio::join!(
            time_until("/healthz 200", back, Duration::from_secs(60), async || {
                healthz(&server.addr).await == 200
            }),
            time_until(
                "a send acknowledged",
                back,
                Duration::from_secs(60),
                async || { count(&acked) > at_restart }
            )
        );
        wait_until("the load resumes", Duration::from_secs(60), || {
            count(&acked) >= at_restart + 30
        })
        .await;
        recoveries.push((down.elapsed() - back.elapsed(), health, first));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("senders finish their last send")
            .unwrap();
    }
    // The send refused during the first outage, retried with its id, is stored once.
    let (s1, first) = send_http(&server.addr, 5, 6, "during-outage").await;
    let (s2, again) = send_http(&server.addr, 5, 6, "during-outage").await;
    assert_eq!((s1, s2), (200, 200), "{first} {again}");
    assert_eq!(first, again);
    assert_eq!(first["seq"], 1);
    check_histories(&server.addr, &["d:1:2", "d:3:4"], &acked).await;
    let mut out = format!(
        "PostgreSQL outages: {OUTAGES}, {} acknowledged, {} `unavailable` answers, {} \
         reconnects; after PostgreSQL was back:",
        count(&acked),
        seen.unavailable.load(Ordering::Relaxed),
        seen.reconnects.load(Ordering::Relaxed)
    );
    for (i, (down_for, health, first)) in recoveries.iter().enumerate() {
        out.push_str(&format!(
            "\n  outage {}: down {:.1} s, /healthz 200 after {} ms, first acknowledged send \
             after {} ms",
            i + 1,
            down_for.as_secs_f64(),
            health.as_millis(),
            first.as_millis()
        ));
    }
    let _ = writeln!(std::io::stderr(), "{out}");
    server.kill9();
    drop(schema);
    drop(cluster);
}

// ---------------------------------------------------------------------------------------
// Figures, not a check: `cargo test --release -p chat-server --test it
// store_postgres::append_throughput -- --ignored --nocapture`.

/// Appends per second and latency percentiles with 1 and 64 concurrent senders, each
/// sender in a conversation of its own and, for 64, also all in one conversation (whose
/// sends the conversation's row lock serializes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it on purpose with --ignored --nocapture"]
async fn append_throughput() {
    let Some(url) = database().await else {
        return;
    };
    const RUN: Duration = Duration::from_secs(8);
    let mut out = String::new();
    for (senders, one_conv) in [(1u64, false), (64, false), (64, true)] {
        let schema = Schema::new(&url, "bench");
        let store: Arc<dyn Store> = Arc::new(
            PostgresStore::open(&format!("{}&pool_size=32", schema.spec()))
                .await
                .unwrap(),
        );
        let stats = probe(&url).await.unwrap();
        // WAL flushes, cluster-wide: appends per flush is PostgreSQL's own group commit.
        let syncs = || async {
            tokio::time::sleep(Duration::from_millis(1100)).await; // stats are sent each second
            let row = stats
                .query_one("SELECT wal_sync FROM pg_stat_wal", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        };
        let syncs_before = syncs().await;
        let deadline = Instant::now() + RUN;
        let tasks: Vec<_> = (0..senders)
            .map(|k| {
                let s = store.clone();
                tokio::spawn(async move {
                    let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                    let (from, to) = if one_conv {
                        (1 + k % 2, 2 - k % 2)
                    } else {
                        (2 * k + 1, 2 * k + 2)
                    };
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let mut req = direct(from, to, &format!("b{k}-{i}"));
                        req.body = "x".repeat(100);
                        let start = Instant::now();
                        s.append(req).await.unwrap();
                        hist.record(start.elapsed().as_micros() as u64).unwrap();
                        i += 1;
                    }
                    hist
                })
            })
            .collect();
        let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for t in tasks {
            all.add(t.await.unwrap()).unwrap();
        }
        let flushes = (syncs().await - syncs_before).max(1);
        let bytes = store.disk_bytes().await.unwrap().unwrap_or(0);
        out.push_str(&format!(
            "{senders:>3} senders, {:<18} {:>7.0} appends/s  p50 {:>6.2} ms  p99 {:>6.2} ms  \
             max {:>7.2} ms  {:>5.1} appends per WAL flush  ({} appends, {:.0} table bytes \
             each)\n",
            if one_conv {
                "one conversation:"
            } else {
                "own conversations:"
            },
            all.len() as f64 / RUN.as_secs_f64(),
            all.value_at_quantile(0.5) as f64 / 1000.0,
            all.value_at_quantile(0.99) as f64 / 1000.0,
            all.max() as f64 / 1000.0,
            all.len() as f64 / flushes as f64,
            all.len(),
            bytes as f64 / all.len() as f64,
        ));
    }
    let _ = writeln!(std::io::stderr(), "PostgreSQL append throughput:\n{out}");
}

#[tokio::test]
async fn drop_namespace_removes_the_schema_and_spares_the_default() {
    let Some(url) = database().await else {
        return;
    };
    let schema = Schema::new(&url, "dropped");
    let store = open(&schema).await;
    store.append(direct(1, 2, "a")).await.unwrap();
    drop(store);
    let exists = |name: String| {
        let url = url.clone();
        async move {
            let client = probe(&url).await.unwrap();
            client
                .query_opt(
                    "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                    &[&name],
                )
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(exists(schema.name.clone()).await);
    let dropped = chat_server::store::drop_namespace(&schema.spec())
        .await
        .unwrap();
    assert_eq!(dropped.as_deref(), Some(schema.name.as_str()));
    assert!(!exists(schema.name.clone()).await, "the schema is gone");
    // A spec without `schema=` names the default schema, which is never dropped.
    assert_eq!(
        chat_server::store::drop_namespace(&url).await.unwrap(),
        None
    );
    assert!(exists("public".into()).await);
}

/// The sweep deletes idempotency records once their window passed: a repeated id is then
/// a new send, and the table holds none of the expired records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_records_expire_after_the_window() {
    let Some(url) = database().await else {
        return;
    };
    let schema = Schema::new(&url, "idem_expiry");
    let window = Duration::from_secs(2);
    let store = PostgresStore::open_with(
        &schema.spec(),
        &StoreOptions {
            idempotency_window: window,
        },
    )
    .await
    .unwrap();
    chat_server::store::conformance::idempotency_expires_after_the_window(&store, window).await;
    tokio::time::sleep(window + Duration::from_millis(500)).await;
    let client = probe(&url).await.unwrap();
    let left: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}.idem", schema.name), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "every record is past its window and swept");
    // Settled, the store reports its tables by what they hold.
    store.settle().await.unwrap();
    let report = store.storage().await.unwrap().unwrap();
    assert!(report.tables[&Table::Messages] > 0, "{report:?}");
    assert!(report.tables[&Table::Inbox] > 0, "{report:?}");
}
