//! The reference server as a child process, and what is sampled from it.
//!
//! With no `--target`, the simulator re-executes its own binary with the hidden
//! `serve-child` subcommand, which runs `chat_server::run` from the server library. So
//! `cargo run -p simulator -- run …` builds everything the run needs, and the server gets
//! its own process: its own pid for CPU and memory sampling from `/proc`, and its own
//! budget of open files. The child prints `listening on ADDR` first, then a `@@stats`
//! line with the store's bytes on disk twice a second; it stops when its standard input
//! closes, so it never outlives the simulator, and it is killed on drop as well.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

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
    #[error("the server process did not report its address: {0}")]
    NoAddress(String),
}

/// What `serve-child` needs; also the flags it takes.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct ServeOptions {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: String,
    /// `--store` value: `memory`, `fjall:PATH`, …
    #[arg(long)]
    pub store: String,
    #[arg(long)]
    pub jwt_secret: String,
    /// 0 keeps the server's default (then capped below the open-file limit).
    #[arg(long, default_value_t = 0)]
    pub max_connections: u64,
    /// Sends per second per user; 0 turns the limit off.
    #[arg(long, default_value_t = 0)]
    pub send_rate: u32,
    #[arg(long, default_value_t = 0)]
    pub send_burst: u32,
    #[arg(long, default_value_t = 1024)]
    pub device_queue: u32,
}

/// The open-file soft limit of a process (`self` or a pid), from /proc.
pub fn open_files_limit(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/limits"),
        None => "/proc/self/limits".into(),
    };
    std::fs::read_to_string(path).ok().and_then(|l| {
        l.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse().ok())
    })
}

/// Connections a server process can hold: its open-file limit less room for the store's
/// files and the listener, as the server binary computes it.
pub fn connection_capacity(requested: u64, fd_limit: Option<u64>) -> u64 {
    let requested = if requested == 0 { 50_000 } else { requested };
    match fd_limit {
        Some(l) => requested.min(l.saturating_sub(512).max(1)),
        None => requested,
    }
}

/// Runs the server in this process (the `serve-child` subcommand).
pub async fn serve(o: ServeOptions) -> anyhow::Result<()> {
    use anyhow::Context;
    let store = chat_server::store::open(&o.store)
        .await
        .with_context(|| format!("--store {}", o.store))?;
    let listener = tokio::net::TcpListener::bind(&o.addr)
        .await
        .with_context(|| format!("cannot listen on {}", o.addr))?;
    let mut config = chat_server::Config::new(o.jwt_secret.clone());
    config.max_connections =
        connection_capacity(o.max_connections, open_files_limit(None)) as usize;
    config.device_queue = o.device_queue.max(1) as usize;
    config.send_rate_per_sec = o.send_rate;
    config.send_burst = if o.send_burst == 0 {
        o.send_rate.saturating_mul(2)
    } else {
        o.send_burst
    };
    config.shutdown_grace = Duration::from_secs(2);
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    let stats_store = store.store();
    tokio::spawn(async move {
        loop {
            let disk = match stats_store.disk_bytes().await {
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
    // Standard input closing means the simulator is gone or done: stop.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = tx.send(());
    });
    chat_server::run(listener, config, store, async move {
        let _ = rx.await;
    })
    .await?;
    Ok(())
}

/// One sample of a process from /proc.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// Clock ticks per second of /proc/PID/stat times: USER_HZ, 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// Samples a process (`None` = this one); `None` when /proc cannot tell.
pub fn sample_proc(pid: Option<u32>) -> Option<ProcSample> {
    let base = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".into(),
    };
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_secs: (utime + stime) / TICKS_PER_SEC,
        rss_bytes: rss_kb * 1024,
    })
}

/// The running child server.
pub struct ServerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    pub addr: String,
    pub pid: u32,
    disk: Arc<AtomicU64>,
    disk_updates: Arc<AtomicU64>,
    /// Connections the child can hold.
    pub capacity: u64,
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
            .args(["--max-connections", &o.max_connections.to_string()])
            .args(["--send-rate", &o.send_rate.to_string()])
            .args(["--send-burst", &o.send_burst.to_string()])
            .args(["--device-queue", &o.device_queue.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("CHAT_SIM_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        // Its own process group: a terminal's ctrl-c goes to the simulator, which then
        // finishes its report and stops the server itself.
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().map_err(ChildError::Spawn)?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(ChildError::NoAddress("no standard output".into()));
        };
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let disk = Arc::new(AtomicU64::new(UNKNOWN));
        let disk_updates = Arc::new(AtomicU64::new(0));
        let (d, du) = (disk.clone(), disk_updates.clone());
        std::thread::spawn(move || {
            let mut first = true;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if first {
                    first = false;
                    let _ = tx.send(line);
                    continue;
                }
                if let Some(json) = line.strip_prefix(STATS)
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
                    && let Some(b) = v["disk_bytes"].as_u64()
                {
                    d.store(b, Relaxed);
                    du.fetch_add(1, Relaxed);
                }
            }
        });
        let mut me = ServerChild {
            child,
            stdin,
            addr: String::new(),
            pid,
            disk,
            disk_updates,
            capacity: 0,
            _store_dir: store_dir,
        };
        let line = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            ChildError::NoAddress(format!(
                "no `listening on` line within 60 s; server log:\n{}",
                log.trim()
            ))
        })?;
        me.addr = line
            .strip_prefix("listening on ")
            .ok_or_else(|| ChildError::NoAddress(format!("unexpected first line {line:?}")))?
            .trim()
            .to_owned();
        me.capacity = connection_capacity(o.max_connections, open_files_limit(Some(pid)));
        Ok(me)
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
        self.stdin.take();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The directory of a fjall store the child was given, if the simulator made it.
    pub fn store_dir(&self) -> Option<PathBuf> {
        self._store_dir.as_ref().map(|d| d.path().to_owned())
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.stdin.take();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample_proc(None).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.cpu_secs >= 0.0);
        assert!(open_files_limit(None).is_some());
    }

    #[test]
    fn capacity_leaves_room_for_files() {
        assert_eq!(connection_capacity(0, Some(20_000)), 19_488);
        assert_eq!(connection_capacity(100, Some(20_000)), 100);
        assert_eq!(connection_capacity(0, None), 50_000);
    }
}
