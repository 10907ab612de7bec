//! Tests of `render.rs`.

use crate::parts::Part;
use crate::render::*;
use crate::verdict::{Cmp, Row, Status};

fn rows() -> Vec<Row> {
    vec![
        Row {
            id: "1a",
            target: "fjall msgs/s per core ≥ 1.0× Centrifugo".into(),
            value: Some(0.4),
            cmp: Cmp::AtLeast,
            limit: 1.0,
            measured: "0.40× (9,000 vs 24,000 msgs/s)".into(),
            status: Status::NotMet,
            source: "peerbench sat | medians".into(),
        },
        Row {
            id: "6",
            target: "delay".into(),
            value: None,
            cmp: Cmp::AtMost,
            limit: 10.0,
            measured: "-".into(),
            status: Status::NotRun("no --peer-bench".into()),
            source: "smoke".into(),
        },
    ]
}

#[test]
fn text_table_columns_line_up_with_wide_characters() {
    let t = text(&rows());
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("target "));
    // The second `|` sits at the same character column on every table line.
    let col = |l: &str| l.chars().position(|c| c == '|').unwrap();
    assert_eq!(col(lines[0]), col(lines[2]));
    assert_eq!(col(lines[2]), col(lines[3]));
    assert!(lines[2].ends_with("| NOT met"), "{}", lines[2]);
    assert!(
        lines[3].ends_with("| not run (no --peer-bench)"),
        "{}",
        lines[3]
    );
    assert!(t.contains("  1a  peerbench sat | medians"));
}

#[test]
fn markdown_escapes_pipes_and_lists_parts() {
    let report = Report {
        started_at: "a".into(),
        finished_at: "b".into(),
        quick: true,
        peer_bench: None,
        host: Some(crate::host::load(2, 0.2, vec![("java".into(), 30)], 200.0)),
        parts: vec![PartRun {
            part: Part::Smoke,
            outcome: "ok".into(),
            secs: 31.4,
        }],
        rows: rows(),
    };
    let md = markdown(&report);
    assert!(md.contains("peerbench sat \\| medians"), "{md}");
    assert!(md.contains("| **NOT met** |"));
    assert!(md.contains("| smoke | ok | 31 |"));
    assert!(md.contains("--quick"));
    assert!(
        md.contains("**The host was busy before the run**: 0.20 of 2 cores in use by other processes (java 0.15)."),
        "{md}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rows"][0]["status"]["status"], "not_met");
    assert_eq!(json["rows"][1]["status"]["why"], "no --peer-bench");
    assert_eq!(json["parts"][0]["part"], "smoke");
}
