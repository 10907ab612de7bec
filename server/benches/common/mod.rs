//! Shared by the benchmark programs: the server binary as a child process on loopback
//! and readings of CPU time and memory (both from the library's [`chat_server::process`]),
//! and authenticated WebSocket connections.

// Each benchmark uses a different part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use chat_server::auth::{Auth, now_secs};
pub use chat_server::process::{self, ServerProcess};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The secret the benchmark server signs tokens with.
pub const SECRET: &str = "bench-secret";

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts `chat-server serve --addr 127.0.0.1:0 --jwt-secret SECRET <extra>` as a child
/// process and waits for its `listening on ADDR` line. Dropping it kills the process, so
/// no server outlives the benchmark, whatever path it leaves by.
pub fn start_server(extra: &[String]) -> Result<ServerProcess> {
    let bin = env!("CARGO_BIN_EXE_chat-server");
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--jwt-secret", SECRET])
        .args(extra)
        // Warnings and errors reach the terminal; per-connection logs would cost CPU.
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(Stdio::inherit());
    ServerProcess::spawn(cmd, Duration::from_secs(30), |_| {})
        .with_context(|| format!("cannot start {bin}"))
}

/// This process's resident memory now, in bytes.
pub fn self_rss_bytes() -> Result<u64> {
    Ok(process::status_kb(None, "VmRSS:")? * 1024)
}

/// This process's peak resident memory, in bytes.
pub fn self_max_rss_bytes() -> Result<u64> {
    Ok(process::status_kb(None, "VmHWM:")? * 1024)
}

/// This process's user plus system CPU time so far, in seconds.
pub fn self_cpu_secs() -> Result<f64> {
    Ok(process::cpu_secs(None)?)
}

/// The whole machine's CPU time so far, in seconds summed over all cores: (busy,
/// iowait).
pub fn machine_cpu_secs() -> Result<(f64, f64)> {
    Ok(process::machine_cpu_secs()?)
}

/// CPU seconds used so far by each thread of a process, by thread name.
pub fn thread_cpu_secs(pid: u32) -> Result<Vec<(String, f64)>> {
    Ok(process::thread_cpu_secs(pid)?)
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
