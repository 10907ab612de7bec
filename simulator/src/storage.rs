//! Storage: bytes on disk per stored message, against the source design's 100 B, and
//! extrapolated to its 2 TB/day and 5-year figures through the estimation crate — both as
//! the run saw it (transient: the write-ahead journal, unflushed memtables) and, once the
//! run is over, as a long-running store would hold the same data (settled: flushed,
//! compacted, journal apart), by table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chat_server::store::{self, StorageReport, StoreError, StoreOptions, Table};
use estimation::{Calibration, Inputs};
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
    /// The store by table as the run left it, before settling (journal apart).
    pub transient: Option<TableFigures>,
    /// The same data settled: memtables flushed, tables compacted, expired records gone.
    pub settled: Option<TableFigures>,
    /// Why there is no settled figure, when there is none.
    pub settled_note: Option<String>,
    /// The store's idempotency window: its records count for one window, not five years.
    pub idempotency_window_secs: f64,
    /// The source design's figures from the settled bytes per message (idempotency
    /// records for one window), provisioned, no replication.
    pub settled_bytes_per_day: Option<f64>,
    pub settled_bytes_five_years: Option<f64>,
    /// Settled bytes per message ÷ the mean body: the target is at most 1.5.
    pub settled_bytes_per_body_byte: Option<f64>,
}

/// A store's bytes by table at one moment, and per stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableFigures {
    /// Bytes by table: `messages`, `inbox`, `idempotency`, `markers`, `other`.
    pub tables: BTreeMap<String, u64>,
    /// The write-ahead log (journal, WAL), when the store can tell.
    pub journal_bytes: Option<u64>,
    /// Files holding no live table data (superseded tables awaiting deletion,
    /// manifests, block rounding).
    pub unaccounted_bytes: u64,
    /// Bytes per stored message by table.
    pub bytes_per_message_by_table: BTreeMap<String, f64>,
    /// Every table but the idempotency records, per message: what a message costs for
    /// the whole retention.
    pub bytes_per_message: Option<f64>,
    /// Idempotency records per message: kept for one window.
    pub idempotency_bytes_per_message: Option<f64>,
    /// The journal per message.
    pub journal_bytes_per_message: Option<f64>,
    /// Logical bytes of the records ÷ bytes on disk, when the store counts them.
    pub compression_ratio: Option<f64>,
}

/// The figures of a storage report for `messages` stored messages.
pub fn table_figures(report: &StorageReport, messages: u64) -> TableFigures {
    let per = |b: u64| (messages > 0).then(|| b as f64 / messages as f64);
    let tables: BTreeMap<String, u64> = Table::ALL
        .iter()
        .map(|&t| {
            (
                t.name().to_owned(),
                report.tables.get(&t).copied().unwrap_or(0),
            )
        })
        .collect();
    let idem = report.tables.get(&Table::Idempotency).copied().unwrap_or(0);
    TableFigures {
        bytes_per_message_by_table: tables
            .iter()
            .filter_map(|(t, &b)| per(b).map(|v| (t.clone(), v)))
            .collect(),
        bytes_per_message: per(report.table_bytes() - idem).filter(|b| *b > 0.0),
        idempotency_bytes_per_message: per(idem),
        journal_bytes_per_message: report.journal.and_then(per),
        journal_bytes: report.journal,
        unaccounted_bytes: report.unaccounted,
        compression_ratio: report.compression_ratio(),
        tables,
    }
}

/// Where the data of a finished run is, to settle and measure it.
#[derive(Debug, Clone)]
pub enum SettleTarget {
    /// A fjall directory this run's server left (the server has stopped): opened here.
    Fjall(PathBuf),
    /// A `--store` spec of a database (`postgres://…`, `cql://…`).
    Spec(String),
}

/// The store as the run left it and, where the backend can settle, the same data
/// settled; or why it could not be measured.
pub struct SettleOutcome {
    pub transient: StorageReport,
    pub settled: Option<StorageReport>,
    pub note: Option<String>,
}

/// Opens the finished run's store, reports it, settles it and reports it again.
pub async fn settle_and_measure(
    target: &SettleTarget,
    window: Duration,
) -> Result<SettleOutcome, String> {
    let options = StoreOptions {
        idempotency_window: window,
    };
    let backend = match target {
        SettleTarget::Fjall(dir) => {
            let dir = dir.clone();
            let fjall =
                tokio::task::spawn_blocking(move || store::FjallStore::open_with(&dir, &options))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot open the run's fjall store: {e}"))?;
            store::Backend::from(std::sync::Arc::new(fjall))
        }
        SettleTarget::Spec(spec) => store::open_with(spec, &options)
            .await
            .map_err(|e| format!("cannot open {spec}: {e}"))?,
    };
    let s = backend.store();
    let transient = s
        .storage()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the `{}` store reports no storage", backend.name()))?;
    match s.settle().await {
        Ok(()) => {
            let settled = s.storage().await.map_err(|e| e.to_string())?;
            Ok(SettleOutcome {
                transient,
                settled,
                note: None,
            })
        }
        Err(StoreError::Unsupported(why)) => Ok(SettleOutcome {
            transient,
            settled: None,
            note: Some(why.to_owned()),
        }),
        Err(e) => Err(format!("settling the store failed: {e}")),
    }
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

/// The store's size on disk as the run sampled it.
#[derive(Debug, Clone, Copy)]
pub struct Disk<'a> {
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub points: &'a [Point],
}

/// Computes the figures from the start and end disk sizes and the samples, and from the
/// store settled after the run when it was.
pub fn figures(
    store: &str,
    disk: Disk<'_>,
    stored_messages: u64,
    body_bytes: u64,
    settle: Option<&Result<SettleOutcome, String>>,
    window: Duration,
) -> StorageFigures {
    let Disk { start, end, points } = disk;
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
    let (transient, settled, settled_note) = match settle {
        None => (
            None,
            None,
            Some(match store {
                "memory" => "the memory store keeps nothing on disk".to_owned(),
                "external" => {
                    "the target is not this run's server, so its store was not opened".to_owned()
                }
                _ => "the store was not settled after the run".to_owned(),
            }),
        ),
        Some(Err(why)) => (None, None, Some(why.clone())),
        Some(Ok(o)) => (
            Some(table_figures(&o.transient, stored_messages)),
            o.settled
                .as_ref()
                .map(|r| table_figures(r, stored_messages)),
            o.note.clone(),
        ),
    };
    let window_secs = window.as_secs_f64();
    let settled_plan = settled.as_ref().and_then(|f| {
        let calibration = Calibration {
            settled_bytes_per_message: f.bytes_per_message,
            idempotency_bytes_per_message: f.idempotency_bytes_per_message,
            idempotency_window_secs: Some(window_secs),
            ..Calibration::default()
        };
        let source = Inputs::source_design();
        calibration
            .storage_per_message(source.retention_secs())
            .bytes()
            .and_then(scaled)
    });
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
        settled_bytes_per_body_byte: settled
            .as_ref()
            .and_then(|f| f.bytes_per_message)
            .zip(mean_body)
            .map(|(b, m)| b / m),
        transient,
        settled,
        settled_note,
        idempotency_window_secs: window_secs,
        settled_bytes_per_day: settled_plan
            .as_ref()
            .map(|p| p.storage_bytes_per_day_provisioned),
        settled_bytes_five_years: settled_plan
            .as_ref()
            .map(|p| p.storage_bytes_total_provisioned),
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
        let disk = Disk {
            start: Some(1000),
            end: Some(1000 + 150 * 1000),
            points: &[],
        };
        let f = figures(
            "fjall",
            disk,
            1000,
            100_000,
            None,
            StoreOptions::DEFAULT_IDEMPOTENCY_WINDOW,
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
        let w = StoreOptions::DEFAULT_IDEMPOTENCY_WINDOW;
        let none = Disk {
            start: None,
            end: None,
            points: &[],
        };
        let f = figures("memory", none, 10, 1000, None, w);
        assert_eq!(f.bytes_per_message, None);
        assert!(f.note.unwrap().contains("memory"));
        let f = figures("external", none, 10, 1000, None, w);
        assert!(f.note.unwrap().contains("not this run's server"));
    }

    #[test]
    fn settled_figures_count_idempotency_for_one_window() {
        let mut transient = StorageReport::default();
        transient.add(Table::Messages, 10_000);
        transient.journal = Some(90_000);
        let mut settled = StorageReport::default();
        settled.add(Table::Messages, 80_000);
        settled.add(Table::Inbox, 40_000);
        settled.add(Table::Idempotency, 36_500);
        settled.logical.insert(Table::Messages, 160_000);
        let outcome = Ok(SettleOutcome {
            transient,
            settled: Some(settled),
            note: None,
        });
        let w = StoreOptions::DEFAULT_IDEMPOTENCY_WINDOW;
        let disk = Disk {
            start: Some(0),
            end: Some(100_000),
            points: &[],
        };
        let f = figures("fjall", disk, 1000, 100_000, Some(&outcome), w);
        let s = f.settled.as_ref().unwrap();
        assert_eq!(s.bytes_per_message, Some(120.0));
        assert_eq!(s.idempotency_bytes_per_message, Some(36.5));
        assert_eq!(s.bytes_per_message_by_table["inbox"], 40.0);
        assert_eq!(s.compression_ratio, Some(160_000.0 / 156_500.0));
        assert_eq!(f.settled_bytes_per_body_byte, Some(1.2));
        // 120 B + 36.5 B × 1/1825 per message of a five-year retention.
        let expected = 3.65e15 * (120.0 + 36.5 / 1825.0) / 100.0;
        let got = f.settled_bytes_five_years.unwrap();
        assert!((got - expected).abs() < 1e3, "{got} vs {expected}");
        let t = f.transient.as_ref().unwrap();
        assert_eq!(t.journal_bytes_per_message, Some(90.0));
        assert_eq!(f.bytes_per_message, Some(100.0));
    }
}
