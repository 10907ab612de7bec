//! Every fault the checks find, classified in the terms Jepsen's checkers use: what a
//! user of the history would call it, rather than which rule caught it. One check can
//! find anomalies of several kinds (`exactly_once` finds lost and duplicated messages),
//! and one kind can come from several checks; the report shows both tables.

use serde::{Deserialize, Serialize};

use super::Check;

/// A kind of anomaly in the histories the devices ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anomaly {
    /// An acknowledged message missing from a participant device at the end, or a
    /// position of an inbox or a conversation nobody ever received.
    Lost,
    /// One message at two places of a device's inbox, or delivered live twice.
    Duplicated,
    /// Messages that came, or sit, out of their order.
    Reordered,
    /// A message nobody sent, or one changed on the way.
    Phantom,
    /// A read that missed a message whose `sent` had already come back before the read
    /// was made.
    StaleRead,
    /// Devices that disagree on what a position or a seq holds.
    Divergent,
    /// A position the live stream skipped, which a later `sync` filled in: nothing was
    /// lost, but a device was shown its inbox with a hole for a while.
    Skipped,
    /// A device whose history could not be read to the end, so nothing about it is
    /// proven.
    Unverified,
}

impl Anomaly {
    pub const ALL: [Anomaly; 8] = [
        Anomaly::Lost,
        Anomaly::Duplicated,
        Anomaly::Reordered,
        Anomaly::Phantom,
        Anomaly::StaleRead,
        Anomaly::Divergent,
        Anomaly::Skipped,
        Anomaly::Unverified,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Anomaly::Lost => "lost",
            Anomaly::Duplicated => "duplicated",
            Anomaly::Reordered => "reordered",
            Anomaly::Phantom => "phantom",
            Anomaly::StaleRead => "stale read",
            Anomaly::Divergent => "divergent",
            Anomaly::Skipped => "skipped",
            Anomaly::Unverified => "unverified",
        }
    }

    /// What it means, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Anomaly::Lost => {
                "an acknowledged message, or a stored position, that a participant device never got"
            }
            Anomaly::Duplicated => "a message held twice by one device, or delivered twice live",
            Anomaly::Reordered => "messages delivered or held out of their conversation's order",
            Anomaly::Phantom => "a message nobody sent, or one altered on the way",
            Anomaly::StaleRead => {
                "a history read that missed a message already acknowledged when it was made"
            }
            Anomaly::Divergent => "devices disagreeing on what a seq or an inbox position holds",
            Anomaly::Skipped => "a position the live stream skipped, filled in by a later sync",
            Anomaly::Unverified => "a device whose inbox could not be synced to the end",
        }
    }

    /// The kind a check's fault is when its site does not say otherwise.
    pub fn of(check: Check) -> Anomaly {
        match check {
            Check::Order => Anomaly::Reordered,
            Check::Gaps => Anomaly::Lost,
            Check::ExactlyOnce => Anomaly::Duplicated,
            Check::NoPhantoms => Anomaly::Phantom,
            Check::Consistency => Anomaly::Divergent,
        }
    }
}
