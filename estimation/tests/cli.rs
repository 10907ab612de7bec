//! Runs the real `chat-estimate` binary: defaults, `--json` fields, flags,
//! `--calibrate` with a summary file, and bad input.

use std::io::Write;
use std::process::{Command, Output};

use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chat-estimate"))
        .args(args)
        .output()
        .expect("chat-estimate runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 errors")
}

fn json(args: &[&str]) -> Value {
    let output = run(args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        stderr(&output)
    );
    serde_json::from_str(&stdout(&output)).expect("valid JSON")
}

/// Runs with `args`, expects failure, and returns the error text.
fn failure(args: &[&str]) -> String {
    let output = run(args);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(
        output.stdout.is_empty(),
        "{args:?} printed to stdout on failure"
    );
    let message = stderr(&output);
    assert!(
        !message.contains("panicked"),
        "{args:?} panicked: {message}"
    );
    message
}

fn summary_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write summary");
    file
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("UTF-8 temp path")
}

#[test]
fn json_defaults_reproduce_the_source_design() {
    let plan = json(&["--json"]);
    assert_eq!(plan["messages_per_day"], 20e9);
    assert_eq!(plan["messages_per_sec_avg"], 2e10 / 86_400.0);
    assert_eq!(plan["messages_per_sec_peak"], 2e10 / 86_400.0);
    assert_eq!(plan["storage_bytes_per_day"], 2e12);
    assert_eq!(plan["storage_bytes_total"], 3.65e15);
    assert_eq!(plan["bandwidth_in_bytes_per_sec"], 2e12 / 86_400.0);
    assert_eq!(plan["bandwidth_out_bytes_per_sec"], 2e12 / 86_400.0);
    assert_eq!(plan["servers"], 10_000);
    assert_eq!(plan["servers_bound_by"], "connections");
    assert_eq!(plan["servers_by_message_rate"], Value::Null);
    assert_eq!(plan["shards"], 913);
    assert_eq!(plan["db_servers"], 913);
    assert!(plan["units"].as_str().unwrap().contains("1 TB = 10^12 B"));
    assert_eq!(plan["inputs"]["daily_active_users"], 500_000_000);
    assert_eq!(plan["inputs"]["shard_size_bytes"], 4e12);
    assert_eq!(
        plan["source_document"]["storage_bytes_total"]["stated"],
        "3.6 PB"
    );
    assert_eq!(
        plan["source_document"]["bandwidth_in_bytes_per_sec"]["stated"],
        "25 MB/s"
    );
}

#[test]
fn table_defaults_show_figures_units_and_rounding() {
    let output = run(&[]);
    assert!(output.status.success());
    let table = stdout(&output);
    for expected in [
        "source design",
        "1 TB = 10^12 B",
        "20 billion",
        "2 TB",
        "3.65 PB",
        "3.6 PB (rounded down from 3.65 PB)",
        "23.1 MB/s",
        "25 MB/s (rounded up from 23.1 MB/s)",
        "10,000 (bound by connections)",
        "913",
        "900, then 1 K",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in\n{table}");
    }
}

#[test]
fn every_input_has_a_flag() {
    let plan = json(&[
        "--json",
        "--dau",
        "1B",
        "--messages-per-user-per-day",
        "20",
        "--message-size",
        "200B",
        "--retention-years",
        "2",
        "--connections-per-server",
        "100K",
        "--concurrent-fraction",
        "0.5",
        "--messages-per-sec-per-server",
        "100",
        "--memory-per-connection",
        "10kB",
        "--shard-size",
        "2TB",
        "--db-server-capacity",
        "8TB",
        "--replication-factor",
        "3",
        "--storage-overhead",
        "1.5",
        "--peak-to-average",
        "2",
        "--fan-out",
        "4",
    ]);
    let inputs = &plan["inputs"];
    assert_eq!(inputs["daily_active_users"], 1_000_000_000);
    assert_eq!(inputs["message_size_bytes"], 200.0);
    assert_eq!(inputs["db_server_capacity_bytes"], 8e12);
    assert_eq!(plan["messages_per_day"], 2e10);
    assert_eq!(plan["storage_bytes_per_day"], 4e12);
    assert_eq!(plan["storage_bytes_total"], 4e12 * 730.0);
    assert_eq!(plan["storage_bytes_total_provisioned"], 4e12 * 730.0 * 4.5);
    assert_eq!(plan["bandwidth_out_bytes_per_sec"], 4e12 / 86_400.0 * 4.0);
    assert_eq!(plan["messages_per_sec_peak"], 2e10 / 86_400.0 * 2.0);
    // 500 M connections / 100 K = 5,000; 462,963 msg/s / 100 = 4,630.
    assert_eq!(plan["servers_by_connections"], 5_000);
    assert_eq!(plan["servers_by_message_rate"], 4_630);
    assert_eq!(plan["servers"], 5_000);
    assert_eq!(plan["memory_bytes_per_server"], 1e9);
    // 2.92 PB × 1.5 / 2 TB = 2,190 shards; × 3 copies, 4 per server.
    assert_eq!(plan["shards"], 2_190);
    assert_eq!(plan["db_servers"], 1_643);
}

#[test]
fn calibrate_prints_the_measured_plan_beside_the_document() {
    let summary = summary_file(
        r#"{
            "scenario": "steady-1k",
            "latency_ms": {"p50": 3.1, "p99": 41.0},
            "runs": [1, 2, 3],
            "calibration": {
                "version": 1,
                "settled_bytes_per_message": 250.0,
                "messages_per_sec_per_node": 20000.0,
                "connections_per_node": 25000,
                "memory_bytes_per_connection": 40000.0,
                "memory_bytes_per_node": 300000000.0,
                "gates_passed": true,
                "notes": "ignored"
            }
        }"#,
    );
    let result = json(&["--calibrate", path(&summary), "--json"]);
    assert_eq!(result["scenario"], "steady-1k");
    assert_eq!(result["gates_passed"], true);
    assert_eq!(result["assumed"]["servers"], 10_000);
    assert_eq!(result["measured"]["servers"], 20_000);
    assert_eq!(result["measured"]["servers_by_message_rate"], 12);
    assert_eq!(result["ratios"]["servers"], 2.0);
    assert_eq!(result["ratios"]["storage_bytes_total_provisioned"], 2.5);
    assert_eq!(result["ratios"]["bandwidth_in_bytes_per_sec"], 1.0);
    assert_eq!(
        result["measured"]["memory_bytes_per_server"],
        300e6 + 25_000.0 * 40e3
    );
    assert_eq!(result["warnings"].as_array().unwrap().len(), 0);
    for key in ["messages_per_day", "storage_bytes_total", "shards"] {
        assert!(
            result["measured"].get(key).is_some(),
            "measured plan lacks {key}"
        );
    }

    let output = run(&["--calibrate", path(&summary)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    for expected in [
        "steady-1k",
        "latency gates passed",
        "source document",
        "measured",
        "ratio",
        "×2.00",
        "250 B",
        "25,000",
        "1 TB = 10^12 B",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in\n{table}");
    }
}

#[test]
fn calibrate_reads_a_capacity_search_and_says_when_its_figures_are_lower_bounds() {
    // A `chat-sim capacity` report: more around the calibration, which is what is read.
    let capacity = summary_file(
        r#"{"schema_version": 1, "scenario": "seed-node", "searches": [{"grow": "users"}],
            "calibration": {"version": 1, "settled_bytes_per_message": 134.0,
            "idempotency_bytes_per_message": 18.6, "idempotency_window_secs": 86400,
            "messages_per_sec_per_node": 2000.0, "connections_per_node": 19000,
            "memory_bytes_per_connection": 17000.0, "gates_passed": true,
            "capacity_limited_by": "open_files", "node_cpus": 2, "cpu_us_per_message": 250.0}}"#,
    );
    let output = run(&["--calibrate", path(&capacity)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(table.contains("lower bounds"), "{table}");
    assert!(table.contains("open-file cap"), "{table}");
    assert!(table.contains("2 CPU(s)"), "{table}");
    let result = json(&["--calibrate", path(&capacity), "--json"]);
    // 500 M connections ÷ 19,000 per node.
    assert_eq!(result["measured"]["servers_by_connections"], 26_316);
    let bad = summary_file(r#"{"calibration": {"capacity_limited_by": "disk"}}"#);
    assert!(failure(&["--calibrate", path(&bad)]).contains("capacity_limited_by"));
}

#[test]
fn calibrate_with_unmeasured_fields_keeps_assumptions_and_says_so() {
    let summary = summary_file(
        r#"{"calibration": {"connections_per_node": 5000, "bytes_per_message_on_disk": null}}"#,
    );
    let output = run(&["--calibrate", path(&summary)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(table.contains("not measured: assumption kept"), "{table}");
    assert!(
        table.contains("bytes on disk per message (settled) was not measured"),
        "{table}"
    );
    assert!(table.contains("latency gates not reported"), "{table}");
    let result = json(&["--calibrate", path(&summary), "--json"]);
    assert_eq!(result["measured"]["servers"], 100_000);
    assert_eq!(result["ratios"]["storage_bytes_total"], 1.0);
}

#[test]
fn bad_flags_fail_with_clear_messages() {
    let cases: [(&[&str], &str); 8] = [
        (&["--dau", "0"], "daily active users must be at least 1"),
        (&["--dau", "2.5"], "not a whole number"),
        (&["--message-size", "-5"], "negative"),
        (&["--shard-size", "4 parsecs"], "unknown unit"),
        (
            &["--concurrent-fraction", "2"],
            "concurrent fraction must be",
        ),
        (
            &["--peak-to-average", "0.5"],
            "peak-to-average ratio must be",
        ),
        (
            &["--replication-factor", "0"],
            "replication factor must be at least 1",
        ),
        (&["--db-server-capacity", "1TB"], "at least the shard size"),
    ];
    for (args, expected) in cases {
        let message = failure(args);
        assert!(
            message.contains(expected),
            "{args:?}: {message:?} lacks {expected:?}"
        );
    }
}

#[test]
fn bad_summaries_fail_with_clear_messages() {
    let missing = failure(&["--calibrate", "/nonexistent/dir/summary.json"]);
    assert!(
        missing.contains("/nonexistent/dir/summary.json"),
        "{missing}"
    );
    assert!(missing.contains("cannot read"), "{missing}");

    let cases = [
        ("{not json", "not valid JSON"),
        (r#"{"scenario": "x"}"#, "no \"calibration\" object"),
        (
            r#"{"calibration": {"connections_per_node": -5}}"#,
            "calibration.connections_per_node must be a positive whole number",
        ),
        (
            r#"{"calibration": {"bytes_per_message_on_disk": 0}}"#,
            "calibration.bytes_per_message_on_disk must be a positive number",
        ),
        (
            r#"{"calibration": {"version": 9}}"#,
            "version 9 is not supported",
        ),
    ];
    for (text, expected) in cases {
        let summary = summary_file(text);
        let message = failure(&["--calibrate", path(&summary)]);
        assert!(
            message.contains(expected),
            "{text}: {message:?} lacks {expected:?}"
        );
        assert!(
            message.contains(path(&summary)),
            "{message:?} lacks the path"
        );
    }
}

#[test]
fn help_lists_every_flag() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    for flag in [
        "--daily-active-users",
        "--messages-per-user-per-day",
        "--message-size",
        "--retention-years",
        "--connections-per-server",
        "--concurrent-fraction",
        "--messages-per-sec-per-server",
        "--memory-per-connection",
        "--shard-size",
        "--db-server-capacity",
        "--replication-factor",
        "--storage-overhead",
        "--peak-to-average",
        "--fan-out",
        "--json",
        "--calibrate",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
