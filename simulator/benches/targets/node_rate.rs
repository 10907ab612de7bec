//! peerbench at the design's per-node load: the seed-node scenario's message rate on as
//! many connections as that scenario holds, against this server (fjall) and Centrifugo
//! with history, each pinned to one core.
//!
//! Targets 3 and 5 are read at that load, and both ask for figures no run here had shown
//! possible: a server whose CPU per message at a low rate stays within 2× of its saturated
//! figure, and a load generator that costs half the server it loads. This part measures
//! how close a well-known server and a minimal neutral generator come on the same machine
//! at the same load. peerbench sends, and reads `sent` and `msg`: no acks, receipts,
//! history reads, presence pulls, reconnects or checks, so its figures are a floor for
//! the simulator's workload, not the same workload.

use chat_sim::scenario::Scenario;

use crate::peer::{PeerRun, generator_reach, median_of};
use crate::verdict::{ratio, thousands};

/// peerbench's runs at one node's load, and that load.
#[derive(Debug, Clone)]
pub struct NodeRate {
    /// Messages per second in all.
    pub rate: f64,
    /// Connections, half of them senders.
    pub conns: u64,
    pub runs: Vec<PeerRun>,
}

/// What one configuration cost at that load (medians over its runs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeCosts {
    /// The server's CPU per delivered message, µs.
    pub server_us: f64,
    /// peerbench's own CPU per delivered message, µs, when it measured its own CPU.
    pub generator_us: Option<f64>,
}

impl NodeCosts {
    /// The generator's CPU per message over the server's.
    pub fn generator_ratio(&self) -> Option<f64> {
        ratio(self.generator_us?, self.server_us)
    }
}

/// The peerbench load that stands for `s`: its planned messages per second (users × each
/// user's sends per second) and its connections (users × devices per user, rounded to
/// whole pairs, at least one).
pub fn plan(s: &Scenario) -> Result<(f64, u64), String> {
    let users = s.users();
    let rate = users as f64 * s.sends_per_user_per_sec();
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!("the scenario plans no messages (rate {rate})"));
    }
    let conns = (users as f64 * s.population.devices_per_user).round() as u64;
    Ok((rate, (conns / 2).max(1) * 2))
}

impl NodeRate {
    /// `config`'s costs, when its runs measured the server's CPU.
    pub fn costs(&self, config: &str) -> Option<NodeCosts> {
        let server_us = median_of(&self.runs, config, "rate", |r| r.server_cpu_us_per_msg)?;
        Some(NodeCosts {
            server_us: server_us.value,
            generator_us: generator_reach(&self.runs, config, "rate").map(|g| g.us_per_msg),
        })
    }

    /// "463 msgs/s on 10,000 connections".
    fn load(&self) -> String {
        format!(
            "{} msgs/s on {} connections",
            thousands(self.rate),
            thousands(self.conns as f64)
        )
    }

    /// `each(costs, name)` for each configuration that measured its costs, this server's
    /// first.
    fn each(&self, each: impl Fn(NodeCosts, &str, &str) -> Option<String>) -> Vec<String> {
        [
            ("ours-fjall", "ours"),
            ("cf-history", "Centrifugo + history"),
        ]
        .into_iter()
        .filter_map(|(config, name)| each(self.costs(config)?, config, name))
        .collect()
    }

    /// For target 3: both servers' CPU per message at this load, and each against its
    /// own saturated figure when `sat_us` gives it (`config` → µs).
    pub fn server_note(&self, sat_us: impl Fn(&str) -> Option<f64>) -> Option<String> {
        let parts = self.each(|c, config, name| {
            let against = sat_us(config)
                .and_then(|sat| ratio(c.server_us, sat).map(|r| (r, sat)))
                .map_or(String::new(), |(r, sat)| {
                    format!(", {r:.1}× its saturated {sat:.0} µs")
                });
            Some(format!("{name} {:.0} µs/msg{against}", c.server_us))
        });
        (!parts.is_empty()).then(|| {
            format!(
                "; peerbench at the same load ({}; sends, `sent` and `msg` only): {}",
                self.load(),
                parts.join(", ")
            )
        })
    }

    /// For target 5: what the neutral generator costs per message at this load, against
    /// each server it loaded.
    pub fn generator_note(&self) -> Option<String> {
        let parts = self.each(|c, _, name| {
            let r = c.generator_ratio()?;
            Some(format!("{:.0} µs/msg, {r:.2}× {name}", c.generator_us?))
        });
        (!parts.is_empty()).then(|| {
            format!(
                "; peerbench, a minimal neutral generator (no acks, pulls or checks), at the same load ({}): {}",
                self.load(),
                parts.join("; ")
            )
        })
    }
}
