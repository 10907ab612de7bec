//! The search itself, without running anything: which level to try next, given what the
//! steps so far did, and the scenario overrides that put a step at a level.
//!
//! Steps go up by a fixed amount from the first level until one fails (or the steps run
//! out, or the host stops the search); then each refinement tries the middle of the last
//! passing and the first failing level, so the boundary is known to within
//! `step / 2^refine`.

use crate::scenario::{CapacitySearch, Grow, Scenario};

/// How one search steps: levels in the search's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub start: f64,
    pub step: f64,
    pub max_steps: u32,
    pub refine: u32,
    /// Levels are whole numbers (users).
    pub whole: bool,
}

impl Plan {
    /// The plan of `search` over `scenario`: `start` 0 is the scenario's own level, `step`
    /// 0 the first level.
    pub fn of(scenario: &Scenario, search: &CapacitySearch) -> Plan {
        let own = Base::of(scenario).level(search.grow);
        let start = if search.start > 0.0 {
            search.start
        } else {
            own
        };
        let whole = search.grow != Grow::Rate;
        let start = if whole { start.round().max(2.0) } else { start };
        let step = if search.step > 0.0 {
            search.step
        } else {
            start
        };
        Plan {
            start,
            step: if whole { step.round().max(1.0) } else { step },
            max_steps: search.max_steps,
            refine: scenario.capacity.refine,
            whole,
        }
    }
}

/// What a finished step says about its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    /// The host could not run the level asked (its open-file cap): nothing higher can be
    /// tried, whether or not the level it ran passed.
    Capped {
        passed: bool,
    },
}

/// The state of one search.
#[derive(Debug, Clone)]
pub struct Search {
    plan: Plan,
    steps: u32,
    refinements: u32,
    passed: Option<f64>,
    failed: Option<f64>,
    capped: bool,
}

impl Search {
    pub fn new(plan: Plan) -> Search {
        Search {
            plan,
            steps: 0,
            refinements: 0,
            passed: None,
            failed: None,
            capped: false,
        }
    }

    /// The next level to run and whether it is a refinement; `None` when done.
    pub fn next(&self) -> Option<(f64, bool)> {
        if self.capped && self.failed.is_none() {
            return None;
        }
        match self.failed {
            None => (self.steps < self.plan.max_steps).then(|| {
                (
                    self.plan.start + f64::from(self.steps) * self.plan.step,
                    false,
                )
            }),
            Some(hi) => {
                if self.refinements >= self.plan.refine {
                    return None;
                }
                let lo = self.passed.unwrap_or(0.0);
                let mid = (lo + hi) / 2.0;
                let mid = if self.plan.whole { mid.round() } else { mid };
                // Nothing left between the two (whole levels, or a rate that no longer
                // moves by a thousandth).
                let resolution = if self.plan.whole { 1.0 } else { hi * 1e-3 };
                (mid - lo >= resolution && hi - mid >= resolution && mid > 0.0)
                    .then_some((mid, true))
            }
        }
    }

    /// Records the step at `level` (the level it ran, which may be lower than asked when
    /// the host capped it).
    pub fn record(&mut self, level: f64, refinement: bool, verdict: Verdict) {
        if refinement {
            self.refinements += 1;
        } else {
            self.steps += 1;
        }
        let passed = match verdict {
            Verdict::Passed => true,
            Verdict::Failed => false,
            Verdict::Capped { passed } => {
                self.capped = true;
                passed
            }
        };
        if passed {
            if self.passed.is_none_or(|p| level > p) {
                self.passed = Some(level);
            }
        } else if self.failed.is_none_or(|f| level < f) {
            self.failed = Some(level);
        }
    }

    /// The highest level that passed.
    pub fn highest_passed(&self) -> Option<f64> {
        self.passed
    }

    /// The lowest level that failed.
    pub fn lowest_failed(&self) -> Option<f64> {
        self.failed
    }

    /// Whether the host capped a step.
    pub fn capped(&self) -> bool {
        self.capped
    }
}

/// The scenario's own load, that the levels are measured against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Base {
    pub users: u64,
    pub daily_active_users: u64,
    pub day_seconds: f64,
    pub messages_per_user_per_day: f64,
}

impl Base {
    pub fn of(s: &Scenario) -> Base {
        Base {
            users: s.users().max(1),
            daily_active_users: s.population.daily_active_users.max(1),
            day_seconds: s.traffic.day_seconds,
            messages_per_user_per_day: s.traffic.messages_per_user_per_day,
        }
    }

    /// The scenario's own level in `grow`'s unit.
    pub fn level(&self, grow: Grow) -> f64 {
        match grow {
            Grow::Users | Grow::Connections => self.users as f64,
            Grow::Rate => self.users as f64 * self.messages_per_user_per_day / self.day_seconds,
        }
    }

    /// `--set` assignments that put a run at `level`.
    pub fn overrides(&self, grow: Grow, level: f64) -> Vec<String> {
        let scale = |users: f64| {
            format!(
                "population.scale={:e}",
                users / self.daily_active_users as f64
            )
        };
        match grow {
            Grow::Users => vec![scale(level)],
            Grow::Rate => vec![format!(
                "traffic.day_seconds={:e}",
                self.users as f64 * self.messages_per_user_per_day / level
            )],
            Grow::Connections => vec![
                scale(level),
                format!(
                    "traffic.day_seconds={:e}",
                    self.day_seconds * level / self.users as f64
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(start: f64, step: f64, max_steps: u32, refine: u32) -> Plan {
        Plan {
            start,
            step,
            max_steps,
            refine,
            whole: true,
        }
    }

    /// Runs a search against a node that passes up to `cap`; the levels it tried.
    fn against(p: Plan, cap: f64) -> (Search, Vec<f64>) {
        let mut s = Search::new(p);
        let mut tried = Vec::new();
        while let Some((level, refinement)) = s.next() {
            tried.push(level);
            let v = if level <= cap {
                Verdict::Passed
            } else {
                Verdict::Failed
            };
            s.record(level, refinement, v);
            assert!(tried.len() < 50, "the search must end");
        }
        (s, tried)
    }

    #[test]
    fn steps_up_then_narrows_down_to_the_cap() {
        let (s, tried) = against(plan(100.0, 100.0, 10, 2), 250.0);
        assert_eq!(tried, vec![100.0, 200.0, 300.0, 250.0, 275.0]);
        assert_eq!(s.highest_passed(), Some(250.0));
        assert_eq!(s.lowest_failed(), Some(275.0));
    }

    #[test]
    fn finds_any_cap_within_one_step() {
        for cap in [1.0, 37.0, 100.0, 101.0, 455.0, 999.0] {
            let (s, _) = against(plan(50.0, 50.0, 30, 3), cap);
            let found = s.highest_passed().unwrap_or(0.0);
            assert!(
                found <= cap && cap - found < 50.0,
                "cap {cap}: found {found}"
            );
        }
    }

    #[test]
    fn a_first_step_that_fails_narrows_down_from_zero() {
        let (s, tried) = against(plan(100.0, 100.0, 10, 2), 30.0);
        assert_eq!(tried, vec![100.0, 50.0, 25.0]);
        assert_eq!(s.highest_passed(), Some(25.0));
    }

    #[test]
    fn stops_after_the_last_step_when_nothing_fails() {
        let (s, tried) = against(plan(10.0, 10.0, 3, 2), 1e9);
        assert_eq!(tried, vec![10.0, 20.0, 30.0]);
        assert_eq!(s.lowest_failed(), None);
    }

    #[test]
    fn a_capped_step_ends_the_stepping() {
        let mut s = Search::new(plan(100.0, 100.0, 10, 2));
        s.record(100.0, false, Verdict::Passed);
        assert_eq!(s.next(), Some((200.0, false)));
        s.record(180.0, false, Verdict::Capped { passed: true });
        assert_eq!(s.next(), None);
        assert!(s.capped());
        assert_eq!(s.highest_passed(), Some(180.0));
    }

    #[test]
    fn whole_levels_stop_refining_when_adjacent() {
        let (s, tried) = against(plan(2.0, 1.0, 10, 5), 3.0);
        assert_eq!(tried, vec![2.0, 3.0, 4.0]);
        assert_eq!(s.highest_passed(), Some(3.0));
    }

    #[test]
    fn overrides_put_the_run_at_its_level() {
        let s = Scenario::from_toml_str(
            "name = \"x\"\n[population]\ndaily_active_users = 1000\nscale = 0.1\n[traffic]\nday_seconds = 40\nmessages_per_user_per_day = 40",
            std::path::Path::new("x.toml"),
            &[],
        )
        .unwrap();
        let base = Base::of(&s);
        assert_eq!(base.level(Grow::Users), 100.0);
        assert_eq!(base.level(Grow::Rate), 100.0);
        for (grow, level, users, rate) in [
            (Grow::Users, 250.0, 250, 250.0),
            (Grow::Rate, 400.0, 100, 400.0),
            (Grow::Connections, 300.0, 300, 100.0),
        ] {
            let o = base.overrides(grow, level);
            let t = Scenario::from_toml_str(
                "name = \"x\"\n[population]\ndaily_active_users = 1000\nscale = 0.1\n[traffic]\nday_seconds = 40\nmessages_per_user_per_day = 40",
                std::path::Path::new("x.toml"),
                &o,
            )
            .unwrap();
            assert_eq!(t.users(), users, "{grow:?}");
            let total = t.users() as f64 * t.sends_per_user_per_sec();
            assert!((total - rate).abs() < 1e-6, "{grow:?}: {total}");
        }
    }
}
