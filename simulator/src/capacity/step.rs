//! One step of a capacity search: the figures of its run that the search, the knee plot
//! and the validation use, and what stopped it when it failed.

use estimation::CapacityLimit;
use serde::Serialize;

use crate::report::costs::ServerCosts;
use crate::report::json::Summary;
use crate::scenario::Grow;

/// A finished step: one `chat-sim run` at one level.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Which search (0-based, in the scenario's order).
    pub search: usize,
    pub grow: Grow,
    /// 1-based, across the search.
    pub index: u32,
    /// A refinement between the last passing and the first failing step.
    pub refinement: bool,
    /// The level asked, in the search's unit.
    pub level_asked: f64,
    /// The level the run had (lower than asked when the host capped the users).
    pub level: f64,
    /// The step's run directory, relative to the capacity report.
    pub dir: String,
    pub passed: bool,
    /// The run's failed gates, or why it produced no report.
    pub failures: Vec<String>,
    /// Why the step failed, or that the host capped it.
    pub limit: Option<CapacityLimit>,
    pub figures: Option<StepFigures>,
    /// Attempts at this level that failed before this one (`[capacity] confirm`).
    pub earlier_attempts: Vec<Attempt>,
}

/// A failed attempt at a step's level that was run again.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub dir: String,
    pub failures: Vec<String>,
}

/// What the step's run measured.
#[derive(Debug, Clone, Serialize)]
pub struct StepFigures {
    pub users: u64,
    pub devices: u64,
    /// Whether the host's open-file cap made the run smaller than asked.
    pub capped: bool,
    pub intended_messages_per_sec: f64,
    pub messages_per_sec: f64,
    pub messages_acknowledged: u64,
    pub deliveries_per_sec: f64,
    pub connections_peak: i64,
    pub load_secs: f64,
    pub error_rate: f64,
    pub sent_ratio: Option<f64>,
    pub p50_send_to_delivery_ms: Option<f64>,
    pub p99_send_to_delivery_ms: Option<f64>,
    pub p99_send_to_sent_ms: Option<f64>,
    pub server_cpu_secs: Option<f64>,
    /// Mean over the load, percent of one core.
    pub server_cpu_percent: Option<f64>,
    pub server_cpu_us_per_message: Option<f64>,
    /// Connections the load opened, first connects and reconnects.
    pub connects: u64,
    /// The server's costs fitted from the run's samples.
    pub server_costs: Option<ServerCosts>,
    /// The load processes' CPU over the load, percent of one core.
    pub load_cpu_percent: f64,
    /// Server and load together, percent of all the host's cores.
    pub host_cpu_percent: Option<f64>,
    pub server_rss_start_bytes: Option<u64>,
    pub server_rss_peak_bytes: Option<u64>,
    /// Memory per connection for the plan ([`crate::report::json::ServerInfo::plan_memory_per_connection`]).
    pub memory_bytes_per_connection: Option<f64>,
    /// Memory of the node apart from its connections, its memtables at their bound.
    pub memory_bytes_per_node: Option<f64>,
    /// The store's growth while the run went on (journal included).
    pub transient_disk_bytes: Option<u64>,
    /// The store's tables once settled (journal excluded).
    pub settled_disk_bytes: Option<u64>,
    pub settled_bytes_per_message: Option<f64>,
    pub idempotency_bytes_per_message: Option<f64>,
    pub idempotency_window_secs: Option<f64>,
    pub bytes_per_message_on_disk: Option<f64>,
}

impl StepFigures {
    /// The figures of a run's summary.
    pub fn of(s: &Summary) -> StepFigures {
        let lat = |key: &str, pick: fn(&crate::metrics::LatencySummary) -> f64| {
            s.latency_ms.get(key).copied().flatten().map(|l| pick(&l))
        };
        let load_secs = s.load.load_secs.max(1e-9);
        let load_cpu_percent = s.simulator.cpu_secs / load_secs * 100.0;
        let server_cpu_percent = s.server.as_ref().map(|x| x.cpu_percent_mean);
        let settled = s.storage.settled.as_ref();
        StepFigures {
            users: s.scale.users_simulated,
            devices: s.scale.devices,
            capped: s.host.capped,
            intended_messages_per_sec: s.load.intended_sends_per_sec,
            messages_per_sec: s.load.messages_per_sec,
            messages_acknowledged: s.load.messages_acknowledged,
            deliveries_per_sec: s.load.deliveries_per_sec,
            connections_peak: s.load.connections_peak,
            load_secs: s.load.load_secs,
            error_rate: s.load.error_rate,
            sent_ratio: s.load.sent_ratio,
            p50_send_to_delivery_ms: lat("send_to_delivery", |l| l.p50_ms),
            p99_send_to_delivery_ms: lat("send_to_delivery", |l| l.p99_ms),
            p99_send_to_sent_ms: lat("send_to_sent", |l| l.p99_ms),
            server_cpu_secs: s.server.as_ref().map(|x| x.cpu_secs),
            server_cpu_percent,
            server_cpu_us_per_message: s.server.as_ref().and_then(|x| x.cpu_us_per_message),
            connects: s
                .load
                .counters
                .get("connects")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            server_costs: s.server.as_ref().and_then(|x| x.costs),
            load_cpu_percent,
            host_cpu_percent: server_cpu_percent
                .map(|server| (server + load_cpu_percent) / s.host.cpus.max(1) as f64),
            server_rss_start_bytes: s.server.as_ref().map(|x| x.rss_bytes_start),
            server_rss_peak_bytes: s.server.as_ref().map(|x| x.rss_bytes_peak),
            memory_bytes_per_connection: s
                .server
                .as_ref()
                .and_then(|x| x.plan_memory_per_connection()),
            memory_bytes_per_node: s.server.as_ref().and_then(|x| x.plan_memory_per_node()),
            transient_disk_bytes: match (s.storage.disk_bytes_start, s.storage.disk_bytes_end) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            },
            settled_disk_bytes: settled.map(|t| t.tables.values().sum::<u64>()),
            settled_bytes_per_message: settled.and_then(|t| t.bytes_per_message),
            idempotency_bytes_per_message: settled.and_then(|t| t.idempotency_bytes_per_message),
            idempotency_window_secs: settled.map(|_| s.storage.idempotency_window_secs),
            bytes_per_message_on_disk: s.storage.bytes_per_message,
        }
    }

    /// Figures of a small run that measured nothing but its load, for tests to vary.
    #[cfg(test)]
    pub(crate) fn example() -> StepFigures {
        StepFigures {
            users: 10,
            devices: 10,
            capped: false,
            intended_messages_per_sec: 1.0,
            messages_per_sec: 1.0,
            messages_acknowledged: 10,
            deliveries_per_sec: 1.0,
            connections_peak: 10,
            load_secs: 10.0,
            error_rate: 0.0,
            sent_ratio: Some(1.0),
            p50_send_to_delivery_ms: None,
            p99_send_to_delivery_ms: None,
            p99_send_to_sent_ms: None,
            server_cpu_secs: None,
            server_cpu_percent: None,
            server_cpu_us_per_message: None,
            connects: 10,
            server_costs: None,
            load_cpu_percent: 0.0,
            host_cpu_percent: None,
            server_rss_start_bytes: None,
            server_rss_peak_bytes: None,
            memory_bytes_per_connection: None,
            memory_bytes_per_node: None,
            transient_disk_bytes: None,
            settled_disk_bytes: None,
            settled_bytes_per_message: None,
            idempotency_bytes_per_message: None,
            idempotency_window_secs: None,
            bytes_per_message_on_disk: None,
        }
    }

    /// The level this run had in `grow`'s unit.
    pub fn level(&self, grow: Grow) -> f64 {
        match grow {
            Grow::Users | Grow::Connections => self.users as f64,
            Grow::Rate => self.intended_messages_per_sec,
        }
    }
}

/// Why a step failed, or that the host capped a step that passed (then nothing higher
/// can be tried); `None` for a step that passed within the host's limits.
///
/// A correctness check that failed is the server's fault whatever the host did. Any other
/// failure is put down to the load generator when the host's CPU (server and load
/// together) reached `max_host_cpu_percent` of all cores and the load processes used at
/// least as much CPU as the server: the server would have had more on a host of its own,
/// so the step measured the machine, not the node.
pub fn limit_of(
    passed: bool,
    failures: &[String],
    figures: Option<&StepFigures>,
    max_host_cpu_percent: f64,
) -> Option<CapacityLimit> {
    if passed {
        return figures
            .is_some_and(|f| f.capped)
            .then_some(CapacityLimit::OpenFiles);
    }
    let check_failed = failures.iter().any(|f| f.contains("check "));
    let host_bound = figures.is_some_and(|f| {
        crate::report::limit::host_bound(
            f.host_cpu_percent,
            f.load_cpu_percent,
            f.server_cpu_percent,
            max_host_cpu_percent,
        )
    });
    Some(if host_bound && !check_failed {
        CapacityLimit::LoadGenerator
    } else {
        CapacityLimit::Server
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(server: f64, load: f64, cpus: f64, capped: bool) -> StepFigures {
        StepFigures {
            capped,
            server_cpu_percent: Some(server),
            load_cpu_percent: load,
            host_cpu_percent: Some((server + load) / cpus),
            ..StepFigures::example()
        }
    }

    fn gate(name: &str) -> Vec<String> {
        vec![format!("GATE FAILED: {name}: …")]
    }

    #[test]
    fn a_saturated_host_with_a_busy_load_generator_is_not_the_servers_limit() {
        let f = figures(60.0, 130.0, 2.0, false);
        assert_eq!(
            limit_of(false, &gate("p99_send_to_delivery_ms"), Some(&f), 90.0),
            Some(CapacityLimit::LoadGenerator)
        );
    }

    #[test]
    fn a_server_that_fails_with_cpu_to_spare_is_the_limit() {
        let f = figures(60.0, 50.0, 2.0, false);
        assert_eq!(
            limit_of(false, &gate("p99_send_to_delivery_ms"), Some(&f), 90.0),
            Some(CapacityLimit::Server)
        );
        // A saturated host where the server is the larger user: the server's limit too.
        let f = figures(130.0, 60.0, 2.0, false);
        assert_eq!(
            limit_of(false, &gate("max_error_rate"), Some(&f), 90.0),
            Some(CapacityLimit::Server)
        );
    }

    #[test]
    fn a_failed_check_is_always_the_servers() {
        let f = figures(60.0, 130.0, 2.0, false);
        assert_eq!(
            limit_of(false, &gate("check order"), Some(&f), 90.0),
            Some(CapacityLimit::Server)
        );
    }

    #[test]
    fn a_capped_step_that_passed_is_the_hosts_file_limit() {
        let f = figures(10.0, 10.0, 2.0, true);
        assert_eq!(
            limit_of(true, &[], Some(&f), 90.0),
            Some(CapacityLimit::OpenFiles)
        );
        // One that failed failed at the level it ran.
        assert_eq!(
            limit_of(false, &gate("x"), Some(&f), 90.0),
            Some(CapacityLimit::Server)
        );
        assert_eq!(
            limit_of(true, &[], Some(&figures(1.0, 1.0, 2.0, false)), 90.0),
            None
        );
    }
}
