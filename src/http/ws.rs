//! `GET /ws/{id}`: the y-websocket endpoint. Socket IO only: frames in are checked and
//! handed to the document actor; frames out come from the actor, already encoded, and are
//! written straight from its shared bytes.
//!
//! Refusals happen before the upgrade (400 malformed id or request, 404 unknown document),
//! because the stock client backs off on a failed upgrade but retries a closed socket almost
//! at once.
//!
//! One task per connection, which holds no buffer while the connection is idle: it reads
//! into a buffer of its worker thread (only the start of a frame still arriving is kept), and
//! it writes queued frames with vectored writes (header, payload, header, payload...).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Version, header};
use axum::response::Response;
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep, sleep_until, timeout};
use tracing::Instrument;

use super::AppState;
use super::access::{TokenFrom, authenticate};
use super::docs::{DocIdPath, ensure_exists};
use super::error::ApiError;
use super::handshake;
use super::limits::{DocSeat, Seat};
use super::websocket::{self, Event, FrameError, FrameReader};
use crate::auth::{Access, Scope};
use crate::doc::protocol;
use crate::doc::{Close, ConnId, DocHandle, Outbox, Peer, Subscription, Taken};
use crate::model::DocId;

/// How often the server pings a connection, and how long it waits for any sign of life
/// before it gives the connection up (a vanished peer does not close its socket).
const PING_EVERY: Duration = Duration::from_secs(30);
const SILENCE_LIMIT: Duration = Duration::from_secs(75);

/// How long a closing connection waits for the peer to take the close frame, and then for
/// the peer's own close (so that its last bytes do not turn our close into a reset).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
const LINGER: Duration = Duration::from_secs(2);

/// How long a control frame (ping, pong) may wait for a peer that does not read.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from a socket at a time, into a buffer shared by the connections of a thread.
const READ_CHUNK: usize = 64 * 1024;

/// Frames written with one system call at most (two slices each).
const FRAMES_PER_WRITE: usize = 64;

const CLOSE_TEXT: Close = Close { code: 1003, reason: "text frames are not part of the protocol" };
const CLOSE_MALFORMED: Close = Close { code: 1007, reason: "malformed message" };
const CLOSE_AWARENESS_TOO_BIG: Close = Close { code: 1009, reason: "awareness state too big" };
const CLOSE_FLOOD: Close = Close { code: 1008, reason: "too many messages; slow down" };
const CLOSE_SILENT: Close = Close { code: 1001, reason: "no sign of life from the client" };
const CLOSE_REASON_NOT_UTF8: Close = Close { code: 1007, reason: "close reason is not UTF-8" };
const CLOSE_TOO_BIG: Close = Close { code: 1009, reason: "message too big" };

thread_local! {
    /// Where a connection reads into when its socket is readable; the bytes that stay (the
    /// start of a frame still arriving) are copied out before the next connection reads.
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Refuses bad requests before the upgrade (the origin was checked on the way in), then
/// hands the socket to [`serve`].
pub async fn doc_socket(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let access = authenticate(&app, &parts, TokenFrom::HeaderOrQuery)?;
    access.allows(id, Scope::Read)?;
    let accept = check_handshake(&parts.method, parts.version, &parts.headers)?;
    ensure_exists(&app, id).await?;
    let doc_seat =
        app.limits.join_doc(id).map_err(|refusal| ApiError::Refused(app.limits.refused(refusal)))?;
    let session = Session {
        id,
        peer: Peer { scope: access.scope, principal: principal(&app, &access, client) },
        expires: access.expires.map(deadline),
        _seats: (parts.extensions.remove::<Arc<Seat>>(), doc_seat),
    };
    tracing::debug!(doc_id = %id, scope = %access.scope, who = access.who(), "joining");
    let on_upgrade = parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or_else(|| ApiError::BadRequest("this connection cannot be upgraded".into()))?;
    let connections = app.connections.clone();
    // Every line about this connection names its document.
    let span = tracing::info_span!("conn", doc_id = %id);
    connections.spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => serve(app, session, TokioIo::new(upgraded)).await,
                Err(err) => tracing::debug!(error = %err, "upgrade failed"),
            }
        }
        .instrument(span),
    );
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(response)
}

/// What a connection is, besides its socket.
struct Session {
    id: DocId,
    peer: Peer,
    /// When its token expires, on the runtime's clock.
    expires: Option<Instant>,
    /// Its places within the connection caps, given back when it ends.
    _seats: (Option<Arc<Seat>>, DocSeat),
}

/// Who a connection belongs to, for taking over one's own cursor from an older socket: the
/// token's subject; in open mode (no identities), the client's address.
fn principal(app: &AppState, access: &Access, client: SocketAddr) -> Option<Arc<str>> {
    match &app.auth {
        Some(_) => access.sub.clone(),
        None => Some(Arc::from(client.ip().to_string())),
    }
}

/// The moment a token's expiry comes (with the leeway the door gives it too), on the
/// runtime's clock.
fn deadline(expires: SystemTime) -> Instant {
    let left = (expires + crate::auth::LEEWAY).duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + left
}

/// Checks an opening handshake (RFC 6455 section 4.2.1); the `Sec-WebSocket-Accept` value.
fn check_handshake(method: &Method, version: Version, headers: &HeaderMap) -> Result<String, ApiError> {
    Ok(handshake::check(method, version, headers)?)
}

/// The upgraded connection (a TCP stream underneath).
type Io = TokioIo<Upgraded>;

/// One connection, for its whole life, in one task. The task is sized for its largest state,
/// and every connection holds one even while idle: the steps that run once (joining,
/// leaving, closing) are boxed so that only the pump sets the size (1.1 KiB, from 1.9).
async fn serve(app: AppState, session: Session, io: Io) {
    let mut conn = Connection::new(io, app.config.max_message_bytes, app.config.max_messages_per_sec);
    let id = session.id;
    let joined = Box::pin(app.registry.connect(id, app.config.client_queue, session.peer.clone())).await;
    let (handle, sub) = match joined {
        Ok(joined) => joined,
        Err(err) => {
            tracing::debug!(doc_id = %id, error = %err, "connection refused");
            Box::pin(conn.close(err.close())).await;
            return;
        }
    };
    let end = conn.pump(&handle, &sub, session.expires).await;
    Box::pin(handle.disconnect(sub.conn)).await;
    match end {
        End::Close(reason) => {
            tracing::debug!(doc_id = %id, code = reason.code, reason = reason.reason, "closing connection");
            Box::pin(conn.close(reason)).await;
        }
        End::Closing(code) => Box::pin(conn.answer_close(code)).await,
        End::Broken => {}
    }
}

/// How a connection ends.
enum End {
    /// The server ends it, for this reason.
    Close(Close),
    /// The client sent a close frame (with this code): answer it and close.
    Closing(Option<u16>),
    /// The socket broke (or the client vanished): nothing more can be sent.
    Broken,
}

/// A connection's socket and what it holds between reads and writes.
struct Connection {
    io: Io,
    reader: FrameReader,
    /// Events read but not yet handled.
    events: Vec<Event>,
    /// Frames taken from the outbox, being written; `progress` bytes of the first are out.
    batch: VecDeque<Bytes>,
    progress: usize,
    limiter: RateLimiter,
    last_seen: Instant,
}

impl Connection {
    fn new(io: Io, max_message: usize, messages_per_sec: u32) -> Self {
        Self {
            io,
            reader: FrameReader::new(max_message),
            events: Vec::new(),
            batch: VecDeque::new(),
            progress: 0,
            limiter: RateLimiter::new(messages_per_sec),
            last_seen: Instant::now(),
        }
    }

    /// Moves frames both ways until either side ends, or the token expires.
    async fn pump(&mut self, handle: &DocHandle, sub: &Subscription, expires: Option<Instant>) -> End {
        let mut next_ping = Instant::now() + PING_EVERY;
        // One timer for the next ping and the expiry, whichever comes first; boxed, so that
        // it does not size every connection's task.
        let mut timer: Pin<Box<Sleep>> = Box::pin(sleep_until(first(next_ping, expires)));
        loop {
            if let Err(end) = self.handle_events(handle, sub.conn).await {
                return end;
            }
            tokio::select! {
                biased;
                taken = sub.outbox.take(&mut self.batch) => match taken {
                    Taken::Closed(reason) => return End::Close(reason),
                    Taken::Frames => {
                        if let Err(end) = self.write_batch(&sub.outbox).await {
                            return end;
                        }
                    }
                },
                read = read(&mut self.io, &mut self.reader, &mut self.events) => {
                    self.last_seen = Instant::now();
                    if let Err(end) = read {
                        return end;
                    }
                }
                () = timer.as_mut() => {
                    let now = Instant::now();
                    if expires.is_some_and(|at| now >= at) {
                        return End::Close(Close::EXPIRED);
                    }
                    if now >= next_ping {
                        if self.last_seen.elapsed() > SILENCE_LIMIT {
                            return End::Close(CLOSE_SILENT);
                        }
                        if Box::pin(self.write_control(websocket::PING, &[])).await.is_err() {
                            return End::Broken;
                        }
                        next_ping = now + PING_EVERY;
                    }
                    timer.as_mut().reset(first(next_ping, expires));
                }
            }
        }
    }

    /// Acts on the events read: messages go to the actor (waiting while its inbox is full,
    /// which slows this client down), pings are answered, a close ends the connection.
    async fn handle_events(&mut self, handle: &DocHandle, conn: ConnId) -> Result<(), End> {
        let mut events = std::mem::take(&mut self.events);
        let mut result = Ok(());
        for event in events.drain(..) {
            result = match event {
                Event::Binary(frame) => {
                    if self.limiter.allow(Instant::now()) {
                        forward(handle, conn, frame).await.map_err(End::Close)
                    } else {
                        Err(End::Close(CLOSE_FLOOD))
                    }
                }
                Event::Text => Err(End::Close(CLOSE_TEXT)),
                Event::Ping(payload) => {
                    // Boxed, as is the ping in `pump`: rare, and inline it would size every task.
                    let pong = Box::pin(self.write_control(websocket::PONG, &payload));
                    pong.await.map_err(|_| End::Broken)
                }
                Event::Pong => Ok(()),
                Event::Close(code) => Err(End::Closing(code)),
                Event::Invalid(err) => Err(End::Close(frame_error(err))),
            };
            if result.is_err() {
                break;
            }
        }
        // Hand the (now empty) buffer back, keeping its capacity for the next read.
        events.clear();
        self.events = events;
        result
    }

    /// Writes every frame of the batch. A peer that stops reading stalls the write; the actor
    /// then finds this connection's outbox full and closes it, which ends the wait.
    async fn write_batch(&mut self, outbox: &Outbox) -> Result<(), End> {
        let write = poll_fn(|cx| poll_write_frames(cx, &mut self.io, &mut self.batch, &mut self.progress));
        tokio::select! {
            biased;
            reason = outbox.closed() => Err(End::Close(reason)),
            written = write => written.map_err(|_| End::Broken),
        }
    }

    /// Writes one control frame whole (between batches), waiting for a slow peer a while.
    async fn write_control(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let (header, len) = websocket::frame_header(opcode, payload.len());
        let mut frame = Vec::with_capacity(len + payload.len());
        frame.extend_from_slice(&header[..len]);
        frame.extend_from_slice(payload);
        let write = self.io.write_all(&frame);
        timeout(CONTROL_TIMEOUT, write).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Sends a close frame (if the socket takes it in time), then closes the socket. A frame
    /// half written when the connection was ended is finished first, the rest dropped.
    async fn close(&mut self, reason: Close) {
        self.batch.truncate(usize::from(self.progress > 0));
        let payload = websocket::close_payload(reason.code, reason.reason);
        let send = async {
            poll_fn(|cx| poll_write_frames(cx, &mut self.io, &mut self.batch, &mut self.progress)).await?;
            self.write_control(websocket::CLOSE, &payload).await
        };
        if matches!(timeout(CLOSE_TIMEOUT, send).await, Ok(Ok(()))) {
            self.linger().await;
        }
    }

    /// Answers a client's close frame with the same code, then closes the socket.
    async fn answer_close(&mut self, code: Option<u16>) {
        let payload = code.map_or_else(Bytes::new, |code| websocket::close_payload(code, ""));
        if self.write_control(websocket::CLOSE, &payload).await.is_ok() {
            let _ = self.shutdown().await;
        }
    }

    /// After our close frame: stop writing, then read and drop whatever the client still
    /// sends until it closes too (or a short while passes), so the socket ends in an orderly
    /// way instead of with a reset that could destroy the close frame in flight.
    async fn linger(&mut self) {
        if self.shutdown().await.is_err() {
            return;
        }
        let drain = poll_fn(|cx| {
            loop {
                match poll_read_shared(cx, &mut self.io, |_| {}) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => return Poll::Pending,
                }
            }
        });
        let _ = timeout(LINGER, drain).await;
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

/// The earlier of a time and an optional one.
fn first(at: Instant, or: Option<Instant>) -> Instant {
    or.map_or(at, |or| or.min(at))
}

/// Reads what the socket has into the thread's buffer, parses it into events, and keeps
/// only the start of a frame still arriving. Waits (holding no buffer) until there is data.
/// Bytes that break the protocol become the last event, so that what came before them is
/// handled first.
async fn read(io: &mut Io, reader: &mut FrameReader, events: &mut Vec<Event>) -> Result<(), End> {
    let read = poll_fn(|cx| poll_read_shared(cx, io, |data| reader.feed(data, events))).await;
    match read {
        Ok(0) | Err(_) => Err(End::Broken),
        Ok(_) => Ok(()),
    }
}

/// Polls one read into the thread's buffer and hands the bytes to `take` before the buffer
/// goes back. Ready with the count read (0 at the end of the stream).
fn poll_read_shared(cx: &mut Context<'_>, io: &mut Io, take: impl FnOnce(&[u8])) -> Poll<io::Result<usize>> {
    READ_BUFFER.with_borrow_mut(|buffer| {
        let mut buf = ReadBuf::new(buffer);
        match Pin::new(io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let data = buf.filled();
                if !data.is_empty() {
                    take(data);
                }
                Poll::Ready(Ok(data.len()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// Writes the batch, each frame as a header followed by its payload straight from the
/// shared bytes, many frames per vectored write. Written frames leave the batch; `progress`
/// counts the bytes of the first frame already written.
fn poll_write_frames(
    cx: &mut Context<'_>,
    io: &mut Io,
    batch: &mut VecDeque<Bytes>,
    progress: &mut usize,
) -> Poll<io::Result<()>> {
    while !batch.is_empty() {
        let count = batch.len().min(FRAMES_PER_WRITE);
        let mut headers = [([0u8; 10], 0usize); FRAMES_PER_WRITE];
        for (header, frame) in headers.iter_mut().zip(batch.iter()) {
            *header = websocket::frame_header(websocket::BINARY, frame.len());
        }
        let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
        let mut used = 0;
        let mut skip = *progress;
        for ((header, len), frame) in headers[..count].iter().zip(batch.iter()) {
            for part in [&header[..*len], frame.as_ref()] {
                if skip >= part.len() {
                    skip -= part.len();
                } else {
                    slices[used] = IoSlice::new(&part[skip..]);
                    skip = 0;
                    used += 1;
                }
            }
        }
        let written = match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..used]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => return Poll::Pending,
        };
        let mut done = written + *progress;
        while let Some(frame) = batch.front() {
            let total = websocket::frame_header(websocket::BINARY, frame.len()).1 + frame.len();
            if done < total {
                break;
            }
            done -= total;
            batch.pop_front();
        }
        *progress = done;
    }
    *progress = 0;
    Poll::Ready(Ok(()))
}

/// Checks one incoming message and hands its y-websocket messages to the actor.
async fn forward(handle: &DocHandle, conn: ConnId, frame: Bytes) -> Result<(), Close> {
    let messages = protocol::decode_frame(&frame).map_err(|err| {
        tracing::debug!(error = %err, "refusing a malformed message");
        match err {
            protocol::ProtocolError::AwarenessTooBig => CLOSE_AWARENESS_TOO_BIG,
            _ => CLOSE_MALFORMED,
        }
    })?;
    handle.client_messages(conn, messages).await.map_err(|err| err.close())
}

/// The close for bytes that break the protocol; a protocol error names the rule broken.
fn frame_error(err: FrameError) -> Close {
    match err {
        FrameError::TooBig => CLOSE_TOO_BIG,
        FrameError::CloseReasonNotUtf8 => CLOSE_REASON_NOT_UTF8,
        FrameError::Protocol(rule) => Close { code: 1002, reason: rule },
    }
}

/// A token bucket per connection: `rate` messages per second on average, bursts of five
/// seconds' worth.
struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    const BURST_SECONDS: f64 = 5.0;

    fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        let burst = rate * Self::BURST_SECONDS;
        Self { rate, burst, tokens: burst, last: Instant::now() }
    }

    fn allow(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
