//! Delivery: every acknowledged message is on every participant device exactly once, and
//! nothing is there that was not sent.

use std::collections::{HashMap, HashSet};

use super::{Anomaly, Check, CheckResults, Conv, DeviceLog, MsgKey, Outcome, SendRecord};

/// A message stored at two inbox positions of one device.
pub(crate) fn check_duplicates(log: &DeviceLog, r: &mut CheckResults) {
    let who = log.who();
    for ((from, n), at) in &log.positions {
        if at.len() > 1 {
            r.fault(Check::ExactlyOnce, || {
                format!("device {who}: message {from}:m{n} is at inbox positions {at:?}")
            });
        }
    }
}

/// Entries nobody sent, or sent with another body or to another conversation.
pub(crate) fn check_phantoms(
    log: &DeviceLog,
    sends: &HashMap<MsgKey, SendRecord>,
    r: &mut CheckResults,
) {
    let who = log.who();
    for (useq, e) in &log.inbox {
        let Some(key) = e.key() else {
            r.fault(Check::NoPhantoms, || {
                format!(
                    "device {who}: inbox position {useq} holds a message from {} with an id this run never used",
                    e.from
                )
            });
            continue;
        };
        match sends.get(&key) {
            None => r.fault(Check::NoPhantoms, || {
                format!(
                    "device {who}: inbox position {useq} holds {}:m{} in {}, which was never sent",
                    key.0, key.1, e.conv
                )
            }),
            Some(s) if s.conv != e.conv || s.body_hash != e.body_hash => {
                r.fault(Check::NoPhantoms, || {
                    format!(
                        "device {who}: {}:m{} arrived altered (sent to {}, arrived in {}{})",
                        key.0,
                        key.1,
                        s.conv,
                        e.conv,
                        if s.body_hash != e.body_hash {
                            ", body changed"
                        } else {
                            ""
                        }
                    )
                })
            }
            Some(_) => {}
        }
    }
}

/// Every acknowledged message is held by every device of every participant. Returns the
/// (device index, message) pairs found missing, so other checks do not count them again.
pub(crate) fn check_acknowledged(
    logs: &[&DeviceLog],
    sends: &HashMap<MsgKey, SendRecord>,
    participants: &dyn Fn(&Conv) -> Option<Vec<u64>>,
    devices_of: &dyn Fn(u64) -> Vec<usize>,
    r: &mut CheckResults,
) -> HashSet<(usize, MsgKey)> {
    let mut lost = HashSet::new();
    let mut cache: HashMap<Conv, Vec<usize>> = HashMap::new();
    for (key, s) in sends {
        let Outcome::Acked { seq, .. } = s.outcome else {
            continue;
        };
        r.messages_checked += 1;
        let devices = cache.entry(s.conv).or_insert_with(|| {
            participants(&s.conv)
                .unwrap_or_default()
                .into_iter()
                .flat_map(devices_of)
                .collect()
        });
        for &d in devices.iter() {
            let Some(log) = logs.get(d) else { continue };
            if !log.holds(key) {
                lost.insert((d, *key));
                let who = log.who();
                r.fault_as(Check::ExactlyOnce, Anomaly::Lost, || {
                    format!(
                        "device {who}: acknowledged message {}:m{} ({} seq {seq}) never arrived",
                        key.0, key.1, s.conv
                    )
                });
            }
        }
    }
    lost
}
