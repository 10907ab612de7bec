//! The writing transactions: a send, a new group, a membership change and a marker move,
//! each one transaction with its row locks taken in the order the module documentation of
//! [`super`] gives, and each decided by the shared [`rules`].

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;

use super::failure::{Failure, corrupt};
use super::rows::{
    conv_of, execute, get, id, id_of, int, marks_of, members_of, query, query_opt, u64_of, utf8_of,
};
use crate::model::{ConvId, UserId};
use crate::store::rules::{self, Marks, Membership};
use crate::store::{
    AppendRequest, Appended, Group, MarkOutcome, Marker, MemberChange, Refusal, StoreError,
};

/// The idempotency record of (sender, client id), with its conversation's key.
pub(super) const IDEM_GET: &str =
    "SELECT c.key, i.seq, i.useq, i.ts FROM idem i JOIN convs c ON c.id = i.conv_id
     WHERE i.user_id = $1 AND i.client_id = $2";

/// Locks a group's row: sends and membership changes of the group are ordered by it.
pub(super) const GROUP_LOCK: &str =
    "SELECT name, admin, members FROM groups WHERE id = $1 FOR UPDATE";

/// Takes the conversation's next seq, locking its row to the end of the transaction.
pub(super) const CONV_BUMP: &str =
    "UPDATE convs SET last_seq = last_seq + 1, last_ts = GREATEST(last_ts, $2)
     WHERE key = $1 RETURNING id, last_seq";

/// The first message of a conversation creates its row (locked, as the insert's own).
pub(super) const CONV_FIRST: &str = "INSERT INTO convs (key, last_seq, last_ts) VALUES ($1, 1, $2)
     ON CONFLICT (key) DO NOTHING RETURNING id, last_seq";

/// Everything else a send writes, in one round trip: each participant's next useq (their
/// `users` rows locked in the order of the array, which is ascending: `unnest` yields the
/// ids in order and the insert handles, and locks, each row before it reads the next); the
/// message; an inbox entry per participant; the markers (the sender's own message is kept
/// out of its unread count; the first message puts the conversation in a recipient's
/// list); and the idempotency record, whose primary key catches a concurrent copy of the
/// same send. Returns each participant's new useq.
pub(super) const APPEND_WRITE: &str = "WITH u AS (
         INSERT INTO users (user_id, last_useq)
         SELECT u, 1 FROM unnest($7::bigint[]) AS p(u)
         ON CONFLICT (user_id) DO UPDATE SET last_useq = users.last_useq + 1
         RETURNING user_id, last_useq
     ), msg AS (
         INSERT INTO messages (conv_id, seq, sender, ts, client_id, body)
         VALUES ($1, $2, $3, $4, $5, $6)
     ), inb AS (
         INSERT INTO inbox (user_id, useq, conv_id, seq) SELECT user_id, last_useq, $1, $2 FROM u
     ), mk AS (
         INSERT INTO marks (user_id, conv_id, ack, read, last_own, own_after_read)
         SELECT u, $1, 0, 0,
                CASE WHEN u = $3::bigint THEN $2::bigint ELSE 0 END,
                CASE WHEN u = $3::bigint THEN 1 ELSE 0 END
         FROM unnest($7::bigint[]) AS p(u)
         ON CONFLICT (user_id, conv_id) DO UPDATE
             SET last_own = EXCLUDED.last_own, own_after_read = marks.own_after_read + 1
             WHERE marks.user_id = $3::bigint
     ), idm AS (
         INSERT INTO idem (user_id, client_id, conv_id, seq, useq, ts)
         SELECT $3, $5, $1, $2, last_useq, $4 FROM u WHERE user_id = $3::bigint
     )
     SELECT user_id, last_useq FROM u";

/// Puts a conversation in each listed user's list, where it is not already.
pub(super) const MARKS_JOIN: &str =
    "INSERT INTO marks (user_id, conv_id, ack, read, last_own, own_after_read)
     SELECT u, $2, 0, 0, 0, 0 FROM unnest($1::bigint[]) AS p(u)
     ON CONFLICT (user_id, conv_id) DO NOTHING";

/// The participants of a send by [`rules::participants`]; `group`: the group's row,
/// locked, for a group send.
pub(super) fn participants(
    req: &AppendRequest,
    group: Option<Row>,
) -> Result<Vec<UserId>, Failure> {
    let group = match (req.conv, group) {
        (ConvId::Group(g), Some(row)) => Some(group_of(g, &row)?),
        _ => None,
    };
    Ok(rules::participants(req.conv, req.from, group.as_ref()).map_err(StoreError::from)?)
}

/// A group from its locked row (`name, admin, members`).
pub(super) fn group_of(gid: u64, row: &Row) -> Result<Group, StoreError> {
    Ok(Group {
        id: gid,
        name: utf8_of(row, 0)?,
        admin: id_of(row, 1)?,
        members: members_of(row, 2)?,
    })
}

/// One attempt at a send, as one transaction, in four round trips: BEGIN; the idempotency
/// lookup, the group's lock and the conversation's bump, pipelined (PostgreSQL runs them in
/// that order); [`APPEND_WRITE`]; COMMIT. A duplicate or a refused send is rolled back,
/// which also undoes the bump: no seq is lost. See the module documentation for the order
/// of the locks.
pub(super) async fn append_once(
    c: &mut Object,
    req: &AppendRequest,
    ts: i64,
) -> Result<Appended, Failure> {
    let from = id(req.from);
    let client_id = req.id.as_str();
    let key = req.conv.to_string();
    let group = match req.conv {
        ConvId::Group(g) => Some(id(g)),
        ConvId::Direct { .. } => None,
    };
    // Prepared (or found in the connection's cache) before the transaction, so the three
    // pipelined statements below are sent in order, in one write.
    let idem_get = c.prepare_cached(IDEM_GET).await?;
    let group_lock = c.prepare_cached(GROUP_LOCK).await?;
    let conv_bump = c.prepare_cached(CONV_BUMP).await?;
    let tx = c.transaction().await?;
    let (idem, group, bumped) = futures_util::future::join3(
        tx.query_opt(&idem_get, &[&from, &client_id]),
        async {
            match &group {
                Some(g) => tx.query_opt(&group_lock, &[g]).await,
                None => Ok(None),
            }
        },
        tx.query_opt(&conv_bump, &[&key, &ts]),
    )
    .await;
    if let Some(row) = idem? {
        // Nothing to write; dropping the transaction rolls it back.
        return Ok(Appended {
            conv: conv_of(&row, 0)?,
            seq: u64_of(&row, 1)?,
            useq: u64_of(&row, 2)?,
            ts: u64_of(&row, 3)?,
            inboxes: Vec::new(),
            duplicate: true,
        });
    }
    let participants = participants(req, group?)?;
    let bumped = match bumped? {
        Some(row) => row,
        None => match query_opt(&tx, CONV_FIRST, &[&key, &ts]).await? {
            Some(row) => row,
            // A concurrent first message created the row meanwhile: bump it.
            None => query_opt(&tx, CONV_BUMP, &[&key, &ts])
                .await?
                .ok_or_else(|| corrupt(format!("conversation {key} has no row")))?,
        },
    };
    let conv_id: i64 = get(&bumped, 0)?;
    let seq = u64_of(&bumped, 1)?;
    let mut sorted = participants.clone();
    sorted.sort_unstable();
    let sorted_ids: Vec<i64> = sorted.iter().map(|&u| id(u)).collect();
    let rows = query(
        &tx,
        APPEND_WRITE,
        &[
            &conv_id,
            &int(seq, "seq")?,
            &from,
            &ts,
            &client_id,
            &req.body.as_bytes(),
            &sorted_ids,
        ],
    )
    .await?;
    let mut useq_of = HashMap::with_capacity(rows.len());
    for row in &rows {
        useq_of.insert(id_of(row, 0)?, u64_of(row, 1)?);
    }
    let inboxes = participants
        .iter()
        .map(|u| match useq_of.get(u) {
            Some(&q) => Ok((*u, q)),
            None => Err(corrupt(format!("no inbox position for user {u}"))),
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    tx.commit().await?;
    Ok(Appended {
        conv: req.conv,
        seq,
        useq: inboxes.first().map_or(0, |&(_, q)| q),
        ts: req.ts,
        inboxes,
        duplicate: false,
    })
}

/// The id of a conversation's row, creating the row (no messages yet) when missing.
pub(super) async fn conv_id_or_create<C: GenericClient>(c: &C, key: &str) -> Result<i64, Failure> {
    const FIND: &str = "SELECT id FROM convs WHERE key = $1";
    if let Some(row) = query_opt(c, FIND, &[&key]).await? {
        return Ok(get(&row, 0)?);
    }
    let created = query_opt(
        c,
        "INSERT INTO convs (key, last_seq, last_ts) VALUES ($1, 0, 0)
         ON CONFLICT (key) DO NOTHING RETURNING id",
        &[&key],
    )
    .await?;
    let row = match created {
        Some(row) => row,
        None => query_opt(c, FIND, &[&key])
            .await?
            .ok_or_else(|| corrupt(format!("conversation {key} has no row")))?,
    };
    Ok(get(&row, 0)?)
}

pub(super) async fn create_group_tx(
    c: &mut Object,
    name: &str,
    admin: UserId,
    members: &[UserId],
) -> Result<Group, Failure> {
    let tx = c.transaction().await?;
    let row = query_opt(
        &tx,
        "UPDATE counters SET value = value + 1 WHERE name = 'last_group' RETURNING value",
        &[],
    )
    .await?
    .ok_or_else(|| corrupt("the group id counter is missing"))?;
    let gid = u64_of(&row, 0)?;
    let group = rules::new_group(gid, name, admin, members);
    let ids: Vec<i64> = group.members.iter().map(|&u| id(u)).collect();
    execute(
        &tx,
        "INSERT INTO groups (id, name, admin, members) VALUES ($1, $2, $3, $4)",
        &[&id(gid), &name.as_bytes(), &id(admin), &ids],
    )
    .await?;
    let conv_id = conv_id_or_create(&tx, &ConvId::Group(gid).to_string()).await?;
    execute(&tx, MARKS_JOIN, &[&ids, &conv_id]).await?;
    tx.commit().await?;
    Ok(group)
}

/// A membership change under the group's lock, by [`rules::change_members`].
pub(super) async fn change_members_tx(
    c: &mut Object,
    gid: u64,
    change: MemberChange,
) -> Result<Group, Failure> {
    let tx = c.transaction().await?;
    let row = query_opt(&tx, GROUP_LOCK, &[&id(gid)])
        .await?
        .ok_or(StoreError::Refused(Refusal::NoGroup(gid)))?;
    let mut group = group_of(gid, &row)?;
    let key = ConvId::Group(gid).to_string();
    match rules::change_members(&mut group, change).map_err(StoreError::from)? {
        Membership::Joined(user) => {
            // A new member sees the group from now on; its history up to now too.
            let conv_id = conv_id_or_create(&tx, &key).await?;
            execute(&tx, MARKS_JOIN, &[&vec![id(user)], &conv_id]).await?;
        }
        Membership::Left(user) => {
            execute(
                &tx,
                "DELETE FROM marks WHERE user_id = $1
                 AND conv_id = (SELECT id FROM convs WHERE key = $2)",
                &[&id(user), &key],
            )
            .await?;
        }
    }
    let ids: Vec<i64> = group.members.iter().map(|&u| id(u)).collect();
    execute(
        &tx,
        "UPDATE groups SET admin = $2, members = $3 WHERE id = $1",
        &[&id(gid), &id(group.admin), &ids],
    )
    .await?;
    tx.commit().await?;
    Ok(group)
}

/// Moves a cumulative marker by [`rules::move_marker`], under the lock of
/// the (user, conversation) row. Sends lock that row too (after their own), so the count of
/// the user's own messages after the read marker is taken on a settled row.
pub(super) async fn mark_tx(
    c: &mut Object,
    user: UserId,
    conv: ConvId,
    marker: Marker,
    seq: u64,
) -> Result<MarkOutcome, Failure> {
    const MARKS_LOCK: &str = "SELECT ack, read, last_own, own_after_read FROM marks
         WHERE user_id = $1 AND conv_id = $2 FOR UPDATE";
    let tx = c.transaction().await?;
    let key = conv.to_string();
    let found = query_opt(
        &tx,
        "SELECT id, last_seq FROM convs WHERE key = $1",
        &[&key],
    )
    .await?;
    let last = match &found {
        Some(row) => u64_of(row, 1)?,
        None => 0,
    };
    let Some(conv_row) = found else {
        // No conversation: no marker can exist, and only seq 0 is allowed, which moves
        // nothing.
        let step = rules::move_marker(conv, last, &mut Marks::default(), marker, seq)
            .map_err(StoreError::from)?;
        return Ok(step.outcome);
    };
    let conv_id: i64 = get(&conv_row, 0)?;
    let user_id = id(user);
    let mut row = query_opt(&tx, MARKS_LOCK, &[&user_id, &conv_id]).await?;
    if row.is_none() && seq > 0 {
        // A refused move writes nothing: the rule is checked before the row is created.
        rules::move_marker(conv, last, &mut Marks::default(), marker, seq)
            .map_err(StoreError::from)?;
        // The marker will move, which puts the conversation in the user's list. Create the
        // row first and lock it, so a send that creates it concurrently is not overwritten.
        execute(&tx, MARKS_JOIN, &[&vec![user_id], &conv_id]).await?;
        row = query_opt(&tx, MARKS_LOCK, &[&user_id, &conv_id]).await?;
    }
    let mut marks = match &row {
        Some(row) => marks_of(row, 0)?,
        None => Marks::default(),
    };
    let step = rules::move_marker(conv, last, &mut marks, marker, seq).map_err(StoreError::from)?;
    if let Some((after, upto)) = step.recount {
        let row = query_opt(
            &tx,
            "SELECT count(*) FROM messages
             WHERE conv_id = $1 AND seq > $2 AND seq <= $3 AND sender = $4",
            &[&conv_id, &int(after, "seq")?, &int(upto, "seq")?, &user_id],
        )
        .await?
        .ok_or_else(|| corrupt("count returned no row"))?;
        marks.own_after_read = u64_of(&row, 0)?;
    }
    if step.moved() {
        execute(
            &tx,
            "UPDATE marks SET ack = $3, read = $4, own_after_read = $5
             WHERE user_id = $1 AND conv_id = $2",
            &[
                &user_id,
                &conv_id,
                &int(marks.ack, "seq")?,
                &int(marks.read, "seq")?,
                &int(marks.own_after_read, "count")?,
            ],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(step.outcome)
}
