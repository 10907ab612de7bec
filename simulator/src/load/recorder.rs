//! The shard's records while it runs: every send attempt, the counters, the latency
//! histograms, the time series, close codes, faults found outside device logs, and notes.
//!
//! [`ShardRecords`] is the sink the shard's devices report to ([`DeviceEvents`]): the
//! client says what it observed, and this is where an observation becomes a latency from
//! the message's intended send time, a count and a point of the series. Everything here
//! ends up in the shard's [`ShardReport`](crate::records::ShardReport).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::checks::{self, Anomaly, Check, CheckResults, Conv, MsgKey, Outcome, SendRecord, Via};
use crate::client::events::DeviceEvents;
use crate::client::frames::MsgFrame;
use crate::client::ws::NO_NODE;
use crate::metrics::{self, BucketWire, Latency, LatencySet, LatencySummary, Series};
use crate::records::Progress;
use crate::records::counters::Counters;

/// A send as the registry keeps it.
#[derive(Debug, Clone, Copy)]
pub struct SendMeta {
    pub record: SendRecord,
    pub intended: Instant,
    pub body_len: u32,
    /// The node of the sending device when it sent ([`NO_NODE`] if unknown).
    pub node: u16,
}

/// What a shard records while it runs, shared by its users and its devices' readers.
pub struct ShardRecords {
    /// The run's time origin in this process, and the width of a series interval.
    epoch: Instant,
    interval: f64,
    /// Seconds after the epoch when the load started and ended (f64 bits).
    load_start: AtomicU64,
    load_end: AtomicU64,
    /// Every send attempt, by (sender, n).
    pub sends: DashMap<MsgKey, SendMeta>,
    /// Per local user, its acknowledged messages still waiting for their first
    /// `delivered`: conversation → seq → intended send time.
    receipts: Vec<Mutex<HashMap<Conv, BTreeMap<u64, Instant>>>>,
    pub counters: Counters,
    lat: Mutex<LatencySet>,
    series: Mutex<Series>,
    close_codes: Mutex<BTreeMap<u16, u64>>,
    /// Faults found outside device logs (history pages, malformed frames).
    online_faults: Mutex<CheckResults>,
    notes: Mutex<Vec<String>>,
    /// Whether the server serves presence (`None`: not probed).
    pub presence_supported: Mutex<Option<bool>>,
    /// Node names the servers answered with, numbered in the order first seen.
    nodes: Mutex<Vec<String>>,
    /// Reconnects after a connection the device had not closed: (seconds after the
    /// epoch when it dropped, seconds until the device was caught up again).
    recoveries: Mutex<Vec<(f64, f64)>>,
    /// Per conversation, the highest seq acknowledged so far (for the stale-read rule).
    acked_high: DashMap<Conv, u64>,
}

/// Microseconds from `from` to `to` (0 when `to` is earlier).
fn micros(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from)
        .as_micros()
        .min(u128::from(u64::MAX)) as u64
}

impl ShardRecords {
    /// Empty records for `users` local users, with series intervals of `interval` seconds
    /// from `epoch`.
    pub fn new(epoch: Instant, interval: f64, users: usize) -> Self {
        ShardRecords {
            epoch,
            interval,
            // NaN until the load starts: the progress says when it did.
            load_start: AtomicU64::new(f64::NAN.to_bits()),
            load_end: AtomicU64::new(f64::INFINITY.to_bits()),
            sends: DashMap::new(),
            receipts: (0..users).map(|_| Mutex::new(HashMap::new())).collect(),
            counters: Counters::default(),
            lat: Mutex::new(LatencySet::default()),
            series: Mutex::new(Series::default()),
            close_codes: Mutex::new(BTreeMap::new()),
            online_faults: Mutex::new(CheckResults::default()),
            notes: Mutex::new(Vec::new()),
            presence_supported: Mutex::new(None),
            nodes: Mutex::new(Vec::new()),
            recoveries: Mutex::new(Vec::new()),
            acked_high: DashMap::new(),
        }
    }

    pub fn load_start_secs(&self) -> f64 {
        f64::from_bits(self.load_start.load(Relaxed))
    }

    pub fn load_end_secs(&self) -> f64 {
        f64::from_bits(self.load_end.load(Relaxed))
    }

    pub fn set_load_start(&self, secs: f64) {
        self.load_start.store(secs.to_bits(), Relaxed);
    }

    pub fn set_load_end(&self, secs: f64) {
        self.load_end.store(secs.to_bits(), Relaxed);
    }

    pub fn note(&self, s: impl Into<String>) {
        let s = s.into();
        let mut n = self.notes.lock();
        if !n.contains(&s) {
            n.push(s);
        }
    }

    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().clone()
    }

    /// A reconnect that caught up `took` seconds after its connection dropped at `at`
    /// (seconds after the epoch): what a fault's recovery is measured by.
    pub fn recovered(&self, dropped: Instant, caught_up: Instant) {
        let at = dropped.saturating_duration_since(self.epoch).as_secs_f64();
        let took = caught_up.saturating_duration_since(dropped).as_secs_f64();
        self.recoveries.lock().push((at, took));
    }

    /// Every recovery so far, in the order they happened.
    pub fn recoveries(&self) -> Vec<(f64, f64)> {
        self.recoveries.lock().clone()
    }

    pub fn close_codes(&self) -> BTreeMap<u16, u64> {
        self.close_codes.lock().clone()
    }

    /// The histograms in their wire form.
    pub fn latency_wire(&self) -> BTreeMap<Latency, String> {
        self.lat.lock().encode()
    }

    /// The time series in its wire form.
    pub fn series_wire(&self) -> Vec<BucketWire> {
        self.series.lock().to_wire()
    }

    /// The faults found outside device logs so far.
    pub fn online_faults(&self) -> CheckResults {
        self.online_faults.lock().clone()
    }

    /// Bytes of message bodies sent and acknowledged.
    pub fn body_bytes_acked(&self) -> u64 {
        self.sends
            .iter()
            .filter(|e| matches!(e.value().record.outcome, Outcome::Acked { .. }))
            .map(|e| u64::from(e.value().body_len))
            .sum()
    }

    pub fn record(&self, which: Latency, micros: u64) {
        self.lat.lock().record(which, micros);
    }

    fn bucket(&self) -> u64 {
        (self.epoch.elapsed().as_secs_f64() / self.interval) as u64
    }

    pub fn series_delivery(&self, micros: u64) {
        let i = self.bucket();
        let mut s = self.series.lock();
        let b = s.at(i);
        b.deliveries += 1;
        metrics::record(&mut b.delivery, micros);
    }

    pub fn series_acked(&self) {
        let i = self.bucket();
        self.series.lock().at(i).acked += 1;
        self.counters.add(&self.counters.sends_acked, 1);
    }

    pub fn series_send(&self) {
        let i = self.bucket();
        self.series.lock().at(i).sends += 1;
    }

    pub fn series_error(&self) {
        let i = self.bucket();
        self.series.lock().at(i).errors += 1;
        self.counters.add(&self.counters.request_errors, 1);
    }

    pub fn fault(&self, check: Check, detail: impl FnOnce() -> String) {
        self.online_faults.lock().fault(check, detail);
    }

    /// Figures for the progress line.
    pub fn progress(&self) -> Progress {
        let c = self.counters.snapshot();
        let p99 = self
            .lat
            .lock()
            .get(Latency::SendToDelivery)
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0);
        let start = self.load_start_secs();
        let recent = self.bucket().checked_sub(1).and_then(|k| {
            let series = self.series.lock();
            let h = &series.buckets.get(&k)?.delivery;
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            (!h.is_empty()).then(|| [ms(0.5), ms(0.9), ms(0.99)])
        });
        Progress {
            load_start_secs: (!start.is_nan()).then_some(start),
            connected: c.connected,
            connects: c.connects,
            acked: c.sends_acked,
            deliveries: c.deliveries_live + c.deliveries_catch_up,
            errors: c.request_errors,
            p99_delivery_ms: p99,
            offered: c.sends_due,
            recent_delivery_ms: recent,
            faults: self.online_faults.lock().faults.clone(),
        }
    }

    /// Checks a history page: order within the page, and every message against what
    /// was sent and acknowledged.
    fn check_history_page(
        &self,
        who: &str,
        conv: &str,
        messages: &[MsgFrame],
        next_before: Option<u64>,
    ) {
        let Ok(conv) = conv.parse::<Conv>() else {
            self.fault(Check::NoPhantoms, || {
                format!("device {who}: history page of unknown conversation {conv:?}")
            });
            return;
        };
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        let mut r = self.online_faults.lock();
        checks::ordering::check_history_page(who, conv, &seqs, next_before, &mut r);
        for m in messages {
            let Some(n) = checks::parse_client_id(&m.id) else {
                r.fault(Check::NoPhantoms, || {
                    format!(
                        "device {who}: history of {conv} holds {}:{} which was never sent",
                        m.from, m.id
                    )
                });
                continue;
            };
            match self.sends.get(&(m.from, n)) {
                None => r.fault(Check::NoPhantoms, || {
                    format!(
                        "device {who}: history of {conv} holds {}:m{n} which was never sent",
                        m.from
                    )
                }),
                Some(s) => {
                    if s.record.conv != conv || s.record.body_hash != checks::body_hash(&m.body) {
                        r.fault(Check::NoPhantoms, || {
                            format!(
                                "device {who}: history of {conv} holds {}:m{n} altered",
                                m.from
                            )
                        });
                    }
                    if let Outcome::Acked { seq, .. } = s.record.outcome
                        && seq != m.seq
                    {
                        r.fault(Check::Consistency, || {
                            format!(
                                "device {who}: history of {conv} has {}:m{n} at seq {} but it was acknowledged as seq {seq}",
                                m.from, m.seq
                            )
                        });
                    }
                }
            }
        }
    }
}

impl DeviceEvents for ShardRecords {
    fn connected(&self) {
        self.counters.connected_up();
        self.counters.add(&self.counters.connects, 1);
    }

    fn closed_by_server(&self, code: u16) {
        *self.close_codes.lock().entry(code).or_default() += 1;
    }

    fn disconnected(&self, planned: bool) {
        if !planned {
            self.counters.add(&self.counters.disconnects_unexpected, 1);
        }
        self.counters.connected_down();
    }

    fn unmatched_frame(&self) {
        self.counters.add(&self.counters.unmatched_errors, 1);
    }

    fn fault(&self, check: Check, detail: &dyn Fn() -> String) {
        ShardRecords::fault(self, check, detail);
    }

    fn fault_as(&self, check: Check, kind: Anomaly, detail: &dyn Fn() -> String) {
        self.online_faults.lock().fault_as(check, kind, detail);
    }

    fn acked_high(&self, conv: Conv) -> u64 {
        self.acked_high.get(&conv).map_or(0, |s| *s)
    }

    fn node_index(&self, name: &str) -> u16 {
        let mut nodes = self.nodes.lock();
        match nodes.iter().position(|n| n == name) {
            Some(i) => i as u16,
            None if nodes.len() < usize::from(NO_NODE) => {
                nodes.push(name.to_owned());
                (nodes.len() - 1) as u16
            }
            None => NO_NODE,
        }
    }

    fn arrived(&self, key: Option<MsgKey>, via: Via, node: u16, at: Instant) {
        let sent = key.and_then(|k| self.sends.get(&k).map(|s| (s.intended, s.node)));
        let intended = sent.map(|(t, _)| t);
        match via {
            Via::Live => {
                self.counters.add(&self.counters.deliveries_live, 1);
                if let Some((_, from)) = sent
                    && from != NO_NODE
                    && node != NO_NODE
                {
                    let c = if from == node {
                        &self.counters.deliveries_same_node
                    } else {
                        &self.counters.deliveries_cross_node
                    };
                    self.counters.add(c, 1);
                }
                if let Some(t) = intended {
                    let us = micros(t, at);
                    {
                        let mut lat = self.lat.lock();
                        lat.record(Latency::SendToDelivery, us);
                        lat.record(Latency::ClientDelay, micros(at, Instant::now()));
                    }
                    self.series_delivery(us);
                }
            }
            Via::Sync => {
                self.counters.add(&self.counters.deliveries_catch_up, 1);
                if let Some(t) = intended {
                    self.record(Latency::SendToCatchUp, micros(t, at));
                }
            }
            Via::Own => {}
        }
    }

    fn acked(
        &self,
        user: u64,
        user_idx: u32,
        n: u64,
        conv: Conv,
        seq: u64,
        useq: u64,
        at: Instant,
    ) -> Option<u64> {
        let (intended, body_hash) = self.sends.get_mut(&(user, n)).map(|mut s| {
            s.record.outcome = Outcome::Acked { seq, useq };
            (s.intended, s.record.body_hash)
        })?;
        self.record(Latency::SendToSent, micros(intended, at));
        self.series_acked();
        let mut high = self.acked_high.entry(conv).or_insert(0);
        *high = (*high).max(seq);
        drop(high);
        if let Some(waiting) = self.receipts.get(user_idx as usize) {
            waiting
                .lock()
                .entry(conv)
                .or_default()
                .insert(seq, intended);
        }
        Some(body_hash)
    }

    fn receipt(&self, user_idx: u32, conv: Conv, seq: u64, at: Instant) {
        let done = match self.receipts.get(user_idx as usize) {
            Some(receipts) => match receipts.lock().get_mut(&conv) {
                Some(waiting) => {
                    let newer = waiting.split_off(&(seq + 1));
                    std::mem::replace(waiting, newer)
                }
                None => BTreeMap::new(),
            },
            None => BTreeMap::new(),
        };
        if !done.is_empty() {
            let mut lat = self.lat.lock();
            for intended in done.values() {
                lat.record(Latency::SendToDelivered, micros(*intended, at));
            }
        }
        self.counters
            .add(&self.counters.receipts, done.len() as u64);
    }

    fn refused(&self, user: u64, n: u64) {
        if let Some(mut s) = self.sends.get_mut(&(user, n)) {
            s.record.outcome = Outcome::Refused;
        }
    }

    fn history_page(
        &self,
        user: u64,
        device: &str,
        conv: &str,
        messages: &[MsgFrame],
        next_before: Option<u64>,
    ) {
        let who = format!("{user}/{device}");
        self.check_history_page(&who, conv, messages, next_before);
    }
}

/// Percentile summaries of a report's histograms.
pub fn summaries(set: &LatencySet) -> BTreeMap<Latency, Option<LatencySummary>> {
    Latency::ALL
        .iter()
        .map(|&l| (l, set.get(l).and_then(LatencySummary::of)))
        .collect()
}
