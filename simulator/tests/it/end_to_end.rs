//! Whole runs against the server the simulator starts itself: the report's files, the
//! summary against its schema, the fields `chat-estimate --calibrate` reads, baselines
//! and worker processes.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

fn assert_valid(summary: &Value) {
    assert_schema("summary.schema.json", summary);
}

fn run_child(dir: &Path, extra: &str, more: &[&str]) -> std::process::Output {
    let scenario = tiny_scenario(dir, extra);
    let out_dir = dir.join("reports");
    let mut args = vec![
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(more);
    chat_sim(&args)
}

#[test]
fn a_run_against_its_own_server_writes_a_complete_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child(
        dir.path(),
        "[churn]\ndisconnects_per_device_per_day = 2\noffline_secs_min = 0.2\noffline_secs_max = 0.5\n",
        &[
            "--set",
            "server.store=fjall",
            "--set",
            "traffic.presence_pulls_per_user_per_day=10",
            "--set",
            "server.capacity_run=true",
            // Enough samples in the few seconds of load to fit the server's memory.
            "--set",
            "run.sample_interval_secs=0.25",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASSED"));
    let run = report_dir(&out);
    for f in [
        "summary.json",
        "summary.md",
        "report.html",
        "timeseries.csv",
        "goose-report.html",
        "server.log",
        "plots/latency_over_time.png",
        "plots/latency_distribution.png",
        "plots/throughput.png",
        "plots/connections.png",
        "plots/server_memory.png",
        "plots/storage_growth.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing in {}", run.display());
    }
    for png in std::fs::read_dir(run.join("plots")).unwrap() {
        let bytes = std::fs::read(png.unwrap().path()).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,"));
    assert!(
        !html.contains("src=\"plots/") && !html.contains("src=\"http"),
        "report.html must be self-contained"
    );
    let csv = std::fs::read_to_string(run.join("timeseries.csv")).unwrap();
    assert!(csv.starts_with("elapsed_s,connected_devices,"));
    assert!(csv.lines().count() > 5);

    let s = summary(&run);
    assert_valid(&s);
    assert_eq!(s["scenario"], "tiny");
    assert_eq!(s["target"]["kind"], "child");
    assert_eq!(s["checks"]["passed"], true);
    assert!(s["load"]["messages_acknowledged"].as_u64().unwrap() > 50);
    assert!(
        s["latency_ms"]["send_to_delivery"]["p99_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        s["load"]["counters"]["reconnects"].as_u64().unwrap() > 0,
        "churn reconnected devices"
    );
    assert!(s["server"]["rss_bytes_peak"].as_u64().unwrap() > 0);
    assert!(
        s["storage"]["bytes_per_message"].as_f64().unwrap() > 0.0,
        "fjall reports its disk"
    );

    // What chat-estimate --calibrate reads, through the estimation crate itself.
    let json = std::fs::read_to_string(run.join("summary.json")).unwrap();
    let cal =
        estimation::Summary::from_json_str(&json).expect("chat-estimate can read the summary");
    assert_eq!(cal.scenario.as_deref(), Some("tiny"));
    assert!(cal.calibration.bytes_per_message_on_disk.is_some());
    assert!(cal.calibration.messages_per_sec_per_node.is_some());
    assert!(cal.calibration.connections_per_node.is_some());
    assert!(cal.calibration.memory_bytes_per_connection.is_some());
    // fjall reports its memtables: the node's own memory is told apart from the
    // connections', and the plan counts both.
    let node = &s["server"]["node_memory"];
    assert!(node["tables_peak_bytes"].as_u64().unwrap() > 0, "{node}");
    assert_eq!(
        cal.calibration.memory_bytes_per_node,
        node["node_bytes"].as_f64()
    );
    assert_eq!(
        cal.calibration.memory_bytes_per_connection,
        node["bytes_per_connection"].as_f64()
    );
    assert_eq!(cal.calibration.gates_passed, Some(true));
    let plan = estimation::calibrate(&estimation::Inputs::source_design(), &cal).unwrap();
    assert_eq!(
        s["capacity_plan"]["measured"]["servers"].as_u64(),
        Some(plan.measured.servers)
    );

    // The same run as a baseline for the next: no regression at a huge tolerance.
    let base = run.join("summary.json");
    let out2 = run_child(
        dir.path(),
        "",
        &[
            "--baseline",
            base.to_str().unwrap(),
            "--set",
            "gates.baseline_tolerance=1000",
        ],
    );
    assert_eq!(out2.status.code(), Some(0), "{}", text(&out2));
    let s2 = summary(&report_dir(&out2));
    assert_valid(&s2);
    assert!(!s2["baseline"]["results"].as_array().unwrap().is_empty());
}

#[test]
fn workers_split_the_users_and_merge_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child(
        dir.path(),
        "",
        &["--set", "run.workers=2", "--set", "population.scale=0.012"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = report_dir(&out);
    let s = summary(&run);
    assert_valid(&s);
    assert_eq!(s["host"]["load_processes"], 2);
    assert_eq!(s["checks"]["passed"], true);
    assert!(run.join("goose-report-worker-0.html").is_file());
    assert!(run.join("goose-report-worker-1.html").is_file());
    // Every acknowledged message was checked, across both workers.
    assert_eq!(
        s["checks"]["messages_checked"].as_u64(),
        s["load"]["messages_acknowledged"].as_u64()
    );
    let hist = s["latency_ms"]["send_to_sent"]["count"].as_u64().unwrap();
    assert_eq!(Some(hist), s["load"]["messages_acknowledged"].as_u64());
    // The simulator's own lateness before a send: only sends its pacer woke it for, so
    // some and at most every one written, and far below the latencies it is part of.
    let late = &s["latency_ms"]["send_lateness"];
    let paced = late["count"].as_u64().unwrap();
    assert!(
        paced > 0 && paced <= s["load"]["sends_written"].as_u64().unwrap(),
        "{late}"
    );
    assert!(
        late["p50_ms"].as_f64().unwrap()
            < s["latency_ms"]["send_to_sent"]["p50_ms"].as_f64().unwrap(),
        "{late}"
    );
}

#[test]
fn a_failed_gate_exits_non_zero_with_one_line_per_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child(
        dir.path(),
        "",
        &[
            "--set",
            "gates.p50_send_to_sent_ms=0.000001",
            "--set",
            "gates.min_sent_ratio=1.0",
            "--set",
            "run.duration_secs=2",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("GATE FAILED: "))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GATE FAILED: p50_send_to_sent_ms")),
        "{stdout}"
    );
    let s = summary(&report_dir(&out));
    assert_eq!(s["passed"], false);
    assert_eq!(s["failures"].as_array().unwrap().len(), lines.len());
    assert_eq!(s["calibration"]["gates_passed"], false);
    // Not a capacity run: what it offered must not pass for a node's capacity.
    assert!(
        s["calibration"]["messages_per_sec_per_node"].is_null(),
        "{s}"
    );
    assert!(s["calibration"]["connections_per_node"].is_null(), "{s}");
}
