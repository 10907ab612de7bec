//! The write rules every key-value backend shares: how a send is sequenced and how a
//! cumulative marker moves. Backends provide typed table access ([`WriteTables`]); the
//! rules live here once, so `memory` and `fjall` cannot drift apart.
//!
//! The caller must run these functions one at a time per store (the memory store under its
//! lock, the fjall store on its single writer thread): that is what makes `seq` and
//! `useq` gap-free without any further coordination.

use serde::{Deserialize, Serialize};

use super::{
    AppendRequest, Appended, Group, MarkOutcome, Marker, MemberChange, StoreError, StoredMessage,
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

/// Per (user, conversation): the cumulative markers, and what it takes to count unread
/// messages exactly without scanning: the user's own messages after the read marker do not
/// count as unread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    pub ack: u64,
    pub read: u64,
    /// The seq of the user's newest own message in the conversation.
    pub last_own: u64,
    /// How many of the user's own messages have a seq above `read`.
    pub own_after_read: u64,
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
    let participants = participants(t, req.conv, req.from)?;
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
            // Sending moves no marker: in the crossing case the sender has not seen what
            // arrived just before. It only keeps its own message out of its unread count.
            sender_useq = useq;
            let mut marks = marks.unwrap_or_default();
            marks.last_own = seq;
            marks.own_after_read += 1;
            t.marks_put(user, req.conv, marks);
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

/// The participants of a send, the sender first: the two users of a direct chat, or the
/// current members of a group (the sender must be one). Checked before anything is written.
fn participants<T: WriteTables>(
    t: &mut T,
    conv: ConvId,
    from: UserId,
) -> Result<Vec<UserId>, StoreError> {
    match conv {
        ConvId::Direct { lo, hi } if from == lo => Ok(vec![lo, hi]),
        ConvId::Direct { lo, hi } if from == hi => Ok(vec![hi, lo]),
        ConvId::Direct { .. } => Err(StoreError::Forbidden(format!(
            "user {from} is not a participant of {conv}"
        ))),
        ConvId::Group(g) => {
            let group = t
                .group_get(g)?
                .ok_or_else(|| StoreError::NotFound(format!("no group {g}")))?;
            if !group.has(from) {
                return Err(StoreError::Forbidden(format!(
                    "user {from} is not a member of group {g}"
                )));
            }
            let mut list = Vec::with_capacity(group.members.len());
            list.push(from);
            list.extend(group.members.iter().copied().filter(|&u| u != from));
            Ok(list)
        }
    }
}

/// Creates a group with the next id; every member finds it in their conversation list.
pub fn create_group<T: WriteTables>(
    t: &mut T,
    name: &str,
    admin: UserId,
    members: &[UserId],
) -> Result<Group, StoreError> {
    let id = t.last_group_id()? + 1;
    let mut list: Vec<UserId> = members.to_vec();
    list.push(admin);
    list.sort_unstable();
    list.dedup();
    let group = Group {
        id,
        name: name.to_owned(),
        admin,
        members: list,
    };
    t.last_group_id_put(id);
    t.group_put(&group);
    for &user in &group.members {
        if t.marks_get(user, ConvId::Group(id))?.is_none() {
            t.marks_put(user, ConvId::Group(id), Marks::default());
        }
    }
    Ok(group)
}

/// Applies a membership change after checking the caller's right to make it.
pub fn change_members<T: WriteTables>(
    t: &mut T,
    id: u64,
    change: MemberChange,
) -> Result<Group, StoreError> {
    let mut group = t
        .group_get(id)?
        .ok_or_else(|| StoreError::NotFound(format!("no group {id}")))?;
    let conv = ConvId::Group(id);
    match change {
        MemberChange::Add {
            by,
            user,
            max_members,
        } => {
            if by != group.admin {
                return Err(StoreError::Forbidden("only the admin adds members".into()));
            }
            let Err(at) = group.members.binary_search(&user) else {
                return Err(StoreError::Invalid(format!(
                    "user {user} is already a member"
                )));
            };
            if group.members.len() >= max_members {
                return Err(StoreError::Invalid(format!(
                    "the group is full ({max_members} members)"
                )));
            }
            group.members.insert(at, user);
            // A new member sees the group from now on; its history up to now too.
            if t.marks_get(user, conv)?.is_none() {
                t.marks_put(user, conv, Marks::default());
            }
        }
        MemberChange::Remove { by, user } => {
            if by != group.admin && by != user {
                return Err(StoreError::Forbidden(
                    "only the admin removes others; anyone may leave".into(),
                ));
            }
            let Ok(at) = group.members.binary_search(&user) else {
                return Err(StoreError::Invalid(format!("user {user} is not a member")));
            };
            group.members.remove(at);
            if user == group.admin
                && let Some(&next) = group.members.first()
            {
                group.admin = next;
            }
            t.marks_remove(user, conv);
        }
    }
    t.group_put(&group);
    Ok(group)
}

/// Moves a cumulative marker forward (never back). A seq past the conversation's last
/// message is refused: a client cannot acknowledge what does not exist yet.
pub fn mark<T: WriteTables>(
    t: &mut T,
    user: UserId,
    conv: ConvId,
    marker: Marker,
    seq: u64,
) -> Result<MarkOutcome, StoreError> {
    let last = t.conv_get(conv)?.last_seq;
    if seq > last {
        return Err(StoreError::Invalid(format!(
            "seq {seq} is beyond the last message of {conv} ({last})"
        )));
    }
    let mut marks = t.marks_get(user, conv)?.unwrap_or_default();
    let slot = match marker {
        Marker::Ack => &mut marks.ack,
        Marker::Read => &mut marks.read,
    };
    let before = *slot;
    if seq > before {
        *slot = seq;
        if marker == Marker::Read {
            // Reading implies delivery: a read marker drags the ack marker along.
            marks.ack = marks.ack.max(seq);
            marks.own_after_read = if seq >= marks.last_own {
                0
            } else {
                t.count_from(conv, seq, marks.last_own, user)?
            };
        }
        t.marks_put(user, conv, marks);
    }
    Ok(MarkOutcome {
        before,
        after: before.max(seq),
    })
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

/// Messages from others after the read marker.
pub fn unread(last_seq: u64, marks: &Marks) -> u64 {
    last_seq
        .saturating_sub(marks.read)
        .saturating_sub(marks.own_after_read)
}
