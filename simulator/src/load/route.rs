//! Where a device connects: one address (one server, or a load balancer in front of a
//! cluster), or the nodes themselves, each user trying them in its own rendezvous-hash
//! order (highest random weight), so a user's devices land together on one node, a node
//! leaving moves only its own users, and a node coming back gets its users' new
//! connections back. A node that refuses is skipped at once for the next in the order,
//! as a load balancer's retry would.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::ws::{Device, RequestError};

/// The addresses clients use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routes {
    /// `http://HOST:PORT` of each entry point.
    pub http: Vec<String>,
    /// Route by hashing the user id over the entries; otherwise there is one entry.
    pub hash: bool,
}

/// `ws://…/v1/ws` of an `http://…` base.
pub fn ws_url(http: &str) -> String {
    format!(
        "{}/v1/ws",
        http.replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1)
    )
}

/// SplitMix64: a well-mixed 64-bit hash of the user and node numbers.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Routes {
    /// One entry point for everyone.
    pub fn single(http: String) -> Routes {
        Routes {
            http: vec![http],
            hash: false,
        }
    }

    /// The entry indices user `user` tries, best first.
    pub fn order(&self, user: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.http.len()).collect();
        if self.hash {
            order.sort_by_key(|&i| std::cmp::Reverse(mix(user ^ mix(i as u64 + 1))));
        }
        order
    }

    /// The user's first choice: its HTTP base URL.
    pub fn home(&self, user: u64) -> &str {
        let i = self.order(user).first().copied().unwrap_or(0);
        self.http.get(i).map_or("", String::as_str)
    }

    /// Connects `dev` to the first entry of its user's order that takes it: a node
    /// refusing the connection (dead, or not listening yet) is skipped; any other
    /// failure (a timeout, an HTTP error) ends the attempt.
    pub async fn connect(
        &self,
        dev: &Arc<Device>,
        token: impl Fn() -> String,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        let mut last = RequestError::Connect("no node to connect to".into());
        for i in self.order(dev.user) {
            match dev.connect(&ws_url(&self.http[i]), &token, timeout).await {
                Ok(()) => return Ok(()),
                Err(RequestError::Connect(e)) if self.hash && refused(&e) => {
                    last = RequestError::Connect(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

/// Whether a connect error says nothing listens there (the next node may).
fn refused(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("refused") || e.contains("reset") || e.contains("503")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(n: usize) -> Routes {
        Routes {
            http: (0..n)
                .map(|i| format!("http://127.0.0.1:{}", 9000 + i))
                .collect(),
            hash: true,
        }
    }

    #[test]
    fn users_spread_evenly_and_keep_their_node() {
        let r = hashed(3);
        let mut counts = [0u32; 3];
        for u in 1..=30_000u64 {
            let o = r.order(u);
            assert_eq!(o.len(), 3);
            counts[o[0]] += 1;
            assert_eq!(o, r.order(u), "the order of a user never changes");
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_own_users() {
        // Rendezvous hashing: without node 2, every user keeps its relative order of the
        // others, so users of nodes 0 and 1 stay where they were.
        let r = hashed(3);
        for u in 1..=5_000u64 {
            let o = r.order(u);
            let without: Vec<usize> = o.iter().copied().filter(|&i| i != 2).collect();
            if o[0] != 2 {
                assert_eq!(without[0], o[0]);
            }
        }
    }

    #[test]
    fn one_entry_is_everyones() {
        let r = Routes::single("http://127.0.0.1:1".into());
        assert_eq!(r.order(42), vec![0]);
        assert_eq!(r.home(42), "http://127.0.0.1:1");
        assert_eq!(ws_url("http://h:1"), "ws://h:1/v1/ws");
        assert_eq!(ws_url("https://h:1"), "wss://h:1/v1/ws");
    }
}
