//! The write rules of the chat, as pure functions on values: who takes part in a send,
//! how a group is formed and changed, how a cumulative marker moves, what counts as
//! unread. Every backend calls these — memory, fjall and CQL through
//! [`super::sequencing`], PostgreSQL inside its transactions — so no backend can answer a
//! send, a membership change or a marker differently from another.
//!
//! Nothing here reads or writes a table: the caller loads the values (under whatever
//! lock or sequencer makes them current), applies a rule, and stores what it returns.

use serde::{Deserialize, Serialize};

use super::{Group, MarkOutcome, Marker, MemberChange, Refusal};
use crate::model::{ConvId, UserId};

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

/// The participants of a send, the sender first: the two users of a direct chat, or the
/// current members of a group (`group`: the conversation's group as stored now, `None`
/// when it does not exist). Checked before anything is written.
pub fn participants(
    conv: ConvId,
    from: UserId,
    group: Option<&Group>,
) -> Result<Vec<UserId>, Refusal> {
    match conv {
        ConvId::Direct { lo, hi } if from == lo => Ok(vec![lo, hi]),
        ConvId::Direct { lo, hi } if from == hi => Ok(vec![hi, lo]),
        ConvId::Direct { .. } => Err(Refusal::NotParticipant { user: from, conv }),
        ConvId::Group(g) => {
            let group = group.ok_or(Refusal::NoGroup(g))?;
            if !group.has(from) {
                return Err(Refusal::NotMember {
                    user: from,
                    group: g,
                });
            }
            let mut list = Vec::with_capacity(group.members.len());
            list.push(from);
            list.extend(group.members.iter().copied().filter(|&u| u != from));
            Ok(list)
        }
    }
}

/// The sender's markers after its own message `seq`: sending moves no marker (in the
/// crossing case the sender has not seen what arrived just before); it only keeps its own
/// message out of its unread count.
pub fn after_own_send(marks: Option<Marks>, seq: u64) -> Marks {
    let mut marks = marks.unwrap_or_default();
    marks.last_own = seq;
    marks.own_after_read += 1;
    marks
}

/// A new group with id `id`: the admin is a member, members ascending and distinct.
pub fn new_group(id: u64, name: &str, admin: UserId, members: &[UserId]) -> Group {
    let mut list: Vec<UserId> = members.to_vec();
    list.push(admin);
    list.sort_unstable();
    list.dedup();
    Group {
        id,
        name: name.to_owned(),
        admin,
        members: list,
    }
}

/// What a membership change did, for the conversation lists of the users concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// The user joined: the group goes into their list (its history up to now too).
    Joined(UserId),
    /// The user left or was removed: the group leaves their list.
    Left(UserId),
}

/// Applies a membership change to `group` after checking the caller's right to make it.
/// When the admin leaves, the lowest remaining user id becomes admin.
pub fn change_members(group: &mut Group, change: MemberChange) -> Result<Membership, Refusal> {
    match change {
        MemberChange::Add {
            by,
            user,
            max_members,
        } => {
            if by != group.admin {
                return Err(Refusal::AdminAdds);
            }
            let Err(at) = group.members.binary_search(&user) else {
                return Err(Refusal::AlreadyMember(user));
            };
            if group.members.len() >= max_members {
                return Err(Refusal::GroupFull(max_members));
            }
            group.members.insert(at, user);
            Ok(Membership::Joined(user))
        }
        MemberChange::Remove { by, user } => {
            if by != group.admin && by != user {
                return Err(Refusal::AdminRemoves);
            }
            let Ok(at) = group.members.binary_search(&user) else {
                return Err(Refusal::NoSuchMember(user));
            };
            group.members.remove(at);
            if user == group.admin
                && let Some(&next) = group.members.first()
            {
                group.admin = next;
            }
            Ok(Membership::Left(user))
        }
    }
}

/// A marker move decided by [`move_marker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerMove {
    pub outcome: MarkOutcome,
    /// The user's own messages with `after < seq <= upto` must be counted by the caller
    /// into `own_after_read` (a read marker stopped short of the user's newest own
    /// message). `None` when the rule settled the count itself.
    pub recount: Option<(u64, u64)>,
}

impl MarkerMove {
    /// Whether the marker moved, so the markers must be stored.
    pub fn moved(&self) -> bool {
        self.outcome.after > self.outcome.before
    }
}

/// Moves a cumulative marker forward (never back) in `marks`. A seq past the
/// conversation's last message (`last_seq`) is refused: a client cannot acknowledge what
/// does not exist yet. Reading implies delivery: a read marker drags the ack marker along.
pub fn move_marker(
    conv: ConvId,
    last_seq: u64,
    marks: &mut Marks,
    marker: Marker,
    seq: u64,
) -> Result<MarkerMove, Refusal> {
    if seq > last_seq {
        return Err(Refusal::BeyondLast {
            seq,
            conv,
            last: last_seq,
        });
    }
    let slot = match marker {
        Marker::Ack => &mut marks.ack,
        Marker::Read => &mut marks.read,
    };
    let before = *slot;
    let mut recount = None;
    if seq > before {
        *slot = seq;
        if marker == Marker::Read {
            marks.ack = marks.ack.max(seq);
            if seq >= marks.last_own {
                marks.own_after_read = 0;
            } else {
                recount = Some((seq, marks.last_own));
            }
        }
    }
    Ok(MarkerMove {
        outcome: MarkOutcome {
            before,
            after: before.max(seq),
            last_own: marks.last_own,
        },
        recount,
    })
}

/// Messages from others after the read marker.
pub fn unread(last_seq: u64, marks: &Marks) -> u64 {
    last_seq
        .saturating_sub(marks.read)
        .saturating_sub(marks.own_after_read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(admin: UserId, members: &[UserId]) -> Group {
        new_group(7, "g", admin, members)
    }

    #[test]
    fn participants_put_the_sender_first_and_refuse_outsiders() {
        let d = ConvId::direct(1, 2).unwrap();
        assert_eq!(participants(d, 2, None).unwrap(), vec![2, 1]);
        assert_eq!(
            participants(d, 3, None),
            Err(Refusal::NotParticipant { user: 3, conv: d })
        );
        let g = group(5, &[1, 9]);
        assert_eq!(
            participants(ConvId::Group(7), 9, Some(&g)).unwrap(),
            vec![9, 1, 5]
        );
        assert_eq!(
            participants(ConvId::Group(7), 4, Some(&g)),
            Err(Refusal::NotMember { user: 4, group: 7 })
        );
        assert_eq!(
            participants(ConvId::Group(8), 1, None),
            Err(Refusal::NoGroup(8))
        );
    }

    #[test]
    fn membership_rules() {
        let mut g = group(5, &[1]);
        let add = |by, user| MemberChange::Add {
            by,
            user,
            max_members: 3,
        };
        assert_eq!(change_members(&mut g, add(1, 2)), Err(Refusal::AdminAdds));
        assert_eq!(
            change_members(&mut g, add(5, 1)),
            Err(Refusal::AlreadyMember(1))
        );
        assert_eq!(change_members(&mut g, add(5, 2)), Ok(Membership::Joined(2)));
        assert_eq!(
            change_members(&mut g, add(5, 3)),
            Err(Refusal::GroupFull(3))
        );
        let remove = |by, user| MemberChange::Remove { by, user };
        assert_eq!(
            change_members(&mut g, remove(1, 2)),
            Err(Refusal::AdminRemoves)
        );
        assert_eq!(
            change_members(&mut g, remove(5, 4)),
            Err(Refusal::NoSuchMember(4))
        );
        assert_eq!(
            change_members(&mut g, remove(5, 5)),
            Ok(Membership::Left(5))
        );
        assert_eq!((g.admin, g.members.clone()), (1, vec![1, 2]));
    }

    #[test]
    fn markers_move_forward_only_and_read_drags_ack() {
        let conv = ConvId::direct(1, 2).unwrap();
        let mut m = Marks::default();
        assert!(matches!(
            move_marker(conv, 3, &mut m, Marker::Ack, 4),
            Err(Refusal::BeyondLast { last: 3, .. })
        ));
        let mv = move_marker(conv, 3, &mut m, Marker::Read, 2).unwrap();
        assert!(mv.moved() && mv.recount.is_none());
        assert_eq!((m.ack, m.read), (2, 2));
        let back = move_marker(conv, 3, &mut m, Marker::Ack, 1).unwrap();
        assert!(!back.moved());
        assert_eq!(
            back.outcome,
            MarkOutcome {
                before: 2,
                after: 2,
                last_own: 0
            }
        );
        let mut own = after_own_send(Some(m), 3);
        assert_eq!((own.last_own, own.own_after_read), (3, 1));
        let mv = move_marker(conv, 5, &mut own, Marker::Read, 2).unwrap();
        assert!(!mv.moved());
        let mut own = after_own_send(Some(own), 5);
        let mv = move_marker(conv, 5, &mut own, Marker::Read, 4).unwrap();
        assert_eq!(mv.recount, Some((4, 5)));
        assert_eq!(
            unread(
                5,
                &Marks {
                    read: 4,
                    own_after_read: 1,
                    ..own
                }
            ),
            0
        );
    }
}
