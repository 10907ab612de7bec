//! Consistency: all devices of all participants end with the same (seq → message) map of
//! every conversation, and it is the seq the sender was told.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Anomaly, Check, CheckResults, Conv, DeviceLog, Entry, MsgKey, Outcome, SendRecord};

/// The one history every device must agree on: for each conversation, seq → the message
/// the first device holding that seq has. Disagreements are recorded as faults: another
/// message at the same seq, one message at two seqs, or a seq other than the `sent` one.
pub(crate) fn canonical(
    logs: &[&DeviceLog],
    sends: &HashMap<MsgKey, SendRecord>,
    r: &mut CheckResults,
) -> HashMap<Conv, BTreeMap<u64, Entry>> {
    let mut map: HashMap<Conv, BTreeMap<u64, Entry>> = HashMap::new();
    let mut seq_of: HashMap<MsgKey, (Conv, u64, String)> = HashMap::new();
    let mut reported: HashSet<(Conv, u64)> = HashSet::new();
    for log in logs {
        let who = log.who();
        for e in log.inbox.values() {
            let slot = map.entry(e.conv).or_default();
            match slot.get(&e.seq) {
                None => {
                    slot.insert(e.seq, *e);
                }
                Some(c) if c.from == e.from && c.n == e.n && c.body_hash == e.body_hash => {}
                Some(c) => {
                    if reported.insert((e.conv, e.seq)) {
                        let c = *c;
                        r.fault(Check::Consistency, || {
                            format!(
                                "{} seq {}: device {who} has {} but another device has {}",
                                e.conv,
                                e.seq,
                                msg(e),
                                msg(&c)
                            )
                        });
                    }
                }
            }
            let Some(key) = e.key() else { continue };
            match seq_of.get(&key) {
                None => {
                    seq_of.insert(key, (e.conv, e.seq, who.clone()));
                }
                Some((conv, seq, other)) if (*conv, *seq) != (e.conv, e.seq) => {
                    let (conv, seq, other) = (*conv, *seq, other.clone());
                    r.fault(Check::Consistency, || {
                        format!(
                            "message {}:m{} is {conv} seq {seq} on device {other} but {} seq {} on device {who}",
                            key.0, key.1, e.conv, e.seq
                        )
                    });
                }
                Some(_) => {}
            }
            if let Some(SendRecord {
                outcome: Outcome::Acked { seq, .. },
                conv,
                ..
            }) = sends.get(&key)
                && (*conv, *seq) != (e.conv, e.seq)
            {
                let (conv, seq) = (*conv, *seq);
                r.fault(Check::Consistency, || {
                    format!(
                        "message {}:m{} was acknowledged as {conv} seq {seq} but device {who} has it at {} seq {}",
                        key.0, key.1, e.conv, e.seq
                    )
                });
            }
        }
    }
    r.conversations_checked = map.len() as u64;
    map
}

fn msg(e: &Entry) -> String {
    match e.n {
        Some(n) => format!("{}:m{n}", e.from),
        None => format!("{}:<foreign id>", e.from),
    }
}

/// Every device of every participant holds every message of the canonical history
/// (those already reported lost by the delivery check are not counted again).
pub(crate) fn check_devices_agree(
    logs: &[&DeviceLog],
    canonical: &HashMap<Conv, BTreeMap<u64, Entry>>,
    lost: &HashSet<(usize, MsgKey)>,
    participants: &dyn Fn(&Conv) -> Option<Vec<u64>>,
    devices_of: &dyn Fn(u64) -> Vec<usize>,
    r: &mut CheckResults,
) {
    for (conv, seqs) in canonical {
        let Some(users) = participants(conv) else {
            continue;
        };
        for d in users.into_iter().flat_map(devices_of) {
            let Some(log) = logs.get(d) else { continue };
            for (seq, e) in seqs {
                let held = match e.key() {
                    Some(k) => log.holds(&k) || lost.contains(&(d, k)),
                    None => log.inbox.values().any(|x| x == e),
                };
                if !held {
                    let who = log.who();
                    r.fault_as(Check::Consistency, Anomaly::Lost, || {
                        format!(
                            "device {who} lacks {conv} seq {seq} ({}) that another device has",
                            msg(e)
                        )
                    });
                }
            }
        }
    }
}
