//! The neutral load generator's results: `results.jsonl`, one JSON object per run as
//! peerbench prints it, and the medians over repetitions the targets compare.

use serde::Deserialize;

/// One peerbench run (the fields the targets read; the rest is ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct PeerRun {
    pub label: String,
    pub store: String,
    pub mode: String,
    /// Which repetition of run.sh's loop (1, 2, …): the configurations of one repetition
    /// run back to back.
    #[serde(default)]
    pub rep: Option<u32>,
    pub msgs_per_s: Option<f64>,
    pub server_cpu_us_per_msg: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The server's CPU over the window, in cores (its process, pinned to one core).
    #[serde(default)]
    pub server_cpu_util: Option<f64>,
    pub loadgen_cpu_util: Option<f64>,
    #[serde(default)]
    pub lost: u64,
    #[serde(default)]
    pub order_violations: u64,
    #[serde(default)]
    pub errors: u64,
    /// `idle`: RSS per connection at each connection count (null in the other modes).
    #[serde(default)]
    pub steps: Option<Vec<IdleStep>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdleStep {
    pub conns: u64,
    /// (RSS now − RSS before any connection) / connections, in KiB (/proc's kB).
    pub rss_per_conn_kb: f64,
}

impl PeerRun {
    /// run.sh's configuration name: `ours-memory`, `ours-fjall`, `cf-memory`, `cf-history`.
    pub fn config(&self) -> Option<&'static str> {
        let ours = self.label == "chat-server";
        let cf = self.label.starts_with("centrifugo");
        match self.store.as_str() {
            "memory" if ours => Some("ours-memory"),
            "fjall" if ours => Some("ours-fjall"),
            "memory engine" if cf => Some("cf-memory"),
            "memory engine + history" if cf => Some("cf-history"),
            _ => None,
        }
    }
}

/// Parses `results.jsonl`. Blank lines are skipped; any other line that is not a run is
/// an error naming its line, since a figure silently dropped would change a median.
pub fn parse_results(text: &str) -> Result<Vec<PeerRun>, String> {
    let mut runs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let run: PeerRun =
            serde_json::from_str(line).map_err(|e| format!("results line {}: {e}", i + 1))?;
        runs.push(run);
    }
    Ok(runs)
}

/// A figure peerbench measured: it writes -1 where it had nothing to measure.
fn measured(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

/// The median of a list, `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// A median over the runs of one configuration and mode, with how many runs it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Med {
    pub value: f64,
    pub runs: usize,
}

/// The runs of `config` in `mode`, in the order peerbench wrote them.
fn runs_of<'a>(
    runs: &'a [PeerRun],
    config: &'a str,
    mode: &'a str,
) -> impl Iterator<Item = &'a PeerRun> {
    runs.iter()
        .filter(move |r| r.config() == Some(config) && r.mode == mode)
}

/// The median of `field` over the runs of `config` in `mode` that measured it.
pub fn median_of(
    runs: &[PeerRun],
    config: &str,
    mode: &str,
    field: impl Fn(&PeerRun) -> Option<f64>,
) -> Option<Med> {
    let v: Vec<f64> = runs_of(runs, config, mode)
        .filter_map(|r| measured(field(r)))
        .collect();
    median(&v).map(|value| Med {
        value,
        runs: v.len(),
    })
}

/// `ours` ÷ `theirs` of `field` in each repetition that measured both in `mode`, in the
/// order of `ours`' runs (run.sh's repetition order). run.sh runs the configurations of
/// one repetition back to back, so a pair shares the host's state of those minutes; the
/// spread of these ratios is how far one run of the comparison can be trusted, which the
/// ratio of the medians hides.
pub fn rep_ratios(
    runs: &[PeerRun],
    ours: &str,
    theirs: &str,
    mode: &str,
    field: impl Fn(&PeerRun) -> Option<f64>,
) -> Vec<f64> {
    runs_of(runs, ours, mode)
        .filter_map(|a| {
            let rep = a.rep?;
            let b = runs_of(runs, theirs, mode).find(|b| b.rep == Some(rep))?;
            let (a, b) = (measured(field(a))?, measured(field(b))?);
            (b > 0.0).then(|| a / b)
        })
        .collect()
}

/// How far the load generator could have driven `config` in `mode`: its core's share
/// in use and its CPU per delivered message (medians over the runs that measured both
/// the rate and the generator's CPU).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeneratorReach {
    /// The generator's CPU over the window, in cores (it is pinned to one).
    pub util: f64,
    pub us_per_msg: f64,
}

impl GeneratorReach {
    /// Delivered msgs/s at which the generator alone would use its whole core.
    pub fn ceiling(&self) -> f64 {
        1e6 / self.us_per_msg
    }
}

/// The generator's reach over `config`'s runs in `mode`; `None` without a run that
/// measured a rate and a positive generator CPU.
pub fn generator_reach(runs: &[PeerRun], config: &str, mode: &str) -> Option<GeneratorReach> {
    let pairs: Vec<(f64, f64)> = runs_of(runs, config, mode)
        .filter_map(|r| {
            let rate = measured(r.msgs_per_s).filter(|x| *x > 0.0)?;
            let util = measured(r.loadgen_cpu_util).filter(|x| *x > 0.0)?;
            Some((rate, util))
        })
        .collect();
    let util = median(&pairs.iter().map(|p| p.1).collect::<Vec<_>>())?;
    let us_per_msg = median(&pairs.iter().map(|p| p.1 / p.0 * 1e6).collect::<Vec<_>>())?;
    Some(GeneratorReach { util, us_per_msg })
}

/// The median RSS per connection (KiB) of `config`'s idle runs at `conns` connections.
pub fn idle_median(runs: &[PeerRun], config: &str, conns: u64) -> Option<Med> {
    let v: Vec<f64> = runs_of(runs, config, "idle")
        .flat_map(|r| r.steps.iter().flatten())
        .filter(|s| s.conns == conns)
        .map(|s| s.rss_per_conn_kb)
        .collect();
    median(&v).map(|value| Med {
        value,
        runs: v.len(),
    })
}

/// Lost, reordered and refused messages summed over a configuration's runs in a mode, as
/// a note for the table (empty when all are zero).
pub fn faults_note(runs: &[PeerRun], config: &str, mode: &str) -> String {
    faults(runs, config, mode).map_or(String::new(), |f| format!("; {f}"))
}

/// Lost, reordered and refused messages summed over a configuration's runs in a mode,
/// `None` when all are zero.
pub fn faults(runs: &[PeerRun], config: &str, mode: &str) -> Option<String> {
    let (mut lost, mut order, mut errors) = (0, 0, 0);
    for r in runs_of(runs, config, mode) {
        lost += r.lost;
        order += r.order_violations;
        errors += r.errors;
    }
    (lost + order + errors > 0)
        .then(|| format!("{config}: {lost} lost, {order} out of order, {errors} refused"))
}
