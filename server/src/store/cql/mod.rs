//! ScyllaDB / Apache Cassandra over CQL, through the `scylla` driver: the wide-column store
//! of the source design.
//!
//! `--store cql://HOST:PORT[,HOST:PORT…]/KEYSPACE[?OPTIONS]`. The keyspace and its tables
//! are created at start when missing ([`schema`]); every statement is prepared once.
//! Options:
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `rf` | 1 | replication factor of a keyspace this store creates (SimpleStrategy) |
//! | `consistency` | `local_quorum` | of every read and write: `one`, `two`, `three`, `quorum`, `all`, `local_one`, `local_quorum`, `each_quorum` |
//! | `timeout_ms` | 5000 | client-side timeout of one request; past it the operation is `unavailable` |
//! | `shared` | false | `true`: several server processes share the keyspace (cluster mode; `serve --cluster` sets it) |
//!
//! With `rf=1` a quorum is the one replica, so the default costs nothing on a single node
//! and keeps reads and writes overlapping (read-your-writes) when `rf=3`.
//!
//! **Sequencing** is done in this process by one writer task ([`sequencer`]), which hands
//! out every `seq` and `useq` and writes a batch of requests at a time. Without `shared`
//! that is the whole story, correct for one server process per keyspace, and the fast
//! path. With `shared=true` several processes (the nodes of a cluster) write one keyspace:
//! every counter and marker lives in one partition (`seq_state`, [`state_table`]), each
//! batch commits with one compare-and-set on it (a conditional batch, `IF epoch = …`,
//! SERIAL consistency), and the right to commit is a keyspace-wide lease the nodes take in
//! turn ([`sequencer::lease`]); the write timestamps of each epoch are fenced above the
//! previous epoch's ([`clock`]), so a node that lost the lease cannot overwrite anything
//! committed after it. What it costs is measured by `store_cql::measure` (see
//! docs/protocol.md, "Cluster mode"). A keyspace is sequenced one way for life: a shared
//! store refuses a keyspace written single-node, and the other way round. **Durability**: a write is acknowledged by Cassandra
//! once it is in the commitlog of the replicas the consistency level asks for; only with
//! `commitlog_sync: batch` (or `group`) in cassandra.yaml does that mean fsynced, as in the
//! node that `scripts/cassandra.sh` runs. With Cassandra's default (`periodic`, 10 s) an
//! acknowledged message can still be lost to a power failure of every replica.
//!
//! **Reads** never look past the counters (`convs.last_seq`, `users.last_useq`,
//! `meta.last_dead`, or their `seq_state` rows), which are written after the rows they count; so a reader sees each
//! batch of messages whole or not at all. Reads cost one extra single-row read for that.

mod clock;
mod schema;
mod sequencer;
mod state_table;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::CqlValue;
use tokio::sync::{mpsc, oneshot};

use self::clock::FenceClock;
use self::schema::Statements;
use self::sequencer::{Done, Job, META_LAST_DEAD, Op};
use self::state_table::StateStatements;
use super::rules::{Marks, unread};
use super::sequencing::ConvMeta;
use super::{
    AppendRequest, Appended, ConvSummary, DeadLetter, Group, GroupStore, InboxItem, MarkOutcome,
    Marker, MemberChange, MessageStore, PushRegistration, PushStore, SharedStore, StorageReport,
    StoreError, StoredMessage, bucket_of,
};
use crate::model::{ConvId, UserId};

/// How many single-row reads one read request has in flight at once.
const READ_CONCURRENCY: usize = 64;

/// What a `cql://` spec says.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `host:port` of the contact points.
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication_factor: u32,
    pub consistency: Consistency,
    /// Client-side timeout of one request.
    pub timeout: Duration,
    /// Idempotency records are written with a TTL that keeps them at least this long
    /// (see `schema::ttl_secs`): Cassandra drops them by itself.
    pub idempotency_window: Duration,
    /// Several processes share the keyspace: sequence through the keyspace's lease and
    /// compare-and-set rather than by this process alone.
    pub shared: bool,
}

impl Settings {
    /// Parses
    /// `cql://HOST:PORT[,HOST:PORT…]/KEYSPACE[?rf=N&consistency=C&timeout_ms=N&shared=B]`.
    pub fn parse(spec: &str) -> Result<Settings, String> {
        let usage =
            "expected cql://HOST:PORT/KEYSPACE[?rf=N&consistency=C&timeout_ms=N&shared=true]";
        let rest = spec
            .strip_prefix("cql://")
            .ok_or_else(|| format!("{spec:?}: {usage}"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = path
            .split_once('/')
            .ok_or_else(|| format!("{spec:?}: no keyspace; {usage}"))?;
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') {
                    h.to_owned()
                } else {
                    format!("{h}:9042")
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err(format!("{spec:?}: no host; {usage}"));
        }
        // The name goes into DDL text: only what CQL accepts unquoted.
        let valid = (1..=48).contains(&keyspace.len())
            && keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            && keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "invalid keyspace {keyspace:?}: 1-48 letters, digits or _, starting with a letter"
            ));
        }
        let mut s = Settings {
            nodes,
            keyspace: keyspace.to_ascii_lowercase(),
            replication_factor: 1,
            consistency: Consistency::LocalQuorum,
            timeout: Duration::from_secs(5),
            idempotency_window: crate::store::StoreOptions::DEFAULT_IDEMPOTENCY_WINDOW,
            shared: false,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "rf" => {
                    s.replication_factor = v
                        .parse()
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| format!("rf={v:?}: expected an integer >= 1"))?;
                }
                "consistency" => {
                    s.consistency = match v.to_ascii_lowercase().as_str() {
                        "one" => Consistency::One,
                        "two" => Consistency::Two,
                        "three" => Consistency::Three,
                        "quorum" => Consistency::Quorum,
                        "all" => Consistency::All,
                        "local_one" => Consistency::LocalOne,
                        "local_quorum" => Consistency::LocalQuorum,
                        "each_quorum" => Consistency::EachQuorum,
                        _ => {
                            return Err(format!(
                                "consistency={v:?}: expected one, two, three, quorum, all, \
                                 local_one, local_quorum or each_quorum"
                            ));
                        }
                    };
                }
                "timeout_ms" => {
                    let ms: u64 = v
                        .parse()
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| format!("timeout_ms={v:?}: expected an integer >= 1"))?;
                    s.timeout = Duration::from_millis(ms);
                }
                "shared" => {
                    s.shared = match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("shared={v:?}: expected true or false")),
                    };
                }
                _ => {
                    return Err(format!(
                        "unknown option {k:?} in {spec:?}: known are rf, consistency, \
                         timeout_ms, shared"
                    ));
                }
            }
        }
        Ok(s)
    }
}

/// The CQL store.
pub struct CqlStore {
    shared: Arc<Shared>,
    writer: mpsc::UnboundedSender<Job>,
}

/// What the store and its writer task share.
pub(super) struct Shared {
    session: Session,
    st: Statements,
    /// Shared mode: where the counters and markers live instead of their own tables.
    state: Option<StateStatements>,
    /// Shared mode: the session's write timestamps, fenced per epoch.
    clock: Arc<FenceClock>,
    settings: Settings,
    /// Bytes of rows this store wrote and Cassandra acknowledged (values only).
    written: AtomicU64,
    /// For [`Store::disk_bytes`]: the SSTable figure last seen and `written` at that time.
    disk: Mutex<(u64, u64)>,
}

impl CqlStore {
    /// Connects, creates the keyspace and tables if needed, prepares the statements and
    /// starts the sequencer. Fails (rather than waiting) when no node answers.
    pub async fn open(spec: &str) -> Result<CqlStore, StoreError> {
        let settings = Settings::parse(spec).map_err(StoreError::Spec)?;
        Self::open_with(settings).await
    }

    /// [`CqlStore::open`] with parsed settings.
    pub async fn open_with(settings: Settings) -> Result<CqlStore, StoreError> {
        let profile = ExecutionProfile::builder()
            .consistency(settings.consistency)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .request_timeout(Some(settings.timeout))
            .build();
        let clock = Arc::new(FenceClock::default());
        let builder = SessionBuilder::new()
            .known_nodes(&settings.nodes)
            .connection_timeout(Duration::from_secs(5))
            .default_execution_profile_handle(profile.into_handle());
        // One writer, one clock: a retried or late copy of a write never overwrites a newer
        // one, even when different coordinators stamp them. Shared: one clock per epoch.
        let builder = if settings.shared {
            builder.timestamp_generator(clock.clone())
        } else {
            builder.timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        };
        let session = tokio::time::timeout(Duration::from_secs(30), builder.build())
            .await
            .map_err(|_| StoreError::Unavailable("no CQL node answered within 30 s".into()))?
            .map_err(db_err)?;
        schema::create(&session, &settings).await?;
        let st = Statements::prepare(&session, &settings).await?;
        let state = match settings.shared {
            true => Some(StateStatements::prepare(&session, &settings).await?),
            false => None,
        };
        let shared = Arc::new(Shared {
            session,
            st,
            state,
            clock,
            settings,
            written: AtomicU64::new(0),
            disk: Mutex::new((0, 0)),
        });
        shared.check_mode().await?;
        let writer = sequencer::spawn(shared.clone()).await?;
        Ok(CqlStore { shared, writer })
    }

    /// Drops the keyspace a spec names, with everything in it, and returns its name. For
    /// tools that made a throwaway keyspace, such as `chat-sim compare`.
    pub async fn drop_keyspace(spec: &str) -> Result<String, StoreError> {
        let settings = Settings::parse(spec).map_err(StoreError::Spec)?;
        let session = tokio::time::timeout(
            Duration::from_secs(30),
            SessionBuilder::new()
                .known_nodes(&settings.nodes)
                .connection_timeout(Duration::from_secs(5))
                .build(),
        )
        .await
        .map_err(|_| StoreError::Unavailable("no CQL node answered within 30 s".into()))?
        .map_err(db_err)?;
        // The keyspace is letters, digits and _ only (checked by `Settings::parse`).
        let ks = settings.keyspace;
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
            .await
            .map_err(db_err)?;
        Ok(ks)
    }

    /// The settings the store runs with.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// The driver session, for tests and tools that look at the keyspace directly.
    pub fn session(&self) -> &Session {
        &self.shared.session
    }

    async fn write(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job { op, reply })
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?
    }
}

/// Maps a driver error: whatever it is, the operation did not complete.
pub(super) fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("cassandra: {e}"))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("cassandra row: {e}"))
}

/// Whether Cassandra (or the driver) refused a request before running it, so nothing of
/// it can land later. Timeouts and broken connections leave the outcome open.
pub(super) fn is_definite_refusal(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::BadQuery(_) | ExecutionError::PrepareError(_) => true,
        ExecutionError::LastAttemptError(a) => match a {
            RequestAttemptError::SerializationError(_)
            | RequestAttemptError::CqlRequestSerialization(_) => true,
            RequestAttemptError::DbError(db, _) => matches!(
                db,
                DbError::SyntaxError
                    | DbError::Invalid
                    | DbError::AlreadyExists { .. }
                    | DbError::Unauthorized
                    | DbError::ConfigError
            ),
            _ => false,
        },
        _ => false,
    }
}

/// A u64 (id, seq, timestamp) in a `bigint` column, bit for bit.
pub(super) fn big(v: u64) -> CqlValue {
    CqlValue::BigInt(v as i64)
}

/// A conversation's key in every table: its protocol id (`d:1:2`, `g:7`).
pub(super) fn conv_text(conv: ConvId) -> String {
    conv.to_string()
}

pub(super) fn parse_conv(s: &str) -> Result<ConvId, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad conversation id {s:?} in a row")))
}

impl Shared {
    /// The `seq_state` statements; only a shared store's sequencer asks for them.
    pub(super) fn state_st(&self) -> Result<&StateStatements, StoreError> {
        self.state
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is not in shared mode".into()))
    }

    /// Refuses a keyspace sequenced the other way: a single-node store would not see the
    /// counters of a shared one (and overwrite its messages), a shared store would not see
    /// those a single-node store left in their own tables.
    async fn check_mode(&self) -> Result<(), StoreError> {
        let ks = &self.settings.keyspace;
        let count = |q: String| async move {
            let rows = self
                .session
                .query_unpaged(q, ())
                .await
                .map_err(db_err)?
                .into_rows_result()
                .map_err(corrupt)?;
            Ok::<_, StoreError>(rows.rows_num())
        };
        let leased = count(format!(
            "SELECT epoch FROM {ks}.seq_state WHERE p = 0 LIMIT 1"
        ))
        .await?
            > 0;
        if !self.settings.shared && leased {
            return Err(StoreError::Spec(format!(
                "keyspace {ks} is sequenced for several nodes: open it with ?shared=true \
                 (serve --cluster does)"
            )));
        }
        if self.settings.shared && !leased {
            let used = count(format!("SELECT conv FROM {ks}.convs LIMIT 1")).await?
                + count(format!("SELECT user FROM {ks}.users LIMIT 1")).await?
                + count(format!("SELECT name FROM {ks}.meta LIMIT 1")).await?;
            if used > 0 {
                return Err(StoreError::Spec(format!(
                    "keyspace {ks} holds data of a single-node store, whose counters a shared \
                     store does not read: use a new keyspace for cluster mode"
                )));
            }
        }
        Ok(())
    }

    /// Runs a read and decodes its rows.
    async fn select<R>(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(db_err)?
            .into_rows_result()
            .map_err(corrupt)?;
        result
            .rows::<R>()
            .map_err(corrupt)?
            .collect::<Result<Vec<R>, _>>()
            .map_err(corrupt)
    }

    async fn conv_meta(&self, conv: ConvId) -> Result<ConvMeta, StoreError> {
        let rows: Vec<(i64, i64)> = self
            .select(
                self.state
                    .as_ref()
                    .map_or(&self.st.select_conv, |s| &s.select_conv),
                (conv_text(conv),),
            )
            .await?;
        Ok(rows
            .first()
            .map(|&(s, t)| ConvMeta {
                last_seq: s as u64,
                last_ts: t as u64,
            })
            .unwrap_or_default())
    }

    async fn last_useq(&self, user: UserId) -> Result<u64, StoreError> {
        let st = self
            .state
            .as_ref()
            .map_or(&self.st.select_user, |s| &s.select_user);
        let rows: Vec<(i64,)> = self.select(st, (user as i64,)).await?;
        Ok(rows.first().map_or(0, |&(u,)| u as u64))
    }

    async fn marks(&self, user: UserId, conv: ConvId) -> Result<Option<Marks>, StoreError> {
        let rows: Vec<(i64, i64, i64, i64)> = self
            .select(
                self.state
                    .as_ref()
                    .map_or(&self.st.select_marks, |s| &s.select_marks),
                (user as i64, conv_text(conv)),
            )
            .await?;
        Ok(rows.first().map(|&r| marks_of(r)))
    }

    async fn group(&self, id: u64) -> Result<Option<Group>, StoreError> {
        let rows: Vec<(String, i64, Option<Vec<i64>>)> = self
            .select(
                self.state
                    .as_ref()
                    .map_or(&self.st.select_group, |s| &s.select_group),
                (id as i64,),
            )
            .await?;
        Ok(rows.into_iter().next().map(|(name, admin, members)| Group {
            id,
            name,
            admin: admin as u64,
            members: members
                .unwrap_or_default()
                .into_iter()
                .map(|u| u as u64)
                .collect(),
        }))
    }

    async fn meta(&self, name: &str) -> Result<u64, StoreError> {
        let st = self
            .state
            .as_ref()
            .map_or(&self.st.select_meta, |s| &s.select_meta);
        let rows: Vec<(i64,)> = self.select(st, (name,)).await?;
        Ok(rows.first().map_or(0, |&(v,)| v as u64))
    }

    async fn message(&self, conv: ConvId, seq: u64) -> Result<StoredMessage, StoreError> {
        let rows: Vec<(i64, String, String, i64)> = self
            .select(
                &self.st.select_message,
                (conv_text(conv), bucket_of(seq) as i64, seq as i64),
            )
            .await?;
        let (from, id, body, ts) = rows.into_iter().next().ok_or_else(|| {
            StoreError::Corrupt(format!("inbox entry points at no message ({conv} {seq})"))
        })?;
        Ok(StoredMessage {
            conv,
            seq,
            from: from as u64,
            id,
            body,
            ts: ts as u64,
        })
    }
}

fn marks_of((ack, read, last_own, own_after_read): (i64, i64, i64, i64)) -> Marks {
    Marks {
        ack: ack as u64,
        read: read as u64,
        last_own: last_own as u64,
        own_after_read: own_after_read as u64,
    }
}

/// Runs `f` on every item, at most `n` at a time, and returns the results in order.
pub(super) async fn bounded<I, T, E, F, Fut>(items: Vec<I>, n: usize, f: F) -> Result<Vec<T>, E>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut out = Vec::with_capacity(items.len());
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let chunk: Vec<Fut> = items.by_ref().take(n).map(&f).collect();
        out.extend(futures_util::future::try_join_all(chunk).await?);
    }
    Ok(out)
}

/// A CQL `LIMIT`: at most `n`, and never more than an `int` holds.
fn cql_limit(n: usize) -> i32 {
    n.min(i32::MAX as usize) as i32
}

fn unexpected(what: &str) -> StoreError {
    StoreError::Unavailable(format!("the sequencer answered an unexpected {what}"))
}

#[async_trait]
impl MessageStore for CqlStore {
    fn name(&self) -> &'static str {
        "cql"
    }

    async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        match self.write(Op::Append(req)).await? {
            Done::Appended(a) => Ok(a),
            _ => Err(unexpected("answer to an append")),
        }
    }

    async fn history(
        &self,
        conv: ConvId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let sh = &self.shared;
        let last = sh.conv_meta(conv).await?.last_seq;
        let top = before.map_or(last, |b| b.saturating_sub(1).min(last));
        let mut out = Vec::new();
        if top == 0 || limit == 0 {
            return Ok(out);
        }
        let key = conv_text(conv);
        let mut bucket = bucket_of(top);
        loop {
            let rows: Vec<(i64, i64, String, String, i64)> = sh
                .select(
                    &sh.st.select_history,
                    (
                        &key,
                        bucket as i64,
                        top as i64,
                        cql_limit(limit - out.len()),
                    ),
                )
                .await?;
            out.extend(
                rows.into_iter()
                    .map(|(seq, from, id, body, ts)| StoredMessage {
                        conv,
                        seq: seq as u64,
                        from: from as u64,
                        id,
                        body,
                        ts: ts as u64,
                    }),
            );
            if out.len() >= limit || bucket == 0 {
                return Ok(out);
            }
            bucket -= 1;
        }
    }

    async fn inbox(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let sh = &self.shared;
        let head = sh.last_useq(user).await?;
        if after >= head || limit == 0 {
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        for bucket in bucket_of(after + 1)..=bucket_of(head) {
            let rows: Vec<(i64, String, i64)> = sh
                .select(
                    &sh.st.select_inbox,
                    (
                        user as i64,
                        bucket as i64,
                        after as i64,
                        head as i64,
                        cql_limit(limit - entries.len()),
                    ),
                )
                .await?;
            for (useq, conv, seq) in rows {
                entries.push((useq as u64, parse_conv(&conv)?, seq as u64));
            }
            if entries.len() >= limit {
                break;
            }
        }
        // The inbox points at messages stored once; fetch them, in order.
        bounded(entries, READ_CONCURRENCY, |(useq, conv, seq)| async move {
            Ok::<_, StoreError>(InboxItem {
                useq,
                msg: sh.message(conv, seq).await?,
            })
        })
        .await
    }

    async fn inbox_head(&self, user: UserId) -> Result<u64, StoreError> {
        self.shared.last_useq(user).await
    }

    async fn mark(
        &self,
        user: UserId,
        conv: ConvId,
        marker: Marker,
        seq: u64,
    ) -> Result<MarkOutcome, StoreError> {
        match self
            .write(Op::Mark {
                user,
                conv,
                marker,
                seq,
            })
            .await?
        {
            Done::Marked(m) => Ok(m),
            _ => Err(unexpected("answer to a marker")),
        }
    }

    async fn conversations(
        &self,
        user: UserId,
        limit: usize,
    ) -> Result<Vec<ConvSummary>, StoreError> {
        let sh = &self.shared;
        let st = sh
            .state
            .as_ref()
            .map_or(&sh.st.select_user_marks, |s| &s.select_user_marks);
        let rows: Vec<(String, i64, i64, i64, i64)> = sh.select(st, (user as i64,)).await?;
        let mut list = bounded(rows, READ_CONCURRENCY, |(conv, a, r, o, n)| async move {
            let conv = parse_conv(&conv)?;
            let marks = marks_of((a, r, o, n));
            let meta = sh.conv_meta(conv).await?;
            Ok::<_, StoreError>(ConvSummary {
                conv,
                last_seq: meta.last_seq,
                last_ts: meta.last_ts,
                read_seq: marks.read,
                ack_seq: marks.ack,
                unread: unread(meta.last_seq, &marks),
            })
        })
        .await?;
        super::sort_recent_first(&mut list);
        list.truncate(limit);
        Ok(list)
    }

    /// Cassandra's own figure for the keyspace's SSTables, from the virtual table
    /// `system_views.disk_usage` (the node's live-disk-space metric per table, in whole
    /// MiB, local to the node answering), plus what this store wrote since that figure last
    /// moved: acknowledged data sits in memtables and the commitlog until a flush, where
    /// Cassandra counts none of it. The second part is this process's own count of the
    /// values it wrote (not Cassandra's on-disk encoding) and starts again from zero
    /// whenever the SSTable figure changes. Cassandra 5.0 offers nothing finer over CQL:
    /// `system.table_estimates` is refreshed every few minutes and byte counts of tables
    /// (`nodetool tablestats`) are JMX only.
    async fn disk_bytes(&self) -> Result<Option<u64>, StoreError> {
        let sh = &self.shared;
        let rows: Vec<(String, Option<i64>)> = sh
            .select(&sh.st.select_disk_usage, (&sh.settings.keyspace,))
            .await?;
        let sstables: u64 = rows
            .iter()
            .filter(|(t, _)| schema::TABLE_NAMES.contains(&t.as_str()))
            .map(|(_, mib)| mib.unwrap_or(0).max(0) as u64 * 1024 * 1024)
            .sum();
        let written = sh.written.load(Ordering::Relaxed);
        let mut disk = sh.disk.lock();
        if disk.0 != sstables {
            *disk = (sstables, written);
        }
        Ok(Some(sstables + written.saturating_sub(disk.1)))
    }

    /// Cassandra's live SSTable bytes per table (`system_views.disk_usage`, whole MiB,
    /// local to the node answering), grouped by [`Table`]. What sits in memtables and the
    /// commitlog is not on this list until a flush; the commitlog's size is not readable
    /// over CQL (`journal` is `None`).
    async fn storage(&self) -> Result<Option<StorageReport>, StoreError> {
        let sh = &self.shared;
        let rows: Vec<(String, Option<i64>)> = sh
            .select(&sh.st.select_disk_usage, (&sh.settings.keyspace,))
            .await?;
        let mut report = StorageReport::default();
        for (table, mib) in rows {
            let bytes = mib.unwrap_or(0).max(0) as u64 * 1024 * 1024;
            report.add(schema::table_of(&table), bytes);
        }
        Ok(Some(report))
    }

    /// Flushing and compacting are node operations CQL does not offer (`nodetool flush`,
    /// `nodetool compact`): refused here, so nobody takes an unflushed figure for a
    /// settled one. Expired idempotency records go by their TTL at compaction.
    async fn settle(&self) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(
            "settling a CQL store is a node operation: `nodetool flush` and `nodetool \
             compact` on the keyspace, with the node's own tools",
        ))
    }

    /// The tables live in the database's processes.
    fn memory(&self) -> Option<crate::store::StoreMemory> {
        None
    }
}

/// Only a store opened with `shared=true` is handed out as shared ([`super::Backend`]).
impl SharedStore for CqlStore {}

#[async_trait]
impl GroupStore for CqlStore {
    async fn create_group(
        &self,
        name: String,
        admin: UserId,
        members: Vec<UserId>,
    ) -> Result<Group, StoreError> {
        match self
            .write(Op::CreateGroup {
                name,
                admin,
                members,
            })
            .await?
        {
            Done::Group(g) => Ok(g),
            _ => Err(unexpected("answer to a new group")),
        }
    }

    async fn group(&self, id: u64) -> Result<Option<Group>, StoreError> {
        self.shared.group(id).await
    }

    async fn change_members(&self, group: u64, change: MemberChange) -> Result<Group, StoreError> {
        match self.write(Op::ChangeMembers { group, change }).await? {
            Done::Group(g) => Ok(g),
            _ => Err(unexpected("answer to a membership change")),
        }
    }
}

#[async_trait]
impl PushStore for CqlStore {
    /// A registration is not sequenced, but written by the sequencer: in shared mode every
    /// write must carry the timestamps of the epoch its node holds.
    async fn put_push(&self, reg: PushRegistration) -> Result<(), StoreError> {
        match self.write(Op::Push(reg)).await? {
            Done::Written => Ok(()),
            _ => Err(unexpected("answer to a push registration")),
        }
    }

    async fn pushes(&self, user: UserId) -> Result<Vec<PushRegistration>, StoreError> {
        let sh = &self.shared;
        let rows: Vec<(String, String, String)> =
            sh.select(&sh.st.select_pushes, (user as i64,)).await?;
        Ok(rows
            .into_iter()
            .map(|(device, platform, token)| PushRegistration {
                user,
                device,
                platform,
                token,
            })
            .collect())
    }

    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<u64, StoreError> {
        match self.write(Op::DeadLetter(letter)).await? {
            Done::DeadLetter(id) => Ok(id),
            _ => Err(unexpected("answer to a dead letter")),
        }
    }

    async fn dead_letters(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let sh = &self.shared;
        let last = sh.meta(META_LAST_DEAD).await?;
        let mut out = Vec::new();
        if after >= last || limit == 0 {
            return Ok(out);
        }
        for bucket in bucket_of(after + 1)..=bucket_of(last) {
            let rows: Vec<(i64, String, String, i64)> = sh
                .select(
                    &sh.st.select_dead,
                    (
                        bucket as i64,
                        after as i64,
                        last as i64,
                        cql_limit(limit - out.len()),
                    ),
                )
                .await?;
            out.extend(rows.into_iter().map(|(id, payload, error, ts)| {
                (
                    id as u64,
                    DeadLetter {
                        payload,
                        error,
                        ts: ts as u64,
                    },
                )
            }));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Forgetting a listed (so committed) dead letter needs no sequencing, only a delete
    /// stamped after the insert: the sequencer writes it, like every other row.
    async fn remove_dead_letter(&self, id: u64) -> Result<(), StoreError> {
        match self.write(Op::RemoveDeadLetter(id)).await? {
            Done::Written => Ok(()),
            _ => Err(unexpected("answer to removing a dead letter")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults_and_options() {
        let s = Settings::parse("cql://127.0.0.1:9042/chat").unwrap();
        assert_eq!(s.nodes, vec!["127.0.0.1:9042"]);
        assert_eq!(s.keyspace, "chat");
        assert_eq!(s.replication_factor, 1);
        assert_eq!(s.consistency, Consistency::LocalQuorum);
        assert_eq!(s.timeout, Duration::from_secs(5));
        let s = Settings::parse("cql://a:1,b/ks_2?rf=3&consistency=QUORUM&timeout_ms=250").unwrap();
        assert_eq!(s.nodes, vec!["a:1", "b:9042"]);
        assert_eq!(
            (s.replication_factor, s.consistency, s.timeout),
            (3, Consistency::Quorum, Duration::from_millis(250))
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, says) in [
            ("cql://h:1", "no keyspace"),
            ("cql:///ks", "no host"),
            ("cql://h/bad-name", "invalid keyspace"),
            ("cql://h/ks?rf=0", "rf="),
            ("cql://h/ks?consistency=most", "consistency="),
            ("cql://h/ks?x=1", "unknown option"),
        ] {
            let e = Settings::parse(spec).unwrap_err();
            assert!(e.contains(says), "{spec}: {e}");
        }
    }
}
