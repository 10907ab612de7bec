//! The chat-semantics checks that run on every run, and the record each device keeps so
//! they can run.
//!
//! Every device keeps a [`DeviceLog`]: its user's inbox as this device learned it (live
//! `msg` frames, `sync` pages, and its own `sent` answers), and per connection the order
//! live frames came in. The shard keeps a registry of every send it made. At the end each
//! device syncs to the end of its inbox, and the checks compare the logs with each other
//! and with the registry:
//!
//! | check | what fails it |
//! |---|---|
//! | `order` | a live frame out of inbox order; a conversation's seqs not increasing along the inbox; a history page out of order |
//! | `gaps` | a position missing from a device's inbox, from a conversation's seqs, or skipped by the live stream |
//! | `exactly_once` | an acknowledged message missing on a participant device, stored twice in an inbox, or delivered live twice |
//! | `no_phantoms` | a message nobody sent, or one whose body or conversation changed on the way |
//! | `consistency` | two devices disagreeing on what is at a (conversation, seq) or inbox position, a device lacking a message the others have, or a seq other than the one the sender was told |
//!
//! [`ordering`], [`delivery`] and [`consistency`] hold the three families of rules over
//! the devices' records ([`log`]) and the messages they name ([`message`]); this module
//! holds the checks and their results, and [`run_final`], which runs them all.

pub mod anomaly;
pub mod consistency;
pub mod delivery;
pub mod log;
pub mod message;
pub mod ordering;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

pub use self::anomaly::Anomaly;
use self::log::Epoch;
pub use self::log::{DeviceLog, Entry, Observed, Via};
pub use self::message::{Conv, MsgKey, Outcome, SendRecord, body_hash, client_id, parse_client_id};
use crate::scenario::Scenario;

/// Examples of faults kept per check; the counts are always complete.
pub const MAX_EXAMPLES: usize = 10;

/// One of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Order,
    Gaps,
    ExactlyOnce,
    NoPhantoms,
    Consistency,
}

impl Check {
    pub const ALL: [Check; 5] = [
        Check::Order,
        Check::Gaps,
        Check::ExactlyOnce,
        Check::NoPhantoms,
        Check::Consistency,
    ];

    /// The name used in scenarios, reports and failure lines.
    pub fn name(self) -> &'static str {
        match self {
            Check::Order => "order",
            Check::Gaps => "gaps",
            Check::ExactlyOnce => "exactly_once",
            Check::NoPhantoms => "no_phantoms",
            Check::Consistency => "consistency",
        }
    }

    /// What passing the check means, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Check::Order => "per-conversation order and live inbox order on every device",
            Check::Gaps => "no missing inbox positions or conversation seqs once sync filled in",
            Check::ExactlyOnce => {
                "every acknowledged message reached every participant device exactly once"
            }
            Check::NoPhantoms => "nothing was delivered that was not sent, nor altered",
            Check::Consistency => "all devices of all participants ended with identical histories",
        }
    }
}

/// Fault counts and examples per check, plus what was checked. Merges exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckResults {
    pub faults: BTreeMap<Check, u64>,
    pub examples: BTreeMap<Check, Vec<String>>,
    /// Acknowledged messages whose delivery was checked.
    pub messages_checked: u64,
    /// Devices whose logs were checked.
    pub devices_checked: u64,
    /// Inbox entries held by all devices at the end.
    pub entries_checked: u64,
    /// Conversations compared across devices.
    pub conversations_checked: u64,
    /// The same faults by kind of anomaly ([`Anomaly`]), with their own examples.
    #[serde(default)]
    pub anomalies: BTreeMap<Anomaly, u64>,
    #[serde(default)]
    pub anomaly_examples: BTreeMap<Anomaly, Vec<String>>,
}

impl CheckResults {
    /// Records one fault, of the kind of anomaly the check usually finds.
    pub fn fault(&mut self, check: Check, detail: impl FnOnce() -> String) {
        self.fault_as(check, Anomaly::of(check), detail);
    }

    /// Records one fault of `check` that is an anomaly of kind `kind`.
    pub fn fault_as(&mut self, check: Check, kind: Anomaly, detail: impl FnOnce() -> String) {
        *self.faults.entry(check).or_default() += 1;
        *self.anomalies.entry(kind).or_default() += 1;
        let ex = self.examples.entry(check).or_default();
        let by_kind = self.anomaly_examples.entry(kind).or_default();
        if ex.len() < MAX_EXAMPLES || by_kind.len() < MAX_EXAMPLES {
            let text = detail();
            if by_kind.len() < MAX_EXAMPLES {
                by_kind.push(text.clone());
            }
            if ex.len() < MAX_EXAMPLES {
                ex.push(text);
            }
        }
    }

    /// Anomalies of one kind.
    pub fn anomalies_of(&self, kind: Anomaly) -> u64 {
        self.anomalies.get(&kind).copied().unwrap_or(0)
    }

    /// Faults of one check.
    pub fn count(&self, check: Check) -> u64 {
        self.faults.get(&check).copied().unwrap_or(0)
    }

    pub fn passed(&self, check: Check) -> bool {
        self.count(check) == 0
    }

    /// Adds another shard's results.
    pub fn merge(&mut self, other: &CheckResults) {
        for (c, n) in &other.faults {
            *self.faults.entry(*c).or_default() += n;
        }
        merge_examples(&mut self.examples, &other.examples);
        for (k, n) in &other.anomalies {
            *self.anomalies.entry(*k).or_default() += n;
        }
        merge_examples(&mut self.anomaly_examples, &other.anomaly_examples);
        self.messages_checked += other.messages_checked;
        self.devices_checked += other.devices_checked;
        self.entries_checked += other.entries_checked;
        self.conversations_checked += other.conversations_checked;
    }
}

/// Adds `other`'s examples to `mine`, up to [`MAX_EXAMPLES`] per key.
fn merge_examples<K: Ord + Copy>(
    mine: &mut BTreeMap<K, Vec<String>>,
    other: &BTreeMap<K, Vec<String>>,
) {
    for (k, ex) in other {
        let kept = mine.entry(*k).or_default();
        let room = MAX_EXAMPLES.saturating_sub(kept.len());
        kept.extend(ex.iter().take(room).cloned());
    }
}

/// Runs every end-of-run check over a shard's devices.
///
/// `participants` names the users of a conversation (`None` for a conversation the shard
/// does not know, e.g. a fabricated one); `devices_of` the indices into `logs` of a user's
/// devices.
pub fn run_final(
    logs: &[&DeviceLog],
    sends: &HashMap<MsgKey, SendRecord>,
    participants: &dyn Fn(&Conv) -> Option<Vec<u64>>,
    devices_of: &dyn Fn(u64) -> Vec<usize>,
) -> CheckResults {
    let mut r = CheckResults::default();
    for log in logs {
        r.merge(&log.online);
        r.entries_checked += log.inbox.len() as u64;
        ordering::check_inbox(log, &mut r);
        delivery::check_duplicates(log, &mut r);
        delivery::check_phantoms(log, sends, &mut r);
    }
    r.devices_checked = logs.len() as u64;
    let canonical = consistency::canonical(logs, sends, &mut r);
    ordering::check_conversation_gaps(&canonical, &mut r);
    let lost = delivery::check_acknowledged(logs, sends, participants, devices_of, &mut r);
    consistency::check_devices_agree(logs, &canonical, &lost, participants, devices_of, &mut r);
    r
}

/// The checks a scenario gates on, in report order.
pub fn gated(scenario: &Scenario) -> Vec<Check> {
    Check::ALL
        .into_iter()
        .filter(|c| scenario.check_gated(c.name()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny world for the checks' tests: users 1 and 2 with one device each, writing in
    /// d:1:2; the sends registry says what was acknowledged.
    pub struct World {
        pub logs: Vec<DeviceLog>,
        pub sends: HashMap<MsgKey, SendRecord>,
    }

    pub fn entry(from: u64, n: u64, seq: u64) -> Entry {
        Entry {
            conv: Conv::direct(1, 2),
            seq,
            from,
            n: Some(n),
            body_hash: body_hash(&format!("{from}-{n}")),
        }
    }

    impl World {
        /// `msgs`: (from, n) in seq order; each is acknowledged and delivered correctly
        /// (sender via `sent`, the other user live).
        pub fn clean(msgs: &[(u64, u64)]) -> World {
            let mut logs = vec![DeviceLog::new(1, "a".into()), DeviceLog::new(2, "b".into())];
            let mut sends = HashMap::new();
            for (i, &(from, n)) in msgs.iter().enumerate() {
                let seq = i as u64 + 1;
                let useq = seq;
                let e = entry(from, n, seq);
                sends.insert(
                    (from, n),
                    SendRecord {
                        conv: e.conv,
                        body_hash: e.body_hash,
                        outcome: Outcome::Acked { seq, useq },
                    },
                );
                for log in &mut logs {
                    let via = if log.user == from {
                        Via::Own
                    } else {
                        Via::Live
                    };
                    log.observe(useq, e, via);
                }
            }
            World { logs, sends }
        }

        pub fn check(&mut self) -> CheckResults {
            for l in &mut self.logs {
                l.end_connection();
            }
            let logs: Vec<&DeviceLog> = self.logs.iter().collect();
            run_final(
                &logs,
                &self.sends,
                &|c| match c {
                    Conv::Direct(a, b) => Some(vec![*a, *b]),
                    Conv::Group(_) => None,
                },
                &|u| vec![(u - 1) as usize],
            )
        }
    }

    fn only(r: &CheckResults, check: Check) {
        for c in Check::ALL {
            if c == check {
                assert!(r.count(c) > 0, "{c:?} should fail: {r:?}");
            }
        }
    }

    #[test]
    fn a_clean_history_passes_every_check() {
        let mut w = World::clean(&[(1, 1), (2, 1), (1, 2), (2, 2)]);
        let r = w.check();
        assert!(r.faults.is_empty(), "{r:?}");
        assert_eq!(r.messages_checked, 4);
        assert_eq!(r.devices_checked, 2);
        assert_eq!(r.entries_checked, 8);
    }

    #[test]
    fn a_lost_message_fails_exactly_once_and_gaps() {
        let mut w = World::clean(&[(1, 1), (1, 2), (1, 3)]);
        // Device b never got seq 2.
        let b = &mut w.logs[1];
        b.inbox.remove(&2);
        b.positions.remove(&(1, 2));
        let r = w.check();
        only(&r, Check::ExactlyOnce);
        assert!(r.count(Check::Gaps) > 0);
        assert!(r.anomalies_of(Anomaly::Lost) > 0, "{r:?}");
        assert_eq!(r.anomalies_of(Anomaly::Duplicated), 0, "{r:?}");
        // Every fault is one anomaly: the two tables add up to the same total.
        let total: u64 = r.faults.values().sum();
        assert_eq!(total, r.anomalies.values().sum::<u64>());
    }

    #[test]
    fn a_live_duplicate_fails_exactly_once() {
        let mut w = World::clean(&[(1, 1), (1, 2)]);
        w.logs[1].observe(2, entry(1, 2, 2), Via::Live);
        let r = w.check();
        assert!(r.count(Check::ExactlyOnce) > 0, "{r:?}");
        assert!(r.anomalies_of(Anomaly::Duplicated) > 0, "{r:?}");
        assert_eq!(r.anomalies_of(Anomaly::Lost), 0, "{r:?}");
    }

    #[test]
    fn a_closing_connection_overlapping_the_next_is_checked_on_its_own() {
        let mut w = World::clean(&[(1, 1), (1, 2), (1, 3)]);
        // Connection 0 (the world's) delivered 1..=3; a closing connection 7 still brings
        // position 2 while connection 8 delivers it too: no fault, each is in order.
        w.logs[1].observe_on(7, 2, entry(1, 2, 2), Via::Live);
        w.logs[1].observe_on(8, 2, entry(1, 2, 2), Via::Live);
        w.logs[1].observe_on(8, 3, entry(1, 3, 3), Via::Live);
        w.logs[1].end_connection_of(7);
        w.logs[1].end_connection_of(8);
        let r = w.check();
        assert!(r.faults.is_empty(), "{r:?}");
        // Twice on one connection is still a fault.
        w.logs[1].observe_on(9, 3, entry(1, 3, 3), Via::Live);
        w.logs[1].observe_on(9, 3, entry(1, 3, 3), Via::Live);
        w.logs[1].end_connection_of(9);
        let r = w.check();
        assert!(r.count(Check::ExactlyOnce) > 0, "{r:?}");
    }

    #[test]
    fn a_sync_repeat_of_a_live_message_is_normal() {
        let mut w = World::clean(&[(1, 1), (1, 2)]);
        w.logs[1].observe(2, entry(1, 2, 2), Via::Sync);
        let r = w.check();
        assert!(r.faults.is_empty(), "{r:?}");
    }

    #[test]
    fn reordered_live_frames_fail_order() {
        let mut w = World::clean(&[]);
        let mut sends = HashMap::new();
        for (seq, n) in [(1u64, 1u64), (2, 2)] {
            let e = entry(1, n, seq);
            sends.insert(
                (1, n),
                SendRecord {
                    conv: e.conv,
                    body_hash: e.body_hash,
                    outcome: Outcome::Acked { seq, useq: seq },
                },
            );
            w.logs[0].observe(seq, e, Via::Own);
        }
        w.logs[1].observe(2, entry(1, 2, 2), Via::Live);
        w.logs[1].observe(1, entry(1, 1, 1), Via::Live);
        w.sends = sends;
        let r = w.check();
        assert!(r.count(Check::Order) > 0, "{r:?}");
    }

    #[test]
    fn a_renumbered_message_fails_consistency() {
        let mut w = World::clean(&[(1, 1), (1, 2)]);
        // Device b saw message 2 at seq 3.
        let e = w.logs[1].inbox.get_mut(&2).unwrap();
        e.seq = 3;
        let r = w.check();
        assert!(r.count(Check::Consistency) > 0, "{r:?}");
        assert!(r.anomalies_of(Anomaly::Divergent) > 0, "{r:?}");
    }

    #[test]
    fn a_phantom_fails_no_phantoms() {
        let mut w = World::clean(&[(1, 1)]);
        let mut ghost = entry(1, 99, 2);
        ghost.n = Some(99);
        w.logs[1].observe(2, ghost, Via::Live);
        let mut foreign = entry(1, 0, 3);
        foreign.n = None;
        w.logs[1].observe(3, foreign, Via::Live);
        let r = w.check();
        assert_eq!(r.count(Check::NoPhantoms), 2, "{r:?}");
    }

    #[test]
    fn an_altered_body_is_a_phantom() {
        let mut w = World::clean(&[(1, 1)]);
        w.logs[1].inbox.get_mut(&1).unwrap().body_hash ^= 1;
        let r = w.check();
        assert!(r.count(Check::NoPhantoms) > 0, "{r:?}");
        assert!(r.anomalies_of(Anomaly::Phantom) > 0, "{r:?}");
    }

    #[test]
    fn a_skipped_live_position_fails_gaps() {
        let mut w = World::clean(&[(1, 1), (1, 2), (1, 3)]);
        // Rebuild b's live stream without position 2, then let sync fill it in.
        let mut b = DeviceLog::new(2, "b".into());
        b.observe(1, entry(1, 1, 1), Via::Live);
        b.observe(3, entry(1, 3, 3), Via::Live);
        b.observe(2, entry(1, 2, 2), Via::Sync);
        w.logs[1] = b;
        let r = w.check();
        assert!(r.count(Check::Gaps) > 0, "{r:?}");
        assert_eq!(r.count(Check::ExactlyOnce), 0);
        // Skipped, not lost: sync filled the position in.
        assert!(r.anomalies_of(Anomaly::Skipped) > 0, "{r:?}");
        assert_eq!(r.anomalies_of(Anomaly::Lost), 0, "{r:?}");
    }

    #[test]
    fn own_sends_are_not_live_gaps() {
        let mut a = DeviceLog::new(1, "a".into());
        a.observe(1, entry(2, 1, 1), Via::Live);
        a.observe(3, entry(2, 2, 3), Via::Live);
        a.observe(2, entry(1, 1, 2), Via::Own);
        a.end_connection();
        assert!(a.online.faults.is_empty(), "{:?}", a.online);
    }

    #[test]
    fn anomalies_merge_with_their_examples() {
        let mut a = CheckResults::default();
        a.fault_as(Check::Consistency, Anomaly::StaleRead, || "stale".into());
        let mut b = CheckResults::default();
        b.fault(Check::Order, || "late".into());
        b.fault_as(Check::Consistency, Anomaly::StaleRead, || "again".into());
        a.merge(&b);
        assert_eq!(a.anomalies_of(Anomaly::StaleRead), 2);
        assert_eq!(a.anomalies_of(Anomaly::Reordered), 1);
        assert_eq!(
            a.anomaly_examples[&Anomaly::StaleRead],
            vec!["stale", "again"]
        );
        assert_eq!(a.count(Check::Consistency), 2);
    }

    #[test]
    fn merge_adds_counts_exactly() {
        let mut a = CheckResults::default();
        a.fault(Check::Order, || "x".into());
        a.messages_checked = 3;
        let mut b = CheckResults::default();
        b.fault(Check::Order, || "y".into());
        b.fault(Check::Gaps, || "z".into());
        b.messages_checked = 4;
        a.merge(&b);
        assert_eq!(a.count(Check::Order), 2);
        assert_eq!(a.count(Check::Gaps), 1);
        assert_eq!(a.messages_checked, 7);
        assert_eq!(a.examples[&Check::Order], vec!["x", "y"]);
    }

    #[test]
    fn conv_ids_round_trip() {
        for s in ["d:1:2", "g:77"] {
            assert_eq!(s.parse::<Conv>().unwrap().to_string(), s);
        }
        assert!("x:1".parse::<Conv>().is_err());
        assert!("d:1".parse::<Conv>().is_err());
        assert_eq!(parse_client_id("m12"), Some(12));
        assert_eq!(parse_client_id("zz"), None);
    }
}
