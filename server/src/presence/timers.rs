//! The presence changes waiting for their delay, all on one timer task.
//!
//! Every connect and disconnect that changes a user's status waits (hysteresis) before it
//! is published. A task per wait cost a task's allocation (a few hundred bytes) and a
//! spawn for every connect; here a wait is an entry in one [`DelayQueue`], and one task
//! applies what falls due.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::time::DelayQueue;

use super::Presence;
use crate::model::UserId;

/// A change of `user` due after a delay, valid while the user's timer generation is
/// still `generation`.
struct Due {
    delay: Duration,
    user: UserId,
    generation: u64,
}

/// The way to the timer task, started with the first wait.
#[derive(Default)]
pub(super) struct Timers {
    tx: OnceLock<mpsc::UnboundedSender<Due>>,
}

impl Timers {
    /// Applies `generation`'s change of `user` after `delay` (if the presence still
    /// exists then).
    pub(super) fn after(
        &self,
        presence: &Arc<Presence>,
        delay: Duration,
        user: UserId,
        generation: u64,
    ) {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(Arc::downgrade(presence), rx));
            tx
        });
        let _ = tx.send(Due {
            delay,
            user,
            generation,
        });
    }
}

/// The timer task: ends when the presence is gone.
async fn run(presence: Weak<Presence>, mut rx: mpsc::UnboundedReceiver<Due>) {
    let mut waits: DelayQueue<(UserId, u64)> = DelayQueue::new();
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some(d) => {
                    waits.insert((d.user, d.generation), d.delay);
                }
                None => return,
            },
            // An empty queue answers `None` at once: the branch sleeps until a wait comes.
            Some(expired) = std::future::poll_fn(|cx| waits.poll_expired(cx)) => {
                let (user, generation) = expired.into_inner();
                match presence.upgrade() {
                    Some(p) => p.fire(user, generation),
                    None => return,
                }
            }
        }
    }
}
