//! Running this workspace's own measurements: `chat-sim run` scenarios and the server's
//! `delivery` bench (through cargo, which builds it if needed).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::figures::{DeliveryFigures, SimSummary};

/// The workspace root (scenarios/, reports/, Cargo.toml).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// The `chat-sim` binary cargo built for this bench.
pub fn chat_sim() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chat-sim"))
}

/// `chat-sim run scenarios/NAME.toml --out OUT [ARGS…]`, and its summary. A run whose
/// gates fail still has figures: its summary is read and the failure noted by the table.
pub fn scenario(out: &Path, name: &str, args: &[String]) -> Result<SimSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let file = workspace().join("scenarios").join(format!("{name}.toml"));
    eprintln!(
        "targets: chat-sim run {} {}",
        file.display(),
        args.join(" ")
    );
    let status = Command::new(chat_sim())
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .args(args)
        .status()
        .context("cannot start chat-sim")?;
    let summary = find_summary(out, name).with_context(|| {
        format!(
            "chat-sim exited with {status} and wrote no summary.json under {}",
            out.display()
        )
    })?;
    let text = std::fs::read_to_string(&summary)
        .with_context(|| format!("reading {}", summary.display()))?;
    SimSummary::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", summary.display()))
}

/// `OUT/<name>-<time>/summary.json`, the newest if several.
fn find_summary(out: &Path, name: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(out)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&format!("{name}-")))
        })
        .map(|e| e.path().join("summary.json"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().context("no run directory")
}

/// The `delivery` bench with the fjall store, per-second timeline and JSON: an open phase
/// at `rate`, or (no rate) its closed loop and then half the rate it reached.
pub fn delivery(json: &Path, rate: Option<f64>, quick: bool) -> Result<DeliveryFigures> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let (duration, warmup) = if quick { ("5", "1") } else { ("10", "2") };
    let mut cmd = Command::new(cargo);
    cmd.arg("bench")
        .arg("--manifest-path")
        .arg(workspace().join("Cargo.toml"))
        .args(["-p", "chat-server", "--bench", "delivery", "--"])
        // The neutral load generator's workload: 500 pairs, 100-byte bodies, window 4.
        .args(["--stores", "fjall", "--pairs", "500", "--timeline"])
        .args(["--duration", duration, "--warmup", warmup])
        .arg("--json")
        .arg(json);
    if let Some(r) = rate {
        cmd.args(["--rate", &format!("{r:.0}")]);
    }
    eprintln!("targets: {cmd:?}");
    let status = cmd
        .status()
        .context("cannot start cargo for the delivery bench")?;
    if !status.success() {
        bail!("the delivery bench exited with {status}");
    }
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    DeliveryFigures::parse(&text).map_err(anyhow::Error::msg)
}
