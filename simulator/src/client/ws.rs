//! One simulated device: a real WebSocket to the server and one task per connection that
//! records every frame into the device's log, acknowledges what arrived and writes what
//! the device asks to send. One task, not a reader and a writer: the socket needs no lock
//! between two halves, and acknowledgements go out without a hop through a channel.
//!
//! The task reports every observation to the device's [`DeviceEvents`] sink as the frame
//! arrives (`sent`, `msg`, `sync`, `delivered`, history pages, close codes), so the sink
//! can time it against the message's intended send time; what is measured and counted is
//! the sink's business. Requests that expect an answer (`send` by its id; `sync` and
//! `history` in order, as the server answers a connection's frames one at a time) wait on
//! a oneshot channel the task completes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use parking_lot::Mutex;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::events::DeviceEvents;
use super::frames::{self, MsgFrame, ServerFrame};
use super::stamped::{ReadClock, Stamped};
use crate::checks::{self, Anomaly, Check, Conv, DeviceLog, Entry, Observed, Via};

/// A device's node when the server did not say (an older server, or offline).
pub const NO_NODE: u16 = u16::MAX;

use chat_server::http::NODE_HEADER;

/// Inbox entries asked for per `sync` request.
pub const SYNC_PAGE: u32 = 500;

/// Why a request got no good answer.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("the device is offline")]
    Offline,
    #[error("no answer within the timeout")]
    Timeout,
    #[error("the connection closed before the answer")]
    Closed,
    #[error("the server answered `{0}`")]
    Server(String),
    #[error("cannot connect: {0}")]
    Connect(String),
}

impl RequestError {
    /// A short label for Goose's error table.
    pub fn label(&self) -> String {
        match self {
            RequestError::Server(code) => code.clone(),
            RequestError::Connect(_) => "connect".into(),
            other => format!("{other}"),
        }
    }
}

/// The `sent` answer.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub seq: u64,
    pub useq: u64,
}

/// A `sync` answer.
#[derive(Debug, Clone, Copy)]
pub struct SyncPage {
    pub next: u64,
    pub more: bool,
}

/// Answers to in-order requests.
#[derive(Debug)]
enum Answer {
    Sync(SyncPage),
    /// A history page, with the newest seq it held.
    History {
        newest: Option<u64>,
    },
}

type SendWaiter = oneshot::Sender<Result<Sent, RequestError>>;
type RequestWaiter = oneshot::Sender<Result<Answer, RequestError>>;

/// Requests waiting for the server.
#[derive(Default)]
struct Pending {
    sends: HashMap<String, SendWaiter>,
    requests: VecDeque<RequestWaiter>,
}

/// An open connection: where frames to write go, and its number.
struct Conn {
    out: mpsc::UnboundedSender<Message>,
    number: u64,
    /// The requests written to this connection and not answered yet. Per connection, not
    /// per device: a closed connection can still bring answers after the next one opened,
    /// and those must reach the waiters of the connection they were asked on.
    pending: Arc<Mutex<Pending>>,
}

/// A device of a simulated user.
pub struct Device {
    /// The user's global id.
    pub user: u64,
    /// The user's index in the shard.
    pub user_idx: u32,
    /// The device id sent in the token, e.g. `d0-phone`.
    pub id: String,
    /// Index into the scenario's device kinds.
    pub kind: usize,
    pub log: Mutex<DeviceLog>,
    /// Where the device reports what it observes.
    events: Arc<dyn DeviceEvents>,
    conn: Mutex<Option<Conn>>,
    connections: AtomicU64,
    /// The tasks of its connections, the current one and any still closing.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The node of the current connection, as the events sink numbers node names
    /// ([`NO_NODE`] when offline or unknown): deliveries across nodes are told apart
    /// by it.
    node: AtomicU16,
    /// When the last connection ended without the device closing it, until a reconnect
    /// takes it ([`Device::take_drop`]).
    dropped_at: Mutex<Option<Instant>>,
    /// Signalled when a connection ends without the device closing it, so that a user
    /// waiting for its next planned action comes back at once ([`Device::dropped`]).
    drop_signal: tokio::sync::Notify,
}

impl Device {
    pub fn new(
        user: u64,
        user_idx: u32,
        id: String,
        kind: usize,
        events: Arc<dyn DeviceEvents>,
    ) -> Self {
        Device {
            user,
            user_idx,
            log: Mutex::new(DeviceLog::new(user, id.clone())),
            events,
            id,
            kind,
            conn: Mutex::new(None),
            connections: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            node: AtomicU16::new(NO_NODE),
            dropped_at: Mutex::new(None),
            drop_signal: tokio::sync::Notify::new(),
        }
    }

    /// Resolves when a connection of this device ends without the device closing it
    /// (at once when one did since the last call).
    pub async fn dropped(&self) {
        self.drop_signal.notified().await;
    }

    /// The node this device is connected to ([`NO_NODE`] when offline or unknown).
    pub fn node(&self) -> u16 {
        self.node.load(Relaxed)
    }

    /// When the connection last ended without the device closing it, once: the start of
    /// a reconnect → caught-up interval.
    pub fn take_drop(&self) -> Option<Instant> {
        self.dropped_at.lock().take()
    }

    pub fn online(&self) -> bool {
        self.conn.lock().is_some()
    }

    /// Where to write on the current connection, and its waiters.
    fn current(
        &self,
    ) -> Result<(mpsc::UnboundedSender<Message>, Arc<Mutex<Pending>>), RequestError> {
        match &*self.conn.lock() {
            Some(c) => Ok((c.out.clone(), c.pending.clone())),
            None => Err(RequestError::Offline),
        }
    }

    /// Writes a `send` and returns where its `sent` (or `error`) will arrive.
    pub fn send(
        &self,
        id: &str,
        to: &str,
        body: &str,
    ) -> Result<oneshot::Receiver<Result<Sent, RequestError>>, RequestError> {
        let (out, pending) = self.current()?;
        let (tx, rx) = oneshot::channel();
        pending.lock().sends.insert(id.to_owned(), tx);
        if out.send(Message::text(frames::send(id, to, body))).is_err() {
            pending.lock().sends.remove(id);
            return Err(RequestError::Closed);
        }
        Ok(rx)
    }

    fn request(
        &self,
        text: String,
    ) -> Result<oneshot::Receiver<Result<Answer, RequestError>>, RequestError> {
        let (out, pending) = self.current()?;
        let (tx, rx) = oneshot::channel();
        // Queue before writing, under the lock, so answers (which come in the order the
        // requests were written) always find their waiters in order.
        let mut p = pending.lock();
        p.requests.push_back(tx);
        if out.send(Message::text(text)).is_err() {
            p.requests.pop_back();
            return Err(RequestError::Closed);
        }
        Ok(rx)
    }

    /// Reads one history page of `conv`; Ok when the page came.
    pub async fn history(
        &self,
        conv: Conv,
        limit: u32,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        // What was acknowledged before the read was made must be in it (the newest page).
        let floor = self.events.acked_high(conv);
        let rx = self.request(frames::history(&conv.to_string(), limit))?;
        match wait(rx, timeout).await? {
            Answer::History { newest } => {
                let newest = newest.unwrap_or(0);
                if newest < floor {
                    let who = format!("{}/{}", self.user, self.id);
                    self.events
                        .fault_as(Check::Consistency, Anomaly::StaleRead, &|| {
                            format!(
                                "device {who}: the newest history page of {conv} ends at seq {newest}, but seq {floor} had been acknowledged before the read"
                            )
                        });
                }
                Ok(())
            }
            Answer::Sync(_) => Err(RequestError::Server("unexpected sync answer".into())),
        }
    }

    /// Syncs from the first hole of the inbox until the server says there is no more.
    pub async fn sync_to_end(&self, timeout: Duration) -> Result<(), RequestError> {
        let mut after = self.log.lock().contiguous;
        loop {
            let rx = self.request(frames::sync(after, SYNC_PAGE))?;
            match wait(rx, timeout).await? {
                Answer::Sync(page) => {
                    if !page.more {
                        return Ok(());
                    }
                    if page.next <= after {
                        return Err(RequestError::Server(format!(
                            "sync after {after} answered more=true without moving (next {})",
                            page.next
                        )));
                    }
                    after = page.next;
                }
                Answer::History { .. } => {
                    return Err(RequestError::Server("unexpected history answer".into()));
                }
            }
        }
    }

    /// Opens a WebSocket to `url` for this device, with the bearer token `token` gives
    /// (asked for only when the device is offline), and starts its connection's task.
    pub async fn connect(
        self: &Arc<Self>,
        url: &str,
        token: impl FnOnce() -> String,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        if self.online() {
            return Ok(());
        }
        let token = token();
        let mut req = url
            .into_client_request()
            .map_err(|e| RequestError::Connect(e.to_string()))?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| RequestError::Connect("token is not a valid header".into()))?;
        req.headers_mut().insert("authorization", value);
        // Small buffers: thousands of devices share this process.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(1 << 20);
        let (ws, response, clock) = tokio::time::timeout(timeout, open(req, config))
            .await
            .map_err(|_| RequestError::Connect("timed out".into()))??;
        let node = response
            .headers()
            .get(NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map_or(NO_NODE, |name| self.events.node_index(name));
        self.node.store(node, Relaxed);
        let (out, rx) = mpsc::unbounded_channel::<Message>();
        let number = self.connections.fetch_add(1, Relaxed) + 1;
        let pending = Arc::new(Mutex::new(Pending::default()));
        *self.conn.lock() = Some(Conn {
            out: out.clone(),
            number,
            pending: pending.clone(),
        });
        self.events.connected();
        let task = tokio::spawn(conn_loop(self.clone(), ws, clock, rx, number, pending));
        let mut tasks = self.tasks.lock();
        tasks.retain(|h| !h.is_finished());
        tasks.push(task);
        Ok(())
    }

    /// Closes the connection (a planned disconnect); its task finishes the bookkeeping.
    pub fn disconnect(&self) {
        if let Some(c) = self.conn.lock().take() {
            let _ = c.out.send(Message::Close(None));
        }
    }

    /// Waits until every connection task of this device has finished.
    pub async fn wait_tasks(&self, limit: Duration) {
        let handles: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for h in handles {
            let _ = tokio::time::timeout(limit, h).await;
        }
    }
}

async fn wait<T>(
    rx: oneshot::Receiver<Result<T, RequestError>>,
    timeout: Duration,
) -> Result<T, RequestError> {
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Err(RequestError::Timeout),
        Ok(Err(_)) => Err(RequestError::Closed),
        Ok(Ok(r)) => r,
    }
}

/// Waits for a send's answer.
pub async fn wait_sent(
    rx: oneshot::Receiver<Result<Sent, RequestError>>,
    timeout: Duration,
) -> Result<Sent, RequestError> {
    wait(rx, timeout).await
}

type WsStream = tokio_tungstenite::WebSocketStream<Stamped>;

/// Opens the TCP connection (no Nagle: frames are small and timed) and the WebSocket on
/// it, through a [`Stamped`] stream whose clock times each frame's arrival at the socket.
async fn open(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
    config: WebSocketConfig,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<Stamped>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
        ReadClock,
    ),
    RequestError,
> {
    let uri = req.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(RequestError::Connect(format!(
            "{uri}: only ws:// URLs are supported"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| RequestError::Connect(format!("{uri}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| RequestError::Connect(e.to_string()))?;
    tcp.set_nodelay(true)
        .map_err(|e| RequestError::Connect(e.to_string()))?;
    let (stream, clock) = Stamped::new(tcp);
    let (ws, response) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
        .await
        .map_err(|e| RequestError::Connect(e.to_string()))?;
    Ok((ws, response, clock))
}

/// The task of connection `number`: reads and records frames, writes what the device
/// queues and the acknowledgements of what arrived, until the connection ends.
async fn conn_loop(
    dev: Arc<Device>,
    mut ws: WsStream,
    clock: ReadClock,
    mut rx: mpsc::UnboundedReceiver<Message>,
    number: u64,
    pending: Arc<Mutex<Pending>>,
) {
    // Cumulative acks, one per conversation, written when no frame is waiting.
    let mut acks: BTreeMap<String, u64> = BTreeMap::new();
    // Whether the device may still write: not once its close is written or its queue ended.
    let mut writing = true;
    let is_current = |dev: &Device| matches!(&*dev.conn.lock(), Some(c) if c.number == number);
    // Planned when the device itself dropped the connection first (`disconnect`).
    let planned = loop {
        let next = match ws.next().now_or_never() {
            Some(n) => n,
            None => {
                if !acks.is_empty() {
                    let acks = std::mem::take(&mut acks).into_iter();
                    let frames = acks.map(|(conv, seq)| Message::text(frames::ack(&conv, seq)));
                    if writing && write_all(&mut ws, frames).await.is_err() {
                        break !is_current(&dev);
                    }
                }
                tokio::select! {
                    next = ws.next() => next,
                    m = rx.recv(), if writing => {
                        match m {
                            Some(first) => {
                                let mut batch = vec![first];
                                while let Ok(m) = rx.try_recv() {
                                    batch.push(m);
                                }
                                writing = !batch.iter().any(|m| matches!(m, Message::Close(_)));
                                if write_all(&mut ws, batch).await.is_err() {
                                    break !is_current(&dev);
                                }
                            }
                            None => writing = false,
                        }
                        continue;
                    }
                }
            }
        };
        match next {
            Some(Ok(Message::Text(t))) => {
                let at = clock.last_read();
                handle(&dev, number, &pending, t.as_str(), at, &mut acks);
            }
            Some(Ok(Message::Close(frame))) => {
                let planned = !is_current(&dev);
                if !planned {
                    // The server ended the connection: say with which code.
                    let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                    dev.events.closed_by_server(code);
                }
                break planned;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break !is_current(&dev),
        }
    };
    {
        let mut conn = dev.conn.lock();
        if matches!(&*conn, Some(c) if c.number == number) {
            *conn = None;
            dev.node.store(NO_NODE, Relaxed);
            if !planned {
                // The first drop since the device was last caught up: a reconnect that
                // drops again before it caught up does not restart the clock.
                dev.dropped_at.lock().get_or_insert_with(Instant::now);
                dev.drop_signal.notify_one();
            }
        }
    }
    dev.events.disconnected(planned);
    fail_pending(&pending);
    dev.log.lock().end_connection_of(number);
}

/// Writes `frames` and flushes once: frames that are ready together share one write to
/// the socket.
async fn write_all(
    ws: &mut WsStream,
    frames: impl IntoIterator<Item = Message>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    for m in frames {
        ws.feed(m).await?;
    }
    ws.flush().await
}

fn entry_of(m: &MsgFrame, conv: Conv) -> Entry {
    Entry {
        conv,
        seq: m.seq,
        from: m.from,
        n: checks::parse_client_id(&m.id),
        body_hash: checks::body_hash(&m.body),
    }
}

/// Records one message arriving at a device, live or through sync, read from the socket
/// at `at`.
fn arrive(
    dev: &Device,
    number: u64,
    m: &MsgFrame,
    via: Via,
    at: Instant,
    acks: &mut BTreeMap<String, u64>,
) {
    let Ok(conv) = m.conv.parse::<Conv>() else {
        dev.events.fault(Check::NoPhantoms, &|| {
            format!(
                "device {}/{}: a message in unknown conversation {:?}",
                dev.user, dev.id, m.conv
            )
        });
        return;
    };
    let Some(useq) = m.useq else {
        dev.events.fault(Check::Gaps, &|| {
            format!(
                "device {}/{}: a `msg` without its inbox position",
                dev.user, dev.id
            )
        });
        return;
    };
    let entry = entry_of(m, conv);
    let observed = dev.log.lock().observe_on(number, useq, entry, via);
    let ack = acks.entry(m.conv.clone()).or_default();
    *ack = (*ack).max(m.seq);
    if observed != Observed::New {
        return;
    }
    dev.events.arrived(entry.key(), via, dev.node(), at);
}

/// Handles one frame that arrived on connection `number` of `dev`, read from the socket
/// at `at`.
fn handle(
    dev: &Device,
    number: u64,
    pending: &Mutex<Pending>,
    text: &str,
    at: Instant,
    acks: &mut BTreeMap<String, u64>,
) {
    let Some(frame) = ServerFrame::parse(text) else {
        dev.events.unmatched_frame();
        return;
    };
    match frame {
        ServerFrame::Msg(m) => arrive(dev, number, &m, Via::Live, at, acks),
        ServerFrame::Sent {
            id,
            conv,
            seq,
            useq,
        } => {
            if let (Some(n), Ok(conv_id)) = (checks::parse_client_id(&id), conv.parse::<Conv>()) {
                let acked = dev
                    .events
                    .acked(dev.user, dev.user_idx, n, conv_id, seq, useq, at);
                if let Some(body_hash) = acked {
                    let entry = Entry {
                        conv: conv_id,
                        seq,
                        from: dev.user,
                        n: Some(n),
                        body_hash,
                    };
                    dev.log.lock().observe_on(number, useq, entry, Via::Own);
                }
            }
            if let Some(w) = pending.lock().sends.remove(&id) {
                let _ = w.send(Ok(Sent { seq, useq }));
            }
        }
        ServerFrame::Delivered { conv, seq } => {
            let Ok(conv) = conv.parse::<Conv>() else {
                return;
            };
            dev.events.receipt(dev.user_idx, conv, seq, at);
        }
        ServerFrame::Sync { items, next, more } => {
            for m in &items {
                arrive(dev, number, m, Via::Sync, at, acks);
            }
            if let Some(w) = pending.lock().requests.pop_front() {
                let _ = w.send(Ok(Answer::Sync(SyncPage { next, more })));
            }
        }
        ServerFrame::History {
            conv,
            messages,
            next_before,
        } => {
            dev.events
                .history_page(dev.user, &dev.id, &conv, &messages, next_before);
            let newest = messages.iter().map(|m| m.seq).max();
            if let Some(w) = pending.lock().requests.pop_front() {
                let _ = w.send(Ok(Answer::History { newest }));
            }
        }
        ServerFrame::Error {
            code,
            message,
            reference,
        } => {
            let mut p = pending.lock();
            let by_ref = reference
                .as_ref()
                .and_then(|r| r.as_str())
                .and_then(|id| p.sends.remove(id).map(|w| (id.to_owned(), w)));
            if let Some((id, w)) = by_ref {
                if let Some(n) = checks::parse_client_id(&id) {
                    dev.events.refused(dev.user, n);
                }
                let _ = w.send(Err(RequestError::Server(code)));
            } else if let Some(w) = p.requests.pop_front() {
                let _ = w.send(Err(RequestError::Server(code)));
            } else {
                drop(p);
                dev.events.unmatched_frame();
                tracing::debug!(%code, %message, "error frame that answers no request");
            }
        }
        ServerFrame::Other => {}
    }
}

/// Fails every request still waiting on a connection that ended.
fn fail_pending(pending: &Mutex<Pending>) {
    let mut p = pending.lock();
    for (_, w) in p.sends.drain() {
        let _ = w.send(Err(RequestError::Closed));
    }
    for w in p.requests.drain(..) {
        let _ = w.send(Err(RequestError::Closed));
    }
}
