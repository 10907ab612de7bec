//! Push notifications for users with no device online.
//!
//! Message delivery never waits on push: the send path offers a job to a bounded queue
//! and moves on. A worker coalesces bursts (at most one push per user and conversation per
//! `coalesce` window), looks up the user's registered devices, and posts one notification
//! per device to the gateway, retrying with exponential backoff. What still fails is kept
//! as a dead letter in the store, for an operator to replay with `chat-server push-replay`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::model::{ConvId, UserId, now_ms};
use crate::store::{DeadLetter, PushStore, StoreError};

/// Jobs waiting for the worker; past this, new jobs are dead-lettered at once.
const QUEUE: usize = 10_000;
/// Gateway posts in flight at once.
const IN_FLIGHT: usize = 64;
/// Characters of the body carried as the preview.
const PREVIEW_CHARS: usize = 100;

/// How pushes are sent.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The gateway's URL (`http://…`).
    pub gateway: String,
    /// At most one push per user and conversation in this window.
    pub coalesce: Duration,
    /// Attempts per notification before it is dead-lettered.
    pub attempts: u32,
    /// The first retry's delay; each retry doubles it.
    pub backoff: Duration,
}

impl PushConfig {
    /// The coalescing window unless configured.
    pub const DEFAULT_COALESCE: Duration = Duration::from_secs(10);
    /// Attempts per notification unless configured.
    pub const DEFAULT_ATTEMPTS: u32 = 5;
    /// The first retry's delay unless configured.
    pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);
}

/// A message stored for a user with no device online.
#[derive(Debug, Clone)]
pub struct PushJob {
    pub user: UserId,
    pub conv: ConvId,
    pub seq: u64,
    pub from: UserId,
    pub body: String,
}

/// The body posted to the gateway, as the contract gives it.
#[derive(Debug, Serialize)]
struct Notification<'a> {
    user: UserId,
    device: &'a str,
    platform: &'a str,
    token: &'a str,
    conv: String,
    seq: u64,
    from: UserId,
    preview: &'a str,
}

/// The handle the send path uses.
pub struct Pusher {
    tx: mpsc::Sender<PushJob>,
    store: Arc<dyn PushStore>,
    metrics: Arc<Metrics>,
    /// The worker and every delivery or dead-lettering it started: [`Pusher::stop`]
    /// waits for them, so nothing of the store is still in use once the server returns.
    tasks: TaskTracker,
}

impl Pusher {
    /// Starts the worker. When `shutdown` turns true the worker stops taking jobs:
    /// what is still queued, and what a delivery had left to retry, is dead-lettered
    /// (`server stopped before the push was sent`) for `chat-server push-replay`.
    pub fn start(
        config: PushConfig,
        store: Arc<dyn PushStore>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let tasks = TaskTracker::new();
        let worker = Worker {
            config: Arc::new(config),
            store: store.clone(),
            metrics: metrics.clone(),
            tasks: tasks.clone(),
            shutdown,
        };
        tasks.spawn(worker.run(rx));
        Pusher {
            tx,
            store,
            metrics,
            tasks,
        }
    }

    /// Offers a job without waiting. A full queue dead-letters the job instead.
    pub fn notify(&self, job: PushJob) {
        if let Err(mpsc::error::TrySendError::Full(job)) = self.tx.try_send(job) {
            let store = self.store.clone();
            let metrics = self.metrics.clone();
            self.tasks.spawn(async move {
                dead_letter(
                    &*store,
                    &metrics,
                    job_payload(&job),
                    "push queue full".into(),
                )
                .await;
            });
        }
    }

    /// Waits, at most `grace`, for the worker (stopped by the shutdown signal) and every
    /// delivery in flight. True when all ended in time.
    pub async fn stop(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

/// A job's notification before its devices are looked up: what a dead letter keeps of
/// a job that never reached the worker's lookup.
fn job_payload(job: &PushJob) -> String {
    serde_json::json!({
        "user": job.user, "conv": job.conv.to_string(), "seq": job.seq,
        "from": job.from, "preview": preview(&job.body),
    })
    .to_string()
}

fn preview(body: &str) -> &str {
    match body.char_indices().nth(PREVIEW_CHARS) {
        Some((i, _)) => &body[..i],
        None => body,
    }
}

/// Why a push was dead-lettered when the server stopped before sending it.
const STOPPED: &str = "server stopped before the push was sent";

/// Resolves once the server stops (never, if the signal's sender is gone without it).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The worker's shared parts.
struct Worker {
    config: Arc<PushConfig>,
    store: Arc<dyn PushStore>,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    shutdown: watch::Receiver<bool>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<PushJob>) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut last_push: HashMap<(UserId, ConvId), Instant> = HashMap::new();
        let mut last_sweep = Instant::now();
        let mut shutdown = self.shutdown.clone();
        loop {
            let job = tokio::select! {
                job = rx.recv() => job,
                () = stopped(&mut shutdown) => None,
            };
            let Some(job) = job else { break };
            let now = Instant::now();
            if now.duration_since(last_sweep) > self.config.coalesce {
                last_push.retain(|_, t| now.duration_since(*t) < self.config.coalesce);
                last_sweep = now;
            }
            let key = (job.user, job.conv);
            if last_push
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < self.config.coalesce)
            {
                self.metrics.push_coalesced.inc();
                continue;
            }
            last_push.insert(key, now);
            let regs = match self.store.pushes(job.user).await {
                Ok(regs) => regs,
                Err(e) => {
                    tracing::warn!(error = %e, user = job.user, "cannot read push registrations");
                    continue;
                }
            };
            for reg in regs {
                let payload = serde_json::to_string(&Notification {
                    user: job.user,
                    device: &reg.device,
                    platform: &reg.platform,
                    token: &reg.token,
                    conv: job.conv.to_string(),
                    seq: job.seq,
                    from: job.from,
                    preview: preview(&job.body),
                })
                .unwrap_or_default();
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let (client, config, store, metrics, stop) = (
                    client.clone(),
                    self.config.clone(),
                    self.store.clone(),
                    self.metrics.clone(),
                    self.shutdown.clone(),
                );
                self.tasks.spawn(async move {
                    let _permit = permit;
                    if let Err(error) = deliver(&client, &config, &metrics, &payload, stop).await {
                        dead_letter(&*store, &metrics, payload, error).await;
                    }
                });
            }
        }
        // Stopping: what is queued is not sent now but kept for a replay.
        rx.close();
        while let Ok(job) = rx.try_recv() {
            dead_letter(
                &*self.store,
                &self.metrics,
                job_payload(&job),
                STOPPED.into(),
            )
            .await;
        }
    }
}

/// Posts one notification, retrying with exponential backoff; the last error on failure.
///
/// A stopping server makes no further attempt: the push is dead-lettered at once.
async fn deliver(
    client: &reqwest::Client,
    config: &PushConfig,
    metrics: &Metrics,
    payload: &str,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut delay = config.backoff;
    let mut last_error = String::new();
    for attempt in 0..config.attempts.max(1) {
        if attempt > 0 {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stopped(&mut stop) => return Err(format!("{last_error}; {STOPPED}")),
            }
            delay = delay.saturating_mul(2);
        }
        match post(client, &config.gateway, payload).await {
            Ok(()) => {
                metrics.push_sent.inc();
                return Ok(());
            }
            Err(e) => {
                metrics.push_failed.inc();
                last_error = e;
            }
        }
    }
    Err(last_error)
}

async fn post(client: &reqwest::Client, gateway: &str, payload: &str) -> Result<(), String> {
    let r = client
        .post(gateway)
        .header("content-type", "application/json")
        .body(payload.to_owned())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("gateway answered {}", r.status()))
    }
}

async fn dead_letter(store: &dyn PushStore, metrics: &Metrics, payload: String, error: String) {
    metrics.push_dead_lettered.inc();
    let letter = DeadLetter {
        payload,
        error,
        ts: now_ms(),
    };
    if let Err(e) = store.put_dead_letter(letter).await {
        tracing::error!(error = %e, "cannot record a dead-lettered push");
    }
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub delivered: u64,
    pub still_failing: u64,
}

/// Posts every dead letter to `gateway` once more; those accepted are removed, the others
/// stay for a later replay.
pub async fn replay(store: &dyn PushStore, gateway: &str) -> Result<Replayed, StoreError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut out = Replayed::default();
    let mut after = 0;
    loop {
        let page = store.dead_letters(after, 1000).await?;
        let Some(&(last, _)) = page.last() else {
            return Ok(out);
        };
        after = last;
        for (id, letter) in page {
            match post(&client, gateway, &letter.payload).await {
                Ok(()) => {
                    store.remove_dead_letter(id).await?;
                    out.delivered += 1;
                }
                Err(e) => {
                    tracing::warn!(id, error = %e, "replay failed; the dead letter stays");
                    out.still_failing += 1;
                }
            }
        }
    }
}
