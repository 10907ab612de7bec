//! Values between Rust and PostgreSQL: ids and counters as bigints, columns decoded
//! back with damage reported as [`StoreError::Corrupt`], and statements run through the
//! pool's per-connection statement cache.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::failure::Failure;
use crate::model::{ConvId, UserId};
use crate::store::rules::Marks;
use crate::store::{Refusal, StoreError, StoredMessage};

/// A user, group or dead-letter id as stored: the u64's bits in a bigint.
pub(super) fn id(v: u64) -> i64 {
    v as i64
}

/// A counter value (seq, useq, time) as stored; those are far below 2^63 in practice, and
/// a larger one is refused rather than wrapped.
pub(super) fn int(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Refused(Refusal::OutOfRange { what, value: v }))
}

/// A query bound: values past the bigint range mean "no bound".
pub(super) fn bound(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
) -> Result<T, StoreError> {
    row.try_get(idx)
        .map_err(|e| StoreError::Corrupt(format!("column {idx}: {e}")))
}

/// A stored id column back as the u64 it was.
pub(super) fn id_of(row: &Row, idx: usize) -> Result<u64, StoreError> {
    Ok(get::<i64>(row, idx)? as u64)
}

/// A stored counter column, which is never negative.
pub(super) fn u64_of(row: &Row, idx: usize) -> Result<u64, StoreError> {
    let v: i64 = get(row, idx)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative counter {v}")))
}

/// A bytea column holding UTF-8 text.
pub(super) fn utf8_of(row: &Row, idx: usize) -> Result<String, StoreError> {
    let bytes: Vec<u8> = get(row, idx)?;
    String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(format!("column {idx}: {e}")))
}

pub(super) fn members_of(row: &Row, idx: usize) -> Result<Vec<UserId>, StoreError> {
    Ok(get::<Vec<i64>>(row, idx)?
        .into_iter()
        .map(|m| m as u64)
        .collect())
}

/// A conversation's stored key (`d:LO:HI`, `g:GROUP`) back as its id.
pub(super) fn conv_of(row: &Row, idx: usize) -> Result<ConvId, StoreError> {
    let key: &str = get(row, idx)?;
    parse_conv_key(key).ok_or_else(|| StoreError::Corrupt(format!("bad conversation key {key:?}")))
}

pub(super) fn parse_conv_key(key: &str) -> Option<ConvId> {
    if let Some(rest) = key.strip_prefix("d:") {
        let (lo, hi) = rest.split_once(':')?;
        Some(ConvId::Direct {
            lo: lo.parse().ok()?,
            hi: hi.parse().ok()?,
        })
    } else {
        Some(ConvId::Group(key.strip_prefix("g:")?.parse().ok()?))
    }
}

pub(super) fn marks_of(row: &Row, from: usize) -> Result<Marks, StoreError> {
    Ok(Marks {
        ack: u64_of(row, from)?,
        read: u64_of(row, from + 1)?,
        last_own: u64_of(row, from + 2)?,
        own_after_read: u64_of(row, from + 3)?,
    })
}

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs a statement, prepared once per connection (the pool's statement cache), so each
/// call is one round trip.
pub(super) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, Failure> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

pub(super) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, Failure> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

pub(super) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, Failure> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

pub(super) fn message_of(
    row: &Row,
    conv: ConvId,
    from: usize,
) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        conv,
        seq: u64_of(row, from)?,
        from: id_of(row, from + 1)?,
        id: get::<String>(row, from + 2)?,
        body: utf8_of(row, from + 3)?,
        ts: u64_of(row, from + 4)?,
    })
}
