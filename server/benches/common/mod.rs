//! Shared by the benchmark programs: the server binary as a child process on loopback,
//! readings of a process's CPU time and memory from `/proc`, and authenticated WebSocket
//! connections.

// Each benchmark uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use chat_server::auth::{Auth, now_secs};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The secret the benchmark server signs tokens with.
pub const SECRET: &str = "bench-secret";

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server binary running as a child process. Dropping it kills the process, so no
/// server outlives the benchmark, whatever path it leaves by.
pub struct ServerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl ServerProcess {
    /// Starts `chat-server serve --addr 127.0.0.1:0 --jwt-secret SECRET <extra>` and waits
    /// for the `listening on ADDR` line.
    pub fn start(extra: &[String]) -> Result<ServerProcess> {
        let bin = env!("CARGO_BIN_EXE_chat-server");
        let mut child = Command::new(bin)
            .args(["serve", "--addr", "127.0.0.1:0", "--jwt-secret", SECRET])
            .args(extra)
            // Warnings and errors reach the terminal; per-connection logs would cost CPU.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {bin}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("no stdout of the server")?;
        // From here on the process is owned by `ServerProcess`: an early return kills it.
        let mut server = ServerProcess {
            child: Some(child),
            addr: "127.0.0.1:0".parse()?,
            pid,
        };
        server.addr = read_listening_line(stdout, &mut server)?;
        Ok(server)
    }

    /// Whether the process has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stops the server gracefully with SIGTERM and waits up to `grace` for it to exit,
    /// then kills it. Returns the exit status, and whether it had to be killed.
    pub fn stop(mut self, grace: Duration) -> Result<(ExitStatus, bool)> {
        let mut child = self.child.take().context("server already stopped")?;
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok((status, false));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        Ok((child.wait()?, true))
    }

    /// Resident memory now (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        proc_status_kb(self.pid, "VmRSS:").map(|kb| kb * 1024)
    }

    /// Peak resident memory (VmHWM), in bytes.
    pub fn max_rss_bytes(&self) -> Result<u64> {
        proc_status_kb(self.pid, "VmHWM:").map(|kb| kb * 1024)
    }

    /// User plus system CPU time used so far, in seconds.
    pub fn cpu_secs(&self) -> Result<f64> {
        cpu_secs_of(&self.pid.to_string())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads the server's first stdout line (`listening on ADDR`) within 30 s, then keeps
/// draining its stdout on a thread so the server never blocks or fails on a full pipe.
fn read_listening_line(stdout: ChildStdout, server: &mut ServerProcess) -> Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<String>>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let first = reader.read_line(&mut line).map(|_| line);
        let _ = tx.send(first);
        let mut sink = [0u8; 4096];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return Err(e).context("reading the server's stdout"),
        Err(_) => {
            if let Some(status) = server.exited() {
                bail!("the server exited before listening: {status}");
            }
            bail!("the server printed no `listening on` line within 30 s");
        }
    };
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| match server.exited() {
            Some(status) => anyhow!("the server exited before listening: {status}"),
            None => anyhow!("unexpected first line from the server: {line:?}"),
        })?;
    addr.parse()
        .with_context(|| format!("bad address from the server: {addr:?}"))
}

/// A `kB` field of `/proc/PID/status` (`pid` may be `self`).
fn proc_status_kb(pid: impl std::fmt::Display, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// This process's resident memory now, in bytes.
pub fn self_rss_bytes() -> Result<u64> {
    proc_status_kb("self", "VmRSS:").map(|kb| kb * 1024)
}

/// This process's peak resident memory, in bytes.
pub fn self_max_rss_bytes() -> Result<u64> {
    proc_status_kb("self", "VmHWM:").map(|kb| kb * 1024)
}

/// This process's user plus system CPU time so far, in seconds.
pub fn self_cpu_secs() -> Result<f64> {
    cpu_secs_of("self")
}

/// Clock ticks per second for `/proc/PID/stat` times (`getconf CLK_TCK`, else 100).
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
pub fn machine_cpu_secs() -> Result<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
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
pub fn thread_cpu_secs(pid: u32) -> Result<Vec<(String, f64)>> {
    let mut by_name = std::collections::BTreeMap::<String, f64>::new();
    let dir = format!("/proc/{pid}/task");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
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
        if let Ok(secs) = parse_stat_cpu(&stat, &dir) {
            *by_name.entry(name).or_default() += secs;
        }
    }
    Ok(by_name.into_iter().collect())
}

/// utime + stime of `/proc/PID/stat`, in seconds.
fn cpu_secs_of(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu(&text, &path)
}

/// utime + stime of a `stat` file's text, in seconds.
fn parse_stat_cpu(text: &str, path: &str) -> Result<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("malformed {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let tick = |i: usize| -> Result<f64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no field {i} in {path}"))
    };
    Ok((tick(14)? + tick(15)?) / clock_ticks())
}

/// Issues tokens for the benchmark server's secret.
pub struct Tokens {
    auth: Auth,
}

impl Tokens {
    pub fn new() -> Result<Tokens> {
        Ok(Tokens {
            auth: Auth::new(SECRET)?,
        })
    }

    /// A token for `user` on `device`, valid for two hours.
    pub fn issue(&self, user: u64, device: &str) -> Result<String> {
        let device = device
            .parse()
            .map_err(|e| anyhow!("bad device id {device:?}: {e}"))?;
        Ok(self.auth.issue(user, &device, now_secs() + 7200))
    }
}

/// Opens `GET /v1/ws` with the token in the `Authorization` header, Nagle off.
/// `buffer_bytes` sets the client's read and write buffer sizes.
pub async fn connect(addr: SocketAddr, token: &str, buffer_bytes: usize) -> Result<Ws> {
    let mut req = format!("ws://{addr}/v1/ws").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let config = WebSocketConfig::default()
        .read_buffer_size(buffer_bytes)
        .write_buffer_size(0);
    let connecting = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
    let (ws, resp) = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .context("WebSocket connect: no answer within 30 s")?
        .context("WebSocket connect")?;
    if resp.status().as_u16() != 101 {
        bail!("upgrade answered {}", resp.status());
    }
    Ok(ws)
}

/// Bytes as a short human-readable figure (KiB, MiB).
pub fn human_bytes(b: f64) -> String {
    let a = b.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if a >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if a >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// Runs `work` until it ends or SIGINT/SIGTERM arrives. On a signal the work is dropped,
/// which drops (and so kills) any server process it holds, and an error is returned.
pub async fn unless_interrupted(work: impl Future<Output = Result<()>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        r = work => r,
        _ = term.recv() => bail!("interrupted by SIGTERM"),
        _ = int.recv() => bail!("interrupted by SIGINT"),
    }
}
