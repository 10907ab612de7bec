//! One server killed with SIGKILL again and again under load (`[[faults]]` without
//! `[cluster]`): on the durable default every check and the anomaly table stay clean; on
//! the memory store, which keeps nothing across a kill, the same loop must be reported as
//! lost messages — the proof that the crash loop's checker fires.

use crate::support::*;

/// Three kills of the tiny scenario's one server, each back 0.5 s later.
const LOOP: &str = r#"
[[faults]]
at_secs = 1
kind = "kill_node"
node = 1
secs = 0.5
repeat = 3
every_secs = 1.5
"#;

/// Runs the tiny scenario with the crash loop on `store`.
fn crash_loop(store: &str) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{LOOP}\n[gates]\nmax_error_rate = 0.5\nmax_fault_recovery_ms = 20000\nchecks = \"all\"\n"
    );
    let text = TINY
        .replace("store = \"memory\"", &format!("store = {store:?}"))
        .replace("duration_secs = 4", "duration_secs = 7")
        .replace("drain_secs = 3", "drain_secs = 8")
        // The tiny scenario's own gates make way for the loop's.
        .split("[gates]")
        .next()
        .unwrap()
        .to_owned();
    let scenario = dir.path().join("loop.toml");
    std::fs::write(&scenario, format!("{text}\n{extra}")).unwrap();
    let out_dir = dir.path().join("reports");
    let out = chat_sim(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--quiet",
    ]);
    (out, dir)
}

fn anomaly(s: &serde_json::Value, kind: &str) -> u64 {
    s["checks"]["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind)
        .unwrap()["count"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_crash_loop_on_fjall_loses_nothing_acknowledged() {
    let (out, _dir) = crash_loop("fjall");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dir = report_dir(&out);
    let s = summary(&dir);
    assert_schema("summary.schema.json", &s);
    assert_eq!(s["target"]["kind"], "child");
    let c = &s["cluster"];
    assert_eq!(c["solo"], true, "{c}");
    let faults = c["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 3, "{faults:?}");
    for f in faults {
        assert_eq!(f["kind"], "kill_node");
        assert!(f["error"].is_null(), "{f}");
        assert!(f["until_secs"].as_f64().is_some(), "{f}");
    }
    // Three kills and the first start.
    assert_eq!(c["per_node"][0]["incarnations"], 4, "{c}");
    assert!(
        s["checks"]["messages_checked"].as_u64().unwrap() > 20,
        "{s}"
    );
    for a in s["checks"]["anomalies"].as_array().unwrap() {
        assert_eq!(a["count"], 0, "{a}");
    }
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        md.contains("One server over fjall, broken by faults"),
        "{md}"
    );
}

#[test]
fn a_crash_loop_on_the_memory_store_is_reported_as_lost_messages() {
    let (out, _dir) = crash_loop("memory");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let s = summary(&report_dir(&out));
    assert!(anomaly(&s, "lost") > 0, "{all}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("GATE FAILED: check exactly_once:")),
        "{all}"
    );
}

#[test]
fn faults_refuse_a_server_the_run_did_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = tiny_scenario(dir.path(), LOOP);
    let out = chat_sim(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        "--target",
        "http://127.0.0.1:9",
        "--jwt-secret",
        SECRET,
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("leave out --target"), "{}", text(&out));
}
