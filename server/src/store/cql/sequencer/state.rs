//! The sequencer's state: the committed counters and markers ([`Cache`]), what one batch
//! read ([`Fetched`]), and the overlay one pass applies the shared rules to ([`Pass`]),
//! recording the rows to write and the values it lacked.

use std::collections::{HashMap, HashSet};

use scylla::value::CqlValue;

use super::super::{big, conv_text};
use super::{META_LAST_DEAD, META_LAST_GROUP};
use crate::model::{ConvId, UserId};
use crate::store::rules::Marks;
use crate::store::sequencing::{self, ConvMeta, IdemRecord, WriteTables};
use crate::store::{DeadLetter, Group, PushRegistration, StoreError, bucket_of};

/// Counters and markers as Cassandra holds them (everything acknowledged), loaded lazily.
#[derive(Default)]
pub(super) struct Cache {
    pub(super) convs: HashMap<ConvId, ConvMeta>,
    pub(super) users: HashMap<UserId, u64>,
    /// `None`: known to have no row.
    pub(super) marks: HashMap<(UserId, ConvId), Option<Marks>>,
    pub(super) groups: HashMap<u64, Option<Group>>,
    pub(super) last_group: Option<u64>,
    pub(super) last_dead: Option<u64>,
}

impl Cache {
    pub(super) fn len(&self) -> usize {
        self.convs.len() + self.users.len() + self.marks.len() + self.groups.len()
    }
}

/// What one batch read that is not worth keeping beyond it.
#[derive(Default)]
pub(super) struct Fetched {
    /// Idempotency records, already checked against the committed state.
    pub(super) idem: HashMap<(UserId, String), Option<IdemRecord>>,
    /// Messages of `user` in `conv` with `after < seq <= upto`, committed ones only.
    pub(super) counts: HashMap<(ConvId, u64, u64, UserId), u64>,
}

/// A value a pass needed and did not have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Need {
    Idem(UserId, String),
    Conv(ConvId),
    User(UserId),
    Marks(UserId, ConvId),
    Group(u64),
    Meta(&'static str),
    Count(ConvId, u64, u64, UserId),
}

/// A row to write: which statement, with which values.
#[derive(Clone)]
pub(super) struct Row {
    pub(super) stmt: Stmt,
    pub(super) values: Vec<CqlValue>,
}

#[derive(Clone, Copy)]
pub(super) enum Stmt {
    Message,
    Inbox,
    Idem,
    Dead,
    DeleteDead,
    Push,
    Conv,
    User,
    Marks,
    DeleteMarks,
    Group,
    Meta,
}

impl Row {
    /// Rough size of the row's values, for the store's own size accounting.
    pub(super) fn bytes(&self) -> u64 {
        self.values
            .iter()
            .map(|v| match v {
                CqlValue::Text(s) => s.len() as u64 + 2,
                CqlValue::List(l) => 8 * l.len() as u64 + 4,
                _ => 8,
            })
            .sum()
    }
}

/// One pass over a batch: an overlay of the committed state with read-your-writes, the
/// rows to write, and the values that were missing.
pub(super) struct Pass<'a> {
    pub(super) cache: &'a Cache,
    pub(super) fetched: &'a Fetched,
    pub(super) missing: HashSet<Need>,
    pub(super) convs: HashMap<ConvId, ConvMeta>,
    pub(super) users: HashMap<UserId, u64>,
    /// `None`: removed.
    pub(super) marks: HashMap<(UserId, ConvId), Option<Marks>>,
    pub(super) groups: HashMap<u64, Group>,
    pub(super) last_group: Option<u64>,
    pub(super) last_dead: Option<u64>,
    pub(super) idem: HashMap<(UserId, String), IdemRecord>,
    /// (conversation, seq, sender) of the messages of this pass.
    pub(super) msgs: Vec<(ConvId, u64, UserId)>,
    pub(super) data: Vec<Row>,
}

impl<'a> Pass<'a> {
    pub(super) fn new(cache: &'a Cache, fetched: &'a Fetched) -> Self {
        Pass {
            cache,
            fetched,
            missing: HashSet::new(),
            convs: HashMap::new(),
            users: HashMap::new(),
            marks: HashMap::new(),
            groups: HashMap::new(),
            last_group: None,
            last_dead: None,
            idem: HashMap::new(),
            msgs: Vec::new(),
            data: Vec::new(),
        }
    }

    pub(super) fn counter_rows_len(&self) -> usize {
        self.convs.len()
            + self.users.len()
            + self.marks.len()
            + self
                .groups
                .values()
                .map(|g| 1 + g.members.len() / 8)
                .sum::<usize>()
            + 2
    }

    /// Phase 2: the counters and markers this pass moved.
    pub(super) fn counter_rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (conv, m) in &self.convs {
            rows.push(Row {
                stmt: Stmt::Conv,
                values: vec![
                    big(m.last_seq),
                    big(m.last_ts),
                    CqlValue::Text(conv_text(*conv)),
                ],
            });
        }
        for (user, useq) in &self.users {
            rows.push(Row {
                stmt: Stmt::User,
                values: vec![big(*useq), big(*user)],
            });
        }
        for ((user, conv), marks) in &self.marks {
            rows.push(match marks {
                Some(m) => Row {
                    stmt: Stmt::Marks,
                    values: vec![
                        big(*user),
                        CqlValue::Text(conv_text(*conv)),
                        big(m.ack),
                        big(m.read),
                        big(m.last_own),
                        big(m.own_after_read),
                    ],
                },
                None => Row {
                    stmt: Stmt::DeleteMarks,
                    values: vec![big(*user), CqlValue::Text(conv_text(*conv))],
                },
            });
        }
        for g in self.groups.values() {
            rows.push(Row {
                stmt: Stmt::Group,
                values: vec![
                    big(g.id),
                    CqlValue::Text(g.name.clone()),
                    big(g.admin),
                    CqlValue::List(g.members.iter().map(|&u| big(u)).collect()),
                ],
            });
        }
        for (name, v) in [
            (META_LAST_GROUP, self.last_group),
            (META_LAST_DEAD, self.last_dead),
        ] {
            if let Some(v) = v {
                rows.push(Row {
                    stmt: Stmt::Meta,
                    values: vec![big(v), CqlValue::Text(name.to_owned())],
                });
            }
        }
        rows
    }

    pub(super) fn meta(&mut self, name: &'static str) -> u64 {
        let (overlay, cached) = match name {
            META_LAST_GROUP => (self.last_group, self.cache.last_group),
            _ => (self.last_dead, self.cache.last_dead),
        };
        overlay.or(cached).unwrap_or_else(|| {
            self.missing.insert(Need::Meta(name));
            0
        })
    }

    pub(super) fn put_dead_letter(&mut self, letter: &DeadLetter) -> u64 {
        let id = self.meta(META_LAST_DEAD) + 1;
        self.last_dead = Some(id);
        self.data.push(Row {
            stmt: Stmt::Dead,
            values: vec![
                big(bucket_of(id)),
                big(id),
                CqlValue::Text(letter.payload.clone()),
                CqlValue::Text(letter.error.clone()),
                big(letter.ts),
            ],
        });
        id
    }

    /// A push registration: not sequenced, but written by the sequencer so that in shared
    /// mode it carries the epoch's timestamps (a later registration wins on every node).
    pub(super) fn put_push(&mut self, reg: &PushRegistration) {
        self.data.push(Row {
            stmt: Stmt::Push,
            values: vec![
                big(reg.user),
                CqlValue::Text(reg.device.clone()),
                CqlValue::Text(reg.platform.clone()),
                CqlValue::Text(reg.token.clone()),
            ],
        });
    }

    /// Forgets a dead letter, for the same reason through the sequencer: the delete must
    /// be stamped after the insert, which an epoch of another node may have made.
    pub(super) fn remove_dead_letter(&mut self, id: u64) {
        self.data.push(Row {
            stmt: Stmt::DeleteDead,
            values: vec![big(bucket_of(id)), big(id)],
        });
    }
}

impl WriteTables for Pass<'_> {
    fn idem_get(&mut self, user: UserId, id: &str) -> Result<Option<IdemRecord>, StoreError> {
        let key = (user, id.to_owned());
        if let Some(r) = self.idem.get(&key) {
            return Ok(Some(*r));
        }
        match self.fetched.idem.get(&key) {
            Some(r) => Ok(*r),
            None => {
                self.missing.insert(Need::Idem(user, key.1));
                Ok(None)
            }
        }
    }
    fn idem_put(&mut self, user: UserId, id: &str, rec: IdemRecord) {
        let conv: ConvId = rec.conv.into();
        self.data.push(Row {
            stmt: Stmt::Idem,
            values: vec![
                big(user),
                CqlValue::Text(id.to_owned()),
                CqlValue::Text(conv_text(conv)),
                big(rec.seq),
                big(rec.useq),
                big(rec.ts),
            ],
        });
        self.idem.insert((user, id.to_owned()), rec);
    }
    fn conv_get(&mut self, conv: ConvId) -> Result<ConvMeta, StoreError> {
        if let Some(m) = self
            .convs
            .get(&conv)
            .or_else(|| self.cache.convs.get(&conv))
        {
            return Ok(*m);
        }
        self.missing.insert(Need::Conv(conv));
        Ok(ConvMeta::default())
    }
    fn conv_put(&mut self, conv: ConvId, meta: ConvMeta) {
        self.convs.insert(conv, meta);
    }
    fn last_useq(&mut self, user: UserId) -> Result<u64, StoreError> {
        if let Some(u) = self
            .users
            .get(&user)
            .or_else(|| self.cache.users.get(&user))
        {
            return Ok(*u);
        }
        self.missing.insert(Need::User(user));
        Ok(0)
    }
    fn last_useq_put(&mut self, user: UserId, useq: u64) {
        self.users.insert(user, useq);
    }
    fn marks_get(&mut self, user: UserId, conv: ConvId) -> Result<Option<Marks>, StoreError> {
        let key = (user, conv);
        if let Some(m) = self.marks.get(&key).or_else(|| self.cache.marks.get(&key)) {
            return Ok(*m);
        }
        self.missing.insert(Need::Marks(user, conv));
        Ok(None)
    }
    fn marks_put(&mut self, user: UserId, conv: ConvId, marks: Marks) {
        self.marks.insert((user, conv), Some(marks));
    }
    fn marks_remove(&mut self, user: UserId, conv: ConvId) {
        self.marks.insert((user, conv), None);
    }
    fn group_get(&mut self, id: u64) -> Result<Option<Group>, StoreError> {
        if let Some(g) = self.groups.get(&id) {
            return Ok(Some(g.clone()));
        }
        if let Some(g) = self.cache.groups.get(&id) {
            return Ok(g.clone());
        }
        self.missing.insert(Need::Group(id));
        Ok(None)
    }
    fn group_put(&mut self, group: &Group) {
        self.groups.insert(group.id, group.clone());
    }
    fn last_group_id(&mut self) -> Result<u64, StoreError> {
        Ok(self.meta(META_LAST_GROUP))
    }
    fn last_group_id_put(&mut self, id: u64) {
        self.last_group = Some(id);
    }
    fn message_put(&mut self, msg: &crate::store::StoredMessage) {
        self.data.push(Row {
            stmt: Stmt::Message,
            values: vec![
                CqlValue::Text(conv_text(msg.conv)),
                big(bucket_of(msg.seq)),
                big(msg.seq),
                big(msg.from),
                CqlValue::Text(msg.id.clone()),
                CqlValue::Text(msg.body.clone()),
                big(msg.ts),
            ],
        });
        self.msgs.push((msg.conv, msg.seq, msg.from));
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
        // Messages of this pass are not in Cassandra yet; committed ones are not here.
        let mut n = sequencing::own_pending(&self.msgs, conv, after, upto, user);
        let Some(committed) = self.cache.convs.get(&conv).map(|m| m.last_seq) else {
            self.missing.insert(Need::Conv(conv));
            return Ok(n);
        };
        let hi = upto.min(committed);
        if after < hi {
            match self.fetched.counts.get(&(conv, after, hi, user)) {
                Some(c) => n += c,
                None => {
                    self.missing.insert(Need::Count(conv, after, hi, user));
                }
            }
        }
        Ok(n)
    }
    fn inbox_put(&mut self, user: UserId, useq: u64, conv: ConvId, seq: u64) {
        self.data.push(Row {
            stmt: Stmt::Inbox,
            values: vec![
                big(user),
                big(bucket_of(useq)),
                big(useq),
                CqlValue::Text(conv_text(conv)),
                big(seq),
            ],
        });
    }
}

/// The counter-side writes of a pass, kept to update the committed state once acknowledged.
pub(super) struct Overlay {
    pub(super) convs: HashMap<ConvId, ConvMeta>,
    pub(super) users: HashMap<UserId, u64>,
    pub(super) marks: HashMap<(UserId, ConvId), Option<Marks>>,
    pub(super) groups: HashMap<u64, Group>,
    pub(super) last_group: Option<u64>,
    pub(super) last_dead: Option<u64>,
}

impl From<Pass<'_>> for Overlay {
    fn from(p: Pass<'_>) -> Self {
        Overlay {
            convs: p.convs,
            users: p.users,
            marks: p.marks,
            groups: p.groups,
            last_group: p.last_group,
            last_dead: p.last_dead,
        }
    }
}

impl Overlay {
    pub(super) fn apply(self, cache: &mut Cache) {
        cache.convs.extend(self.convs);
        cache.users.extend(self.users);
        cache.marks.extend(self.marks);
        cache
            .groups
            .extend(self.groups.into_iter().map(|(id, g)| (id, Some(g))));
        if self.last_group.is_some() {
            cache.last_group = self.last_group;
        }
        if self.last_dead.is_some() {
            cache.last_dead = self.last_dead;
        }
    }
}
