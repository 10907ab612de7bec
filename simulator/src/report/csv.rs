//! `timeseries.csv`: one row per sample interval.

use super::Row;

/// The header, in column order.
pub const HEADER: &str = "elapsed_s,connected_devices,sends_per_sec,acked_per_sec,deliveries_per_sec,errors_per_sec,delivery_p50_ms,delivery_p99_ms,server_rss_bytes,server_cpu_percent,disk_bytes,stored_messages";

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn opt_f(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_default()
}

pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "{:.3},{},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{}\n",
            r.elapsed_s,
            opt(r.connected),
            r.sends_per_sec,
            r.acked_per_sec,
            r.deliveries_per_sec,
            r.errors_per_sec,
            opt_f(r.delivery_p50_ms),
            opt_f(r.delivery_p99_ms),
            opt(r.server_rss_bytes),
            opt_f(r.server_cpu_percent),
            opt(r.disk_bytes),
            opt(r.stored_messages),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_row_with_every_column() {
        let rows = vec![
            Row {
                elapsed_s: 0.0,
                connected: Some(3),
                delivery_p99_ms: Some(1.5),
                ..Row::default()
            },
            Row::default(),
        ];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let cols = HEADER.split(',').count();
        for l in &lines {
            assert_eq!(l.split(',').count(), cols, "{l}");
        }
        assert!(lines[1].starts_with("0.000,3,"));
    }
}
