//! The command line of `chat-sim`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Every scenario knob in one place, for `--help`.
pub const SCENARIO_KNOBS: &str = "\
Scenario files (TOML; scenarios/README.md documents each knob):
  name                                  names the report directory
  [population] daily_active_users       real-world users the scenario stands for (500M)
               scale                    simulated users = daily_active_users × scale
               devices_per_user         mean WebSockets per user (⌊mean⌋ or ⌈mean⌉ each)
               [[device_kinds]]         name, share, history_reads_per_day, history_page_size
  [traffic]    messages_per_user_per_day  sends per user per simulated day (40)
               day_seconds              time compression: a simulated day lasts N real seconds
               presence_pulls_per_user_per_day
               [message_size]           distribution (fixed|uniform|lognormal), mean_bytes (100),
                                        sigma, min_bytes, max_bytes
  [contacts]   contacts_per_user, zipf_exponent (who a user writes to most),
               popularity_exponent (how skewed the graph is), crossing_share (pairs that
               write to each other at the same instant)
  [groups]     share (of messages), groups_per_user, min_size, max_size, required
  [churn]      disconnects_per_device_per_day, offline_secs_min/max,
               [[storms]] at_secs, share, offline_secs (reconnect storms)
  [run]        duration_secs, ramp_up_secs, sample_interval_secs, drain_secs, seed,
               workers, max_devices_per_process, request_timeout_secs, user_id_base
  [server]     store (fjall|memory|STORE), connections_per_node (source design: 50K),
               max_connections, send_rate (0 = off), send_burst, device_queue,
               workers (server runtime threads, default 1; 0 = one per core)
  [cluster]    nodes (0 = one server), store (postgres://…|cql://…; empty = server.store),
               routing (haproxy|hash)
  [[faults]]   at_secs (after the load starts), kind (kill_node|stop_node|store_outage|
               nats_outage), node (1-based, node faults), secs (restart after / outage length)
  [capacity]   hold_secs, ramp_up_secs, refine, confirm, max_host_cpu_percent, min_messages_per_sec,
               min_connections, [[search]] grow (users|rate|connections), start, step, max_steps
               (read by `chat-sim capacity`)
  [gates]      p50_send_to_sent_ms, p99_send_to_sent_ms, p50_send_to_delivery_ms,
               p99_send_to_delivery_ms, p999_send_to_delivery_ms, p99_send_to_delivered_ms,
               p99_history_ms, p99_reconnect_ms (milliseconds from intended times),
               max_error_rate, min_sent_ratio, max_bytes_per_message,
               max_server_cpu_percent, max_server_rss_mib, max_fault_recovery_ms,
               max_rss_growth_mib_per_min, max_fds_growth_per_min, max_tasks_growth_per_min,
               checks (\"all\"|\"none\"|[order, gaps, exactly_once, no_phantoms, consistency]),
               baseline_tolerance (for --baseline; 0.2 = 20 %)
Rates are per simulated day; durations are real seconds. Any field can be overridden:
  --set run.duration_secs=10 --set population.scale=1e-6 --set server.store=memory";

#[derive(Debug, Parser)]
#[command(
    name = "chat-sim",
    version,
    about = "Load simulator for the chat server: Goose-driven scenarios that check chat semantics, measure latency and storage growth, and write plotted reports and CI gates",
    after_long_help = SCENARIO_KNOBS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Runtime threads of the load generator in each of its processes (0: one per core).
    /// One by default: at the design's per-connection load one thread spends the fewest
    /// wake-ups per message; a run that needs more splits its users over worker processes
    /// (`run.workers`).
    #[arg(long, global = true, env = "CHAT_SIM_THREADS", default_value_t = 1)]
    pub threads: usize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario and write its report; exits 1 when a gate or check fails.
    #[command(after_long_help = SCENARIO_KNOBS)]
    Run(RunArgs),
    /// Run one scenario against several storage backends, one after another, and write a
    /// side-by-side report (compare.json, compare.md, compare.html, plots); exits 1 when a
    /// backend fails to run or a run's gate fails.
    #[command(after_long_help = COMPARE_HELP)]
    Compare(CompareArgs),
    /// Find what one node sustains: raise the load step by step (the scenario's
    /// `[capacity]` section) until a gate fails, narrow down, and write capacity.json (read
    /// by `chat-estimate --calibrate`), capacity.md and knee plots; exits 1 when a search
    /// found no passing step or a `[capacity]` minimum was missed.
    #[command(after_long_help = CAPACITY_HELP)]
    Capacity(CapacityArgs),
    /// Check the plan's model: run the scenario, predict from its per-message and
    /// per-connection costs what a load `--factor` times larger costs, run that, and report
    /// the error per figure; exits 1 when an error is beyond 15 %.
    Validate(ValidateArgs),
    /// Run a cluster scenario on 1, 2, 3 … nodes with the same load per node (k nodes get
    /// k times the users) and write scaling.json and scaling.md: throughput and CPU per
    /// message per node, the measured scaling efficiency, and the capacity plan from the
    /// largest step; exits 1 when a step's gate or check fails.
    Scale(ScaleArgs),
    /// Read a scenario, apply overrides, and print what it would run (no load).
    #[command(after_long_help = SCENARIO_KNOBS)]
    Check(CheckArgs),
    /// Serve the reference server for a run (started by `run` itself).
    #[command(hide = true)]
    ServeChild(chat_server::serve::ServeArgs),
    /// Run one shard of users for a parent `run` (started by `run` itself).
    #[command(hide = true)]
    Worker,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (TOML), e.g. scenarios/smoke.toml.
    pub scenario: PathBuf,
    /// Where run directories go: DIR/<scenario>-<UTC time>/.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Drive a server that runs elsewhere (http://HOST:PORT) instead of starting one.
    #[arg(long, requires = "jwt_secret")]
    pub target: Option<String>,
    /// The secret the --target server signs tokens with.
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// An earlier run's summary.json: regressions beyond gates.baseline_tolerance fail.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Override a scenario field by its dotted path (repeatable), e.g. run.duration_secs=10.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Serve a live dashboard of the run on HOST:PORT (port 0 picks one); its address is
    /// printed at the start. Without it the run opens no port.
    #[arg(long, value_name = "HOST:PORT")]
    pub dashboard: Option<String>,
}

/// `compare --help`, after the flags.
pub const COMPARE_HELP: &str = "\
Default stores: memory, fjall (a fresh temporary directory), PostgreSQL at
postgres://chat:chat@127.0.0.1:5433/chat and Cassandra at cql://127.0.0.1:9042/chat_compare.
scripts/postgres.sh and scripts/cassandra.sh start those two services locally; a backend
whose service is down is reported as not run and the others still run.

Each database backend gets a fresh namespace so bytes on disk per message are measured from
empty: PostgreSQL runs in schema cmp_<UTC time>_<n> (set in the query string), Cassandra in
keyspace <keyspace>_<UTC time>. Each is dropped after its run unless --keep-data.

Every run is a normal `chat-sim run` under DIR/compare-<scenario>-<UTC time>/<label>/
(labels: memory, fjall, postgres, cql); the comparison's files sit in that directory.";

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The scenario file (TOML), e.g. scenarios/smoke.toml.
    pub scenario: PathBuf,
    /// Comma-separated `--store` strings: memory, fjall, postgres://…, cql://HOST:PORT/KEYSPACE.
    #[arg(long, default_value = crate::compare::DEFAULT_STORES)]
    pub stores: String,
    /// Where the comparison goes: DIR/compare-<scenario>-<UTC time>/.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Override a scenario field for every run (repeatable), e.g. run.duration_secs=10.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Keep each database backend's schema or keyspace after its run, to inspect it.
    #[arg(long)]
    pub keep_data: bool,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// A scenario with a `[cluster]` section, e.g. scenarios/scaling.toml.
    pub scenario: PathBuf,
    /// The node counts, ascending, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub nodes: Vec<u32>,
    /// Where the steps and the scaling report go: DIR/scaling-<scenario>-<UTC time>/.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Override a scenario field for every step (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `capacity --help`, after the flags.
pub const CAPACITY_HELP: &str = "\
A scenario's [capacity] section (every field optional):
  hold_secs = 30              full load per step (0: the scenario's run.duration_secs)
  ramp_up_secs = 10           ramp-up per step (absent: the scenario's)
  refine = 2                  bisections between the last passing and first failing step
  confirm = 1                 reruns of a failing step before it counts as failed
  max_host_cpu_percent = 90   a failing step with the host's CPU (server + load, % of all
                              cores) at or above this and the load generator using at least
                              as much as the server is the host's limit, not the server's
  min_messages_per_sec, min_connections   CI gates on what the search sustained
  [[capacity.search]]         one or more; none: one search growing users
  grow = \"users\"              users: more users at the scenario's per-user activity;
                              rate: the scenario's users, their day compressed further;
                              connections: more users at the scenario's total message rate
  start = 0                   first level (users, or messages/s for rate); 0: the scenario's
  step = 0                    added per step; 0: the first level
  max_steps = 8

Each step is a whole `chat-sim run` in DIR/capacity-<scenario>-<UTC time>/<search>-<grow>-
<step>-<level>/, with every gate and check of the scenario on. A step the host capped at its
open-file limit ends the stepping: the connections found are then the host's, not the node's.";

#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// The scenario file (TOML) with a [capacity] section, e.g. scenarios/seed-node.toml.
    pub scenario: PathBuf,
    /// Where the search goes: DIR/capacity-<scenario>-<UTC time>/.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Override a scenario field for every step (repeatable), e.g. capacity.hold_secs=10.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// No line per step.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The scenario file (TOML): the base load.
    pub scenario: PathBuf,
    /// The larger run's load over the base's.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// What grows: users, rate or connections (as in [[capacity.search]]).
    #[arg(long, default_value = "users", value_parser = parse_grow)]
    pub grow: crate::scenario::Grow,
    /// Where the validation goes: DIR/validate-<scenario>-<UTC time>/.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Override a scenario field for both runs (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// No line per run.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_grow(s: &str) -> Result<crate::scenario::Grow, String> {
    use crate::scenario::Grow;
    [Grow::Users, Grow::Rate, Grow::Connections]
        .into_iter()
        .find(|g| g.name() == s)
        .ok_or_else(|| format!("must be users, rate or connections, got {s:?}"))
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Override a scenario field by its dotted path (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_every_documented_flag() {
        let c = Cli::try_parse_from([
            "chat-sim",
            "run",
            "s.toml",
            "--out",
            "o",
            "--target",
            "http://x:1",
            "--jwt-secret",
            "k",
            "--baseline",
            "b.json",
            "--set",
            "a.b=1",
            "--set",
            "c=2",
        ])
        .unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.set, vec!["a.b=1", "c=2"]);
        assert_eq!(r.target.as_deref(), Some("http://x:1"));
    }

    #[test]
    fn validate_reads_its_factor_and_growth() {
        let c = Cli::try_parse_from(["chat-sim", "validate", "s.toml", "--grow", "rate"]).unwrap();
        let Command::Validate(v) = c.command else {
            panic!()
        };
        assert_eq!(v.factor, 2.0);
        assert_eq!(v.grow, crate::scenario::Grow::Rate);
        assert!(Cli::try_parse_from(["chat-sim", "validate", "s.toml", "--grow", "x"]).is_err());
    }

    #[test]
    fn compare_defaults_to_the_four_stores() {
        let c = Cli::try_parse_from(["chat-sim", "compare", "s.toml", "--quiet"]).unwrap();
        let Command::Compare(a) = c.command else {
            panic!()
        };
        assert_eq!(a.stores, crate::compare::DEFAULT_STORES);
        assert!(a.quiet);
    }
}
