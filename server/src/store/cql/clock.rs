//! The write timestamps of a shared (`?shared=true`) CQL store: a fence between sequencer
//! epochs.
//!
//! Cassandra keeps, of two writes to one cell, the one with the larger timestamp. In
//! shared mode every write of a store is made by its sequencer while it holds an epoch of
//! the keyspace-wide lease (see [`super::sequencer::lease`]); each epoch owns the range of
//! timestamps `[floor, ceiling)` recorded with it, and the next epoch's floor is at least
//! the previous ceiling. So a row that a node wrote under an old epoch (a batch whose
//! commit lost, or a write that lands late after a timeout) can never shadow a row a later
//! epoch wrote at the same position: the later one has the larger timestamp, whatever the
//! clocks of the nodes say. The wall clock plays no part, only the counts.

use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;
use scylla::policies::timestamp_generator::TimestampGenerator;

/// Timestamps an epoch may hand out: enough for the largest batch (256 requests of a
/// 256-member group is 65 536 inbox rows) many times over, and little enough that the
/// timestamps of a keyspace do not run far ahead of real time when a node dies holding
/// the lease (its successor starts at the dead node's ceiling).
pub(crate) const EPOCH_BUDGET: i64 = 1 << 20;

/// The session's timestamp generator in shared mode: strictly increasing, never below the
/// epoch's floor, never at or past its ceiling (the sequencer checks the room left before
/// it writes, [`FenceClock::room`]).
#[derive(Default)]
pub(crate) struct FenceClock {
    last: AtomicI64,
    range: Mutex<(i64, i64)>,
}

impl FenceClock {
    /// Enters an epoch owning `[floor, ceiling)`.
    pub(crate) fn enter(&self, floor: i64, ceiling: i64) {
        *self.range.lock() = (floor, ceiling);
        self.last.fetch_max(floor - 1, Ordering::SeqCst);
    }

    /// How many timestamps the epoch has left.
    pub(crate) fn room(&self) -> i64 {
        let (_, ceiling) = *self.range.lock();
        ceiling - 1 - self.last.load(Ordering::SeqCst)
    }

    /// The last timestamp handed out: the epoch's writes so far are all at or below it.
    pub(crate) fn last(&self) -> i64 {
        self.last.load(Ordering::SeqCst)
    }
}

impl TimestampGenerator for FenceClock {
    fn next_timestamp(&self) -> i64 {
        let (floor, ceiling) = *self.range.lock();
        let mut cur = self.last.load(Ordering::SeqCst);
        loop {
            // Past the ceiling only reads and lightweight transactions ask (Cassandra stamps
            // the latter with their ballot): the sequencer makes room before it writes.
            let next = (cur + 1)
                .max(floor)
                .min(ceiling.saturating_sub(1).max(floor));
            match self
                .last
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_stay_in_the_epoch_and_increase() {
        let c = FenceClock::default();
        c.enter(1000, 1010);
        assert_eq!(c.next_timestamp(), 1000);
        assert_eq!(c.next_timestamp(), 1001);
        assert_eq!(c.room(), 8);
        c.enter(5000, 6000);
        assert_eq!(c.next_timestamp(), 5000, "a new epoch starts at its floor");
        assert_eq!(c.last(), 5000);
    }
}
