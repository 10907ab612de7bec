//! The live dashboard in a real headless Chromium (chromedriver, `fantoccini`): opened
//! during a short run, its figures and charts follow the samples; and a run without
//! `--dashboard` listens on no port. Without chromium and chromedriver the browser test
//! is skipped, except under `CI=true`, where that is a failure. With
//! `UPDATE_SCREENSHOTS=1` it writes `docs/screenshots/dashboard.png`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::ClientBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::support::tiny_scenario;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PATIENCE: Duration = Duration::from_secs(30);

/// A child process in its own process group, ended with everything it started when
/// dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `chat-sim run` of the tiny scenario made long enough to watch (12 s of load, a sample
/// a second) with `more` flags, standard error piped.
fn start_run(dir: &Path, more: &[&str]) -> Child {
    let scenario = tiny_scenario(dir, "");
    let text = std::fs::read_to_string(&scenario)
        .unwrap()
        .replace("duration_secs = 4", "duration_secs = 12");
    std::fs::write(&scenario, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_chat-sim"))
        .process_group(0)
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--quiet")
        .args(more)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chat-sim runs")
}

/// Inodes of the TCP sockets listening on this host.
fn listening_inodes() -> HashSet<String> {
    let mut out = HashSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; the inode is the tenth column.
            if cols.get(3) == Some(&"0A")
                && let Some(inode) = cols.get(9)
            {
                out.insert((*inode).to_owned());
            }
        }
    }
    out
}

/// How many listening sockets process `pid` holds.
fn listening_sockets_of(pid: u32) -> usize {
    let listening = listening_inodes();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .filter(|inode| listening.contains(inode))
        .count()
}

/// Waits until the run has connected its devices (its sampling has begun).
fn wait_for_load(pid: u32) {
    // The run's own sockets to its server show it is under way.
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        let n = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        });
        if n >= 10 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the run never connected its devices");
}

#[test]
fn a_run_without_dashboard_listens_on_no_port() {
    let dir = tempfile::tempdir().unwrap();
    let run = Group(start_run(dir.path(), &[]));
    let pid = run.0.id();
    wait_for_load(pid);
    for _ in 0..10 {
        assert_eq!(
            listening_sockets_of(pid),
            0,
            "chat-sim run without --dashboard listens"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(run);
}

/// Skips (a failure under `CI=true`) when the browser is not installed.
fn browser_missing() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|b| !Path::new(b).exists())
        .collect();
    if missing.is_empty() {
        return false;
    }
    let why = format!(
        "dashboard browser test skipped: missing {} (apt-get install -y chromium chromium-driver)",
        missing.join(", ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why}, and CI=true"
    );
    eprintln!("{why}");
    true
}

/// What the page shows, read from its DOM.
const SNAPSHOT: &str = r#"
const t = (id) => document.getElementById(id).textContent;
return {
  samples: Number(document.body.dataset.samples || 0),
  title: document.getElementById('title').textContent,
  elapsed: t('f-t'), connected: t('f-conn'), offered: t('f-offered'), sent: t('f-sent'),
  delivered: t('f-delivered'), p99: t('f-p99'), errors: t('f-errors'), rss: t('f-rss'),
  rate_paths: document.querySelectorAll('#c-rate path').length,
  lat_paths: document.querySelectorAll('#c-lat path').length,
  checks: [...document.querySelectorAll('#checks tr.row')].map((r) => [r.dataset.check, r.children[1].textContent]),
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_running_scenario() {
    if browser_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut run = Group(start_run(dir.path(), &["--dashboard", "127.0.0.1:0"]));
    let pid = run.0.id();
    // The address is the first line on standard error; the rest is drained.
    let stderr = run.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("dashboard: ") {
                let _ = tx.send(url.to_owned());
                break;
            }
        }
        for _ in lines {}
    });
    let url = rx.recv_timeout(PATIENCE).expect("the dashboard's address");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(listening_sockets_of(pid) >= 1, "the dashboard listens");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Its own process group, which the browser joins: the guard ends both, even when the
    // test fails before closing the page.
    let driver = Group(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < PATIENCE, "chromedriver never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox",
               "--disable-dev-shm-usage", "--disable-gpu", "--disable-crash-reporter",
               "--disable-breakpad", "--window-size=1100,2700"]}),
    );
    let page = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session");
    page.goto(&url).await.expect("open the dashboard");

    let shown = || async { page.execute(SNAPSHOT, vec![]).await.expect("read the page") };
    let wait = |what: &'static str, ok: fn(&Value) -> bool| {
        let shown = &shown;
        async move {
            let start = Instant::now();
            loop {
                let s = shown().await;
                if ok(&s) {
                    return s;
                }
                assert!(
                    start.elapsed() < PATIENCE,
                    "the dashboard never showed {what}: {s:#}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let first = wait("messages flowing", |s| {
        s["samples"].as_u64().unwrap_or(0) >= 2
            && s["delivered"]
                .as_str()
                .and_then(|d| d.parse::<f64>().ok())
                .unwrap_or(0.0)
                > 0.0
    })
    .await;
    assert_eq!(first["title"], "chat-sim: tiny, live", "{first:#}");
    assert_eq!(first["connected"], "14 / 14", "{first:#}");
    // The numbers move with the samples.
    let n = first["samples"].as_u64().unwrap();
    let later = wait("three more samples", |s| {
        s["samples"].as_u64().unwrap_or(0) >= 6
    })
    .await;
    assert!(later["samples"].as_u64().unwrap() > n);
    assert_ne!(later["elapsed"], first["elapsed"], "{later:#}");
    assert!(later["p99"].as_str().unwrap().ends_with(" ms"), "{later:#}");
    assert!(
        later["rss"].as_str().unwrap().ends_with(" MiB"),
        "{later:#}"
    );
    assert_eq!(
        later["rate_paths"], 3,
        "offered, sent, delivered: {later:#}"
    );
    assert_eq!(later["lat_paths"], 3, "p50, p90, p99: {later:#}");
    let checks = later["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 5, "{later:#}");
    assert!(checks.iter().all(|c| c[1] == "0"), "{later:#}");
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let png = page.screenshot().await.expect("a screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dashboard.png"), png).unwrap();
    }
    let _ = page.close().await;
    drop(driver);
    let status = run.0.wait().expect("the run ends");
    assert!(status.success(), "the run failed: {status:?}");
}
