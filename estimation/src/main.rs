//! `chat-estimate`: prints the chat system's capacity plan.
//!
//! A flag per input, the source design as defaults; a table by default,
//! `--json` for programs, and `--calibrate PATH/summary.json` to set a
//! simulator run's measurements beside the assumptions. All arithmetic and
//! formatting live in the library; this file only reads flags and prints.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use estimation::units::{parse_bytes, parse_number, parse_whole_count};
use estimation::{CalibrationError, Inputs, Summary, calibrate, report};

/// What `--help` says about the summary file that `--calibrate` reads; the
/// full definition is in the library's `calibrate` module.
const CALIBRATION_HELP: &str = "\
--calibrate reads the \"calibration\" object of a simulator summary.json (other fields are ignored):
  version                      integer, optional (1)
  bytes_per_message_on_disk    number or null: bytes on disk per stored message while the run went on (transient)
  settled_bytes_per_message    number or null: the same once the store settled, idempotency records apart
  idempotency_bytes_per_message number or null: settled idempotency records per message, kept one window
  idempotency_window_secs      number or null: the store's idempotency window (86400 when absent)
  messages_per_sec_per_node    number or null: messages/s one node accepted inside its latency gates
  connections_per_node         integer or null: connections one node held inside its latency gates
  memory_bytes_per_connection  number or null: resident memory per open connection
  memory_bytes_per_node        number or null: resident memory of a node apart from its connections
  gates_passed                 boolean or null: whether the run stayed inside its latency gates
A null or absent measurement keeps the assumption, and the report says so.";

/// Capacity plan for the chat system, from the source design's estimate or
/// from a simulator run's measurements.
///
/// Defaults are the source design (500 M daily users, 40 messages of 100 B
/// each per day, 5 years, 50 K connections per server, 4 TB shards), which
/// reproduces its figures exactly. Units are decimal: 1 TB = 10^12 B.
#[derive(Debug, Parser)]
#[command(name = "chat-estimate", version, about, long_about, after_long_help = CALIBRATION_HELP)]
struct Cli {
    /// Users active on a given day. Accepts K, M, B (billion) suffixes.
    #[arg(long, allow_negative_numbers = true, visible_alias = "dau", value_name = "COUNT", default_value = "500M", value_parser = parse_whole_count)]
    daily_active_users: u64,

    /// Messages each daily user sends per day, on average.
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value = "40", value_parser = parse_number)]
    messages_per_user_per_day: f64,

    /// Average message payload, e.g. 100B, 1kB. A bare number is bytes.
    #[arg(long, allow_negative_numbers = true, value_name = "BYTES", default_value = "100B", value_parser = parse_bytes)]
    message_size: f64,

    /// How long messages are kept, in years of 365 days.
    #[arg(long, allow_negative_numbers = true, value_name = "YEARS", default_value = "5", value_parser = parse_number)]
    retention_years: f64,

    /// Concurrent connections one chat server holds.
    #[arg(long, allow_negative_numbers = true, value_name = "COUNT", default_value = "50K", value_parser = parse_whole_count)]
    connections_per_server: u64,

    /// Share of daily users connected at the busiest moment, in (0, 1].
    #[arg(long, allow_negative_numbers = true, value_name = "FRACTION", default_value = "1", value_parser = parse_number)]
    concurrent_fraction: f64,

    /// Messages per second one chat server sustains; unset, the message
    /// rate does not size the chat tier (as in the source design).
    #[arg(long, allow_negative_numbers = true, value_name = "RATE", value_parser = parse_number)]
    messages_per_sec_per_server: Option<f64>,

    /// Memory per open connection, e.g. 10kB; unset, memory is not
    /// estimated.
    #[arg(long, allow_negative_numbers = true, value_name = "BYTES", value_parser = parse_bytes)]
    memory_per_connection: Option<f64>,

    /// Memory each chat server holds apart from its connections (the process, its
    /// store's in-memory tables, caches), e.g. 300MB; counted only with
    /// --memory-per-connection.
    #[arg(long, allow_negative_numbers = true, value_name = "BYTES", value_parser = parse_bytes)]
    memory_per_server: Option<f64>,

    /// Size of one logical database shard, e.g. 4TB.
    #[arg(long, allow_negative_numbers = true, value_name = "BYTES", default_value = "4TB", value_parser = parse_bytes)]
    shard_size: f64,

    /// Storage one physical database server holds, e.g. 16TB; unset, one
    /// shard per server.
    #[arg(long, allow_negative_numbers = true, value_name = "BYTES", value_parser = parse_bytes)]
    db_server_capacity: Option<f64>,

    /// Copies kept of every shard, on separate database servers.
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "N",
        default_value = "1",
        value_parser = parse_replicas
    )]
    replication_factor: u32,

    /// Disk bytes per payload byte: indexes, inbox entries, compaction
    /// headroom (below 1 models compression).
    #[arg(long, allow_negative_numbers = true, value_name = "FACTOR", default_value = "1", value_parser = parse_number)]
    storage_overhead: f64,

    /// Busiest second's message rate over the daily average, at least 1.
    #[arg(long, allow_negative_numbers = true, value_name = "RATIO", default_value = "1", value_parser = parse_number)]
    peak_to_average: f64,

    /// Recipients per message on average, at least 1 (1 = one-to-one chat).
    #[arg(long, allow_negative_numbers = true, value_name = "FACTOR", default_value = "1", value_parser = parse_number)]
    fan_out: f64,

    /// Print JSON (raw bytes and per-second numbers) instead of a table.
    #[arg(long)]
    json: bool,

    /// Read a simulator run's summary.json and print the measured plan
    /// beside the assumed one, with the ratio of each figure.
    #[arg(long, value_name = "PATH")]
    calibrate: Option<PathBuf>,
}

impl Cli {
    fn inputs(&self) -> Inputs {
        Inputs {
            daily_active_users: self.daily_active_users,
            messages_per_user_per_day: self.messages_per_user_per_day,
            message_size_bytes: self.message_size,
            retention_years: self.retention_years,
            connections_per_server: self.connections_per_server,
            concurrent_fraction: self.concurrent_fraction,
            messages_per_sec_per_server: self.messages_per_sec_per_server,
            memory_bytes_per_connection: self.memory_per_connection,
            memory_bytes_per_node: self.memory_per_server,
            shard_size_bytes: self.shard_size,
            db_server_capacity_bytes: self.db_server_capacity,
            replication_factor: self.replication_factor,
            storage_overhead_factor: self.storage_overhead,
            peak_to_average: self.peak_to_average,
            fan_out: self.fan_out,
        }
    }
}

/// Reads a replica count: a whole number that fits in `u32`.
fn parse_replicas(input: &str) -> Result<u32, String> {
    let count = parse_whole_count(input).map_err(|error| error.to_string())?;
    u32::try_from(count).map_err(|_| format!("`{input}` is too large"))
}

fn run(cli: &Cli) -> anyhow::Result<String> {
    let inputs = cli.inputs();
    let output = match &cli.calibrate {
        None => {
            let plan = inputs.plan().context("invalid input")?;
            if cli.json {
                json_text(&report::plan_json(&plan))?
            } else {
                report::render_plan(&plan)
            }
        }
        Some(path) => {
            let context = || format!("calibration summary {}", path.display());
            inputs.validate().context("invalid input")?;
            let summary = Summary::read(path).map_err(|error| match error {
                // Already names the file.
                CalibrationError::Read { .. } => anyhow::Error::new(error),
                other => anyhow::Error::new(other).context(context()),
            })?;
            let calibrated = calibrate(&inputs, &summary).with_context(context)?;
            if cli.json {
                json_text(&report::calibrated_json(&calibrated))?
            } else {
                report::render_calibrated(&calibrated)
            }
        }
    };
    Ok(output)
}

fn json_text(value: &impl serde::Serialize) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("cannot write JSON")?;
    text.push('\n');
    Ok(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(output) => {
            let mut stdout = io::stdout().lock();
            match stdout
                .write_all(output.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                // A closed pipe (e.g. `| head`) is not a failure of the plan.
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("chat-estimate: error: cannot write output: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("chat-estimate: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_source_design() {
        let cli = Cli::parse_from(["chat-estimate"]);
        assert_eq!(cli.inputs(), Inputs::source_design());
    }
}
