//! The in-memory backend: everything in ordered maps behind one lock. For tests and for
//! measuring the server without a disk; nothing survives a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::rules::{Marks, unread};
use super::sequencing::{self, ConvMeta, IdemRecord, WriteTables};
use super::{
    AppendRequest, Appended, ConvSummary, DeadLetter, Group, GroupStore, InboxItem, MarkOutcome,
    Marker, MemberChange, MessageStore, PushRegistration, PushStore, StorageReport, StoreError,
    StoreOptions, StoredMessage,
};
use crate::model::{ConvId, UserId};

/// The in-memory store.
pub struct MemoryStore {
    state: Mutex<State>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Default)]
struct State {
    /// The idempotency window in ms.
    window_ms: u64,
    /// (first-send time, key) of the idempotency records, oldest first: expiry pops the
    /// front.
    idem_order: VecDeque<(u64, (UserId, String))>,
    messages: BTreeMap<(ConvId, u64), StoredMessage>,
    inbox: BTreeMap<(UserId, u64), (ConvId, u64)>,
    convs: HashMap<ConvId, ConvMeta>,
    last_useq: HashMap<UserId, u64>,
    marks: BTreeMap<(UserId, ConvId), Marks>,
    idem: HashMap<(UserId, String), IdemRecord>,
    groups: HashMap<u64, Group>,
    last_group: u64,
    pushes: BTreeMap<(UserId, String), PushRegistration>,
    dead: BTreeMap<u64, DeadLetter>,
    last_dead: u64,
}

impl MemoryStore {
    /// An empty store with the default options.
    pub fn new() -> Self {
        Self::with_options(&StoreOptions::default())
    }

    /// An empty store whose idempotency records expire after the options' window.
    pub fn with_options(options: &StoreOptions) -> Self {
        let state = State {
            window_ms: u64::try_from(options.idempotency_window.as_millis()).unwrap_or(u64::MAX),
            ..State::default()
        };
        MemoryStore {
            state: Mutex::new(state),
        }
    }
}

impl State {
    /// Drops the idempotency records older than the window. A key sent again after its
    /// record expired has a newer record, which stays.
    fn expire_idempotency(&mut self, now_ms: u64) {
        let cutoff = now_ms.saturating_sub(self.window_ms);
        while let Some((ts, _)) = self.idem_order.front() {
            if *ts >= cutoff {
                break;
            }
            if let Some((ts, key)) = self.idem_order.pop_front()
                && self.idem.get(&key).is_some_and(|r| r.ts == ts)
            {
                self.idem.remove(&key);
            }
        }
    }
}

impl WriteTables for State {
    fn idem_get(&mut self, user: UserId, id: &str) -> Result<Option<IdemRecord>, StoreError> {
        Ok(self.idem.get(&(user, id.to_owned())).copied())
    }
    fn idem_put(&mut self, user: UserId, id: &str, rec: IdemRecord) {
        self.expire_idempotency(crate::model::now_ms());
        self.idem.insert((user, id.to_owned()), rec);
        self.idem_order.push_back((rec.ts, (user, id.to_owned())));
    }
    fn conv_get(&mut self, conv: ConvId) -> Result<ConvMeta, StoreError> {
        Ok(self.convs.get(&conv).copied().unwrap_or_default())
    }
    fn conv_put(&mut self, conv: ConvId, meta: ConvMeta) {
        self.convs.insert(conv, meta);
    }
    fn last_useq(&mut self, user: UserId) -> Result<u64, StoreError> {
        Ok(self.last_useq.get(&user).copied().unwrap_or(0))
    }
    fn last_useq_put(&mut self, user: UserId, useq: u64) {
        self.last_useq.insert(user, useq);
    }
    fn marks_get(&mut self, user: UserId, conv: ConvId) -> Result<Option<Marks>, StoreError> {
        Ok(self.marks.get(&(user, conv)).copied())
    }
    fn marks_put(&mut self, user: UserId, conv: ConvId, marks: Marks) {
        self.marks.insert((user, conv), marks);
    }
    fn marks_remove(&mut self, user: UserId, conv: ConvId) {
        self.marks.remove(&(user, conv));
    }
    fn group_get(&mut self, id: u64) -> Result<Option<Group>, StoreError> {
        Ok(self.groups.get(&id).cloned())
    }
    fn group_put(&mut self, group: &Group) {
        self.groups.insert(group.id, group.clone());
    }
    fn last_group_id(&mut self) -> Result<u64, StoreError> {
        Ok(self.last_group)
    }
    fn last_group_id_put(&mut self, id: u64) {
        self.last_group = id;
    }
    fn message_put(&mut self, msg: &StoredMessage) {
        self.messages.insert((msg.conv, msg.seq), msg.clone());
    }
    fn count_from(
        &mut self,
        conv: ConvId,
        after: u64,
        upto: u64,
        user: UserId,
    ) -> Result<u64, StoreError> {
        if after >= upto {
            return Ok(0);
        }
        Ok(self
            .messages
            .range((conv, after + 1)..=(conv, upto))
            .filter(|(_, m)| m.from == user)
            .count() as u64)
    }
    fn inbox_put(&mut self, user: UserId, useq: u64, conv: ConvId, seq: u64) {
        self.inbox.insert((user, useq), (conv, seq));
    }
}

#[async_trait]
impl MessageStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        sequencing::append(&mut *self.state.lock(), &req)
    }

    async fn append_all(&self, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        let mut state = self.state.lock();
        reqs.iter()
            .map(|req| sequencing::append(&mut *state, req))
            .collect()
    }

    async fn history(
        &self,
        conv: ConvId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let state = self.state.lock();
        let end = before.unwrap_or(u64::MAX);
        Ok(state
            .messages
            .range((conv, 0)..(conv, end))
            .rev()
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect())
    }

    async fn inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let state = self.state.lock();
        let start = after.saturating_add(1);
        state
            .inbox
            .range((user, start)..=(user, u64::MAX))
            .take(limit)
            .map(|(&(_, useq), key)| {
                let msg = state.messages.get(key).cloned().ok_or_else(|| {
                    StoreError::Corrupt(format!("inbox entry {user}/{useq} has no message"))
                })?;
                Ok(InboxItem { useq, msg })
            })
            .collect()
    }

    async fn inbox_head(&self, user: UserId) -> Result<u64, StoreError> {
        Ok(self.state.lock().last_useq.get(&user).copied().unwrap_or(0))
    }

    async fn mark(
        &self,
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    ) -> Result<MarkOutcome, StoreError> {
        sequencing::mark(&mut *self.state.lock(), user, conv, marker, seq)
    }

    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConvSummary>, StoreError> {
        let state = self.state.lock();
        let lo = (user, ConvId::Direct { lo: 0, hi: 0 });
        let mut list: Vec<ConvSummary> = state
            .marks
            .range(lo..)
            .take_while(|((u, _), _)| *u == user)
            .map(|(&(_, conv), m)| {
                let meta = state.convs.get(&conv).copied().unwrap_or_default();
                ConvSummary {
                    conv,
                    last_seq: meta.last_seq,
                    last_ts: meta.last_ts,
                    read_seq: m.read,
                    ack_seq: m.ack,
                    unread: unread(meta.last_seq, m),
                }
            })
            .collect();
        super::sort_recent_first(&mut list);
        list.truncate(limit);
        Ok(list)
    }

    async fn disk_bytes(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    async fn storage(&self) -> Result<Option<StorageReport>, StoreError> {
        Ok(None)
    }

    async fn settle(&self) -> Result<(), StoreError> {
        self.state.lock().expire_idempotency(crate::model::now_ms());
        Ok(())
    }
}

#[async_trait]
impl GroupStore for MemoryStore {
    async fn create_group(
        &self,
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    ) -> Result<Group, StoreError> {
        sequencing::create_group(&mut *self.state.lock(), &name, admin, &members)
    }

    async fn group(&self, id: u64) -> Result<Option<Group>, StoreError> {
        Ok(self.state.lock().groups.get(&id).cloned())
    }

    async fn change_members(&self, group: u64, change: MemberChange) -> Result<Group, StoreError> {
        sequencing::change_members(&mut *self.state.lock(), group, change)
    }
}

#[async_trait]
impl PushStore for MemoryStore {
    async fn put_push(&self, reg: PushRegistration) -> Result<(), StoreError> {
        self.state
            .lock()
            .pushes
            .insert((reg.user, reg.device.clone()), reg);
        Ok(())
    }

    async fn pushes(&self, user: UserId) -> Result<Vec<PushRegistration>, StoreError> {
        let state = self.state.lock();
        Ok(state
            .pushes
            .range((user, String::new())..)
            .take_while(|((u, _), _)| *u == user)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<u64, StoreError> {
        let mut state = self.state.lock();
        state.last_dead += 1;
        let id = state.last_dead;
        state.dead.insert(id, letter);
        Ok(id)
    }

    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let state = self.state.lock();
        Ok(state
            .dead
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(&id, d)| (id, d.clone()))
            .collect())
    }

    async fn remove_dead_letter(&self, id: u64) -> Result<(), StoreError> {
        self.state.lock().dead.remove(&id);
        Ok(())
    }
}
