//! Whether the load generator, not the server, set the pace of a run.
//!
//! A run measures the server only while the load processes keep up with their schedule.
//! When they spend (nearly) all the CPU their runtime threads can use, or the host is
//! saturated and they use at least as much of it as the server, sends go out late and
//! frames are read late: rates and latencies then describe this machine, not the server.
//! The report says so in plain words rather than leave a reader to compare CPU figures.

use serde::{Deserialize, Serialize};

use crate::records::Sample;

/// CPU share (percent of what can be used) at or above which a part counts as saturated.
pub const SATURATED_PERCENT: f64 = 90.0;

/// The load generator's and the host's CPU over the full load, and the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadLimit {
    /// The load processes' CPU, percent of one core, over the full load.
    pub load_cpu_percent: f64,
    /// The cores the load processes can use at most (their runtime threads, up to the
    /// host's cores).
    pub load_cores: f64,
    /// The server's CPU, percent of one core, over the same window (when sampled).
    pub server_cpu_percent: Option<f64>,
    /// Server and load together, percent of all the host's cores (when the server was
    /// sampled).
    pub host_cpu_percent: Option<f64>,
    /// Whether the load generator was the limit.
    pub limited: bool,
}

/// Whether the host was the bound: its CPU (server and load together, percent of all its
/// cores) reached `threshold` and the load processes used at least as much as the server,
/// which would have had more on a host of its own. One judgement for a run's report and
/// for each step of a capacity search.
pub fn host_bound(
    host_cpu_percent: Option<f64>,
    load_cpu_percent: f64,
    server_cpu_percent: Option<f64>,
    threshold: f64,
) -> bool {
    host_cpu_percent
        .is_some_and(|h| h >= threshold && load_cpu_percent >= server_cpu_percent.unwrap_or(0.0))
}

impl LoadLimit {
    /// Judges the window [`from`, `to`) seconds of `samples`; `threads` is the runtime
    /// threads per load process (0: one per core), `processes` how many there were.
    pub fn judge(
        samples: &[Sample],
        from: f64,
        to: f64,
        threads: usize,
        processes: u32,
        cpus: u64,
    ) -> Option<LoadLimit> {
        let window: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.t >= from && s.t <= to)
            .collect();
        let (first, last) = (window.first()?, window.last()?);
        let dt = last.t - first.t;
        if dt <= 0.0 {
            return None;
        }
        let load = (last.load_cpu_secs - first.load_cpu_secs).max(0.0) / dt * 100.0;
        let server = match (first.server, last.server) {
            (Some(a), Some(b)) => Some((b.cpu_secs - a.cpu_secs).max(0.0) / dt * 100.0),
            _ => None,
        };
        let cpus = cpus.max(1) as f64;
        let per_process = if threads == 0 { cpus } else { threads as f64 };
        let load_cores = (per_process * f64::from(processes.max(1))).min(cpus);
        let host = server.map(|s| (s + load) / cpus);
        let own_threads_busy = load >= load_cores * SATURATED_PERCENT;
        let host_busy = host_bound(host, load, server, SATURATED_PERCENT);
        Some(LoadLimit {
            load_cpu_percent: load,
            load_cores,
            server_cpu_percent: server,
            host_cpu_percent: host,
            limited: own_threads_busy || host_busy,
        })
    }

    /// One plain sentence for the report.
    pub fn describe(&self) -> String {
        let host = self.host_cpu_percent.map_or(String::new(), |h| {
            format!(", the host {h:.0} % of all its cores")
        });
        let server = self.server_cpu_percent.map_or(String::new(), |s| {
            format!(", the server {s:.0} % of a core")
        });
        let figures = format!(
            "over the full load the load generator used {:.0} % of a core of the {:.0} it can use{server}{host}",
            self.load_cpu_percent, self.load_cores
        );
        if self.limited {
            format!(
                "THE LOAD GENERATOR WAS THE LIMIT: {figures}; sends went out late and frames were read late, so this run's rates and latencies measure this machine, not the server (give the load more threads or worker processes, or a host of its own)"
            )
        } else {
            format!("the load generator was not the limit: {figures}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::ProcSample;

    fn sample(t: f64, load: f64, server: f64) -> Sample {
        Sample {
            t,
            connected: 0,
            connects: 0,
            acked: 0,
            deliveries: 0,
            errors: 0,
            server: Some(ProcSample {
                cpu_secs: server,
                ..ProcSample::default()
            }),
            server_tasks: None,
            store_memory: None,
            disk_bytes: None,
            load_cpu_secs: load,
        }
    }

    #[test]
    fn a_load_thread_near_full_is_the_limit() {
        let s = [sample(0.0, 0.0, 0.0), sample(10.0, 9.5, 2.0)];
        let l = LoadLimit::judge(&s, 0.0, 10.0, 1, 1, 2).unwrap();
        assert!(l.limited);
        assert_eq!(l.load_cores, 1.0);
        assert!(l.describe().starts_with("THE LOAD GENERATOR WAS THE LIMIT"));
    }

    #[test]
    fn a_saturated_host_counts_only_when_the_load_uses_as_much_as_the_server() {
        let busy_server = [sample(0.0, 0.0, 0.0), sample(10.0, 8.0, 11.0)];
        let l = LoadLimit::judge(&busy_server, 0.0, 10.0, 0, 1, 2).unwrap();
        assert!(!l.limited, "{l:?}");
        let busy_load = [sample(0.0, 0.0, 0.0), sample(10.0, 10.0, 9.0)];
        assert!(
            LoadLimit::judge(&busy_load, 0.0, 10.0, 0, 1, 2)
                .unwrap()
                .limited
        );
    }

    #[test]
    fn a_light_load_is_not_the_limit_and_too_few_samples_say_nothing() {
        let s = [sample(0.0, 0.0, 0.0), sample(10.0, 2.0, 5.0)];
        let l = LoadLimit::judge(&s, 0.0, 10.0, 1, 1, 2).unwrap();
        assert!(!l.limited);
        assert!(
            l.describe()
                .starts_with("the load generator was not the limit")
        );
        assert!(LoadLimit::judge(&s[..1], 0.0, 10.0, 1, 1, 2).is_none());
        assert!(LoadLimit::judge(&[], 0.0, 10.0, 1, 1, 2).is_none());
    }
}
