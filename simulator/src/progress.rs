//! The live progress line: elapsed time, devices connected, messages per second and the
//! p99 delivery latency so far. On a terminal it redraws one line on standard error; in
//! CI (not a terminal) it prints a plain line every few seconds instead.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::records::Sample;

/// Seconds between two plain lines when standard error is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct ProgressLine {
    bar: Option<ProgressBar>,
    plain: bool,
    devices: u64,
    last: Option<Sample>,
    last_plain: Option<Instant>,
}

impl ProgressLine {
    /// `enabled` false prints nothing (tests, `--quiet`).
    pub fn new(enabled: bool, devices: u64) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        });
        ProgressLine {
            bar,
            plain: enabled && !tty,
            devices,
            last: None,
            last_plain: None,
        }
    }

    /// Redraws with a new sample.
    pub fn update(&mut self, s: &Sample, p99_ms: Option<f64>) {
        let (rate, drate) = match &self.last {
            Some(l) if s.t > l.t => (
                (s.acked.saturating_sub(l.acked)) as f64 / (s.t - l.t),
                (s.deliveries.saturating_sub(l.deliveries)) as f64 / (s.t - l.t),
            ),
            _ => (0.0, 0.0),
        };
        let p99 = p99_ms.map_or("-".to_owned(), |p| format!("{p:.1} ms"));
        let text = format!(
            "{:>6.1}s  connected {}/{}  {:.0} msg/s  {:.0} deliveries/s  p99 delivery {p99}  errors {}",
            s.t, s.connected, self.devices, rate, drate, s.errors
        );
        if let Some(b) = &self.bar {
            b.set_message(text);
            b.tick();
        } else if self.plain && self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            eprintln!("{text}");
            self.last_plain = Some(Instant::now());
        }
        self.last = Some(s.clone());
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
