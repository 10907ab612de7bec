//! Tests of `figures.rs`.

use crate::figures::*;

const SUMMARY: &str = r#"{
    "scenario": "seed-node", "passed": false, "failures": ["GATE FAILED: p99"],
    "load": {"messages_per_sec": 463.2, "messages_acknowledged": 50000, "extra": 1},
    "latency_ms": {"send_to_delivery": {"count": 10, "min_ms": 0.1, "p50_ms": 1.5, "p99_ms": 9.0},
                   "history": null},
    "server": {"cpu_us_per_message": 340.0, "memory_bytes_per_connection": 7000.0,
               "connections_peak": 10000,
               "costs": {"cpu_us_per_message": 150.0, "cpu_fit_r2": 0.9,
                         "rss_bytes_per_connection": 6000.0, "rss_fit_r2": 0.99}},
    "simulator": {"cpu_secs": 10, "cpu_us_per_message": 120.0}
}"#;

#[test]
fn summary_figures() {
    let s = SimSummary::parse(SUMMARY).unwrap();
    assert_eq!(s.delivery().unwrap().p50_ms, 1.5);
    let server = s.server.as_ref().unwrap();
    assert_eq!(server.costs.unwrap().cpu_us_per_message, 150.0);
    assert_eq!(s.simulator.cpu_us_per_message, Some(120.0));
    assert_eq!(s.gates_note(), "; the run's gates failed: GATE FAILED: p99");
}

#[test]
fn a_summary_missing_a_section_names_it() {
    let e = SimSummary::parse(r#"{"scenario":"x","passed":true,"latency_ms":{}}"#).unwrap_err();
    assert!(e.contains("load"), "{e}");
}

const DELIVERY: &str = r#"{"pairs": 500, "stores": [{"store": "fjall", "phases": [
    {"kind": "closed", "rate": 0, "msgs_per_s": 9000, "send_to_delivery_ms": {"p99": 30.0},
     "server_cpu_us_per_msg": 101.0, "lost": 0, "violations": 0, "behind": 0, "timeline": []},
    {"kind": "open", "rate": 4500, "msgs_per_s": 4500, "send_to_delivery_ms": {"p99": 8.5},
     "server_cpu_us_per_msg": null, "lost": 0, "violations": 0, "behind": 0, "timeline": [
        {"second": 0, "in_window": false, "delivered": 4500, "over_mark": 9, "max_ms": 80.0},
        {"second": 1, "in_window": true, "delivered": 4500, "over_mark": 0, "max_ms": 12.0},
        {"second": 2, "in_window": true, "delivered": 4500, "over_mark": 1, "max_ms": 31.5},
        {"second": 3, "in_window": false, "delivered": 0, "over_mark": 0, "max_ms": 0.0}]}]}]}"#;

#[test]
fn delivery_worst_second_is_taken_inside_the_window() {
    let d = DeliveryFigures::parse(DELIVERY).unwrap();
    assert_eq!(d.rate, 4500.0);
    assert_eq!(d.p99_ms, Some(8.5));
    assert_eq!(d.worst_second, Some((2, 31.5)));
    assert_eq!(d.window_seconds, 2);
    assert_eq!(d.closed, Some((9000.0, Some(101.0))));
}

#[test]
fn delivery_without_fjall_or_an_open_phase_is_an_error() {
    assert!(
        DeliveryFigures::parse(r#"{"stores": []}"#)
            .unwrap_err()
            .contains("no fjall")
    );
    let closed_only = r#"{"stores": [{"store": "fjall", "phases": []}]}"#;
    assert!(
        DeliveryFigures::parse(closed_only)
            .unwrap_err()
            .contains("open")
    );
}
