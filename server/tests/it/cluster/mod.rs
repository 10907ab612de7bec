//! Cluster mode over real processes: a real `nats-server`, nodes sharing one real
//! PostgreSQL schema or Cassandra keyspace (in this process, or as child processes where a
//! node is killed): the crossing case across nodes with one order on every device,
//! presence across nodes, group fan-out and a removed member across nodes, NATS restarted
//! five times under load with nothing lost and `/healthz` following it, kill -9 of a node under load
//! with nothing acknowledged lost, and the stores that refuse `--cluster`. The tests that
//! depend most on the store's sequencing run over both shared stores ([`over_both!`]).

mod late_holds;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use self::support::{
    Backing, assert_stream_whole, backing, device, node, node_config, run_device, wait_for_health,
    wait_for_nodes,
};
use crate::child::{Acked, ChildServer, check_histories, record, send_http, token, ws_sender};
use crate::support::WAIT;

/// Runs a test written for a [`Backing`] once per shared store: `NAME::postgres` and
/// `NAME::cql`.
macro_rules! over_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::Backing::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn cql() {
                super::$name(super::Backing::Cql).await
            }
        }
    )*};
}

over_both!(
    users_on_different_nodes_chat_with_one_order_on_every_device,
    group_fan_out_crosses_nodes_and_a_removed_member_gets_nothing_newer,
    kill_9_of_a_node_under_load_loses_nothing_acknowledged,
);

async fn users_on_different_nodes_chat_with_one_order_on_every_device(store: Backing) {
    let Some((nats, schema)) = backing(store, "cluster_cross").await else {
        return;
    };
    let a = node(&nats, &schema, "a").await;
    let b = node(&nats, &schema, "b").await;
    wait_for_nodes(&[&a, &b], 2).await;
    // Each user has a device on each node; each sends from one of them at the same time.
    // No wait for the nodes to hear of each other's devices: what a node stores before it
    // knows of a device elsewhere reaches that device by a catch-up (`S` relay).
    let (u1a, u1b) = (device(&a, 1, "a").await, device(&b, 1, "b").await);
    let (u2a, u2b) = (device(&a, 2, "a").await, device(&b, 2, "b").await);
    let n = 25;
    let sends = |from: u64, to: u64| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("{from}-{i}"), format!("u:{to}")))
            .collect()
    };
    let total = 2 * n;
    let devices = vec![
        ("1/a", tokio::spawn(run_device(u1a, sends(1, 2), total))),
        ("1/b", tokio::spawn(run_device(u1b, vec![], total))),
        ("2/a", tokio::spawn(run_device(u2a, vec![], total))),
        ("2/b", tokio::spawn(run_device(u2b, sends(2, 1), total))),
    ];
    let mut mapping: BTreeMap<u64, String> = BTreeMap::new();
    for (who, task) in devices {
        let frames = task.await.unwrap();
        assert_stream_whole(&frames, total as u64, who);
        for v in frames.iter().filter(|v| v["type"] == "msg") {
            let seq = v["seq"].as_u64().unwrap();
            let id = v["id"].as_str().unwrap().to_owned();
            let prev = mapping.insert(seq, id.clone());
            assert!(
                prev.is_none_or(|p| p == id),
                "{who}: seq {seq} is one message"
            );
        }
    }
    assert_eq!(
        mapping.keys().copied().collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>(),
        "one gap-free sequence, the same on every device"
    );
    let (status, view) = a.get(1, "/v1/cluster").await;
    assert_eq!(status, 200);
    assert_eq!(view["node"], "a");
    let names: Vec<&str> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_is_cluster_wide() {
    let Some((nats, schema)) = backing(Backing::Postgres, "cluster_presence").await else {
        return;
    };
    let a = node(&nats, &schema, "a").await;
    let b = node(&nats, &schema, "b").await;
    wait_for_nodes(&[&a, &b], 2).await;
    let mut watcher = a.connect(10, "w").await;
    watcher
        .send_json(json!({"type": "presence_sub", "users": [11]}))
        .await;
    let snap = watcher.recv_type("presence").await;
    assert_eq!(snap["status"], "offline");
    let user = b.connect(11, "d").await;
    let online = watcher.recv_type("presence").await;
    assert_eq!(
        (online["user"].as_u64(), &online["status"]),
        (Some(11), &json!("online"))
    );
    let (_, pulled) = a.get(10, "/v1/presence?users=11").await;
    assert_eq!(pulled[0]["status"], "online", "{pulled}");
    // A second device on the other node, then the first leaves: still online, no flap.
    let second = a.connect(11, "e").await;
    drop(user);
    let quiet = watcher.drain(Duration::from_millis(800)).await;
    assert!(
        quiet.iter().all(|v| v["type"] != "presence"),
        "online while a device on any node is connected: {quiet:?}"
    );
    drop(second);
    let offline = watcher.recv_type("presence").await;
    assert_eq!(offline["status"], "offline");
    assert!(offline["last_seen"].as_u64().is_some(), "{offline}");
}

async fn group_fan_out_crosses_nodes_and_a_removed_member_gets_nothing_newer(store: Backing) {
    let Some((nats, schema)) = backing(store, "cluster_group").await else {
        return;
    };
    let a = node(&nats, &schema, "a").await;
    let b = node(&nats, &schema, "b").await;
    wait_for_nodes(&[&a, &b], 2).await;
    let (status, g) = a
        .post(20, "/v1/groups", &json!({"name": "g", "members": [21, 22]}))
        .await;
    assert_eq!(status, 201, "{g}");
    let conv = g["conv"].as_str().unwrap().to_owned();
    let to = format!("g:{}", g["group"]);
    let mut admin = device(&a, 20, "d").await;
    let mut stays = device(&b, 21, "d").await;
    let mut leaves = device(&b, 22, "d").await;
    let sent = admin.send_msg("g1", &to, "hello").await;
    assert_eq!(sent["seq"], 1);
    for c in [&mut stays, &mut leaves] {
        let m = c.recv_type("msg").await;
        assert_eq!(
            (m["conv"].as_str(), m["id"].as_str()),
            (Some(conv.as_str()), Some("g1"))
        );
    }
    let r = a
        .http
        .delete(a.url(&format!("/v1/groups/{}/members/22", g["group"])))
        .bearer_auth(a.token(20, "http"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let sent = admin.send_msg("g2", &to, "after").await;
    assert_eq!(sent["seq"], 2);
    assert_eq!(stays.recv_type("msg").await["id"], "g2");
    let late = leaves.drain(Duration::from_millis(800)).await;
    assert!(
        late.iter().all(|v| v["type"] != "msg"),
        "a removed member gets nothing newer: {late:?}"
    );
    let (status, _) = b
        .get(22, &format!("/v1/conversations/{conv}/messages"))
        .await;
    assert_eq!(
        status, 403,
        "a removed member cannot read the group on any node"
    );
}

/// NATS killed and started again five times while a node sends to a device on the other
/// node: sends go on (the store is the record), both nodes' `/healthz` answers 503 while
/// NATS is gone and 200 once it is back, the device's live stream is whole and in order at
/// the end, and after each restart the first message sent reaches it across nodes. Prints
/// each recovery: from NATS listening again to both nodes healthy, and to that message
/// delivered live on the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_restarted_under_load_loses_nothing_and_healthz_follows() {
    let Some((mut nats, schema)) = backing(Backing::Postgres, "cluster_nats").await else {
        return;
    };
    let a = node(&nats, &schema, "a").await;
    let b = node(&nats, &schema, "b").await;
    wait_for_nodes(&[&a, &b], 2).await;
    let mut receiver = device(&b, 31, "d").await;
    const OUTAGES: usize = 5;
    const EACH: usize = 12;
    let n = EACH * (2 * OUTAGES + 1);
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let device = tokio::spawn({
        let got = got.clone();
        async move {
            while got.lock().unwrap().len() < n {
                let v = receiver.recv().await;
                assert_ne!(v["type"], "error", "{v}");
                if v["type"] == "msg" {
                    got.lock().unwrap().push(v);
                }
            }
        }
    });
    let addr = a.addr.to_string();
    // Per restart: both nodes healthy, and the next message delivered across nodes, after.
    let mut recoveries: Vec<(Duration, Duration)> = Vec::new();
    for i in 0..n {
        let phase = i / EACH;
        let mut back = None;
        if i % EACH == 0 && phase % 2 == 1 {
            nats.stop();
            wait_for_health(&a, 503).await;
            wait_for_health(&b, 503).await;
        }
        if i % EACH == 0 && phase > 0 && phase % 2 == 0 {
            nats.restart();
            let since = std::time::Instant::now();
            wait_for_health(&a, 200).await;
            wait_for_health(&b, 200).await;
            back = Some((since, since.elapsed()));
        }
        let id = format!("n{i}");
        let (status, v) = send_http(&addr, 30, 31, &id).await;
        assert_eq!(
            status, 200,
            "the store is the record: sends go on without NATS: {v}"
        );
        if let Some((since, healthy)) = back {
            loop {
                if got.lock().unwrap().iter().any(|m| m["id"] == id.as_str()) {
                    break;
                }
                assert!(
                    since.elapsed() < WAIT * 3,
                    "{id}, sent after NATS came back, reaches the other node"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            recoveries.push((healthy, since.elapsed()));
        }
    }
    tokio::time::timeout(WAIT * 3, device)
        .await
        .expect("the device catches up after NATS is back")
        .unwrap();
    let frames = got.lock().unwrap().clone();
    assert_stream_whole(&frames, n as u64, "31/d");
    assert_eq!(recoveries.len(), OUTAGES);
    let mut out = format!(
        "NATS outages: {OUTAGES}, {n} sends acknowledged and delivered; after NATS was back:"
    );
    for (i, (healthy, delivered)) in recoveries.iter().enumerate() {
        out.push_str(&format!(
            "\n  outage {}: both nodes' /healthz 200 after {} ms, a message across nodes \
             delivered after {} ms",
            i + 1,
            healthy.as_millis(),
            delivered.as_millis()
        ));
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{out}\n").as_bytes());
}

async fn kill_9_of_a_node_under_load_loses_nothing_acknowledged(store: Backing) {
    let Some((nats, schema)) = backing(store, "cluster_kill").await else {
        return;
    };
    let spec = schema.spec();
    let cluster = ["--cluster", &nats.url()];
    let a = ChildServer::start_with(&spec, "warn", &[&cluster[..], &["--node", "a"]].concat());
    let b = ChildServer::start_with(&spec, "warn", &[&cluster[..], &["--node", "b"]].concat());
    // Receivers on b, senders on a; a dies mid-stream and its devices move to b.
    let pairs = [(41u64, 42u64), (43, 44)];
    let received: Arc<Mutex<BTreeMap<u64, Vec<Value>>>> = Arc::default();
    let mut receivers = Vec::new();
    for &(_, to) in &pairs {
        let url = format!("ws://{}/v1/ws?token={}", b.addr, token(to));
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let received = received.clone();
        receivers.push(tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut ws = ws;
            while let Some(Ok(m)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "msg" {
                        received.lock().unwrap().entry(to).or_default().push(v);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked: Acked = Arc::default();
    let senders: Vec<_> = pairs
        .iter()
        .map(|&(from, to)| tokio::spawn(ws_sender(a.addr.clone(), from, to, 0, acked.clone())))
        .collect();
    crate::child::wait_until("load", Duration::from_secs(30), || {
        acked.lock().unwrap().len() >= 40
    })
    .await;
    a.kill9();
    // The senders' devices reconnect to b and retry what got no answer, with the same id.
    for (task, &(from, to)) in senders.into_iter().zip(&pairs) {
        if let Some(id) = task.await.unwrap() {
            let (status, v) = send_http(&b.addr, from, to, &id).await;
            assert_eq!(status, 200, "{v}");
            record(&acked, from, &id, &v, &format!("body of {id}"));
        }
    }
    check_histories(&b.addr, &["d:41:42", "d:43:44"], &acked).await;
    // Every acknowledged message reached its receiver on b live, in order, once.
    for &(from, to) in &pairs {
        let want = acked
            .lock()
            .unwrap()
            .keys()
            .filter(|(f, _)| *f == from)
            .count();
        crate::child::wait_until("live delivery", Duration::from_secs(20), || {
            received.lock().unwrap().get(&to).map_or(0, Vec::len) >= want
        })
        .await;
        let got = received.lock().unwrap()[&to].clone();
        assert_stream_whole(&got, want as u64, &format!("{to}"));
    }
    for r in receivers {
        r.abort();
    }
    b.kill9();
}

#[tokio::test]
async fn stores_of_one_process_refuse_cluster_mode() {
    for store in ["memory", "fjall:/tmp/never-opened-by-cluster"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--jwt-secret",
                "s",
                "--store",
                store,
            ])
            .args(["--cluster", "nats://127.0.0.1:1", "--node", "x"])
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{store} refuses --cluster");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--cluster needs a store that several nodes can share"),
            "{store}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all("/tmp/never-opened-by-cluster");
}

/// A node name outside the contract's alphabet is refused before the node serves.
#[tokio::test]
async fn a_bad_node_name_is_refused() {
    let Some((nats, schema)) = backing(Backing::Postgres, "cluster_name").await else {
        return;
    };
    let mut config = node_config(&nats, "no spaces allowed");
    config.send_rate_per_sec = 0;
    let store = chat_server::store::open(&schema.spec()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = chat_server::run(listener, config, store, async {})
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("--node"), "{err}");
}
