//! Message bodies: sizes from the scenario's distribution (mean 100 B as the source design
//! assumes) and text that compresses like chat, not like random bytes, so bytes on disk
//! per message mean something.

use crate::rng::Rng;
use crate::scenario::{MessageSize, SizeDistribution};

/// Common short words; bodies are made of them, as chat mostly is.
const WORDS: [&str; 48] = [
    "the", "you", "and", "to", "it", "is", "that", "in", "me", "of", "for", "on", "we", "lol",
    "ok", "yes", "no", "see", "later", "now", "today", "tonight", "call", "meet", "at", "home",
    "work", "when", "what", "where", "sure", "thanks", "great", "sounds", "good", "coming", "soon",
    "running", "late", "dinner", "movie", "coffee", "tomorrow", "weekend", "haha", "love", "miss",
    "know",
];

/// A body size drawn from the distribution, within its bounds.
pub fn sample_size(m: &MessageSize, rng: &mut Rng) -> usize {
    let (lo, hi) = (f64::from(m.min_bytes), f64::from(m.max_bytes));
    let v = match m.distribution {
        SizeDistribution::Fixed => m.mean_bytes,
        SizeDistribution::Uniform => {
            let top = (2.0 * m.mean_bytes - lo).min(hi).max(lo);
            lo + rng.f64() * (top - lo)
        }
        SizeDistribution::Lognormal => {
            // E[exp(N(mu, s²))] = exp(mu + s²/2) = mean.
            let mu = m.mean_bytes.ln() - m.sigma * m.sigma / 2.0;
            (mu + m.sigma * rng.normal()).exp()
        }
    };
    v.round().clamp(lo, hi) as usize
}

/// A body of exactly `size` bytes (ASCII), starting with the sender and message number so
/// a person reading a store dump can tell messages apart.
pub fn make(size: usize, from: u64, n: u64, rng: &mut Rng) -> String {
    let mut s = format!("{from}#{n} ");
    while s.len() < size {
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        s.push(' ');
    }
    s.truncate(size.max(1));
    // A body must not be empty or end in nothing visible.
    if s.ends_with(' ') {
        s.pop();
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_the_mean_is_near_the_target() {
        let m = MessageSize::default();
        let mut rng = Rng::new(1);
        let n = 20_000;
        let mut total = 0usize;
        for i in 0..n {
            let size = sample_size(&m, &mut rng);
            assert!((m.min_bytes as usize..=m.max_bytes as usize).contains(&size));
            let b = make(size, 7, i, &mut rng);
            assert_eq!(b.len(), size);
            total += size;
        }
        let mean = total as f64 / n as f64;
        assert!((mean - 100.0).abs() < 3.0, "mean {mean}");
    }

    #[test]
    fn fixed_and_uniform() {
        let mut rng = Rng::new(2);
        let fixed = MessageSize {
            distribution: SizeDistribution::Fixed,
            ..MessageSize::default()
        };
        assert_eq!(sample_size(&fixed, &mut rng), 100);
        let uni = MessageSize {
            distribution: SizeDistribution::Uniform,
            min_bytes: 20,
            ..MessageSize::default()
        };
        for _ in 0..1000 {
            assert!((20..=180).contains(&sample_size(&uni, &mut rng)));
        }
        assert_eq!(make(1, 1, 1, &mut rng).len(), 1);
    }
}
