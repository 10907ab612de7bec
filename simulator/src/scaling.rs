//! `chat-sim scale`: the same per-node load on 1, 2, 3 … nodes, so the capacity plan uses
//! a measured scaling efficiency instead of assuming nodes add up linearly.
//!
//! Each step is a normal cluster run (its own directory, report and gates) with
//! `cluster.nodes = k` and k times the scenario's users, so every node is offered what one
//! node is offered alone. The steps go one after another. What is compared is what a node
//! costs and carries: acknowledged messages/s per node, and the CPU all nodes spend per
//! message. The scaling efficiency at k nodes is the CPU per message on one node over the
//! CPU per message on k (1 = each added node carries as much as the first; relaying
//! across nodes and replicating presence make it lower). The capacity plan is then
//! computed from the largest step's per-node figures with that efficiency noted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock::unix_ms;
use crate::report::json::{PlanRow, Summary};
use crate::report::md::{Block, plan_blocks, render_blocks};
use crate::run::{self, RunOptions};
use crate::scenario::{Scenario, ScenarioError};

/// What `chat-sim scale` was asked.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub scenario: PathBuf,
    /// Node counts, ascending; the first is the reference (usually 1).
    pub nodes: Vec<u32>,
    pub out_dir: PathBuf,
    pub overrides: Vec<String>,
    pub progress: bool,
}

#[derive(Debug, Error)]
pub enum ScaleError {
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    #[error("--nodes must list node counts from 1 to 16 in ascending order, got {0:?}")]
    Nodes(Vec<u32>),
    #[error("{0}")]
    Run(#[from] run::RunError),
    #[error("cannot write the scaling report in {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One step: k nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub nodes: u32,
    pub users: u64,
    pub run_dir: String,
    pub passed: bool,
    pub messages_per_sec: f64,
    pub messages_per_sec_per_node: f64,
    /// Acknowledged over intended sends: whether the cluster kept up.
    pub sent_ratio: Option<f64>,
    pub connections_per_node: f64,
    /// CPU of every node per acknowledged message, µs.
    pub cpu_us_per_message: Option<f64>,
    pub p99_send_to_delivery_ms: Option<f64>,
    pub cross_node_share: Option<f64>,
    /// Per-node throughput over the first step's.
    pub throughput_efficiency: Option<f64>,
    /// The first step's CPU per message over this one's.
    pub cpu_efficiency: Option<f64>,
}

/// `scaling.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Scaling {
    pub scenario: String,
    pub steps: Vec<Step>,
    /// The largest step's CPU efficiency: what the plan uses.
    pub scaling_efficiency: Option<f64>,
    pub capacity_plan: serde_json::Value,
    pub capacity_table: Vec<PlanRow>,
}

/// What a scaling run produced.
pub struct ScaleOutcome {
    pub dir: PathBuf,
    pub scaling: Scaling,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// The figures of one finished step.
fn step_of(nodes: u32, users: u64, dir: &Path, s: &Summary) -> Step {
    let c = s.cluster.as_ref();
    Step {
        nodes,
        users,
        run_dir: dir.display().to_string(),
        passed: s.passed,
        messages_per_sec: s.load.messages_per_sec,
        messages_per_sec_per_node: s.load.messages_per_sec / f64::from(nodes.max(1)),
        sent_ratio: s.load.sent_ratio,
        connections_per_node: s.load.connections_peak.max(0) as f64 / f64::from(nodes.max(1)),
        cpu_us_per_message: c
            .and_then(|c| c.cpu_us_per_message)
            .or_else(|| s.server.as_ref().and_then(|x| x.cpu_us_per_message)),
        p99_send_to_delivery_ms: s
            .latency_ms
            .get("send_to_delivery")
            .and_then(|l| l.as_ref())
            .map(|l| l.p99_ms),
        cross_node_share: c.and_then(|c| c.cross_node_share),
        throughput_efficiency: None,
        cpu_efficiency: None,
    }
}

/// Runs the steps and writes `scaling.json` and `scaling.md`.
pub async fn scale(o: ScaleOptions) -> Result<ScaleOutcome, ScaleError> {
    if o.nodes.is_empty()
        || o.nodes.windows(2).any(|w| w[0] >= w[1])
        || o.nodes.iter().any(|&n| !(1..=16).contains(&n))
    {
        return Err(ScaleError::Nodes(o.nodes.clone()));
    }
    let base = Scenario::load(&o.scenario, &o.overrides)?;
    let dir = run::stamped_dir(&o.out_dir, &format!("scaling-{}", base.name), unix_ms())
        .map_err(|(path, source)| ScaleError::Io { path, source })?;
    let mut steps: Vec<Step> = Vec::new();
    let mut last: Option<Summary> = None;
    for &k in &o.nodes {
        let mut overrides = o.overrides.clone();
        overrides.push(format!("cluster.nodes={k}"));
        overrides.push(format!(
            "population.scale={}",
            base.population.scale * f64::from(k)
        ));
        let outcome = run::run(RunOptions {
            scenario: o.scenario.clone(),
            out_dir: dir.clone(),
            target: None,
            jwt_secret: None,
            baseline: None,
            overrides,
            progress: o.progress,
            dir_name: Some(format!("nodes-{k}")),
            dashboard: None,
        })
        .await?;
        let users = outcome.summary.scale.users_simulated;
        steps.push(step_of(k, users, &outcome.dir, &outcome.summary));
        last = Some(outcome.summary);
    }
    let first = steps[0].clone();
    for s in &mut steps {
        s.throughput_efficiency = ratio(
            Some(s.messages_per_sec_per_node),
            Some(first.messages_per_sec_per_node),
        );
        s.cpu_efficiency = ratio(first.cpu_us_per_message, s.cpu_us_per_message);
    }
    let scaling_efficiency = steps.last().and_then(|s| s.cpu_efficiency);
    let (capacity_plan, capacity_table) = match &last {
        Some(summary) => {
            let mut cal = summary.calibration.clone();
            cal.scaling_efficiency = scaling_efficiency;
            let est = estimation::Summary {
                scenario: Some(base.name.clone()),
                calibration: cal,
            };
            match estimation::calibrate(&estimation::Inputs::source_design(), &est) {
                Ok(plan) => (
                    serde_json::to_value(&plan).unwrap_or_default(),
                    crate::report::plan_rows(&plan),
                ),
                Err(_) => (serde_json::Value::Null, Vec::new()),
            }
        }
        None => (serde_json::Value::Null, Vec::new()),
    };
    let scaling = Scaling {
        scenario: base.name.clone(),
        steps,
        scaling_efficiency,
        capacity_plan,
        capacity_table,
    };
    write(&dir, &scaling).map_err(|source| ScaleError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(ScaleOutcome { dir, scaling })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

fn write(dir: &Path, s: &Scaling) -> std::io::Result<()> {
    let json = serde_json::to_string_pretty(s).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("scaling.json"), json + "\n")?;
    let mut d = vec![
        Block::Title(format!("Scaling `{}`: 1 → {} nodes", s.scenario, s.steps.last().map_or(0, |x| x.nodes))),
        Block::Para(
            "The same load per node on each node count (k nodes get k times the users). Efficiency: per-node throughput over one node's, and one node's CPU per message over k nodes' (1 = linear). The nodes share this host's CPUs with each other, the store and the load generator.".into(),
        ),
        Block::Table {
            head: [
                "nodes",
                "users",
                "passed",
                "messages/s",
                "per node",
                "sent ratio",
                "connections per node",
                "CPU µs/message",
                "p99 delivery ms",
                "cross-node share",
                "throughput efficiency",
                "CPU efficiency",
            ]
            .map(String::from)
            .to_vec(),
            rows: s
                .steps
                .iter()
                .map(|x| {
                    vec![
                        x.nodes.to_string(),
                        x.users.to_string(),
                        if x.passed { "yes" } else { "no" }.into(),
                        format!("{:.0}", x.messages_per_sec),
                        format!("{:.0}", x.messages_per_sec_per_node),
                        opt(x.sent_ratio, 3),
                        format!("{:.0}", x.connections_per_node),
                        opt(x.cpu_us_per_message, 0),
                        opt(x.p99_send_to_delivery_ms, 1),
                        opt(x.cross_node_share.map(|v| v * 100.0), 1) + " %",
                        opt(x.throughput_efficiency, 2),
                        opt(x.cpu_efficiency, 2),
                    ]
                })
                .collect(),
        },
        Block::Heading("Capacity plan from the largest step".into()),
    ];
    plan_blocks(&mut d, &s.capacity_table, &s.capacity_plan, "measured");
    std::fs::write(dir.join("scaling.md"), render_blocks(d))
}
