//! `--json FILE`: every phase's figures as one JSON document, for programs that read the
//! results (the targets bench reads the per-second worst latency from it) instead of
//! scraping the printed tables.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::*;

/// One store's phases as JSON.
pub(crate) fn store_json(store: StoreKind, results: &[PhaseResult]) -> Value {
    json!({
        "store": store.name(),
        "phases": results.iter().map(phase_json).collect::<Vec<_>>(),
    })
}

fn ms_or_null(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

fn phase_json(r: &PhaseResult) -> Value {
    let h = &r.send_to_delivery;
    let from_s = r.spec.warmup.as_secs_f64();
    let to_s = from_s + r.spec.duration.as_secs_f64();
    json!({
        "kind": if r.spec.rate > 0.0 { "open" } else { "closed" },
        "rate": r.spec.rate,
        "pairs": r.spec.pairs,
        "window": r.spec.window,
        "body_bytes": r.spec.body_bytes,
        "warmup_s": from_s,
        "duration_s": r.spec.duration.as_secs_f64(),
        "sent_in_window": r.sent_in_window,
        "delivered_in_window": r.delivered_in_window,
        "msgs_per_s": r.rate(),
        "send_to_delivery_ms": {
            "p50": ms_or_null(PhaseResult::p_ms(h, 0.50)),
            "p90": ms_or_null(PhaseResult::p_ms(h, 0.90)),
            "p99": ms_or_null(PhaseResult::p_ms(h, 0.99)),
            "max": ms_or_null(PhaseResult::p_ms(h, 1.0)),
        },
        "send_to_sent_ms": {
            "p50": ms_or_null(PhaseResult::p_ms(&r.send_to_sent, 0.50)),
            "p99": ms_or_null(PhaseResult::p_ms(&r.send_to_sent, 0.99)),
        },
        "server_cpu_us_per_msg": ms_or_null(r.server_cpu_us_per_msg()),
        "server_cpu_s": r.server_cpu_s,
        "client_cpu_s": r.client_cpu_s,
        "server_max_rss_bytes": r.server_max_rss,
        "behind": r.behind,
        "errors": r.errors,
        "lost": r.lost,
        "violations": r.violations.count,
        // By scheduled send second from the phase's start; the measurement window is
        // [warmup_s, warmup_s + duration_s).
        "timeline": r.timeline.iter().enumerate().map(|(i, b)| json!({
            "second": i,
            "in_window": (i as f64) >= from_s && (i as f64) < to_s,
            "delivered": b.delivered,
            "over_mark": b.over_target,
            "max_ms": b.max_us as f64 / 1000.0,
        })).collect::<Vec<_>>(),
        "timeline_mark_ms": TIMELINE_MARK_MS,
    })
}

/// Writes the document: the run's settings and each store's phases.
pub(crate) fn write(path: &Path, args: &Args, stores: Vec<Value>) -> Result<()> {
    let doc = json!({
        "pairs": args.pairs,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "stores": stores,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
