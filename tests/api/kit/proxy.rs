//! A TCP proxy between tandem and its database, so a test can take the database away from
//! one server without stopping it for the other tests that share it: `cut` resets every
//! connection through it and refuses new ones until `let_through`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    accepting: tokio::task::JoinHandle<()>,
}

struct State {
    upstream: SocketAddr,
    open: AtomicBool,
    /// Cancelled by `cut`: every connection made before it ends.
    current: Mutex<CancellationToken>,
    /// Connections reset or refused, for the test's figures.
    cut_connections: AtomicU64,
}

impl Proxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            upstream,
            open: AtomicBool::new(true),
            current: Mutex::new(CancellationToken::new()),
            cut_connections: AtomicU64::new(0),
        });
        let accepting = tokio::spawn(accept(listener, Arc::clone(&state)));
        Self { addr, state, accepting }
    }

    /// Resets every connection and refuses new ones: the database is gone, as far as
    /// anyone behind the proxy can tell.
    pub fn cut(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        let mut current = self.state.current.lock().unwrap();
        current.cancel();
        *current = CancellationToken::new();
    }

    /// Lets connections through again.
    pub fn let_through(&self) {
        self.state.open.store(true, Ordering::SeqCst);
    }

    /// Connections reset or refused so far.
    pub fn cut_connections(&self) -> u64 {
        self.state.cut_connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.state.current.lock().unwrap().cancel();
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    while let Ok((client, _)) = listener.accept().await {
        if !state.open.load(Ordering::SeqCst) {
            refuse(&state, client);
            continue;
        }
        let cut = state.current.lock().unwrap().clone();
        tokio::spawn(forward(client, Arc::clone(&state), cut));
    }
}

/// Closes a client's connection with a reset, as a host that is down would answer.
fn refuse(state: &State, socket: TcpStream) {
    state.cut_connections.fetch_add(1, Ordering::SeqCst);
    reset(socket);
}

/// Drops a socket with a reset rather than an orderly close. (SO_LINGER is deprecated in
/// tokio because a drop may block until the data is sent; with a zero linger it resets at
/// once.)
#[allow(deprecated)]
fn reset(socket: TcpStream) {
    let _ = socket.set_linger(Some(std::time::Duration::ZERO));
}

async fn forward(mut client: TcpStream, state: Arc<State>, cut: CancellationToken) {
    let Ok(mut upstream) = TcpStream::connect(state.upstream).await else {
        return refuse(&state, client);
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        () = cut.cancelled() => {
            // Both ends reset mid-conversation: a commit in flight may or may not have landed.
            refuse(&state, client);
            reset(upstream);
        }
    }
}
