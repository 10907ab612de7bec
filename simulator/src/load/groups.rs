//! The shard's groups: creating the scenario's planned groups on the server at setup (the
//! first one also tells whether the server serves groups at all), and the registry the
//! users pick group conversations from and the final checks read members from.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};

use super::recorder::ShardRecords;
use super::setup::Setup;
use super::shard::UserState;
use crate::checks::Conv;
use crate::client::http::{self, Probe};

/// A group the server created.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub id: u64,
    pub conv: Conv,
    pub members: Vec<u64>,
}

/// The groups of a shard, by their index in the graph's plan.
#[derive(Default)]
pub struct Groups {
    /// Created groups, by plan index (`None`: not created).
    by_plan: RwLock<Vec<Option<GroupInfo>>>,
    /// Plan index by group id.
    index: RwLock<HashMap<u64, usize>>,
    /// Whether the server serves groups (`None`: not probed, the scenario has none).
    pub supported: Mutex<Option<bool>>,
}

impl Groups {
    pub fn group(&self, plan_index: usize) -> Option<GroupInfo> {
        self.by_plan.read().get(plan_index).cloned().flatten()
    }

    /// The members of group `id`, when the shard created it.
    pub fn members(&self, id: u64) -> Option<Vec<u64>> {
        let i = *self.index.read().get(&id)?;
        self.group(i).map(|g| g.members)
    }

    /// How many planned groups were created, and how many were not.
    pub fn created_and_missing(&self) -> (u64, u64) {
        let groups = self.by_plan.read();
        let created = groups.iter().filter(|g| g.is_some()).count() as u64;
        (created, groups.len() as u64 - created)
    }

    /// Creates the graph's planned groups, 32 at a time after the first.
    pub async fn create_all(
        self: &Arc<Self>,
        setup: &Arc<Setup>,
        users: &Arc<Vec<UserState>>,
        records: &Arc<ShardRecords>,
        client: &reqwest::Client,
    ) {
        let s = &setup.scenario;
        if s.groups.share <= 0.0 || setup.graph.groups.is_empty() {
            return;
        }
        let plans: Vec<(usize, Vec<u64>)> = setup
            .graph
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                (
                    i,
                    g.members
                        .iter()
                        .map(|&m| setup.first_id + u64::from(m))
                        .collect(),
                )
            })
            .collect();
        *self.by_plan.write() = vec![None; plans.len()];
        // The first group tells whether the server serves groups at all.
        let mut rest = plans.into_iter();
        let Some((i0, m0)) = rest.next() else { return };
        let first = self.create(setup, users, records, client, i0, &m0).await;
        match first {
            Probe::Supported => *self.supported.lock() = Some(true),
            Probe::Missing(_) => {
                *self.supported.lock() = Some(false);
                records.note(format!(
                    "group messages not exercised: the server lacks groups ({first}); their share ({:.0} %) was sent as direct messages",
                    s.groups.share * 100.0
                ));
                return;
            }
            Probe::Failed(_) => {
                *self.supported.lock() = Some(true);
            }
        }
        futures_util::stream::iter(rest)
            .for_each_concurrent(32, |(i, members)| {
                let this = self.clone();
                let (setup, users, records) = (setup.clone(), users.clone(), records.clone());
                let client = client.clone();
                async move {
                    this.create(&setup, &users, &records, &client, i, &members)
                        .await;
                }
            })
            .await;
    }

    async fn create(
        &self,
        setup: &Setup,
        users: &[UserState],
        records: &ShardRecords,
        client: &reqwest::Client,
        i: usize,
        members: &[u64],
    ) -> Probe {
        let Some((&creator, others)) = members.split_first() else {
            return Probe::Failed("empty group".into());
        };
        let Some(cu) = setup.local(creator) else {
            return Probe::Failed("creator outside the shard".into());
        };
        let token = setup.token(creator, &users[cu as usize].devices[0].id);
        let name = format!("sim-{}-{i}", setup.shard);
        match http::create_group(client, &setup.http_url, &token, &name, others).await {
            Ok((id, conv)) => {
                let conv = conv.parse::<Conv>().unwrap_or(Conv::Group(id));
                self.by_plan.write()[i] = Some(GroupInfo {
                    id,
                    conv,
                    members: members.to_vec(),
                });
                self.index.write().insert(id, i);
                records.counters.add(&records.counters.requests, 1);
                Probe::Supported
            }
            Err(p) => {
                if matches!(p, Probe::Failed(_)) {
                    records.counters.add(&records.counters.requests, 1);
                    records.counters.add(&records.counters.request_errors, 1);
                }
                p
            }
        }
    }
}
