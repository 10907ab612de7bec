//! The command line: help that explains the knobs, clear errors for bad input.

use crate::support::*;

#[test]
fn help_explains_the_scenario_knobs() {
    for args in [&["--help"][..], &["run", "--help"], &["check", "--help"]] {
        let out = chat_sim(args);
        assert!(out.status.success(), "{}", text(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        for knob in [
            "daily_active_users",
            "day_seconds",
            "crossing_share",
            "storms",
            "p99_send_to_delivery_ms",
            "--set",
        ] {
            assert!(help.contains(knob), "{args:?} help lacks {knob}:\n{help}");
        }
    }
    let run = chat_sim(&["run", "--help"]);
    let help = String::from_utf8_lossy(&run.stdout);
    for flag in ["--out", "--target", "--jwt-secret", "--baseline", "--set"] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
}

#[test]
fn check_describes_a_scenario() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/smoke.toml");
    let out = chat_sim(&["check", root, "--set", "population.scale=4e-7"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("200 users"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_scenarios_are_clear_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[traffic]\nday_seconds = -1\n").unwrap();
    let out = chat_sim(&[
        "run",
        bad.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        err.contains("bad.toml") && err.contains("traffic.day_seconds"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let good = tiny_scenario(dir.path(), "");
    let out = chat_sim(&["run", good.to_str().unwrap(), "--set", "run.no_such_knob=1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        err.contains("--set run.no_such_knob=1") && err.contains("no_such_knob"),
        "{err}"
    );

    let out = chat_sim(&["run", "/nonexistent/x.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));

    let out = chat_sim(&[
        "run",
        good.to_str().unwrap(),
        "--target",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
