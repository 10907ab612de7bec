//! The phases of a run (closed loop to find the maximum, open model at a fixed rate)
//! and the clock that schedules open-model sends.

use std::time::Duration;

use tokio::time::Instant;

/// What one phase asks of the load generator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PhaseSpec {
    /// Total messages per second (open model), or 0 for closed loop.
    pub(crate) rate: f64,
    pub(crate) pairs: usize,
    pub(crate) window: usize,
    pub(crate) body_bytes: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) drain: Duration,
}

impl PhaseSpec {
    pub(crate) fn label(&self) -> String {
        if self.rate > 0.0 {
            format!("open {:.0}/s", self.rate)
        } else {
            format!("closed w={}", self.window)
        }
    }
}

/// The phase's clock: microseconds since `t0`.
pub(crate) struct Clock {
    pub(crate) t0: Instant,
    /// Start and end of the measurement window.
    pub(crate) from_us: u64,
    pub(crate) to_us: u64,
    /// When senders and receivers stop waiting.
    pub(crate) give_up_us: u64,
}

impl Clock {
    pub(crate) fn now_us(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.t0)
            .as_micros() as u64
    }

    pub(crate) fn at(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    pub(crate) fn in_window(&self, us: u64) -> bool {
        (self.from_us..self.to_us).contains(&us)
    }
}
