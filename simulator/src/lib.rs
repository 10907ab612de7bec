//! The load simulator of the chat capacity harness.
//!
//! `chat-sim run scenarios/X.toml` starts the reference server as a child process (or
//! drives one given with `--target`), runs the scenario's users under Goose with real
//! WebSockets, checks chat semantics on every device, measures latency from intended
//! times (open model), storage growth and server resources, and writes a report with
//! gates CI can rely on. [`run::run`] is the whole job; the binary is a thin layer over it.
//!
//! The modules in the direction data flows (scenario → load → client → records → checks →
//! report → gates, orchestrated by run); their imports never form a cycle, which
//! `scripts/module-cycles.py` checks:
//!
//! | module | holds |
//! |---|---|
//! | [`cli`] | the command line |
//! | [`scenario`] | scenario files, defaults, `--set` overrides, validation |
//! | [`rng`] | seeded random numbers |
//! | [`graph`] | the skewed contact graph and groups |
//! | [`load`] | a shard: its setup, the open-model schedule, bodies, Goose users, groups, the records its devices report to |
//! | [`client`] | WebSocket devices, the events they report, and HTTP calls speaking the wire contract |
//! | [`clock`] | wall-clock milliseconds and UTC strings |
//! | [`records`] | the run's data: shard reports, counters, samples, merged results |
//! | [`metrics`] | HdrHistograms and the time series, mergeable across processes |
//! | [`checks`] | order, gaps, exactly-once, phantoms, consistency, over each device's log |
//! | [`storage`] | bytes on disk per message and their extrapolation |
//! | [`child`] | the server child process and /proc sampling |
//! | [`namespace`] | a fresh schema or keyspace per run in a shared database |
//! | [`cluster`] | a cluster run: NATS, the nodes, HAProxy, per-node figures, faults |
//! | [`progress`] | the live progress line |
//! | [`report`] | summary.json, summary.md, report.html, plots, timeseries.csv, the capacity plan |
//! | [`gates`] | thresholds and baseline regressions: the verdict on a summary |
//! | [`worker`] | worker processes for runs beyond one process's open files |
//! | [`run`] | `chat-sim run`: the orchestrator |
//! | [`compare`] | `chat-sim compare`: one scenario against several stores, side by side |
//! | [`scaling`] | `chat-sim scale`: one scenario on 1, 2, 3 … nodes, the measured scaling efficiency |

pub mod capacity;
pub mod checks;
pub mod child;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod compare;
pub mod dashboard;
pub mod gates;
pub mod graph;
pub mod load;
pub mod metrics;
pub mod namespace;
pub mod progress;
pub mod records;
pub mod report;
pub mod rng;
pub mod run;
pub mod scaling;
pub mod scenario;
pub mod storage;
pub mod worker;

/// Runtime threads of the load generator per process (`--threads`; 0: one per core),
/// handed on to its worker processes and stated in the report.
static LOAD_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Sets the load generator's runtime threads (done once, by `main`).
pub fn set_load_threads(n: usize) {
    LOAD_THREADS.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// The load generator's runtime threads per process (0: one per core).
pub fn load_threads() -> usize {
    LOAD_THREADS.load(std::sync::atomic::Ordering::Relaxed)
}
