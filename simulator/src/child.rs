//! The reference server as a child process, and what is sampled from it.
//!
//! With no `--target`, the simulator re-executes its own binary with the hidden
//! `serve-child` subcommand, which runs `chat_server::serve::serve` from the server library
//! with the server's own flags, and watches it with the library's child-process harness
//! (`chat_server::process`). So
//! `cargo run -p simulator -- run …` builds everything the run needs, and the server gets
//! its own process: its own pid for CPU and memory sampling from `/proc`, and its own
//! budget of open files. The child prints `listening on ADDR` first, then a `@@stats`
//! line with the store's bytes on disk twice a second; it stops when its standard input
//! closes, so it never outlives the simulator, and it is killed on drop as well.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

pub use chat_server::process::ProcSample;
use chat_server::process::{ProcessError, ServerProcess};
use chat_server::serve::ServeArgs;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Prefix of the child's statistics lines.
const STATS: &str = "@@stats ";
/// `disk_bytes` before the first statistics line, or for a store with no disk.
const UNKNOWN: u64 = u64::MAX;

/// Why the child server could not start.
#[derive(Debug, Error)]
pub enum ChildError {
    #[error("cannot start the server process: {0}")]
    Spawn(std::io::Error),
    /// The harness's own account of what went wrong, with the server's log.
    #[error("{0}")]
    Failed(String),
}

/// What the simulator asks of its child server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServeOptions {
    /// Address to listen on.
    pub addr: String,
    /// `--store` value: `memory`, `fjall:PATH`, … (`fjall` alone: a fresh temporary
    /// directory).
    pub store: String,
    pub jwt_secret: String,
    /// 0 keeps the server's default (then capped below the open-file limit).
    pub max_connections: u64,
    /// Sends per second per user; 0 turns the limit off.
    pub send_rate: u32,
    /// 0: twice the rate.
    pub send_burst: u32,
    pub device_queue: u32,
    /// Runtime threads (`--workers`; 0: one per core).
    #[serde(default)]
    pub workers: u32,
    /// More server flags (a cluster node's `--cluster`, `--node`, `--advertise`).
    #[serde(default)]
    pub extra: Vec<String>,
}

/// Open files a server keeps apart from its connections, and what it can hold: the
/// server library's rules, re-exported for the report.
pub use chat_server::process::{connection_capacity, open_files_limit};

/// Runs the server in this process (the `serve-child` subcommand) with the server's own
/// flags, through the server library's `serve`: the same code path as `chat-server
/// serve`. Besides, it prints a `@@stats` line with the store's bytes on disk twice a
/// second, and stops when its standard input closes or on SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Standard input closing means the simulator is gone or done: stop.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = tx.send(());
    });
    // SIGTERM drains as `chat-server serve` does (a `stop_node` fault sends it).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = rx => {}
            _ = term.recv() => {}
        }
    };
    chat_server::serve::serve(&args, shutdown, |backend| {
        let store = backend.store();
        tokio::spawn(async move {
            loop {
                let disk = match store.disk_bytes().await {
                    Ok(Some(b)) => b,
                    _ => UNKNOWN,
                };
                let mut out = std::io::stdout();
                if writeln!(out, "{STATS}{{\"disk_bytes\":{disk}}}").is_err() {
                    break;
                }
                let _ = out.flush();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    })
    .await?;
    Ok(())
}

/// Samples a process (`None` = this one) from `/proc`; `None` when `/proc` cannot tell.
///
/// The same figures as the server library's reader, but open files are counted from the
/// size Linux (6.2 and later) reports for `/proc/PID/fd` instead of by listing it: listing
/// the 10 K descriptors of a node once a second was a tenth of the load generator's CPU.
/// Kernels that report no size are listed as before.
pub fn sample_proc(pid: Option<u32>) -> Option<ProcSample> {
    use chat_server::process::{cpu_secs, status_kb};
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".into(),
    };
    let fd = format!("{dir}/fd");
    let open_fds = match std::fs::metadata(&fd).map(|m| m.len()) {
        Ok(n) if n > 0 => n,
        _ => std::fs::read_dir(&fd).map_or(0, |d| d.count() as u64),
    };
    Some(ProcSample {
        cpu_secs: cpu_secs(pid).ok()?,
        rss_bytes: status_kb(pid, "VmRSS:").ok()? * 1024,
        open_fds,
        // A count, not kB, but the field has the same shape.
        threads: status_kb(pid, "Threads:").unwrap_or(0),
    })
}

/// CPU seconds a load process (`None` = this one) used so far: all the run needs of them.
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    chat_server::process::cpu_secs(pid).ok()
}

/// The running child server.
pub struct ServerChild {
    process: ServerProcess,
    pub addr: String,
    pub pid: u32,
    disk: Arc<AtomicU64>,
    disk_updates: Arc<AtomicU64>,
    /// Connections the child can hold: its `--max-connections`, at most what its open
    /// files allow.
    pub capacity: u64,
    /// Connections the host lets the child hold whatever its settings: its open-file
    /// limit less what it keeps apart. A run is sized to this, never to the server's own
    /// cap, so a server capped on purpose refuses the rest as it would in production.
    pub host_capacity: u64,
    _store_dir: Option<tempfile::TempDir>,
}

impl ServerChild {
    /// Starts `chat-sim serve-child` with the scenario's settings; its log goes to `log`.
    /// `store` `fjall` gets a fresh temporary directory, removed when the child is dropped.
    pub fn spawn(mut o: ServeOptions, log: &Path) -> Result<ServerChild, ChildError> {
        let mut store_dir = None;
        if o.store == "fjall" {
            let dir = tempfile::Builder::new()
                .prefix("chat-sim-store-")
                .tempdir()
                .map_err(ChildError::Spawn)?;
            o.store = format!("fjall:{}", dir.path().display());
            store_dir = Some(dir);
        }
        let exe = std::env::current_exe().map_err(ChildError::Spawn)?;
        let log_file = std::fs::File::create(log).map_err(ChildError::Spawn)?;
        let burst = if o.send_burst == 0 {
            o.send_rate.saturating_mul(2)
        } else {
            o.send_burst
        };
        let mut cmd = Command::new(exe);
        cmd.arg("serve-child")
            .args([
                "--addr",
                &o.addr,
                "--store",
                &o.store,
                "--jwt-secret",
                &o.jwt_secret,
            ])
            .args(["--send-rate", &o.send_rate.to_string()])
            .args(["--send-burst", &burst.to_string()])
            .args(["--device-queue", &o.device_queue.max(1).to_string()])
            .args(["--shutdown-grace", "2"])
            .args(["--workers", &o.workers.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("CHAT_SIM_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(Stdio::from(log_file));
        if o.max_connections > 0 {
            cmd.args(["--max-connections", &o.max_connections.to_string()]);
        }
        cmd.args(&o.extra);
        // Its own process group: a terminal's ctrl-c goes to the simulator, which then
        // finishes its report and stops the server itself.
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let disk = Arc::new(AtomicU64::new(UNKNOWN));
        let disk_updates = Arc::new(AtomicU64::new(0));
        let (d, du) = (disk.clone(), disk_updates.clone());
        let process = ServerProcess::spawn(cmd, Duration::from_secs(60), move |line| {
            if let Some(json) = line.strip_prefix(STATS)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
                && let Some(b) = v["disk_bytes"].as_u64()
            {
                d.store(b, Relaxed);
                du.fetch_add(1, Relaxed);
            }
        })
        .map_err(|e| match e {
            ProcessError::Spawn(e) => ChildError::Spawn(e),
            other => {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                ChildError::Failed(format!("{other}; server log:\n{}", log.trim()))
            }
        })?;
        let pid = process.pid;
        Ok(ServerChild {
            addr: process.addr.to_string(),
            pid,
            process,
            disk,
            disk_updates,
            capacity: connection_capacity(o.max_connections, open_files_limit(Some(pid))),
            host_capacity: connection_capacity(u64::MAX, open_files_limit(Some(pid))),
            _store_dir: store_dir,
        })
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// CPU and memory of the child now.
    pub fn sample(&self) -> Option<ProcSample> {
        sample_proc(Some(self.pid))
    }

    /// The store's bytes on disk as the child last reported (`None` for a store without
    /// disk, or before the first report).
    pub fn disk_bytes(&self) -> Option<u64> {
        match self.disk.load(Relaxed) {
            UNKNOWN => None,
            b => Some(b),
        }
    }

    /// Waits for a fresh disk report (up to `limit`), so the last figure is current.
    pub fn fresh_disk_bytes(&self, limit: Duration) -> Option<u64> {
        let seen = self.disk_updates.load(Relaxed);
        let deadline = Instant::now() + limit;
        while self.disk_updates.load(Relaxed) < seen + 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.disk_bytes()
    }

    /// Stops the child: closes its input (a graceful shutdown), then kills it if it has
    /// not ended within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.process.close_stdin();
        let _ = self.process.wait_or_kill(grace);
    }

    /// Kills the child with SIGKILL (a crash) and reaps it.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Asks the child to stop with SIGTERM (it drains), killing it after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        let _ = self.process.terminate(grace);
    }

    /// Whether the child has exited.
    pub fn exited(&mut self) -> bool {
        self.process.exited().is_some()
    }

    /// The directory of a fjall store the child was given, if the simulator made it.
    pub fn store_dir(&self) -> Option<PathBuf> {
        self._store_dir.as_ref().map(|d| d.path().to_owned())
    }
}
