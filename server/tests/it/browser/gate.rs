//! A TCP relay between the browser and the server that the test can shut: it cuts every
//! connection through it and refuses new ones until opened again. The network dropping
//! under an open tab, on demand, while the test still reaches the server directly; so a
//! test decides what happens while the tab is away instead of racing its backoff.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct State {
    open: bool,
    conns: Vec<JoinHandle<()>>,
}

/// The relay; dropping it stops it and cuts what went through it.
pub struct Gate {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

impl Gate {
    /// A relay on 127.0.0.1:0 to `upstream`, open.
    pub async fn start(upstream: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            open: true,
            conns: Vec::new(),
        }));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut s = st.lock().unwrap();
                if !s.open {
                    continue; // dropped: the browser sees the connection closed
                }
                s.conns.retain(|h| !h.is_finished());
                s.conns.push(tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                }));
            }
        });
        Gate {
            addr,
            state,
            accept,
        }
    }

    /// Cuts every connection through the relay and refuses new ones.
    pub fn shut(&self) {
        let mut s = self.state.lock().unwrap();
        s.open = false;
        for h in s.conns.drain(..) {
            h.abort();
        }
    }

    /// Lets connections through again.
    pub fn open(&self) {
        self.state.lock().unwrap().open = true;
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
        self.shut();
    }
}
