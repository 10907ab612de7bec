//! The Goose side: one Goose user per simulated user, holding that user's devices.
//!
//! Goose starts the users at the scenario's hatch rate (a test plan: ramp up, hold, stop),
//! runs their transactions in a loop and writes its own report. The transactions are:
//!
//! - `connect` (on start): every device connects and syncs; its schedules start;
//! - `send`: every send whose intended time has come, each awaited until `sent`;
//! - `history`: due history page reads, per device kind;
//! - `presence`: due presence pulls over HTTP, through Goose's own client;
//! - `churn`: due disconnects, storms, and reconnects (connect + sync to the end);
//! - `wait`: sleeps until the next intended time (or a dropped connection, or the
//!   load being stopped).
//!
//! Everything that is not HTTP is recorded with Goose's custom-request metrics
//! (`record_custom_request_duration`, method `WS`), timed from the intended time, so
//! Goose's report shows the same open-model latencies as the simulator's histograms.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::future::Either;
use goose::config::GooseConfiguration;
use goose::prelude::*;

use super::body;
use super::recorder::SendMeta;
use super::schedule::Poisson;
use super::session::{Kind, Session, SessionRef, choose_target};
use super::setup::ShardError;
use super::shard::ShardCtx;
use crate::checks::{self, Conv, Outcome, SendRecord};
use crate::client::ws::{self, RequestError};
use crate::metrics::Latency;
use crate::records::GooseRequestSummary;

/// The longest a `wait` sleeps while the load runs. A user wakes for its next planned
/// action, when the load ends, when a device's connection drops and when the load is
/// stopped from outside ([`Stop`](super::stop::Stop)), so the cap is only a backstop; at
/// the design's rates a user acts every ~15 s, and a cap of 10 s woke every user about
/// once more per message for nothing.
const MAX_NAP: f64 = 60.0;

/// The longest a `wait` sleeps once the load is over, so Goose's stop is not held up.
const NAP_AFTER_LOAD: f64 = 1.0;

fn session(user: &GooseUser) -> Result<SessionRef, Box<TransactionError>> {
    user.get_session_data::<SessionRef>()
        .cloned()
        .ok_or_else(|| {
            Box::new(TransactionError::Custom(
                "no session: connect did not run".into(),
            ))
        })
}

/// Records one request in Goose's metrics.
async fn goose_record(
    user: &mut GooseUser,
    name: &str,
    took: Duration,
    result: &Result<(), RequestError>,
) -> TransactionResult {
    match result {
        Ok(()) => {
            user.record_custom_request_duration("WS", name, took, true, None, None)
                .await
        }
        Err(e) => {
            let label = e.label();
            user.record_custom_request_duration("WS", name, took, false, None, Some(&label))
                .await
        }
    }
}

fn count(ctx: &ShardCtx, result: &Result<(), RequestError>) {
    ctx.records.counters.add(&ctx.records.counters.requests, 1);
    if result.is_err() {
        ctx.records.series_error();
    }
}

async fn txn_connect(ctx: Arc<ShardCtx>, user: &mut GooseUser) -> TransactionResult {
    let u = user.weighted_users_index as u32;
    if u as usize >= ctx.users.len() {
        return Err(Box::new(TransactionError::Custom(format!(
            "Goose started user {u} but the shard has {}",
            ctx.users.len()
        ))));
    }
    let devices = ctx.user(u).devices.clone();
    let started = ctx.setup.now_secs();
    let results = futures_util::future::join_all(devices.iter().map(|d| {
        let ctx = ctx.clone();
        let d = d.clone();
        async move {
            let t0 = ctx.setup.now_secs();
            let r = ctx.setup.connect_and_sync(&d).await;
            (t0, r)
        }
    }))
    .await;
    let now = ctx.setup.now_secs();
    let mut s = Session::new(&ctx, u, started);
    for (d, (t0, r)) in results.into_iter().enumerate() {
        let took = Duration::from_secs_f64((now - t0).max(0.0));
        count(&ctx, &r);
        if r.is_ok() {
            ctx.records
                .record(Latency::Connect, took.as_micros() as u64);
        } else {
            ctx.records
                .counters
                .add(&ctx.records.counters.connect_errors, 1);
            s.reconnect_at[d] = Some(now + 1.0);
        }
        goose_record(user, "connect", took, &r).await?;
    }
    user.set_session_data(Arc::new(tokio::sync::Mutex::new(s)));
    Ok(())
}

async fn txn_send(ctx: Arc<ShardCtx>, user: &mut GooseUser) -> TransactionResult {
    let sref = session(user)?;
    let mut s = sref.lock().await;
    loop {
        let (t, kind) = s.next_send();
        let now = ctx.setup.now_secs();
        if t > now || t >= ctx.records.load_end_secs() {
            return Ok(());
        }
        match kind {
            Kind::Own => s.own.pop(),
            Kind::Early => s.early.pop(),
            Kind::Pair => s.pair.as_mut().map(Poisson::pop).unwrap_or(t),
        };
        ctx.records.counters.add(&ctx.records.counters.sends_due, 1);
        let u = ctx.user(s.u);
        let online: Vec<usize> = (0..u.devices.len())
            .filter(|&d| u.devices[d].online())
            .collect();
        if online.is_empty() {
            ctx.records
                .counters
                .add(&ctx.records.counters.sends_skipped_offline, 1);
            continue;
        }
        let dev = u.devices[online[s.rng.below(online.len() as u64) as usize]].clone();
        let Some((to, conv, group)) = choose_target(&ctx, &mut s, kind) else {
            continue;
        };
        let n = u.next_n.fetch_add(1, Relaxed) + 1;
        let id = checks::client_id(n);
        let size = body::sample_size(&ctx.setup.scenario.traffic.message_size, &mut s.rng);
        let text = body::make(size, u.id, n, &mut s.rng);
        let intended = ctx.setup.at(t);
        ctx.records.sends.insert(
            (u.id, n),
            SendMeta {
                record: SendRecord {
                    conv,
                    body_hash: checks::body_hash(&text),
                    outcome: Outcome::Unknown,
                },
                intended,
                body_len: text.len() as u32,
                node: dev.node(),
            },
        );
        if kind == Kind::Pair {
            ctx.records
                .counters
                .add(&ctx.records.counters.crossing_sends, 1);
        }
        if group {
            ctx.records
                .counters
                .add(&ctx.records.counters.group_sends, 1);
        }
        let paced = s.paced_send.take() == Some(t);
        let result = match dev.send(&id, &to, &text) {
            Ok(rx) => {
                if paced {
                    // Woken for this send at its time: whatever it is late by is the
                    // simulator's (the pacer, the runtime, this transaction's work).
                    ctx.records
                        .record(Latency::SendLateness, intended.elapsed().as_micros() as u64);
                }
                ctx.records
                    .counters
                    .add(&ctx.records.counters.sends_written, 1);
                ctx.records.series_send();
                ws::wait_sent(rx, ctx.setup.timeout).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(()) => {}
            Err(RequestError::Server(_)) => ctx
                .records
                .counters
                .add(&ctx.records.counters.sends_refused, 1),
            Err(_) => ctx
                .records
                .counters
                .add(&ctx.records.counters.sends_unanswered, 1),
        }
        count(&ctx, &result);
        goose_record(user, "send", intended.elapsed(), &result).await?;
    }
}

async fn txn_history(ctx: Arc<ShardCtx>, user: &mut GooseUser) -> TransactionResult {
    let sref = session(user)?;
    let mut s = sref.lock().await;
    let devices = ctx.user(s.u).devices.clone();
    for (d, dev) in devices.iter().enumerate() {
        while s.history[d].peek() <= ctx.setup.now_secs() {
            let t = s.history[d].pop();
            if !dev.online() {
                continue;
            }
            // A conversation the device has seen lately.
            let conv = {
                let log = dev.log.lock();
                let recent: Vec<Conv> = log.inbox.values().rev().take(16).map(|e| e.conv).collect();
                if recent.is_empty() {
                    None
                } else {
                    Some(recent[s.rng.below(recent.len() as u64) as usize])
                }
            };
            let Some(conv) = conv else { continue };
            let page = ctx.setup.scenario.population.device_kinds[dev.kind].history_page_size;
            let result = dev.history(conv, page, ctx.setup.timeout).await;
            let took = ctx.setup.at(t).elapsed();
            ctx.records
                .counters
                .add(&ctx.records.counters.history_reads, 1);
            if result.is_ok() {
                ctx.records
                    .record(Latency::History, took.as_micros() as u64);
            } else {
                ctx.records
                    .counters
                    .add(&ctx.records.counters.history_errors, 1);
            }
            count(&ctx, &result);
            goose_record(user, "history", took, &result).await?;
        }
    }
    Ok(())
}

async fn txn_presence(ctx: Arc<ShardCtx>, user: &mut GooseUser) -> TransactionResult {
    let sref = session(user)?;
    let mut s = sref.lock().await;
    let supported = *ctx.records.presence_supported.lock() == Some(true);
    while s.presence.peek() <= ctx.setup.now_secs() {
        let t = s.presence.pop();
        if !supported {
            continue;
        }
        let ids: Vec<String> = ctx.setup.graph.contacts[s.u as usize]
            .iter()
            .take(50)
            .map(|&c| ctx.user(c).id.to_string())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let u = ctx.user(s.u);
        // Through the entry point, or (hash routing) straight to the user's own node.
        let base = if ctx.setup.routes.hash {
            ctx.setup.routes.home(u.id)
        } else {
            ""
        };
        let path = format!("{base}/v1/presence?users={}", ids.join(","));
        let token = ctx.setup.token(u.id, &u.devices[0].id);
        let rb = user
            .get_request_builder(&GooseMethod::Get, &path)?
            .bearer_auth(token);
        let req = GooseRequest::builder()
            .method(GooseMethod::Get)
            .path(path.as_str())
            .name("presence")
            .set_request_builder(rb)
            .build();
        let ok = match user.request(req).await {
            Ok(resp) => resp
                .response
                .map(|r| r.status().is_success())
                .unwrap_or(false),
            Err(_) => false,
        };
        let took = ctx.setup.at(t).elapsed();
        ctx.records
            .counters
            .add(&ctx.records.counters.presence_pulls, 1);
        ctx.records.counters.add(&ctx.records.counters.requests, 1);
        if ok {
            ctx.records
                .record(Latency::Presence, took.as_micros() as u64);
        } else {
            ctx.records
                .counters
                .add(&ctx.records.counters.presence_errors, 1);
            ctx.records.series_error();
        }
    }
    Ok(())
}

async fn txn_churn(ctx: Arc<ShardCtx>, user: &mut GooseUser) -> TransactionResult {
    let sref = session(user)?;
    let mut s = sref.lock().await;
    let devices = ctx.user(s.u).devices.clone();
    let ch = &ctx.setup.scenario.churn;
    for (d, dev) in devices.iter().enumerate() {
        let now = ctx.setup.now_secs();
        if dev.online() {
            // Planned drops: a storm or a random disconnect.
            let storm = s.storms[d].first().copied().filter(|&(at, _)| at <= now);
            let random = s.disconnect[d].peek() <= now;
            if let Some((_, back)) = storm {
                s.storms[d].remove(0);
                dev.disconnect();
                ctx.records
                    .counters
                    .add(&ctx.records.counters.disconnects_planned, 1);
                s.reconnect_at[d] = Some(back);
            } else if random {
                s.disconnect[d].pop();
                dev.disconnect();
                ctx.records
                    .counters
                    .add(&ctx.records.counters.disconnects_planned, 1);
                let (lo, hi) = (ch.offline_secs_min, ch.offline_secs_max);
                s.reconnect_at[d] = Some(now + lo + s.rng.f64() * (hi - lo));
            }
            continue;
        }
        // Offline without a plan: the server or the network ended it; come back now.
        let at = *s.reconnect_at[d].get_or_insert(now);
        if at > now {
            continue;
        }
        // Random disconnects that fell due while offline are skipped.
        while s.disconnect[d].peek() <= now {
            s.disconnect[d].pop();
        }
        let result = ctx.setup.connect_and_sync(dev).await;
        let took = ctx.setup.at(at).elapsed();
        count(&ctx, &result);
        match &result {
            Ok(()) => {
                s.reconnect_at[d] = None;
                if let Some(dropped) = dev.take_drop() {
                    ctx.records.recovered(dropped, std::time::Instant::now());
                }
                ctx.records
                    .counters
                    .add(&ctx.records.counters.reconnects, 1);
                ctx.records
                    .record(Latency::Reconnect, took.as_micros() as u64);
            }
            Err(_) => {
                ctx.records
                    .counters
                    .add(&ctx.records.counters.connect_errors, 1);
                dev.disconnect();
                s.reconnect_at[d] = Some(ctx.setup.now_secs() + 1.0);
            }
        }
        goose_record(user, "reconnect", took, &result).await?;
    }
    Ok(())
}

async fn txn_wait(ctx: Arc<ShardCtx>, user: &mut GooseUser) -> TransactionResult {
    let sref = session(user)?;
    let (user_idx, next, send_at) = {
        let s = sref.lock().await;
        let u = ctx.user(s.u);
        let send_at = s.next_send().0;
        let mut next = send_at;
        for (d, dev) in u.devices.iter().enumerate() {
            if dev.online() {
                next = next.min(s.history[d].peek()).min(s.disconnect[d].peek());
                if let Some(&(at, _)) = s.storms[d].first() {
                    next = next.min(at);
                }
            } else {
                next = next.min(s.reconnect_at[d].unwrap_or(0.0));
            }
        }
        if *ctx.records.presence_supported.lock() == Some(true) {
            next = next.min(s.presence.peek());
        }
        (s.u, next, send_at)
    };
    let now = ctx.setup.now_secs();
    let end = ctx.records.load_end_secs();
    let cap = if now < end && !ctx.stop.is_set() {
        (end - now).min(MAX_NAP)
    } else {
        NAP_AFTER_LOAD
    };
    let nap = (next - now).clamp(0.0, cap);
    if nap > 0.0 {
        let devices = &ctx.user(user_idx).devices;
        // A send is waited for through the pacer, not tokio's millisecond timer: it must
        // leave at its intended time, as send → sent and send → delivery are measured
        // from it. The microsecond keeps float rounding from waking the user a hair
        // before the time it compares with. The pacer costs a timerfd arming, so the
        // rest (reads, pulls, churn, caps; gated in tens of milliseconds) keep tokio's
        // timer and its up to 1 ms.
        let paced = nap < cap && next == send_at;
        let sleep = if paced {
            Either::Left(
                ctx.pacer
                    .sleep_until(ctx.setup.at(next) + Duration::from_micros(1)),
            )
        } else {
            Either::Right(tokio::time::sleep(Duration::from_secs_f64(nap)))
        };
        let dropped = async {
            if devices.is_empty() {
                std::future::pending::<()>().await;
            } else {
                futures_util::future::select_all(devices.iter().map(|d| Box::pin(d.dropped())))
                    .await;
            }
        };
        let slept = tokio::select! {
            () = sleep => true,
            () = dropped => false,
            () = ctx.stop.wait() => false,
        };
        if slept && paced {
            sref.lock().await.paced_send = Some(send_at);
        }
    }
    Ok(())
}

macro_rules! txn {
    ($ctx:expr, $f:ident, $name:literal) => {{
        let ctx = $ctx.clone();
        let f: TransactionFunction = Arc::new(move |user| {
            let ctx = ctx.clone();
            Box::pin(async move { $f(ctx, user).await })
        });
        Transaction::new(f).set_name($name)
    }};
}

/// Runs the shard's users under Goose and returns Goose's own request figures.
pub async fn attack(
    ctx: &Arc<ShardCtx>,
    report: Option<String>,
) -> Result<Vec<GooseRequestSummary>, ShardError> {
    let s = &ctx.setup.scenario;
    let users = ctx.users.len();
    let plan = format!(
        "{users},{}s;{users},{}s;0,0s",
        s.run.ramp_up_secs, s.run.duration_secs
    );
    let mut args: Vec<String> = vec![
        "--host".into(),
        ctx.setup.http_url.clone(),
        "--test-plan".into(),
        plan,
        "--quiet".into(),
        "--no-print-metrics".into(),
        "--no-telnet".into(),
        "--no-transaction-metrics".into(),
        "--no-scenario-metrics".into(),
        "--timeout".into(),
        format!("{}", s.run.request_timeout_secs.ceil() as u64),
    ];
    if let Some(path) = report {
        args.push("--report-file".into());
        args.push(path);
    }
    let config = GooseConfiguration::parse_args_default(&args)
        .map_err(|e| ShardError::Goose(e.to_string()))?;
    let scenario = scenario!("ChatUser")
        .register_transaction(txn!(ctx, txn_connect, "connect").set_on_start())
        .register_transaction(txn!(ctx, txn_send, "send"))
        .register_transaction(txn!(ctx, txn_history, "history"))
        .register_transaction(txn!(ctx, txn_presence, "presence"))
        .register_transaction(txn!(ctx, txn_churn, "churn"))
        .register_transaction(txn!(ctx, txn_wait, "wait"));
    let attack = GooseAttack::initialize_with_config(config)
        .map_err(|e| ShardError::Goose(e.to_string()))?
        .set_client_builder_without_cookies(
            goose::client::GooseClientBuilder::new().without_cookies(),
        )
        .map_err(|e| ShardError::Goose(e.to_string()))?
        .register_scenario(scenario);
    let watch = ctx.stop.watch();
    let metrics = attack.execute().await;
    watch.abort();
    let metrics = metrics.map_err(|e| ShardError::Goose(e.to_string()))?;
    let mut out: Vec<GooseRequestSummary> = metrics
        .requests
        .iter()
        .map(|(name, r)| {
            let d = &r.raw_data;
            GooseRequestSummary {
                name: name.clone(),
                ok: r.success_count as u64,
                failed: r.fail_count as u64,
                mean_ms: if d.counter > 0 {
                    d.total_time_us as f64 / d.counter as f64 / 1000.0
                } else {
                    0.0
                },
                max_ms: d.maximum_time_us as f64 / 1000.0,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
