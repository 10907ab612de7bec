//! A TCP stream that notes when its last read returned bytes, so a frame's arrival is
//! timed at the socket read that brought it in, before the WebSocket and JSON parsing and
//! the checks' bookkeeping that follow. Frames that came in one read share its time; a
//! frame split over reads gets the time of the read that completed it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The instant read times are counted from (nanoseconds fit a u64 for 584 years).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// When a stream's last read returned bytes; shared with whoever reads its frames.
#[derive(Debug, Clone, Default)]
pub struct ReadClock(Arc<AtomicU64>);

impl ReadClock {
    fn mark(&self) {
        let ns = origin().elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.0.store(ns, Relaxed);
    }

    /// The time of the last read that returned bytes (now, before any read did).
    pub fn last_read(&self) -> Instant {
        match self.0.load(Relaxed) {
            0 => Instant::now(),
            ns => origin() + Duration::from_nanos(ns),
        }
    }
}

/// A [`TcpStream`] that marks its [`ReadClock`] on every read that returned bytes.
pub struct Stamped {
    inner: TcpStream,
    clock: ReadClock,
}

impl Stamped {
    pub fn new(inner: TcpStream) -> (Self, ReadClock) {
        origin();
        let clock = ReadClock::default();
        (
            Stamped {
                inner,
                clock: clock.clone(),
            },
            clock,
        )
    }
}

impl AsyncRead for Stamped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.mark();
        }
        r
    }
}

impl AsyncWrite for Stamped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_read_that_brings_bytes_marks_the_clock() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), l.accept());
        let (mut s, clock) = Stamped::new(client.unwrap());
        let (mut peer, _) = server.unwrap();
        let unset = clock.0.load(Relaxed);
        peer.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 8];
        let n = s.read(&mut buf).await.unwrap();
        let after = Instant::now();
        assert_eq!(&buf[..n], &b"hello"[..n]);
        assert_eq!(unset, 0);
        assert!(clock.last_read() <= after);
        s.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        peer.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }
}
