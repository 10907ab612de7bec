//! Running the neutral load generator that runs this server and Centrifugo side by side
//! (peerbench, in the folder `--peer-bench` names): its `run.sh` for the sat, rate and
//! idle parts, and its `peerbench` binary for the latency-delay part.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::peer::{PeerRun, parse_results};

/// The peer-bench folder, and the server executable its `run.sh` starts.
pub struct PeerBench {
    pub dir: PathBuf,
    server: PathBuf,
    /// Holds the server wrapper and its standard-input pipe, removed when dropped.
    _wrapper_dir: Option<tempfile::TempDir>,
}

impl PeerBench {
    /// `chat_server`: an executable that takes `serve FLAGS…`; without one, the server
    /// runs as the simulator does it, `chat-sim serve-child FLAGS…` (the server library's
    /// `serve`, the same code path as `chat-server serve`), through a small wrapper.
    pub fn new(dir: &Path, chat_server: Option<&Path>, chat_sim: &Path) -> Result<PeerBench> {
        // cargo runs a bench in its package's folder, not where it was called from: a
        // relative path not found there is taken from the workspace root, as the README
        // gives it (`--peer-bench ../shared/peer-bench`).
        let from_root = crate::run_local::workspace().join(dir);
        let dir = if dir.is_relative() && !dir.join("run.sh").is_file() && from_root.is_dir() {
            from_root.as_path()
        } else {
            dir
        };
        let run_sh = dir.join("run.sh");
        if !run_sh.is_file() {
            bail!(
                "--peer-bench {}: no run.sh there (the folder of the neutral load generator)",
                dir.display()
            );
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("--peer-bench {}", dir.display()))?;
        if let Some(exe) = chat_server {
            if !exe.is_file() {
                bail!("--chat-server {}: no such file", exe.display());
            }
            return Ok(PeerBench {
                dir,
                server: exe.to_owned(),
                _wrapper_dir: None,
            });
        }
        let tmp = tempfile::Builder::new()
            .prefix("targets-server-")
            .tempdir()?;
        let server = write_wrapper(tmp.path(), chat_sim)?;
        Ok(PeerBench {
            dir,
            server,
            _wrapper_dir: Some(tmp),
        })
    }

    /// Runs `run.sh SERVER OUT` with `env` (REPS, CONFIGS, MODES, …) and returns the runs
    /// of `OUT/results.jsonl`. Its progress and table go to the terminal.
    pub fn run(&self, out: &Path, env: &[(&str, String)]) -> Result<Vec<PeerRun>> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("targets: {} run.sh ({})", shown.join(" "), out.display());
        let status = Command::new("bash")
            .arg(self.dir.join("run.sh"))
            .arg(&self.server)
            .arg(out)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .context("cannot start bash for run.sh")?;
        if !status.success() {
            bail!(
                "run.sh exited with {status} (its log is in {})",
                out.display()
            );
        }
        let path = out.join("results.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("run.sh wrote no {}", path.display()))?;
        let runs = parse_results(&text).map_err(anyhow::Error::msg)?;
        if runs.is_empty() {
            bail!(
                "{} holds no run (see peerbench.err beside it)",
                path.display()
            );
        }
        Ok(runs)
    }

    /// The `peerbench` binary run.sh builds into its cache, built here if missing.
    pub fn peerbench(&self) -> Result<PathBuf> {
        let cache = match std::env::var_os("PEER_CACHE") {
            Some(c) => PathBuf::from(c),
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/peerbench"),
        };
        let bin = cache.join("bin/peerbench");
        if !bin.is_file() {
            std::fs::create_dir_all(cache.join("bin"))?;
            eprintln!("targets: building peerbench into {}", bin.display());
            let status = Command::new("go")
                .args(["build", "-o"])
                .arg(&bin)
                .arg(".")
                .current_dir(&self.dir)
                .env("GOFLAGS", "-mod=mod")
                .status()
                .context("cannot run `go` to build peerbench")?;
            if !status.success() {
                bail!("building peerbench failed: {status}");
            }
        }
        Ok(bin)
    }
}

/// Writes `DIR/chat-server`: `serve FLAGS…` becomes `chat-sim serve-child FLAGS…` with
/// the same process id (peerbench samples the server's CPU and memory through it), and
/// its standard input a pipe that never closes (`serve-child` stops when its input
/// closes; a background job of a script would get /dev/null).
fn write_wrapper(dir: &Path, chat_sim: &Path) -> Result<PathBuf> {
    let fifo = dir.join("stdin");
    let status = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .context("cannot run mkfifo")?;
    if !status.success() {
        bail!("mkfifo {} failed: {status}", fifo.display());
    }
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let script = format!(
        "#!/bin/sh\n\
         # The chat server as chat-sim runs it, for run.sh: `serve` is `serve-child`.\n\
         case \"$1\" in\n\
         \x20 serve) shift; exec {sim} serve-child \"$@\" 0<>{fifo} ;;\n\
         \x20 --version) exec {sim} --version ;;\n\
         \x20 *) echo \"usage: $0 serve FLAGS...\" >&2; exit 2 ;;\n\
         esac\n",
        sim = quote(chat_sim),
        fifo = quote(&fifo),
    );
    let path = dir.join("chat-server");
    std::fs::write(&path, script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(path)
}
