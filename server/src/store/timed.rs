//! A decorator that times every store operation into the server's metrics, whatever the
//! backend.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    AppendRequest, Appended, ConvSummary, DeadLetter, Group, GroupStore, InboxItem, MarkOutcome,
    Marker, MemberChange, MessageStore, PushRegistration, PushStore, StorageReport, StoreError,
    StoredMessage,
};
use crate::metrics::{Metrics, OpLabel};
use crate::model::{ConvId, UserId};

/// Any store's three parts, timed. The parts may be decorated apart (the cache sits in
/// front of messages and groups only), so each is held on its own.
pub struct Timed {
    messages: Arc<dyn MessageStore>,
    groups: Arc<dyn GroupStore>,
    pushes: Arc<dyn PushStore>,
    metrics: Arc<Metrics>,
}

impl Timed {
    pub fn new(
        messages: Arc<dyn MessageStore>,
        groups: Arc<dyn GroupStore>,
        pushes: Arc<dyn PushStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Timed {
            messages,
            groups,
            pushes,
            metrics,
        }
    }

    fn observe<T>(&self, op: &'static str, start: Instant, r: &Result<T, StoreError>) {
        let label = OpLabel { op };
        self.metrics
            .store_latency
            .get_or_create(&label)
            .observe(start.elapsed().as_secs_f64());
        if matches!(r, Err(StoreError::Unavailable(_) | StoreError::Corrupt(_))) {
            self.metrics.store_errors.get_or_create(&label).inc();
        }
    }
}

macro_rules! timed {
    ($self:ident, $op:literal, $call:expr) => {{
        let start = Instant::now();
        let r = $call.await;
        $self.observe($op, start, &r);
        r
    }};
}

#[async_trait]
impl MessageStore for Timed {
    fn name(&self) -> &'static str {
        self.messages.name()
    }

    async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        timed!(self, "append", self.messages.append(req))
    }

    async fn append_all(&self, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        let start = Instant::now();
        let out = self.messages.append_all(reqs).await;
        for r in &out {
            self.observe("append", start, r);
        }
        out
    }

    async fn history(
        &self,
        conv: ConvId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        timed!(self, "history", self.messages.history(conv, before, limit))
    }

    async fn inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        timed!(self, "inbox", self.messages.inbox(user, after, limit))
    }

    async fn inbox_head(&self, user: UserId) -> Result<u64, StoreError> {
        timed!(self, "inbox_head", self.messages.inbox_head(user))
    }

    async fn mark(
        &self,
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    ) -> Result<MarkOutcome, StoreError> {
        timed!(self, "mark", self.messages.mark(user, conv, marker, seq))
    }

    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConvSummary>, StoreError> {
        timed!(
            self,
            "conversations",
            self.messages.conversations(user, limit)
        )
    }

    async fn disk_bytes(&self) -> Result<Option<u64>, StoreError> {
        timed!(self, "disk_bytes", self.messages.disk_bytes())
    }
    async fn storage(&self) -> Result<Option<StorageReport>, StoreError> {
        timed!(self, "storage", self.messages.storage())
    }
    async fn settle(&self) -> Result<(), StoreError> {
        timed!(self, "settle", self.messages.settle())
    }

    fn memory(&self) -> Option<crate::store::StoreMemory> {
        self.messages.memory()
    }

    fn writer_counts(&self) -> Option<crate::store::WriterCounts> {
        self.messages.writer_counts()
    }
}

#[async_trait]
impl GroupStore for Timed {
    async fn create_group(
        &self,
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    ) -> Result<Group, StoreError> {
        timed!(
            self,
            "create_group",
            self.groups.create_group(name, admin, members)
        )
    }

    async fn group(&self, id: u64) -> Result<Option<Group>, StoreError> {
        timed!(self, "group", self.groups.group(id))
    }

    async fn change_members(&self, group: u64, change: MemberChange) -> Result<Group, StoreError> {
        timed!(
            self,
            "change_members",
            self.groups.change_members(group, change)
        )
    }
}

#[async_trait]
impl PushStore for Timed {
    async fn put_push(&self, reg: PushRegistration) -> Result<(), StoreError> {
        timed!(self, "put_push", self.pushes.put_push(reg))
    }

    async fn pushes(&self, user: UserId) -> Result<Vec<PushRegistration>, StoreError> {
        timed!(self, "pushes", self.pushes.pushes(user))
    }

    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<u64, StoreError> {
        timed!(self, "put_dead_letter", self.pushes.put_dead_letter(letter))
    }

    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        timed!(self, "dead_letters", self.pushes.dead_letters(after, limit))
    }

    async fn remove_dead_letter(&self, id: u64) -> Result<(), StoreError> {
        timed!(
            self,
            "remove_dead_letter",
            self.pushes.remove_dead_letter(id)
        )
    }
}
