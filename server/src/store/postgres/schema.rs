//! The PostgreSQL schema: versioned migrations compiled into the binary and applied when
//! the store opens.
//!
//! A migration is a SQL file under `migrations/`, numbered; it is never edited once
//! released, only followed by a new one. The `schema_migrations` table records which
//! versions were applied. Everything happens in one transaction under an advisory lock, so
//! several servers starting at once apply each migration exactly once, and a failed
//! migration leaves nothing behind (PostgreSQL's DDL is transactional).

use tokio_postgres::Client;

use super::{pg_error, u64_of};
use crate::store::{StorageReport, StoreError, Table};

/// One schema change.
pub(super) struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Append only.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "chat tables",
        sql: include_str!("migrations/0001_chat_tables.sql"),
    },
    Migration {
        version: 2,
        name: "idempotency expiry",
        sql: include_str!("migrations/0002_idempotency_expiry.sql"),
    },
];

/// The advisory lock key that serializes migrations in a database ("chat" in ASCII).
const MIGRATION_LOCK: i64 = 0x6368_6174;

/// Brings the schema up to date: creates `schema` (when one is named) and applies every
/// migration not yet recorded. Returns the versions it applied. A database already at a
/// version this binary does not know is refused: an older server must not write into a
/// layout it does not understand.
pub(super) async fn migrate(
    client: &mut Client,
    schema: Option<&str>,
) -> Result<Vec<i32>, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    // A migration may take longer than a chat statement may; waiting for another server's
    // migration may not take forever.
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '60s'")
        .await
        .map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    if let Some(schema) = schema {
        // The name was checked to be a plain identifier when the spec was parsed.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await
            .map_err(pg_error)?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_error)?;
    let mut applied = Vec::new();
    for row in tx
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(pg_error)?
    {
        let v: i32 = row
            .try_get(0)
            .map_err(|e| StoreError::Corrupt(format!("schema_migrations: {e}")))?;
        applied.push(v);
    }
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(&newest) = applied.iter().max()
        && newest > known
    {
        return Err(StoreError::Corrupt(format!(
            "the database schema is at version {newest}, newer than this server knows \
             ({known}); run a newer server"
        )));
    }
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| match pg_error(e) {
                StoreError::Unavailable(e) => StoreError::Unavailable(format!(
                    "migration {} ({}) failed: {e}",
                    m.version, m.name
                )),
                e => {
                    StoreError::Corrupt(format!("migration {} ({}) failed: {e}", m.version, m.name))
                }
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(pg_error)?;
        done.push(m.version);
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(done)
}

/// Bytes the store's tables occupy, indexes and TOAST included: the sum of
/// `pg_total_relation_size` over the ordinary tables of the store's schema. The write-ahead
/// log and the rest of the cluster are not counted: they are shared with whatever else the
/// cluster holds, and the WAL is recycled.
pub(super) async fn table_bytes(client: &Client) -> Result<u64, StoreError> {
    let row = client
        .query_one(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )
        .await
        .map_err(pg_error)?;
    u64_of(&row, 0)
}

/// The table each of the store's relations is reported under.
fn table_of(relation: &str) -> Table {
    match relation {
        "messages" => Table::Messages,
        "inbox" => Table::Inbox,
        "idem" => Table::Idempotency,
        "marks" | "convs" | "users" => Table::Markers,
        _ => Table::Other,
    }
}

/// Bytes of each of the store's tables, indexes and TOAST included, as PostgreSQL sizes
/// them (`pg_total_relation_size`), grouped by [`Table`]; and the cluster's WAL directory
/// (`pg_ls_waldir`, which needs the `pg_monitor` role: `None` without it). The WAL is the
/// whole cluster's, shared with whatever else it holds, and recycled: it is reported, not
/// counted as data.
pub(super) async fn storage(client: &Client) -> Result<StorageReport, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text, pg_total_relation_size(c.oid)::bigint
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )
        .await
        .map_err(pg_error)?;
    let mut report = StorageReport::default();
    for row in &rows {
        let name: String = row
            .try_get(0)
            .map_err(|e| StoreError::Corrupt(format!("relation name: {e}")))?;
        report.add(table_of(&name), u64_of(row, 1)?);
    }
    report.journal = match client
        .query_one(
            "SELECT COALESCE(sum(size), 0)::bigint FROM pg_ls_waldir()",
            &[],
        )
        .await
    {
        Ok(row) => Some(u64_of(&row, 0)?),
        Err(e) => {
            tracing::debug!(error = %e, "the WAL size is not readable by this role");
            None
        }
    };
    Ok(report)
}

/// Rewrites every table of the store compactly (`VACUUM FULL`), so the sizes are those
/// of the live rows: what a steadily vacuumed database converges to, without the dead
/// versions of the counters and markers that updates leave behind.
pub(super) async fn compact(client: &Client) -> Result<(), StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )
        .await
        .map_err(pg_error)?;
    for row in &rows {
        let name: String = row
            .try_get(0)
            .map_err(|e| StoreError::Corrupt(format!("relation name: {e}")))?;
        // A catalog name, quoted: safe in the statement's text.
        client
            .batch_execute(&format!(
                "VACUUM (FULL, ANALYZE) \"{}\"",
                name.replace('"', "\"\"")
            ))
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}
