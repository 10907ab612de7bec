//! The in-memory backend: everything in maps behind one lock. For tests and for
//! measuring the server without a disk; nothing survives a restart.
//!
//! A conversation's messages and a user's inbox are vectors in the order they were
//! appended (seqs and useqs ascend), so an append is a push and a lookup a binary search,
//! where one ordered map of every message paid a tree descent of cache misses per send.
//! The maps hash with foldhash (seeded per process): SipHash was a few per cent of the
//! server's CPU at saturation.

use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;
use foldhash::HashMap;
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

/// An item of an [`Ordered`] list: its position (a seq or a useq).
trait Positioned {
    fn position(&self) -> u64;
}

impl Positioned for StoredMessage {
    fn position(&self) -> u64 {
        self.seq
    }
}

/// An inbox entry: (useq, conversation, seq).
type InboxEntry = (u64, ConvId, u64);

impl Positioned for InboxEntry {
    fn position(&self) -> u64 {
        self.0
    }
}

/// Items kept in ascending position. Appends (a position past the last) are pushes; an
/// item at a position already held replaces it, one before the last is put in its place,
/// as an ordered map would.
struct Ordered<T>(Vec<T>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<T: Positioned> Ordered<T> {
    fn put(&mut self, item: T) {
        let pos = item.position();
        if self.0.last().is_none_or(|last| last.position() < pos) {
            self.0.push(item);
            return;
        }
        match self.0.binary_search_by_key(&pos, T::position) {
            Ok(i) => self.0[i] = item,
            Err(i) => self.0.insert(i, item),
        }
    }

    fn get(&self, pos: u64) -> Option<&T> {
        self.0
            .binary_search_by_key(&pos, T::position)
            .ok()
            .map(|i| &self.0[i])
    }

    /// The items with `from <= position <= to`.
    fn range(&self, from: u64, to: u64) -> &[T] {
        let start = self.0.partition_point(|x| x.position() < from);
        let end = self.0.partition_point(|x| x.position() <= to).max(start);
        &self.0[start..end]
    }
}

#[derive(Default)]
struct State {
    /// The idempotency window in ms.
    window_ms: u64,
    /// (first-send time, user, id) of the idempotency records, oldest first: expiry pops
    /// the front.
    idem_order: VecDeque<(u64, UserId, String)>,
    messages: HashMap<ConvId, Ordered<StoredMessage>>,
    inbox: HashMap<UserId, Ordered<InboxEntry>>,
    convs: HashMap<ConvId, ConvMeta>,
    last_useq: HashMap<UserId, u64>,
    marks: HashMap<UserId, HashMap<ConvId, Marks>>,
    /// Idempotency records by user, then client id.
    idem: HashMap<UserId, HashMap<String, IdemRecord>>,
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
        while let Some((ts, _, _)) = self.idem_order.front() {
            if *ts >= cutoff {
                break;
            }
            let Some((ts, user, id)) = self.idem_order.pop_front() else {
                break;
            };
            if let Some(records) = self.idem.get_mut(&user) {
                if records.get(&id).is_some_and(|r| r.ts == ts) {
                    records.remove(&id);
                }
                if records.is_empty() {
                    self.idem.remove(&user);
                }
            }
        }
    }

    fn message(&self, conv: ConvId, seq: u64) -> Option<&StoredMessage> {
        self.messages.get(&conv).and_then(|log| log.get(seq))
    }
}

impl WriteTables for State {
    fn idem_get(&mut self, user: UserId, id: &str) -> Result<Option<IdemRecord>, StoreError> {
        Ok(self.idem.get(&user).and_then(|r| r.get(id)).copied())
    }
    fn idem_put(&mut self, user: UserId, id: &str, rec: IdemRecord) {
        self.expire_idempotency(crate::model::now_ms());
        self.idem
            .entry(user)
            .or_default()
            .insert(id.to_owned(), rec);
        self.idem_order.push_back((rec.ts, user, id.to_owned()));
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
        Ok(self.marks.get(&user).and_then(|m| m.get(&conv)).copied())
    }
    fn marks_put(&mut self, user: UserId, conv: ConvId, marks: Marks) {
        self.marks.entry(user).or_default().insert(conv, marks);
    }
    fn marks_remove(&mut self, user: UserId, conv: ConvId) {
        if let Some(m) = self.marks.get_mut(&user) {
            m.remove(&conv);
            if m.is_empty() {
                self.marks.remove(&user);
            }
        }
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
        self.messages.entry(msg.conv).or_default().put(msg.clone());
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
        let Some(log) = self.messages.get(&conv) else {
            return Ok(0);
        };
        Ok(log
            .range(after + 1, upto)
            .iter()
            .filter(|m| m.from == user)
            .count() as u64)
    }
    fn inbox_put(&mut self, user: UserId, useq: u64, conv: ConvId, seq: u64) {
        self.inbox.entry(user).or_default().put((useq, conv, seq));
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
        let Some(log) = state.messages.get(&conv) else {
            return Ok(Vec::new());
        };
        let page = match before {
            Some(0) => &[][..],
            Some(before) => log.range(0, before - 1),
            None => log.range(0, u64::MAX),
        };
        Ok(page.iter().rev().take(limit).cloned().collect())
    }

    async fn inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let state = self.state.lock();
        let start = after.saturating_add(1);
        let Some(entries) = state.inbox.get(&user) else {
            return Ok(Vec::new());
        };
        entries
            .range(start, u64::MAX)
            .iter()
            .take(limit)
            .map(|&(useq, conv, seq)| {
                let msg = state.message(conv, seq).cloned().ok_or_else(|| {
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
        let Some(marks) = state.marks.get(&user) else {
            return Ok(Vec::new());
        };
        let mut list: Vec<ConvSummary> = marks
            .iter()
            .map(|(&conv, m)| {
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

    /// Everything is in memory, without a bound: no figure a plan could size for.
    fn memory(&self) -> Option<crate::store::StoreMemory> {
        None
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

#[cfg(test)]
mod tests {
    use super::{InboxEntry, Ordered};
    use crate::model::ConvId;

    fn entry(useq: u64) -> InboxEntry {
        (useq, ConvId::Group(1), useq * 10)
    }

    fn positions(o: &Ordered<InboxEntry>, from: u64, to: u64) -> Vec<u64> {
        o.range(from, to).iter().map(|e| e.0).collect()
    }

    #[test]
    fn ordered_keeps_positions_ascending_whatever_the_order_of_puts() {
        let mut o = Ordered::default();
        for p in [2, 5, 3, 9, 1, 5] {
            o.put(entry(p));
        }
        assert_eq!(positions(&o, 0, u64::MAX), vec![1, 2, 3, 5, 9]);
        assert_eq!(positions(&o, 3, 5), vec![3, 5]);
        assert_eq!(positions(&o, 6, 8), Vec::<u64>::new());
        assert_eq!(positions(&o, 9, 2), Vec::<u64>::new());
        assert_eq!(o.get(5), Some(&entry(5)));
        assert_eq!(o.get(4), None);
    }

    #[test]
    fn a_put_at_a_held_position_replaces_the_item() {
        let mut o = Ordered::default();
        o.put((1, ConvId::Group(1), 10));
        o.put((2, ConvId::Group(1), 20));
        o.put((1, ConvId::Group(2), 30));
        assert_eq!(o.get(1), Some(&(1, ConvId::Group(2), 30)));
        assert_eq!(o.0.len(), 2);
    }
}
