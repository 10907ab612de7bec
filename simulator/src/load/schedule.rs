//! The open model: when things are *supposed* to happen.
//!
//! Each user's sends are Poisson arrivals at the scenario's rate, fixed in advance by the
//! clock and not by how fast the server answers. Every latency is measured from the
//! intended time of its action, so a server that stalls cannot hide it by slowing the load
//! down (coordinated omission): sends that fall due during a stall go out late and carry
//! the wait in their latency.

use crate::rng::Rng;

/// Poisson arrivals at `rate` per second, as seconds after the load's epoch.
#[derive(Debug, Clone)]
pub struct Poisson {
    rate: f64,
    next: f64,
    rng: Rng,
}

impl Poisson {
    /// Arrivals from `start` on (seconds after the epoch).
    pub fn new(rate: f64, start: f64, mut rng: Rng) -> Self {
        let next = start + rng.exp(rate);
        Poisson { rate, next, rng }
    }

    /// The next intended time (infinite when the rate is 0).
    pub fn peek(&self) -> f64 {
        self.next
    }

    /// Takes the next intended time and draws the one after.
    pub fn pop(&mut self) -> f64 {
        let t = self.next;
        self.next = t + self.rng.exp(self.rate);
        t
    }

    /// Skips arrivals before `t` (e.g. those of a pair schedule before a user started).
    pub fn skip_before(&mut self, t: f64) {
        while self.next < t {
            self.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_match_the_rate_and_increase() {
        let mut p = Poisson::new(50.0, 10.0, Rng::new(1));
        let mut last = 10.0;
        let mut n = 0;
        while p.peek() < 110.0 {
            let t = p.pop();
            assert!(t >= last);
            last = t;
            n += 1;
        }
        // 50/s over 100 s: 5000 ± a few standard deviations (√5000 ≈ 71).
        assert!((4700..=5300).contains(&n), "{n}");
    }

    #[test]
    fn zero_rate_never_fires() {
        let p = Poisson::new(0.0, 0.0, Rng::new(1));
        assert!(p.peek().is_infinite());
    }

    #[test]
    fn two_copies_of_a_pair_schedule_agree() {
        let mut a = Poisson::new(3.0, 0.0, Rng::derive(9, &[4]));
        let mut b = Poisson::new(3.0, 0.0, Rng::derive(9, &[4]));
        b.skip_before(2.0);
        a.skip_before(2.0);
        for _ in 0..10 {
            assert_eq!(a.pop(), b.pop());
        }
    }
}
