//! Order and gaps: the live stream comes in inbox order with nothing skipped but the
//! device's own sends; along a device's inbox every conversation's seqs increase; once
//! sync has filled in, a device's inbox and every conversation have no holes.

use std::collections::{BTreeMap, HashMap};

use super::{Anomaly, Check, CheckResults, Conv, DeviceLog, Entry, Epoch};

/// A live `msg` at `useq` on connection `conn`: it must come after every live frame of
/// that connection, and never twice on it.
pub(super) fn on_live(log: &mut DeviceLog, conn: u64, useq: u64) {
    let who = log.who();
    let epoch = log.epochs.entry(conn).or_default();
    if !epoch.live_set.insert(useq) {
        log.online.fault(Check::ExactlyOnce, || {
            format!("device {who}: inbox position {useq} delivered live twice on one connection")
        });
        return;
    }
    if let Some(&last) = epoch.live.last()
        && useq < last
    {
        log.online.fault(Check::Order, || {
            format!("device {who}: live inbox position {useq} arrived after {last}")
        });
    }
    epoch.live.push(useq);
}

/// At the end of a connection: between two consecutive live frames, every skipped
/// position must be one of the device's own sends (which come as `sent`, not `msg`).
pub(super) fn check_live_gaps(log: &mut DeviceLog, epoch: &Epoch) {
    let mut faults = Vec::new();
    for pair in epoch.live.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b <= a {
            continue; // already an order fault
        }
        let mut u = a + 1;
        while u < b {
            if !epoch.own.contains(&u) && !epoch.live_set.contains(&u) {
                let start = u;
                while u < b && !epoch.own.contains(&u) && !epoch.live_set.contains(&u) {
                    u += 1;
                }
                faults.push((start, u - 1, a, b));
            }
            u += 1;
        }
    }
    let who = log.who();
    for (from, to, a, b) in faults {
        for _ in from..=to {
            log.online.fault_as(Check::Gaps, Anomaly::Skipped, || {
                format!(
                    "device {who}: the live stream skipped inbox positions {from}..={to} (between {a} and {b})"
                )
            });
        }
    }
}

/// After the final sync: the inbox holds 1..=max with no hole, and each conversation's
/// seqs increase along it.
pub(crate) fn check_inbox(log: &DeviceLog, r: &mut CheckResults) {
    let who = log.who();
    let mut expected = 1u64;
    for &useq in log.inbox.keys() {
        if useq > expected {
            let (from, to) = (expected, useq - 1);
            for _ in from..=to {
                r.fault(Check::Gaps, || {
                    format!(
                        "device {who}: inbox positions {from}..={to} missing after the final sync"
                    )
                });
            }
        }
        expected = useq + 1;
    }
    let mut last: HashMap<Conv, (u64, u64)> = HashMap::new();
    for (&useq, e) in &log.inbox {
        if let Some(&(seq, at)) = last.get(&e.conv)
            && e.seq <= seq
        {
            r.fault(Check::Order, || {
                format!(
                    "device {who}: {} seq {} at inbox position {useq} comes after seq {seq} at {at}",
                    e.conv, e.seq
                )
            });
        }
        last.insert(e.conv, (e.seq, useq));
    }
}

/// Every conversation's seqs, over all devices, are 1..=max.
pub(crate) fn check_conversation_gaps(
    canonical: &HashMap<Conv, BTreeMap<u64, Entry>>,
    r: &mut CheckResults,
) {
    for (conv, seqs) in canonical {
        let mut expected = 1u64;
        for &seq in seqs.keys() {
            if seq > expected {
                let (from, to) = (expected, seq - 1);
                for _ in from..=to {
                    r.fault(Check::Gaps, || {
                        format!("{conv}: seqs {from}..={to} reached no device")
                    });
                }
            }
            expected = seq + 1;
        }
    }
}

/// A history page (newest first) must have strictly decreasing, consecutive seqs, and
/// `next_before` must be its oldest seq (or null when the page reaches seq 1).
pub fn check_history_page(
    who: &str,
    conv: Conv,
    seqs: &[u64],
    next_before: Option<u64>,
    r: &mut CheckResults,
) {
    for w in seqs.windows(2) {
        if w[1] + 1 != w[0] {
            let (a, b) = (w[0], w[1]);
            let check = if b >= a { Check::Order } else { Check::Gaps };
            r.fault(check, || {
                format!("device {who}: history page of {conv} has seq {b} right after {a}")
            });
        }
    }
    if let Some(&oldest) = seqs.last() {
        let expected = (oldest > 1).then_some(oldest);
        if next_before != expected {
            r.fault(Check::Gaps, || {
                format!(
                    "device {who}: history page of {conv} ends at seq {oldest} but next_before is {next_before:?}"
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_pages() {
        let mut r = CheckResults::default();
        let c = Conv::direct(1, 2);
        check_history_page("x", c, &[5, 4, 3], Some(3), &mut r);
        check_history_page("x", c, &[2, 1], None, &mut r);
        check_history_page("x", c, &[], None, &mut r);
        assert!(r.faults.is_empty(), "{r:?}");
        check_history_page("x", c, &[5, 3], Some(3), &mut r);
        assert_eq!(r.count(Check::Gaps), 1);
        check_history_page("x", c, &[3, 4], Some(4), &mut r);
        assert_eq!(r.count(Check::Order), 1);
        check_history_page("x", c, &[2, 1], Some(1), &mut r);
        assert_eq!(r.count(Check::Gaps), 2);
    }
}
