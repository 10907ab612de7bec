//! Who talks to whom: a skewed contact graph and the groups, built per shard of users.
//!
//! Real contact graphs are far from uniform: a few people are in everybody's list and each
//! person writes mostly to a handful of others. Contacts are therefore drawn with
//! popularity weights (Zipf over a random ranking of users), and a sender picks among its
//! own contacts with Zipf weights again, so the first contacts get most messages.
//!
//! A graph covers one shard of users only (see `worker.rs`): nobody writes outside their
//! shard, so every conversation, with all its participants' devices, lives in one process
//! and the checks stay exact without shipping every message between processes.

use crate::rng::{Rng, Zipf};
use crate::scenario::Scenario;

/// A group to create: local user indices, the creator first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    pub members: Vec<u32>,
}

/// The contact graph of one shard, in local user indices 0..n.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Each user's contacts, most written-to first.
    pub contacts: Vec<Vec<u32>>,
    /// The crossing partner of each user (pairs 0–1, 2–3, …), when crossing is on.
    pub partner: Vec<Option<u32>>,
    /// Groups to create.
    pub groups: Vec<GroupPlan>,
    /// The groups (indices into `groups`) each user belongs to.
    pub user_groups: Vec<Vec<u32>>,
}

impl Graph {
    /// Builds the graph of `n` users for shard `shard` of the scenario.
    pub fn build(scenario: &Scenario, n: usize, shard: u32) -> Graph {
        let mut rng = Rng::derive(scenario.run.seed, &[0x6752_4150, u64::from(shard)]);
        let c = &scenario.contacts;
        let crossing = c.crossing_share > 0.0;
        let partner: Vec<Option<u32>> = (0..n)
            .map(|u| {
                let p = u ^ 1;
                (crossing && p < n).then_some(p as u32)
            })
            .collect();
        // A random popularity ranking: rank r (0 = most popular) → user.
        let mut ranking: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            ranking.swap(i, j);
        }
        let popularity = Zipf::new(n, c.popularity_exponent);
        let want = (c.contacts_per_user as usize).min(n.saturating_sub(1));
        let mut contacts: Vec<Vec<u32>> = vec![Vec::new(); n];
        for u in 0..n {
            let list = &mut contacts[u];
            if let Some(p) = partner[u] {
                list.push(p);
            }
            let mut attempts = 0;
            while list.len() < want && attempts < want * 50 {
                attempts += 1;
                let v = ranking[popularity.sample(&mut rng)];
                if v as usize != u && !list.contains(&v) {
                    list.push(v);
                }
            }
            // Very small or very skewed populations: fill in order so everyone has contacts.
            let mut v = 0u32;
            while list.len() < want && (v as usize) < n {
                if v as usize != u && !list.contains(&v) {
                    list.push(v);
                }
                v += 1;
            }
        }
        // Who is written to writes back: add reverse edges at the end of the lists.
        for u in 0..n {
            for k in 0..contacts[u].len() {
                let v = contacts[u][k] as usize;
                if !contacts[v].contains(&(u as u32)) {
                    contacts[v].push(u as u32);
                }
            }
        }
        let (groups, user_groups) = if scenario.groups.share > 0.0 {
            build_groups(scenario, n, &contacts, &ranking, &popularity, &mut rng)
        } else {
            (Vec::new(), vec![Vec::new(); n])
        };
        Graph {
            contacts,
            partner,
            groups,
            user_groups,
        }
    }
}

fn build_groups(
    scenario: &Scenario,
    n: usize,
    contacts: &[Vec<u32>],
    ranking: &[u32],
    popularity: &Zipf,
    rng: &mut Rng,
) -> (Vec<GroupPlan>, Vec<Vec<u32>>) {
    let g = &scenario.groups;
    let mean_size = f64::from(g.min_size + g.max_size) / 2.0;
    let count = ((n as f64 * g.groups_per_user / mean_size).round() as usize).max(1);
    let mut groups = Vec::with_capacity(count);
    let mut user_groups = vec![Vec::new(); n];
    for gi in 0..count {
        let size =
            (rng.range_inclusive(u64::from(g.min_size), u64::from(g.max_size)) as usize).min(n);
        let creator = ranking[popularity.sample(rng)];
        let mut members = vec![creator];
        for &c in &contacts[creator as usize] {
            if members.len() >= size {
                break;
            }
            if !members.contains(&c) {
                members.push(c);
            }
        }
        let mut attempts = 0;
        while members.len() < size && attempts < size * 50 {
            attempts += 1;
            let v = rng.below(n as u64) as u32;
            if !members.contains(&v) {
                members.push(v);
            }
        }
        for &m in &members {
            user_groups[m as usize].push(gi as u32);
        }
        groups.push(GroupPlan { members });
    }
    (groups, user_groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(extra: &str) -> Scenario {
        Scenario::from_toml_str(&format!("name = \"g\"\n{extra}"), Path::new("t"), &[]).unwrap()
    }

    #[test]
    fn everyone_has_contacts_and_nobody_writes_to_themself() {
        let s = scenario("");
        let g = Graph::build(&s, 200, 0);
        for (u, list) in g.contacts.iter().enumerate() {
            assert!(list.len() >= 8, "user {u} has {} contacts", list.len());
            assert!(!list.contains(&(u as u32)));
            let mut dedup = list.clone();
            dedup.sort_unstable();
            dedup.dedup();
            assert_eq!(dedup.len(), list.len());
            for &v in list {
                assert!(
                    g.contacts[v as usize].contains(&(u as u32)),
                    "edges go both ways"
                );
            }
        }
    }

    #[test]
    fn the_graph_is_skewed() {
        let s = scenario("[contacts]\npopularity_exponent = 1.0");
        let g = Graph::build(&s, 1000, 0);
        let mut degrees: Vec<usize> = g.contacts.iter().map(Vec::len).collect();
        degrees.sort_unstable();
        let median = degrees[500];
        let max = degrees[999];
        assert!(max > 5 * median, "max degree {max}, median {median}");
    }

    #[test]
    fn crossing_partners_are_mutual_and_first() {
        let s = scenario("[contacts]\ncrossing_share = 1.0\ncontacts_per_user = 1");
        let g = Graph::build(&s, 11, 0);
        for u in 0..10 {
            let p = g.partner[u].unwrap() as usize;
            assert_eq!(g.partner[p], Some(u as u32));
            assert_eq!(g.contacts[u][0] as usize, p);
        }
        assert_eq!(g.partner[10], None);
    }

    #[test]
    fn groups_have_distinct_members_in_range() {
        let s = scenario("[groups]\nshare = 0.5\nmin_size = 3\nmax_size = 6\ngroups_per_user = 2");
        let g = Graph::build(&s, 60, 3);
        assert!(!g.groups.is_empty());
        for (i, grp) in g.groups.iter().enumerate() {
            assert!((3..=6).contains(&grp.members.len()));
            let mut m = grp.members.clone();
            m.sort_unstable();
            m.dedup();
            assert_eq!(m.len(), grp.members.len());
            for &u in &grp.members {
                assert!(g.user_groups[u as usize].contains(&(i as u32)));
            }
        }
    }

    #[test]
    fn same_seed_same_graph() {
        let s = scenario("");
        let a = Graph::build(&s, 100, 1);
        let b = Graph::build(&s, 100, 1);
        assert_eq!(a.contacts, b.contacts);
    }
}
