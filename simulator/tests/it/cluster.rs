//! Cluster runs over real processes: NATS, two nodes over a fresh PostgreSQL schema,
//! HAProxy or client-side hashing, and faults injected while the load runs. Every check
//! must still pass across the faults; the report must say what each fault did.
//!
//! They need PostgreSQL (`scripts/postgres.sh start`, or `CHAT_TEST_POSTGRES_URL`),
//! `nats-server` and `haproxy` (`scripts/cluster.sh install`): without them a test
//! skips, and under `CI=true` a skip is a failure.

use std::path::Path;

use serde_json::Value;

use crate::support::{assert_schema, chat_sim, report_dir, summary, text, tiny_scenario};

const DEFAULT_PG: &str = "postgres://chat:chat@127.0.0.1:5433/chat";

/// The PostgreSQL URL, when PostgreSQL, NATS and HAProxy are all here.
fn services() -> Option<String> {
    let url = std::env::var("CHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.into());
    let host = url.split_once('@').map_or("127.0.0.1:5433", |(_, r)| {
        r.split(['/', '?']).next().unwrap_or("")
    });
    let mut missing = Vec::new();
    if std::net::TcpStream::connect(host).is_err() {
        missing.push(format!("PostgreSQL at {host} (scripts/postgres.sh start)"));
    }
    for bin in ["nats-server", "haproxy"] {
        let found = std::process::Command::new(bin)
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            missing.push(format!("{bin} (scripts/cluster.sh install)"));
        }
    }
    if missing.is_empty() {
        return Some(url);
    }
    let why = format!("cluster tests skipped: missing {}", missing.join(", "));
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why}, and CI=true"
    );
    eprintln!("{why}");
    None
}

fn run(dir: &Path, extra: &str) -> (std::process::Output, Value) {
    let path = tiny_scenario(dir, extra);
    let out_dir = dir.join("out");
    let out = chat_sim(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--set",
        "run.duration_secs=12",
        "--set",
        "gates.max_error_rate=1",
        // Faults make latency, not losses: only the checks are gated here.
        "--set",
        "gates.p99_send_to_sent_ms=600000",
    ]);
    let rd = report_dir(&out);
    let s = summary(&rd);
    assert_schema("summary.schema.json", &s);
    (out, s)
}

fn assert_checks_pass(s: &Value, out: &std::process::Output) {
    for c in s["checks"]["results"].as_array().expect("check results") {
        assert_eq!(
            c["passed"],
            true,
            "check {} failed: {c}\n{}",
            c["name"],
            text(out)
        );
    }
    assert!(out.status.success(), "{}", text(out));
}

#[test]
fn a_killed_node_and_a_nats_outage_lose_nothing_with_clients_hashing_themselves() {
    let Some(pg) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (out, s) = run(
        dir.path(),
        &format!(
            r#"
[cluster]
nodes = 2
store = "{pg}"
routing = "hash"

[[faults]]
at_secs = 3
kind = "kill_node"
node = 1
secs = 2

[[faults]]
at_secs = 8
kind = "nats_outage"
secs = 1.5
"#
        ),
    );
    assert_checks_pass(&s, &out);
    assert_eq!(s["target"]["kind"], "cluster");
    let c = &s["cluster"];
    assert_eq!(c["nodes"], 2);
    assert_eq!(c["routing"], "hash");
    assert_eq!(c["store"], "postgres");
    let nodes = c["per_node"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["incarnations"], 2, "n1 was started again: {c}");
    assert_eq!(nodes[1]["incarnations"], 1);
    for n in nodes {
        assert!(n["messages_stored"].as_u64().unwrap() > 0, "{n}");
    }
    assert!(
        c["deliveries_cross_node"].as_u64().unwrap() > 0,
        "users hashed over two nodes write to each other across them: {c}"
    );
    let faults = c["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{c}");
    assert_eq!(faults[0]["kind"], "kill_node");
    assert_eq!(faults[0]["node"], "n1");
    assert!(faults[0]["error"].is_null(), "{}", faults[0]);
    assert!(faults[0]["until_secs"].as_f64().unwrap() > faults[0]["at_secs"].as_f64().unwrap());
    assert!(
        faults[0]["devices_recovered"].as_u64().unwrap() > 0,
        "n1's devices came back on n2: {}",
        faults[0]
    );
    assert_eq!(faults[1]["kind"], "nats_outage");
    assert!(faults[1]["error"].is_null(), "{}", faults[1]);
    assert_eq!(s["calibration"]["nodes_measured"], 2);
    let rd = report_dir(&out);
    let md = std::fs::read_to_string(rd.join("summary.md")).unwrap();
    assert!(
        md.contains("## Cluster: 2 nodes over postgres, routing `hash`"),
        "{md}"
    );
    assert!(md.contains("kill_node n1"), "{md}");
    let png = std::fs::read(rd.join("plots").join("node_connections.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    for log in [
        "server-n1.log",
        "server-n1-2.log",
        "server-n2.log",
        "nats.log",
    ] {
        assert!(rd.join(log).exists(), "{log} is kept");
    }
}

#[test]
fn haproxy_routes_the_users_and_a_store_outage_loses_nothing() {
    let Some(pg) = services() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (out, s) = run(
        dir.path(),
        &format!(
            r#"
[cluster]
nodes = 2
store = "{pg}"
routing = "haproxy"

[[faults]]
at_secs = 4
kind = "store_outage"
secs = 2
"#
        ),
    );
    assert_checks_pass(&s, &out);
    let c = &s["cluster"];
    assert_eq!(c["routing"], "haproxy");
    let f = &c["faults"][0];
    assert_eq!(f["kind"], "store_outage");
    assert!(f["error"].is_null(), "{f}");
    let rd = report_dir(&out);
    let cfg = std::fs::read_to_string(rd.join("haproxy.cfg")).unwrap();
    assert!(cfg.contains("hash-type consistent") && cfg.contains("server n2 127.0.0.1:"));
    assert!(
        s["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("HAProxy")),
        "the report says which routing ran"
    );
}

#[test]
fn a_cluster_needs_a_shared_store_and_nats_outages_need_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_scenario(dir.path(), "[cluster]\nnodes = 2\n");
    let out = chat_sim(&["check", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.store") && err.contains("memory"),
        "{err}"
    );
    let path = tiny_scenario(
        dir.path(),
        "[[faults]]\nat_secs = 1\nkind = \"nats_outage\"\nsecs = 1\n",
    );
    let out = chat_sim(&["check", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("faults.0.kind") && err.contains("[cluster]"),
        "{err}"
    );
}
