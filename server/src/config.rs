//! The server's runtime settings. The binary fills them from flags and `CHAT_*`
//! variables; tests build them directly.

use std::time::Duration;

/// Everything [`crate::run`] needs besides the listener, the store and the shutdown signal.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HS256 secret tokens are signed with.
    pub jwt_secret: String,
    /// Open connections (HTTP and WebSocket) at most; further ones wait for a free slot.
    pub max_connections: usize,
    /// Largest message body in bytes (`too_large` beyond).
    pub max_body_bytes: usize,
    /// Largest WebSocket frame in bytes; a larger one closes the connection with 1009.
    pub max_frame_bytes: usize,
    /// WebSocket read buffer, and the most one read takes from the socket: small, since
    /// every connection holds one, idle or not (512 bytes read four pipelined 100-byte
    /// sends in two reads, and measured no slower at saturation than 1024).
    pub ws_read_buffer_bytes: usize,
    /// Bytes of outgoing frames gathered before a write to the socket (frames queued
    /// together go out in one write; a lone frame is flushed at once).
    pub ws_write_buffer_bytes: usize,
    /// Frames a device's outgoing queue holds before the device is cut off with 1013.
    pub device_queue: usize,
    /// Sustained sends per second per user; 0 turns rate limiting off.
    pub send_rate_per_sec: u32,
    /// Sends a user may burst above the sustained rate.
    pub send_burst: u32,
    /// Errors a connection may cause per minute before it is closed with 1008.
    pub errors_per_minute: u32,
    /// How long a device's live stream waits for a missing inbox position before reading
    /// it from the store.
    pub gap_wait: Duration,
    /// How long shutdown waits for connections to drain.
    pub shutdown_grace: Duration,
    /// A user is published online only after staying connected this long.
    pub presence_online_delay: Duration,
    /// A user is published offline only after no device was connected this long.
    pub presence_offline_grace: Duration,
    /// Members a group may have at most.
    pub max_group_members: usize,
    /// Push notifications, when a gateway is configured.
    pub push: Option<crate::push::PushConfig>,
    /// This node's name (`GET /v1/cluster`; unique in a cluster).
    pub node: String,
    /// Where clients reach this node; the listening address when not given.
    pub advertise: Option<String>,
    /// The NATS server of the cluster this node joins (`nats://HOST:PORT`), if any.
    pub cluster: Option<String>,
    /// Serve `POST /v1/dev/token`, which signs a token for any user and device it is
    /// asked for: for demos and tests only, never on a server others can reach.
    pub dev_login: bool,
}

impl Config {
    /// The contract's defaults with the given secret.
    pub fn new(jwt_secret: impl Into<String>) -> Self {
        Config {
            jwt_secret: jwt_secret.into(),
            max_connections: 50_000,
            max_body_bytes: 4096,
            max_frame_bytes: 64 * 1024,
            ws_read_buffer_bytes: 512,
            ws_write_buffer_bytes: 16 * 1024,
            device_queue: 1024,
            send_rate_per_sec: 100,
            send_burst: 200,
            errors_per_minute: 100,
            gap_wait: Duration::from_millis(50),
            shutdown_grace: Duration::from_secs(10),
            presence_online_delay: Duration::from_secs(3),
            presence_offline_grace: Duration::from_secs(5),
            max_group_members: 256,
            push: None,
            node: "node-1".to_owned(),
            advertise: None,
            cluster: None,
            dev_login: false,
        }
    }
}
