//! Sequencing on a key-value backend: a send, a group change or a marker move applied to
//! typed table access ([`WriteTables`]) with the rules of [`super::rules`]. Memory, fjall
//! and the CQL sequencer provide the tables; the order of reads and writes lives here once.
//!
//! The caller must run these functions one at a time per store (the memory store under its
//! lock, the fjall store on its single writer thread): that is what makes `seq` and
//! `useq` gap-free without any further coordination.

use serde::{Deserialize, Serialize};

use super::rules::{self, Marks, Membership};
use super::{
    AppendRequest, Appended, Group, MarkOutcome, Marker, MemberChange, Refusal, StoreError,
    StoredMessage,
};
use crate::model::{ConvId, UserId};

/// The outcome of the first send of a (user, client id) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemRecord {
    pub conv: ConvKey,
    pub seq: u64,
    pub useq: u64,
    pub ts: u64,
}

/// Per conversation: its last seq and the time of its last message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvMeta {
    pub last_seq: u64,
    pub last_ts: u64,
}

/// A [`ConvId`] in a serializable form for stored records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConvKey {
    Direct(u64, u64),
    Group(u64),
}

impl From<ConvId> for ConvKey {
    fn from(c: ConvId) -> Self {
        match c {
            ConvId::Direct { lo, hi } => ConvKey::Direct(lo, hi),
            ConvId::Group(g) => ConvKey::Group(g),
        }
    }
}

impl From<ConvKey> for ConvId {
    fn from(c: ConvKey) -> Self {
        match c {
            ConvKey::Direct(lo, hi) => ConvId::Direct { lo, hi },
            ConvKey::Group(g) => ConvId::Group(g),
        }
    }
}

/// Typed access to the tables of a key-value backend, as seen by one writer. Reads must
/// see the writes made earlier through the same value (a batch not yet committed).
pub trait WriteTables {
    fn idem_get(&mut self, user: UserId, id: &str) -> Result<Option<IdemRecord>, StoreError>;
    fn idem_put(&mut self, user: UserId, id: &str, rec: IdemRecord);
    fn conv_get(&mut self, conv: ConvId) -> Result<ConvMeta, StoreError>;
    fn conv_put(&mut self, conv: ConvId, meta: ConvMeta);
    fn last_useq(&mut self, user: UserId) -> Result<u64, StoreError>;
    fn last_useq_put(&mut self, user: UserId, useq: u64);
    /// `None` when the user has no entry for the conversation (it is not in their list).
    fn marks_get(&mut self, user: UserId, conv: ConvId) -> Result<Option<Marks>, StoreError>;
    fn marks_put(&mut self, user: UserId, conv: ConvId, marks: Marks);
    /// Takes the conversation out of the user's list (they left the group).
    fn marks_remove(&mut self, user: UserId, conv: ConvId);
    fn group_get(&mut self, id: u64) -> Result<Option<Group>, StoreError>;
    fn group_put(&mut self, group: &Group);
    /// The last group id handed out (0 when none).
    fn last_group_id(&mut self) -> Result<u64, StoreError>;
    fn last_group_id_put(&mut self, id: u64);
    fn message_put(&mut self, msg: &StoredMessage);
    /// How many messages of `conv` with `after < seq <= upto` were sent by `user`.
    fn count_from(
        &mut self,
        conv: ConvId,
        after: u64,
        upto: u64,
        user: UserId,
    ) -> Result<u64, StoreError>;
    fn inbox_put(&mut self, user: UserId, useq: u64, conv: ConvId, seq: u64);
}

/// Sequences and stores one send: the conversation's next seq, each participant's next
/// useq, the conversation in every participant's list, and the idempotency record.
pub fn append<T: WriteTables>(t: &mut T, req: &AppendRequest) -> Result<Appended, StoreError> {
    if let Some(rec) = t.idem_get(req.from, req.id.as_str())? {
        return Ok(Appended {
            conv: rec.conv.into(),
            seq: rec.seq,
            useq: rec.useq,
            ts: rec.ts,
            inboxes: Vec::new(),
            duplicate: true,
        });
    }
    let group = match req.conv {
        ConvId::Group(g) => t.group_get(g)?,
        ConvId::Direct { .. } => None,
    };
    let participants = rules::participants(req.conv, req.from, group.as_ref())?;
    let mut meta = t.conv_get(req.conv)?;
    meta.last_seq += 1;
    meta.last_ts = meta.last_ts.max(req.ts);
    let seq = meta.last_seq;
    t.conv_put(req.conv, meta);
    t.message_put(&StoredMessage {
        conv: req.conv,
        seq,
        from: req.from,
        id: req.id.as_str().to_owned(),
        body: req.body.clone(),
        ts: req.ts,
    });
    let mut inboxes = Vec::with_capacity(participants.len());
    let mut sender_useq = 0;
    for &user in &participants {
        let useq = t.last_useq(user)? + 1;
        t.last_useq_put(user, useq);
        t.inbox_put(user, useq, req.conv, seq);
        let marks = t.marks_get(user, req.conv)?;
        if user == req.from {
            sender_useq = useq;
            t.marks_put(user, req.conv, rules::after_own_send(marks, seq));
        } else if marks.is_none() {
            // The first message puts the conversation in the recipient's list.
            t.marks_put(user, req.conv, Marks::default());
        }
        inboxes.push((user, useq));
    }
    t.idem_put(
        req.from,
        req.id.as_str(),
        IdemRecord {
            conv: req.conv.into(),
            seq,
            useq: sender_useq,
            ts: req.ts,
        },
    );
    Ok(Appended {
        conv: req.conv,
        seq,
        useq: sender_useq,
        ts: req.ts,
        inboxes,
        duplicate: false,
    })
}

/// Creates a group with the next id; every member finds it in their conversation list.
pub fn create_group<T: WriteTables>(
    t: &mut T,
    name: &str,
    admin: UserId,
    members: &[UserId],
) -> Result<Group, StoreError> {
    let id = t.last_group_id()? + 1;
    let group = rules::new_group(id, name, admin, members);
    t.last_group_id_put(id);
    t.group_put(&group);
    for &user in &group.members {
        if t.marks_get(user, ConvId::Group(id))?.is_none() {
            t.marks_put(user, ConvId::Group(id), Marks::default());
        }
    }
    Ok(group)
}

/// Applies a membership change with [`rules::change_members`] and updates the
/// conversation list of the user it concerns.
pub fn change_members<T: WriteTables>(
    t: &mut T,
    id: u64,
    change: MemberChange,
) -> Result<Group, StoreError> {
    let mut group = t.group_get(id)?.ok_or(Refusal::NoGroup(id))?;
    let conv = ConvId::Group(id);
    match rules::change_members(&mut group, change)? {
        Membership::Joined(user) => {
            if t.marks_get(user, conv)?.is_none() {
                t.marks_put(user, conv, Marks::default());
            }
        }
        Membership::Left(user) => t.marks_remove(user, conv),
    }
    t.group_put(&group);
    Ok(group)
}

/// Moves a cumulative marker with [`rules::move_marker`].
pub fn mark<T: WriteTables>(
    t: &mut T,
    user: UserId,
    conv: ConvId,
    marker: Marker,
    seq: u64,
) -> Result<MarkOutcome, StoreError> {
    let last = t.conv_get(conv)?.last_seq;
    let mut marks = t.marks_get(user, conv)?.unwrap_or_default();
    let step = rules::move_marker(conv, last, &mut marks, marker, seq)?;
    if let Some((after, upto)) = step.recount {
        marks.own_after_read = t.count_from(conv, after, upto, user)?;
    }
    if step.moved() {
        t.marks_put(user, conv, marks);
    }
    Ok(step.outcome)
}

/// How many of `pending` — (conversation, seq, sender) of messages a writer has sequenced
/// but not yet committed — are `user`'s in `conv` with `after < seq <= upto`: the part of
/// [`WriteTables::count_from`] that the committed tables cannot answer yet.
pub fn own_pending(
    pending: &[(ConvId, u64, UserId)],
    conv: ConvId,
    after: u64,
    upto: u64,
    user: UserId,
) -> u64 {
    pending
        .iter()
        .filter(|&&(c, seq, from)| c == conv && seq > after && seq <= upto && from == user)
        .count() as u64
}

/// Encodes a stored record compactly (varints).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail.
    postcard::to_allocvec(v).unwrap_or_default()
}

/// Decodes a stored record, reporting damage as [`StoreError::Corrupt`].
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}
