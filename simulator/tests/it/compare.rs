//! `chat-sim compare`: one scenario against several stores, one report side by side; a
//! backend that cannot run is reported and the others still run.

use serde_json::Value;

use crate::support::*;

#[test]
fn compare_runs_each_store_and_reports_the_one_that_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = tiny_scenario(dir.path(), "");
    let out = chat_sim(&[
        "compare",
        scenario.to_str().unwrap(),
        "--stores",
        "memory,fjall,bogus://x",
        "--out",
        dir.path().to_str().unwrap(),
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("BACKEND FAILED: bogus") && l.contains("bogus://x")),
        "{}",
        text(&out)
    );
    let cmp = stdout
        .lines()
        .find_map(|l| l.strip_prefix("comparison: "))
        .map(|d| std::path::PathBuf::from(d.trim()))
        .unwrap_or_else(|| panic!("no comparison line:\n{}", text(&out)));
    assert!(
        cmp.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("compare-tiny-"),
        "{}",
        cmp.display()
    );

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(cmp.join("compare.json")).unwrap()).unwrap();
    let backends = json["backends"].as_array().unwrap();
    let labels: Vec<&str> = backends
        .iter()
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["memory", "fjall", "bogus"], "{json:#}");
    for b in &backends[..2] {
        assert_eq!(b["ran"], true, "{b:#}");
        assert!(b["delivered_per_sec"].as_f64().unwrap() > 0.0, "{b:#}");
        assert!(b["acknowledged_per_sec"].as_f64().unwrap() > 0.0, "{b:#}");
        assert!(b["send_to_sent_p99_ms"].as_f64().is_some(), "{b:#}");
        let run = cmp.join(b["run_dir"].as_str().unwrap());
        assert!(run.join("summary.md").is_file(), "{}", run.display());
    }
    assert!(
        backends[1]["bytes_per_message"].as_f64().unwrap() > 0.0,
        "{:#}",
        backends[1]
    );
    assert_eq!(backends[2]["ran"], false);
    assert!(
        backends[2]["error"].as_str().unwrap().contains("bogus"),
        "{:#}",
        backends[2]
    );
    assert_eq!(json["passed"], false);

    let md = std::fs::read_to_string(cmp.join("compare.md")).unwrap();
    assert!(md.contains("| figure | memory | fjall | bogus |"), "{md}");
    assert!(md.contains("delivered messages/s"), "{md}");
    assert!(md.contains("/summary.md)"), "{md}");
    let html = std::fs::read_to_string(cmp.join("compare.html")).unwrap();
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        3,
        "the three plots are embedded"
    );
    for png in ["throughput.png", "latency.png", "bytes_per_message.png"] {
        let bytes = std::fs::read(cmp.join("plots").join(png)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{png}");
    }
}

#[test]
fn compare_help_names_the_default_stores_and_scripts() {
    let out = chat_sim(&["compare", "--help"]);
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for s in [
        "postgres://chat:chat@127.0.0.1:5433/chat",
        "cql://127.0.0.1:9042/chat_compare",
        "scripts/postgres.sh",
        "scripts/cassandra.sh",
        "--stores",
    ] {
        assert!(help.contains(s), "compare --help lacks {s}:\n{help}");
    }
}
