//! The cost of one presence change with many subscribers watching.
//!
//! The source design warns that broadcasting status changes is what breaks at scale; this
//! server sends a change only to the connections that listed the user in `presence_sub`.
//! This program subscribes N connections (device queues, as the server holds them) to one
//! user and measures the time from one published change until every watcher's queue has
//! it, and the same with nobody watching, so the per-subscriber cost can be read off.
//!
//! `cargo bench -p chat-server --bench presence -- [WATCHERS] [ROUNDS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_server::hub::{CloseSignal, DeviceHandle, Outbound, queue};
use chat_server::metrics::Metrics;
use chat_server::presence::{Presence, PresenceOut, Status};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let watchers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(watchers, rounds));
}

async fn run(watchers: usize, rounds: usize) {
    let presence = Arc::new(Presence::new(
        Duration::ZERO,
        Duration::ZERO,
        Arc::new(Metrics::new()),
    ));
    let mut queues = Vec::with_capacity(watchers);
    for conn in 0..watchers as u64 {
        let (tx, rx) = queue::queue(rounds * 2 + 8);
        let handle = DeviceHandle {
            conn: chat_server::hub::ConnId(conn),
            device: format!("w{conn}").parse().expect("device id"),
            tx,
            close: Arc::new(CloseSignal::default()),
            own: Arc::default(),
        };
        presence.subscribe(&handle, vec![1]);
        queues.push((handle, rx));
    }
    let change = |i: usize| PresenceOut {
        user: 1,
        status: if i % 2 == 0 {
            Status::Online
        } else {
            Status::Offline
        },
        last_seen: Some(i as u64),
    };
    let mut watched = Vec::with_capacity(rounds);
    let mut unwatched = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        presence.broadcast(&change(i));
        watched.push(t.elapsed());
        let t = Instant::now();
        presence.broadcast(&PresenceOut {
            user: 2,
            ..change(i)
        });
        unwatched.push(t.elapsed());
    }
    // Every watcher got every change, in order.
    let mut delivered = 0usize;
    for (_, rx) in &mut queues {
        while let Some(Outbound::Frame(_)) = rx.try_recv() {
            delivered += 1;
        }
    }
    watched.sort_unstable();
    unwatched.sort_unstable();
    let median = |v: &[Duration]| v[v.len() / 2];
    let p99 = |v: &[Duration]| v[(v.len() * 99 / 100).min(v.len() - 1)];
    println!("presence change fan-out ({rounds} changes, median and p99 per change)");
    println!(
        "  {watchers:>6} watchers: median {:>10.1?}  p99 {:>10.1?}  = {:.0} ns per watcher",
        median(&watched),
        p99(&watched),
        median(&watched).as_nanos() as f64 / watchers.max(1) as f64
    );
    println!(
        "  {:>6} watchers: median {:>10.1?}  p99 {:>10.1?}",
        0,
        median(&unwatched),
        p99(&unwatched)
    );
    println!(
        "  frames queued: {delivered} of {} expected",
        watchers * rounds
    );
}
