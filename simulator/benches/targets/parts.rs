//! The measurements the bench can run, and which of them `--only` and `--skip` choose.
//! A part is a measurement, not a target: one run feeds several targets (the fjall
//! saturation run gives target 1, the rate of target 2 and the saturated CPU of target 3).

use clap::ValueEnum;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// peerbench `sat`: ours-fjall, cf-history, ours-memory, cf-memory (targets 1, 3).
    Sat,
    /// peerbench `rate` at 11,500 msgs/s: ours-memory, cf-memory (target 2).
    Rate,
    /// peerbench `idle` up to 10,000 connections: ours-memory, ours-fjall (target 4).
    Idle,
    /// The server's `delivery` bench, open model with fjall at half its saturation, per
    /// second, and peerbench `rate` at that rate for ours-fjall and cf-history beside it
    /// (target 2).
    FjallLatency,
    /// `chat-sim run scenarios/seed-node.toml` (targets 3, 4, 5).
    SeedNode,
    /// peerbench `rate` at seed-node's message rate on as many connections: ours-fjall,
    /// cf-history (beside targets 3 and 5).
    NodeRate,
    /// `chat-sim run scenarios/smoke.toml` (target 5).
    Smoke,
    /// smoke and peerbench `rate` against one server at the same time (target 6).
    Delay,
}

impl Part {
    pub const ALL: [Part; 8] = [
        Part::Sat,
        Part::Rate,
        Part::Idle,
        Part::FjallLatency,
        Part::SeedNode,
        Part::NodeRate,
        Part::Smoke,
        Part::Delay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Sat => "sat",
            Part::Rate => "rate",
            Part::Idle => "idle",
            Part::FjallLatency => "fjall-latency",
            Part::SeedNode => "seed-node",
            Part::NodeRate => "node-rate",
            Part::Smoke => "smoke",
            Part::Delay => "delay",
        }
    }

    /// Whether the part needs the neutral load generator's folder.
    pub fn needs_peer_bench(self) -> bool {
        matches!(
            self,
            Part::Sat | Part::Rate | Part::Idle | Part::NodeRate | Part::Delay
        )
    }
}

/// The parts to run, in their running order: `only` (every part when empty) less `skip`.
/// A part named in both is an error: the request contradicts itself.
pub fn chosen(only: &[Part], skip: &[Part]) -> Result<Vec<Part>, String> {
    if let Some(p) = only.iter().find(|p| skip.contains(p)) {
        return Err(format!(
            "--only and --skip both name `{}`: choose one",
            p.name()
        ));
    }
    let parts: Vec<Part> = Part::ALL
        .into_iter()
        .filter(|p| only.is_empty() || only.contains(p))
        .filter(|p| !skip.contains(p))
        .collect();
    if parts.is_empty() {
        return Err("--skip leaves nothing to run".into());
    }
    Ok(parts)
}
