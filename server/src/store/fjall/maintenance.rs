//! What keeps a fjall store measurable and small over time: its storage by table with the
//! journal apart, settling it (flush, compaction, expired records deleted), and the
//! compaction filter that drops expired idempotency records while it serves.

use std::path::Path;

use fjall::Keyspace;
use fjall::compaction::filter::{
    CompactionFilter, CompactionFilterResult, Context, Factory, ItemAccessor, Verdict,
};

use super::{Tables, unavailable};
use crate::store::sequencing::{IdemRecord, decode};
use crate::store::{StorageReport, StoreError, Table};

impl Tables {
    /// Every keyspace with the table it holds.
    fn keyspaces(&self) -> [(&Keyspace, Table); 8] {
        [
            (&self.msgs, Table::Messages),
            (&self.inbox, Table::Inbox),
            (&self.idem, Table::Idempotency),
            (&self.marks, Table::Markers),
            (&self.groups, Table::Other),
            (&self.pushes, Table::Other),
            (&self.dead, Table::Other),
            (&self.meta, Table::Other),
        ]
    }

    pub(super) fn storage(&self) -> Result<StorageReport, StoreError> {
        let mut report = StorageReport::default();
        for (ks, table) in self.keyspaces() {
            // The tables of the keyspace's current version: superseded ones that still
            // wait for deletion are not its data.
            report.add(table, ks.disk_space());
            // What the records are before fjall encodes and compresses them (a scan).
            let mut logical = 0u64;
            for g in ks.iter() {
                let (k, v) = g.into_inner().map_err(unavailable)?;
                logical += (k.len() + v.len()) as u64;
            }
            *report.logical.entry(table).or_default() += logical;
        }
        let journal = journal_bytes(&self.path).map_err(unavailable)?;
        report.journal = Some(journal);
        let total = allocated_bytes(&self.path).map_err(unavailable)?;
        report.unaccounted = total.saturating_sub(report.table_bytes() + journal);
        Ok(report)
    }

    pub(super) fn settle(&self) -> Result<(), StoreError> {
        for (ks, _) in self.keyspaces() {
            ks.rotate_memtable_and_wait().map_err(unavailable)?;
            ks.major_compact().map_err(unavailable)?;
        }
        // Journals are deleted by fjall's background maintenance once every keyspace has
        // flushed past them; give it a moment so the report shows the settled journal.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.db.journal_count() > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }
}

/// Drops idempotency records older than the window while the `idem` keyspace compacts, so
/// they cost no storage in the long run. A record is what a client retry needs, not
/// history: past the window it may be gone (the protocol says so).
pub(super) struct IdemExpiry {
    pub(super) window_ms: u64,
}

impl Factory for IdemExpiry {
    fn name(&self) -> &str {
        "idempotency-expiry"
    }

    fn make_filter(&self, _ctx: &Context) -> Box<dyn CompactionFilter> {
        Box::new(IdemFilter {
            cutoff: crate::model::now_ms().saturating_sub(self.window_ms),
        })
    }
}

struct IdemFilter {
    /// Records of sends before this time (ms) are expired.
    cutoff: u64,
}

impl CompactionFilter for IdemFilter {
    fn filter_item(&mut self, item: ItemAccessor<'_>, _ctx: &Context) -> CompactionFilterResult {
        let value = item.value()?;
        Ok(match decode::<IdemRecord>(&value, "idempotency record") {
            Ok(rec) if rec.ts < self.cutoff => Verdict::Remove,
            // A record that does not decode is left for the reader to report.
            _ => Verdict::Keep,
        })
    }
}

/// The blocks the journal files in a store's directory hold.
fn journal_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += journal_bytes(&entry.path())?;
        } else if entry.path().extension().is_some_and(|e| e == "jnl") {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// Bytes allocated on disk below `dir`: the sum of every file's allocated blocks, so a
/// sparse, pre-allocated file counts only what was written.
pub(super) fn allocated_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += allocated_bytes(&entry.path())?;
        } else {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}
