//! The accept loop: every TCP connection, from accept to close, before axum sees a request.
//!
//! Here a connection gets its [`Seat`] (or, past a cap, an answer of 503 or 429 and a
//! close), its TLS handshake, and hyper's HTTP/1.1 with the timeouts a server facing
//! strangers needs: a request head must arrive within `header_timeout` (an idle
//! keep-alive connection is closed after `keepalive_timeout`), and a head may hold at most
//! `max_header_bytes`. Each request carries the client's address and the connection's
//! seat, which a WebSocket keeps for as long as it lives.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::error::ApiError;
use super::limits::{Limits, Refusal, Seat, client_address};
use super::tls::Tls;

/// How long a refused connection has to send its request head.
const REFUSAL_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long shutdown waits for HTTP requests in flight (REST calls are short; sockets are
/// closed by their documents afterwards).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The timeouts and sizes of the HTTP layer.
#[derive(Clone, Debug)]
pub struct EdgeSettings {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_header_bytes: usize,
}

/// What every connection task shares.
struct Edge {
    router: Router,
    limits: Arc<Limits>,
    tls: Option<Tls>,
    settings: EdgeSettings,
    /// Told at shutdown: connections finish the request in flight and close.
    stopping: CancellationToken,
    refusing: AtomicUsize,
}

/// The TCP stream, maybe wrapped in TLS. The TLS state is boxed: an upgraded socket keeps its
/// stream for life, and inline the TLS variant (1,224 bytes of rustls state) would make
/// every plain connection as large.
pub(super) type Stream = Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>;

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (for a while) and returns. Upgraded WebSockets live on in their own tasks.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Arc<Limits>,
    tls: Option<Tls>,
    settings: EdgeSettings,
    shutdown: impl Future<Output = ()>,
) {
    let edge = Arc::new(Edge {
        router,
        limits,
        tls,
        settings,
        stopping: CancellationToken::new(),
        refusing: AtomicUsize::new(0),
    });
    let tasks = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let edge = Arc::clone(&edge);
                    tasks.spawn(async move { edge.connection(tcp, peer).await });
                }
                Err(err) => accept_failed(&err).await,
            },
            () = &mut shutdown => break,
        }
    }
    edge.stopping.cancel();
    tasks.close();
    if timeout(DRAIN_TIMEOUT, tasks.wait()).await.is_err() {
        tracing::warn!(left = tasks.len(), "some HTTP requests did not finish in time");
    }
}

/// `accept` fails when the process is out of descriptors (or the peer gave up early): wait
/// a moment rather than spin, and go on.
async fn accept_failed(err: &std::io::Error) {
    tracing::warn!(error = %err, "accept failed");
    sleep(Duration::from_millis(50)).await;
}

impl Edge {
    async fn connection(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        match self.limits.admit(peer) {
            Ok(seat) => self.serve_admitted(tcp, peer, seat).await,
            Err(refusal) => self.refuse(tcp, peer, self.limits.refused(refusal)).await,
        }
    }

    /// The TLS handshake, when there is TLS, within the header timeout.
    async fn handshake(&self, tcp: TcpStream, wait: Duration) -> Option<Stream> {
        let Some(tls) = &self.tls else {
            return Some(Either::Left(tcp));
        };
        match timeout(wait, tls.acceptor().accept(tcp)).await {
            Ok(Ok(stream)) => Some(Either::Right(Box::new(stream))),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                None
            }
        }
    }

    fn http(&self, header_timeout: Duration, keep_alive: bool) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_header_size(self.settings.max_header_bytes)
            // hyper reads at most this much ahead; it must hold a whole head (and is at least 8 KiB).
            .max_buf_size(self.settings.max_header_bytes.max(8192))
            .keep_alive(keep_alive);
        builder
    }

    async fn serve_admitted(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr, seat: Arc<Seat>) {
        let Some(stream) = self.handshake(tcp, self.settings.header_timeout).await else {
            return;
        };
        let activity = Arc::new(Activity::default());
        let edge = Arc::clone(&self);
        let requests = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let edge = Arc::clone(&edge);
            let seat = Arc::clone(&seat);
            let activity = Arc::clone(&requests);
            async move {
                activity.started();
                let response = edge.route(request, peer, seat).await;
                activity.finished();
                Ok::<_, Infallible>(response)
            }
        });
        let connection = self
            .http(self.settings.header_timeout, true)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut connection = pin!(connection);
        let mut closing = false;
        let keepalive = self.settings.keepalive_timeout;
        loop {
            // Looked at again at least once per keep-alive period (a request that finishes
            // does not wake this loop).
            let next_check = activity.idle_deadline(keepalive).unwrap_or_else(|| Instant::now() + keepalive);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "HTTP connection ended with an error");
                    }
                    return;
                }
                () = self.stopping.cancelled(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = sleep_until(next_check), if !closing => {
                    if activity.idle_for(keepalive) {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }

    /// One request of an admitted connection: the client's address and the seat go along.
    async fn route(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        seat: Arc<Seat>,
    ) -> Response<Body> {
        let trust = self.limits.settings().trust_proxy_headers;
        let client = client_address(peer, request.headers(), trust);
        if trust && let Err(refusal) = seat.claim_address(client.ip()) {
            return refusal_response(self.limits.refused(refusal));
        }
        request.extensions_mut().insert(ConnectInfo(client));
        request.extensions_mut().insert(seat);
        let response = self.router.clone().oneshot(request.map(Body::new)).await;
        response.unwrap_or_else(|never| match never {})
    }

    /// Past a cap: the health checks are still answered (a balancer asks them exactly
    /// then), anything else gets 503 or 429 and the connection closes.
    async fn refuse(&self, tcp: TcpStream, peer: SocketAddr, refusal: Refusal) {
        if self.refusing.fetch_add(1, Ordering::Relaxed) >= self.limits.refusal_slots() {
            self.refusing.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        tracing::debug!(%peer, ?refusal, "refusing a connection");
        if let Some(stream) = self.handshake(tcp, REFUSAL_HEADER_TIMEOUT).await {
            let router = self.router.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let router = router.clone();
                async move {
                    let response = match request.uri().path() {
                        "/healthz" | "/readyz" => router
                            .oneshot(request.map(Body::new))
                            .await
                            .unwrap_or_else(|never| match never {}),
                        _ => refusal_response(refusal),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection =
                self.http(REFUSAL_HEADER_TIMEOUT, false).serve_connection(TokioIo::new(stream), service);
            let _ = timeout(REFUSAL_HEADER_TIMEOUT * 2, connection).await;
        }
        self.refusing.fetch_sub(1, Ordering::Relaxed);
    }
}

/// 503 (a cap) or 429 (the rate), with `Retry-After`, closing the connection.
fn refusal_response(refusal: Refusal) -> Response<Body> {
    let mut response = ApiError::Refused(refusal).into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Whether a connection has a request in flight, and since when it has had none.
#[derive(Default)]
struct Activity {
    state: std::sync::Mutex<(usize, Option<Instant>)>,
}

impl Activity {
    fn started(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
    }

    fn finished(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0 {
            state.1 = Some(Instant::now());
        }
    }

    /// When an idle keep-alive connection is next due to be looked at; `None` before its
    /// first request (the header timeout governs until then) or while one is in flight.
    fn idle_deadline(&self, keepalive: Duration) -> Option<Instant> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            (0, Some(since)) => Some(since + keepalive),
            _ => None,
        }
    }

    fn idle_for(&self, keepalive: Duration) -> bool {
        self.idle_deadline(keepalive).is_some_and(|at| at <= Instant::now())
    }
}
