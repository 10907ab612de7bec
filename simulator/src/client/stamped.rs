//! A TCP stream that notes when the bytes its last read returned reached the socket, so a
//! frame's arrival is timed by the kernel, before the runtime woke for it and before the
//! WebSocket and JSON parsing and the checks' bookkeeping that follow.
//!
//! The socket asks the kernel for receive timestamps (`SO_TIMESTAMPNS`) and every read is a
//! `recvmsg` that brings the newest one: when the last packet the read consumed was queued
//! to the socket. How late the simulator's runtime reads a socket (it is busy, or the host
//! is) is then not counted into any latency, which a timer taken at the read would have
//! done. Frames that came in one read share its time; a frame split over reads gets the
//! time of the packet that completed it. Where the kernel gives no timestamp (the option
//! refused, or a read that carried none: the kernel turns stamping on a moment after the
//! first socket of the host asks for it), the read is timed when it returned.
//!
//! The kernel stamps with the wall clock; the stamp is turned into an [`Instant`] by its
//! age at the read (wall clock now − stamp), so a step of the wall clock between the
//! packet's arrival and its read is the only error, and an age that is negative or
//! implausibly large (over [`MAX_AGE`]) is taken for such a step and ignored.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt::ReceiveTimestampns,
};
use nix::sys::time::TimeSpec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The oldest a kernel timestamp may be at its read before it is taken for a step of the
/// wall clock: no frame waits this long in a socket the runtime serves.
const MAX_AGE: Duration = Duration::from_secs(60);

/// The instant read times are counted from (nanoseconds fit a u64 for 584 years).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// When the bytes of a stream's last read reached its socket; shared with whoever reads
/// its frames.
#[derive(Debug, Clone, Default)]
pub struct ReadClock(Arc<AtomicU64>);

impl ReadClock {
    fn mark(&self, at: Instant) {
        let ns = at
            .saturating_duration_since(origin())
            .as_nanos()
            .clamp(1, u128::from(u64::MAX)) as u64;
        self.0.store(ns, Relaxed);
    }

    /// When the bytes of the last read that returned any reached the socket (now, before
    /// any read did).
    pub fn last_read(&self) -> Instant {
        match self.0.load(Relaxed) {
            0 => Instant::now(),
            ns => origin() + Duration::from_nanos(ns),
        }
    }
}

/// The [`Instant`] a kernel receive timestamp stands for, by its age on the wall clock
/// `now_wall` taken at `now`; `None` when the age is negative or over [`MAX_AGE`].
fn arrival(stamp: Duration, now_wall: Duration, now: Instant) -> Option<Instant> {
    let age = now_wall.checked_sub(stamp).filter(|age| *age <= MAX_AGE)?;
    now.checked_sub(age)
}

/// A [`TcpStream`] that marks its [`ReadClock`] on every read that returned bytes.
pub struct Stamped {
    inner: TcpStream,
    clock: ReadClock,
    /// Room for one control message, a timestamp; reused by every read.
    cmsg: Vec<u8>,
}

impl Stamped {
    pub fn new(inner: TcpStream) -> (Self, ReadClock) {
        origin();
        let clock = ReadClock::default();
        // Refused, every read comes without a stamp and is timed at its return.
        if let Err(e) = setsockopt(&inner, ReceiveTimestampns, &true) {
            tracing::debug!(error = %e, "no kernel receive timestamps: frames are timed at their read");
        }
        (
            Stamped {
                inner,
                clock: clock.clone(),
                cmsg: nix::cmsg_space!(TimeSpec),
            },
            clock,
        )
    }

    /// One `recvmsg` into `dst`: the bytes read and the kernel's timestamp of the newest
    /// of them, if it gave one.
    fn recv_stamped(&mut self, dst: &mut [u8]) -> io::Result<(usize, Option<Duration>)> {
        let fd = self.inner.as_raw_fd();
        let cmsg = &mut self.cmsg;
        self.inner.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(dst)];
            let msg = recvmsg::<()>(fd, &mut iov, Some(cmsg), MsgFlags::empty())
                .map_err(io::Error::from)?;
            let stamp = msg.cmsgs().ok().and_then(|mut all| {
                all.find_map(|c| match c {
                    ControlMessageOwned::ScmTimestampns(ts) => Some(Duration::from(ts)),
                    _ => None,
                })
            });
            Ok((msg.bytes, stamp))
        })
    }
}

impl AsyncRead for Stamped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.inner.poll_read_ready(cx))?;
            // The WebSocket layer reads into initialized memory, so this costs nothing
            // there.
            let dst = buf.initialize_unfilled();
            match self.recv_stamped(dst) {
                Ok((n, stamp)) => {
                    if n > 0 {
                        let now = Instant::now();
                        let at = stamp.and_then(|s| {
                            let wall = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
                            arrival(s, wall.ok()?, now)
                        });
                        self.clock.mark(at.unwrap_or(now));
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
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

    async fn pair() -> (Stamped, ReadClock, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), l.accept());
        let (s, clock) = Stamped::new(client.unwrap());
        (s, clock, server.unwrap().0)
    }

    #[tokio::test]
    async fn a_read_that_brings_bytes_marks_the_clock() {
        let (mut s, clock, mut peer) = pair().await;
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

    /// The clock says when the bytes reached the socket, not when they were read: a read
    /// 200 ms late is timed within a millisecond of the write.
    #[tokio::test]
    async fn bytes_read_late_are_timed_at_their_arrival() {
        let (mut s, clock, mut peer) = pair().await;
        assert!(
            nix::sys::socket::getsockopt(&s.inner, ReceiveTimestampns).unwrap(),
            "the kernel refused receive timestamps"
        );
        // The kernel starts stamping packets a moment after the first socket asks (it
        // switches the stamping on from a work queue): wait until a read carries a stamp.
        let mut stamping = false;
        for _ in 0..50 {
            peer.write_all(b"?").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let read_at = Instant::now();
            s.read_exact(&mut [0u8; 1]).await.unwrap();
            if clock.last_read() + Duration::from_millis(10) < read_at {
                stamping = true;
                break;
            }
        }
        assert!(stamping, "no read in a second carried a kernel timestamp");
        let before = Instant::now();
        peer.write_all(b"early").await.unwrap();
        let written = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"early");
        let at = clock.last_read();
        // The wall clock and the monotonic one are read a few nanoseconds apart: allow
        // a millisecond either way.
        let slack = Duration::from_millis(1);
        assert!(
            at + slack >= before && at <= written + slack,
            "timed {:?} after the write began, which took {:?}",
            at.saturating_duration_since(before),
            written - before
        );
        // A second, later packet moves the clock to its own arrival.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = Instant::now();
        peer.write_all(b"late").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert!(clock.last_read() + slack >= second);
    }

    #[test]
    fn a_stamp_from_the_future_or_too_old_stands_for_nothing() {
        let now = Instant::now();
        let wall = Duration::from_secs(1_000_000);
        assert_eq!(
            arrival(wall - Duration::from_millis(3), wall, now),
            now.checked_sub(Duration::from_millis(3))
        );
        assert_eq!(arrival(wall + Duration::from_nanos(1), wall, now), None);
        assert_eq!(
            arrival(wall - MAX_AGE - Duration::from_nanos(1), wall, now),
            None
        );
    }
}
