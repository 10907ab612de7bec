//! Whether the server's resources stay bounded over a long run: the least-squares slope
//! of its resident memory, open files, threads and runtime tasks per minute over the
//! second half of the steady load (the first half lets caches, memtables and the store
//! writer's counters fill towards their bounds). A leak — a session, a timer or a socket
//! that is never given back — shows as a slope that stays above zero however long the
//! run; a bounded server's slopes shrink towards zero as the run gets longer.

use serde::Serialize;

use crate::records::Sample;

/// Samples fewer than this give no trend.
const MIN_POINTS: usize = 5;

/// The server's resources over the steady part of the load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceTrend {
    /// The window the slopes are fitted over, seconds after the run's epoch.
    pub from_secs: f64,
    pub to_secs: f64,
    pub points: usize,
    /// Slopes, per minute.
    pub rss_mib_per_min: f64,
    pub open_fds_per_min: f64,
    pub threads_per_min: f64,
    /// Null when the server does not report its tasks.
    pub tasks_per_min: Option<f64>,
    /// First, last and largest value in the window.
    pub rss_mib: [f64; 3],
    pub open_fds: [u64; 3],
    pub threads: [u64; 3],
    pub tasks: Option<[u64; 3]>,
}

/// The least-squares slope of `y` over `x` (`None` without spread in `x`).
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn first_last_max(v: &[u64]) -> [u64; 3] {
    [
        v.first().copied().unwrap_or(0),
        v.last().copied().unwrap_or(0),
        v.iter().copied().max().unwrap_or(0),
    ]
}

/// The trend over the samples taken from `from` to `to` (seconds after the epoch) with
/// a server figure; `None` with fewer than [`MIN_POINTS`] of them.
pub fn resources(samples: &[Sample], from: f64, to: f64) -> Option<ResourceTrend> {
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= from && s.t <= to && s.server.is_some())
        .collect();
    if window.len() < MIN_POINTS {
        return None;
    }
    let per_min = |f: &dyn Fn(&Sample) -> Option<f64>| -> Option<f64> {
        let pts: Vec<(f64, f64)> = window
            .iter()
            .filter_map(|s| f(s).map(|y| (s.t / 60.0, y)))
            .collect();
        if pts.len() < MIN_POINTS {
            return None;
        }
        slope(&pts)
    };
    let mib = |s: &Sample| s.server.map(|p| p.rss_bytes as f64 / (1024.0 * 1024.0));
    let rss: Vec<f64> = window.iter().filter_map(|s| mib(s)).collect();
    let fds: Vec<u64> = window
        .iter()
        .filter_map(|s| s.server.map(|p| p.open_fds))
        .collect();
    let threads: Vec<u64> = window
        .iter()
        .filter_map(|s| s.server.map(|p| p.threads))
        .collect();
    let tasks: Vec<u64> = window.iter().filter_map(|s| s.server_tasks).collect();
    Some(ResourceTrend {
        from_secs: window.first().map_or(from, |s| s.t),
        to_secs: window.last().map_or(to, |s| s.t),
        points: window.len(),
        rss_mib_per_min: per_min(&mib)?,
        open_fds_per_min: per_min(&|s| s.server.map(|p| p.open_fds as f64))?,
        threads_per_min: per_min(&|s| s.server.map(|p| p.threads as f64))?,
        tasks_per_min: per_min(&|s| s.server_tasks.map(|n| n as f64)),
        rss_mib: [
            rss.first().copied().unwrap_or(0.0),
            rss.last().copied().unwrap_or(0.0),
            rss.iter().copied().fold(0.0, f64::max),
        ],
        open_fds: first_last_max(&fds),
        threads: first_last_max(&threads),
        tasks: (tasks.len() >= MIN_POINTS).then(|| first_last_max(&tasks)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::ProcSample;

    fn sample(t: f64, rss_mib: f64, fds: u64, tasks: Option<u64>) -> Sample {
        Sample {
            t,
            server: Some(ProcSample {
                rss_bytes: (rss_mib * 1024.0 * 1024.0) as u64,
                open_fds: fds,
                threads: 4,
                ..ProcSample::default()
            }),
            server_tasks: tasks,
            ..Sample::default()
        }
    }

    #[test]
    fn a_leak_shows_as_a_slope_and_a_bounded_server_as_none() {
        // 2 MiB and 30 fds a minute more, tasks flat with noise.
        let leaking: Vec<Sample> = (0u32..=60)
            .map(|k| {
                let t = f64::from(k) * 5.0;
                sample(
                    t,
                    50.0 + t / 30.0,
                    100 + (t / 2.0) as u64,
                    Some(200 + u64::from(k % 3)),
                )
            })
            .collect();
        let r = resources(&leaking, 0.0, 300.0).unwrap();
        assert!((r.rss_mib_per_min - 2.0).abs() < 0.01, "{r:?}");
        assert!((r.open_fds_per_min - 30.0).abs() < 0.5, "{r:?}");
        assert!(r.tasks_per_min.unwrap().abs() < 0.1, "{r:?}");
        assert_eq!(r.threads_per_min, 0.0);
        assert_eq!(r.open_fds, [100, 250, 250]);
        assert_eq!(r.points, 61);
        // Only the window counts.
        let late = resources(&leaking, 200.0, 300.0).unwrap();
        assert_eq!(late.points, 21);
        // Too few points: no trend rather than a wild one.
        assert_eq!(resources(&leaking, 0.0, 12.0), None);
    }

    #[test]
    fn a_server_without_task_figures_still_has_a_trend() {
        let s: Vec<Sample> = (0..10)
            .map(|k: u32| sample(f64::from(k), 10.0, 50, None))
            .collect();
        let r = resources(&s, 0.0, 10.0).unwrap();
        assert_eq!(r.tasks_per_min, None);
        assert_eq!(r.tasks, None);
        assert_eq!(r.rss_mib_per_min, 0.0);
    }
}
