//! Telling every napping user at once that the load is being stopped (ctrl-c sets Goose's
//! kill switch), so a user can sleep until its next planned action however far off it is
//! instead of waking every few seconds to look: at the design's rates those idle wake-ups
//! outnumbered the sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Notify;

/// How often the watcher looks at Goose's kill switch: how late a stop is seen at most.
const WATCH_EVERY: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Stop {
    stopping: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn is_set(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    /// Wakes every waiter, now and later.
    pub fn set(&self) {
        self.stopping.store(true, Relaxed);
        self.notify.notify_waiters();
    }

    /// Resolves once [`set`](Stop::set) was called (at once if it was already).
    pub async fn wait(&self) {
        // Registered before the flag is read, so a `set` in between is not missed.
        let notified = self.notify.notified();
        if self.is_set() {
            return;
        }
        notified.await;
    }

    /// Watches Goose's kill switch until it is set or the returned task is aborted.
    pub fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                if goose::is_killswitch_triggered() {
                    me.set();
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn set_wakes_waiters_before_and_after() {
        let stop = Arc::new(Stop::default());
        let early = {
            let s = stop.clone();
            tokio::spawn(async move { s.wait().await })
        };
        tokio::task::yield_now().await;
        stop.set();
        early.await.unwrap();
        stop.wait().await;
        assert!(stop.is_set());
    }
}
