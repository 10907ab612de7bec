//! The server's Prometheus metrics, in a registry of its own (no global state: tests run
//! several servers in one process), rendered as text on `GET /metrics`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The label of a store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

/// The label of a cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    pub cache: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s in doublings.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub online_users: Gauge,
    pub messages_stored: Counter,
    pub messages_delivered: Counter,
    pub send_latency: Histogram,
    pub store_latency: Family<OpLabel, Histogram, fn() -> Histogram>,
    pub store_errors: Family<OpLabel, Counter>,
    pub push_sent: Counter,
    pub push_failed: Counter,
    pub push_dead_lettered: Counter,
    pub push_coalesced: Counter,
    pub overflow_closed: Counter,
    pub presence_published: Counter,
    pub cache_hits: Family<CacheLabel, Counter>,
    pub cache_misses: Family<CacheLabel, Counter>,
    /// Tasks alive on the runtime, read at each scrape: a leak of tasks (a session or a
    /// timer that never ends) shows as a slope over a long run.
    runtime_tasks: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("chat");
        let m = Metrics {
            connections: Gauge::default(),
            online_users: Gauge::default(),
            messages_stored: Counter::default(),
            messages_delivered: Counter::default(),
            send_latency: latency_histogram(),
            store_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            store_errors: Family::default(),
            push_sent: Counter::default(),
            push_failed: Counter::default(),
            push_dead_lettered: Counter::default(),
            push_coalesced: Counter::default(),
            overflow_closed: Counter::default(),
            presence_published: Counter::default(),
            runtime_tasks: Gauge::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            registry: Registry::default(),
        };
        r.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        r.register(
            "online_users",
            "Users with at least one device connected",
            m.online_users.clone(),
        );
        r.register(
            "messages_stored",
            "Messages durably stored (duplicates excluded)",
            m.messages_stored.clone(),
        );
        r.register(
            "messages_delivered",
            "Live msg frames written to devices",
            m.messages_delivered.clone(),
        );
        r.register(
            "send_seconds",
            "Time from a send's arrival to its sent answer",
            m.send_latency.clone(),
        );
        r.register(
            "store_op_seconds",
            "Store operation latency by operation",
            m.store_latency.clone(),
        );
        r.register(
            "store_op_errors",
            "Failed store operations by operation",
            m.store_errors.clone(),
        );
        r.register(
            "push_sent",
            "Push notifications accepted by the gateway",
            m.push_sent.clone(),
        );
        r.register(
            "push_failed",
            "Push attempts that failed (each retry counts)",
            m.push_failed.clone(),
        );
        r.register(
            "push_dead_lettered",
            "Pushes given up after every retry",
            m.push_dead_lettered.clone(),
        );
        r.register(
            "push_coalesced",
            "Pushes skipped by coalescing",
            m.push_coalesced.clone(),
        );
        r.register(
            "overflow_closed",
            "Devices closed with 1013 for not reading",
            m.overflow_closed.clone(),
        );
        r.register(
            "presence_published",
            "Presence changes published",
            m.presence_published.clone(),
        );
        r.register(
            "cache_hits",
            "Reads answered by the recent-conversations cache",
            m.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Cacheable reads that went to the store",
            m.cache_misses.clone(),
        );
        r.register(
            "runtime_tasks",
            "Tasks alive on the server's runtime",
            m.runtime_tasks.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Adds metrics read at each scrape (the store's memory, which the store reads itself:
    /// [`crate::store::StoreCollector`]).
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            let alive = h.metrics().num_alive_tasks();
            self.runtime_tasks
                .set(i64::try_from(alive).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
