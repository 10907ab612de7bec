//! Whether the host was quiet when the measurements began. Every figure here is CPU, and
//! a process left running beside them moves them: an idle Cassandra left by the tests
//! read target 1a as 0.95× where the same binaries read 1.01× without it. So the report
//! says how much of the machine other processes used over a short window before the
//! first part, and which used most.

use std::time::Duration;

use serde::Serialize;

/// Other processes' CPU over the window, in cores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostLoad {
    pub cores: usize,
    /// The machine's busy time over the window, in cores (this program is idle then).
    pub busy_cores: f64,
    /// The processes that used most, by name, in cores, largest first.
    pub top: Vec<(String, f64)>,
}

/// Busy cores above which the report calls the host busy: a twentieth of a core.
pub const BUSY_CORES: f64 = 0.05;

/// `(busy, total)` clock ticks of the whole machine from `/proc/stat`'s `cpu` line
/// (idle and iowait are not busy).
pub fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if ticks.len() < 5 {
        return None;
    }
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks[3] + ticks[4];
    Some((total - idle, total))
}

/// `(name, user + system ticks)` of one process from its `/proc/PID/stat`. The name is
/// in parentheses and may itself hold spaces and parentheses, so the fields are counted
/// from the last `)`.
pub fn process_ticks(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state (field 3), …, utime (field 14), stime (field 15).
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// Every process's ticks now, by pid, this one left out.
fn processes() -> Vec<(u32, String, u64)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        if pid == me {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (name, ticks) = process_ticks(&stat)?;
        Some((pid, name, ticks))
    })
    .collect()
}

/// The host's load over `window`, from two readings of `/proc`; `None` where there is no
/// `/proc/stat` to read.
pub fn sample(window: Duration) -> Option<HostLoad> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let before = machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let procs = processes();
    std::thread::sleep(window);
    let after = machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let later = processes();
    let total = after.1.checked_sub(before.1).filter(|t| *t > 0)?;
    let per_core = total as f64 / cores as f64;
    let busy_cores = after.0.saturating_sub(before.0) as f64 / per_core;
    let used: Vec<(String, u64)> = later
        .into_iter()
        .filter_map(|(pid, name, ticks)| {
            let (_, _, was) = procs.iter().find(|p| p.0 == pid && p.1 == name)?;
            Some((name, ticks.checked_sub(*was)?))
        })
        .collect();
    Some(load(cores, busy_cores, used, per_core))
}

/// The load from per-process ticks: the three names that used most, each summed over its
/// processes (PostgreSQL runs several), in cores.
pub fn load(cores: usize, busy_cores: f64, used: Vec<(String, u64)>, per_core: f64) -> HostLoad {
    let mut by_name: Vec<(String, u64)> = Vec::new();
    for (name, ticks) in used.into_iter().filter(|u| u.1 > 0) {
        match by_name.iter_mut().find(|b| b.0 == name) {
            Some(b) => b.1 += ticks,
            None => by_name.push((name, ticks)),
        }
    }
    by_name.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    HostLoad {
        cores,
        busy_cores,
        top: by_name
            .into_iter()
            .take(3)
            .map(|(n, t)| (n, t as f64 / per_core))
            .collect(),
    }
}

/// The report's line on the host: a warning when it was busy, a plain statement when not.
pub fn note(h: &HostLoad) -> String {
    if h.busy_cores < BUSY_CORES {
        return format!(
            "The host was quiet before the run: {:.2} of {} cores busy.",
            h.busy_cores, h.cores
        );
    }
    let top: Vec<String> = h.top.iter().map(|(n, c)| format!("{n} {c:.2}")).collect();
    format!(
        "**The host was busy before the run**: {:.2} of {} cores in use by other processes ({}). Every figure is CPU: stop them and run again before trusting a ratio.",
        h.busy_cores,
        h.cores,
        if top.is_empty() {
            "none of them long enough to name".to_string()
        } else {
            top.join(", ")
        }
    )
}
