//! Slow and absent readers at scale: a thousand devices stop reading while senders flood
//! them. The server cuts each one off with 1013 within a bounded time, its peak memory
//! stays under a ceiling derived from the queue bound, everyone else's conversations keep
//! their latency, and every stalled device gets its whole inbox afterwards (what reached
//! it live, then `sync`), exactly once and in order.
//!
//! A stalled device is a real WebSocket whose read half is never polled. On loopback the
//! kernel would hold megabytes per socket before the server's queue saw anything: the MSS
//! is 64 KiB and Linux sizes a send buffer for ten segments (~2.6 MB a socket). A stalled
//! device here connects the way a phone on a real network path would, with a 1460-byte
//! MSS and a small receive buffer, so some hundred KB of flood fill its path and the
//! test spends its time in the server's queue bound rather than in kernel buffers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::child::{ChildServer, token};

/// Frames a device's outgoing queue holds in these tests (`--device-queue`).
const DEVICE_QUEUE: usize = 64;
/// Bytes of a flood message's body.
const FLOOD_BODY: usize = 1000;
/// Bytes of a `msg` frame around its body (type, conv, seq, useq, from, id, ts), at most.
const FRAME_ENVELOPE: usize = 200;
/// Stalled members of one flooded group (the group's sender is the other member).
const GROUP_MEMBERS: usize = 250;
/// Flood sends a flooder keeps in flight.
const FLOOD_WINDOW: usize = 4;
/// Conversations between healthy devices that keep chatting through the flood.
const HEALTHY_PAIRS: u64 = 10;
/// Each healthy device sends one message per period, paced by the clock.
const HEALTHY_PERIOD: Duration = Duration::from_millis(100);
/// The gate on healthy send → delivery p99 while the stalled devices are flooded, and
/// the time from the flood's start within which every stalled device is closed 1013.
/// An optimized server meets 2 s and 30 s with room to spare; a debug build (whose
/// fan-out is JSON escaping at a few MB/s) on two cores shared with other jobs measured
/// p99 0.7-3.6 s and 15-38 s, so unoptimized the bounds are 5 s and 60 s. Measured values
/// are printed.
const HEALTHY_P99_GATE: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(5)
} else {
    Duration::from_secs(2)
};
const CLOSE_BOUND: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(60)
} else {
    Duration::from_secs(30)
};
/// A stalled device's receive buffer, and the MSS of its path (see the module doc).
const STALLED_RCVBUF: u32 = 4 * 1024;
const PATH_MSS: i32 = 536;
/// What the store may grow by in memory during a flood (memtables, caches, journal
/// buffers), apart from the devices.
const STORE_ALLOWANCE: u64 = 96 << 20;

/// User ids: healthy devices, flooders (one per group), stalled devices.
const HEALTHY_BASE: u64 = 1;
const FLOODER_BASE: u64 = 1_000;
const STALLED_BASE: u64 = 10_000;

/// A device's WebSocket over a plain TCP stream.
type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client's WebSocket settings: a small read buffer, since a test holds thousands.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// A `msg` as it comes live or in a `sync` page.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Item {
    pub conv: String,
    pub seq: u64,
    pub useq: u64,
    pub from: u64,
    pub id: String,
    pub body: String,
}

/// The server frames these tests read.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Incoming {
    Msg(Item),
    Sent {
        id: String,
        conv: String,
        seq: u64,
        useq: u64,
    },
    Sync {
        items: Vec<Item>,
        next: u64,
        more: bool,
    },
    Pong,
    Error {
        code: String,
        message: String,
    },
    #[serde(other)]
    Other,
}

pub fn parse(text: &str) -> Incoming {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("unreadable frame {text}: {e}"))
}

/// An acknowledged send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub from: u64,
    pub id: String,
    pub conv: String,
    pub seq: u64,
}

/// The body of message `id`: the id, padded to `len` bytes (so a delivered body can be
/// checked against the id alone).
pub fn body_of(id: &str, len: usize) -> String {
    let mut b = format!("{id}:");
    while b.len() < len {
        b.push('x');
    }
    b
}

/// Sends what `next` hands out (`(id, to)`, until `None`) over one WebSocket of `from`,
/// keeping up to `window` sends in flight; returns every acknowledged send, in the order
/// of the answers. Any error answer fails the test.
pub async fn pipelined(
    addr: String,
    from: u64,
    window: usize,
    body_len: usize,
    mut next: impl FnMut(u64) -> Option<(String, String)> + Send,
) -> Vec<Sent> {
    let url = format!("ws://{addr}/v1/ws?token={}", token(from));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
        .await
        .expect("sender connects");
    let mut acked = Vec::new();
    let mut in_flight = 0;
    let mut done = false;
    let mut i = 0;
    loop {
        // Top the window up once half of it is answered: many sends per write.
        if !done && in_flight <= window / 2 {
            while in_flight < window {
                let Some((id, to)) = next(i) else {
                    done = true;
                    break;
                };
                let body = body_of(&id, body_len);
                let frame = json!({"type": "send", "id": id, "to": to, "body": body});
                ws.feed(Message::text(frame.to_string())).await.unwrap();
                in_flight += 1;
                i += 1;
            }
            ws.flush().await.unwrap();
        }
        if in_flight == 0 {
            break;
        }
        let frame = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("an answer within 60 s")
            .expect("sender's connection open")
            .expect("no socket error");
        let Message::Text(t) = frame else { continue };
        match parse(&t) {
            Incoming::Sent { id, conv, seq, .. } => {
                acked.push(Sent {
                    from,
                    id,
                    conv,
                    seq,
                });
                in_flight -= 1;
            }
            Incoming::Error { code, message } => panic!("send refused: {code} {message}"),
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    acked
}

/// Checks what one device ended up with against what was acknowledged to its user:
/// `seen` (inbox position → message, every position the device got, live or by `sync`)
/// is the whole inbox 1..=n, holds every acknowledged message exactly once with its
/// conversation, seq and body, nothing else, and each conversation's seqs grow along the
/// inbox.
pub fn check_inbox(who: &str, seen: &std::collections::BTreeMap<u64, Item>, acked: &[&Sent]) {
    let n = seen.len() as u64;
    assert_eq!(
        seen.keys().next_back().copied().unwrap_or(0),
        n,
        "{who}: inbox positions 1..={n} without a gap"
    );
    assert_eq!(
        seen.len(),
        acked.len(),
        "{who}: the inbox holds every acknowledged message and nothing else"
    );
    let mut by_id: HashMap<(u64, &str), &Item> = HashMap::with_capacity(seen.len());
    let mut last_seq: HashMap<&str, u64> = HashMap::new();
    for item in seen.values() {
        let dup = by_id.insert((item.from, item.id.as_str()), item);
        assert!(dup.is_none(), "{who}: {} twice in the inbox", item.id);
        let last = last_seq.entry(item.conv.as_str()).or_insert(0);
        assert!(
            item.seq > *last,
            "{who}: {} seq {} after seq {} in the inbox",
            item.conv,
            item.seq,
            last
        );
        *last = item.seq;
    }
    for s in acked {
        let item = by_id
            .get(&(s.from, s.id.as_str()))
            .unwrap_or_else(|| panic!("{who}: acknowledged {} never reached it", s.id));
        assert_eq!(
            (item.conv.as_str(), item.seq),
            (s.conv.as_str(), s.seq),
            "{who}: {} where it was acknowledged",
            s.id
        );
        assert!(
            item.body.starts_with(&format!("{}:", s.id)),
            "{who}: body of {}",
            s.id
        );
    }
}

/// Sets the MSS a socket will announce when it connects (`TCP_MAXSEG`): the peer sizes
/// its send buffer from it (see the module doc).
fn set_mss(sock: &TcpSocket, mss: i32) {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn setsockopt(
            fd: i32,
            level: i32,
            name: i32,
            value: *const std::ffi::c_void,
            len: u32,
        ) -> i32;
    }
    const IPPROTO_TCP: i32 = 6;
    const TCP_MAXSEG: i32 = 2;
    // SAFETY: a live socket descriptor, and a pointer to an int with its size.
    let rc = unsafe {
        setsockopt(
            sock.as_raw_fd(),
            IPPROTO_TCP,
            TCP_MAXSEG,
            (&mss as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    assert_eq!(rc, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
}

/// A device's WebSocket once its session is set up (a `ping` answered): its live stream
/// has begun.
pub async fn connect_ready(addr: &str, user: u64) -> Ws {
    let url = format!("ws://{addr}/v1/ws?token={}", token(user));
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
        .await
        .expect("device connects");
    ready(ws).await
}

/// Sends `ping` and waits for the `pong`.
async fn ready(mut ws: Ws) -> Ws {
    ws.send(Message::text(json!({"type": "ping"}).to_string()))
        .await
        .unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("pong in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = m
            && matches!(parse(&t), Incoming::Pong)
        {
            return ws;
        }
    }
}

/// A stalled device: connects like a phone (see the module doc), waits until its session
/// is set up, and from then on nobody polls its read half.
async fn connect_stalled(addr: SocketAddr, user: u64) -> Ws {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(STALLED_RCVBUF).unwrap();
    set_mss(&sock, PATH_MSS);
    let tcp = sock.connect(addr).await.expect("stalled device connects");
    let url = format!("ws://{addr}/v1/ws?token={}", token(user));
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        url,
        MaybeTlsStream::Plain(tcp),
        Some(ws_config()),
    )
    .await
    .expect("stalled device upgrades");
    ready(ws).await
}

/// The server's count of devices closed 1013 so far.
async fn overflow_closed(http: &reqwest::Client, addr: &str) -> u64 {
    crate::support::metric(http, addr, "chat_overflow_closed_total").await
}

/// Latency of healthy deliveries, in microseconds, while `recording`.
struct HealthyLatency {
    recording: AtomicBool,
    hist: Mutex<Histogram<u64>>,
}

/// One healthy device: sends to `partner` once per period (the body carries the intended
/// send time, so a stall anywhere counts in the latency) and reads everything, timing
/// each `msg` from its intended send time. `acked[me]` and `got[me]` count its
/// acknowledged sends and the messages it received.
fn healthy_device(
    ws: Ws,
    me: u64,
    partner: u64,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    lat: Arc<HealthyLatency>,
    counts: Arc<HashMap<u64, (AtomicU64, AtomicU64)>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let reader_counts = counts.clone();
        let reader_stop = stop.clone();
        let reader = tokio::spawn(async move {
            loop {
                let m = match stream.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => {
                        reader_stop.store(true, Ordering::Release);
                        panic!("healthy {me} closed by the server: {c:?}");
                    }
                    Some(Ok(_)) => continue,
                    other => {
                        if reader_stop.load(Ordering::Acquire) {
                            return;
                        }
                        panic!("healthy {me}: {other:?}");
                    }
                };
                let t = m;
                match parse(&t) {
                    Incoming::Msg(item) => {
                        let sent_us: u64 = item.body.parse().expect("healthy body");
                        let now_us = epoch.elapsed().as_micros() as u64;
                        if lat.recording.load(Ordering::Acquire) {
                            lat.hist
                                .lock()
                                .unwrap()
                                .saturating_record(now_us.saturating_sub(sent_us));
                        }
                        reader_counts[&me].1.fetch_add(1, Ordering::AcqRel);
                    }
                    Incoming::Sent { .. } => {
                        reader_counts[&me].0.fetch_add(1, Ordering::AcqRel);
                    }
                    Incoming::Error { code, message } => panic!("healthy {me}: {code} {message}"),
                    _ => {}
                }
            }
        });
        let start = tokio::time::Instant::now();
        let mut k: u32 = 0;
        while !stop.load(Ordering::Acquire) {
            let intended = start + HEALTHY_PERIOD * k;
            tokio::time::sleep_until(intended).await;
            let us = (intended.into_std() - epoch).as_micros() as u64;
            let frame = json!({"type": "send", "id": format!("h{me}-{k}"),
                               "to": format!("u:{partner}"), "body": us.to_string()});
            if sink.send(Message::text(frame.to_string())).await.is_err() {
                break;
            }
            k += 1;
        }
        // Keep reading until the partner's last messages are in; the test ends it.
        reader.await.unwrap();
    })
}

/// The outcome of one stall run.
struct Report {
    stalled: usize,
    flood_msgs: usize,
    hwm_before: u64,
    hwm_flood: u64,
    ceiling: u64,
    first_closed: Option<Duration>,
    all_closed: Option<Duration>,
    close_p50: Duration,
    close_max: Duration,
    healthy_p50: Duration,
    healthy_p99: Duration,
    healthy_n: u64,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// `stalled` devices stop reading while their groups are flooded; healthy pairs chat
/// meanwhile. Asserts every property; returns the figures.
async fn stall_run(stalled: usize) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start_with(
        &format!("fjall:{}", dir.path().display()),
        "warn",
        &["--device-queue", &DEVICE_QUEUE.to_string()],
    );
    let addr = server.addr.clone();
    let sock_addr: SocketAddr = addr.parse().unwrap();
    let http = reqwest::Client::new();
    let epoch = Instant::now();

    // Healthy pairs chat from the start.
    let stop_healthy = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(HealthyLatency {
        recording: AtomicBool::new(false),
        hist: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()),
    });
    let healthy_users: Vec<u64> = (0..2 * HEALTHY_PAIRS).map(|i| HEALTHY_BASE + i).collect();
    let counts: Arc<HashMap<u64, (AtomicU64, AtomicU64)>> = Arc::new(
        healthy_users
            .iter()
            .map(|&u| (u, (AtomicU64::new(0), AtomicU64::new(0))))
            .collect(),
    );
    let partner = |u: u64| HEALTHY_BASE + ((u - HEALTHY_BASE) ^ 1);
    // Every healthy device is online (its session set up) before any of them sends, so
    // each gets all of its partner's messages live.
    let mut healthy_ws = Vec::new();
    for &u in &healthy_users {
        healthy_ws.push(connect_ready(&addr, u).await);
    }
    let healthy: Vec<_> = healthy_users
        .iter()
        .zip(healthy_ws)
        .map(|(&u, ws)| {
            healthy_device(
                ws,
                u,
                partner(u),
                epoch,
                stop_healthy.clone(),
                lat.clone(),
                counts.clone(),
            )
        })
        .collect();

    // The stalled users, in groups each flooded by one sender.
    let stalled_users: Vec<u64> = (0..stalled as u64).map(|i| STALLED_BASE + i).collect();
    let mut groups: Vec<(u64, String, Vec<u64>)> = Vec::new(); // (flooder, conv, members)
    for (g, members) in stalled_users.chunks(GROUP_MEMBERS).enumerate() {
        let flooder = FLOODER_BASE + g as u64;
        let r = http
            .post(format!("http://{addr}/v1/groups"))
            .bearer_auth(token(flooder))
            .json(&json!({"name": format!("flood {g}"), "members": members}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "group created: {}", r.status());
        let v: serde_json::Value = r.json().await.unwrap();
        groups.push((
            flooder,
            v["conv"].as_str().unwrap().to_owned(),
            members.to_vec(),
        ));
    }
    let mut devices: Vec<(u64, Ws)> = stream::iter(stalled_users.clone())
        .map(|u| async move { (u, connect_stalled(sock_addr, u).await) })
        .buffer_unordered(64)
        .collect()
        .await;
    devices.sort_by_key(|(u, _)| *u);
    // From here on nobody polls the stalled devices' sockets.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hwm_before = server.process().max_rss_bytes().unwrap();

    // The flood: each group's sender sends as fast as it is answered until the server
    // has closed every stalled device (or the bound has long passed).
    lat.recording.store(true, Ordering::Release);
    let flood_start = Instant::now();
    let stop_flood = Arc::new(AtomicBool::new(stalled == 0));
    let flooders: Vec<_> = groups
        .iter()
        .enumerate()
        .map(|(g, (flooder, conv, _))| {
            let stop = stop_flood.clone();
            let to = format!("g:{}", &conv[2..]);
            tokio::spawn(pipelined(
                addr.clone(),
                *flooder,
                FLOOD_WINDOW,
                FLOOD_BODY,
                move |i| (!stop.load(Ordering::Acquire)).then(|| (format!("f{g}-{i}"), to.clone())),
            ))
        })
        .collect();
    let (mut first_closed, mut all_closed) = (None, None);
    if stalled > 0 {
        let deadline = CLOSE_BOUND + Duration::from_secs(15);
        while flood_start.elapsed() < deadline {
            let closed = overflow_closed(&http, &addr).await;
            if closed > 0 && first_closed.is_none() {
                first_closed = Some(flood_start.elapsed());
            }
            if closed >= stalled as u64 {
                all_closed = Some(flood_start.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop_flood.store(true, Ordering::Release);
    let mut acked: HashMap<String, Vec<Sent>> = HashMap::new();
    for (f, (_, conv, _)) in flooders.into_iter().zip(&groups) {
        acked.insert(conv.clone(), f.await.unwrap());
    }
    lat.recording.store(false, Ordering::Release);
    let flood_msgs: usize = acked.values().map(Vec::len).sum();

    // The stalled devices read again: what got through live, then the close frame.
    let drains: Vec<_> = devices
        .drain(..)
        .map(|(u, mut ws)| {
            tokio::spawn(async move {
                let mut live = Vec::new();
                loop {
                    match tokio::time::timeout(CLOSE_BOUND, ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            if let Incoming::Msg(item) = parse(&t) {
                                live.push(item);
                            }
                        }
                        Ok(Some(Ok(Message::Close(c)))) => {
                            let code = c.map_or(1005, |c| u16::from(c.code));
                            return (u, live, Ok((code, flood_start.elapsed())));
                        }
                        Ok(Some(Ok(_))) => {}
                        other => return (u, live, Err(format!("{other:?}"))),
                    }
                }
            })
        })
        .collect();
    // The healthy conversations lost nothing either; they end with the flood.
    stop_healthy.store(true, Ordering::Release);
    let all_in = || {
        healthy_users.iter().all(|&u| {
            counts[&partner(u)].1.load(Ordering::Acquire) == counts[&u].0.load(Ordering::Acquire)
        })
    };
    let waited = Instant::now();
    while !all_in()
        && !healthy.iter().any(|h| h.is_finished())
        && waited.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healthy_cut: Vec<u64> = healthy
        .iter()
        .zip(&healthy_users)
        .filter(|(h, _)| h.is_finished())
        .map(|(_, &u)| u)
        .collect();
    let healthy_counts: Vec<_> = healthy_users
        .iter()
        .map(|&u| {
            (
                u,
                counts[&u].0.load(Ordering::Acquire),
                counts[&partner(u)].1.load(Ordering::Acquire),
            )
        })
        .collect();
    let healthy_all_in = all_in();
    for h in healthy {
        h.abort();
    }

    let mut lives: HashMap<u64, Vec<Item>> = HashMap::new();
    let mut close_times = Vec::new();
    let mut bad = Vec::new();
    for d in drains {
        let (u, live, outcome) = d.await.unwrap();
        match outcome {
            Ok((1013, t)) => close_times.push(t),
            Ok((code, _)) => bad.push(format!("user {u}: closed {code}")),
            Err(e) => bad.push(format!("user {u}: no close frame: {e}")),
        }
        lives.insert(u, live);
    }
    let hwm_flood = server.process().max_rss_bytes().unwrap();
    close_times.sort();
    let pct = |v: &[Duration], q: f64| {
        v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    let (close_p50, close_max) = (pct(&close_times, 0.5), pct(&close_times, 1.0));

    // Every stalled device reconnects and syncs from the last position it got live.
    let checks: Vec<_> = groups
        .iter()
        .flat_map(|(_, conv, members)| members.iter().map(move |&u| (u, conv.clone())))
        .map(|(u, conv)| {
            let live = lives.remove(&u).unwrap_or_default();
            (u, conv, live)
        })
        .collect();
    let acked = Arc::new(acked);
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let syncs: Vec<_> = checks
        .into_iter()
        .map(|(u, conv, live)| {
            let (addr, acked, limit) = (addr.clone(), acked.clone(), limit.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.unwrap();
                let who = format!("stalled user {u}");
                let mut seen = std::collections::BTreeMap::new();
                for (i, item) in live.into_iter().enumerate() {
                    assert_eq!(item.useq, i as u64 + 1, "{who}: live frames in inbox order");
                    seen.insert(item.useq, item);
                }
                let after = seen.len() as u64;
                for item in sync_all(&addr, u, after).await {
                    assert!(
                        item.useq > after,
                        "{who}: sync after {after} gave {}",
                        item.useq
                    );
                    let prev = seen.insert(item.useq, item);
                    assert!(prev.is_none(), "{who}: a position came twice");
                }
                let mine: Vec<&Sent> = acked[&conv].iter().collect();
                check_inbox(&who, &seen, &mine);
            })
        })
        .collect();
    for s in syncs {
        s.await.unwrap();
    }

    let hist = lat.hist.lock().unwrap();
    let us = |v: u64| Duration::from_micros(v);
    // The ceiling: what the store may grow by, and per stalled device a full queue of
    // flood frames (each with its queue slot and allocation overhead), the writer's
    // buffer of gathered frames (doubled: the vector grows by doubling) and an idle
    // connection's own few KiB, all of it twice over for allocator fragmentation.
    let frame = (FLOOD_BODY + FRAME_ENVELOPE + 64) as u64;
    let per_device = 2 * (DEVICE_QUEUE as u64 * frame + 2 * (16 << 10) + (8 << 10));
    let ceiling = hwm_before + STORE_ALLOWANCE + stalled as u64 * per_device;
    let report = Report {
        stalled,
        flood_msgs,
        hwm_before,
        hwm_flood,
        ceiling,
        first_closed,
        all_closed,
        close_p50,
        close_max,
        healthy_p50: us(hist.value_at_quantile(0.5)),
        healthy_p99: us(hist.value_at_quantile(0.99)),
        healthy_n: hist.len(),
    };
    drop(hist);
    println!(
        "stalls: {stalled} stalled devices, {flood_msgs} flood messages ({} B) to {} groups; \
         server closed the first 1013 after {:?}, all after {:?}; stalled devices saw 1013 at p50 {:?} max {:?} \
         after the flood began; peak RSS {:.1} MB (before the flood {:.1} MB, ceiling \
         {:.1} MB); healthy send→delivery p50 {:?} p99 {:?} over {} messages",
        FLOOD_BODY,
        groups.len(),
        report.first_closed,
        report.all_closed,
        report.close_p50,
        report.close_max,
        mb(report.hwm_flood),
        mb(report.hwm_before),
        mb(report.ceiling),
        report.healthy_p50,
        report.healthy_p99,
        report.healthy_n,
    );

    assert!(
        healthy_cut.is_empty(),
        "healthy devices {healthy_cut:?} were cut off"
    );
    assert!(
        healthy_all_in,
        "healthy (user, acknowledged, received by the partner): {healthy_counts:?}"
    );
    if stalled > 0 {
        let t = report.all_closed.unwrap_or_else(|| {
            panic!(
                "the server closed not every stalled device 1013 within {:?}",
                CLOSE_BOUND + Duration::from_secs(15)
            )
        });
        assert!(
            t <= CLOSE_BOUND,
            "all stalled devices closed 1013 after {t:?}"
        );
    }
    assert!(
        bad.is_empty(),
        "{} stalled devices not closed 1013: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(
        close_max <= CLOSE_BOUND + Duration::from_secs(15),
        "a stalled device saw its close only after {close_max:?}"
    );
    assert!(
        report.hwm_flood <= report.ceiling,
        "peak RSS {:.1} MB over the ceiling {:.1} MB",
        mb(report.hwm_flood),
        mb(report.ceiling)
    );
    assert!(report.healthy_n > 0, "healthy latency was measured");
    assert!(
        report.healthy_p99 <= HEALTHY_P99_GATE,
        "healthy p99 {:?} over the gate {HEALTHY_P99_GATE:?}",
        report.healthy_p99
    );
    drop(server);
    report
}

/// Every inbox entry of `user` after `after`, by `sync` pages over a fresh WebSocket.
pub async fn sync_all(addr: &str, user: u64, mut after: u64) -> Vec<Item> {
    let url = format!("ws://{addr}/v1/ws?token={}", token(user));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
        .await
        .expect("reconnects");
    let mut out = Vec::new();
    loop {
        ws.send(Message::text(
            json!({"type": "sync", "after": after, "limit": 1000}).to_string(),
        ))
        .await
        .unwrap();
        let (items, next, more) = loop {
            let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
                .await
                .expect("a sync page in time")
                .expect("open")
                .expect("no error");
            if let Message::Text(t) = m
                && let Incoming::Sync { items, next, more } = parse(&t)
            {
                break (items, next, more);
            }
        };
        out.extend(items);
        after = next;
        if !more {
            let _ = ws.close(None).await;
            return out;
        }
    }
}

/// A thousand devices stop reading while their groups are flooded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_devices_are_closed_1013_in_bounded_memory_and_lose_nothing() {
    stall_run(1000).await;
}

/// The figure: the server's peak RSS against the number of stalled devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a figure: several runs, about a minute; cargo test -p chat-server --test it stalls -- --ignored --nocapture"]
async fn peak_memory_against_stalled_devices() {
    let mut rows = Vec::new();
    for n in [0, 250, 500, 1000] {
        rows.push(stall_run(n).await);
    }
    let base = rows[0].hwm_flood;
    println!(
        "\nstalled | flood msgs | peak RSS MB | before flood MB | ceiling MB | growth over 0 MB | KB per stalled device | all closed after | healthy p99"
    );
    for r in &rows {
        let growth = r.hwm_flood.saturating_sub(base);
        let per = if r.stalled > 0 {
            format!("{:.1}", growth as f64 / r.stalled as f64 / 1024.0)
        } else {
            "-".into()
        };
        println!(
            "{:7} | {:10} | {:11.1} | {:15.1} | {:10.1} | {:16.1} | {:21} | {:16?} | {:?}",
            r.stalled,
            r.flood_msgs,
            mb(r.hwm_flood),
            mb(r.hwm_before),
            mb(r.ceiling),
            mb(growth),
            per,
            r.all_closed,
            r.healthy_p99
        );
    }
}
