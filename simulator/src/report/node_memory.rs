//! A node's memory as a capacity plan needs it: a fixed part, a part per connection held,
//! and the store's memtables at their bound rather than as full as the run left them.
//!
//! Why: a run's RSS growth over its connections also counts the memtables its messages
//! filled. That part grows with the run's length and stops at the memtables' bound (a
//! full memtable is flushed to a table), not at a figure per connection: at seed-node
//! (120 s, fjall) it was about half of the 11 KiB per connection the plain division gave.
//! Here the samples' RSS is fitted against the connections held and the memtable bytes
//! the server reports (fjall's count of keys and values), which gives what one memtable
//! byte costs in resident memory (skiplist nodes, allocator); the node then needs its base,
//! that cost times the memtables' bound and its block cache's capacity, and so much per
//! connection.

use serde::Serialize;

use super::costs::{MIN_INTERVALS, during_load, least_squares};
use crate::records::Sample;

/// What a node's memory comes to, from one run of a server that reports its store's
/// memtables.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NodeMemory {
    /// Resident memory with no connection and empty memtables.
    pub base_bytes: f64,
    /// Resident memory per connection held.
    pub bytes_per_connection: f64,
    /// Resident memory per memtable byte as the store counts it.
    pub rss_bytes_per_table_byte: f64,
    /// How much of the RSS's variation the fit explains (R²).
    pub fit_r2: f64,
    /// Samples the fit used: the load's, up to the first flush (see [`NodeMemory::fit`]).
    pub samples: usize,
    /// The memtables' bound, as the store counts them (every keyspace's memtable full).
    pub tables_limit_bytes: u64,
    /// The memtables at their fullest before their first flush (the last sample the fit
    /// used), as the store counts them.
    pub tables_peak_bytes: u64,
    /// The block cache's capacity.
    pub cache_capacity_bytes: u64,
    /// What the node holds apart from its connections once its memtables reached their
    /// bound and its cache filled: base + resident bytes per memtable byte × the bound +
    /// the cache's capacity.
    pub node_bytes: f64,
}

impl NodeMemory {
    /// Fits the node's memory from the samples between `load_start` and `load_end` that
    /// carry the store's memtables. Only the samples before the memtables first shrink
    /// count: a flush frees a memtable, but the allocator may keep its pages for the next
    /// one, so RSS no longer follows the memtables byte for byte once one has flushed.
    /// `None` when those samples are too few, cannot tell connections and memtables apart,
    /// or give a negative cost.
    pub fn fit(samples: &[Sample], load_start: f64, load_end: f64) -> Option<NodeMemory> {
        let mut rows: Vec<([f64; 3], f64)> = Vec::new();
        let mut last_tables = 0;
        let mut store = None;
        for s in samples
            .iter()
            .filter(|s| during_load(s, load_start, load_end))
        {
            let (Some(p), Some(m)) = (s.server, s.store_memory) else {
                continue;
            };
            if m.tables_bytes < last_tables {
                break;
            }
            last_tables = m.tables_bytes;
            store = Some(m);
            rows.push((
                [1.0, s.connected.max(0) as f64, m.tables_bytes as f64],
                p.rss_bytes as f64,
            ));
        }
        if rows.len() < MIN_INTERVALS {
            return None;
        }
        let store = store?;
        let (c, r2) = least_squares(&rows)?;
        if c[1] < 0.0 || c[2] < 0.0 {
            return None;
        }
        Some(NodeMemory {
            base_bytes: c[0],
            bytes_per_connection: c[1],
            rss_bytes_per_table_byte: c[2],
            fit_r2: r2,
            samples: rows.len(),
            tables_limit_bytes: store.tables_limit_bytes,
            tables_peak_bytes: last_tables,
            cache_capacity_bytes: store.cache_capacity_bytes,
            node_bytes: c[0]
                + c[2] * store.tables_limit_bytes as f64
                + store.cache_capacity_bytes as f64,
        })
    }

    /// Resident memory of a node holding `connections`, its memtables at their bound.
    pub fn bytes(&self, connections: f64) -> f64 {
        self.node_bytes + self.bytes_per_connection * connections
    }

    /// The figures in one line, for the reports.
    pub fn describe(&self) -> String {
        let b = estimation::units::format_bytes;
        format!(
            "{} per node + {} a connection: base {}, memtables at their bound {} ({} counted × {:.2} resident per byte; this run filled {}), block cache {} (fit R² {:.2} over {} samples)",
            b(self.node_bytes),
            b(self.bytes_per_connection),
            b(self.base_bytes),
            b(self.rss_bytes_per_table_byte * self.tables_limit_bytes as f64),
            b(self.tables_limit_bytes as f64),
            self.rss_bytes_per_table_byte,
            b(self.tables_peak_bytes as f64),
            b(self.cache_capacity_bytes as f64),
            self.fit_r2,
            self.samples,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::ProcSample;
    use chat_server::store::StoreMemory;

    /// A ramp to 1000 connections, then steady load; memtables fill at 300 B a second and
    /// cost 3 resident bytes each, a connection 5000 bytes; flushed at `flush_at`.
    fn run(flush_at: Option<u64>) -> Vec<Sample> {
        (0..=40u64)
            .map(|t| {
                let connected = (t * 100).min(1000);
                let tables = match flush_at {
                    Some(f) if t >= f => (t - f) * 300,
                    _ => t * 300,
                };
                // After the flush RSS keeps the pages of the flushed memtable.
                let rss_tables = 3 * t * 300;
                Sample {
                    t: 100.0 + t as f64,
                    connected: connected as i64,
                    server: Some(ProcSample {
                        rss_bytes: 8_000_000 + 5_000 * connected + rss_tables,
                        ..ProcSample::default()
                    }),
                    store_memory: Some(StoreMemory {
                        tables_bytes: tables,
                        tables_limit_bytes: 1 << 20,
                        cache_capacity_bytes: 1 << 16,
                    }),
                    ..Sample::default()
                }
            })
            .collect()
    }

    #[test]
    fn the_memtables_are_counted_at_their_bound() {
        let m = NodeMemory::fit(&run(None), 100.0, 140.0).unwrap();
        assert!((m.bytes_per_connection - 5_000.0).abs() < 1e-3, "{m:?}");
        assert!((m.rss_bytes_per_table_byte - 3.0).abs() < 1e-6, "{m:?}");
        assert!((m.base_bytes - 8_000_000.0).abs() < 1.0, "{m:?}");
        assert_eq!((m.tables_peak_bytes, m.samples), (12_000, 41));
        let node = 8_000_000.0 + 3.0 * f64::from(1 << 20) + f64::from(1 << 16);
        assert!((m.node_bytes - node).abs() < 1.0, "{m:?}");
        assert!((m.bytes(50_000.0) - (node + 250e6)).abs() < 1.0);
    }

    #[test]
    fn only_the_samples_before_the_first_flush_count() {
        // Fitted across the flush, RSS that stays up while the memtables empty would read
        // as something else than 3 bytes each.
        let m = NodeMemory::fit(&run(Some(30)), 100.0, 140.0).unwrap();
        assert_eq!((m.samples, m.tables_peak_bytes), (30, 8_700));
        assert!((m.rss_bytes_per_table_byte - 3.0).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn a_server_without_memtables_or_a_short_run_has_no_figure() {
        let none: Vec<Sample> = run(None)
            .into_iter()
            .map(|s| Sample {
                store_memory: None,
                ..s
            })
            .collect();
        assert_eq!(NodeMemory::fit(&none, 100.0, 140.0), None);
        // A flush after five samples leaves too few to fit.
        assert_eq!(NodeMemory::fit(&run(Some(5)), 100.0, 140.0), None);
    }
}
