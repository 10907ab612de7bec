//! Waking a user at its intended time to within tens of microseconds, on the runtime's
//! own thread.
//!
//! tokio's timer counts whole milliseconds and rounds every deadline up to the next one,
//! so a send planned for `t` went out 0–1 ms late, half a millisecond on average. The
//! open model times every latency from the intended time, so that lateness of the load
//! generator was counted into every send → delivery as if the server had taken it.
//!
//! Here the deadlines wait in a heap and one Linux timerfd (nanosecond resolution) is armed
//! for the earliest. The timerfd is registered with the runtime's own epoll, so its expiry
//! wakes the runtime where it already sleeps: the task that completes the sleepers runs
//! on the runtime's thread and wakes them there. A pacer thread of its own (the previous
//! design) cost two thread switches per send, a tenth of the load's CPU at seed-node.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
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
    /// The deadline the timerfd is armed for, if any.
    armed: Option<Instant>,
}

/// The heap and its timerfd.
struct Timer {
    heap: Mutex<Heap>,
    fd: AsyncFd<OwnedFd>,
}

/// Wakes sleepers at their deadlines. Started on first use, on the runtime of the task
/// that first sleeps; where a timerfd cannot be had, sleeps fall back to tokio's timer.
#[derive(Default)]
pub struct Pacer {
    timer: OnceLock<Option<Arc<Timer>>>,
}

impl Pacer {
    /// Sleeps until `at` (at once when it has passed).
    pub async fn sleep_until(&self, at: Instant) {
        if at <= Instant::now() {
            return;
        }
        let Some(timer) = self.timer() else {
            return tokio::time::sleep_until(at.into()).await;
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut heap = timer.heap.lock();
            let n = heap.next_n;
            heap.next_n += 1;
            heap.sleepers.push(Reverse(Sleeper { at, n, wake: tx }));
            if heap.armed.is_none_or(|armed| at < armed) {
                timer.arm(&mut heap, at);
            }
        }
        let _ = rx.await;
    }

    fn timer(&self) -> Option<&Arc<Timer>> {
        self.timer
            .get_or_init(|| match Timer::start() {
                Ok(timer) => Some(timer),
                Err(e) => {
                    tracing::warn!(error = %e, "no timerfd for the pacer: sends wait on tokio's millisecond timer");
                    None
                }
            })
            .as_ref()
    }
}

impl Timer {
    /// A timerfd on the current runtime's reactor, and the task that serves it.
    fn start() -> io::Result<Arc<Timer>> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other("not on a tokio runtime"));
        }
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open, and is the same
        // descriptor, until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let timer = Arc::new(Timer {
            heap: Mutex::new(Heap::default()),
            fd,
        });
        tokio::spawn(timer.clone().serve());
        Ok(timer)
    }

    /// Waits for each expiry and wakes the sleepers whose time has come.
    async fn serve(self: Arc<Self>) {
        let mut expirations = [0u8; 8];
        loop {
            let mut ready = match self.fd.readable().await {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::error!(error = %e, "the pacer's timerfd failed: waking every sleeper");
                    self.heap.lock().sleepers.drain().for_each(|s| {
                        let _ = s.0.wake.send(());
                    });
                    return;
                }
            };
            match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                // Read: the timerfd is not readable until it expires again, an edge the
                // reactor will see.
                Ok(_) => ready.clear_ready(),
                Err(rustix::io::Errno::AGAIN) => {
                    ready.clear_ready();
                    continue;
                }
                Err(_) => {}
            }
            self.fire();
        }
    }

    /// Wakes every sleeper whose time has come and arms the timerfd for the next one. A
    /// sleeper that stopped waiting (its receiver dropped) leaves its entry until the
    /// deadline, when completing it does nothing.
    fn fire(self: &Arc<Self>) {
        let mut heap = self.heap.lock();
        heap.armed = None;
        let now = Instant::now();
        while heap.sleepers.peek().is_some_and(|s| s.0.at <= now) {
            if let Some(Reverse(s)) = heap.sleepers.pop() {
                let _ = s.wake.send(());
            }
        }
        if let Some(next) = heap.sleepers.peek().map(|s| s.0.at) {
            self.arm(&mut heap, next);
        }
    }

    /// Arms the timerfd to expire at `at`. Should that fail, a tokio timer (to the next
    /// millisecond) takes its place for this deadline.
    fn arm(self: &Arc<Self>, heap: &mut Heap, at: Instant) {
        // A zero `it_value` disarms a timerfd: a deadline already here waits a nanosecond.
        let wait = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: i64::from(wait.subsec_nanos()),
            },
        };
        heap.armed = Some(at);
        if let Err(e) = timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec) {
            tracing::warn!(error = %e, "arming the pacer's timerfd failed: this deadline waits on tokio's timer");
            let timer = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                timer.fire();
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleepers(pacer: &Arc<Pacer>, t0: Instant, ms: &[u64]) -> Vec<tokio::task::JoinHandle<bool>> {
        ms.iter()
            .map(|&ms| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    let at = t0 + Duration::from_millis(ms);
                    pacer.sleep_until(at).await;
                    Instant::now() >= at
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn every_sleeper_wakes_and_none_early() {
        let pacer = Arc::new(Pacer::default());
        let t0 = Instant::now();
        // Later deadlines first, then earlier ones: each earlier one re-arms the timer.
        for t in sleepers(&pacer, t0, &[30, 10, 20, 10, 5, 1]) {
            assert!(t.await.unwrap(), "a sleeper woke before its deadline");
        }
        assert!(
            pacer.timer.get().is_some_and(Option::is_some),
            "the timerfd pacer did not start"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleepers_on_a_busy_runtime_wake_in_order_of_their_deadlines() {
        let pacer = Arc::new(Pacer::default());
        let t0 = Instant::now();
        let woke = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = [160u64, 40, 120, 80]
            .into_iter()
            .map(|ms| {
                let (pacer, woke) = (pacer.clone(), woke.clone());
                tokio::spawn(async move {
                    pacer.sleep_until(t0 + Duration::from_millis(ms)).await;
                    woke.lock().push(ms);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*woke.lock(), vec![40, 80, 120, 160]);
    }

    #[tokio::test]
    async fn a_past_deadline_returns_at_once_and_a_dropped_sleep_is_harmless() {
        let pacer = Pacer::default();
        pacer
            .sleep_until(Instant::now() - Duration::from_millis(5))
            .await;
        let later = Instant::now() + Duration::from_millis(5);
        drop(tokio::time::timeout(Duration::from_millis(1), pacer.sleep_until(later)).await);
        pacer.sleep_until(later + Duration::from_millis(1)).await;
    }
}
