//! The source design's cache: each user's recent conversations (5) and each conversation's
//! latest messages (15), in memory in front of a remote store.
//!
//! Reads that fit in the cached window (a conversation list of at most 5, the newest page
//! of at most 15 messages) are answered from memory; everything else goes to the store.
//! Every write invalidates what it changes, after the store acknowledged it. A read that
//! raced with a write does not put stale data back: each key hashes to a generation
//! counter that writes bump, and a fill only lands if its stripe's generation did not move
//! while the store was read.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use moka::sync::Cache;
use prometheus_client::metrics::counter::Counter;

use super::{
    AppendRequest, Appended, ConvSummary, Group, GroupStore, InboxItem, MarkOutcome, Marker,
    MemberChange, MessageStore, StorageReport, StoreError, StoredMessage,
};
use crate::metrics::{CacheLabel, Metrics};
use crate::model::{ConvId, UserId};

/// Conversations kept per user.
pub const RECENT_CONVERSATIONS: usize = 5;
/// Messages kept per conversation.
pub const RECENT_MESSAGES: usize = 15;
/// Users and conversations kept at most.
const CAPACITY: u64 = 100_000;
const STRIPES: usize = 4096;

/// A store with the recent-conversations cache in front.
pub struct Cached {
    messages: Arc<dyn MessageStore>,
    /// Group writes change conversation lists, so they pass through here too.
    groups: Arc<dyn GroupStore>,
    lists: Cache<UserId, Arc<Vec<ConvSummary>>>,
    pages: Cache<ConvId, Arc<Vec<StoredMessage>>>,
    generations: Box<[AtomicU64]>,
    list_hits: Counter,
    list_misses: Counter,
    page_hits: Counter,
    page_misses: Counter,
}

enum Key {
    User(UserId),
    Conv(ConvId),
}

impl Cached {
    pub fn new(
        messages: Arc<dyn MessageStore>,
        groups: Arc<dyn GroupStore>,
        metrics: &Metrics,
    ) -> Self {
        // One statement per counter: `get_or_create` hands out a read guard that lives to
        // the end of its statement, and a second call in the same statement that has to
        // insert would wait for that guard forever.
        let counter = |family: &prometheus_client::metrics::family::Family<CacheLabel, Counter>,
                       cache: &'static str| {
            family.get_or_create(&CacheLabel { cache }).clone()
        };
        let list_hits = counter(&metrics.cache_hits, "conversations");
        let list_misses = counter(&metrics.cache_misses, "conversations");
        let page_hits = counter(&metrics.cache_hits, "messages");
        let page_misses = counter(&metrics.cache_misses, "messages");
        Cached {
            messages,
            groups,
            lists: Cache::new(CAPACITY),
            pages: Cache::new(CAPACITY),
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            list_hits,
            list_misses,
            page_hits,
            page_misses,
        }
    }

    fn stripe(&self, key: &Key) -> &AtomicU64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match key {
            Key::User(u) => (0u8, u).hash(&mut h),
            Key::Conv(c) => (1u8, c).hash(&mut h),
        }
        &self.generations[(h.finish() as usize) % STRIPES]
    }

    fn generation(&self, key: &Key) -> u64 {
        self.stripe(key).load(Ordering::Acquire)
    }

    fn invalidate_user(&self, user: UserId) {
        self.stripe(&Key::User(user)).fetch_add(1, Ordering::AcqRel);
        self.lists.invalidate(&user);
    }

    fn invalidate_conv(&self, conv: ConvId) {
        self.stripe(&Key::Conv(conv)).fetch_add(1, Ordering::AcqRel);
        self.pages.invalidate(&conv);
    }
}

#[async_trait]
impl MessageStore for Cached {
    fn name(&self) -> &'static str {
        self.messages.name()
    }

    async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        let conv = req.conv;
        let a = self.messages.append(req).await?;
        if !a.duplicate {
            self.invalidate_conv(conv);
            for &(user, _) in &a.inboxes {
                self.invalidate_user(user);
            }
        }
        Ok(a)
    }

    async fn append_all(&self, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        let convs: Vec<ConvId> = reqs.iter().map(|r| r.conv).collect();
        let out = self.messages.append_all(reqs).await;
        for (conv, a) in convs.into_iter().zip(&out) {
            if let Ok(a) = a
                && !a.duplicate
            {
                self.invalidate_conv(conv);
                for &(user, _) in &a.inboxes {
                    self.invalidate_user(user);
                }
            }
        }
        out
    }

    async fn history(
        &self,
        conv: ConvId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if before.is_some() || limit > RECENT_MESSAGES {
            return self.messages.history(conv, before, limit).await;
        }
        if let Some(page) = self.pages.get(&conv) {
            self.page_hits.inc();
            return Ok(page.iter().take(limit).cloned().collect());
        }
        self.page_misses.inc();
        let generation = self.generation(&Key::Conv(conv));
        let page = self.messages.history(conv, None, RECENT_MESSAGES).await?;
        let out = page.iter().take(limit).cloned().collect();
        if self.generation(&Key::Conv(conv)) == generation {
            self.pages.insert(conv, Arc::new(page));
        }
        Ok(out)
    }

    async fn inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        self.messages.inbox(user, after, limit).await
    }

    async fn inbox_head(&self, user: UserId) -> Result<u64, StoreError> {
        self.messages.inbox_head(user).await
    }

    async fn mark(
        &self,
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    ) -> Result<MarkOutcome, StoreError> {
        let m = self.messages.mark(user, conv, marker, seq).await?;
        if m.after > m.before {
            self.invalidate_user(user);
        }
        Ok(m)
    }

    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConvSummary>, StoreError> {
        if limit > RECENT_CONVERSATIONS {
            return self.messages.conversations(user, limit).await;
        }
        if let Some(list) = self.lists.get(&user) {
            self.list_hits.inc();
            return Ok(list.iter().take(limit).cloned().collect());
        }
        self.list_misses.inc();
        let generation = self.generation(&Key::User(user));
        let list = self
            .messages
            .conversations(user, RECENT_CONVERSATIONS)
            .await?;
        let out = list.iter().take(limit).cloned().collect();
        if self.generation(&Key::User(user)) == generation {
            self.lists.insert(user, Arc::new(list));
        }
        Ok(out)
    }

    async fn disk_bytes(&self) -> Result<Option<u64>, StoreError> {
        self.messages.disk_bytes().await
    }

    async fn storage(&self) -> Result<Option<StorageReport>, StoreError> {
        self.messages.storage().await
    }

    /// Settling may drop records (expired idempotency): nothing cached depends on them,
    /// but the pages are dropped anyway so nothing is served from before.
    async fn settle(&self) -> Result<(), StoreError> {
        self.messages.settle().await?;
        self.lists.invalidate_all();
        self.pages.invalidate_all();
        Ok(())
    }

    fn memory(&self) -> Option<crate::store::StoreMemory> {
        self.messages.memory()
    }

    fn writer_counts(&self) -> Option<crate::store::WriterCounts> {
        self.messages.writer_counts()
    }
}

#[async_trait]
impl GroupStore for Cached {
    async fn create_group(
        &self,
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    ) -> Result<Group, StoreError> {
        let g = self.groups.create_group(name, admin, members).await?;
        for &u in &g.members {
            self.invalidate_user(u);
        }
        Ok(g)
    }

    async fn group(&self, id: u64) -> Result<Option<Group>, StoreError> {
        self.groups.group(id).await
    }

    async fn change_members(&self, group: u64, change: MemberChange) -> Result<Group, StoreError> {
        let g = self.groups.change_members(group, change).await?;
        let (MemberChange::Add { user, .. } | MemberChange::Remove { user, .. }) = change;
        self.invalidate_user(user);
        Ok(g)
    }
}
