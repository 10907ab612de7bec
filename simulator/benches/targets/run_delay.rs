//! Target 6, the simulator's own latency delay: one fjall server, and at the same time
//! the smoke scenario (`chat-sim run --target`) and peerbench's open model at the same
//! 200 msgs/s against it. Both take latency from the intended send time, so their p50s
//! differ only by what each load generator adds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chat_server::process::ServerProcess;

use crate::figures::DelayFigures;
use crate::run_local::{chat_sim, scenario};

const SECRET: &str = "targets-delay-secret";
/// smoke's rate at full load: 100 users × 2 sends/s.
const RATE: &str = "200";
/// peerbench's window: smoke ramps up for 3 s and holds its load for 15.
const WARMUP: &str = "3s";
const DURATION: &str = "15s";

pub fn run(out: &Path, peerbench: &Path) -> Result<DelayFigures> {
    std::fs::create_dir_all(out)?;
    let store = tempfile::Builder::new()
        .prefix("targets-delay-")
        .tempdir()?;
    let log = std::fs::File::create(out.join("server.log"))?;
    let mut cmd = Command::new(chat_sim());
    cmd.arg("serve-child")
        .args(["--addr", "127.0.0.1:0", "--jwt-secret", SECRET])
        .arg("--store")
        .arg(format!("fjall:{}", store.path().join("data").display()))
        .args(["--send-rate", "0", "--shutdown-grace", "2"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::from(log));
    let mut server = ServerProcess::spawn(cmd, Duration::from_secs(60), |_| {})
        .context("starting the fjall server")?;
    let addr = server.addr.to_string();
    eprintln!("targets: delay: server {addr} (pid {})", server.pid);

    // peerbench's users are 1..=200; a `--target` run numbers its users from the clock,
    // far above.
    let peer = Command::new(peerbench)
        .args(["-proto", "chat", "-addr", &addr, "-secret", SECRET])
        .args(["-mode", "rate", "-rate", RATE, "-pairs", "100"])
        .args(["-warmup", WARMUP, "-duration", DURATION])
        .args(["-server-pid", &server.pid.to_string()])
        .args(["-label", "chat-server", "-store", "fjall"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(
            out.join("peerbench.err"),
        )?))
        .spawn()
        .context("cannot start peerbench")?;
    let sim = scenario(
        &out.join("smoke"),
        "smoke",
        &[
            "--target".into(),
            format!("http://{addr}"),
            "--jwt-secret".into(),
            SECRET.into(),
        ],
    );
    let peer = peer.wait_with_output().context("waiting for peerbench")?;
    server.close_stdin();
    let _ = server.wait_or_kill(Duration::from_secs(10));

    let sim = sim?;
    std::fs::write(out.join("peerbench.json"), &peer.stdout)?;
    if !peer.status.success() {
        bail!(
            "peerbench exited with {} (see {})",
            peer.status,
            out.join("peerbench.err").display()
        );
    }
    let text = String::from_utf8_lossy(&peer.stdout);
    let runs = crate::peer::parse_results(&text).map_err(anyhow::Error::msg)?;
    let run = runs.first().context("peerbench printed no result")?;
    let sim_lat = sim
        .delivery()
        .context("the smoke run measured no send→delivery latency")?;
    Ok(DelayFigures {
        sim_p50_ms: sim_lat.p50_ms,
        sim_own_p50_ms: sim.client_delay().map(|l| l.p50_ms),
        sim_send_late_p50_ms: sim.send_lateness().map(|l| l.p50_ms),
        peer_p50_ms: run.p50_ms.filter(|v| *v >= 0.0).unwrap_or(f64::NAN),
        sim_rate: sim.load.messages_per_sec,
        peer_rate: run.msgs_per_s.unwrap_or(f64::NAN),
    })
}
