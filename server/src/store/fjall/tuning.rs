//! The options of a `--store fjall:PATH?…` spec: fjall's sizes where they differ from its
//! defaults, and how often the writer commits.

use std::time::Duration;

/// A keyspace's memtable size unless the spec says otherwise.
///
/// fjall's own default is 64 MiB, which with eight keyspaces lets a server's memory grow
/// by up to half a GiB of unflushed writes: a ten-minute soak at the design's per-node
/// rate read it as 31 MiB a minute of growth that had not levelled off.
pub const DEFAULT_MEMTABLE_BYTES: u64 = 16 << 20;

/// How long after one commit with an fsync began the next may begin, unless the spec says
/// otherwise.
///
/// A busy store's writes wait out the rest of this interval and then share one commit and
/// one fsync; a write that comes after a quieter spell commits at once, and so does a
/// batch of markers alone (it needs no fsync). Without it the writer fsyncs as often as
/// the disk lets it, each fsync for the few sends that arrived during the last one, and on
/// this kind of disk an fsync cycle costs the writer about 80 µs of CPU however little it
/// carries: at 10,000 sends a second (server on one core, 500 pairs) that was 3,500 to
/// 4,100 fsyncs a second and 79 µs of server CPU per message, against 900 fsyncs and 53 µs
/// with 1 ms. A send waits at most this much longer for its `sent`. At the design's
/// per-node rate (seed-node, 463 sends a second) few sends come within 1 ms of each other;
/// there 10 ms saved about a quarter of the server's CPU per message (367 against about
/// 500 µs) for about 5.5 ms more on every `sent` and delivery, a trade left to the spec.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(1);

/// The longest commit interval a spec may ask for: a send's `sent` waits up to this.
pub const MAX_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// The most reader threads a spec may ask for.
pub const MAX_READ_THREADS: usize = 256;

/// How many reader threads a store runs unless the spec says otherwise: two per core, at
/// least 4 and at most 32. A read waits on the disk only when what it needs is in neither
/// a memtable nor the block cache, so a few threads per core keep a slow disk busy without
/// a thread for each read of a burst.
pub fn default_read_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (2 * cores).clamp(4, 32)
}

/// The options of a fjall spec.
///
/// `memtable_bytes` is the size at which a keyspace's memtable is sealed and flushed to a
/// table: [`DEFAULT_MEMTABLE_BYTES`] unless given. fjall keeps it with the keyspace when
/// the keyspace is created, so it applies to a new store directory; an existing one keeps
/// its own. A tiny value makes flushes happen all the time, which the crash tests use.
/// (The journal is rotated at the first flush after it passed 64 MB, a size fjall 3 does
/// not let one change.)
///
/// `commit_interval_us` is the writer's commit interval in microseconds
/// ([`DEFAULT_COMMIT_INTERVAL`] unless given; 0 commits as soon as the last commit ended,
/// at most [`MAX_COMMIT_INTERVAL`]).
///
/// `read_threads` is how many threads run the store's reads ([`default_read_threads`]
/// unless given; 1 to [`MAX_READ_THREADS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FjallTuning {
    pub memtable_bytes: Option<u64>,
    pub commit_interval: Option<Duration>,
    pub read_threads: Option<usize>,
}

impl FjallTuning {
    /// Splits what follows `fjall:` into the directory and the options after a `?`
    /// (`memtable_bytes=N`, N at least 1024; `commit_interval_us=N`, N at most 100,000;
    /// `read_threads=N`, N from 1 to 256), joined by `&`.
    pub fn parse(rest: &str) -> Result<(std::path::PathBuf, FjallTuning), String> {
        let Some((path, query)) = rest.split_once('?') else {
            return Ok((rest.into(), FjallTuning::default()));
        };
        let mut tuning = FjallTuning::default();
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("memtable_bytes", v)) => {
                    let bytes = v
                        .parse::<u64>()
                        .ok()
                        .filter(|b| *b >= 1024)
                        .ok_or_else(|| format!("memtable_bytes={v}: expected bytes, >= 1024"))?;
                    tuning.memtable_bytes = Some(bytes);
                }
                Some(("commit_interval_us", v)) => {
                    let max = MAX_COMMIT_INTERVAL.as_micros();
                    let us = v
                        .parse::<u64>()
                        .ok()
                        .filter(|us| u128::from(*us) <= max)
                        .ok_or_else(|| {
                            format!("commit_interval_us={v}: expected microseconds, 0 to {max}")
                        })?;
                    tuning.commit_interval = Some(Duration::from_micros(us));
                }
                Some(("read_threads", v)) => {
                    let n = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_READ_THREADS).contains(n))
                        .ok_or_else(|| {
                            format!("read_threads={v}: expected a count, 1 to {MAX_READ_THREADS}")
                        })?;
                    tuning.read_threads = Some(n);
                }
                _ => {
                    return Err(format!(
                        "unknown fjall option {kv:?}: expected memtable_bytes=N, commit_interval_us=N or read_threads=N"
                    ));
                }
            }
        }
        if path.is_empty() {
            return Err("fjall needs a directory: --store fjall:PATH".into());
        }
        Ok((path.into(), tuning))
    }

    /// The memtable size this tuning asks for.
    pub fn memtable_bytes(&self) -> u64 {
        self.memtable_bytes.unwrap_or(DEFAULT_MEMTABLE_BYTES)
    }

    /// The commit interval this tuning asks for.
    pub fn commit_interval(&self) -> Duration {
        self.commit_interval.unwrap_or(DEFAULT_COMMIT_INTERVAL)
    }

    /// How many reader threads this tuning asks for.
    pub fn read_threads(&self) -> usize {
        self.read_threads.unwrap_or_else(default_read_threads)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{
        DEFAULT_COMMIT_INTERVAL, DEFAULT_MEMTABLE_BYTES, FjallTuning, default_read_threads,
    };

    #[test]
    fn options_follow_a_question_mark() {
        let (path, t) = FjallTuning::parse("/data/chat").unwrap();
        assert_eq!(
            (path.to_str(), &t),
            (Some("/data/chat"), &FjallTuning::default())
        );
        assert_eq!(
            (t.memtable_bytes(), t.commit_interval()),
            (DEFAULT_MEMTABLE_BYTES, DEFAULT_COMMIT_INTERVAL)
        );
        let (path, t) = FjallTuning::parse("./d?memtable_bytes=65536").unwrap();
        assert_eq!(
            (path.to_str(), t.memtable_bytes),
            (Some("./d"), Some(65536))
        );
        assert!(FjallTuning::parse("./d?memtable_bytes=12").is_err());
        assert!(FjallTuning::parse("./d?journal=1").is_err());
        assert!(FjallTuning::parse("?memtable_bytes=65536").is_err());
    }

    #[test]
    fn the_commit_interval_is_in_microseconds_and_bounded() {
        let (_, t) = FjallTuning::parse("d?commit_interval_us=0&memtable_bytes=4096").unwrap();
        assert_eq!(t.commit_interval(), Duration::ZERO);
        assert_eq!(t.memtable_bytes(), 4096);
        let (_, t) = FjallTuning::parse("d?commit_interval_us=100000").unwrap();
        assert_eq!(t.commit_interval(), Duration::from_millis(100));
        for bad in ["100001", "-1", "1ms", ""] {
            let e = FjallTuning::parse(&format!("d?commit_interval_us={bad}")).unwrap_err();
            assert!(e.contains("commit_interval_us"), "{bad}: {e}");
        }
    }

    #[test]
    fn read_threads_are_a_count_from_1_to_256() {
        let (_, t) = FjallTuning::parse("d").unwrap();
        assert_eq!(t.read_threads(), default_read_threads());
        assert!((4..=32).contains(&default_read_threads()));
        let (_, t) = FjallTuning::parse("d?read_threads=1&commit_interval_us=0").unwrap();
        assert_eq!(t.read_threads(), 1);
        assert_eq!(
            FjallTuning::parse("d?read_threads=256")
                .unwrap()
                .1
                .read_threads(),
            256
        );
        for bad in ["0", "257", "-1", "two", ""] {
            let e = FjallTuning::parse(&format!("d?read_threads={bad}")).unwrap_err();
            assert!(e.contains("read_threads"), "{bad}: {e}");
        }
    }
}
