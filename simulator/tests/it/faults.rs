//! Proof the checks are honest: a proxy between the simulator and a correct server breaks
//! the protocol in one way at a time, and the run must fail naming the check that caught
//! it. A clean run through the same proxy passes.

use crate::support::*;

/// Runs the tiny scenario through a proxy with `fault`; returns the output.
fn run_through(fault: Fault, extra: &str) -> (std::process::Output, tempfile::TempDir) {
    let server = Server::start();
    let proxy = FaultProxy::start(server.addr, fault);
    wait_up(&proxy.url());
    let dir = tempfile::tempdir().unwrap();
    let scenario = tiny_scenario(dir.path(), extra);
    let out_dir = dir.path().join("reports");
    let out = chat_sim(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--target",
        &proxy.url(),
        "--jwt-secret",
        SECRET,
        "--quiet",
    ]);
    (out, dir)
}

/// The run must exit 1 and print a failure line for `check`, and the report's anomaly
/// table must count `anomaly`.
fn assert_caught(fault: Fault, check: &str, anomaly: &str) {
    let (out, _dir) = run_through(fault, "");
    let all = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{fault:?} must fail the run:\n{all}"
    );
    let needle = format!("GATE FAILED: check {check}:");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with(&needle)),
        "{fault:?} must be reported by the {check} check:\n{all}"
    );
    let dir = report_dir(&out);
    let s = summary(&dir);
    assert_eq!(s["passed"], false);
    let faults = s["checks"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == check)
        .unwrap()["faults"]
        .as_u64()
        .unwrap();
    assert!(faults > 0, "{fault:?}: {check} counted no fault");
    let anomalies = s["checks"]["anomalies"].as_array().unwrap();
    let count = |kind: &str| {
        anomalies.iter().find(|a| a["kind"] == kind).unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    assert!(
        count(anomaly) > 0,
        "{fault:?}: no {anomaly} anomaly in {anomalies:?}"
    );
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("## Anomalies"), "{md}");
}

#[test]
fn a_clean_run_through_the_proxy_passes() {
    let (out, _dir) = run_through(Fault::None, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = summary(&report_dir(&out));
    assert_eq!(s["passed"], true);
    assert_eq!(s["checks"]["passed"], true);
    assert!(
        s["checks"]["messages_checked"].as_u64().unwrap() > 50,
        "{s}"
    );
    // Every kind of anomaly is listed, each at zero.
    let anomalies = s["checks"]["anomalies"].as_array().unwrap();
    assert!(anomalies.len() >= 5, "{anomalies:?}");
    for a in anomalies {
        assert_eq!(a["count"], 0, "{a}");
    }
    assert_eq!(s["target"]["kind"], "external");
}

#[test]
fn a_lost_stored_message_is_caught() {
    assert_caught(Fault::Lose(25), "exactly_once", "lost");
}

#[test]
fn a_duplicated_frame_is_caught() {
    assert_caught(Fault::Duplicate(25), "exactly_once", "duplicated");
}

#[test]
fn reordered_frames_are_caught() {
    assert_caught(Fault::Reorder(25), "order", "reordered");
}

#[test]
fn a_renumbered_seq_is_caught() {
    assert_caught(Fault::Renumber(25), "consistency", "divergent");
}

#[test]
fn a_phantom_message_is_caught() {
    assert_caught(Fault::Phantom(25), "no_phantoms", "phantom");
}

#[test]
fn a_stale_history_read_is_caught() {
    assert_caught(Fault::StaleHistory(5), "consistency", "stale read");
}

#[test]
fn a_server_without_groups_fails_a_scenario_that_requires_them() {
    let (out, _dir) = run_through(
        Fault::NoGroups,
        "[groups]\nshare = 0.3\nmin_size = 3\nmax_size = 4\nrequired = true\n",
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("GATE FAILED: groups:"), "{all}");
    let s = summary(&report_dir(&out));
    assert!(
        s["features"]["groups"]
            .as_str()
            .unwrap()
            .starts_with("not exercised"),
        "{s}"
    );
    // The group share went to direct messages; those were still checked.
    assert_eq!(s["checks"]["passed"], true);
}
