//! The keyspace's tables and the prepared statements that use them.
//!
//! | table | partition key | clustering | what |
//! |---|---|---|---|
//! | `messages` | conv, bucket (= seq / 65536) | seq DESC | sender, client id, body, ts: each message once |
//! | `inbox` | user, bucket (= useq / 65536) | useq ASC | conv, seq: a pointer into `messages` |
//! | `convs` | conv | | last seq, last ts (**counter row**) |
//! | `users` | user | | last useq (**counter row**) |
//! | `marks` | user | conv | ack, read, last own seq, own messages after read |
//! | `idem` | user, client id | | conv, seq, useq, ts of the first send |
//! | `groups` | id | | name, admin, members |
//! | `pushes` | user | device | platform, push token |
//! | `dead_letters` | bucket (= id / 65536) | id ASC | payload, error, ts |
//! | `meta` | name | | counters: last group id, last dead-letter id |
//! | `seq_state` | p (= 0) | kind, a, b | shared mode only: all of `convs`, `users`, `marks`, `groups`, `meta` and the lease ([`super::state_table`]) |
//!
//! Both orders a page needs come from one partition read: history is newest first within
//! a bucket (clustering DESC), the inbox oldest first. Buckets keep a partition to at most
//! 65 536 rows however long a conversation lives. A conversation is its text id (`d:1:2`,
//! `g:7`); user ids (u64) are stored bit for bit in `bigint`.
//!
//! The counter rows (`convs`, `users`, `meta`) and the markers are what makes written rows
//! visible: readers never look past them, and the sequencer writes them last (see
//! [`super::sequencer`]).

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{Settings, db_err};
use crate::store::{StoreError, Table};

/// The DDL, in order. `{ks}` is replaced by the keyspace name (validated to be an
/// identifier), `{rf}` by the replication factor.
const KEYSPACE: &str = "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
    {'class': 'SimpleStrategy', 'replication_factor': {rf}}";

const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {ks}.messages (conv text, bucket bigint, seq bigint, \
     sender bigint, client_id text, body text, ts bigint, \
     PRIMARY KEY ((conv, bucket), seq)) WITH CLUSTERING ORDER BY (seq DESC)",
    "CREATE TABLE IF NOT EXISTS {ks}.inbox (user bigint, bucket bigint, useq bigint, \
     conv text, seq bigint, PRIMARY KEY ((user, bucket), useq))",
    "CREATE TABLE IF NOT EXISTS {ks}.convs (conv text PRIMARY KEY, last_seq bigint, \
     last_ts bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.users (user bigint PRIMARY KEY, last_useq bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.marks (user bigint, conv text, ack bigint, \
     read bigint, last_own bigint, own_after_read bigint, PRIMARY KEY (user, conv))",
    "CREATE TABLE IF NOT EXISTS {ks}.idem (user bigint, client_id text, conv text, \
     seq bigint, useq bigint, ts bigint, PRIMARY KEY ((user, client_id)))",
    "CREATE TABLE IF NOT EXISTS {ks}.groups (id bigint PRIMARY KEY, name text, \
     admin bigint, members list<bigint>)",
    "CREATE TABLE IF NOT EXISTS {ks}.pushes (user bigint, device text, platform text, \
     push_token text, PRIMARY KEY (user, device))",
    "CREATE TABLE IF NOT EXISTS {ks}.dead_letters (bucket bigint, id bigint, \
     payload text, error text, ts bigint, PRIMARY KEY (bucket, id))",
    "CREATE TABLE IF NOT EXISTS {ks}.meta (name text PRIMARY KEY, value bigint)",
];

/// Cassandra's largest TTL (20 years, in seconds).
const MAX_TTL_SECS: u64 = 630_720_000;

/// The TTL that keeps an idempotency record for at least `window`. Cassandra counts a
/// TTL from the write's whole second (its expiry is `floor(now) + ttl`), so a TTL of
/// `n` keeps a record between `n - 1` and `n` seconds: one second more than the window,
/// rounded up, keeps it at least the window and at most two seconds beyond.
pub(super) fn ttl_secs(window: std::time::Duration) -> u64 {
    let whole = window
        .as_secs()
        .saturating_add(u64::from(window.subsec_nanos() > 0));
    whole.saturating_add(1).clamp(1, MAX_TTL_SECS)
}

/// The table of the data model a CQL table is reported under.
pub(super) fn table_of(name: &str) -> Table {
    match name {
        "messages" => Table::Messages,
        "inbox" => Table::Inbox,
        "idem" => Table::Idempotency,
        "marks" | "convs" | "users" | "seq_state" => Table::Markers,
        _ => Table::Other,
    }
}

pub const TABLE_NAMES: &[&str] = &[
    "messages",
    "inbox",
    "convs",
    "users",
    "marks",
    "idem",
    "groups",
    "pushes",
    "dead_letters",
    "meta",
    "seq_state",
];

/// Creates the keyspace and its tables when they do not exist yet.
pub async fn create(session: &Session, s: &Settings) -> Result<(), StoreError> {
    let ddl = |q: &str| {
        q.replace("{ks}", &s.keyspace)
            .replace("{rf}", &s.replication_factor.to_string())
    };
    session
        .query_unpaged(ddl(KEYSPACE), ())
        .await
        .map_err(db_err)?;
    // `seq_state` in every mode: a single-node store looks there to refuse a shared keyspace.
    for t in TABLES.iter().chain([&super::state_table::TABLE]) {
        session.query_unpaged(ddl(t), ()).await.map_err(db_err)?;
    }
    Ok(())
}

/// Every statement the store runs, prepared once at start.
pub struct Statements {
    pub insert_message: PreparedStatement,
    pub select_history: PreparedStatement,
    pub select_message: PreparedStatement,
    pub select_senders: PreparedStatement,
    pub insert_inbox: PreparedStatement,
    pub select_inbox: PreparedStatement,
    pub update_conv: PreparedStatement,
    pub select_conv: PreparedStatement,
    pub update_user: PreparedStatement,
    pub select_user: PreparedStatement,
    pub insert_marks: PreparedStatement,
    pub delete_marks: PreparedStatement,
    pub select_marks: PreparedStatement,
    pub select_user_marks: PreparedStatement,
    pub insert_idem: PreparedStatement,
    pub select_idem: PreparedStatement,
    pub insert_group: PreparedStatement,
    pub select_group: PreparedStatement,
    pub insert_push: PreparedStatement,
    pub select_pushes: PreparedStatement,
    pub insert_dead: PreparedStatement,
    pub select_dead: PreparedStatement,
    pub delete_dead: PreparedStatement,
    pub update_meta: PreparedStatement,
    pub select_meta: PreparedStatement,
    pub select_disk_usage: PreparedStatement,
}

impl Statements {
    pub async fn prepare(session: &Session, s: &Settings) -> Result<Self, StoreError> {
        let ks = &s.keyspace;
        let p = |q: String| async move {
            let mut st = session.prepare(q).await.map_err(db_err)?;
            // Every write here is an upsert of the same values: safe for the driver to retry.
            st.set_is_idempotent(true);
            Ok::<_, StoreError>(st)
        };
        Ok(Statements {
            insert_message: p(format!(
                "INSERT INTO {ks}.messages (conv, bucket, seq, sender, client_id, body, ts) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            select_history: p(format!(
                "SELECT seq, sender, client_id, body, ts FROM {ks}.messages \
                 WHERE conv = ? AND bucket = ? AND seq <= ? LIMIT ?"
            ))
            .await?,
            select_message: p(format!(
                "SELECT sender, client_id, body, ts FROM {ks}.messages \
                 WHERE conv = ? AND bucket = ? AND seq = ?"
            ))
            .await?,
            select_senders: p(format!(
                "SELECT sender FROM {ks}.messages \
                 WHERE conv = ? AND bucket = ? AND seq > ? AND seq <= ?"
            ))
            .await?,
            insert_inbox: p(format!(
                "INSERT INTO {ks}.inbox (user, bucket, useq, conv, seq) VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            select_inbox: p(format!(
                "SELECT useq, conv, seq FROM {ks}.inbox \
                 WHERE user = ? AND bucket = ? AND useq > ? AND useq <= ? LIMIT ?"
            ))
            .await?,
            update_conv: p(format!(
                "UPDATE {ks}.convs SET last_seq = ?, last_ts = ? WHERE conv = ?"
            ))
            .await?,
            select_conv: p(format!(
                "SELECT last_seq, last_ts FROM {ks}.convs WHERE conv = ?"
            ))
            .await?,
            update_user: p(format!(
                "UPDATE {ks}.users SET last_useq = ? WHERE user = ?"
            ))
            .await?,
            select_user: p(format!("SELECT last_useq FROM {ks}.users WHERE user = ?")).await?,
            insert_marks: p(format!(
                "INSERT INTO {ks}.marks (user, conv, ack, read, last_own, own_after_read) \
                 VALUES (?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            delete_marks: p(format!(
                "DELETE FROM {ks}.marks WHERE user = ? AND conv = ?"
            ))
            .await?,
            select_marks: p(format!(
                "SELECT ack, read, last_own, own_after_read FROM {ks}.marks \
                 WHERE user = ? AND conv = ?"
            ))
            .await?,
            select_user_marks: p(format!(
                "SELECT conv, ack, read, last_own, own_after_read FROM {ks}.marks WHERE user = ?"
            ))
            .await?,
            insert_idem: p(format!(
                "INSERT INTO {ks}.idem (user, client_id, conv, seq, useq, ts) \
                 VALUES (?, ?, ?, ?, ?, ?) USING TTL {ttl}",
                ttl = ttl_secs(s.idempotency_window)
            ))
            .await?,
            select_idem: p(format!(
                "SELECT conv, seq, useq, ts FROM {ks}.idem WHERE user = ? AND client_id = ?"
            ))
            .await?,
            insert_group: p(format!(
                "INSERT INTO {ks}.groups (id, name, admin, members) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            select_group: p(format!(
                "SELECT name, admin, members FROM {ks}.groups WHERE id = ?"
            ))
            .await?,
            insert_push: p(format!(
                "INSERT INTO {ks}.pushes (user, device, platform, push_token) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            select_pushes: p(format!(
                "SELECT device, platform, push_token FROM {ks}.pushes WHERE user = ?"
            ))
            .await?,
            insert_dead: p(format!(
                "INSERT INTO {ks}.dead_letters (bucket, id, payload, error, ts) \
                 VALUES (?, ?, ?, ?, ?)"
            ))
            .await?,
            select_dead: p(format!(
                "SELECT id, payload, error, ts FROM {ks}.dead_letters \
                 WHERE bucket = ? AND id > ? AND id <= ? LIMIT ?"
            ))
            .await?,
            delete_dead: p(format!(
                "DELETE FROM {ks}.dead_letters WHERE bucket = ? AND id = ?"
            ))
            .await?,
            update_meta: p(format!("UPDATE {ks}.meta SET value = ? WHERE name = ?")).await?,
            select_meta: p(format!("SELECT value FROM {ks}.meta WHERE name = ?")).await?,
            select_disk_usage: p("SELECT table_name, mebibytes FROM system_views.disk_usage \
                 WHERE keyspace_name = ? ALLOW FILTERING"
                .to_owned())
            .await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ttl_secs;
    use std::time::Duration;

    #[test]
    fn a_ttl_keeps_a_record_at_least_the_window() {
        assert_eq!(ttl_secs(Duration::from_secs(1)), 2);
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 3);
        assert_eq!(ttl_secs(Duration::from_secs(86_400)), 86_401);
        assert_eq!(ttl_secs(Duration::ZERO), 1);
        assert_eq!(ttl_secs(Duration::MAX), 630_720_000);
    }
}
