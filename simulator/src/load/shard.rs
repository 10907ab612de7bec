//! A shard: a contiguous block of users with their devices, driven by one Goose attack in
//! one process, from setup (groups, feature probes) through the load to the final sync and
//! the checks. A run has one shard in-process, or several in worker processes.
//!
//! [`ShardCtx`] bundles the shard's parts, each shared on its own so a step gets only
//! what it needs: the fixed [`Setup`], the users and their devices, the [`Groups`]
//! registry, and the [`ShardRecords`] the devices report to.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;

use super::groups::Groups;
use super::pacer::Pacer;
use super::recorder::ShardRecords;
use super::setup::{Setup, ShardError, ShardJob, plan_devices};
use super::stop::Stop;
use crate::checks::{self, Check, CheckResults, Conv, MsgKey, SendRecord};
use crate::client::events::DeviceEvents;
use crate::client::http::{self, Probe};
use crate::client::ws::Device;
use crate::records::ShardReport;

/// A user of the shard.
pub struct UserState {
    pub id: u64,
    pub idx: u32,
    pub devices: Vec<Arc<Device>>,
    /// The number of the user's last send (client ids are `m<n>`).
    pub next_n: AtomicU64,
}

/// The parts of a shard its users, connection tasks and setup steps share.
pub struct ShardCtx {
    pub setup: Arc<Setup>,
    pub users: Arc<Vec<UserState>>,
    pub groups: Arc<Groups>,
    pub records: Arc<ShardRecords>,
    /// Set when the load is being stopped from outside, to wake napping users.
    pub stop: Arc<Stop>,
    /// Wakes users for their sends at the intended time.
    pub pacer: Pacer,
}

impl ShardCtx {
    /// Builds the shard's users, devices and graph.
    pub fn new(job: &ShardJob) -> Result<Arc<ShardCtx>, ShardError> {
        let setup = Setup::new(job)?;
        let s = &job.scenario;
        let n = setup.users as usize;
        let records = Arc::new(ShardRecords::new(
            setup.epoch,
            s.run.sample_interval_secs,
            n,
        ));
        let events: Arc<dyn DeviceEvents> = records.clone();
        let users = (0..n)
            .map(|i| {
                let id = setup.first_id + i as u64;
                let devices = plan_devices(s, job.user_lo + i as u64)
                    .into_iter()
                    .enumerate()
                    .map(|(d, kind)| {
                        let name = format!("d{d}-{}", s.population.device_kinds[kind].name);
                        Arc::new(Device::new(id, i as u32, name, kind, events.clone()))
                    })
                    .collect();
                UserState {
                    id,
                    idx: i as u32,
                    devices,
                    next_n: AtomicU64::new(0),
                }
            })
            .collect();
        Ok(Arc::new(ShardCtx {
            setup: Arc::new(setup),
            users: Arc::new(users),
            groups: Arc::new(Groups::default()),
            records,
            stop: Arc::new(Stop::default()),
            pacer: Pacer::default(),
        }))
    }

    pub fn user(&self, idx: u32) -> &UserState {
        &self.users[idx as usize]
    }

    /// Probes optional features and creates the scenario's groups.
    async fn prepare(&self) {
        let client = http::client();
        let setup = &self.setup;
        let s = &setup.scenario;
        if s.traffic.presence_pulls_per_user_per_day > 0.0 && !self.users.is_empty() {
            let u = &self.users[0];
            let token = setup.token(u.id, &u.devices[0].id);
            let probe = http::probe_presence(&client, &setup.http_url, &token, u.id).await;
            let supported = matches!(probe, Probe::Supported);
            *self.records.presence_supported.lock() = Some(supported);
            if !supported {
                self.records.note(format!(
                    "presence pulls not exercised: the server lacks presence ({probe})"
                ));
            }
        }
        self.groups
            .create_all(setup, &self.users, &self.records, &client)
            .await;
    }

    /// The users of a conversation, when this shard knows it.
    fn participants(&self, conv: &Conv) -> Option<Vec<u64>> {
        match conv {
            Conv::Direct(a, b) => (self.setup.local(*a).is_some()
                && self.setup.local(*b).is_some())
            .then(|| vec![*a, *b]),
            Conv::Group(g) => self.groups.members(*g),
        }
    }

    /// After the load: let answers arrive, bring every device online, sync each to the end
    /// of its inbox, close everything, and run the checks.
    async fn finish(self: &Arc<Self>) -> CheckResults {
        let drain = Duration::from_secs_f64(self.setup.scenario.run.drain_secs);
        let deadline = Instant::now() + drain;
        settle(&self.records, deadline).await;
        let devices: Vec<Arc<Device>> = self
            .users
            .iter()
            .flat_map(|u| u.devices.iter().cloned())
            .collect();
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        futures_util::stream::iter(devices.iter().cloned())
            .for_each_concurrent(128, |d| {
                let setup = self.setup.clone();
                let failures = failures.clone();
                async move {
                    let mut last = None;
                    for _ in 0..3 {
                        let r = setup.connect_and_sync(&d).await;
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
        settle(
            &self.records,
            Instant::now() + Duration::from_secs(2).min(drain),
        )
        .await;
        for d in &devices {
            d.disconnect();
        }
        futures_util::stream::iter(devices.iter().cloned())
            .for_each_concurrent(256, |d| async move {
                d.wait_tasks(Duration::from_secs(5)).await;
            })
            .await;
        let logs_guard: Vec<_> = devices.iter().map(|d| d.log.lock()).collect();
        let logs: Vec<&checks::DeviceLog> = logs_guard.iter().map(|g| &**g).collect();
        let mut offsets = Vec::with_capacity(self.users.len() + 1);
        let mut acc = 0usize;
        for u in self.users.iter() {
            offsets.push(acc);
            acc += u.devices.len();
        }
        offsets.push(acc);
        let sends: HashMap<MsgKey, SendRecord> = self
            .records
            .sends
            .iter()
            .map(|e| (*e.key(), e.value().record))
            .collect();
        let devices_of = |user: u64| -> Vec<usize> {
            match self.setup.local(user) {
                Some(i) => (offsets[i as usize]..offsets[i as usize + 1]).collect(),
                None => Vec::new(),
            }
        };
        let participants = |c: &Conv| self.participants(c);
        let mut r = checks::run_final(&logs, &sends, &participants, &devices_of);
        r.merge(&self.records.online_faults());
        for f in failures.lock().iter() {
            r.fault_as(Check::Gaps, checks::Anomaly::Unverified, || {
                format!("{f}: could not sync to the end, so its history is unchecked")
            });
        }
        r
    }
}

/// Waits until no message has arrived for half a second, or the deadline.
async fn settle(records: &ShardRecords, deadline: Instant) {
    let count = || {
        let c = records.counters.snapshot();
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

/// Runs a whole shard: setup, the Goose attack, the final sync and the checks.
pub async fn run(
    ctx: Arc<ShardCtx>,
    goose_report: Option<String>,
) -> Result<ShardReport, ShardError> {
    ctx.prepare().await;
    let records = &ctx.records;
    let start = ctx.setup.now_secs();
    records.set_load_start(start);
    let s = &ctx.setup.scenario;
    records.set_load_end(start + (s.run.ramp_up_secs + s.run.duration_secs) as f64);
    let goose = super::user::attack(&ctx, goose_report).await?;
    let end = ctx.setup.now_secs();
    records.set_load_end(end);
    let checks = ctx.finish().await;
    let body_bytes_acked = records.body_bytes_acked();
    let latency = records.latency_wire();
    let series = records.series_wire();
    let groups_supported = *ctx.groups.supported.lock();
    let presence_supported = *records.presence_supported.lock();
    let (groups_created, groups_missing) = ctx.groups.created_and_missing();
    let report = ShardReport {
        shard: ctx.setup.shard,
        users: ctx.users.len() as u64,
        devices: ctx.users.iter().map(|u| u.devices.len() as u64).sum(),
        epoch_unix_ms: ctx.setup.epoch_unix_ms,
        load_start_secs: start,
        load_end_secs: end,
        latency,
        series,
        checks,
        counters: records.counters.snapshot(),
        close_codes: records.close_codes(),
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
        notes: records.notes(),
        recoveries: records.recoveries(),
    };
    Ok(report)
}
