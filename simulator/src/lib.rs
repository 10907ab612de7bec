//! The load simulator of the chat capacity harness.
//!
//! `chat-sim run scenarios/X.toml` starts the reference server as a child process (or
//! drives one given with `--target`), runs the scenario's users under Goose with real
//! WebSockets, checks chat semantics on every device, measures latency from intended
//! times (open model), storage growth and server resources, and writes a report with
//! gates CI can rely on. [`run::run`] is the whole job; the binary is a thin layer over it.
//!
//! | module | holds |
//! |---|---|
//! | [`scenario`] | scenario files, `--set` overrides, validation |
//! | [`graph`] | the skewed contact graph and groups |
//! | [`load`] | the open-model schedule, bodies, Goose users, shards |
//! | [`client`] | WebSocket devices and HTTP calls speaking the wire contract |
//! | [`checks`] | order, gaps, exactly-once, phantoms, consistency |
//! | [`metrics`] | HdrHistograms and the time series, mergeable across processes |
//! | [`child`] | the server child process and /proc sampling |
//! | [`worker`] | worker processes for runs beyond one process's open files |
//! | [`storage`] | bytes on disk per message and their extrapolation |
//! | [`report`] | summary.json, summary.md, report.html, plots, timeseries.csv |
//! | [`gates`] | thresholds and baseline regressions |
//! | [`compare`] | `chat-sim compare`: one scenario against several stores, side by side |

pub mod checks;
pub mod child;
pub mod cli;
pub mod client;
pub mod clock;
pub mod compare;
pub mod gates;
pub mod graph;
pub mod load;
pub mod metrics;
pub mod progress;
pub mod records;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod storage;
pub mod worker;
