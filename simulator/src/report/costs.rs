//! The server's costs, fitted from one run's samples: CPU as an idle floor, a cost per
//! connection opened and a cost per message; memory as the resident set the load started
//! from, a cost per connection held and a cost per message written.
//!
//! Why fitted rather than divided: a run's CPU seconds over its messages charge every
//! message with the idle floor and the ramp's connection setup, so a plan that scales that
//! mean with the load doubles those too. Here every sample interval is an equation — its
//! CPU against the connections opened and the messages acknowledged in it — and the three
//! terms come from the least-squares fit over the load: the ramp (many connects, few
//! messages) and the full load (few connects, all the messages) tell them apart. Memory
//! likewise: connections held grow during the ramp, messages written during the whole
//! load. A term is what this run measured between its own lowest and highest load; the
//! fit says nothing of a load that behaves otherwise (batching that makes each message
//! cheaper at a higher rate shows up as a prediction that is too high).

use serde::Serialize;

use crate::records::Sample;

/// Fewest sample intervals a fit takes: below this a run is too short to tell three
/// terms apart.
pub const MIN_INTERVALS: usize = 8;

/// Whether sample `s` was taken during the load between `load_start` and `load_end`.
pub(super) fn during_load(s: &Sample, load_start: f64, load_end: f64) -> bool {
    s.t >= load_start - 1e-6 && s.t <= load_end + 1e-6
}

/// What one run's samples say the server costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerCosts {
    /// CPU with nothing to do, percent of one core.
    pub idle_cpu_percent: f64,
    /// CPU per connection opened (handshake, token, the first sync).
    pub cpu_us_per_connect: f64,
    /// CPU per message acknowledged, its deliveries, receipts and the reads the scenario
    /// makes per message included.
    pub cpu_us_per_message: f64,
    /// How much of the CPU's variation over the intervals the fit explains (R²).
    pub cpu_fit_r2: f64,
    /// Resident memory with no connection and no message written.
    pub rss_base_bytes: f64,
    pub rss_bytes_per_connection: f64,
    /// Resident memory per message written since the load began (memtables, caches).
    pub rss_bytes_per_message: f64,
    pub rss_fit_r2: f64,
    /// Sample intervals the fits used.
    pub intervals: usize,
}

impl ServerCosts {
    /// Fits the costs from the samples taken between `load_start` and `load_end`; `None`
    /// when the samples are too few, carry no server figures, or cannot tell the terms
    /// apart (e.g. a load with no ramp, or a fit that finds a negative cost).
    pub fn fit(samples: &[Sample], load_start: f64, load_end: f64) -> Option<ServerCosts> {
        let inside: Vec<(&Sample, crate::child::ProcSample)> = samples
            .iter()
            .filter(|s| during_load(s, load_start, load_end))
            .filter_map(|s| s.server.map(|p| (s, p)))
            .collect();
        let mut cpu = Vec::new();
        for w in inside.windows(2) {
            let ((a, pa), (b, pb)) = (w[0], w[1]);
            let dt = b.t - a.t;
            if dt <= 0.0 {
                continue;
            }
            cpu.push((
                [
                    1.0,
                    b.connects.saturating_sub(a.connects) as f64 / dt,
                    b.acked.saturating_sub(a.acked) as f64 / dt,
                ],
                (pb.cpu_secs - pa.cpu_secs).max(0.0) / dt,
            ));
        }
        if cpu.len() < MIN_INTERVALS {
            return None;
        }
        let first_acked = inside.first()?.0.acked;
        let rss: Vec<([f64; 3], f64)> = inside
            .iter()
            .map(|(s, p)| {
                (
                    [
                        1.0,
                        s.connected.max(0) as f64,
                        s.acked.saturating_sub(first_acked) as f64,
                    ],
                    p.rss_bytes as f64,
                )
            })
            .collect();
        let (c, cpu_r2) = least_squares(&cpu)?;
        let (m, rss_r2) = least_squares(&rss)?;
        // A negative cost is no cost: the load did not tell the terms apart (a fault's
        // restarts and reconnects, a run on a busy host), and a report or a prediction
        // built on it would be wrong. The base figures may be anything.
        if [c[1], c[2], m[1], m[2]].iter().any(|x| *x < 0.0) {
            return None;
        }
        Some(ServerCosts {
            idle_cpu_percent: c[0] * 100.0,
            cpu_us_per_connect: c[1] * 1e6,
            cpu_us_per_message: c[2] * 1e6,
            cpu_fit_r2: cpu_r2,
            rss_base_bytes: m[0],
            rss_bytes_per_connection: m[1],
            rss_bytes_per_message: m[2],
            rss_fit_r2: rss_r2,
            intervals: cpu.len(),
        })
    }

    /// Mean CPU, percent of one core, over `secs` that open `connects` connections and
    /// acknowledge `messages`.
    pub fn cpu_percent(&self, secs: f64, connects: f64, messages: f64) -> f64 {
        self.idle_cpu_percent
            + (self.cpu_us_per_connect * connects + self.cpu_us_per_message * messages)
                / (secs.max(1e-9) * 1e6)
                * 100.0
    }

    /// The fit in one line, for the reports.
    pub fn describe(&self) -> String {
        let b = estimation::units::format_bytes;
        format!(
            "CPU {:.1} % of a core idle + {:.0} µs a connection opened + {:.0} µs a message (R² {:.2}); memory {} + {} a connection + {} a message written (R² {:.2})",
            self.idle_cpu_percent,
            self.cpu_us_per_connect,
            self.cpu_us_per_message,
            self.cpu_fit_r2,
            b(self.rss_base_bytes),
            b(self.rss_bytes_per_connection),
            b(self.rss_bytes_per_message),
            self.rss_fit_r2
        )
    }

    /// Resident memory holding `connections` after writing `messages`.
    pub fn rss_bytes(&self, connections: f64, messages: f64) -> f64 {
        self.rss_base_bytes
            + self.rss_bytes_per_connection * connections
            + self.rss_bytes_per_message * messages
    }
}

/// Ordinary least squares through the normal equations: the coefficients and R². `None`
/// when the equations are singular (a term never varies apart from the others).
pub(super) fn least_squares<const K: usize>(rows: &[([f64; K], f64)]) -> Option<([f64; K], f64)> {
    if rows.len() <= K {
        return None;
    }
    // Columns scaled to their largest magnitude so that a count in the thousands and the
    // constant term pivot alike.
    let mut scale = [0.0f64; K];
    for (x, _) in rows {
        for k in 0..K {
            scale[k] = scale[k].max(x[k].abs());
        }
    }
    if scale.contains(&0.0) {
        return None;
    }
    let mut a = [[0.0f64; K]; K];
    let mut b = [0.0f64; K];
    for (x, y) in rows {
        for i in 0..K {
            b[i] += x[i] / scale[i] * y;
            for j in 0..K {
                a[i][j] += x[i] / scale[i] * x[j] / scale[j];
            }
        }
    }
    let diag_max = (0..K).map(|i| a[i][i]).fold(0.0f64, f64::max);
    // Gaussian elimination with partial pivoting.
    for col in 0..K {
        let pivot = (col..K).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= diag_max * 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..K {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col];
            for (v, p) in a[row].iter_mut().zip(pivot_row).skip(col) {
                *v -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut coef = [0.0f64; K];
    for i in (0..K).rev() {
        let tail: f64 = (i + 1..K).map(|j| a[i][j] * coef[j]).sum();
        coef[i] = (b[i] - tail) / a[i][i];
    }
    for k in 0..K {
        coef[k] /= scale[k];
    }
    let mean = rows.iter().map(|(_, y)| y).sum::<f64>() / rows.len() as f64;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for (x, y) in rows {
        let fit: f64 = (0..K).map(|k| coef[k] * x[k]).sum();
        ss_res += (y - fit).powi(2);
        ss_tot += (y - mean).powi(2);
    }
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    coef.iter().all(|c| c.is_finite()).then_some((coef, r2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::ProcSample;

    /// A run of a server that costs exactly `idle` + 250 µs a connect + 400 µs a message
    /// and 4 MB + 20 kB a connection + 1 kB a message: a 10-s ramp of 100 connects a
    /// second, then 20 s of full load with 5 reconnects a second.
    fn run() -> Vec<Sample> {
        let (mut cpu, mut connected, mut connects, mut acked) = (0.0, 0i64, 0u64, 0u64);
        let mut out = Vec::new();
        for t in 0..=30 {
            if t > 0 {
                let (new, rate) = if t <= 10 { (100, 30 * t) } else { (5, 300) };
                connected = (connected + new).min(1000);
                connects += new as u64;
                acked += rate as u64;
                cpu += 0.05 + new as f64 * 250e-6 + rate as f64 * 400e-6;
            }
            out.push(Sample {
                t: 100.0 + t as f64,
                connected,
                connects,
                acked,
                server: Some(ProcSample {
                    cpu_secs: cpu,
                    rss_bytes: 4_000_000 + 20_000 * connected as u64 + 1_000 * acked,
                    ..ProcSample::default()
                }),
                ..Sample::default()
            });
        }
        out
    }

    #[test]
    fn an_exactly_linear_server_is_fitted_exactly() {
        let c = ServerCosts::fit(&run(), 100.0, 130.0).unwrap();
        assert!((c.idle_cpu_percent - 5.0).abs() < 1e-6, "{c:?}");
        assert!((c.cpu_us_per_connect - 250.0).abs() < 1e-3, "{c:?}");
        assert!((c.cpu_us_per_message - 400.0).abs() < 1e-3, "{c:?}");
        assert!(
            (c.rss_bytes_per_connection - 20_000.0).abs() < 1e-3,
            "{c:?}"
        );
        assert!((c.rss_bytes_per_message - 1_000.0).abs() < 1e-3, "{c:?}");
        assert!((c.rss_base_bytes - 4_000_000.0).abs() < 1.0, "{c:?}");
        assert!(c.cpu_fit_r2 > 0.999_999 && c.rss_fit_r2 > 0.999_999);
        assert_eq!(c.intervals, 30);
        // Two hundred connects and 6000 messages in 20 s: 5 % + 0.25 % + 12 %.
        assert!((c.cpu_percent(20.0, 200.0, 6000.0) - 17.25).abs() < 1e-6);
        assert!((c.rss_bytes(1000.0, 10.0) - 24_010_000.0).abs() < 1.0);
    }

    #[test]
    fn a_load_that_cannot_tell_the_terms_apart_is_not_fitted() {
        // No ramp: connects and messages never vary, only the constant is known.
        let flat: Vec<Sample> = (0..20)
            .map(|t| Sample {
                t: t as f64,
                connected: 10,
                connects: 10,
                acked: 10 * t as u64,
                server: Some(ProcSample {
                    cpu_secs: t as f64 * 0.1,
                    rss_bytes: 1,
                    ..ProcSample::default()
                }),
                ..Sample::default()
            })
            .collect();
        assert_eq!(ServerCosts::fit(&flat, 0.0, 20.0), None);
        // Memory that falls as connections grow: not a cost.
        let shrinking: Vec<Sample> = run()
            .into_iter()
            .map(|mut s| {
                if let Some(p) = s.server.as_mut() {
                    p.rss_bytes = 40_000_000 - 5_000 * s.connected as u64 + 1_000 * s.acked;
                }
                s
            })
            .collect();
        assert_eq!(ServerCosts::fit(&shrinking, 100.0, 130.0), None);
        // Too short, and outside the load window.
        assert_eq!(ServerCosts::fit(&run()[..5], 100.0, 130.0), None);
        assert_eq!(ServerCosts::fit(&run(), 200.0, 230.0), None);
    }
}
