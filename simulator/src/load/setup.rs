//! A shard's fixed setup: the job the parent hands it, and what follows from it once and
//! never changes while the shard runs (the scenario, where the server is, how to sign
//! tokens, the time origin, which users are local, the contact graph), with the plan of
//! each user's devices that the parent also uses to size the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_server::auth::Auth;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::route::Routes;
use crate::client::ws::{Device, RequestError};
use crate::clock::unix_ms;
use crate::graph::Graph;
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
    /// The first entry point: Goose's host, where groups are made.
    pub http_url: String,
    /// Where devices connect.
    pub routes: Routes,
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

/// What a shard's users and setup steps read and never change.
pub struct Setup {
    pub scenario: Scenario,
    pub shard: u32,
    pub http_url: String,
    pub routes: Routes,
    auth: Auth,
    /// The run's time origin in this process.
    pub epoch: Instant,
    pub epoch_unix_ms: u64,
    /// Global id of local user i is `first_id + i`.
    pub first_id: u64,
    /// How many users are local.
    pub users: u64,
    pub graph: Graph,
    pub timeout: Duration,
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

impl Setup {
    /// The setup of a job: its signing key, its epoch in this process's monotonic clock,
    /// and the contact graph of its users.
    pub fn new(job: &ShardJob) -> Result<Setup, ShardError> {
        let auth = Auth::new(&job.jwt_secret).map_err(|e| ShardError::Secret(e.to_string()))?;
        let s = &job.scenario;
        let n = job.user_hi - job.user_lo;
        // The epoch in this process's monotonic clock.
        let behind = unix_ms().saturating_sub(job.epoch_unix_ms);
        let now = Instant::now();
        let epoch = now
            .checked_sub(Duration::from_millis(behind))
            .unwrap_or(now);
        Ok(Setup {
            graph: Graph::build(s, n as usize, job.shard),
            scenario: s.clone(),
            shard: job.shard,
            http_url: job.http_url.clone(),
            routes: job.routes.clone(),
            auth,
            epoch,
            epoch_unix_ms: job.epoch_unix_ms,
            first_id: job.user_base + job.user_lo + 1,
            users: n,
            timeout: Duration::from_secs_f64(s.run.request_timeout_secs),
        })
    }

    /// A token for a device, valid for a day.
    pub fn token(&self, user: u64, device: &str) -> String {
        let exp = unix_ms() / 1000 + 86_400;
        match device.parse() {
            Ok(d) => self.auth.issue(user, &d, exp),
            Err(_) => String::new(),
        }
    }

    /// Connects a device where its user is routed, then syncs it to the end of its inbox.
    pub async fn connect_and_sync(&self, dev: &Arc<Device>) -> Result<(), RequestError> {
        self.routes
            .connect(dev, || self.token(dev.user, &dev.id), self.timeout)
            .await?;
        dev.sync_to_end(self.timeout).await
    }

    pub fn now_secs(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// The instant `t` seconds after the epoch.
    pub fn at(&self, t: f64) -> Instant {
        self.epoch + Duration::from_secs_f64(t.max(0.0))
    }

    /// The local index of a global user id in this shard.
    pub fn local(&self, id: u64) -> Option<u32> {
        let i = id.checked_sub(self.first_id)?;
        (i < self.users).then_some(i as u32)
    }
}
