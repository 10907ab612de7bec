//! Waking a user at its intended time to within tens of microseconds.
//!
//! tokio's timer counts whole milliseconds and rounds every deadline up to the next one,
//! so a send planned for `t` went out 0–1 ms late, half a millisecond on average. The
//! open model times every latency from the intended time, so that lateness of the load
//! generator was counted into every send → delivery as if the server had taken it. Here
//! one thread keeps the deadlines in a heap and waits on a condition variable with a
//! nanosecond timeout (a futex); when a deadline comes it completes the sleeper's
//! oneshot, which wakes the sleeping task on the runtime.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

/// One sleeper: its deadline, a number that keeps equal deadlines apart, and whom to wake.
struct Sleeper {
    at: Instant,
    n: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Sleeper {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.n) == (o.at, o.n)
    }
}
impl Eq for Sleeper {}
impl PartialOrd for Sleeper {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sleeper {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.n).cmp(&(o.at, o.n))
    }
}

#[derive(Default)]
struct Heap {
    sleepers: BinaryHeap<Reverse<Sleeper>>,
    next_n: u64,
}

struct Pacer {
    heap: Mutex<Heap>,
    changed: Condvar,
}

fn pacer() -> &'static Pacer {
    static PACER: OnceLock<&'static Pacer> = OnceLock::new();
    PACER.get_or_init(|| {
        let p: &'static Pacer = Box::leak(Box::new(Pacer {
            heap: Mutex::new(Heap::default()),
            changed: Condvar::new(),
        }));
        // Without the thread every sleep would last forever, so a failure to start one
        // is the process's end, as a failure to start the runtime would be.
        std::thread::Builder::new()
            .name("chat-sim-pacer".into())
            .spawn(move || p.run())
            .expect("start the pacer thread");
        p
    })
}

impl Pacer {
    /// Wakes every sleeper whose time has come, then waits for the next deadline or an
    /// earlier one to be added. A sleeper that stopped waiting (its receiver dropped)
    /// leaves its entry until the deadline, when completing it does nothing.
    fn run(&self) {
        let mut heap = self.heap.lock();
        loop {
            let now = Instant::now();
            while heap.sleepers.peek().is_some_and(|s| s.0.at <= now) {
                if let Some(Reverse(s)) = heap.sleepers.pop() {
                    let _ = s.wake.send(());
                }
            }
            match heap.sleepers.peek().map(|s| s.0.at) {
                Some(at) => {
                    self.changed.wait_until(&mut heap, at);
                }
                None => self.changed.wait(&mut heap),
            }
        }
    }
}

/// Sleeps until `at` (at once when it has passed).
pub async fn sleep_until(at: Instant) {
    if at <= Instant::now() {
        return;
    }
    let p = pacer();
    let (tx, rx) = oneshot::channel();
    {
        let mut heap = p.heap.lock();
        let n = heap.next_n;
        heap.next_n += 1;
        let first = heap.sleepers.peek().is_none_or(|s| at < s.0.at);
        heap.sleepers.push(Reverse(Sleeper { at, n, wake: tx }));
        if first {
            p.changed.notify_one();
        }
    }
    let _ = rx.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_sleeper_wakes_and_none_early() {
        let t0 = Instant::now();
        let tasks: Vec<_> = [30u64, 10, 20, 10]
            .into_iter()
            .map(|ms| {
                tokio::spawn(async move {
                    let at = t0 + Duration::from_millis(ms);
                    sleep_until(at).await;
                    Instant::now() >= at
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap(), "a sleeper woke before its deadline");
        }
    }

    #[tokio::test]
    async fn a_past_deadline_returns_at_once_and_a_dropped_sleep_is_harmless() {
        sleep_until(Instant::now() - Duration::from_millis(5)).await;
        let later = Instant::now() + Duration::from_millis(5);
        drop(tokio::time::timeout(Duration::from_millis(1), sleep_until(later)).await);
        sleep_until(later + Duration::from_millis(1)).await;
    }
}
