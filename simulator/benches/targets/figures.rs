//! The figures the other measurements write: a simulator run's `summary.json` and the
//! server's `delivery` bench `--json` output, read into what the targets compare.

use std::collections::BTreeMap;

use serde::Deserialize;

/// What the targets read of a `chat-sim run` summary (its schema:
/// simulator/schema/summary.schema.json).
#[derive(Debug, Clone, Deserialize)]
pub struct SimSummary {
    pub passed: bool,
    #[serde(default)]
    pub failures: Vec<String>,
    pub load: SimLoad,
    pub latency_ms: BTreeMap<String, Option<Latency>>,
    pub server: Option<SimServer>,
    pub simulator: SimLoadGen,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SimLoad {
    pub messages_per_sec: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SimServer {
    pub cpu_us_per_message: Option<f64>,
    pub memory_bytes_per_connection: Option<f64>,
    pub connections_peak: i64,
    pub costs: Option<Costs>,
    /// Absent from summaries older than the field.
    #[serde(default)]
    pub node_memory: Option<NodeMemory>,
}

/// The node's memory with the store's memtables at their bound, what the plan uses.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct NodeMemory {
    pub bytes_per_connection: f64,
    pub node_bytes: f64,
    pub tables_peak_bytes: u64,
}

/// The fitted cost model: idle floor + per connect + per message; memory per connection
/// held and per message written.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Costs {
    pub cpu_us_per_message: f64,
    pub cpu_fit_r2: f64,
    pub rss_bytes_per_connection: f64,
    pub rss_fit_r2: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct SimLoadGen {
    pub cpu_us_per_message: Option<f64>,
}

impl SimSummary {
    pub fn parse(text: &str) -> Result<SimSummary, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| format!("summary.json: {e}"))
    }

    /// Send→delivery percentiles, if the run measured any.
    pub fn delivery(&self) -> Option<Latency> {
        self.latency("send_to_delivery")
    }

    /// The simulator's own delay: a live message reaching its socket → recorded.
    pub fn client_delay(&self) -> Option<Latency> {
        self.latency("client_delay")
    }

    /// The simulator's own delay before a send: intended time → queued (paced sends).
    pub fn send_lateness(&self) -> Option<Latency> {
        self.latency("send_lateness")
    }

    fn latency(&self, name: &str) -> Option<Latency> {
        self.latency_ms
            .get(name)
            .copied()
            .flatten()
            .filter(|l| l.count > 0)
    }

    /// A note when the run's own gates or checks failed: its figures stand, but the
    /// reader should know.
    pub fn gates_note(&self) -> String {
        if self.passed {
            String::new()
        } else {
            format!(
                "; the run's gates failed: {}",
                self.failures.first().map_or("?", String::as_str)
            )
        }
    }
}

/// What the targets read of the `delivery` bench's `--json` output for the fjall store.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryFigures {
    /// The open phase's rate, msgs/s.
    pub rate: f64,
    pub p99_ms: Option<f64>,
    /// The worst per-second maximum send→delivery over the measured window, and its second.
    pub worst_second: Option<(usize, f64)>,
    pub window_seconds: usize,
    /// The closed-loop phase (run only when no rate was given): msgs/s and server µs/msg.
    pub closed: Option<(f64, Option<f64>)>,
    pub lost: u64,
    pub violations: u64,
    pub behind: u64,
}

#[derive(Deserialize)]
struct DeliveryDoc {
    stores: Vec<DeliveryStore>,
}

#[derive(Deserialize)]
struct DeliveryStore {
    store: String,
    phases: Vec<DeliveryPhase>,
}

#[derive(Deserialize)]
struct DeliveryPhase {
    kind: String,
    rate: f64,
    msgs_per_s: f64,
    send_to_delivery_ms: Percentiles,
    server_cpu_us_per_msg: Option<f64>,
    lost: u64,
    violations: u64,
    behind: u64,
    timeline: Vec<TimelineSecond>,
}

#[derive(Deserialize)]
struct Percentiles {
    p99: Option<f64>,
}

#[derive(Deserialize)]
struct TimelineSecond {
    second: usize,
    in_window: bool,
    delivered: u64,
    max_ms: f64,
}

impl DeliveryFigures {
    /// Reads the fjall store's open phase (and its closed phase, if any).
    pub fn parse(text: &str) -> Result<DeliveryFigures, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let doc: DeliveryDoc = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("delivery bench JSON: {e}"))?;
        let store = doc
            .stores
            .iter()
            .find(|s| s.store == "fjall")
            .ok_or("delivery bench JSON: no fjall store")?;
        let open = store
            .phases
            .iter()
            .rfind(|p| p.kind == "open")
            .ok_or("delivery bench JSON: no open-model phase")?;
        let window: Vec<&TimelineSecond> = open.timeline.iter().filter(|s| s.in_window).collect();
        let worst_second = window
            .iter()
            .filter(|s| s.delivered > 0)
            .max_by(|a, b| a.max_ms.total_cmp(&b.max_ms))
            .map(|s| (s.second, s.max_ms));
        let closed = store
            .phases
            .iter()
            .find(|p| p.kind == "closed")
            .map(|p| (p.msgs_per_s, p.server_cpu_us_per_msg));
        Ok(DeliveryFigures {
            rate: open.rate,
            p99_ms: open.send_to_delivery_ms.p99,
            worst_second,
            window_seconds: window.len(),
            closed,
            lost: open.lost,
            violations: open.violations,
            behind: open.behind,
        })
    }
}

/// Target 6: the simulator's and peerbench's p50 send→delivery against one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayFigures {
    pub sim_p50_ms: f64,
    /// The simulator's p50 from a message's arrival at its socket to its record: what it
    /// adds on its side, not in `sim_p50_ms` (that ends at the arrival).
    pub sim_own_p50_ms: Option<f64>,
    /// The simulator's p50 lateness of a send it woke for at its time: in `sim_p50_ms`.
    pub sim_send_late_p50_ms: Option<f64>,
    pub peer_p50_ms: f64,
    pub sim_rate: f64,
    pub peer_rate: f64,
}
