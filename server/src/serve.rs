//! `chat-server serve` as a library call: the flags (and `CHAT_*` variables) that
//! configure a server, turned into a [`Config`] in one place, and [`serve`], which opens
//! the store, binds, prints the `listening on ADDR` line that scripts and the
//! child-process harness read, and runs until shutdown. The binary and the simulator's
//! child server both call it, so they cannot drift apart; every default is [`Config`]'s.

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

use crate::config::Config;
use crate::process::{self, LISTENING};
use crate::push::PushConfig;
use crate::store::{self, Backend, OpenError, StoreOptions};

/// The defaults, once: those of [`Config::new`].
fn defaults() -> Config {
    Config::new(String::new())
}

/// How to serve: the flags of `chat-server serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "CHAT_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Storage backend: `memory`, `fjall:PATH` (embedded and durable;
    /// `fjall:PATH?memtable_bytes=N` flushes memtables at N bytes, for a new directory;
    /// `commit_interval_us=N` begins a commit with an fsync at most every N µs, 1000 by
    /// default; `read_threads=N` runs reads on N threads, two per core (4 to 32) by default),
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` or `cql://HOST:PORT/KEYSPACE`.
    #[arg(long, env = "CHAT_STORE", default_value = "fjall:./chat-data")]
    pub store: String,
    /// Secret that signs and checks HS256 tokens.
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Open connections at most; capped below the process's open-file limit.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = defaults().max_connections)]
    pub max_connections: usize,
    /// Largest message body in bytes.
    #[arg(long, env = "CHAT_MAX_BODY_BYTES", default_value_t = defaults().max_body_bytes)]
    pub max_body_bytes: usize,
    /// WebSocket read buffer per connection, in bytes.
    #[arg(long, env = "CHAT_WS_READ_BUFFER_BYTES", default_value_t = defaults().ws_read_buffer_bytes)]
    pub ws_read_buffer_bytes: usize,
    /// Frames a device's outgoing queue holds before the device is cut off (1013).
    #[arg(long, env = "CHAT_DEVICE_QUEUE", default_value_t = defaults().device_queue)]
    pub device_queue: usize,
    /// Sustained sends per second per user (0 = no limit).
    #[arg(long, env = "CHAT_SEND_RATE", default_value_t = defaults().send_rate_per_sec)]
    pub send_rate: u32,
    /// Sends a user may burst above the sustained rate.
    #[arg(long, env = "CHAT_SEND_BURST", default_value_t = defaults().send_burst)]
    pub send_burst: u32,
    /// Seconds to wait for connections to drain at shutdown.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE", default_value_t = defaults().shutdown_grace.as_secs())]
    pub shutdown_grace: u64,
    /// Milliseconds a user must stay connected before "online" is published.
    #[arg(long, env = "CHAT_PRESENCE_ONLINE_DELAY_MS",
          default_value_t = defaults().presence_online_delay.as_millis() as u64)]
    pub presence_online_delay_ms: u64,
    /// Milliseconds with no device before "offline" is published.
    #[arg(long, env = "CHAT_PRESENCE_OFFLINE_GRACE_MS",
          default_value_t = defaults().presence_offline_grace.as_millis() as u64)]
    pub presence_offline_grace_ms: u64,
    /// Members a group may have at most.
    #[arg(long, env = "CHAT_MAX_GROUP_MEMBERS", default_value_t = defaults().max_group_members)]
    pub max_group_members: usize,
    /// How long a send's idempotency record is kept (`24h`, `90m`, `30s`, …): a repeated
    /// message id within it gets the first outcome; past it the record expires by itself.
    #[arg(long, env = "CHAT_IDEMPOTENCY_WINDOW",
          default_value_t = humantime::Duration::from(StoreOptions::DEFAULT_IDEMPOTENCY_WINDOW))]
    pub idempotency_window: humantime::Duration,
    /// Push gateway URL (`http://…`); without it no push notifications are sent.
    #[arg(long, env = "CHAT_PUSH_GATEWAY")]
    pub push_gateway: Option<String>,
    /// Seconds within which further messages of one conversation push nothing more.
    #[arg(long, env = "CHAT_PUSH_COALESCE", default_value_t = PushConfig::DEFAULT_COALESCE.as_secs())]
    pub push_coalesce: u64,
    /// Attempts per push notification before it is dead-lettered.
    #[arg(long, env = "CHAT_PUSH_ATTEMPTS", default_value_t = PushConfig::DEFAULT_ATTEMPTS)]
    pub push_attempts: u32,
    /// Milliseconds before the first push retry; each retry doubles it.
    #[arg(long, env = "CHAT_PUSH_BACKOFF_MS",
          default_value_t = PushConfig::DEFAULT_BACKOFF.as_millis() as u64)]
    pub push_backoff_ms: u64,
    /// Join a cluster through this NATS server (`nats://HOST:PORT`): several nodes then
    /// share one store (postgres://… or cql://…) and deliver to each other's devices.
    #[arg(long, env = "CHAT_CLUSTER")]
    pub cluster: Option<String>,
    /// This node's name, unique in the cluster (1-64 of [A-Za-z0-9_-]).
    #[arg(long, env = "CHAT_NODE", default_value_t = defaults().node)]
    pub node: String,
    /// Where clients reach this node (`HOST:PORT`), as `GET /v1/cluster` lists it; the
    /// listening address by default.
    #[arg(long, env = "CHAT_ADVERTISE")]
    pub advertise: Option<String>,
    /// Threads of the async runtime that serves the connections (0: one per core). At a
    /// light load each extra thread costs wake-ups: an event that wakes one parked thread
    /// often wakes the others to look for work too.
    #[arg(long, env = "CHAT_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Let anyone get a token for any user with `POST /v1/dev/token {"user", "device"}`
    /// (the browser client's sign-in by user id): for demos and tests on loopback only.
    #[arg(long, env = "CHAT_DEV_LOGIN")]
    pub dev_login: bool,
}

impl ServeArgs {
    /// The multi-threaded runtime these flags ask for (`--workers`).
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if self.workers > 0 {
            b.worker_threads(self.workers);
        }
        b.enable_all().build()
    }

    /// What the store is opened with.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            idempotency_window: *self.idempotency_window,
        }
    }

    /// The settings these flags describe. `max_connections` is capped below what the
    /// process's open-file limit allows; out-of-range values are brought into range.
    pub fn config(&self) -> Config {
        let mut config = Config::new(self.jwt_secret.clone());
        config.max_connections = usize::try_from(process::connection_capacity(
            self.max_connections as u64,
            process::open_files_limit(None),
        ))
        .unwrap_or(usize::MAX);
        config.max_body_bytes = self.max_body_bytes;
        config.device_queue = self.device_queue.max(1);
        config.ws_read_buffer_bytes = self.ws_read_buffer_bytes.clamp(256, 1 << 20);
        config.send_rate_per_sec = self.send_rate;
        config.send_burst = self.send_burst;
        config.shutdown_grace = Duration::from_secs(self.shutdown_grace);
        config.presence_online_delay = Duration::from_millis(self.presence_online_delay_ms);
        config.presence_offline_grace = Duration::from_millis(self.presence_offline_grace_ms);
        config.max_group_members = self.max_group_members.max(2);
        config.node = self.node.clone();
        config.advertise = self.advertise.clone();
        config.cluster = self.cluster.clone();
        config.dev_login = self.dev_login;
        config.push = self.push_gateway.clone().map(|gateway| PushConfig {
            gateway,
            coalesce: Duration::from_secs(self.push_coalesce),
            attempts: self.push_attempts.max(1),
            backoff: Duration::from_millis(self.push_backoff_ms),
        });
        config
    }
}

/// Why [`serve`] could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("--store {spec}: {source}")]
    Store { spec: String, source: OpenError },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("invalid settings: {0}")]
    Config(#[from] crate::auth::AuthError),
    #[error(
        "--cluster needs a store that several nodes can share (postgres://… or cql://…); --store {0} belongs to one process"
    )]
    NotShared(String),
}

/// Opens the store the flags name, binds, prints `listening on ADDR` on standard output,
/// then serves until `shutdown` resolves. `on_ready` gets the opened backend after that
/// line and before the server starts (the simulator's child reports its disk use from
/// it).
pub async fn serve(
    args: &ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Backend),
) -> Result<(), ServeError> {
    let spec = match args.cluster {
        Some(_) => store::cluster_spec(&args.store),
        None => args.store.clone(),
    };
    let backend = store::open_with(&spec, &args.store_options())
        .await
        .map_err(|source| ServeError::Store {
            spec: args.store.clone(),
            source,
        })?;
    if args.cluster.is_some() && !matches!(backend, Backend::Shared(_)) {
        return Err(ServeError::NotShared(args.store.clone()));
    }
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: args.addr.clone(),
            source,
        })?;
    let config = args.config();
    // A secret that cannot sign is refused before anything is served.
    crate::auth::Auth::new(&config.jwt_secret)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = backend.name(), max_connections = config.max_connections, "listening");
    // Scripts and the child-process harness read the chosen address from this line, the
    // first one: anything `on_ready` starts prints after it.
    println!("{LISTENING}{addr}");
    on_ready(&backend);
    crate::run(listener, config, backend, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
