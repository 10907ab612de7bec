//! Each simulated user's schedule, kept in its Goose session: when its next send, history
//! read, presence pull, disconnect and reconnect storm are due (independent Poisson
//! processes from the user's own seed, so a run replays), and who a send goes to.
//! The Goose transactions in [`user`](super::user) only act on what is due here.

use std::sync::Arc;

use super::schedule::Poisson;
use super::shard::ShardCtx;
use crate::checks::Conv;
use crate::rng::{Rng, Zipf};

/// Per-user schedule state, kept in Goose's session data.
pub(super) struct Session {
    pub(super) u: u32,
    pub(super) rng: Rng,
    /// Independent sends after the crossing pairs start (rate × (1 − crossing share)).
    pub(super) own: Poisson,
    /// Independent sends standing in for the crossing share until the pairs start.
    pub(super) early: Poisson,
    /// When crossing pairs start: every user has started by then.
    pub(super) pair_start: f64,
    pub(super) pair: Option<Poisson>,
    pub(super) history: Vec<Poisson>,
    pub(super) presence: Poisson,
    pub(super) disconnect: Vec<Poisson>,
    pub(super) reconnect_at: Vec<Option<f64>>,
    /// Per device, storms still to come: (drop at, back at).
    pub(super) storms: Vec<Vec<(f64, f64)>>,
    pub(super) contacts: Zipf,
    pub(super) groups: Zipf,
    /// The intended time of the send the pacer last woke this user for, until that send
    /// is made: its lateness is the simulator's own ([`Latency::SendLateness`]).
    ///
    /// [`Latency::SendLateness`]: crate::metrics::Latency::SendLateness
    pub(super) paced_send: Option<f64>,
}

pub(super) type SessionRef = Arc<tokio::sync::Mutex<Session>>;

impl Session {
    pub(super) fn new(ctx: &ShardCtx, u: u32, now: f64) -> Session {
        let s = &ctx.setup.scenario;
        let seed = s.run.seed;
        let shard = u64::from(ctx.setup.shard);
        let gid = ctx.user(u).id;
        let rate = s.sends_per_user_per_sec();
        let c = s.contacts.crossing_share;
        let load_start = ctx.records.load_start_secs();
        let pair_start = load_start + s.run.ramp_up_secs as f64;
        let pair = ctx.setup.graph.partner[u as usize].map(|p| {
            let lo = u.min(p);
            let mut sched = Poisson::new(
                rate * c,
                pair_start,
                Rng::derive(seed, &[0x7061_6972, shard, u64::from(lo)]),
            );
            sched.skip_before(now);
            sched
        });
        let (own_rate, early_rate) = if pair.is_some() {
            (rate * (1.0 - c), rate * c)
        } else {
            (rate, 0.0)
        };
        let user = ctx.user(u);
        let kinds = &s.population.device_kinds;
        let history = user
            .devices
            .iter()
            .enumerate()
            .map(|(d, dev)| {
                Poisson::new(
                    s.per_sec(kinds[dev.kind].history_reads_per_day),
                    now,
                    Rng::derive(seed, &[0x6869_7374, gid, d as u64]),
                )
            })
            .collect();
        let disconnect = (0..user.devices.len())
            .map(|d| {
                Poisson::new(
                    s.per_sec(s.churn.disconnects_per_device_per_day),
                    now,
                    Rng::derive(seed, &[0x6368_726e, gid, d as u64]),
                )
            })
            .collect();
        let storms = (0..user.devices.len())
            .map(|d| {
                s.churn
                    .storms
                    .iter()
                    .enumerate()
                    .filter_map(|(i, st)| {
                        let mut r = Rng::derive(seed, &[0x7374_726d, i as u64, gid, d as u64]);
                        let at = load_start + st.at_secs;
                        (r.chance(st.share) && at >= now).then_some((at, at + st.offline_secs))
                    })
                    .collect()
            })
            .collect();
        Session {
            u,
            rng: Rng::derive(seed, &[0x7573_6572, gid]),
            own: Poisson::new(own_rate, now, Rng::derive(seed, &[0x6f77_6e73, gid])),
            early: Poisson::new(early_rate, now, Rng::derive(seed, &[0x6561_726c, gid])),
            pair_start,
            pair,
            history,
            presence: Poisson::new(
                s.per_sec(s.traffic.presence_pulls_per_user_per_day),
                now,
                Rng::derive(seed, &[0x7072_6573, gid]),
            ),
            disconnect,
            reconnect_at: vec![None; user.devices.len()],
            storms,
            contacts: Zipf::new(
                ctx.setup.graph.contacts[u as usize].len(),
                s.contacts.zipf_exponent,
            ),
            groups: Zipf::new(ctx.setup.graph.user_groups[u as usize].len(), 1.0),
            paced_send: None,
        }
    }

    /// The next intended time of a send, and whether it is a crossing send.
    pub(super) fn next_send(&self) -> (f64, Kind) {
        let mut best = (self.own.peek(), Kind::Own);
        if self.early.peek() < self.pair_start && self.early.peek() < best.0 {
            best = (self.early.peek(), Kind::Early);
        }
        if let Some(p) = &self.pair
            && p.peek() < best.0
        {
            best = (p.peek(), Kind::Pair);
        }
        best
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Own,
    Early,
    Pair,
}

/// Picks who a send goes to: `u:<id>` or `g:<id>`, and its conversation.
pub(super) fn choose_target(
    ctx: &ShardCtx,
    s: &mut Session,
    kind: Kind,
) -> Option<(String, Conv, bool)> {
    let me = ctx.user(s.u).id;
    if kind == Kind::Pair {
        let p = ctx.setup.graph.partner[s.u as usize]?;
        let peer = ctx.user(p).id;
        return Some((format!("u:{peer}"), Conv::direct(me, peer), false));
    }
    let groups = &ctx.setup.graph.user_groups[s.u as usize];
    if !groups.is_empty() && s.rng.chance(ctx.setup.scenario.groups.share) {
        let pick = groups[s.groups.sample(&mut s.rng)] as usize;
        if let Some(g) = ctx.groups.group(pick) {
            return Some((format!("g:{}", g.id), g.conv, true));
        }
    }
    let contacts = &ctx.setup.graph.contacts[s.u as usize];
    if contacts.is_empty() {
        return None;
    }
    let peer = ctx.user(contacts[s.contacts.sample(&mut s.rng)]).id;
    Some((format!("u:{peer}"), Conv::direct(me, peer), false))
}
