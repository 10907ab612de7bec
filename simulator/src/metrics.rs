//! Latency histograms (microseconds, HdrHistogram) and the per-interval time series, in a
//! form that merges exactly across worker processes.
//!
//! Histograms travel between processes in HdrHistogram's V2 deflate format, base64-coded
//! inside JSON; adding deserialized histograms gives the same counts as one process
//! recording everything would, so percentiles of a split run are exact.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The largest latency recorded: one hour, in microseconds. Larger values saturate.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// The latencies the simulator measures, each from the intended time of the action to
/// the answer's arrival (a WebSocket frame's at the socket: the kernel's receive timestamp
/// of the packet that completed it; an HTTP answer's when it was read), and the
/// simulator's own share of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Latency {
    /// Intended send time → the sender's `sent`.
    SendToSent,
    /// Intended send time → first live `msg` on each other participant device.
    SendToDelivery,
    /// Intended send time → first arrival through `sync` on a device that was offline or
    /// had not got it live (catch-up; includes the offline time).
    SendToCatchUp,
    /// Intended send time → the sender's first `delivered` receipt for the message.
    SendToDelivered,
    /// Intended read time → the `history` page.
    History,
    /// Intended reconnect time → connected and synced to the end of the inbox.
    Reconnect,
    /// First connection of a device → synced to the end of the inbox.
    Connect,
    /// Intended pull time → the presence answer.
    Presence,
    /// A live `msg` reaching the socket → its delivery recorded: the delay the simulator
    /// itself adds after a frame reached it (the runtime's wake-up and whatever it was
    /// busy with, the read, WebSocket and JSON parsing, the checks' bookkeeping, the frames
    /// read before it in the same read). None of it is in the other latencies, which end
    /// at the arrival.
    ClientDelay,
    /// A send's intended time → the send queued to its connection's task, for sends the pacer
    /// woke their user for at that time: the delay the simulator itself adds before a
    /// send (the timer's lateness, the runtime busy with other work, the building of
    /// the frame). A send that was due while its user still waited for something else
    /// (its previous send's `sent`, a history read) is not in it: that wait may be the
    /// server's. Every send → latency includes it, as the open model wants.
    SendLateness,
}

impl Latency {
    pub const ALL: [Latency; 10] = [
        Latency::SendToSent,
        Latency::SendToDelivery,
        Latency::SendToCatchUp,
        Latency::SendToDelivered,
        Latency::History,
        Latency::Reconnect,
        Latency::Connect,
        Latency::Presence,
        Latency::ClientDelay,
        Latency::SendLateness,
    ];

    /// The JSON key and file name part.
    pub fn key(self) -> &'static str {
        match self {
            Latency::SendToSent => "send_to_sent",
            Latency::SendToDelivery => "send_to_delivery",
            Latency::SendToCatchUp => "send_to_catch_up",
            Latency::SendToDelivered => "send_to_delivered",
            Latency::History => "history_page",
            Latency::Reconnect => "reconnect_to_caught_up",
            Latency::Connect => "connect_to_caught_up",
            Latency::Presence => "presence_pull",
            Latency::ClientDelay => "client_delay",
            Latency::SendLateness => "send_lateness",
        }
    }

    /// Words for reports.
    pub fn label(self) -> &'static str {
        match self {
            Latency::SendToSent => "send → sent",
            Latency::SendToDelivery => "send → delivery (live)",
            Latency::SendToCatchUp => "send → delivery (catch-up sync)",
            Latency::SendToDelivered => "send → delivered receipt",
            Latency::History => "history page",
            Latency::Reconnect => "reconnect → caught up",
            Latency::Connect => "first connect → caught up",
            Latency::Presence => "presence pull",
            Latency::ClientDelay => "simulator's own delay (socket arrival → delivery recorded)",
            Latency::SendLateness => {
                "simulator's own delay before a send (intended time → send queued, paced sends)"
            }
        }
    }
}

/// Why histogram data could not be decoded.
#[derive(Debug, Error)]
pub enum HistogramError {
    #[error("histogram data is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("histogram data is damaged: {0}")]
    Decode(String),
    #[error("histograms do not add up: {0}")]
    Add(String),
}

/// A histogram covering 1 µs .. 1 h at `sigfig` significant digits.
pub fn new_histogram(sigfig: u8) -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure here is a bug.
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("valid histogram bounds")
}

/// Records microseconds, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// HdrHistogram V2 deflate bytes, base64-coded.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    // Serializing into a Vec cannot fail for an in-range histogram.
    let _ = V2DeflateSerializer::new().serialize(h, &mut buf);
    B64.encode(buf)
}

/// The inverse of [`encode`].
pub fn decode(s: &str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = B64.decode(s)?;
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| HistogramError::Decode(format!("{e:?}")))
}

/// Summary figures of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Option<LatencySummary> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(LatencySummary {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        })
    }
}

/// One histogram per [`Latency`].
#[derive(Debug, Clone)]
pub struct LatencySet {
    pub hist: BTreeMap<Latency, Histogram<u64>>,
}

impl Default for LatencySet {
    fn default() -> Self {
        LatencySet {
            hist: Latency::ALL
                .iter()
                .map(|&l| (l, new_histogram(3)))
                .collect(),
        }
    }
}

impl LatencySet {
    pub fn record(&mut self, which: Latency, micros: u64) {
        if let Some(h) = self.hist.get_mut(&which) {
            record(h, micros);
        }
    }

    pub fn get(&self, which: Latency) -> Option<&Histogram<u64>> {
        self.hist.get(&which)
    }

    /// Adds another set (exact).
    pub fn merge(&mut self, other: &LatencySet) -> Result<(), HistogramError> {
        for (k, h) in &other.hist {
            self.hist
                .entry(*k)
                .or_insert_with(|| new_histogram(3))
                .add(h)
                .map_err(|e| HistogramError::Add(format!("{e:?}")))?;
        }
        Ok(())
    }

    /// Base64 V2 form, by key.
    pub fn encode(&self) -> BTreeMap<Latency, String> {
        self.hist.iter().map(|(k, h)| (*k, encode(h))).collect()
    }

    pub fn decode(m: &BTreeMap<Latency, String>) -> Result<LatencySet, HistogramError> {
        let mut set = LatencySet::default();
        for (k, s) in m {
            set.hist.insert(*k, decode(s)?);
        }
        Ok(set)
    }
}

/// Counts of one sample interval. Interval `i` covers [i × interval, (i+1) × interval)
/// seconds after the load started, on every process alike.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Sends written to the wire.
    pub sends: u64,
    /// `sent` answers.
    pub acked: u64,
    /// First deliveries to devices (live).
    pub deliveries: u64,
    /// Failed requests.
    pub errors: u64,
    /// Live delivery latency of the interval (2 significant digits keep it small).
    pub delivery: Histogram<u64>,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            sends: 0,
            acked: 0,
            deliveries: 0,
            errors: 0,
            delivery: new_histogram(2),
        }
    }
}

/// The wire form of a [`Bucket`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketWire {
    pub index: u64,
    pub sends: u64,
    pub acked: u64,
    pub deliveries: u64,
    pub errors: u64,
    pub delivery: String,
}

/// The time series of one process: intervals by index.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub buckets: BTreeMap<u64, Bucket>,
}

impl Series {
    pub fn at(&mut self, index: u64) -> &mut Bucket {
        self.buckets.entry(index).or_default()
    }

    pub fn merge(&mut self, other: &Series) -> Result<(), HistogramError> {
        for (i, b) in &other.buckets {
            let mine = self.at(*i);
            mine.sends += b.sends;
            mine.acked += b.acked;
            mine.deliveries += b.deliveries;
            mine.errors += b.errors;
            mine.delivery
                .add(&b.delivery)
                .map_err(|e| HistogramError::Add(format!("{e:?}")))?;
        }
        Ok(())
    }

    pub fn to_wire(&self) -> Vec<BucketWire> {
        self.buckets
            .iter()
            .map(|(i, b)| BucketWire {
                index: *i,
                sends: b.sends,
                acked: b.acked,
                deliveries: b.deliveries,
                errors: b.errors,
                delivery: encode(&b.delivery),
            })
            .collect()
    }

    pub fn from_wire(w: &[BucketWire]) -> Result<Series, HistogramError> {
        let mut s = Series::default();
        for b in w {
            s.buckets.insert(
                b.index,
                Bucket {
                    sends: b.sends,
                    acked: b.acked,
                    deliveries: b.deliveries,
                    errors: b.errors,
                    delivery: decode(&b.delivery)?,
                },
            );
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn merged_shards_equal_one_recorder() {
        let mut rng = Rng::new(5);
        let mut whole = LatencySet::default();
        let mut parts = [
            LatencySet::default(),
            LatencySet::default(),
            LatencySet::default(),
        ];
        for i in 0..30_000u64 {
            let v = (rng.exp(1.0 / 3000.0) as u64).max(1);
            let which = Latency::ALL[(i % 3) as usize];
            whole.record(which, v);
            parts[(i % 7 % 3) as usize].record(which, v);
        }
        let mut merged = LatencySet::default();
        for p in &parts {
            // Through the wire form, as workers send them.
            let back = LatencySet::decode(&p.encode()).unwrap();
            merged.merge(&back).unwrap();
        }
        for l in Latency::ALL {
            let (a, b) = (whole.get(l).unwrap(), merged.get(l).unwrap());
            assert_eq!(a.len(), b.len());
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(a.value_at_quantile(q), b.value_at_quantile(q), "{l:?} q{q}");
            }
            assert_eq!(LatencySummary::of(a), LatencySummary::of(b));
        }
    }

    #[test]
    fn series_merge_adds_counts_and_histograms() {
        let mut a = Series::default();
        a.at(0).sends = 2;
        record(&mut a.at(0).delivery, 1500);
        let mut b = Series::default();
        b.at(0).sends = 3;
        b.at(4).acked = 1;
        record(&mut b.at(0).delivery, 2500);
        let b = Series::from_wire(&b.to_wire()).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.buckets[&0].sends, 5);
        assert_eq!(a.buckets[&0].delivery.len(), 2);
        assert_eq!(a.buckets[&4].acked, 1);
    }

    #[test]
    fn bad_wire_data_is_an_error() {
        assert!(decode("!!!").is_err());
        assert!(decode("AAAA").is_err());
    }

    #[test]
    fn values_are_clamped() {
        let mut h = new_histogram(3);
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }
}
