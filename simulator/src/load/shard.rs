//! A shard: a contiguous block of users with their devices, driven by one Goose attack in
//! one process, from setup (groups, feature probes) through the load to the final sync and
//! the checks. A run has one shard in-process, or several in worker processes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use chat_server::auth::Auth;
use dashmap::DashMap;
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::checks::{self, Check, CheckResults, Conv, MsgKey, SendRecord};
use crate::client::http::{self, Probe};
use crate::client::ws::Device;
use crate::clock::unix_ms;
use crate::graph::Graph;
use crate::metrics::{Latency, LatencySet, LatencySummary, Series};
use crate::records::counters::Counters;
use crate::records::{Progress, ShardReport};
use crate::rng::Rng;
use crate::scenario::Scenario;

/// What a shard is asked to do. Workers receive it as JSON on standard input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardJob {
    pub scenario: Scenario,
    pub shard: u32,
    pub shards: u32,
    /// Global user indices [user_lo, user_hi) of this shard.
    pub user_lo: u64,
    pub user_hi: u64,
    /// Global user id = user_base + global index + 1.
    pub user_base: u64,
    pub http_url: String,
    pub ws_url: String,
    pub jwt_secret: String,
    /// The run's time origin (ms since the Unix epoch): interval i of the time series
    /// starts i × sample interval after it, on every process.
    pub epoch_unix_ms: u64,
    /// Where Goose writes its HTML report.
    pub goose_report: Option<String>,
}

/// Why a shard could not run.
#[derive(Debug, Error)]
pub enum ShardError {
    #[error("bad JWT secret: {0}")]
    Secret(String),
    #[error("Goose failed: {0}")]
    Goose(String),
    #[error("{0}")]
    Histogram(#[from] crate::metrics::HistogramError),
}

/// A user of the shard.
pub struct UserState {
    pub id: u64,
    pub idx: u32,
    pub devices: Vec<Arc<Device>>,
    /// The user's acknowledged messages still waiting for their first `delivered`:
    /// conversation → seq → intended send time.
    pub receipts: Mutex<HashMap<Conv, BTreeMap<u64, Instant>>>,
    /// The number of the user's last send (client ids are `m<n>`).
    pub next_n: AtomicU64,
}

/// A send as the registry keeps it.
#[derive(Debug, Clone, Copy)]
pub struct SendMeta {
    pub record: SendRecord,
    pub intended: Instant,
    pub body_len: u32,
}

/// A group the server created.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub id: u64,
    pub conv: Conv,
    pub members: Vec<u64>,
}

/// Everything a shard's users and reader tasks share.
pub struct ShardCtx {
    pub scenario: Scenario,
    pub shard: u32,
    pub http_url: String,
    pub ws_url: String,
    auth: Auth,
    /// The run's time origin in this process.
    pub epoch: Instant,
    epoch_unix_ms: u64,
    /// Seconds after the epoch when the load started and ended (f64 bits).
    load_start: AtomicU64,
    load_end: AtomicU64,
    pub users: Vec<UserState>,
    /// Global id of local user i is `first_id + i`.
    pub first_id: u64,
    pub graph: Graph,
    /// Created groups, by plan index.
    pub groups: RwLock<Vec<Option<GroupInfo>>>,
    group_index: RwLock<HashMap<u64, usize>>,
    pub groups_supported: Mutex<Option<bool>>,
    pub presence_supported: Mutex<Option<bool>>,
    /// Every send attempt, by (sender, n).
    pub sends: DashMap<MsgKey, SendMeta>,
    pub counters: Counters,
    lat: Mutex<LatencySet>,
    series: Mutex<Series>,
    pub close_codes: Mutex<BTreeMap<u16, u64>>,
    /// Faults found outside device logs (history pages, malformed frames).
    online_faults: Mutex<CheckResults>,
    pub timeout: Duration,
    notes: Mutex<Vec<String>>,
}

/// The device kinds (indices into `population.device_kinds`) of the user with global index
/// `global_idx`: ⌊mean⌋ or ⌈mean⌉ devices so the average is the scenario's.
pub fn plan_devices(scenario: &Scenario, global_idx: u64) -> Vec<usize> {
    let mut rng = Rng::derive(scenario.run.seed, &[0x6465_7673, global_idx]);
    let mean = scenario.population.devices_per_user;
    let count = mean.floor() as usize + usize::from(rng.chance(mean.fract()));
    let kinds = &scenario.population.device_kinds;
    let total: f64 = kinds.iter().map(|k| k.share).sum();
    (0..count.max(1))
        .map(|_| {
            let mut x = rng.f64() * total;
            for (i, k) in kinds.iter().enumerate() {
                if x < k.share {
                    return i;
                }
                x -= k.share;
            }
            kinds.len() - 1
        })
        .collect()
}

/// Devices of the users [lo, hi).
pub fn count_devices(scenario: &Scenario, lo: u64, hi: u64) -> u64 {
    (lo..hi)
        .map(|i| plan_devices(scenario, i).len() as u64)
        .sum()
}

impl ShardCtx {
    /// Builds the shard's users, devices and graph.
    pub fn new(job: &ShardJob) -> Result<Arc<ShardCtx>, ShardError> {
        let auth = Auth::new(&job.jwt_secret).map_err(|e| ShardError::Secret(e.to_string()))?;
        let s = &job.scenario;
        let n = (job.user_hi - job.user_lo) as usize;
        let first_id = job.user_base + job.user_lo + 1;
        let users = (0..n)
            .map(|i| {
                let id = first_id + i as u64;
                let devices = plan_devices(s, job.user_lo + i as u64)
                    .into_iter()
                    .enumerate()
                    .map(|(d, kind)| {
                        let name = format!("d{d}-{}", s.population.device_kinds[kind].name);
                        Arc::new(Device::new(id, i as u32, name, kind))
                    })
                    .collect();
                UserState {
                    id,
                    idx: i as u32,
                    devices,
                    receipts: Mutex::new(HashMap::new()),
                    next_n: AtomicU64::new(0),
                }
            })
            .collect();
        // The epoch in this process's monotonic clock.
        let behind = unix_ms().saturating_sub(job.epoch_unix_ms);
        let now = Instant::now();
        let epoch = now
            .checked_sub(Duration::from_millis(behind))
            .unwrap_or(now);
        Ok(Arc::new(ShardCtx {
            graph: Graph::build(s, n, job.shard),
            scenario: s.clone(),
            shard: job.shard,
            http_url: job.http_url.clone(),
            ws_url: job.ws_url.clone(),
            auth,
            epoch,
            epoch_unix_ms: job.epoch_unix_ms,
            load_start: AtomicU64::new(0f64.to_bits()),
            load_end: AtomicU64::new(f64::INFINITY.to_bits()),
            users,
            first_id,
            groups: RwLock::new(Vec::new()),
            group_index: RwLock::new(HashMap::new()),
            groups_supported: Mutex::new(None),
            presence_supported: Mutex::new(None),
            sends: DashMap::new(),
            counters: Counters::default(),
            lat: Mutex::new(LatencySet::default()),
            series: Mutex::new(Series::default()),
            close_codes: Mutex::new(BTreeMap::new()),
            online_faults: Mutex::new(CheckResults::default()),
            timeout: Duration::from_secs_f64(s.run.request_timeout_secs),
            notes: Mutex::new(Vec::new()),
        }))
    }

    /// A token for a device, valid for a day.
    pub fn token(&self, user: u64, device: &str) -> String {
        let exp = unix_ms() / 1000 + 86_400;
        match device.parse() {
            Ok(d) => self.auth.issue(user, &d, exp),
            Err(_) => String::new(),
        }
    }

    pub fn now_secs(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// The instant `t` seconds after the epoch.
    pub fn at(&self, t: f64) -> Instant {
        self.epoch + Duration::from_secs_f64(t.max(0.0))
    }

    pub fn load_start_secs(&self) -> f64 {
        f64::from_bits(self.load_start.load(Relaxed))
    }

    pub fn load_end_secs(&self) -> f64 {
        f64::from_bits(self.load_end.load(Relaxed))
    }

    pub fn user(&self, idx: u32) -> &UserState {
        &self.users[idx as usize]
    }

    /// The local index of a global user id in this shard.
    pub fn local(&self, id: u64) -> Option<u32> {
        let i = id.checked_sub(self.first_id)?;
        (i < self.users.len() as u64).then_some(i as u32)
    }

    pub fn group(&self, plan_index: usize) -> Option<GroupInfo> {
        self.groups.read().get(plan_index).cloned().flatten()
    }

    pub fn note(&self, s: impl Into<String>) {
        let s = s.into();
        let mut n = self.notes.lock();
        if !n.contains(&s) {
            n.push(s);
        }
    }

    pub fn record(&self, which: Latency, micros: u64) {
        self.lat.lock().record(which, micros);
    }

    fn bucket(&self) -> u64 {
        (self.now_secs() / self.scenario.run.sample_interval_secs) as u64
    }

    pub fn series_delivery(&self, micros: u64) {
        let i = self.bucket();
        let mut s = self.series.lock();
        let b = s.at(i);
        b.deliveries += 1;
        crate::metrics::record(&mut b.delivery, micros);
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

    /// Checks a history page: order within the page, and every message against what
    /// was sent and acknowledged.
    pub fn check_history_page(
        &self,
        dev: &Device,
        conv: &str,
        messages: &[crate::client::frames::MsgFrame],
        next_before: Option<u64>,
    ) {
        let who = format!("{}/{}", dev.user, dev.id);
        let Ok(conv) = conv.parse::<Conv>() else {
            self.fault(Check::NoPhantoms, || {
                format!("device {who}: history page of unknown conversation {conv:?}")
            });
            return;
        };
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        let mut r = self.online_faults.lock();
        checks::ordering::check_history_page(&who, conv, &seqs, next_before, &mut r);
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
                    if let checks::Outcome::Acked { seq, .. } = s.record.outcome
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

    /// Figures for the progress line.
    pub fn progress(&self) -> Progress {
        let c = self.counters.snapshot();
        let p99 = self
            .lat
            .lock()
            .get(Latency::SendToDelivery)
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0);
        Progress {
            connected: c.connected,
            acked: c.sends_acked,
            deliveries: c.deliveries_live + c.deliveries_catch_up,
            errors: c.request_errors,
            p99_delivery_ms: p99,
        }
    }

    /// Probes optional features and creates the scenario's groups.
    async fn setup(self: &Arc<Self>) {
        let client = http::client();
        let s = &self.scenario;
        if s.traffic.presence_pulls_per_user_per_day > 0.0 && !self.users.is_empty() {
            let u = &self.users[0];
            let token = self.token(u.id, &u.devices[0].id);
            let probe = http::probe_presence(&client, &self.http_url, &token, u.id).await;
            let supported = matches!(probe, Probe::Supported);
            *self.presence_supported.lock() = Some(supported);
            if !supported {
                self.note(format!(
                    "presence pulls not exercised: the server lacks presence ({probe})"
                ));
            }
        }
        if s.groups.share <= 0.0 || self.graph.groups.is_empty() {
            return;
        }
        let plans: Vec<(usize, Vec<u64>)> = self
            .graph
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                (
                    i,
                    g.members
                        .iter()
                        .map(|&m| self.first_id + u64::from(m))
                        .collect(),
                )
            })
            .collect();
        *self.groups.write() = vec![None; plans.len()];
        // The first group tells whether the server serves groups at all.
        let mut rest = plans.into_iter();
        let Some((i0, m0)) = rest.next() else { return };
        let first = self.create_group(&client, i0, &m0).await;
        match first {
            Probe::Supported => *self.groups_supported.lock() = Some(true),
            Probe::Missing(_) => {
                *self.groups_supported.lock() = Some(false);
                self.note(format!(
                    "group messages not exercised: the server lacks groups ({first}); their share ({:.0} %) was sent as direct messages",
                    s.groups.share * 100.0
                ));
                return;
            }
            Probe::Failed(_) => {
                *self.groups_supported.lock() = Some(true);
            }
        }
        let this = self.clone();
        futures_util::stream::iter(rest)
            .for_each_concurrent(32, |(i, members)| {
                let this = this.clone();
                let client = client.clone();
                async move {
                    this.create_group(&client, i, &members).await;
                }
            })
            .await;
    }

    async fn create_group(&self, client: &reqwest::Client, i: usize, members: &[u64]) -> Probe {
        let Some((&creator, others)) = members.split_first() else {
            return Probe::Failed("empty group".into());
        };
        let Some(cu) = self.local(creator) else {
            return Probe::Failed("creator outside the shard".into());
        };
        let token = self.token(creator, &self.user(cu).devices[0].id);
        let name = format!("sim-{}-{i}", self.shard);
        match http::create_group(client, &self.http_url, &token, &name, others).await {
            Ok((id, conv)) => {
                let conv = conv.parse::<Conv>().unwrap_or(Conv::Group(id));
                self.groups.write()[i] = Some(GroupInfo {
                    id,
                    conv,
                    members: members.to_vec(),
                });
                self.group_index.write().insert(id, i);
                self.counters.add(&self.counters.requests, 1);
                Probe::Supported
            }
            Err(p) => {
                if matches!(p, Probe::Failed(_)) {
                    self.counters.add(&self.counters.requests, 1);
                    self.counters.add(&self.counters.request_errors, 1);
                }
                p
            }
        }
    }

    /// The users of a conversation, when this shard knows it.
    fn participants(&self, conv: &Conv) -> Option<Vec<u64>> {
        match conv {
            Conv::Direct(a, b) => {
                (self.local(*a).is_some() && self.local(*b).is_some()).then(|| vec![*a, *b])
            }
            Conv::Group(g) => {
                let i = *self.group_index.read().get(g)?;
                self.group(i).map(|gi| gi.members)
            }
        }
    }

    /// After the load: let answers arrive, bring every device online, sync each to the end
    /// of its inbox, close everything, and run the checks.
    async fn finish(self: &Arc<Self>) -> CheckResults {
        let drain = Duration::from_secs_f64(self.scenario.run.drain_secs);
        let deadline = Instant::now() + drain;
        self.settle(deadline).await;
        let devices: Vec<Arc<Device>> = self
            .users
            .iter()
            .flat_map(|u| u.devices.iter().cloned())
            .collect();
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let timeout = self.timeout;
        futures_util::stream::iter(devices.iter().cloned())
            .for_each_concurrent(128, |d| {
                let this = self.clone();
                let failures = failures.clone();
                async move {
                    let mut last = None;
                    for _ in 0..3 {
                        let r = async {
                            d.connect(&this, timeout).await?;
                            d.sync_to_end(timeout).await
                        }
                        .await;
                        match r {
                            Ok(()) => {
                                last = None;
                                break;
                            }
                            Err(e) => {
                                last = Some(e);
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                    if let Some(e) = last {
                        failures
                            .lock()
                            .push(format!("device {}/{}: {e}", d.user, d.id));
                    }
                }
            })
            .await;
        // Receipts and any last live frames.
        self.settle(Instant::now() + Duration::from_secs(2).min(drain))
            .await;
        for d in &devices {
            d.disconnect();
        }
        futures_util::stream::iter(devices.iter().cloned())
            .for_each_concurrent(256, |d| async move {
                d.wait_readers(Duration::from_secs(5)).await;
            })
            .await;
        let logs_guard: Vec<_> = devices.iter().map(|d| d.log.lock()).collect();
        let logs: Vec<&checks::DeviceLog> = logs_guard.iter().map(|g| &**g).collect();
        let mut offsets = Vec::with_capacity(self.users.len() + 1);
        let mut acc = 0usize;
        for u in &self.users {
            offsets.push(acc);
            acc += u.devices.len();
        }
        offsets.push(acc);
        let sends: HashMap<MsgKey, SendRecord> = self
            .sends
            .iter()
            .map(|e| (*e.key(), e.value().record))
            .collect();
        let devices_of = |user: u64| -> Vec<usize> {
            match self.local(user) {
                Some(i) => (offsets[i as usize]..offsets[i as usize + 1]).collect(),
                None => Vec::new(),
            }
        };
        let participants = |c: &Conv| self.participants(c);
        let mut r = checks::run_final(&logs, &sends, &participants, &devices_of);
        r.merge(&self.online_faults.lock());
        for f in failures.lock().iter() {
            r.fault(Check::Gaps, || {
                format!("{f}: could not sync to the end, so its history is unchecked")
            });
        }
        r
    }

    /// Waits until no message has arrived for half a second, or the deadline.
    async fn settle(&self, deadline: Instant) {
        let count = || {
            let c = self.counters.snapshot();
            c.deliveries_live + c.deliveries_catch_up + c.receipts
        };
        let mut last = count();
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = count();
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= Duration::from_millis(500) {
                return;
            }
        }
    }
}

/// Runs a whole shard: setup, the Goose attack, the final sync and the checks.
pub async fn run(
    ctx: Arc<ShardCtx>,
    goose_report: Option<String>,
) -> Result<ShardReport, ShardError> {
    ctx.setup().await;
    let start = ctx.now_secs();
    ctx.load_start.store(start.to_bits(), Relaxed);
    let s = &ctx.scenario;
    ctx.load_end.store(
        (start + (s.run.ramp_up_secs + s.run.duration_secs) as f64).to_bits(),
        Relaxed,
    );
    let goose = super::user::attack(&ctx, goose_report).await?;
    let end = ctx.now_secs();
    ctx.load_end.store(end.to_bits(), Relaxed);
    let checks = ctx.finish().await;
    let body_bytes_acked = ctx
        .sends
        .iter()
        .filter(|e| matches!(e.value().record.outcome, checks::Outcome::Acked { .. }))
        .map(|e| u64::from(e.value().body_len))
        .sum();
    let latency = ctx.lat.lock().encode();
    let series = ctx.series.lock().to_wire();
    let groups_supported = *ctx.groups_supported.lock();
    let presence_supported = *ctx.presence_supported.lock();
    let (groups_created, groups_missing) = {
        let groups = ctx.groups.read();
        let created = groups.iter().filter(|g| g.is_some()).count() as u64;
        (created, groups.len() as u64 - created)
    };
    let close_codes = ctx.close_codes.lock().clone();
    let notes = ctx.notes.lock().clone();
    let report = ShardReport {
        shard: ctx.shard,
        users: ctx.users.len() as u64,
        devices: ctx.users.iter().map(|u| u.devices.len() as u64).sum(),
        epoch_unix_ms: ctx.epoch_unix_ms,
        load_start_secs: start,
        load_end_secs: end,
        latency,
        series,
        checks,
        counters: ctx.counters.snapshot(),
        close_codes,
        goose,
        groups_supported,
        groups_created,
        groups_failed: if groups_supported == Some(true) {
            groups_missing
        } else {
            0
        },
        presence_supported,
        body_bytes_acked,
        notes,
    };
    Ok(report)
}

/// Percentile summaries of a report's histograms.
pub fn summaries(set: &LatencySet) -> BTreeMap<Latency, Option<LatencySummary>> {
    Latency::ALL
        .iter()
        .map(|&l| (l, set.get(l).and_then(LatencySummary::of)))
        .collect()
}
