//! A TCP relay between the nodes and their database, so a `store_outage` can cut every
//! connection and refuse new ones for a while without stopping a database other things
//! may share: from the nodes it looks like the database going away (a partition, a
//! failover) and coming back on the same address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::ClusterError;

/// The relay: listening on `port`, forwarding to `upstream`.
pub struct StoreProxy {
    pub port: u16,
    upstream: SocketAddr,
    /// The accept loop and every relayed connection: aborting them closes the sockets.
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl StoreProxy {
    /// Starts relaying from a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<StoreProxy, ClusterError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ClusterError::Start(format!("store relay: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| ClusterError::Start(format!("store relay: {e}")))?
            .port();
        let p = StoreProxy {
            port,
            upstream,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        p.serve(listener);
        Ok(p)
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let upstream = self.upstream;
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut t = tasks.lock();
                t.retain(|h| !h.is_finished());
                t.push(relay.abort_handle());
            }
        });
        self.tasks.lock().push(accept.abort_handle());
    }

    /// Cuts every connection and stops listening; `resume` listens again.
    pub fn cut(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same port (retrying while the port is still held).
    pub async fn resume(&self) -> Result<(), ClusterError> {
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => {
                    self.serve(l);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ClusterError::Start(format!(
            "the store relay cannot listen on {} again: {}",
            self.port,
            last.map_or_else(String::new, |e| e.to_string())
        )))
    }
}

impl Drop for StoreProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// The `HOST:PORT` of a `postgres://[USER[:PASS]@]HOST[:PORT]/…` spec, and the spec with
/// it replaced by `to`.
pub fn reroute_postgres(spec: &str, to: &str) -> Option<(String, String)> {
    let (scheme, rest) = spec.split_once("://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if hostport.is_empty() || hostport.contains(',') {
        return None;
    }
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    Some((hostport, format!("{scheme}://{user}{to}{}", &rest[end..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_specs_are_rerouted() {
        assert_eq!(
            reroute_postgres(
                "postgres://chat:chat@127.0.0.1:5433/chat?schema=x",
                "127.0.0.1:9"
            ),
            Some((
                "127.0.0.1:5433".into(),
                "postgres://chat:chat@127.0.0.1:9/chat?schema=x".into()
            ))
        );
        assert_eq!(
            reroute_postgres("postgresql://db/chat", "h:1"),
            Some(("db:5432".into(), "postgresql://h:1/chat".into()))
        );
        assert_eq!(reroute_postgres("memory", "h:1"), None);
    }

    #[tokio::test]
    async fn a_cut_closes_connections_and_refuses_until_resumed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 16];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let p = StoreProxy::start(upstream).await.unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        c.write_all(b"hi").await.unwrap();
        let mut b = [0u8; 2];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hi");
        p.cut();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
            .await
            .expect("the relayed connection ends")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(TcpStream::connect(("127.0.0.1", p.port)).await.is_err());
        p.resume().await.unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        c.write_all(b"ok").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ok");
    }
}
