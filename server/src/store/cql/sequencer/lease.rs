//! The keyspace-wide sequencer lease of a shared (`?shared=true`) CQL store: which node's
//! sequencer may write, for how long, and the compare-and-set that commits a batch.
//!
//! The lease lives in the static columns of the `seq_state` partition
//! ([`super::super::state_table`]). Taking it is a compare-and-set that moves `epoch` one
//! up and gives the taker the timestamps `[floor, ceiling)` ([`super::super::clock`]).
//! **Safety does not rest on time**: a batch commits with a conditional batch on the same
//! partition, `IF epoch = mine`, so a node whose lease ran out (a pause, a partition, a
//! kill) cannot commit anything once another node took an epoch, and the rows it wrote
//! meanwhile lose to the newer epoch's by their timestamps. Time only decides when a
//! waiting node may take the lease from a silent holder ([`LEASE`]).
//!
//! Turns: a node that finds the lease held says so (`waiting`); the holder then gives it up
//! at its next commit or renewal rather than keep it, and gives it up anyway after
//! [`IDLE`] without requests.

use std::time::{Duration, Instant};

use scylla::statement::batch::{Batch, BatchType};
use scylla::value::{CqlValue, Row as CqlRow};

use super::super::clock::EPOCH_BUDGET;
use super::super::{Shared, db_err};
use super::io::stmt;
use super::state::Row;
use crate::store::StoreError;

/// How long a lease lasts unless renewed: how long the other nodes wait for a holder that
/// died before one of them takes over. Long enough to outlast a slow batch (hundreds of
/// ms on a loaded node): a lease that runs out under a batch makes its commit lose.
pub(super) const LEASE: Duration = Duration::from_secs(1);
/// A holder renews this long before its lease ends, so a batch never starts on a lease
/// about to run out.
const RENEW_BEFORE: Duration = Duration::from_millis(500);
/// How often a waiting node looks at the lease again.
const POLL: Duration = Duration::from_millis(5);
/// How long a holder that gave the lease up for a waiting node stays away from it.
const YIELD: Duration = Duration::from_millis(15);
/// A holder with no request for this long gives the lease up.
pub(super) const IDLE: Duration = Duration::from_millis(20);
/// Timestamps an epoch must still have for a batch to start in it.
const ROOM: i64 = 1 << 17;

/// The lease row's static columns.
struct LeaseRow {
    epoch: i64,
    owner: String,
    lease_until: i64,
    ceiling: i64,
    waiting: String,
}

/// An epoch this node holds.
#[derive(Clone, Copy)]
struct Held {
    epoch: i64,
    /// When it runs out, by this node's clock (for renewing), and as written (ms).
    until: Instant,
    until_ms: i64,
    ceiling: i64,
}

/// What a commit came to.
pub(super) enum Commit {
    /// Applied: the batch is visible.
    Applied,
    /// Another node took an epoch: nothing of the batch is visible.
    Lost,
}

/// This node's side of the lease.
pub(super) struct Lease {
    /// This store instance's name in the lease row.
    me: String,
    held: Option<Held>,
    /// The epoch this node held last: taking the next one from it means nobody else wrote
    /// in between, and the committed state this node caches is still the truth.
    last_epoch: Option<i64>,
    yield_until: Option<Instant>,
}

fn now_ms() -> i64 {
    crate::model::now_ms() as i64
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn applied(rows: scylla::response::query_result::QueryResult) -> Result<bool, StoreError> {
    let rows = rows.into_rows_result().map_err(db_err)?;
    let row: CqlRow = rows.first_row().map_err(db_err)?;
    Ok(matches!(
        row.columns.first(),
        Some(Some(CqlValue::Boolean(true)))
    ))
}

impl Lease {
    pub(super) fn new() -> Lease {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Lease {
            me: format!("{}-{}-{n}", std::process::id(), now_us()),
            held: None,
            last_epoch: None,
            yield_until: None,
        }
    }

    /// Whether this node holds an epoch (it may have run out meanwhile).
    pub(super) fn holds(&self) -> bool {
        self.held.is_some()
    }

    /// Forgets the epoch held: the next batch takes a new one first.
    pub(super) fn drop_epoch(&mut self) {
        self.held = None;
    }

    /// Creates the lease row of a keyspace that has none.
    pub(super) async fn init(shared: &Shared) -> Result<(), StoreError> {
        let st = shared.state_st()?;
        shared
            .session
            .execute_unpaged(&st.init, ())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn read(shared: &Shared) -> Result<LeaseRow, StoreError> {
        let st = shared.state_st()?;
        type R = (
            Option<i64>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<R> = shared.select(&st.read_lease, ()).await?;
        let (epoch, owner, lease_until, ceiling, waiting) = rows
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("the keyspace has no sequencer lease row".into()))?;
        Ok(LeaseRow {
            epoch: epoch.unwrap_or(0),
            owner: owner.unwrap_or_default(),
            lease_until: lease_until.unwrap_or(0),
            ceiling: ceiling.unwrap_or(0),
            waiting: waiting.unwrap_or_default(),
        })
    }

    /// Makes sure this node holds an epoch with time and timestamps left, taking one (and
    /// waiting for its turn) when needed, for at most the store's request timeout. Answers
    /// whether the committed state cached since this node's last epoch is still the truth.
    pub(super) async fn hold(&mut self, shared: &Shared) -> Result<bool, StoreError> {
        if let Some(h) = self.held
            && Instant::now() + RENEW_BEFORE < h.until
            && shared.clock.room() >= ROOM
        {
            return Ok(true);
        }
        let deadline = Instant::now() + shared.settings.timeout;
        loop {
            match self.try_take(shared).await {
                Ok(Some(fresh)) => return Ok(fresh),
                Ok(None) => {}
                // A Paxos round that timed out (a contended or loaded Cassandra answers
                // `Serial` reads and compare-and-sets late): its outcome is read again on
                // the next turn, so it is worth retrying until the request's own deadline.
                Err(e @ StoreError::Unavailable(_)) if Instant::now() + POLL < deadline => {
                    tracing::debug!(error = %e, "cql sequencer lease round failed; retrying");
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => return Err(e),
            }
            if Instant::now() > deadline {
                return Err(StoreError::Unavailable(
                    "the keyspace's sequencer lease stayed with another node".into(),
                ));
            }
        }
    }

    /// One turn at the lease: `Some(fresh)` once this node holds an epoch, `None` when it
    /// has to look again (another node holds it, or this node stepped aside for a waiting
    /// one). A claim that failed with an error may still have applied; the next turn's read
    /// then shows this node as owner, and it takes the next epoch over its own (not fresh,
    /// so the caller reloads).
    async fn try_take(&mut self, shared: &Shared) -> Result<Option<bool>, StoreError> {
        if let Some(t) = self.yield_until.take() {
            tokio::time::sleep_until(t.into()).await;
        }
        let row = Self::read(shared).await?;
        let now = now_ms();
        if row.owner != self.me && row.lease_until > now {
            if row.waiting != self.me {
                let st = shared.state_st()?;
                shared
                    .session
                    .execute_unpaged(&st.wait, (&self.me, row.epoch))
                    .await
                    .map_err(db_err)?;
            }
            let left = Duration::from_millis((row.lease_until - now) as u64);
            tokio::time::sleep(left.min(POLL)).await;
            return Ok(None);
        }
        if self.held.is_some() && !row.waiting.is_empty() && row.waiting != self.me {
            // Renewing while another node waits: its turn first.
            self.release(shared).await?;
            self.yield_until = Some(Instant::now() + YIELD);
            return Ok(None);
        }
        let floor = now_us().max(row.ceiling);
        let ceiling = floor + EPOCH_BUDGET;
        let until_ms = now + LEASE.as_millis() as i64;
        let st = shared.state_st()?;
        let taken = shared
            .session
            .execute_unpaged(
                &st.claim,
                (row.epoch + 1, &self.me, until_ms, ceiling, row.epoch),
            )
            .await
            .map_err(db_err)?;
        if !applied(taken)? {
            return Ok(None);
        }
        let fresh = self.last_epoch == Some(row.epoch);
        shared.clock.enter(floor, ceiling);
        self.held = Some(Held {
            epoch: row.epoch + 1,
            until: Instant::now() + LEASE,
            until_ms,
            ceiling,
        });
        self.last_epoch = Some(row.epoch + 1);
        Ok(Some(fresh))
    }

    /// Gives the lease up: the next holder's timestamps start past every write of ours.
    pub(super) async fn release(&mut self, shared: &Shared) -> Result<(), StoreError> {
        let Some(h) = self.held.take() else {
            return Ok(());
        };
        let st = shared.state_st()?;
        shared
            .session
            .execute_unpaged(&st.release, (shared.clock.last() + 1, h.epoch))
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Commits a batch's counter and marker rows in one conditional batch, `IF epoch =`
    /// ours: all of them or none. When another node waits, the same commit gives the lease
    /// up. An error leaves the outcome open (the caller takes a new epoch and reloads).
    pub(super) async fn commit(
        &mut self,
        shared: &Shared,
        counters: &[Row],
    ) -> Result<Commit, StoreError> {
        let Some(h) = self.held else {
            return Ok(Commit::Lost);
        };
        let st = shared.state_st()?;
        let mut waiting = String::new();
        for _ in 0..2 {
            let release = !waiting.is_empty();
            let (until, ceiling) = if release {
                (0, shared.clock.last() + 1)
            } else {
                (h.until_ms, h.ceiling)
            };
            let mut batch = Batch::new(BatchType::Unlogged);
            batch.append_statement(st.commit.clone());
            for row in counters {
                batch.append_statement(stmt(shared, row.stmt).clone());
            }
            batch.set_is_idempotent(false);
            let head = vec![
                CqlValue::BigInt(until),
                CqlValue::BigInt(ceiling),
                CqlValue::BigInt(h.epoch),
                CqlValue::Text(waiting.clone()),
            ];
            let values: Vec<&Vec<CqlValue>> = std::iter::once(&head)
                .chain(counters.iter().map(|r| &r.values))
                .collect();
            let result = shared.session.batch(&batch, values).await.map_err(db_err)?;
            if applied(result)? {
                if release {
                    self.held = None;
                }
                return Ok(Commit::Applied);
            }
            let row = Self::read(shared).await?;
            if row.epoch != h.epoch || row.waiting.is_empty() {
                break;
            }
            waiting = row.waiting;
        }
        self.held = None;
        Ok(Commit::Lost)
    }
}
