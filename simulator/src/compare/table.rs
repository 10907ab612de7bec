//! The figures of a comparison: for each backend, the handful of numbers that tell stores
//! apart, copied from its run's `summary.json` rather than recomputed, so the comparison
//! and the runs' own reports can never disagree.

use std::path::Path;

use serde::Serialize;

use crate::report::json::Summary;

/// The version of `compare.json`'s shape.
pub const SCHEMA_VERSION: u32 = 1;

/// `compare.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub schema_version: u32,
    pub tool: String,
    pub scenario: String,
    pub scenario_file: String,
    /// The `--set` overrides every run got (besides `server.store`).
    pub overrides: Vec<String>,
    pub started_at: String,
    pub finished_at: String,
    /// Whether every backend ran and passed its gates.
    pub passed: bool,
    /// One line per backend that did not run and per failed gate, as printed.
    pub failures: Vec<String>,
    pub backends: Vec<BackendFigures>,
}

/// One backend's column. Figures are `None` when the run did not measure them (or did not
/// run at all).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendFigures {
    pub label: String,
    /// The `--store` string of the run, password removed.
    pub store: String,
    /// Whether a run happened (and wrote a report).
    pub ran: bool,
    /// Whether it ran and passed every gate and check.
    pub passed: bool,
    /// Why it did not run.
    pub error: Option<String>,
    /// The run's directory, relative to the comparison's.
    pub run_dir: Option<String>,
    /// The run's failed gates.
    pub failures: Vec<String>,
    /// First deliveries to devices per second at full load (`load.deliveries_per_sec`).
    pub delivered_per_sec: Option<f64>,
    /// Acknowledged messages per second at full load (`load.messages_per_sec`).
    pub acknowledged_per_sec: Option<f64>,
    pub send_to_sent_p50_ms: Option<f64>,
    pub send_to_sent_p99_ms: Option<f64>,
    pub send_to_delivery_p50_ms: Option<f64>,
    pub send_to_delivery_p99_ms: Option<f64>,
    pub history_page_p50_ms: Option<f64>,
    pub history_page_p99_ms: Option<f64>,
    /// Bytes on disk per stored message while the run went on
    /// (`storage.bytes_per_message`, journal included); none for memory.
    pub bytes_per_message: Option<f64>,
    /// The same data settled after the run, idempotency records apart
    /// (`storage.settled.bytes_per_message`); none where the store could not settle.
    pub settled_bytes_per_message: Option<f64>,
    /// Settled idempotency records per message (kept one window).
    pub idempotency_bytes_per_message: Option<f64>,
    /// Logical bytes ÷ settled bytes on disk, where the store counts them.
    pub compression_ratio: Option<f64>,
    /// Server CPU per acknowledged message (`server.cpu_us_per_message`).
    pub server_cpu_us_per_message: Option<f64>,
    /// Mean server CPU over the load, percent of one core (`server.cpu_percent_mean`).
    pub server_cpu_percent_mean: Option<f64>,
    /// Peak resident memory of the server process (`server.rss_bytes_peak`).
    pub server_rss_peak_bytes: Option<u64>,
    /// Failed requests over requests (`load.error_rate`).
    pub error_rate: Option<f64>,
}

impl BackendFigures {
    /// The column of a finished run.
    pub fn of_run(label: &str, store: &str, run_dir: &Path, s: &Summary) -> BackendFigures {
        let lat = |key: &str| s.latency_ms.get(key).copied().flatten();
        let sent = lat("send_to_sent");
        let delivery = lat("send_to_delivery");
        let history = lat("history_page");
        BackendFigures {
            label: label.to_owned(),
            store: store.to_owned(),
            ran: true,
            passed: s.passed,
            error: None,
            run_dir: Some(run_dir.display().to_string()),
            failures: s.failures.clone(),
            delivered_per_sec: Some(s.load.deliveries_per_sec),
            acknowledged_per_sec: Some(s.load.messages_per_sec),
            send_to_sent_p50_ms: sent.map(|l| l.p50_ms),
            send_to_sent_p99_ms: sent.map(|l| l.p99_ms),
            send_to_delivery_p50_ms: delivery.map(|l| l.p50_ms),
            send_to_delivery_p99_ms: delivery.map(|l| l.p99_ms),
            history_page_p50_ms: history.map(|l| l.p50_ms),
            history_page_p99_ms: history.map(|l| l.p99_ms),
            bytes_per_message: s.storage.bytes_per_message,
            settled_bytes_per_message: s.storage.settled.as_ref().and_then(|f| f.bytes_per_message),
            idempotency_bytes_per_message: s
                .storage
                .settled
                .as_ref()
                .and_then(|f| f.idempotency_bytes_per_message),
            compression_ratio: s.storage.settled.as_ref().and_then(|f| f.compression_ratio),
            server_cpu_us_per_message: s.server.as_ref().and_then(|v| v.cpu_us_per_message),
            server_cpu_percent_mean: s.server.as_ref().map(|v| v.cpu_percent_mean),
            server_rss_peak_bytes: s.server.as_ref().map(|v| v.rss_bytes_peak),
            error_rate: Some(s.load.error_rate),
        }
    }

    /// The column of a backend whose run could not start or finish.
    pub fn failed(label: &str, store: &str, error: &str) -> BackendFigures {
        BackendFigures {
            label: label.to_owned(),
            store: store.to_owned(),
            error: Some(error.to_owned()),
            ..BackendFigures::default()
        }
    }

    /// `pass`, `FAIL` (gates) or `did not run`.
    pub fn status(&self) -> &'static str {
        match (self.ran, self.passed) {
            (false, _) => "did not run",
            (true, true) => "pass",
            (true, false) => "FAIL",
        }
    }
}

/// A number with a sensible count of decimals; `–` when missing.
fn num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if !v.is_finite() => "–".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The rows of the side-by-side table: a figure's name, then one cell per backend.
pub fn rows(c: &Comparison) -> Vec<(String, Vec<String>)> {
    type Cell = fn(&BackendFigures) -> String;
    let spec: [(&str, Cell); 18] = [
        ("status", |b| b.status().to_owned()),
        ("store", |b| format!("`{}`", b.store)),
        ("delivered messages/s", |b| num(b.delivered_per_sec)),
        ("acknowledged messages/s", |b| num(b.acknowledged_per_sec)),
        ("p50 send → sent (ms)", |b| num(b.send_to_sent_p50_ms)),
        ("p99 send → sent (ms)", |b| num(b.send_to_sent_p99_ms)),
        ("p50 send → delivery (ms)", |b| {
            num(b.send_to_delivery_p50_ms)
        }),
        ("p99 send → delivery (ms)", |b| {
            num(b.send_to_delivery_p99_ms)
        }),
        ("p50 history page (ms)", |b| num(b.history_page_p50_ms)),
        ("p99 history page (ms)", |b| num(b.history_page_p99_ms)),
        ("bytes on disk per message, settled", |b| {
            num(b.settled_bytes_per_message)
        }),
        ("… idempotency records, settled (one window)", |b| {
            num(b.idempotency_bytes_per_message)
        }),
        ("bytes on disk per message, while running", |b| {
            num(b.bytes_per_message)
        }),
        ("compression (logical ÷ settled)", |b| {
            num(b.compression_ratio)
        }),
        ("server CPU per message (µs)", |b| {
            num(b.server_cpu_us_per_message)
        }),
        ("server CPU (mean % of one core)", |b| {
            num(b.server_cpu_percent_mean)
        }),
        ("peak server memory (MB)", |b| {
            num(b.server_rss_peak_bytes.map(|v| v as f64 / 1e6))
        }),
        ("error rate (%)", |b| num(b.error_rate.map(|v| v * 100.0))),
    ];
    spec.iter()
        .map(|(name, f)| ((*name).to_owned(), c.backends.iter().map(f).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_missing_figures() {
        assert_eq!(num(None), "–");
        assert_eq!(num(Some(1234.56)), "1235");
        assert_eq!(num(Some(12.34)), "12.3");
        assert_eq!(num(Some(0.123)), "0.12");
        let c = Comparison {
            schema_version: SCHEMA_VERSION,
            tool: "t".into(),
            scenario: "s".into(),
            scenario_file: "s.toml".into(),
            overrides: vec![],
            started_at: String::new(),
            finished_at: String::new(),
            passed: false,
            failures: vec![],
            backends: vec![BackendFigures::failed("x", "x://", "down")],
        };
        let r = rows(&c);
        assert_eq!(r[0].1, vec!["did not run"]);
        assert!(r.iter().skip(2).all(|(_, cells)| cells == &["–"]));
    }
}
