//! Puts a device's live `msg` frames in inbox order.
//!
//! Sends complete concurrently, so their fan-outs can reach a device's queue out of useq
//! order. The writer holds early arrivals here until the missing positions come; if one is
//! still missing after a short wait it is read from the store (the source of truth), so a
//! device never sees a gap and never waits on a fan-out that will not come.

use std::collections::BTreeMap;

use crate::protocol::Encoded;

/// The live inbox stream of one device.
#[derive(Debug)]
pub struct Reorder {
    /// The next useq to write.
    next: u64,
    /// Early arrivals: a frame, or `None` for a position answered by `sent` on this device.
    pending: BTreeMap<u64, Option<Encoded>>,
}

impl Reorder {
    /// A stream whose first live position is `head + 1`: everything up to the inbox head
    /// at connect time is the client's to fetch with `sync`.
    pub fn new(head: u64) -> Self {
        Reorder {
            next: head + 1,
            pending: BTreeMap::new(),
        }
    }

    /// Accepts position `useq`; positions already written are dropped.
    pub fn push(&mut self, useq: u64, frame: Option<Encoded>) {
        if useq >= self.next {
            self.pending.insert(useq, frame);
        }
    }

    /// The next position to write.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The next position in order, if it has arrived: `Some(None)` is a position to skip.
    pub fn pop(&mut self) -> Option<Option<Encoded>> {
        let entry = self.pending.first_entry()?;
        if *entry.key() != self.next {
            return None;
        }
        self.next += 1;
        Some(entry.remove())
    }

    /// The missing positions `[from, to)` before the first early arrival, if any.
    pub fn gap(&self) -> Option<(u64, u64)> {
        let (&first, _) = self.pending.first_key_value()?;
        (first > self.next).then_some((self.next, first))
    }

    /// Gives up on positions below `useq` (the store did not have them).
    pub fn skip_to(&mut self, useq: u64) {
        self.next = self.next.max(useq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Option<Encoded> {
        Some(Encoded::from(s.to_owned()))
    }

    #[test]
    fn releases_in_order_and_reports_gaps() {
        let mut r = Reorder::new(10);
        r.push(9, f("old"));
        r.push(12, f("b"));
        assert_eq!(r.pop(), None);
        assert_eq!(r.gap(), Some((11, 12)));
        r.push(11, None);
        assert_eq!(r.pop(), Some(None));
        assert_eq!(r.pop(), Some(f("b")));
        assert_eq!(r.pop(), None);
        assert_eq!(r.gap(), None);
        r.push(12, f("dup"));
        assert_eq!(r.pop(), None, "a written position is never written twice");
        r.push(15, f("e"));
        r.skip_to(15);
        assert_eq!(r.pop(), Some(f("e")));
    }
}
