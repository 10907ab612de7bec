//! The cluster's helper processes: a `nats-server` the nodes join (killed and started
//! again on the same port for a `nats_outage`), and HAProxy in front of the nodes with
//! the shipped `deploy/haproxy/haproxy.cfg`, rewritten for this run's ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ClusterError;

/// The shipped load-balancer configuration; a run rewrites its `bind` and `server` lines.
const HAPROXY_CFG: &str = include_str!("../../../deploy/haproxy/haproxy.cfg");

/// A free loopback port (bound and released: the process that takes it binds it again).
pub fn free_port() -> Result<u16, ClusterError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ClusterError::Start(format!("no free port: {e}")))
}

/// Waits until something listens on `port`, or `child` exits, or `limit` passes.
fn wait_listening(
    what: &str,
    port: u16,
    child: &mut Child,
    limit: Duration,
    log: &Path,
) -> Result<(), ClusterError> {
    let deadline = Instant::now() + limit;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(ClusterError::Start(format!(
                "{what} exited ({status}) before listening on {port}; its log:\n{}",
                text.trim()
            )));
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::Start(format!(
                "{what} does not listen on {port} after {} s (see {})",
                limit.as_secs(),
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped.
struct Owned(Option<Child>);

impl Owned {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(program: &str, args: &[&str], log: &Path) -> Result<Child, ClusterError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| ClusterError::Start(format!("cannot write {}: {e}", log.display())))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(out));
    // Its own process group, like the nodes: ctrl-c reaches the simulator only.
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn().map_err(|e| {
        ClusterError::Start(format!(
            "cannot run {program} ({e}); install it with scripts/cluster.sh install (apt-get install nats-server haproxy)"
        ))
    })
}

/// The NATS server of a run.
pub struct Nats {
    child: Owned,
    pub port: u16,
    log: PathBuf,
}

impl Nats {
    /// Starts `nats-server` on a free loopback port; its log goes to `log`.
    pub fn start(log: &Path) -> Result<Nats, ClusterError> {
        let mut nats = Nats {
            child: Owned(None),
            port: free_port()?,
            log: log.to_owned(),
        };
        nats.spawn()?;
        Ok(nats)
    }

    fn spawn(&mut self) -> Result<(), ClusterError> {
        let port = self.port.to_string();
        let mut child = spawn("nats-server", &["-a", "127.0.0.1", "-p", &port], &self.log)?;
        wait_listening(
            "nats-server",
            self.port,
            &mut child,
            Duration::from_secs(10),
            &self.log,
        )?;
        self.child = Owned(Some(child));
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server: the start of an outage.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.child.kill();
        self.spawn()
    }
}

/// HAProxy in front of the nodes.
pub struct Haproxy {
    _child: Owned,
    pub port: u16,
}

/// The shipped configuration with this run's listening port and one `server` line per
/// node (`(name, port)`).
pub fn haproxy_config(port: u16, nodes: &[(String, u16)]) -> String {
    let mut out = String::new();
    for line in HAPROXY_CFG.lines() {
        let t = line.trim_start();
        if t.starts_with("server ") {
            continue;
        }
        if t.starts_with("bind ") {
            out.push_str(&format!("    bind 127.0.0.1:{port}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if t == "# servers" {
            for (name, p) in nodes {
                out.push_str(&format!("    server {name} 127.0.0.1:{p}\n"));
            }
        }
    }
    out
}

impl Haproxy {
    /// Writes the configuration into `dir` and starts HAProxy in the foreground.
    pub fn start(dir: &Path, nodes: &[(String, u16)]) -> Result<Haproxy, ClusterError> {
        let port = free_port()?;
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(port, nodes))
            .map_err(|e| ClusterError::Start(format!("cannot write {}: {e}", cfg.display())))?;
        let log = dir.join("haproxy.log");
        let cfg_s = cfg.display().to_string();
        let mut child = spawn("haproxy", &["-db", "-f", &cfg_s], &log)?;
        wait_listening("haproxy", port, &mut child, Duration::from_secs(10), &log)?;
        Ok(Haproxy {
            _child: Owned(Some(child)),
            port,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_gets_this_runs_ports() {
        let cfg = haproxy_config(7000, &[("n1".into(), 7001), ("n2".into(), 7002)]);
        assert!(cfg.contains("    bind 127.0.0.1:7000\n"), "{cfg}");
        assert!(cfg.contains("    server n1 127.0.0.1:7001\n"));
        assert!(cfg.contains("    server n2 127.0.0.1:7002\n"));
        assert!(!cfg.contains("server n3"), "the shipped servers are gone");
        assert!(!cfg.contains("bind 127.0.0.1:8080"));
        assert!(cfg.contains("hash-type consistent"));
    }
}
