//! `chat-server`: serve the reference chat server, or print a token for a user and device.

use anyhow::{Context, Result};
use chat_server::auth::{Auth, now_secs};
use chat_server::model::{DeviceId, parse_user};
use chat_server::serve::{ServeArgs, serve};
use clap::{Args, Parser, Subcommand};

/// The allocator: see the `mimalloc` feature in Cargo.toml for why.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "chat-server", version, about = "The reference chat server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket on one port until SIGTERM or ctrl-c.
    Serve(Box<ServeArgs>),
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
    #[cfg(feature = "mimalloc")]
    chat_server::allocator::tune();
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
            s.runtime()?
                .block_on(serve(&s, shutdown_signal(), |_| {}))?;
            Ok(())
        }
        Command::PushReplay(r) => {
            init_logs();
            runtime()?.block_on(async {
                let backend = chat_server::store::open(&r.store)
                    .await
                    .with_context(|| format!("--store {}", r.store))?;
                let done = chat_server::push::replay(&*backend.store(), &r.push_gateway).await?;
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
