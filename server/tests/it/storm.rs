//! Reconnect storms: every connection of one process dropped at once, messages sent to
//! the devices while they are away, and all of them reconnecting within seconds and
//! catching up with `sync`. The server stays responsive (a fresh client's `ping` is
//! answered in time) and every device ends with its whole inbox, exactly once, in order.
//!
//! Each device is one user's WebSocket; users are paired and chat while connected. The
//! figures printed: reconnect → caught-up p50/p99/max, the time until all are back, and
//! a fresh client's connect and ping → pong times during the storm.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::child::{ChildServer, token};
use crate::stalls::{Incoming, Item, Sent, body_of, check_inbox, pipelined, ws_config};

/// Messages each device sends its partner while connected.
const LIVE_PER_DEVICE: usize = 2;
/// Messages sent to each user while its device is away.
const AWAY_PER_USER: usize = 2;
/// Connections that send the messages while the devices are away.
const AWAY_SENDERS: u64 = 4;
/// Bytes of a message body.
const BODY: usize = 100;
/// The devices reconnect at moments spread over this time.
const SPREAD: Duration = Duration::from_secs(2);
/// A fresh client's ping during the storm is answered within this time: the target's
/// 1 s against an optimized server. A debug build of both sides on two shared cores
/// answered a 19,000-device storm's probes in up to ~2 s (the test process's own
/// catch-up work delays the probe too), so unoptimized the bound is 5 s. The measured
/// values are printed.
const PING_BOUND: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(5)
} else {
    Duration::from_secs(1)
};
/// How often the fresh client probes during the storm.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// A device gives up reconnecting and catching up after this long.
const CATCH_UP_BOUND: Duration = Duration::from_secs(120);
/// Devices connecting at once before the storm (the set-up, not timed).
const SETUP_CONNECTS: usize = 128;

/// User ids apart from the devices' (1..=n).
const AWAY_BASE: u64 = 1_000_000;
const PROBE_BASE: u64 = 2_000_000;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one device has of its user's inbox: position → message.
type View = Arc<Mutex<BTreeMap<u64, Item>>>;

/// A well spread number in 0..1000 for `u` (reconnect moments, retry jitter).
fn spread(u: u64) -> u64 {
    u.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54
}

/// Connects `user`'s device, trying again with backoff until `deadline` (a storm may
/// overflow the listener's backlog: a real client retries too). Returns the socket and
/// the attempts it took.
async fn connect_retry(addr: &str, user: u64, deadline: Instant) -> (Ws, u32) {
    let url = format!("ws://{addr}/v1/ws?token={}", token(user));
    let mut backoff = Duration::from_millis(50);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async_with_config(&url, Some(ws_config()), true),
        )
        .await;
        match r {
            Ok(Ok((ws, _))) => return (ws, attempts),
            other => {
                assert!(
                    Instant::now() < deadline,
                    "user {user} could not reconnect after {attempts} attempts: {:?}",
                    other.map(|r| r.map(|_| ()))
                );
                let jitter = Duration::from_millis(spread(user ^ attempts as u64) / 10);
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Puts `item` at its position; a position seen twice (live and by `sync`) must carry
/// the same message. Returns whether it was new.
fn note(who: u64, view: &View, item: Item) -> bool {
    let mut v = view.lock().unwrap();
    match v.get(&item.useq) {
        Some(had) => {
            assert_eq!(had, &item, "user {who}: position {} changed", item.useq);
            false
        }
        None => {
            v.insert(item.useq, item);
            true
        }
    }
}

/// The last position before the first one missing.
fn contiguous(view: &View) -> u64 {
    let v = view.lock().unwrap();
    let mut k = 0;
    for &p in v.keys() {
        if p != k + 1 {
            break;
        }
        k = p;
    }
    k
}

/// A connected device: sends its partner [`LIVE_PER_DEVICE`] messages, then reads for
/// as long as it lives, noting every position it gets. `seen` counts new positions.
async fn connected(
    mut ws: Ws,
    me: u64,
    partner: u64,
    view: View,
    acked: Arc<Mutex<Vec<Sent>>>,
    seen: Arc<AtomicU64>,
) {
    for i in 0..LIVE_PER_DEVICE {
        let id = format!("l{me}-{i}");
        let frame = json!({"type": "send", "id": id, "to": format!("u:{partner}"), "body": body_of(&id, BODY)});
        ws.feed(Message::text(frame.to_string())).await.unwrap();
    }
    ws.flush().await.unwrap();
    while let Some(Ok(m)) = ws.next().await {
        let Message::Text(t) = m else { continue };
        let item = match crate::stalls::parse(&t) {
            Incoming::Msg(item) => item,
            Incoming::Sent {
                id,
                conv,
                seq,
                useq,
            } => {
                acked.lock().unwrap().push(Sent {
                    from: me,
                    id: id.clone(),
                    conv: conv.clone(),
                    seq,
                });
                Item {
                    conv,
                    seq,
                    useq,
                    from: me,
                    body: body_of(&id, BODY),
                    id,
                }
            }
            Incoming::Error { code, message } => panic!("user {me}: {code} {message}"),
            _ => continue,
        };
        if note(me, &view, item) {
            seen.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// A reconnecting device: waits its turn, reconnects, syncs from the last position it
/// had without a gap and reads live frames too, until it holds positions 1..=`head`
/// (caught up). Returns the socket (kept open), reconnect →
/// caught-up, when it was caught up (from the storm's start) and the connect attempts.
async fn reconnect(
    addr: String,
    me: u64,
    view: View,
    head: u64,
    storm_start: Instant,
    delay: Duration,
) -> (Ws, Duration, Duration, u32) {
    tokio::time::sleep_until((storm_start + delay).into()).await;
    let t0 = Instant::now();
    let (mut ws, attempts) = connect_retry(&addr, me, t0 + CATCH_UP_BOUND).await;
    let after = contiguous(&view);
    let sync = |after: u64| json!({"type": "sync", "after": after, "limit": 1000}).to_string();
    ws.send(Message::text(sync(after))).await.unwrap();
    let holds = |view: &View, n: u64| {
        let v = view.lock().unwrap();
        v.len() as u64 == n && v.keys().next_back() == Some(&n)
    };
    let mut caught_up = None;
    loop {
        if holds(&view, head) {
            caught_up = Some((t0.elapsed(), storm_start.elapsed()));
            break;
        }
        let left = CATCH_UP_BOUND.saturating_sub(t0.elapsed());
        let m = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| {
                panic!("user {me} not caught up within {CATCH_UP_BOUND:?}: {caught_up:?}")
            })
            .unwrap_or_else(|| panic!("user {me}: connection closed while catching up"))
            .unwrap_or_else(|e| panic!("user {me}: {e}"));
        let Message::Text(t) = m else { continue };
        match crate::stalls::parse(&t) {
            Incoming::Msg(item) => {
                note(me, &view, item);
            }
            Incoming::Sync { items, next, more } => {
                for item in items {
                    note(me, &view, item);
                }
                if more {
                    ws.send(Message::text(sync(next))).await.unwrap();
                }
            }
            Incoming::Error { code, message } => panic!("user {me}: {code} {message}"),
            _ => {}
        }
    }
    let (caught_up, at) = caught_up.unwrap();
    (ws, caught_up, at, attempts)
}

/// While `until` is unset, a fresh client every [`PROBE_EVERY`]: connects (timed) and
/// pings (timed to the pong). Returns (connect times, ping → pong times).
async fn probe(addr: String, until: Arc<AtomicBool>) -> (Vec<Duration>, Vec<Duration>) {
    let (mut connects, mut pings) = (Vec::new(), Vec::new());
    let mut k = 0;
    while !until.load(Ordering::Acquire) {
        let t = Instant::now();
        let (mut ws, _) = connect_retry(&addr, PROBE_BASE + k, t + CATCH_UP_BOUND).await;
        connects.push(t.elapsed());
        let t = Instant::now();
        ws.send(Message::text(json!({"type": "ping"}).to_string()))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .expect("pong within 30 s")
                .expect("probe open")
                .expect("no error");
            if let Message::Text(t) = m
                && matches!(crate::stalls::parse(&t), Incoming::Pong)
            {
                break;
            }
        }
        pings.push(t.elapsed());
        let _ = ws.close(None).await;
        k += 1;
        tokio::time::sleep(PROBE_EVERY).await;
    }
    (connects, pings)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `n` devices (users 1..=n, paired) chat, are all dropped at once, get messages while
/// away, reconnect spread over [`SPREAD`] and catch up. Asserts every property and
/// prints the figures.
async fn storm(n: u64) {
    assert!(n % 2 == 0, "devices come in pairs");
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(&format!("fjall:{}", dir.path().display()));
    let addr = server.addr.clone();
    let partner = |u: u64| if u % 2 == 1 { u + 1 } else { u - 1 };

    // Every device connects (and its session is set up) before anyone sends, so each
    // gets its partner's messages live.
    let t = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(SETUP_CONNECTS));
    let connects: Vec<_> = (1..=n)
        .map(|u| {
            let (addr, gate) = (addr.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let (mut ws, _) = connect_retry(&addr, u, Instant::now() + CATCH_UP_BOUND).await;
                ws.send(Message::text(json!({"type": "ping"}).to_string()))
                    .await
                    .unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m
                        && matches!(crate::stalls::parse(&t), Incoming::Pong)
                    {
                        break;
                    }
                }
                ws
            })
        })
        .collect();
    let mut sockets = Vec::with_capacity(n as usize);
    for c in connects {
        sockets.push(c.await.unwrap());
    }
    let connected_in = t.elapsed();

    // Traffic while connected.
    let views: Vec<View> = (0..n).map(|_| View::default()).collect();
    let acked: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let seen = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = sockets
        .into_iter()
        .zip(1..=n)
        .map(|(ws, u)| {
            tokio::spawn(connected(
                ws,
                u,
                partner(u),
                views[u as usize - 1].clone(),
                acked.clone(),
                seen.clone(),
            ))
        })
        .collect();
    let live_total = n * 2 * LIVE_PER_DEVICE as u64;
    crate::child::wait_until("the live traffic", Duration::from_secs(120), || {
        seen.load(Ordering::Acquire) >= live_total
    })
    .await;

    // Every connection dropped at once.
    let dropped_at = Instant::now();
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let drop_took = dropped_at.elapsed();

    // Messages to every user while away, from a few other connections.
    let away: Vec<_> = (0..AWAY_SENDERS)
        .map(|k| {
            let targets: Vec<u64> = (1..=n).filter(|u| u % AWAY_SENDERS == k).collect();
            tokio::spawn(pipelined(addr.clone(), AWAY_BASE + k, 64, BODY, move |i| {
                let (j, rep) = (i as usize / AWAY_PER_USER, i as usize % AWAY_PER_USER);
                targets
                    .get(j)
                    .map(|u| (format!("a{k}-{u}-{rep}"), format!("u:{u}")))
            }))
        })
        .collect();
    let mut acked = std::mem::take(&mut *acked.lock().unwrap());
    for a in away {
        acked.extend(a.await.unwrap());
    }
    assert_eq!(
        acked.len() as u64,
        live_total / 2 + n * AWAY_PER_USER as u64,
        "every send acknowledged"
    );
    let away_took = dropped_at.elapsed();

    // Who should have what: every acknowledged message of a direct conversation goes to
    // the inboxes of both its users.
    let mut expected: HashMap<u64, Vec<&Sent>> = HashMap::new();
    for s in &acked {
        let (lo, hi) = s.conv[2..].split_once(':').unwrap();
        for u in [lo, hi] {
            expected.entry(u.parse().unwrap()).or_default().push(s);
        }
    }

    // The storm: all reconnect within SPREAD; a fresh client probes meanwhile.
    let storm_start = Instant::now();
    let all_back = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe(addr.clone(), all_back.clone()));
    let back: Vec<_> = (1..=n)
        .map(|u| {
            let head = expected[&u].len() as u64;
            let delay = SPREAD * spread(u) as u32 / 1000;
            tokio::spawn(reconnect(
                addr.clone(),
                u,
                views[u as usize - 1].clone(),
                head,
                storm_start,
                delay,
            ))
        })
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap();
    let mut last_back = Duration::ZERO;
    let mut retried = 0;
    let mut sockets = Vec::with_capacity(n as usize);
    for b in back {
        let (ws, caught_up, at, attempts) = b.await.unwrap();
        hist.saturating_record(caught_up.as_micros() as u64);
        last_back = last_back.max(at);
        retried += u64::from(attempts > 1);
        sockets.push(ws);
    }
    all_back.store(true, Ordering::Release);
    let (connects, mut pings) = prober.await.unwrap();

    // Every device has everything acknowledged to its user, once, in order.
    for u in 1..=n {
        let view = views[u as usize - 1].lock().unwrap();
        check_inbox(&format!("user {u}"), &view, &expected[&u]);
    }
    drop(sockets);

    pings.sort();
    let ping_max = pings.last().copied().unwrap_or_default();
    let ping_p50 = pings.get(pings.len() / 2).copied().unwrap_or_default();
    let connect_max = connects.iter().max().copied().unwrap_or_default();
    let us = |v: u64| ms(Duration::from_micros(v));
    println!(
        "storm: {n} devices (connected in {:.1} s), {} messages acknowledged; all dropped \
         at once ({:.0} ms), {} messages sent while away ({:.1} s); reconnects spread over \
         {:?}: reconnect → caught-up p50 {:.0} ms p99 {:.0} ms max {:.0} ms; all back \
         {:.2} s after the storm began ({:.2} s after the drop); {retried} devices needed \
         more than one connect; fresh client during the storm ({} probes): connect max \
         {:.0} ms, ping → pong p50 {:.1} ms max {:.1} ms",
        connected_in.as_secs_f64(),
        acked.len(),
        ms(drop_took),
        n * AWAY_PER_USER as u64,
        away_took.as_secs_f64(),
        SPREAD,
        us(hist.value_at_quantile(0.5)),
        us(hist.value_at_quantile(0.99)),
        us(hist.max()),
        last_back.as_secs_f64(),
        (storm_start - dropped_at + last_back).as_secs_f64(),
        pings.len(),
        ms(connect_max),
        ms(ping_p50),
        ms(ping_max),
    );
    assert!(
        !pings.is_empty(),
        "the fresh client probed during the storm"
    );
    assert!(
        ping_max <= PING_BOUND,
        "a fresh client's ping took {ping_max:?} during the storm"
    );
}

/// A storm of 3,000 devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_devices_dropped_at_once_reconnect_and_catch_up() {
    storm(3_000).await;
}

/// The full storm: as many devices as one process can hold (20,000 open files at most,
/// less the test's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "about two minutes in a debug build; cargo test -p chat-server --test it storm -- --ignored --nocapture (--release for the target figures)"]
async fn nineteen_thousand_devices_dropped_at_once_reconnect_and_catch_up() {
    storm(19_000).await;
}
