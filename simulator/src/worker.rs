//! Worker processes: when a run needs more WebSockets than one process may hold (the
//! hosts cap a process at 20 000 open files) or the scenario asks for workers, the users
//! are split into shards and each shard runs in `chat-sim worker`, a re-execution of this
//! binary.
//!
//! The parent writes the shard's [`ShardJob`] as one JSON line to the worker's standard
//! input and keeps it open (its end tells the worker to stop). The worker answers on
//! standard output with lines starting with [`PREFIX`]: `progress` lines while it runs and
//! one `done` line with its [`ShardReport`]: histograms in HdrHistogram's V2 format, the
//! time series, counters and check results, all of which merge exactly. Lines without the
//! prefix (anything a library prints) are passed on to standard error.
//!
//! Checks stay exact across processes because a shard is closed: its contact graph and
//! groups only connect its own users, so every conversation with all of its participants'
//! devices lives in one worker.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::load::setup::ShardJob;
use crate::load::shard::{self, ShardCtx};
use crate::records::{Progress, ShardReport};

/// Marks the lines of the worker protocol on standard output.
pub const PREFIX: &str = "@@chat-sim ";

/// A message from a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerMessage {
    Progress { shard: u32, progress: Progress },
    Done { report: Box<ShardReport> },
    Failed { shard: u32, error: String },
}

/// The `worker` subcommand: runs one shard and reports on standard output.
pub async fn worker_main() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let job: ShardJob = serde_json::from_str(&line)?;
    // The parent closing our input means it is gone: stop at once.
    std::thread::spawn(|| {
        let mut sink = String::new();
        while let Ok(n) = std::io::stdin().read_line(&mut sink) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(3);
    });
    let shard = job.shard;
    let ctx = match ShardCtx::new(&job) {
        Ok(c) => c,
        Err(e) => {
            emit(&WorkerMessage::Failed {
                shard,
                error: e.to_string(),
            });
            return Ok(());
        }
    };
    let progress_ctx = ctx.clone();
    let interval = Duration::from_secs_f64(job.scenario.run.sample_interval_secs);
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            emit(&WorkerMessage::Progress {
                shard,
                progress: progress_ctx.records.progress(),
            });
        }
    });
    let result = shard::run(ctx, job.goose_report.clone()).await;
    ticker.abort();
    match result {
        Ok(report) => emit(&WorkerMessage::Done {
            report: Box::new(report),
        }),
        Err(e) => emit(&WorkerMessage::Failed {
            shard,
            error: e.to_string(),
        }),
    }
    Ok(())
}

fn emit(m: &WorkerMessage) {
    if let Ok(json) = serde_json::to_string(m) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{PREFIX}{json}");
        let _ = out.flush();
    }
}

/// A running worker process.
pub struct Worker {
    child: Child,
    pub shard: u32,
}

impl Worker {
    /// Starts `chat-sim worker` for `job`; its messages go to `tx`.
    pub fn spawn(job: &ShardJob, tx: mpsc::Sender<WorkerMessage>) -> std::io::Result<Worker> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("worker")
            .args(["--threads", &crate::load_threads().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let json = serde_json::to_string(job).map_err(std::io::Error::other)?;
        if let Some(stdin) = child.stdin.as_mut() {
            writeln!(stdin, "{json}")?;
            stdin.flush()?;
        }
        let shard = job.shard;
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut done = false;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match line.strip_prefix(PREFIX) {
                        Some(json) => match serde_json::from_str::<WorkerMessage>(json) {
                            Ok(m) => {
                                done |= !matches!(m, WorkerMessage::Progress { .. });
                                if tx.send(m).is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(WorkerMessage::Failed {
                                    shard,
                                    error: format!("unreadable worker message: {e}"),
                                });
                            }
                        },
                        None => eprintln!("[worker {shard}] {line}"),
                    }
                }
                if !done {
                    let _ = tx.send(WorkerMessage::Failed {
                        shard,
                        error: "the worker process ended without a report".into(),
                    });
                }
            });
        }
        Ok(Worker { child, shard })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end after it reported.
    pub fn reap(mut self) {
        self.child.stdin.take();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.child.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_done_report_with_close_codes_reads_back() {
        // The report travels inside an internally tagged message: maps with integer
        // keys must survive that (they once did not, and a worker that saw a close code
        // failed the run).
        let report = ShardReport {
            shard: 1,
            users: 2,
            devices: 3,
            epoch_unix_ms: 4,
            load_start_secs: 0.5,
            load_end_secs: 9.5,
            latency: BTreeMap::new(),
            series: Vec::new(),
            checks: Default::default(),
            counters: Default::default(),
            close_codes: BTreeMap::from([(1011, 2), (1013, 1)]),
            goose: Vec::new(),
            groups_supported: None,
            groups_created: 0,
            groups_failed: 0,
            presence_supported: Some(true),
            body_bytes_acked: 7,
            notes: vec!["n".into()],
            recoveries: vec![(3.0, 0.25)],
        };
        let json = serde_json::to_string(&WorkerMessage::Done {
            report: Box::new(report),
        })
        .unwrap();
        let back: WorkerMessage = serde_json::from_str(&json).unwrap();
        let WorkerMessage::Done { report } = back else {
            panic!("not a done message: {json}");
        };
        assert_eq!(report.close_codes, BTreeMap::from([(1011, 2), (1013, 1)]));
        assert_eq!(report.recoveries, vec![(3.0, 0.25)]);
    }
}
