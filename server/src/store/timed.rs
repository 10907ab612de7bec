//! A decorator that times every store operation into the server's metrics, whatever the
//! backend.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    AppendRequest, Appended, ConvSummary, DeadLetter, Group, InboxItem, MarkOutcome, Marker,
    MemberChange, PushRegistration, Store, StoreError, StoredMessage,
};
use crate::metrics::{Metrics, OpLabel};
use crate::model::{ConvId, UserId};

/// Any store, timed.
pub struct Timed {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Timed {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Timed { inner, metrics }
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
impl Store for Timed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        timed!(self, "append", self.inner.append(req))
    }
    async fn history(
        &self,
        conv: ConvId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        timed!(self, "history", self.inner.history(conv, before, limit))
    }
    async fn inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        timed!(self, "inbox", self.inner.inbox(user, after, limit))
    }
    async fn inbox_head(&self, user: UserId) -> Result<u64, StoreError> {
        timed!(self, "inbox_head", self.inner.inbox_head(user))
    }
    async fn mark(
        &self,
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    ) -> Result<MarkOutcome, StoreError> {
        timed!(self, "mark", self.inner.mark(user, conv, marker, seq))
    }
    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConvSummary>, StoreError> {
        timed!(self, "conversations", self.inner.conversations(user, limit))
    }
    async fn disk_bytes(&self) -> Result<Option<u64>, StoreError> {
        timed!(self, "disk_bytes", self.inner.disk_bytes())
    }
    async fn create_group(
        &self,
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    ) -> Result<Group, StoreError> {
        timed!(
            self,
            "create_group",
            self.inner.create_group(name, admin, members)
        )
    }
    async fn group(&self, id: u64) -> Result<Option<Group>, StoreError> {
        timed!(self, "group", self.inner.group(id))
    }
    async fn change_members(&self, group: u64, change: MemberChange) -> Result<Group, StoreError> {
        timed!(
            self,
            "change_members",
            self.inner.change_members(group, change)
        )
    }
    async fn put_push(&self, reg: PushRegistration) -> Result<(), StoreError> {
        timed!(self, "put_push", self.inner.put_push(reg))
    }
    async fn pushes(&self, user: UserId) -> Result<Vec<PushRegistration>, StoreError> {
        timed!(self, "pushes", self.inner.pushes(user))
    }
    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<u64, StoreError> {
        timed!(self, "put_dead_letter", self.inner.put_dead_letter(letter))
    }
    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        timed!(self, "dead_letters", self.inner.dead_letters(after, limit))
    }
    async fn remove_dead_letter(&self, id: u64) -> Result<(), StoreError> {
        timed!(
            self,
            "remove_dead_letter",
            self.inner.remove_dead_letter(id)
        )
    }
}
