//! Gates: the scenario's thresholds, every check it gates on, and regressions against a
//! baseline `summary.json`. Each failure becomes one `GATE FAILED: …` line, and any failure
//! makes the run exit non-zero, so CI can gate on it.

use std::path::PathBuf;

use serde_json::Value;

use crate::report;
use crate::report::json::{BaselineInfo, GateResult, Summary};
use crate::scenario::Scenario;

/// Differences smaller than this many milliseconds are never a latency regression:
/// sub-millisecond jitter is not a finding.
pub const LATENCY_FLOOR_MS: f64 = 1.0;

fn latency(
    s: &Summary,
    key: &str,
    pick: fn(&crate::metrics::LatencySummary) -> f64,
) -> Option<f64> {
    s.latency_ms.get(key).copied().flatten().map(|l| pick(&l))
}

fn at_most(name: &str, what: &str, value: Option<f64>, max: f64, unit: &str) -> GateResult {
    match value {
        Some(v) if v <= max => GateResult {
            name: name.into(),
            threshold: Some(max),
            value: Some(v),
            passed: true,
            detail: format!("{what}: {v:.3}{unit} ≤ {max}{unit}"),
        },
        Some(v) => GateResult {
            name: name.into(),
            threshold: Some(max),
            value: Some(v),
            passed: false,
            detail: format!("GATE FAILED: {name}: {what} is {v:.3}{unit}, above {max}{unit}"),
        },
        None => GateResult {
            name: name.into(),
            threshold: Some(max),
            value: None,
            passed: false,
            detail: format!("GATE FAILED: {name}: {what} was not measured in this run"),
        },
    }
}

fn at_least(name: &str, what: &str, value: Option<f64>, min: f64) -> GateResult {
    match value {
        Some(v) if v >= min => GateResult {
            name: name.into(),
            threshold: Some(min),
            value: Some(v),
            passed: true,
            detail: format!("{what}: {v:.4} ≥ {min}"),
        },
        Some(v) => GateResult {
            name: name.into(),
            threshold: Some(min),
            value: Some(v),
            passed: false,
            detail: format!("GATE FAILED: {name}: {what} is {v:.4}, below {min}"),
        },
        None => GateResult {
            name: name.into(),
            threshold: Some(min),
            value: None,
            passed: false,
            detail: format!("GATE FAILED: {name}: {what} was not measured in this run"),
        },
    }
}

/// The scenario's gates against a run.
pub fn evaluate(scenario: &Scenario, s: &Summary) -> Vec<GateResult> {
    let g = &scenario.gates;
    let mut out = Vec::new();
    let lat = [
        (
            "p50_send_to_sent_ms",
            "p50 send → sent",
            g.p50_send_to_sent_ms,
            "send_to_sent",
            50,
        ),
        (
            "p99_send_to_sent_ms",
            "p99 send → sent",
            g.p99_send_to_sent_ms,
            "send_to_sent",
            99,
        ),
        (
            "p50_send_to_delivery_ms",
            "p50 send → delivery",
            g.p50_send_to_delivery_ms,
            "send_to_delivery",
            50,
        ),
        (
            "p99_send_to_delivery_ms",
            "p99 send → delivery",
            g.p99_send_to_delivery_ms,
            "send_to_delivery",
            99,
        ),
        (
            "p999_send_to_delivery_ms",
            "p99.9 send → delivery",
            g.p999_send_to_delivery_ms,
            "send_to_delivery",
            999,
        ),
        (
            "p99_send_to_delivered_ms",
            "p99 send → delivered receipt",
            g.p99_send_to_delivered_ms,
            "send_to_delivered",
            99,
        ),
        (
            "p99_history_ms",
            "p99 history page",
            g.p99_history_ms,
            "history_page",
            99,
        ),
        (
            "p99_reconnect_ms",
            "p99 reconnect → caught up",
            g.p99_reconnect_ms,
            "reconnect_to_caught_up",
            99,
        ),
    ];
    for (name, what, max, key, q) in lat {
        let Some(max) = max else { continue };
        let pick: fn(&crate::metrics::LatencySummary) -> f64 = match q {
            50 => |l| l.p50_ms,
            99 => |l| l.p99_ms,
            _ => |l| l.p999_ms,
        };
        out.push(at_most(name, what, latency(s, key, pick), max, " ms"));
    }
    if let Some(max) = g.max_error_rate {
        out.push(at_most(
            "max_error_rate",
            "error rate",
            Some(s.load.error_rate),
            max,
            "",
        ));
    }
    if let Some(min) = g.min_sent_ratio {
        out.push(at_least(
            "min_sent_ratio",
            "acknowledged / intended sends",
            s.load.sent_ratio,
            min,
        ));
    }
    if let Some(max) = g.max_bytes_per_message {
        out.push(at_most(
            "max_bytes_per_message",
            "bytes on disk per message",
            s.storage.bytes_per_message,
            max,
            " B",
        ));
    }
    if let Some(max) = g.max_server_cpu_percent {
        out.push(at_most(
            "max_server_cpu_percent",
            "server CPU, mean over the load",
            s.server.as_ref().map(|x| x.cpu_percent_mean),
            max,
            " %",
        ));
    }
    if let Some(max) = g.max_server_rss_mib {
        out.push(at_most(
            "max_server_rss_mib",
            "server resident memory at its peak",
            s.server
                .as_ref()
                .map(|x| x.rss_bytes_peak as f64 / (1024.0 * 1024.0)),
            max,
            " MiB",
        ));
    }
    let trend = s.server.as_ref().and_then(|x| x.trend.as_ref());
    for (name, what, max, value, unit) in [
        (
            "max_rss_growth_mib_per_min",
            "server memory growth over the steady load",
            g.max_rss_growth_mib_per_min,
            trend.map(|t| t.rss_mib_per_min),
            " MiB/min",
        ),
        (
            "max_fds_growth_per_min",
            "server open files growth over the steady load",
            g.max_fds_growth_per_min,
            trend.map(|t| t.open_fds_per_min),
            " /min",
        ),
        (
            "max_tasks_growth_per_min",
            "server runtime tasks growth over the steady load",
            g.max_tasks_growth_per_min,
            trend.and_then(|t| t.tasks_per_min),
            " /min",
        ),
    ] {
        if let Some(max) = max {
            out.push(at_most(name, what, value, max, unit));
        }
    }
    if let Some(max) = g.max_fault_recovery_ms {
        // The slowest recovery of any fault: the run's faults must all have been caught
        // up within the bound (a run without faults has nothing to measure).
        let worst = s
            .cluster
            .as_ref()
            .filter(|c| !c.faults.is_empty())
            .map(|c| {
                c.faults
                    .iter()
                    .filter_map(|f| f.recovery_max_ms)
                    .fold(0.0, f64::max)
            });
        out.push(at_most(
            "max_fault_recovery_ms",
            "slowest drop → caught up around a fault",
            worst,
            max,
            " ms",
        ));
        if let Some(c) = &s.cluster {
            for f in c.faults.iter().filter(|f| f.event.error.is_some()) {
                out.push(GateResult {
                    name: format!("fault {}", f.event.kind),
                    threshold: None,
                    value: None,
                    passed: false,
                    detail: format!(
                        "GATE FAILED: fault {} could not be done or undone: {}",
                        f.event.kind,
                        f.event.error.as_deref().unwrap_or("")
                    ),
                });
            }
        }
    }
    for c in &s.checks.results {
        if !c.gated {
            continue;
        }
        let detail = if c.passed {
            format!("check {}: passed", c.name)
        } else {
            let example = c
                .examples
                .first()
                .map(|e| format!(", e.g. {e}"))
                .unwrap_or_default();
            format!(
                "GATE FAILED: check {}: {} fault(s){example}",
                c.name, c.faults
            )
        };
        out.push(GateResult {
            name: format!("check {}", c.name),
            threshold: Some(0.0),
            value: Some(c.faults as f64),
            passed: c.passed,
            detail,
        });
    }
    if scenario.groups.required && scenario.groups.share > 0.0 {
        let ok = s.features.groups == "exercised";
        out.push(GateResult {
            name: "groups".into(),
            threshold: None,
            value: None,
            passed: ok,
            detail: if ok {
                "groups: exercised".into()
            } else {
                format!(
                    "GATE FAILED: groups: the scenario requires group messages but they were {}",
                    s.features.groups
                )
            },
        });
    }
    out
}

/// Whether a higher or a lower value is better.
#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

/// Key figures compared with a baseline: (name, JSON pointer, better, is latency).
const BASELINE_FIGURES: [(&str, &str, Better, bool); 8] = [
    (
        "p99 send → sent",
        "/latency_ms/send_to_sent/p99_ms",
        Better::Lower,
        true,
    ),
    (
        "p99 send → delivery",
        "/latency_ms/send_to_delivery/p99_ms",
        Better::Lower,
        true,
    ),
    (
        "p50 send → delivery",
        "/latency_ms/send_to_delivery/p50_ms",
        Better::Lower,
        true,
    ),
    (
        "p99 history page",
        "/latency_ms/history_page/p99_ms",
        Better::Lower,
        true,
    ),
    (
        "p99 reconnect → caught up",
        "/latency_ms/reconnect_to_caught_up/p99_ms",
        Better::Lower,
        true,
    ),
    (
        "messages per second",
        "/load/messages_per_sec",
        Better::Higher,
        false,
    ),
    (
        "bytes on disk per message",
        "/storage/bytes_per_message",
        Better::Lower,
        false,
    ),
    (
        "memory per connection",
        "/server/memory_bytes_per_connection",
        Better::Lower,
        false,
    ),
];

/// Regressions of `current` against `baseline` beyond `tolerance` (0.2 = 20 %). Figures
/// missing from either side are skipped; the error rate may not rise by more than 0.001
/// absolute, and a baseline whose checks passed demands passing checks.
pub fn compare_baseline(current: &Value, baseline: &Value, tolerance: f64) -> Vec<GateResult> {
    let mut out = Vec::new();
    for (name, pointer, better, is_latency) in BASELINE_FIGURES {
        let (Some(now), Some(then)) = (
            current.pointer(pointer).and_then(Value::as_f64),
            baseline.pointer(pointer).and_then(Value::as_f64),
        ) else {
            continue;
        };
        let change = if then != 0.0 {
            (now - then) / then
        } else {
            0.0
        };
        let worse = match better {
            Better::Lower => change > tolerance && !(is_latency && now - then < LATENCY_FLOOR_MS),
            Better::Higher => change < -tolerance,
        };
        let detail = format!(
            "{name}: {now:.3} now, {then:.3} in the baseline ({:+.1} %, tolerance {:.0} %)",
            change * 100.0,
            tolerance * 100.0
        );
        out.push(GateResult {
            name: format!("baseline {name}"),
            threshold: Some(tolerance),
            value: Some(change),
            passed: !worse,
            detail: if worse {
                format!("GATE FAILED: baseline regression: {detail}")
            } else {
                detail
            },
        });
    }
    if let (Some(now), Some(then)) = (
        current.pointer("/load/error_rate").and_then(Value::as_f64),
        baseline.pointer("/load/error_rate").and_then(Value::as_f64),
    ) {
        let worse = now > then + 0.001;
        let detail = format!("error rate: {now:.4} now, {then:.4} in the baseline");
        out.push(GateResult {
            name: "baseline error rate".into(),
            threshold: Some(0.001),
            value: Some(now - then),
            passed: !worse,
            detail: if worse {
                format!("GATE FAILED: baseline regression: {detail}")
            } else {
                detail
            },
        });
    }
    if baseline.pointer("/checks/passed") == Some(&Value::Bool(true))
        && current.pointer("/checks/passed") == Some(&Value::Bool(false))
    {
        out.push(GateResult {
            name: "baseline checks".into(),
            threshold: None,
            value: None,
            passed: false,
            detail: "GATE FAILED: baseline regression: the baseline passed every check, this run did not".into(),
        });
    }
    out
}

/// Gives a built summary its verdict: the scenario's gates, then the calibration and
/// capacity plan (which record whether the gates passed), then the regressions against
/// the baseline (which compare the whole summary, plan included), and the failure lines.
pub fn judge(s: &Scenario, summary: &mut Summary, baseline: Option<&(PathBuf, Value)>) {
    let mut gate_results = evaluate(s, summary);
    let gates_passed = gate_results.iter().all(|g| g.passed);
    report::plan(summary, s, gates_passed);
    if let Some((path, base)) = baseline {
        let current = serde_json::to_value(&*summary).unwrap_or_default();
        let results = compare_baseline(&current, base, s.gates.baseline_tolerance);
        gate_results.extend(results.iter().cloned());
        summary.baseline = Some(BaselineInfo {
            path: path.display().to_string(),
            tolerance: s.gates.baseline_tolerance,
            results,
        });
    }
    summary.failures = gate_results
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.detail.clone())
        .collect();
    summary.passed = summary.failures.is_empty();
    summary.gates = gate_results;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn baseline_regressions_fail_and_improvements_pass() {
        let base = json!({
            "latency_ms": {"send_to_delivery": {"p99_ms": 10.0, "p50_ms": 2.0}},
            "load": {"messages_per_sec": 1000.0, "error_rate": 0.0},
            "storage": {"bytes_per_message": 200.0},
            "checks": {"passed": true}
        });
        let worse = json!({
            "latency_ms": {"send_to_delivery": {"p99_ms": 20.0, "p50_ms": 2.5}},
            "load": {"messages_per_sec": 700.0, "error_rate": 0.01},
            "storage": {"bytes_per_message": 210.0},
            "checks": {"passed": false}
        });
        let r = compare_baseline(&worse, &base, 0.2);
        let failed: Vec<&str> = r
            .iter()
            .filter(|g| !g.passed)
            .map(|g| g.name.as_str())
            .collect();
        assert!(
            failed.contains(&"baseline p99 send → delivery"),
            "{failed:?}"
        );
        assert!(failed.contains(&"baseline messages per second"));
        assert!(failed.contains(&"baseline error rate"));
        assert!(failed.contains(&"baseline checks"));
        // +25 % of 2 ms is under the 1 ms floor; +5 % bytes is within tolerance.
        assert!(!failed.contains(&"baseline p50 send → delivery"));
        assert!(!failed.contains(&"baseline bytes on disk per message"));
        for g in r.iter().filter(|g| !g.passed) {
            assert!(g.detail.starts_with("GATE FAILED: "), "{}", g.detail);
        }
        let same = compare_baseline(&base, &base, 0.2);
        assert!(same.iter().all(|g| g.passed));
    }

    #[test]
    fn thresholds() {
        let g = at_most("p99_x", "p99 x", Some(12.0), 10.0, " ms");
        assert!(!g.passed && g.detail.starts_with("GATE FAILED: p99_x"));
        assert!(at_most("p99_x", "p99 x", Some(9.0), 10.0, " ms").passed);
        assert!(!at_most("p99_x", "p99 x", None, 10.0, " ms").passed);
        assert!(at_least("r", "r", Some(0.99), 0.95).passed);
        assert!(!at_least("r", "r", Some(0.5), 0.95).passed);
    }
}
