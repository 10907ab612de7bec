//! `chat-sim capacity` and `chat-sim validate`: how much one node sustains inside the
//! scenario's gates, and how well the plan's per-message and per-connection costs predict
//! a larger load.
//!
//! A capacity search raises one kind of load step by step (the scenario's `[capacity]`
//! section: users, message rate or connections; where to start, by how much, how long to
//! hold), each step a whole `chat-sim run` with every check and gate on, and stops at the
//! first step that fails; then it narrows down between the last passing and the first
//! failing step. Each failure is put down to the server or to the host (its CPU saturated
//! by the load generator, or its open-file cap), so a limit of this machine never passes
//! for the node's capacity. The highest passing step's figures become the calibration
//! `chat-estimate --calibrate capacity.json` reads.
//!
//! | file | holds |
//! |---|---|
//! | `search` | the stepping and narrowing, and the overrides that put a run at a level |
//! | `step` | one step's figures and what stopped it |
//! | `validate` | predicting a larger load from a smaller one's costs |
//! | `write` | `capacity.json`, `capacity.md`, `validation.json`, `validation.md` |
//! | `plot` | the latency and CPU curves against offered load, with the knee |

mod plot;
pub mod search;
pub mod step;
pub mod validate;
mod write;

use std::path::PathBuf;
use std::time::Instant;

use estimation::{Calibration, CapacityLimit};
use serde::Serialize;
use thiserror::Error;

use crate::clock::{unix_ms, utc_string};
use crate::report::json::PlanRow;
use crate::run::{self, RunError, RunOptions};
use crate::scenario::{Grow, Scenario, ScenarioError};

use self::search::{Base, Plan, Search, Verdict};
use self::step::{Step, StepFigures, limit_of};
use self::validate::Validation;

/// The version of `capacity.json`'s shape (`simulator/schema/capacity.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// What `chat-sim capacity` was asked.
#[derive(Debug, Clone)]
pub struct CapacityOptions {
    pub scenario: PathBuf,
    pub out_dir: PathBuf,
    pub overrides: Vec<String>,
    /// Print a line per step.
    pub progress: bool,
}

/// What `chat-sim validate` was asked.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    pub scenario: PathBuf,
    pub out_dir: PathBuf,
    pub overrides: Vec<String>,
    /// What grows between the two runs.
    pub grow: Grow,
    /// The larger run's level over the scenario's.
    pub factor: f64,
    pub progress: bool,
}

/// Why a search could not produce a report.
#[derive(Debug, Error)]
pub enum CapacityError {
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    #[error("cannot write the report in {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--factor must be a number above 1, got {0}")]
    Factor(f64),
    #[error("the {which} run produced no report: {message}")]
    Run {
        which: &'static str,
        message: String,
    },
}

/// One search's answer.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    pub grow: Grow,
    /// The levels' unit.
    pub unit: String,
    pub start: f64,
    pub step: f64,
    pub highest_passing_level: Option<f64>,
    pub lowest_failing_level: Option<f64>,
    /// The highest passing step's accepted messages/s and peak connections.
    pub messages_per_sec: Option<f64>,
    pub connections: Option<i64>,
    pub limited_by: CapacityLimit,
    /// What stopped it, in words, with the failing step's gates.
    pub limit_detail: String,
}

/// `capacity.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    pub schema_version: u32,
    pub tool: String,
    /// The scenario's name (read by `chat-estimate --calibrate`).
    pub scenario: String,
    pub scenario_file: String,
    pub overrides: Vec<String>,
    pub started_at: String,
    pub finished_at: String,
    pub wall_secs: f64,
    pub host_cpus: u64,
    pub open_files_limit: Option<u64>,
    pub max_host_cpu_percent: f64,
    pub hold_secs: u64,
    pub searches: Vec<SearchResult>,
    pub steps: Vec<Step>,
    /// Pairs of passing steps one twice the other, the larger predicted from the smaller.
    pub validations: Vec<Validation>,
    /// The highest sustained figures, in the form `chat-estimate --calibrate` reads.
    pub calibration: Calibration,
    /// The plan at the source design's scale from them (estimation crate).
    pub capacity_plan: serde_json::Value,
    pub capacity_table: Vec<PlanRow>,
    /// Every search found a passing step and the `[capacity]` minimums held.
    pub passed: bool,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

/// A finished search.
#[derive(Debug)]
pub struct CapacityOutcome {
    pub dir: PathBuf,
    pub report: CapacityReport,
}

/// A finished validation.
#[derive(Debug)]
pub struct ValidateOutcome {
    pub dir: PathBuf,
    pub validation: Validation,
}

fn level_text(grow: Grow, level: f64) -> String {
    match grow {
        Grow::Rate if level < 100.0 => format!("{level:.1}"),
        _ => format!("{level:.0}"),
    }
}

/// Runs one step: the scenario at `level`, in `dir/name`.
async fn run_step(
    opts: &StepRun<'_>,
    grow: Grow,
    level: f64,
    name: &str,
) -> Result<(Vec<String>, bool, Option<StepFigures>), CapacityError> {
    let mut overrides = opts.overrides.to_vec();
    overrides.extend(opts.base.overrides(grow, level));
    overrides.extend(opts.extra.iter().cloned());
    let result = run::run(RunOptions {
        scenario: opts.scenario.clone(),
        out_dir: opts.dir.clone(),
        target: None,
        jwt_secret: None,
        baseline: None,
        overrides,
        progress: false,
        dir_name: Some(name.to_owned()),
        dashboard: None,
    })
    .await;
    match result {
        Ok(o) => {
            let figures = StepFigures::of(&o.summary);
            Ok((o.summary.failures.clone(), o.summary.passed, Some(figures)))
        }
        Err(RunError::Scenario(e)) => Err(e.into()),
        Err(RunError::Io { path, source }) => Err(CapacityError::Io { path, source }),
        // The run broke down at this load (a worker or the server gave up): a failed
        // step, with the reason.
        Err(e) => Ok((
            vec![format!("GATE FAILED: the run broke down: {e}")],
            false,
            None,
        )),
    }
}

/// What every step of a search shares.
struct StepRun<'a> {
    scenario: &'a PathBuf,
    dir: PathBuf,
    overrides: &'a [String],
    base: Base,
    /// The capacity section's run settings.
    extra: Vec<String>,
}

/// The step's line on standard output.
fn step_line(s: &Step) -> String {
    let verdict = match (s.passed, s.limit) {
        (true, None) => "passed".to_owned(),
        (true, Some(l)) => format!("passed ({})", l.key()),
        (false, Some(l)) => format!("FAILED ({}): {}", l.key(), s.failures.join("; ")),
        (false, None) => format!("FAILED: {}", s.failures.join("; ")),
    };
    let figures = s.figures.as_ref().map_or(String::new(), |f| {
        format!(
            " → {} conns, {:.0} msg/s, p99 delivery {}, server CPU {}, load CPU {:.0} %, host {}",
            f.connections_peak,
            f.messages_per_sec,
            f.p99_send_to_delivery_ms
                .map_or("—".into(), |v| format!("{v:.1} ms")),
            f.server_cpu_percent
                .map_or("—".into(), |v| format!("{v:.0} %")),
            f.load_cpu_percent,
            f.host_cpu_percent
                .map_or("—".into(), |v| format!("{v:.0} %")),
        )
    });
    format!(
        "search {} ({}) {} {}: {} {}{figures} — {verdict}",
        s.search + 1,
        s.grow.name(),
        if s.refinement { "refine" } else { "step" },
        s.index,
        level_text(s.grow, s.level),
        s.grow.unit(),
    )
}

/// Runs the scenario's capacity searches and writes the report.
pub async fn capacity(opts: CapacityOptions) -> Result<CapacityOutcome, CapacityError> {
    let scenario = Scenario::load(&opts.scenario, &opts.overrides)?;
    let started_ms = unix_ms();
    let wall = Instant::now();
    let dir = run::stamped_dir(
        &opts.out_dir,
        &format!("capacity-{}", scenario.name),
        started_ms,
    )
    .map_err(|(path, source)| CapacityError::Io { path, source })?;
    let cap = &scenario.capacity;
    let hold = if cap.hold_secs > 0 {
        cap.hold_secs
    } else {
        scenario.run.duration_secs
    };
    let mut extra = vec![
        format!("run.duration_secs={hold}"),
        "server.capacity_run=true".to_owned(),
    ];
    if let Some(r) = cap.ramp_up_secs {
        extra.push(format!("run.ramp_up_secs={r}"));
    }
    let ctx = StepRun {
        scenario: &opts.scenario,
        dir: dir.clone(),
        overrides: &opts.overrides,
        base: Base::of(&scenario),
        extra,
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut results = Vec::new();
    for (k, search_spec) in cap.searches().iter().enumerate() {
        let grow = search_spec.grow;
        let plan = Plan::of(&scenario, search_spec);
        let mut search = Search::new(plan);
        let mut index = 0;
        while let Some((asked, refinement)) = search.next() {
            index += 1;
            let name = format!(
                "{}-{}-{index:02}-{}",
                k + 1,
                grow.name(),
                level_text(grow, asked)
            );
            let mut earlier_attempts = Vec::new();
            let (dir_name, failures, passed, figures) = loop {
                let attempt = earlier_attempts.len();
                let dir_name = if attempt == 0 {
                    name.clone()
                } else {
                    format!("{name}-retry{attempt}")
                };
                let (failures, passed, figures) = run_step(&ctx, grow, asked, &dir_name).await?;
                let capped = figures.as_ref().is_some_and(|f| f.capped);
                if passed || capped || attempt >= cap.confirm as usize {
                    break (dir_name, failures, passed, figures);
                }
                if opts.progress {
                    println!(
                        "search {} ({}) {}: {} {} failed ({}); running it again",
                        k + 1,
                        grow.name(),
                        dir_name,
                        level_text(grow, asked),
                        grow.unit(),
                        failures.join("; ")
                    );
                }
                earlier_attempts.push(step::Attempt {
                    dir: dir_name,
                    failures,
                });
            };
            let level = figures.as_ref().map_or(asked, |f| f.level(grow));
            let limit = limit_of(
                passed,
                &failures,
                figures.as_ref(),
                cap.max_host_cpu_percent,
            );
            let capped = figures.as_ref().is_some_and(|f| f.capped);
            let verdict = match (capped, passed) {
                (true, p) => Verdict::Capped { passed: p },
                (false, true) => Verdict::Passed,
                (false, false) => Verdict::Failed,
            };
            search.record(level, refinement, verdict);
            let step = Step {
                search: k,
                grow,
                index,
                refinement,
                level_asked: asked,
                level,
                dir: dir_name,
                passed,
                failures,
                limit,
                figures,
                earlier_attempts,
            };
            if opts.progress {
                println!("{}", step_line(&step));
            }
            steps.push(step);
        }
        results.push(summarize(k, grow, &plan, &search, &steps));
    }
    let report = finish(
        &scenario,
        &opts,
        started_ms,
        wall.elapsed().as_secs_f64(),
        results,
        steps,
    );
    write::capacity(&dir, &report).map_err(|source| CapacityError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(CapacityOutcome { dir, report })
}

/// The answer of search `k` from its steps.
fn summarize(k: usize, grow: Grow, plan: &Plan, search: &Search, steps: &[Step]) -> SearchResult {
    let mine = || steps.iter().filter(move |s| s.search == k);
    let best = search
        .highest_passed()
        .and_then(|l| mine().find(|s| s.passed && s.level == l));
    let failing = search
        .lowest_failed()
        .and_then(|l| mine().find(|s| !s.passed && s.level == l));
    let (limited_by, limit_detail) = match failing {
        Some(f) => {
            let limit = f.limit.unwrap_or(CapacityLimit::Server);
            let why = match limit {
                CapacityLimit::LoadGenerator => {
                    let fig = f.figures.as_ref();
                    format!(
                        "the host's CPU was saturated at {} {} ({} of all cores; the load generator {} of a core, the server {}): the server would carry more on a host of its own, so these figures are lower bounds",
                        level_text(grow, f.level),
                        grow.unit(),
                        fig.and_then(|x| x.host_cpu_percent)
                            .map_or("—".into(), |v| format!("{v:.0} %")),
                        fig.map_or("—".into(), |x| format!("{:.0} %", x.load_cpu_percent)),
                        fig.and_then(|x| x.server_cpu_percent)
                            .map_or("—".into(), |v| format!("{v:.0} %")),
                    )
                }
                _ => format!(
                    "the server failed its gates at {} {}",
                    level_text(grow, f.level),
                    grow.unit()
                ),
            };
            (limit, format!("{why}: {}", f.failures.join("; ")))
        }
        None if search.capped() => (
            CapacityLimit::OpenFiles,
            "the host's open-file cap bounded the users before any step failed: the connections are a lower bound of the node's".to_owned(),
        ),
        None => (
            CapacityLimit::SearchRange,
            format!(
                "no step failed up to {} {}: raise `max_steps` or `step` to find the limit; these figures are lower bounds",
                search.highest_passed().map_or("—".into(), |l| level_text(grow, l)),
                grow.unit()
            ),
        ),
    };
    let fig = best.and_then(|s| s.figures.as_ref());
    SearchResult {
        grow,
        unit: grow.unit().to_owned(),
        start: plan.start,
        step: plan.step,
        highest_passing_level: search.highest_passed(),
        lowest_failing_level: search.lowest_failed(),
        messages_per_sec: fig.map(|f| f.messages_per_sec),
        connections: fig.map(|f| f.connections_peak),
        limited_by,
        limit_detail,
    }
}

/// The calibration from the passing steps: the highest sustained message rate and
/// connections of any search, the memory per connection of the step with the most
/// connections, the storage of the step that stored the most.
fn calibration(results: &[SearchResult], steps: &[Step], cpus: u64) -> Calibration {
    let passing = || {
        steps
            .iter()
            .filter(|s| s.passed)
            .filter_map(|s| s.figures.as_ref().map(|f| (s, f)))
    };
    let by = |key: fn(&StepFigures) -> f64| passing().max_by(|a, b| key(a.1).total_cmp(&key(b.1)));
    let rate = by(|f| f.messages_per_sec);
    let conns = by(|f| f.connections_peak as f64);
    let stored = passing()
        .filter(|(_, f)| f.settled_bytes_per_message.is_some())
        .max_by_key(|(_, f)| f.messages_acknowledged)
        .or_else(|| by(|f| f.messages_acknowledged as f64));
    // Anything but the server's own limit in a search whose step gave a figure makes the
    // figures lower bounds.
    let limit_of_search =
        |s: Option<(&Step, &StepFigures)>| s.map(|(s, _)| results[s.search].limited_by);
    let limits = [limit_of_search(rate), limit_of_search(conns)];
    let limit = limits
        .iter()
        .flatten()
        .copied()
        .find(|l| !l.is_the_nodes())
        .or(limits.iter().flatten().copied().next());
    let positive = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0);
    Calibration {
        bytes_per_message_on_disk: positive(stored.and_then(|(_, f)| f.bytes_per_message_on_disk)),
        settled_bytes_per_message: positive(stored.and_then(|(_, f)| f.settled_bytes_per_message)),
        idempotency_bytes_per_message: stored
            .and_then(|(_, f)| f.idempotency_bytes_per_message)
            .filter(|v| v.is_finite() && *v >= 0.0),
        idempotency_window_secs: positive(stored.and_then(|(_, f)| f.idempotency_window_secs)),
        messages_per_sec_per_node: positive(rate.map(|(_, f)| f.messages_per_sec)),
        connections_per_node: conns
            .map(|(_, f)| f.connections_peak)
            .filter(|c| *c > 0)
            .map(|c| c as u64),
        memory_bytes_per_connection: positive(
            conns.and_then(|(_, f)| f.memory_bytes_per_connection),
        ),
        memory_bytes_per_node: positive(conns.and_then(|(_, f)| f.memory_bytes_per_node)),
        gates_passed: Some(rate.is_some()),
        capacity_limited_by: limit,
        node_cpus: Some(cpus.max(1)),
        cpu_us_per_message: positive(rate.and_then(|(_, f)| f.server_cpu_us_per_message)),
        ..Calibration::default()
    }
}

/// A step with the figures its run measured.
type Measured<'a> = (&'a Step, &'a StepFigures);

/// Passing pairs of one search whose larger level is twice the smaller (±5 %): the larger
/// predicted from the smaller, the highest pair of each search.
fn validations(steps: &[Step]) -> Vec<Validation> {
    let mut out = Vec::new();
    let searches: std::collections::BTreeSet<usize> = steps.iter().map(|s| s.search).collect();
    for k in searches {
        let passing: Vec<Measured<'_>> = steps
            .iter()
            .filter(|s| s.search == k && s.passed)
            .filter_map(|s| s.figures.as_ref().map(|f| (s, f)))
            .collect();
        let mut best: Option<(Measured<'_>, Measured<'_>)> = None;
        for &a in &passing {
            for &b in &passing {
                let r = b.0.level / a.0.level;
                if (1.9..=2.1).contains(&r) && best.is_none_or(|(_, bb)| b.0.level > bb.0.level) {
                    best = Some((a, b));
                }
            }
        }
        if let Some(((sa, fa), (sb, fb))) = best {
            out.push(validate::validate(fa, &sa.dir, fb, &sb.dir));
        }
    }
    out
}

fn finish(
    scenario: &Scenario,
    opts: &CapacityOptions,
    started_ms: u64,
    wall_secs: f64,
    searches: Vec<SearchResult>,
    steps: Vec<Step>,
) -> CapacityReport {
    let cpus = crate::report::num_cpus();
    let calibration = calibration(&searches, &steps, cpus);
    let mut failures = Vec::new();
    for s in &searches {
        if s.highest_passing_level.is_none() {
            failures.push(format!(
                "CAPACITY FAILED: the {} search found no step inside the gates: {}",
                s.grow.name(),
                s.limit_detail
            ));
        }
    }
    let cap = &scenario.capacity;
    if let Some(min) = cap.min_messages_per_sec {
        let got = calibration.messages_per_sec_per_node.unwrap_or(0.0);
        if got < min {
            failures.push(format!(
                "CAPACITY FAILED: min_messages_per_sec: sustained {got:.1} messages/s, below {min}"
            ));
        }
    }
    if let Some(min) = cap.min_connections {
        let got = calibration.connections_per_node.unwrap_or(0);
        if got < min {
            failures.push(format!(
                "CAPACITY FAILED: min_connections: sustained {got} connections, below {min}"
            ));
        }
    }
    let mut notes = vec![format!(
        "each step is a whole `chat-sim run` of `{}` with every check and gate on, a fresh server and store each time; the load generator ran on the same {cpus}-CPU host as the server",
        scenario.name
    )];
    for s in &searches {
        notes.push(format!("{} search: {}", s.grow.name(), s.limit_detail));
    }
    let est = estimation::Summary {
        scenario: Some(scenario.name.clone()),
        calibration: calibration.clone(),
    };
    let (capacity_plan, capacity_table) =
        match estimation::calibrate(&estimation::Inputs::source_design(), &est) {
            Ok(plan) => (
                serde_json::to_value(&plan).unwrap_or_default(),
                crate::report::plan_rows(&plan),
            ),
            Err(e) => {
                notes.push(format!("no capacity plan: {e}"));
                (serde_json::Value::Null, Vec::new())
            }
        };
    CapacityReport {
        schema_version: SCHEMA_VERSION,
        tool: format!("chat-sim {}", env!("CARGO_PKG_VERSION")),
        scenario: scenario.name.clone(),
        scenario_file: opts.scenario.display().to_string(),
        overrides: opts.overrides.clone(),
        started_at: utc_string(started_ms),
        finished_at: utc_string(unix_ms()),
        wall_secs,
        host_cpus: cpus,
        open_files_limit: crate::child::open_files_limit(None),
        max_host_cpu_percent: cap.max_host_cpu_percent,
        hold_secs: if cap.hold_secs > 0 {
            cap.hold_secs
        } else {
            scenario.run.duration_secs
        },
        validations: validations(&steps),
        searches,
        steps,
        calibration,
        capacity_plan,
        capacity_table,
        passed: failures.is_empty(),
        failures,
        notes,
    }
}

/// Runs the scenario at its own level and at `factor` times it, predicts the second from
/// the first, and writes `validation.json` and `validation.md`.
pub async fn validate_plan(opts: ValidateOptions) -> Result<ValidateOutcome, CapacityError> {
    if !(opts.factor.is_finite() && opts.factor > 1.0) {
        return Err(CapacityError::Factor(opts.factor));
    }
    let scenario = Scenario::load(&opts.scenario, &opts.overrides)?;
    let dir = run::stamped_dir(
        &opts.out_dir,
        &format!("validate-{}", scenario.name),
        unix_ms(),
    )
    .map_err(|(path, source)| CapacityError::Io { path, source })?;
    let base = Base::of(&scenario);
    let ctx = StepRun {
        scenario: &opts.scenario,
        dir: dir.clone(),
        overrides: &opts.overrides,
        base,
        extra: Vec::new(),
    };
    let own = base.level(opts.grow);
    let mut runs = Vec::new();
    for (which, level) in [("base", own), ("larger", own * opts.factor)] {
        let (failures, passed, figures) = run_step(&ctx, opts.grow, level, which).await?;
        let figures = figures.ok_or_else(|| CapacityError::Run {
            which,
            message: failures.join("; "),
        })?;
        if opts.progress {
            println!(
                "{which}: {} {} → {:.0} msg/s, {} conns, server CPU {}, {}",
                level_text(opts.grow, figures.level(opts.grow)),
                opts.grow.unit(),
                figures.messages_per_sec,
                figures.connections_peak,
                figures
                    .server_cpu_percent
                    .map_or("—".into(), |v| format!("{v:.0} %")),
                if passed { "passed" } else { "FAILED its gates" }
            );
        }
        runs.push((figures, passed));
    }
    let validation = validate::validate(&runs[0].0, "base", &runs[1].0, "larger");
    write::validation(&dir, &scenario.name, &validation, [runs[0].1, runs[1].1]).map_err(
        |source| CapacityError::Io {
            path: dir.clone(),
            source,
        },
    )?;
    Ok(ValidateOutcome { dir, validation })
}
