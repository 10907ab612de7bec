//! The PostgreSQL backend: `--store postgres://USER:PASSWORD@HOST:PORT/DB`.
//!
//! A pool of async connections (deadpool over tokio-postgres) serves every call. The schema
//! is created and upgraded by the migrations compiled into the binary ([`schema`]) when the
//! store opens.
//!
//! # Sequencing
//!
//! The rules are those of [`super::logic`], which the memory and fjall backends run one
//! request at a time. Here many requests run at once, each as one transaction, and the
//! same results come from row locks taken in one canonical order:
//!
//! 1. a group send locks the group's row (`FOR UPDATE`), as does a membership change, so
//!    the two are ordered and a removed member gets nothing sequenced after the removal;
//! 2. the conversation's row in `convs` is bumped with `UPDATE … RETURNING`, which holds its
//!    lock to the end of the transaction: the sends of one conversation are serialized and
//!    each gets `last_seq + 1`, so `seq` is gap-free;
//! 3. the participants' rows in `users` are bumped the same way, in ascending user id
//!    order, so `useq` is gap-free per user and two sends that share users never wait on
//!    each other in a cycle;
//! 4. the message, its inbox entries, the markers and the idempotency record are written
//!    by the same statement, and the transaction commits.
//!
//! A membership change takes its group's row first as well, and a marker update locks only
//! its own (user, conversation) row and nothing after it, so no writer can close a cycle
//! of lock waits with a send. A rolled-back transaction leaves every
//! counter as it was, so a failed send leaves no gap. `synchronous_commit` is forced on
//! for the store's sessions: a COMMIT is acknowledged only once its WAL is flushed to disk,
//! and only then does [`Store::append`] return and the server answer `sent`.
//!
//! Within one process the sends of a conversation also queue in arrival order before they
//! take a pooled connection ([`PostgresStore::turn`]): a busy conversation then holds one
//! connection, not all of them, while its sends wait for each other.
//!
//! # Group commit
//!
//! Concurrent commits share WAL flushes in PostgreSQL itself: a backend that flushes the
//! WAL flushes every commit record written before it, so sends of different conversations
//! committing together pay for about one flush between them. Sends of one conversation
//! cannot share a flush, as each waits for the previous one's commit (its row lock): a
//! conversation's rate is bounded by one flush plus a few round trips per send.
//!
//! # Idempotency
//!
//! The `(sender, client id)` record is inserted in the send's own transaction. A retry of a
//! send whose COMMIT answer was lost (the outcome unknown to the client) finds it and gets
//! the first outcome; two copies of one send racing each other meet at the sender's
//! `users` row, and the second one's insert of the record fails on the primary key after
//! the first committed: it is rolled back and run again, and then finds the record.
//!
//! # Failures
//!
//! Connection, pool, timeout and server-side resource errors are
//! [`StoreError::Unavailable`]: nothing was stored (or, for a lost COMMIT answer, the retry
//! with the same id is exactly-once). Data that does not decode, or SQL the schema does not
//! accept, is [`StoreError::Corrupt`]. Nothing waits forever: connecting, waiting for a
//! pooled connection, each statement (`statement_timeout`) and each whole operation have a
//! deadline. When PostgreSQL comes back after an outage, the pool drops the dead
//! connections and opens new ones by itself.
//!
//! # The spec
//!
//! Anything tokio-postgres accepts in a URL (`connect_timeout`, `application_name`,
//! `options`, …), plus two parameters of this store, taken out before the URL is parsed:
//! `schema=NAME` keeps the tables in that schema (created when missing; tests use one per
//! test), and `pool_size=N` caps the connections (default 16). Connections are not
//! encrypted (no TLS): run it on loopback or a private network.

mod schema;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::logic::{Marks, unread};
use super::{
    AppendRequest, Appended, ConvSummary, DeadLetter, Group, InboxItem, MarkOutcome, Marker,
    MemberChange, PushRegistration, Store, StoreError, StoredMessage,
};
use crate::model::{ConvId, UserId};

/// Connections the pool holds at most, unless the spec says `pool_size=N`. Enough for
/// PostgreSQL to share WAL flushes between concurrent commits; more mostly adds contention
/// on a small machine.
const DEFAULT_POOL_SIZE: usize = 16;

/// How long opening a connection may take (unless the URL sets `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a pooled connection when all are busy.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// The server-side limit of one statement, lock waits included.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client-side limit of one whole store call (waiting for a connection and every
/// statement and the COMMIT). Past it the connection is closed, not reused: whatever it
/// was doing is in an unknown state.
const OP_TIMEOUT: Duration = Duration::from_secs(15);

/// A session left idle inside a transaction (its client hung) is ended by the server after
/// this, so it cannot hold a conversation's lock for long.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a send is run again after losing a race that rolled it back (a concurrent
/// copy of the same send, or a deadlock the server broke).
const APPEND_ATTEMPTS: usize = 4;

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// One gate per conversation with a send under way in this process (see
    /// [`PostgresStore::turn`]); an entry lives only while someone holds or awaits it.
    gates: DashMap<ConvId, Arc<tokio::sync::Mutex<()>>>,
}

/// A conversation's turn to send in this process; the gate is forgotten once idle.
struct Turn<'a> {
    gates: &'a DashMap<ConvId, Arc<tokio::sync::Mutex<()>>>,
    conv: ConvId,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        // Under the map's shard lock: nobody can pick the gate up meanwhile.
        self.gates
            .remove_if(&self.conv, |_, gate| Arc::strong_count(gate) == 1);
    }
}

/// What a store call failed with inside: a PostgreSQL error (classified once, at the end,
/// so a send can tell a race it should run again from a real failure) or a decided
/// [`StoreError`].
enum Failure {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Pg(e) => pg_error(e),
            Failure::Store(e) => e,
        }
    }
}

impl Failure {
    /// Whether the transaction was rolled back by a race that running it again resolves:
    /// the idempotency record of a concurrent copy of the same send, a deadlock broken by
    /// the server, or a serialization failure.
    fn is_race(&self) -> bool {
        let Failure::Pg(e) = self else {
            return false;
        };
        let Some(db) = e.as_db_error() else {
            return false;
        };
        match db.code().code() {
            "40P01" | "40001" => true,
            "23505" => db.constraint() == Some("idem_pkey"),
            _ => false,
        }
    }
}

/// Classifies a PostgreSQL error. Data exceptions, integrity violations the store does not
/// expect, SQL the schema does not accept and internal errors mean a bug or a damaged
/// store (`Corrupt`); everything else (no connection, the server shutting down, out of
/// resources, a timeout, a broken deadlock) is `Unavailable`: the transaction did not
/// commit, and a retry may succeed.
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        return StoreError::Unavailable(format!("PostgreSQL: {}", with_causes(&e)));
    };
    let code = db.code().code();
    let text = format!("PostgreSQL {code}: {}", db.message());
    match code.get(..2) {
        Some("22" | "23" | "42" | "XX") => StoreError::Corrupt(text),
        _ => StoreError::Unavailable(text),
    }
}

/// An error with the chain of its causes ("error connecting to server: Connection
/// refused"), which its own text leaves out.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn corrupt(what: impl Into<String>) -> Failure {
    Failure::Store(StoreError::Corrupt(what.into()))
}

/// A user, group or dead-letter id as stored: the u64's bits in a bigint.
fn id(v: u64) -> i64 {
    v as i64
}

/// A counter value (seq, useq, time) as stored; those are far below 2^63 in practice, and
/// a larger one is refused rather than wrapped.
fn int(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is out of range")))
}

/// A query bound: values past the bigint range mean "no bound".
fn bound(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
) -> Result<T, StoreError> {
    row.try_get(idx)
        .map_err(|e| StoreError::Corrupt(format!("column {idx}: {e}")))
}

/// A stored id column back as the u64 it was.
fn id_of(row: &Row, idx: usize) -> Result<u64, StoreError> {
    Ok(get::<i64>(row, idx)? as u64)
}

/// A stored counter column, which is never negative.
pub(super) fn u64_of(row: &Row, idx: usize) -> Result<u64, StoreError> {
    let v: i64 = get(row, idx)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative counter {v}")))
}

/// A bytea column holding UTF-8 text.
fn utf8_of(row: &Row, idx: usize) -> Result<String, StoreError> {
    let bytes: Vec<u8> = get(row, idx)?;
    String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(format!("column {idx}: {e}")))
}

fn members_of(row: &Row, idx: usize) -> Result<Vec<UserId>, StoreError> {
    Ok(get::<Vec<i64>>(row, idx)?
        .into_iter()
        .map(|m| m as u64)
        .collect())
}

/// A conversation's stored key (`d:LO:HI`, `g:GROUP`) back as its id.
fn conv_of(row: &Row, idx: usize) -> Result<ConvId, StoreError> {
    let key: &str = get(row, idx)?;
    parse_conv_key(key).ok_or_else(|| StoreError::Corrupt(format!("bad conversation key {key:?}")))
}

fn parse_conv_key(key: &str) -> Option<ConvId> {
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

fn marks_of(row: &Row, from: usize) -> Result<Marks, StoreError> {
    Ok(Marks {
        ack: u64_of(row, from)?,
        read: u64_of(row, from + 1)?,
        last_own: u64_of(row, from + 2)?,
        own_after_read: u64_of(row, from + 3)?,
    })
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs a statement, prepared once per connection (the pool's statement cache), so each
/// call is one round trip.
async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, Failure> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, Failure> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

async fn execute<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<u64, Failure> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

/// Runs `$body` with a pooled connection bound to `$c`, within [`OP_TIMEOUT`].
macro_rules! with_client {
    ($store:expr, $c:ident, $body:expr) => {{
        #[allow(unused_mut)]
        let mut $c = $store.client().await?;
        let outcome = tokio::time::timeout(OP_TIMEOUT, async { $body }).await;
        settle($c, outcome)
    }};
}

/// The result of a call; on a timeout the connection is closed rather than returned to
/// the pool, since a statement or a COMMIT may still be running on it.
fn settle<T>(
    client: Object,
    outcome: Result<Result<T, Failure>, tokio::time::error::Elapsed>,
) -> Result<T, Failure> {
    match outcome {
        Ok(result) => result,
        Err(_) => {
            drop(Object::take(client));
            Err(Failure::Store(StoreError::Unavailable(format!(
                "no answer from PostgreSQL within {} s",
                OP_TIMEOUT.as_secs()
            ))))
        }
    }
}

/// What a `postgres://` spec says, once the store's own parameters are taken out.
struct Spec {
    pg: tokio_postgres::Config,
    schema: Option<String>,
    pool_size: usize,
}

impl Spec {
    fn parse(spec: &str) -> Result<Spec, StoreError> {
        let (base, query) = match spec.split_once('?') {
            Some((b, q)) => (b, q),
            None => (spec, ""),
        };
        let mut kept = Vec::new();
        let mut schema = None;
        let mut pool_size = DEFAULT_POOL_SIZE;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("schema", name)) => {
                    let plain = (1..=63).contains(&name.len())
                        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if !plain {
                        return Err(StoreError::Invalid(format!(
                            "schema={name:?}: expected 1-63 characters of [a-z0-9_], not starting with a digit"
                        )));
                    }
                    schema = Some(name.to_owned());
                }
                Some(("pool_size", n)) => {
                    pool_size = n
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            StoreError::Invalid(format!("pool_size={n:?}: expected 1 to 1000"))
                        })?;
                }
                _ => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("invalid PostgreSQL URL: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("chat-server");
        }
        // Notice a peer that vanished without closing (a crashed host, a cut network) in
        // about a minute rather than the kernel's two hours.
        pg.keepalives_idle(Duration::from_secs(30));
        // The store's settings come last, so they win over the URL's `options`: the
        // durability contract (`sent` only after a flushed COMMIT) is not negotiable.
        let mut options = pg.get_options().map(str::to_owned).unwrap_or_default();
        options.push_str(&format!(
            " -c synchronous_commit=on -c statement_timeout={} \
             -c idle_in_transaction_session_timeout={}",
            STATEMENT_TIMEOUT.as_millis(),
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        ));
        if let Some(schema) = &schema {
            options.push_str(&format!(" -c search_path={schema}"));
        }
        pg.options(options.trim_start());
        Ok(Spec {
            pg,
            schema,
            pool_size,
        })
    }
}

impl PostgresStore {
    /// Connects to the database a `postgres://` or `postgresql://` spec names and brings its
    /// schema up to date. Fails when the server cannot be reached: a server should not start
    /// on a store it cannot use.
    pub async fn open(spec: &str) -> Result<Self, StoreError> {
        let spec = Spec::parse(spec)?;
        let manager = Manager::from_config(
            spec.pg,
            NoTls,
            ManagerConfig {
                // A connection the server closed (a restart) is noticed by its task and
                // dropped here; one that dies unnoticed fails its next call, which is
                // answered `unavailable` and retried by the client.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(spec.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build the pool: {e}")))?;
        let store = PostgresStore {
            pool,
            gates: DashMap::new(),
        };
        let mut client = store.client().await?;
        let applied = schema::migrate(&mut client, spec.schema.as_deref()).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied PostgreSQL schema migrations");
        }
        Ok(store)
    }

    /// Drops the schema a spec names with `schema=NAME`, with everything in it; returns
    /// its name, or `None` for a spec without one (the database's default schema is never
    /// dropped). For tools that made a throwaway schema, such as `chat-sim compare`.
    pub async fn drop_schema(spec: &str) -> Result<Option<String>, StoreError> {
        let spec = Spec::parse(spec)?;
        let Some(schema) = spec.schema else {
            return Ok(None);
        };
        let (client, connection) = spec
            .pg
            .connect(NoTls)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect: {e}")))?;
        let task = tokio::spawn(connection);
        // `schema` is [a-z0-9_] only (checked by `Spec::parse`): safe to put in the text.
        let dropped = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .map_err(pg_error);
        drop(client);
        let _ = task.await;
        dropped.map(|()| Some(schema))
    }

    /// Waits for the conversation's turn. The sends of one conversation are serialized by
    /// its row lock in the database anyway; queueing them here first, in arrival order,
    /// keeps a busy conversation from occupying many pooled connections with sessions that
    /// only wait for that lock (starving every other conversation), and hands the lock on
    /// in a fair order instead of PostgreSQL's free-for-all among waiters.
    async fn turn(&self, conv: ConvId) -> Result<Turn<'_>, StoreError> {
        let gate = self.gates.entry(conv).or_default().clone();
        let mut turn = Turn {
            gates: &self.gates,
            conv,
            guard: None,
        };
        match tokio::time::timeout(OP_TIMEOUT, gate.lock_owned()).await {
            Ok(guard) => {
                turn.guard = Some(guard);
                Ok(turn)
            }
            Err(_) => Err(StoreError::Unavailable(format!(
                "the store is overloaded: conversation {conv} has had sends queued for {} s",
                OP_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn client(&self) -> Result<Object, Failure> {
        self.pool.get().await.map_err(|e| {
            Failure::Store(StoreError::Unavailable(format!(
                "no PostgreSQL connection: {}",
                with_causes(&e)
            )))
        })
    }
}

/// The idempotency record of (sender, client id), with its conversation's key.
const IDEM_GET: &str =
    "SELECT c.key, i.seq, i.useq, i.ts FROM idem i JOIN convs c ON c.id = i.conv_id
     WHERE i.user_id = $1 AND i.client_id = $2";

/// Locks a group's row: sends and membership changes of the group are ordered by it.
const GROUP_LOCK: &str = "SELECT name, admin, members FROM groups WHERE id = $1 FOR UPDATE";

/// Takes the conversation's next seq, locking its row to the end of the transaction.
const CONV_BUMP: &str = "UPDATE convs SET last_seq = last_seq + 1, last_ts = GREATEST(last_ts, $2)
     WHERE key = $1 RETURNING id, last_seq";

/// The first message of a conversation creates its row (locked, as the insert's own).
const CONV_FIRST: &str = "INSERT INTO convs (key, last_seq, last_ts) VALUES ($1, 1, $2)
     ON CONFLICT (key) DO NOTHING RETURNING id, last_seq";

/// Everything else a send writes, in one round trip: each participant's next useq (their
/// `users` rows locked in the order of the array, which is ascending: `unnest` yields the
/// ids in order and the insert handles, and locks, each row before it reads the next); the
/// message; an inbox entry per participant; the markers (the sender's own message is kept
/// out of its unread count; the first message puts the conversation in a recipient's
/// list); and the idempotency record, whose primary key catches a concurrent copy of the
/// same send. Returns each participant's new useq.
const APPEND_WRITE: &str = "WITH u AS (
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
const MARKS_JOIN: &str = "INSERT INTO marks (user_id, conv_id, ack, read, last_own, own_after_read)
     SELECT u, $2, 0, 0, 0, 0 FROM unnest($1::bigint[]) AS p(u)
     ON CONFLICT (user_id, conv_id) DO NOTHING";

/// The participants of a send, the sender first, as [`super::logic`] lists them: the two
/// users of a direct chat, or the current members of a group (`group`: its row, locked).
fn participants(req: &AppendRequest, group: Option<Row>) -> Result<Vec<UserId>, Failure> {
    let from = req.from;
    match req.conv {
        ConvId::Direct { lo, hi } if from == lo => Ok(vec![lo, hi]),
        ConvId::Direct { lo, hi } if from == hi => Ok(vec![hi, lo]),
        conv @ ConvId::Direct { .. } => {
            Err(StoreError::Forbidden(format!("user {from} is not a participant of {conv}")).into())
        }
        ConvId::Group(g) => {
            let row = group.ok_or_else(|| StoreError::NotFound(format!("no group {g}")))?;
            let members = members_of(&row, 2)?;
            if members.binary_search(&from).is_err() {
                return Err(StoreError::Forbidden(format!(
                    "user {from} is not a member of group {g}"
                ))
                .into());
            }
            let mut list = Vec::with_capacity(members.len());
            list.push(from);
            list.extend(members.into_iter().filter(|&u| u != from));
            Ok(list)
        }
    }
}

/// One attempt at a send, as one transaction, in four round trips: BEGIN; the idempotency
/// lookup, the group's lock and the conversation's bump, pipelined (PostgreSQL runs them in
/// that order); [`APPEND_WRITE`]; COMMIT. A duplicate or a refused send is rolled back,
/// which also undoes the bump: no seq is lost. See the module documentation for the order
/// of the locks.
async fn append_once(c: &mut Object, req: &AppendRequest, ts: i64) -> Result<Appended, Failure> {
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
async fn conv_id_or_create<C: GenericClient>(c: &C, key: &str) -> Result<i64, Failure> {
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

async fn create_group_tx(
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
    let mut list = members.to_vec();
    list.push(admin);
    list.sort_unstable();
    list.dedup();
    let ids: Vec<i64> = list.iter().map(|&u| id(u)).collect();
    execute(
        &tx,
        "INSERT INTO groups (id, name, admin, members) VALUES ($1, $2, $3, $4)",
        &[&id(gid), &name.as_bytes(), &id(admin), &ids],
    )
    .await?;
    let conv_id = conv_id_or_create(&tx, &ConvId::Group(gid).to_string()).await?;
    execute(&tx, MARKS_JOIN, &[&ids, &conv_id]).await?;
    tx.commit().await?;
    Ok(Group {
        id: gid,
        name: name.to_owned(),
        admin,
        members: list,
    })
}

/// A membership change under the group's lock, with the checks and messages of
/// [`super::logic::change_members`].
async fn change_members_tx(
    c: &mut Object,
    gid: u64,
    change: MemberChange,
) -> Result<Group, Failure> {
    let tx = c.transaction().await?;
    let row = query_opt(&tx, GROUP_LOCK, &[&id(gid)])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no group {gid}")))?;
    let mut group = Group {
        id: gid,
        name: utf8_of(&row, 0)?,
        admin: id_of(&row, 1)?,
        members: members_of(&row, 2)?,
    };
    let key = ConvId::Group(gid).to_string();
    match change {
        MemberChange::Add {
            by,
            user,
            max_members,
        } => {
            if by != group.admin {
                return Err(StoreError::Forbidden("only the admin adds members".into()).into());
            }
            let Err(at) = group.members.binary_search(&user) else {
                return Err(StoreError::Invalid(format!("user {user} is already a member")).into());
            };
            if group.members.len() >= max_members {
                return Err(StoreError::Invalid(format!(
                    "the group is full ({max_members} members)"
                ))
                .into());
            }
            group.members.insert(at, user);
            // A new member sees the group from now on; its history up to now too.
            let conv_id = conv_id_or_create(&tx, &key).await?;
            execute(&tx, MARKS_JOIN, &[&vec![id(user)], &conv_id]).await?;
        }
        MemberChange::Remove { by, user } => {
            if by != group.admin && by != user {
                return Err(StoreError::Forbidden(
                    "only the admin removes others; anyone may leave".into(),
                )
                .into());
            }
            let Ok(at) = group.members.binary_search(&user) else {
                return Err(StoreError::Invalid(format!("user {user} is not a member")).into());
            };
            group.members.remove(at);
            if user == group.admin
                && let Some(&next) = group.members.first()
            {
                group.admin = next;
            }
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

/// Moves a cumulative marker with the rules of [`super::logic::mark`], under the lock of
/// the (user, conversation) row. Sends lock that row too (after their own), so the count of
/// the user's own messages after the read marker is taken on a settled row.
async fn mark_tx(
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
    if seq > last {
        return Err(StoreError::Invalid(format!(
            "seq {seq} is beyond the last message of {conv} ({last})"
        ))
        .into());
    }
    let Some(conv_row) = found else {
        // No conversation: no marker can exist, and seq is 0, which moves nothing.
        return Ok(MarkOutcome {
            before: 0,
            after: 0,
        });
    };
    let conv_id: i64 = get(&conv_row, 0)?;
    let user_id = id(user);
    let mut row = query_opt(&tx, MARKS_LOCK, &[&user_id, &conv_id]).await?;
    if row.is_none() && seq > 0 {
        // The marker will move, which puts the conversation in the user's list. Create the
        // row first and lock it, so a send that creates it concurrently is not overwritten.
        execute(&tx, MARKS_JOIN, &[&vec![user_id], &conv_id]).await?;
        row = query_opt(&tx, MARKS_LOCK, &[&user_id, &conv_id]).await?;
    }
    let mut marks = match &row {
        Some(row) => marks_of(row, 0)?,
        None => Marks::default(),
    };
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
                let row = query_opt(
                    &tx,
                    "SELECT count(*) FROM messages
                     WHERE conv_id = $1 AND seq > $2 AND seq <= $3 AND sender = $4",
                    &[
                        &conv_id,
                        &int(seq, "seq")?,
                        &int(marks.last_own, "seq")?,
                        &user_id,
                    ],
                )
                .await?
                .ok_or_else(|| corrupt("count returned no row"))?;
                u64_of(&row, 0)?
            };
        }
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
    Ok(MarkOutcome {
        before,
        after: before.max(seq),
    })
}

fn message_of(row: &Row, conv: ConvId, from: usize) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        conv,
        seq: u64_of(row, from)?,
        from: id_of(row, from + 1)?,
        id: get::<String>(row, from + 2)?,
        body: utf8_of(row, from + 3)?,
        ts: u64_of(row, from + 4)?,
    })
}

/// A page of a conversation's history, newest first.
const HISTORY: &str = "SELECT seq, sender, client_id, body, ts FROM messages
     WHERE conv_id = (SELECT id FROM convs WHERE key = $1) AND seq < $2
     ORDER BY seq DESC LIMIT $3";

/// A page of a user's inbox with the messages it points at. The outer join shows an entry
/// whose message is missing, which is reported as damage rather than skipped.
const INBOX: &str = "SELECT i.useq, c.key, m.seq, m.sender, m.client_id, m.body, m.ts
     FROM inbox i
     JOIN convs c ON c.id = i.conv_id
     LEFT JOIN messages m ON m.conv_id = i.conv_id AND m.seq = i.seq
     WHERE i.user_id = $1 AND i.useq > $2
     ORDER BY i.useq LIMIT $3";

const INBOX_HEAD: &str = "SELECT last_useq FROM users WHERE user_id = $1";

/// A user's conversations with their markers; ordered by the caller.
const CONVERSATIONS: &str =
    "SELECT c.key, c.last_seq, c.last_ts, m.ack, m.read, m.last_own, m.own_after_read
     FROM marks m JOIN convs c ON c.id = m.conv_id
     WHERE m.user_id = $1";

const GROUP_GET: &str = "SELECT name, admin, members FROM groups WHERE id = $1";

const PUSH_PUT: &str = "INSERT INTO pushes (user_id, device, platform, token)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_id, device)
     DO UPDATE SET platform = EXCLUDED.platform, token = EXCLUDED.token";

const PUSHES: &str = "SELECT device, platform, token FROM pushes
     WHERE user_id = $1 ORDER BY device";

/// One statement, so the counter and the letter commit together: ids are never skipped
/// nor reused.
const DEAD_LETTER_PUT: &str = "WITH n AS (
         UPDATE counters SET value = value + 1 WHERE name = 'last_dead_letter'
         RETURNING value
     )
     INSERT INTO dead_letters (id, payload, error, ts)
     SELECT value, $1, $2, $3 FROM n RETURNING id";

const DEAD_LETTERS: &str = "SELECT id, payload, error, ts FROM dead_letters
     WHERE id > $1 ORDER BY id LIMIT $2";

const DEAD_LETTER_REMOVE: &str = "DELETE FROM dead_letters WHERE id = $1";

#[async_trait]
impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    /// Every read is a round trip to the database server: the server keeps its
    /// recent-conversations cache in front of this store.
    fn is_remote(&self) -> bool {
        true
    }

    async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        let ts = int(req.ts, "timestamp")?;
        let _turn = self.turn(req.conv).await?;
        let mut last = None;
        for _ in 0..APPEND_ATTEMPTS {
            match with_client!(self, c, append_once(&mut c, &req, ts).await) {
                Ok(done) => return Ok(done),
                Err(f) if f.is_race() => last = Some(f),
                Err(f) => return Err(f.into()),
            }
        }
        Err(match last {
            Some(f) => StoreError::from(f),
            None => StoreError::Unavailable("the send was not attempted".into()),
        })
    }

    async fn history(
        &self,
        conv: ConvId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let key = conv.to_string();
        let before = before.map_or(i64::MAX, bound);
        let params: Params = &[&key, &before, &limit_of(limit)];
        let rows = with_client!(self, c, query(&c, HISTORY, params).await)?;
        Ok(rows
            .iter()
            .map(|row| message_of(row, conv, 0))
            .collect::<Result<_, _>>()?)
    }

    async fn inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new()); // beyond any position ever handed out
        };
        let params: Params = &[&id(user), &after, &limit_of(limit)];
        let rows = with_client!(self, c, query(&c, INBOX, params).await)?;
        rows.iter()
            .map(|row| {
                let useq = u64_of(row, 0)?;
                if get::<Option<i64>>(row, 2)?.is_none() {
                    return Err(StoreError::Corrupt(format!(
                        "inbox entry {user}/{useq} has no message"
                    )));
                }
                Ok(InboxItem {
                    useq,
                    msg: message_of(row, conv_of(row, 1)?, 2)?,
                })
            })
            .collect()
    }

    async fn inbox_head(&self, user: UserId) -> Result<u64, StoreError> {
        let row = with_client!(self, c, query_opt(&c, INBOX_HEAD, &[&id(user)]).await)?;
        match row {
            Some(row) => u64_of(&row, 0),
            None => Ok(0),
        }
    }

    async fn mark(
        &self,
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    ) -> Result<MarkOutcome, StoreError> {
        let outcome = with_client!(self, c, mark_tx(&mut c, user, conv, marker, seq).await)?;
        Ok(outcome)
    }

    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConvSummary>, StoreError> {
        let rows = with_client!(self, c, query(&c, CONVERSATIONS, &[&id(user)]).await)?;
        let mut list = rows
            .iter()
            .map(|row| {
                let last_seq = u64_of(row, 1)?;
                let marks = marks_of(row, 3)?;
                Ok(ConvSummary {
                    conv: conv_of(row, 0)?,
                    last_seq,
                    last_ts: u64_of(row, 2)?,
                    read_seq: marks.read,
                    ack_seq: marks.ack,
                    unread: unread(last_seq, &marks),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Sorted here rather than in SQL: the tie-break is the conversation id's own order.
        super::sort_recent_first(&mut list);
        list.truncate(limit);
        Ok(list)
    }

    /// The store's tables with their indexes and TOAST, as PostgreSQL sizes them: see
    /// [`schema::table_bytes`]. The WAL is not counted.
    async fn disk_bytes(&self) -> Result<Option<u64>, StoreError> {
        let bytes = with_client!(self, c, Ok(schema::table_bytes(&c).await?))?;
        Ok(Some(bytes))
    }

    async fn create_group(
        &self,
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    ) -> Result<Group, StoreError> {
        let group = with_client!(
            self,
            c,
            create_group_tx(&mut c, &name, admin, &members).await
        )?;
        Ok(group)
    }

    async fn group(&self, gid: u64) -> Result<Option<Group>, StoreError> {
        let row = with_client!(self, c, query_opt(&c, GROUP_GET, &[&id(gid)]).await)?;
        row.map(|row| {
            Ok(Group {
                id: gid,
                name: utf8_of(&row, 0)?,
                admin: id_of(&row, 1)?,
                members: members_of(&row, 2)?,
            })
        })
        .transpose()
    }

    async fn change_members(&self, group: u64, change: MemberChange) -> Result<Group, StoreError> {
        let group = with_client!(self, c, change_members_tx(&mut c, group, change).await)?;
        Ok(group)
    }

    async fn put_push(&self, reg: PushRegistration) -> Result<(), StoreError> {
        let (platform, token) = (reg.platform.as_bytes(), reg.token.as_bytes());
        let params: Params = &[&id(reg.user), &reg.device, &platform, &token];
        with_client!(self, c, execute(&c, PUSH_PUT, params).await)?;
        Ok(())
    }

    async fn pushes(&self, user: UserId) -> Result<Vec<PushRegistration>, StoreError> {
        let rows = with_client!(self, c, query(&c, PUSHES, &[&id(user)]).await)?;
        rows.iter()
            .map(|row| {
                Ok(PushRegistration {
                    user,
                    device: get(row, 0)?,
                    platform: utf8_of(row, 1)?,
                    token: utf8_of(row, 2)?,
                })
            })
            .collect()
    }

    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<u64, StoreError> {
        let ts = int(letter.ts, "timestamp")?;
        let (payload, error) = (letter.payload.as_bytes(), letter.error.as_bytes());
        let params: Params = &[&payload, &error, &ts];
        let row = with_client!(self, c, query_opt(&c, DEAD_LETTER_PUT, params).await)?
            .ok_or_else(|| StoreError::Corrupt("the dead-letter id counter is missing".into()))?;
        u64_of(&row, 0)
    }

    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let params: Params = &[&after, &limit_of(limit)];
        let rows = with_client!(self, c, query(&c, DEAD_LETTERS, params).await)?;
        rows.iter()
            .map(|row| {
                Ok((
                    u64_of(row, 0)?,
                    DeadLetter {
                        payload: utf8_of(row, 1)?,
                        error: utf8_of(row, 2)?,
                        ts: u64_of(row, 3)?,
                    },
                ))
            })
            .collect()
    }

    async fn remove_dead_letter(&self, dead: u64) -> Result<(), StoreError> {
        let Ok(dead) = i64::try_from(dead) else {
            return Ok(()); // never handed out
        };
        with_client!(self, c, execute(&c, DEAD_LETTER_REMOVE, &[&dead]).await)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_takes_out_the_store_parameters() {
        let s = Spec::parse(
            "postgres://chat:chat@127.0.0.1:5433/chat?schema=t_1&pool_size=4&application_name=x",
        )
        .unwrap();
        assert_eq!(s.schema.as_deref(), Some("t_1"));
        assert_eq!(s.pool_size, 4);
        assert_eq!(s.pg.get_application_name(), Some("x"));
        assert_eq!(s.pg.get_dbname(), Some("chat"));
        let options = s.pg.get_options().unwrap();
        assert!(options.contains("synchronous_commit=on"), "{options}");
        assert!(options.ends_with("search_path=t_1"), "{options}");
        assert_eq!(s.pg.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    }

    #[test]
    fn spec_refuses_what_it_cannot_use() {
        for bad in [
            "postgres://h/db?schema=Bad",
            "postgres://h/db?schema=x;drop",
            "postgres://h/db?schema=1x",
            "postgres://h/db?pool_size=0",
            "postgres://h/db?nonsense=1",
        ] {
            assert!(
                matches!(Spec::parse(bad), Err(StoreError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn conversation_keys_round_trip() {
        for conv in [
            ConvId::Direct { lo: 1, hi: 2 },
            ConvId::Direct {
                lo: 7,
                hi: u64::MAX,
            },
            ConvId::Group(42),
        ] {
            assert_eq!(parse_conv_key(&conv.to_string()), Some(conv));
        }
        assert_eq!(parse_conv_key("x:1"), None);
        assert_eq!(parse_conv_key("d:1"), None);
    }

    #[test]
    fn ids_keep_every_bit() {
        for v in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            assert_eq!(id(v) as u64, v);
        }
        assert_eq!(bound(u64::MAX), i64::MAX);
        assert!(int(u64::MAX, "seq").is_err());
    }
}
