//! What a store occupies: bytes by table of the data model, the write-ahead log apart,
//! and the logical size of the records for the compression the backend achieved; and what
//! `/metrics` reads from the store at each scrape.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The tables of the data model, as storage reports group them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Stored messages.
    Messages,
    /// Per-user inbox entries.
    Inbox,
    /// Idempotency records of sends (kept for the idempotency window only).
    Idempotency,
    /// Per (user, conversation) markers and the conversations' counters.
    Markers,
    /// Groups, push registrations, dead letters, counters.
    Other,
}

impl Table {
    /// Every table, in report order.
    pub const ALL: [Table; 5] = [
        Table::Messages,
        Table::Inbox,
        Table::Idempotency,
        Table::Markers,
        Table::Other,
    ];

    /// The table's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Table::Messages => "messages",
            Table::Inbox => "inbox",
            Table::Idempotency => "idempotency",
            Table::Markers => "markers",
            Table::Other => "other",
        }
    }
}

/// Where a backend's bytes are.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StorageReport {
    /// Bytes of each table's settled files (SSTables, heap and index pages), indexes
    /// included.
    pub tables: BTreeMap<Table, u64>,
    /// Bytes of the write-ahead log (what a crash would replay, not what the data
    /// occupies), when the backend can tell.
    pub journal: Option<u64>,
    /// Bytes of the store's files that hold no live table data: tables a compaction
    /// superseded that wait for deletion, manifests, files rounded up to whole blocks.
    /// Tables, journal and this add up to the store's files.
    pub unaccounted: u64,
    /// The bytes of each table's keys and values as written, before the backend's
    /// encoding and compression, where the backend can count them (empty otherwise):
    /// against `tables`, the compression the backend achieved.
    pub logical: BTreeMap<Table, u64>,
}

impl StorageReport {
    /// Bytes of the tables, journal excluded.
    pub fn table_bytes(&self) -> u64 {
        self.tables.values().sum()
    }

    /// Adds `bytes` to `table`.
    pub fn add(&mut self, table: Table, bytes: u64) {
        *self.tables.entry(table).or_default() += bytes;
    }

    /// Logical bytes ÷ bytes on disk of the tables, when the backend counted them.
    pub fn compression_ratio(&self) -> Option<f64> {
        let logical: u64 = self.logical.values().sum();
        let disk = self.table_bytes();
        (logical > 0 && disk > 0).then(|| logical as f64 / disk as f64)
    }
}

/// What a store's tables hold in this process's memory, and the bound they stay within:
/// for a capacity plan, which must size a node's memory for tables at their bound rather
/// than as full as one run happened to leave them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreMemory {
    /// Bytes the in-memory tables (memtables, the active and the sealed ones awaiting
    /// their flush) hold now, as the store counts them: keys and values, not the
    /// allocator's or the tables' own overhead.
    pub tables_bytes: u64,
    /// Bytes, counted the same way, at which every table's active memtable is full: a
    /// memtable is sealed and flushed once it passes its size, so the tables stay within
    /// this, apart from sealed memtables briefly awaiting their flush.
    pub tables_limit_bytes: u64,
    /// The capacity of the block cache: it fills with the blocks of the reads the
    /// memtables miss, up to this.
    pub cache_capacity_bytes: u64,
}

/// What a store with a writer thread counts of its commits: the writes it committed on
/// the caller's thread while the writer was idle, sparing the two thread hand-offs a lone
/// write costs otherwise, and its journal fsyncs (a disk's commit rate is what a node's
/// durable sends are bound by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WriterCounts {
    /// Receipts (delivery and read markers) committed on the caller's thread.
    pub made: u64,
    /// Receipts that tried and went to the writer thread instead, because they had to
    /// read the tables (which the caller's thread must not wait on).
    pub missed: u64,
    /// Sends committed and fsynced on the caller's thread.
    pub synced: u64,
    /// Journal fsyncs, on the writer thread and on callers' threads.
    pub fsyncs: u64,
}

/// Reads the store at each scrape of `/metrics`: its memory (`chat_store_memtable_bytes`,
/// `chat_store_memtable_limit_bytes` and `chat_store_cache_capacity_bytes`,
/// [`super::MessageStore::memory`]) and its writer's counts
/// (`chat_store_inline_commits_total`, `chat_store_inline_misses_total`,
/// `chat_store_inline_synced_commits_total`, `chat_store_fsyncs_total`,
/// [`super::MessageStore::writer_counts`]), when it has any. The store is held weakly:
/// the metrics must not keep a stopped server's store open.
pub struct StoreCollector(Weak<dyn super::Store>);

impl StoreCollector {
    pub fn new(store: &Arc<dyn super::Store>) -> Self {
        StoreCollector(Arc::downgrade(store))
    }
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.0.upgrade() else {
            return Ok(());
        };
        if let Some(c) = store.writer_counts() {
            for (name, help, value) in [
                (
                    "store_inline_commits",
                    "Receipts the store committed on the caller's thread, its writer being idle",
                    c.made,
                ),
                (
                    "store_inline_misses",
                    "Receipts that had to read the tables and went to the store's writer thread",
                    c.missed,
                ),
                (
                    "store_inline_synced_commits",
                    "Sends the store committed and fsynced on the caller's thread, its writer being idle",
                    c.synced,
                ),
                (
                    "store_fsyncs",
                    "Journal fsyncs of the store, on its writer thread and on callers' threads",
                    c.fsyncs,
                ),
            ] {
                let counter = ConstCounter::new(value);
                counter.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    counter.metric_type(),
                )?)?;
            }
        }
        let Some(m) = store.memory() else {
            return Ok(());
        };
        for (name, help, value) in [
            (
                "store_memtable_bytes",
                "Bytes of keys and values the store's memtables hold, sealed ones included",
                m.tables_bytes,
            ),
            (
                "store_memtable_limit_bytes",
                "Bytes of keys and values the store's memtables hold when every one is full",
                m.tables_limit_bytes,
            ),
            (
                "store_cache_capacity_bytes",
                "Capacity of the store's block cache",
                m.cache_capacity_bytes,
            ),
        ] {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}
