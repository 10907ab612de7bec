//! The PostgreSQL backend: `--store postgres://USER:PASSWORD@HOST:PORT/DB`.
//!
//! A pool of async connections (deadpool over tokio-postgres) serves every call. The schema
//! is created and upgraded by the migrations compiled into the binary ([`schema`]) when the
//! store opens.
//!
//! # Sequencing
//!
//! The rules are those of [`super::rules`], which the memory and fjall backends run one
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

// The module is split by what each file holds: the writing transactions (`writes`), value
// and column conversions (`rows`), error classification (`failure`), the spec (`spec`) and
// the migrations (`schema`); the store itself and its reads are here.
mod failure;
mod rows;
mod schema;
mod spec;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use self::failure::{Failure, pg_error, with_causes};
use self::rows::{
    Params, bound, conv_of, execute, get, id, id_of, int, limit_of, marks_of, members_of,
    message_of, query, query_opt, u64_of, utf8_of,
};
use self::spec::Spec;
use self::writes::{append_once, change_members_tx, create_group_tx, mark_tx};
use super::rules::unread;
use super::{
    AppendRequest, Appended, ConvSummary, DeadLetter, Group, GroupStore, InboxItem, MarkOutcome,
    Marker, MemberChange, MessageStore, PushRegistration, PushStore, SharedStore, StorageReport,
    StoreError, StoreOptions, StoredMessage,
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
    /// The idempotency window, in ms.
    window_ms: u64,
    /// The task that deletes expired idempotency records; stopped with the store.
    sweeper: Option<tokio::task::AbortHandle>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(s) = self.sweeper.take() {
            s.abort();
        }
    }
}

/// How often expired idempotency records are deleted: a fraction of the window, so none
/// outlives it by much, and at most every ten minutes.
fn sweep_interval(window: Duration) -> Duration {
    (window / 4).clamp(Duration::from_millis(100), Duration::from_secs(600))
}

/// Deletes the idempotency records of sends before `cutoff_ms` (by the `idem_ts` index).
async fn sweep(pool: &Pool, cutoff_ms: u64) -> Result<u64, StoreError> {
    let c = pool
        .get()
        .await
        .map_err(|e| StoreError::Unavailable(format!("no PostgreSQL connection: {e}")))?;
    let cutoff = i64::try_from(cutoff_ms).unwrap_or(i64::MAX);
    c.execute("DELETE FROM idem WHERE ts < $1", &[&cutoff])
        .await
        .map_err(pg_error)
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

impl PostgresStore {
    /// Connects to the database a `postgres://` or `postgresql://` spec names and brings its
    /// schema up to date. Fails when the server cannot be reached: a server should not start
    /// on a store it cannot use.
    pub async fn open(spec: &str) -> Result<Self, StoreError> {
        Self::open_with(spec, &StoreOptions::default()).await
    }

    /// [`PostgresStore::open`] with options: idempotency records older than the window are
    /// deleted by a background sweep (every quarter window, at most every ten minutes).
    pub async fn open_with(spec: &str, options: &StoreOptions) -> Result<Self, StoreError> {
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
        let window_ms = u64::try_from(options.idempotency_window.as_millis()).unwrap_or(u64::MAX);
        let mut store = PostgresStore {
            pool,
            gates: DashMap::new(),
            window_ms,
            sweeper: None,
        };
        let mut client = store.client().await?;
        let applied = schema::migrate(&mut client, spec.schema.as_deref()).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied PostgreSQL schema migrations");
        }
        drop(client);
        let pool = store.pool.clone();
        let interval = sweep_interval(options.idempotency_window);
        store.sweeper = Some(
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    let cutoff = crate::model::now_ms().saturating_sub(window_ms);
                    match sweep(&pool, cutoff).await {
                        Ok(n) if n > 0 => tracing::debug!(n, "expired idempotency records"),
                        Ok(_) => {}
                        // Nothing is lost by a missed sweep: the next one catches up.
                        Err(e) => tracing::debug!(error = %e, "idempotency sweep failed"),
                    }
                }
            })
            .abort_handle(),
        );
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

/// Every node of a cluster may write the same database: the row locks of the
/// transactions sequence each conversation whatever process sends (see the module
/// documentation).
impl SharedStore for PostgresStore {}

#[async_trait]
impl MessageStore for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
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

    /// The store's tables by [`schema::storage`]; the WAL (the cluster's) apart.
    async fn storage(&self) -> Result<Option<StorageReport>, StoreError> {
        let c = self.client().await?;
        Ok(Some(schema::storage(&c).await?))
    }

    /// Deletes the expired idempotency records now, then rewrites every table compactly
    /// ([`schema::compact`]). Takes each table's exclusive lock in turn: for measurements
    /// after a run, not while serving.
    async fn settle(&self) -> Result<(), StoreError> {
        sweep(
            &self.pool,
            crate::model::now_ms().saturating_sub(self.window_ms),
        )
        .await?;
        let c = self.client().await?;
        schema::compact(&c).await
    }

    /// The tables live in the database's processes.
    fn memory(&self) -> Option<crate::store::StoreMemory> {
        None
    }
}

#[async_trait]
impl GroupStore for PostgresStore {
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
}

#[async_trait]
impl PushStore for PostgresStore {
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
    use super::rows::parse_conv_key;
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
                matches!(Spec::parse(bad), Err(StoreError::Spec(_))),
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
