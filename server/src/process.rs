//! A server as a child process, and what `/proc` says about a process: one harness for
//! the kill -9 and outage tests, the benchmark programs and the simulator's child server,
//! so starting a server, reading its `listening on ADDR` line and sampling its CPU and
//! memory are written once.
//!
//! The child is killed when its [`ServerProcess`] is dropped, whatever path the caller
//! leaves by, so no server outlives the test, benchmark or run that started it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thiserror::Error;

/// The first line a serving process prints on standard output, followed by the address
/// it listens on (what `chat-server serve` prints).
pub const LISTENING: &str = "listening on ";

/// Why a server process could not be started or read.
#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("cannot start the server process: {0}")]
    Spawn(std::io::Error),
    #[error("the server process did not report its address: {0}")]
    NoAddress(String),
    #[error("the server process exited before listening: {0}")]
    Exited(ExitStatus),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read {0}")]
    Proc(String),
}

/// A running server child process.
pub struct ServerProcess {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl ServerProcess {
    /// Spawns `cmd` (which must run a server that prints [`LISTENING`] and its address
    /// first) with its standard output and input piped, and waits
    /// up to `wait` for the address. Every later line of its standard output goes to
    /// `on_line`, on a thread that keeps draining the pipe so the server never blocks on
    /// it. Its standard input stays open until [`ServerProcess::close_stdin`] (a server
    /// may take its closing as the signal to stop).
    pub fn spawn(
        mut cmd: Command,
        wait: Duration,
        mut on_line: impl FnMut(&str) + Send + 'static,
    ) -> Result<ServerProcess, ProcessError> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(ProcessError::Spawn)?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // From here on the process is owned by `ServerProcess`: an early return kills it.
        let mut me = ServerProcess {
            child: Some(child),
            stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
        };
        let stdout = stdout.ok_or_else(|| ProcessError::NoAddress("no standard output".into()))?;
        let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<String>>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line.clone());
            let _ = tx.send(first);
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => on_line(line.trim_end()),
                }
            }
            // Whatever is left (not lines) is drained too.
            let mut sink = [0u8; 4096];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        });
        let line = match rx.recv_timeout(wait) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(ProcessError::Io(e)),
            Err(_) => {
                if let Some(status) = me.exited() {
                    return Err(ProcessError::Exited(status));
                }
                return Err(ProcessError::NoAddress(format!(
                    "no `{}` line within {} s",
                    LISTENING.trim(),
                    wait.as_secs()
                )));
            }
        };
        let Some(addr) = line.trim().strip_prefix(LISTENING) else {
            if let Some(status) = me.exited() {
                return Err(ProcessError::Exited(status));
            }
            return Err(ProcessError::NoAddress(format!(
                "unexpected first line {line:?}"
            )));
        };
        me.addr = addr
            .parse()
            .map_err(|_| ProcessError::NoAddress(format!("bad address {addr:?}")))?;
        Ok(me)
    }

    /// Whether the process has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills the process with SIGKILL and reaps it: a crash, as far as the server can
    /// tell.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Closes the process's standard input.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits up to `grace` for the process to exit by itself (after a stop signal), then
    /// kills it. Returns the exit status, and whether it had to be killed.
    pub fn wait_or_kill(&mut self, grace: Duration) -> Result<(ExitStatus, bool), ProcessError> {
        let Some(mut child) = self.child.take() else {
            return Err(ProcessError::NoAddress(
                "the server was already stopped".into(),
            ));
        };
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, false));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return Ok((child.wait()?, true));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server gracefully with SIGTERM and waits up to `grace` for it to exit,
    /// then kills it. Returns the exit status, and whether it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Result<(ExitStatus, bool), ProcessError> {
        if self.exited().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status();
        }
        self.wait_or_kill(grace)
    }

    /// CPU and memory of the process now.
    pub fn sample(&self) -> Option<ProcSample> {
        sample(Some(self.pid))
    }

    /// Resident memory now (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> Result<u64, ProcessError> {
        status_kb(Some(self.pid), "VmRSS:").map(|kb| kb * 1024)
    }

    /// Peak resident memory (VmHWM), in bytes.
    pub fn max_rss_bytes(&self) -> Result<u64, ProcessError> {
        status_kb(Some(self.pid), "VmHWM:").map(|kb| kb * 1024)
    }

    /// User plus system CPU time used so far, in seconds.
    pub fn cpu_secs(&self) -> Result<f64, ProcessError> {
        cpu_secs(Some(self.pid))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stdin.take();
        self.kill9();
    }
}

/// One sample of a process from `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Open file descriptors (sockets, the store's files), and OS threads: what a long
    /// run watches for leaks.
    pub open_fds: u64,
    pub threads: u64,
}

fn proc_dir(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".into(),
    }
}

/// Samples a process (`None` = this one); `None` when `/proc` cannot tell.
pub fn sample(pid: Option<u32>) -> Option<ProcSample> {
    Some(ProcSample {
        cpu_secs: cpu_secs(pid).ok()?,
        rss_bytes: status_kb(pid, "VmRSS:").ok()? * 1024,
        open_fds: std::fs::read_dir(format!("{}/fd", proc_dir(pid)))
            .map_or(0, |d| d.count() as u64),
        // A count, not kB, but the field has the same shape.
        threads: status_kb(pid, "Threads:").unwrap_or(0),
    })
}

/// A `kB` field of `/proc/PID/status` (`None` = this process), e.g. `VmRSS:`.
pub fn status_kb(pid: Option<u32>, field: &str) -> Result<u64, ProcessError> {
    let path = format!("{}/status", proc_dir(pid));
    let text =
        std::fs::read_to_string(&path).map_err(|e| ProcessError::Proc(format!("{path}: {e}")))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ProcessError::Proc(format!("{path}: no {field}")))
}

/// User plus system CPU time a process (`None` = this one) used so far, in seconds.
pub fn cpu_secs(pid: Option<u32>) -> Result<f64, ProcessError> {
    let path = format!("{}/stat", proc_dir(pid));
    let text =
        std::fs::read_to_string(&path).map_err(|e| ProcessError::Proc(format!("{path}: {e}")))?;
    parse_stat_cpu(&text).ok_or(ProcessError::Proc(path))
}

/// utime + stime of a `stat` file's text, in seconds.
fn parse_stat_cpu(text: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let tick = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    Some((tick(14)? + tick(15)?) / clock_ticks())
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, else 100).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The whole machine's CPU time so far, from the `cpu` line of `/proc/stat`, in seconds
/// summed over all cores: (busy, iowait). Busy counts user, nice, system, irq, softirq and
/// steal.
pub fn machine_cpu_secs() -> Result<(f64, f64), ProcessError> {
    let text = std::fs::read_to_string("/proc/stat")
        .map_err(|e| ProcessError::Proc(format!("/proc/stat: {e}")))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| ProcessError::Proc("/proc/stat: no cpu line".into()))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Ok((busy / clock_ticks(), at(4) / clock_ticks()))
}

/// CPU seconds used so far by each thread of a process, summed by thread name (e.g.
/// `tokio-runtime-w`), sorted by name.
pub fn thread_cpu_secs(pid: u32) -> Result<Vec<(String, f64)>, ProcessError> {
    let mut by_name = std::collections::BTreeMap::<String, f64>::new();
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|e| ProcessError::Proc(format!("{dir}: {e}")))?;
    for entry in entries {
        let tid = entry?.file_name();
        let tid = tid.to_string_lossy();
        // A thread may end between the listing and the read: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("{dir}/{tid}/stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("?", |(n, _)| n)
            .to_string();
        if let Some(secs) = parse_stat_cpu(&stat) {
            *by_name.entry(name).or_default() += secs;
        }
    }
    Ok(by_name.into_iter().collect())
}

/// The soft limit of open files of this process (`None`) or of another one, from
/// `/proc/PID/limits`.
pub fn open_files_limit(pid: Option<u32>) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{}/limits", proc_dir(pid))).ok()?;
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
}

/// Open files a server process keeps apart from its connections: the store's files, the
/// listener, logs.
pub const RESERVED_FILES: u64 = 512;

/// Connections a server process can hold when `requested` are asked for (0 = the
/// default): its open-file limit less [`RESERVED_FILES`].
pub fn connection_capacity(requested: u64, fd_limit: Option<u64>) -> u64 {
    let requested = if requested == 0 {
        crate::Config::new(String::new()).max_connections as u64
    } else {
        requested
    };
    match fd_limit {
        Some(l) => requested.min(l.saturating_sub(RESERVED_FILES).max(1)),
        None => requested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample(None).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.cpu_secs >= 0.0);
        assert!(open_files_limit(None).is_some());
        assert!(machine_cpu_secs().unwrap().0 > 0.0);
        assert!(!thread_cpu_secs(std::process::id()).unwrap().is_empty());
        assert!(sample(Some(u32::MAX)).is_none());
    }

    #[test]
    fn capacity_leaves_room_for_files() {
        assert_eq!(connection_capacity(0, Some(20_000)), 19_488);
        assert_eq!(connection_capacity(100, Some(20_000)), 100);
        assert_eq!(connection_capacity(0, None), 50_000);
    }

    #[test]
    fn a_process_that_prints_no_address_is_an_error() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hello; sleep 5"]);
        match ServerProcess::spawn(cmd, Duration::from_secs(5), |_| {}) {
            Err(ProcessError::NoAddress(m)) => assert!(m.contains("hello"), "{m}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("accepted a process that does not listen"),
        }
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo 'listening on 127.0.0.1:4567'; echo more; sleep 5",
        ]);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut p = ServerProcess::spawn(cmd, Duration::from_secs(5), move |l| {
            let _ = tx.send(l.to_owned());
        })
        .unwrap();
        assert_eq!(p.addr.port(), 4567);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "more");
        let (_, killed) = p.terminate(Duration::from_secs(5)).unwrap();
        assert!(!killed, "sh stops on SIGTERM");
    }
}
