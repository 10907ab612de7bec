//! The sequencer's reads and writes against Cassandra: loading what a pass lacked, and
//! writing a batch's data rows and then its counter rows.

use std::sync::atomic::Ordering;

use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use super::super::{Shared, bounded, conv_text, is_definite_refusal, parse_conv};
use super::WRITE_CONCURRENCY;
use super::state::{Cache, Need, Row, Stmt};
use crate::model::{ConvId, UserId};
use crate::store::rules::Marks;
use crate::store::sequencing::{ConvMeta, IdemRecord};
use crate::store::{Group, StoreError, bucket_of};

/// A value loaded for [`Need`].
pub(super) enum Loaded {
    Idem(
        (UserId, String),
        Option<IdemRecord>,
        Option<(ConvId, ConvMeta)>,
    ),
    Conv(ConvId, ConvMeta),
    User(UserId, u64),
    Marks((UserId, ConvId), Option<Marks>),
    Group(u64, Option<Group>),
    Meta(&'static str, u64),
    Count((ConvId, u64, u64, UserId), u64),
}

pub(super) async fn load_one(
    shared: &Shared,
    cache: &Cache,
    need: Need,
) -> Result<Loaded, StoreError> {
    Ok(match need {
        Need::Idem(user, id) => {
            let (rec, conv) = load_idem(shared, cache, user, &id).await?;
            Loaded::Idem((user, id), rec, conv)
        }
        Need::Conv(c) => Loaded::Conv(c, shared.conv_meta(c).await?),
        Need::User(u) => Loaded::User(u, shared.last_useq(u).await?),
        Need::Marks(u, c) => Loaded::Marks((u, c), shared.marks(u, c).await?),
        Need::Group(id) => Loaded::Group(id, shared.group(id).await?),
        Need::Meta(name) => Loaded::Meta(name, shared.meta(name).await?),
        Need::Count(conv, after, upto, user) => {
            let mut n = 0;
            for b in bucket_of(after + 1)..=bucket_of(upto) {
                let rows: Vec<(i64,)> = shared
                    .select(
                        &shared.st.select_senders,
                        (conv_text(conv), b as i64, after as i64, upto as i64),
                    )
                    .await?;
                n += rows.iter().filter(|(s,)| *s as u64 == user).count() as u64;
            }
            Loaded::Count((conv, after, upto, user), n)
        }
    })
}

/// An idempotency record counts only when the message it points at is committed and is
/// that sender's message with that id: a record written by a batch that never completed
/// points past the counter, or at a position another message took since.
pub(super) async fn load_idem(
    shared: &Shared,
    cache: &Cache,
    user: UserId,
    id: &str,
) -> Result<(Option<IdemRecord>, Option<(ConvId, ConvMeta)>), StoreError> {
    let rows: Vec<(String, i64, i64, i64)> = shared
        .select(&shared.st.select_idem, (user as i64, id))
        .await?;
    let Some((conv, seq, useq, ts)) = rows.into_iter().next() else {
        return Ok((None, None));
    };
    let conv = parse_conv(&conv)?;
    let (seq, useq, ts) = (seq as u64, useq as u64, ts as u64);
    let (meta, loaded) = match cache.convs.get(&conv) {
        Some(m) => (*m, None),
        None => {
            let m = shared.conv_meta(conv).await?;
            (m, Some((conv, m)))
        }
    };
    if seq == 0 || seq > meta.last_seq {
        return Ok((None, loaded));
    }
    let msg: Vec<(i64, String, String, i64)> = shared
        .select(
            &shared.st.select_message,
            (conv_text(conv), bucket_of(seq) as i64, seq as i64),
        )
        .await?;
    let valid = matches!(msg.first(), Some((from, cid, _, _)) if *from as u64 == user && cid == id);
    let rec = valid.then_some(IdemRecord {
        conv: conv.into(),
        seq,
        useq,
        ts,
    });
    Ok((rec, loaded))
}

/// Phase 1, then phase 2; `Ok` once Cassandra acknowledged both. The single-node path:
/// the counters go in one LOGGED batch.
pub(super) async fn write(
    shared: &Shared,
    data: &[Row],
    counters: &[Row],
) -> Result<(), WriteError> {
    write_data(shared, data).await?;
    match counters {
        [] => {}
        [one] => {
            shared
                .session
                .execute_unpaged(stmt(shared, one.stmt), &one.values)
                .await
                .map_err(WriteError)?;
        }
        many => {
            let mut batch = Batch::new(BatchType::Logged);
            for row in many {
                batch.append_statement(stmt(shared, row.stmt).clone());
            }
            batch.set_is_idempotent(true);
            let values: Vec<&Vec<CqlValue>> = many.iter().map(|r| &r.values).collect();
            shared
                .session
                .batch(&batch, values)
                .await
                .map_err(WriteError)?;
        }
    }
    count_written(shared, counters);
    Ok(())
}

/// Phase 1: the data rows, concurrently; `Ok` once Cassandra acknowledged them all.
pub(super) async fn write_data(shared: &Shared, data: &[Row]) -> Result<(), WriteError> {
    let rows: Vec<&Row> = data.iter().collect();
    bounded(rows, WRITE_CONCURRENCY, |row| {
        shared
            .session
            .execute_unpaged(stmt(shared, row.stmt), &row.values)
    })
    .await
    .map_err(WriteError)?;
    count_written(shared, data);
    Ok(())
}

/// Adds acknowledged rows to the store's own count of bytes written.
pub(super) fn count_written(shared: &Shared, rows: &[Row]) {
    let bytes: u64 = rows.iter().map(Row::bytes).sum();
    shared.written.fetch_add(bytes, Ordering::Relaxed);
}

/// A write that failed, with the driver's error.
#[derive(Debug)]
pub(super) struct WriteError(scylla::errors::ExecutionError);

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

pub(super) fn is_refusal(e: &WriteError) -> bool {
    is_definite_refusal(&e.0)
}

/// The statement a row is written with: the counter and marker rows go to the
/// `seq_state` partition in shared mode, to their own tables otherwise.
pub(super) fn stmt(shared: &Shared, s: Stmt) -> &PreparedStatement {
    let st = &shared.st;
    if let Some(ss) = &shared.state {
        match s {
            Stmt::Conv => return &ss.update_conv,
            Stmt::User => return &ss.update_user,
            Stmt::Marks => return &ss.insert_marks,
            Stmt::DeleteMarks => return &ss.delete_marks,
            Stmt::Group => return &ss.insert_group,
            Stmt::Meta => return &ss.update_meta,
            _ => {}
        }
    }
    match s {
        Stmt::Message => &st.insert_message,
        Stmt::Inbox => &st.insert_inbox,
        Stmt::Idem => &st.insert_idem,
        Stmt::Dead => &st.insert_dead,
        Stmt::DeleteDead => &st.delete_dead,
        Stmt::Push => &st.insert_push,
        Stmt::Conv => &st.update_conv,
        Stmt::User => &st.update_user,
        Stmt::Marks => &st.insert_marks,
        Stmt::DeleteMarks => &st.delete_marks,
        Stmt::Group => &st.insert_group,
        Stmt::Meta => &st.update_meta,
    }
}
