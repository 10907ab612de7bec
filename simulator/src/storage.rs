//! Storage growth: bytes on disk per stored message, against the source design's 100 B,
//! and extrapolated to its 2 TB/day and 5-year figures through the estimation crate.

use estimation::Inputs;
use serde::{Deserialize, Serialize};

/// The source design's assumed bytes per message.
pub const SOURCE_BYTES_PER_MESSAGE: f64 = 100.0;

/// One point of storage growth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Messages stored (acknowledged) so far.
    pub messages: f64,
    /// Bytes on disk.
    pub bytes: f64,
}

/// What the run measured about storage and what it means at the source design's scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageFigures {
    /// `memory`, `fjall`, … or `external` when the target is not this run's child.
    pub store: String,
    pub disk_bytes_start: Option<u64>,
    pub disk_bytes_end: Option<u64>,
    /// Messages the server acknowledged (each stored once).
    pub stored_messages: u64,
    /// Mean body size of those messages.
    pub mean_body_bytes: Option<f64>,
    /// (end − start) / stored messages.
    pub bytes_per_message: Option<f64>,
    /// Least-squares slope of bytes on disk against stored messages over the samples:
    /// insensitive to fixed costs such as pre-allocated files.
    pub bytes_per_message_slope: Option<f64>,
    pub source_bytes_per_message: f64,
    /// bytes_per_message / 100 B.
    pub ratio_to_source: Option<f64>,
    /// Bytes on disk per byte of body sent.
    pub bytes_per_body_byte: Option<f64>,
    /// The source design's 2 TB/day and 3.65 PB over 5 years, and what this run's
    /// bytes per message make of them (provisioned, no replication).
    pub source_bytes_per_day: f64,
    pub source_bytes_five_years: f64,
    pub measured_bytes_per_day: Option<f64>,
    pub measured_bytes_five_years: Option<f64>,
    /// Why a figure is missing, when it is.
    pub note: Option<String>,
}

/// The slope of bytes against messages (least squares), when the messages vary.
pub fn slope(points: &[Point]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 3 {
        return None;
    }
    let mx = points.iter().map(|p| p.messages).sum::<f64>() / n;
    let my = points.iter().map(|p| p.bytes).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.messages - mx).powi(2)).sum();
    let sxy: f64 = points
        .iter()
        .map(|p| (p.messages - mx) * (p.bytes - my))
        .sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Computes the figures from the start and end disk sizes and the samples.
pub fn figures(
    store: &str,
    start: Option<u64>,
    end: Option<u64>,
    stored_messages: u64,
    body_bytes: u64,
    points: &[Point],
) -> StorageFigures {
    let source = Inputs::source_design().plan().ok();
    let source_day = source.as_ref().map_or(2e12, |p| p.storage_bytes_per_day);
    let source_total = source.as_ref().map_or(3.65e15, |p| p.storage_bytes_total);
    let mean_body = (stored_messages > 0).then(|| body_bytes as f64 / stored_messages as f64);
    let (bpm, note) = match (start, end) {
        (Some(s), Some(e)) if stored_messages > 0 => (
            Some(e.saturating_sub(s) as f64 / stored_messages as f64),
            None,
        ),
        (Some(_), Some(_)) => (None, Some("no message was stored".to_owned())),
        _ => (
            None,
            Some(if store == "external" {
                "the target is not this run's server, so its disk was not measured".to_owned()
            } else {
                format!("the `{store}` store reports no bytes on disk")
            }),
        ),
    };
    let bpm = bpm.filter(|b| *b > 0.0);
    // Scale the source design's storage by measured bytes over the assumed 100 B.
    let scaled = |b: f64| {
        let inputs = Inputs {
            storage_overhead_factor: b / SOURCE_BYTES_PER_MESSAGE,
            ..Inputs::source_design()
        };
        inputs.plan().ok()
    };
    let plan = bpm.and_then(scaled);
    StorageFigures {
        store: store.to_owned(),
        disk_bytes_start: start,
        disk_bytes_end: end,
        stored_messages,
        mean_body_bytes: mean_body,
        bytes_per_message: bpm,
        bytes_per_message_slope: if bpm.is_some() { slope(points) } else { None },
        source_bytes_per_message: SOURCE_BYTES_PER_MESSAGE,
        ratio_to_source: bpm.map(|b| b / SOURCE_BYTES_PER_MESSAGE),
        bytes_per_body_byte: bpm.zip(mean_body).map(|(b, m)| b / m),
        source_bytes_per_day: source_day,
        source_bytes_five_years: source_total,
        measured_bytes_per_day: plan.as_ref().map(|p| p.storage_bytes_per_day_provisioned),
        measured_bytes_five_years: plan.as_ref().map(|p| p.storage_bytes_total_provisioned),
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_with_a_fixed_cost() {
        let pts: Vec<Point> = (0..10)
            .map(|i| Point {
                messages: i as f64 * 100.0,
                bytes: 64e6 + i as f64 * 100.0 * 150.0,
            })
            .collect();
        assert!((slope(&pts).unwrap() - 150.0).abs() < 1e-9);
        assert_eq!(slope(&pts[..2]), None);
    }

    #[test]
    fn extrapolates_to_the_source_scale() {
        let f = figures(
            "fjall",
            Some(1000),
            Some(1000 + 150 * 1000),
            1000,
            100_000,
            &[],
        );
        assert_eq!(f.bytes_per_message, Some(150.0));
        assert_eq!(f.ratio_to_source, Some(1.5));
        assert_eq!(f.source_bytes_per_day, 2e12);
        assert_eq!(f.measured_bytes_per_day, Some(3e12));
        assert_eq!(f.measured_bytes_five_years, Some(3.65e15 * 1.5));
        assert_eq!(f.mean_body_bytes, Some(100.0));
    }

    #[test]
    fn missing_disk_figures_say_why() {
        let f = figures("memory", None, None, 10, 1000, &[]);
        assert_eq!(f.bytes_per_message, None);
        assert!(f.note.unwrap().contains("memory"));
        let f = figures("external", None, None, 10, 1000, &[]);
        assert!(f.note.unwrap().contains("not this run's server"));
    }
}
