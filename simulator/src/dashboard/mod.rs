//! The live dashboard of `chat-sim run --dashboard HOST:PORT`: a page that follows the
//! run as it goes, fed with server-sent events. The run publishes what it knows at the
//! start (`info`), each sample it takes (`sample`, see [`frame`]) and the verdict
//! (`done`). A page opened late gets every event so far first, so its charts start at the
//! beginning of the run. The page is one file compiled into the binary: no CDN, no
//! network past the run's own port.

pub mod frame;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures_util::Stream;
use parking_lot::Mutex;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use self::frame::Frame;
use crate::cluster::ClusterRun;
use crate::records::{Progress, Sample};

/// The page, with its script and style inline.
const PAGE: &str = include_str!("page.html");

/// Why the dashboard could not start.
#[derive(Debug, Error)]
#[error("--dashboard {addr}: {source}")]
pub struct DashboardError {
    addr: String,
    source: std::io::Error,
}

/// Every event so far and the live feed, under one lock so that a page that subscribes
/// sees each event exactly once.
struct Feed {
    events: Mutex<Vec<(&'static str, String)>>,
    live: broadcast::Sender<(&'static str, String)>,
}

/// A running dashboard; it stops when dropped.
pub struct Dashboard {
    feed: Arc<Feed>,
    /// The previous sample and the offered count then, for rates.
    last: Mutex<Option<(Sample, u64)>>,
    /// The page's address, `http://HOST:PORT/`.
    pub url: String,
    task: JoinHandle<()>,
}

impl Dashboard {
    /// Serves the page on `addr` (`HOST:PORT`, port 0 picks one).
    pub async fn start(addr: &str) -> Result<Dashboard, DashboardError> {
        let err = |source| DashboardError {
            addr: addr.to_owned(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        let (live, _) = broadcast::channel(1024);
        let feed = Arc::new(Feed {
            events: Mutex::new(Vec::new()),
            live,
        });
        let app = Router::new()
            .route("/", get(page))
            .route("/events", get(events))
            .with_state(feed.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("dashboard stopped: {e}");
            }
        });
        Ok(Dashboard {
            feed,
            last: Mutex::new(None),
            url: format!("http://{local}/"),
            task,
        })
    }

    /// Publishes a sample of the run with the shards' progress then.
    pub fn sample(&self, s: &Sample, p: &Progress, cluster: Option<&ClusterRun>) {
        let mut last = self.last.lock();
        let f = Frame::new(last.as_ref().map(|(b, o)| (b, *o)), s, p, cluster);
        *last = Some((s.clone(), p.offered));
        drop(last);
        self.publish("sample", &f);
    }

    /// Sends an event to every open page and keeps it for pages opened later.
    pub fn publish(&self, kind: &'static str, data: &impl Serialize) {
        let Ok(json) = serde_json::to_string(data) else {
            return;
        };
        let mut events = self.feed.events.lock();
        events.push((kind, json.clone()));
        // No page open is no error.
        let _ = self.feed.live.send((kind, json));
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn page() -> impl IntoResponse {
    (
        [(axum::http::header::CACHE_CONTROL, "no-cache")],
        Html(PAGE),
    )
}

/// `GET /events`: every event so far, then each new one as it comes.
async fn events(
    axum::extract::State(feed): axum::extract::State<Arc<Feed>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (past, rx) = {
        let events = feed.events.lock();
        (events.clone(), feed.live.subscribe())
    };
    let past = futures_util::stream::iter(past);
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                // A page too slow to keep up skips what it missed.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let stream = futures_util::StreamExt::map(
        futures_util::StreamExt::chain(past, live),
        |(kind, json)| Ok(Event::default().event(kind).data(json)),
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
