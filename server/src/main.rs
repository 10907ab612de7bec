//! `chat-server`: serve the reference chat server, or print a token for a user and device.

use std::time::Duration;

use anyhow::{Context, Result};
use chat_server::auth::{Auth, now_secs};
use chat_server::model::{DeviceId, parse_user};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chat-server", version, about = "The reference chat server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket on one port until SIGTERM or ctrl-c.
    Serve(ServeArgs),
    /// Print a bearer token for a user and device, signed with the configured secret.
    Token(TokenArgs),
    /// Post every dead-lettered push notification to the gateway once more; those it
    /// accepts are removed. Run it while the server is stopped when the store is fjall
    /// (one process owns a fjall directory).
    PushReplay(ReplayArgs),
}

#[derive(Args)]
struct ReplayArgs {
    /// The store holding the dead letters.
    #[arg(long, env = "CHAT_STORE")]
    store: String,
    /// The push gateway URL.
    #[arg(long, env = "CHAT_PUSH_GATEWAY")]
    push_gateway: String,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "CHAT_ADDR", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Storage backend: `memory` or `fjall:PATH` (embedded and durable).
    #[arg(long, env = "CHAT_STORE", default_value = "fjall:./chat-data")]
    store: String,
    /// Secret that signs and checks HS256 tokens.
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Open connections at most; capped below the process's open-file limit.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 50_000)]
    max_connections: usize,
    /// Largest message body in bytes.
    #[arg(long, env = "CHAT_MAX_BODY_BYTES", default_value_t = 4096)]
    max_body_bytes: usize,
    /// WebSocket read buffer per connection, in bytes.
    #[arg(long, env = "CHAT_WS_READ_BUFFER_BYTES", default_value_t = 1024)]
    ws_read_buffer_bytes: usize,
    /// Frames a device's outgoing queue holds before the device is cut off (1013).
    #[arg(long, env = "CHAT_DEVICE_QUEUE", default_value_t = 1024)]
    device_queue: usize,
    /// Sustained sends per second per user (0 = no limit).
    #[arg(long, env = "CHAT_SEND_RATE", default_value_t = 100)]
    send_rate: u32,
    /// Sends a user may burst above the sustained rate.
    #[arg(long, env = "CHAT_SEND_BURST", default_value_t = 200)]
    send_burst: u32,
    /// Seconds to wait for connections to drain at shutdown.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE", default_value_t = 10)]
    shutdown_grace: u64,
    /// Milliseconds a user must stay connected before "online" is published.
    #[arg(long, env = "CHAT_PRESENCE_ONLINE_DELAY_MS", default_value_t = 3000)]
    presence_online_delay_ms: u64,
    /// Milliseconds with no device before "offline" is published.
    #[arg(long, env = "CHAT_PRESENCE_OFFLINE_GRACE_MS", default_value_t = 5000)]
    presence_offline_grace_ms: u64,
    /// Members a group may have at most.
    #[arg(long, env = "CHAT_MAX_GROUP_MEMBERS", default_value_t = 256)]
    max_group_members: usize,
    /// Push gateway URL (`http://…`); without it no push notifications are sent.
    #[arg(long, env = "CHAT_PUSH_GATEWAY")]
    push_gateway: Option<String>,
    /// Seconds within which further messages of one conversation push nothing more.
    #[arg(long, env = "CHAT_PUSH_COALESCE", default_value_t = 10)]
    push_coalesce: u64,
    /// Attempts per push notification before it is dead-lettered.
    #[arg(long, env = "CHAT_PUSH_ATTEMPTS", default_value_t = 5)]
    push_attempts: u32,
    /// Milliseconds before the first push retry; each retry doubles it.
    #[arg(long, env = "CHAT_PUSH_BACKOFF_MS", default_value_t = 200)]
    push_backoff_ms: u64,
}

#[derive(Args)]
struct TokenArgs {
    /// User id (an integer > 0).
    #[arg(long)]
    user: String,
    /// Device id (1-64 characters of [A-Za-z0-9_-]).
    #[arg(long)]
    device: String,
    /// Seconds the token stays valid.
    #[arg(long, default_value_t = 86_400)]
    ttl: u64,
    /// Secret that signs the token: the server's.
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(t) => {
            let user = parse_user(&t.user)?;
            let device: DeviceId = t.device.parse()?;
            let auth = Auth::new(&t.jwt_secret)?;
            println!("{}", auth.issue(user, &device, now_secs() + t.ttl));
            Ok(())
        }
        Command::Serve(s) => {
            init_logs();
            runtime()?.block_on(serve(s))
        }
        Command::PushReplay(r) => {
            init_logs();
            runtime()?.block_on(async {
                let store = chat_server::store::open(&r.store)
                    .await
                    .with_context(|| format!("--store {}", r.store))?;
                let done = chat_server::push::replay(&*store, &r.push_gateway).await?;
                println!(
                    "replayed: {} delivered, {} still failing (kept)",
                    done.delivered, done.still_failing
                );
                Ok(())
            })
        }
    }
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

async fn serve(s: ServeArgs) -> Result<()> {
    let store = chat_server::store::open(&s.store)
        .await
        .with_context(|| format!("--store {}", s.store))?;
    let listener = tokio::net::TcpListener::bind(&s.addr)
        .await
        .with_context(|| format!("cannot listen on {}", s.addr))?;
    let mut config = chat_server::Config::new(s.jwt_secret);
    config.max_connections = s.max_connections.min(fd_headroom());
    config.max_body_bytes = s.max_body_bytes;
    config.device_queue = s.device_queue.max(1);
    config.ws_read_buffer_bytes = s.ws_read_buffer_bytes.clamp(256, 1 << 20);
    config.send_rate_per_sec = s.send_rate;
    config.send_burst = s.send_burst;
    config.shutdown_grace = Duration::from_secs(s.shutdown_grace);
    config.presence_online_delay = Duration::from_millis(s.presence_online_delay_ms);
    config.presence_offline_grace = Duration::from_millis(s.presence_offline_grace_ms);
    config.max_group_members = s.max_group_members.max(2);
    config.push = s.push_gateway.map(|gateway| chat_server::push::PushConfig {
        gateway,
        coalesce: Duration::from_secs(s.push_coalesce),
        attempts: s.push_attempts.max(1),
        backoff: Duration::from_millis(s.push_backoff_ms),
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = store.name(), max_connections = config.max_connections, "listening");
    // Scripts and tests read the chosen address from this line.
    println!("listening on {addr}");
    chat_server::run(listener, config, store, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Connections this process can hold: its open-file limit less room for the store's
/// files and the listener.
fn fd_headroom() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(usize::MAX);
    soft.saturating_sub(512).max(1)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
