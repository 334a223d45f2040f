//! One connection's life after the upgrade: frames in are checked and handed to the document
//! actor, frames out come from its outbox; pings, pongs, deadlines and the message rate.
//!
//! The rate slows a client down instead of closing it: over its rate, the connection stops
//! handling and reading until the limiter lets it go on, while frames still go out, so TCP
//! holds the sender back. A frame (or fragmented message) once started must be complete
//! within the frame timeout, counted while the server reads; trickled bytes of an unfinished
//! frame are no sign of life.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_rustls::server::TlsStream;

use super::super::websocket::{self, Event, FrameError, FrameReader};
use super::io::read;
use super::limiter::RateLimiter;
use crate::doc::protocol::{self, ProtocolError};
use crate::doc::{Close, ConnId, DocHandle, Outbox, Subscription, Taken};
use crate::metrics::Metrics;

/// The upgraded connection's socket, as the connection reads it (and writes it, but for
/// plain TCP).
pub(super) enum Io {
    /// Plain TCP: the read half. The write half is the outbox's sink (see `TcpSink`).
    Tcp(OwnedReadHalf),
    /// TLS: read and written here.
    Tls(Box<TlsStream<TcpStream>>),
    /// A stream of a kind the listener does not make (none today): read and written here.
    Upgraded(TokioIo<Upgraded>),
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(io) => Pin::new(io).poll_read(cx, buf),
            Self::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

/// Plain TCP is written through the outbox's sink, never here.
fn written_elsewhere<T>() -> Poll<io::Result<T>> {
    Poll::Ready(Err(io::Error::new(io::ErrorKind::Unsupported, "written through the outbox")))
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(_) => written_elsewhere(),
            Self::Tls(io) => Pin::new(io).poll_write(cx, buf),
            Self::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(_) => written_elsewhere(),
            Self::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Upgraded(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(_) => true,
            Self::Tls(io) => io.is_write_vectored(),
            Self::Upgraded(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(_) => Poll::Ready(Ok(())),
            Self::Tls(io) => Pin::new(io).poll_flush(cx),
            Self::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(_) => Poll::Ready(Ok(())),
            Self::Tls(io) => Pin::new(io).poll_shutdown(cx),
            Self::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// How often the server pings a connection, and how long it waits for any sign of life
/// before it gives the connection up (a vanished peer does not close its socket).
const PING_EVERY: Duration = Duration::from_secs(30);
const SILENCE_LIMIT: Duration = Duration::from_secs(75);

/// Events kept allocated between reads; a burst that needed more gives its room back.
const KEPT_EVENTS: usize = 64;

const CLOSE_TEXT: Close = Close { code: 1003, reason: "text frames are not part of the protocol" };
const CLOSE_MALFORMED: Close = Close { code: 1007, reason: "malformed message" };
const CLOSE_AWARENESS_TOO_BIG: Close = Close { code: 1009, reason: "awareness state too big" };
const CLOSE_TOO_MANY: Close = Close { code: 1008, reason: "too many messages in one frame" };
const CLOSE_SLOW_FRAME: Close = Close { code: 1008, reason: "frame not completed in time" };
const CLOSE_SILENT: Close = Close { code: 1001, reason: "no sign of life from the client" };
const CLOSE_REASON_NOT_UTF8: Close = Close { code: 1007, reason: "close reason is not UTF-8" };
const CLOSE_TOO_BIG: Close = Close { code: 1009, reason: "message too big" };

/// What every connection of the server is held to.
pub struct SocketSettings {
    pub max_message: usize,
    pub messages_per_sec: u32,
    pub messages_per_frame: usize,
    pub frame_timeout: Duration,
    pub client_queue: usize,
    pub metrics: Metrics,
}

/// How a connection ends.
pub(super) enum End {
    /// The server ends it, for this reason.
    Close(Close),
    /// The client sent a close frame (with this code): answer it and close.
    Closing(Option<u16>),
    /// The socket broke (or the client vanished): nothing more can be sent.
    Broken,
}

impl End {
    /// The close code, for the metrics: the one sent or answered, 0 when the socket broke.
    pub(super) fn code(&self) -> u16 {
        match self {
            Self::Close(close) => close.code,
            Self::Closing(code) => code.unwrap_or(1005),
            Self::Broken => 0,
        }
    }
}

/// A connection's socket and what it holds between reads and writes.
pub(super) struct Connection {
    pub(super) io: Io,
    pub(super) settings: Arc<SocketSettings>,
    reader: FrameReader,
    /// Events read; those before `handled` are done.
    events: Vec<Event>,
    handled: usize,
    /// Frames taken from the outbox, being written; `progress` bytes of the first are out.
    pub(super) batch: VecDeque<Bytes>,
    pub(super) progress: usize,
    limiter: RateLimiter,
    /// When the client was last heard: a whole frame, not a trickled byte.
    last_seen: Instant,
    /// Since when a frame (or fragmented message) has been unfinished, while reading.
    frame_started: Option<Instant>,
    /// The payload of the latest ping not answered yet (RFC 6455 5.5.3: the latest will do).
    pending_pong: Option<Bytes>,
    throttled: bool,
    /// Plain TCP: the outbox the socket is written through (by the actor too).
    pub(super) direct: Option<Arc<Outbox>>,
}

impl Connection {
    pub(super) fn new(io: Io, settings: Arc<SocketSettings>) -> Self {
        Self {
            io,
            reader: FrameReader::new(settings.max_message),
            limiter: RateLimiter::new(settings.messages_per_sec),
            settings,
            events: Vec::new(),
            handled: 0,
            batch: VecDeque::new(),
            progress: 0,
            last_seen: Instant::now(),
            frame_started: None,
            pending_pong: None,
            throttled: false,
            direct: None,
        }
    }

    /// Bytes read before the connection was handed over (hyper's, past the handshake).
    pub(super) fn feed(&mut self, read: &[u8]) {
        if !read.is_empty() {
            self.reader.feed(read, &mut self.events);
            self.after_read();
        }
    }

    /// Moves frames both ways until either side ends, or the token expires.
    pub(super) async fn pump(
        &mut self,
        handle: &DocHandle,
        sub: &Subscription,
        expires: Option<Instant>,
    ) -> End {
        let mut next_ping = Instant::now() + PING_EVERY;
        // One timer for whatever comes first: a ping, the expiry, a frame's deadline, the
        // end of a throttle. Boxed, so that it does not size every connection's task.
        let mut timer: Pin<Box<Sleep>> = Box::pin(sleep_until(next_ping));
        loop {
            let resume_at = match self.handle_events(handle, sub.conn).await {
                Ok(resume_at) => resume_at,
                Err(end) => return end,
            };
            if let Some(payload) = self.pending_pong.take()
                && Box::pin(self.write_control(websocket::PONG, &payload)).await.is_err()
            {
                return End::Broken;
            }
            // The frame's clock runs only while the server reads.
            let frame_due = match resume_at {
                Some(_) => None,
                None => self.frame_started.map(|since| since + self.settings.frame_timeout),
            };
            let wake = [Some(next_ping), expires, frame_due, resume_at].into_iter().flatten().min();
            let wake = wake.expect("the next ping is always due");
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            let direct = self.direct.is_some();
            tokio::select! {
                biased;
                taken = async {
                    if direct {
                        sub.outbox.write_queued().await
                    } else {
                        sub.outbox.take(&mut self.batch).await
                    }
                } => match taken {
                    Taken::Closed(reason) => return End::Close(reason),
                    Taken::Broken => return End::Broken,
                    // Written already, through the outbox's sink.
                    Taken::Frames if direct => {}
                    Taken::Frames => {
                        if let Err(end) = self.write_batch(&sub.outbox).await {
                            return end;
                        }
                    }
                },
                read = read(&mut self.io, &mut self.reader, &mut self.events, &self.settings.metrics),
                    if resume_at.is_none() => {
                    if let Err(end) = read {
                        return end;
                    }
                    self.after_read();
                }
                () = timer.as_mut() => {
                    let now = Instant::now();
                    if expires.is_some_and(|at| now >= at) {
                        return End::Close(Close::EXPIRED);
                    }
                    if frame_due.is_some_and(|at| now >= at) {
                        return End::Close(CLOSE_SLOW_FRAME);
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
                }
            }
        }
    }

    /// Whole frames are a sign of life; an unfinished one starts (or keeps) its clock.
    fn after_read(&mut self) {
        let now = Instant::now();
        if !self.events.is_empty() {
            self.last_seen = now;
        }
        self.frame_started =
            if self.reader.mid_frame() { Some(self.frame_started.unwrap_or(now)) } else { None };
    }

    /// Acts on the events read, as far as the message rate allows: messages go to the actor
    /// (waiting while its inbox is full), pings are answered (the latest), a close ends the
    /// connection. Returns when reading may resume, if the rate holds the rest back.
    async fn handle_events(&mut self, handle: &DocHandle, conn: ConnId) -> Result<Option<Instant>, End> {
        while self.handled < self.events.len() {
            let now = Instant::now();
            if let Some(at) = self.limiter.wait_until(now) {
                if !self.throttled {
                    self.throttled = true;
                    self.settings.metrics.throttled.inc();
                    tracing::debug!("over the message rate: reading paused");
                }
                return Ok(Some(at));
            }
            if self.throttled {
                self.throttled = false;
                // The unfinished frame waited on the server, not on the client.
                self.frame_started = self.frame_started.map(|_| now);
            }
            // Taken out, leaving a cheap stand-in: the event is handled once.
            let event = std::mem::replace(&mut self.events[self.handled], Event::Pong);
            self.handled += 1;
            match event {
                Event::Binary(frame) => {
                    let messages = protocol::decode_frame(&frame, self.settings.messages_per_frame)
                        .map_err(|err| End::Close(refusal(&err)))?;
                    self.limiter.take(messages.len().max(1));
                    handle.client_messages(conn, messages).await.map_err(|err| End::Close(err.close()))?;
                }
                Event::Text => return Err(End::Close(CLOSE_TEXT)),
                Event::Ping(payload) => {
                    self.limiter.take(1);
                    self.pending_pong = Some(payload);
                }
                Event::Pong => {}
                Event::Close(code) => return Err(End::Closing(code)),
                Event::Invalid(err) => return Err(End::Close(frame_error(err))),
            }
        }
        self.events.clear();
        if self.events.capacity() > KEPT_EVENTS {
            self.events = Vec::new();
        }
        self.handled = 0;
        Ok(None)
    }
}

/// The close for a message that cannot be taken.
fn refusal(err: &ProtocolError) -> Close {
    tracing::debug!(error = %err, "refusing a message");
    match err {
        ProtocolError::AwarenessTooBig => CLOSE_AWARENESS_TOO_BIG,
        ProtocolError::TooMany(_) => CLOSE_TOO_MANY,
        _ => CLOSE_MALFORMED,
    }
}

/// The close for bytes that break the protocol; a protocol error names the rule broken.
fn frame_error(err: FrameError) -> Close {
    match err {
        FrameError::TooBig => CLOSE_TOO_BIG,
        FrameError::CloseReasonNotUtf8 => CLOSE_REASON_NOT_UTF8,
        FrameError::Protocol(rule) => Close { code: 1002, reason: rule },
    }
}
