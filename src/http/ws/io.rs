//! A connection's socket IO: reads into a buffer its worker thread shares (a connection holds
//! no buffer while idle, only the start of a frame still arriving), writes queued frames
//! straight from the bytes every connection of the document shares (header, payload, header,
//! payload... in one vectored write), control frames, and an orderly close.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::timeout;

use super::super::websocket::{self, Event, FrameReader};
use super::connection::{Connection, End, Io, SocketSettings};
use crate::doc::{Close, Outbox, Queue, Sink};
use crate::metrics::Metrics;

/// How long a closing connection waits for the peer to take the close frame, and then for
/// the peer's own close (so that its last bytes do not turn our close into a reset).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
const LINGER: Duration = Duration::from_secs(2);

/// How long a control frame (ping, pong, close) may wait for a peer that does not read.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from a socket at a time, into a buffer shared by the connections of a thread.
const READ_CHUNK: usize = 64 * 1024;

/// Frames written with one system call at most (two slices each).
const FRAMES_PER_WRITE: usize = 64;

thread_local! {
    /// Where a connection reads into when its socket is readable; the bytes that stay (the
    /// start of a frame still arriving) are copied out before the next connection reads.
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Reads what the socket has into the thread's buffer, parses it into events, and keeps
/// only the start of a frame still arriving. Waits (holding no buffer) until there is data.
/// Bytes that break the protocol become the last event, so that what came before them is
/// handled first.
pub(super) async fn read(
    io: &mut Io,
    reader: &mut FrameReader,
    events: &mut Vec<Event>,
    metrics: &Metrics,
) -> Result<(), End> {
    let read = poll_fn(|cx| poll_read_shared(cx, io, |data| reader.feed(data, events))).await;
    match read {
        Ok(0) | Err(_) => Err(End::Broken),
        Ok(n) => {
            metrics.bytes_received.inc_by(n as u64);
            Ok(())
        }
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
    metrics: &Metrics,
) -> Poll<io::Result<()>> {
    while !batch.is_empty() {
        let write = |slices: &[IoSlice<'_>]| Pin::new(&mut *io).poll_write_vectored(cx, slices);
        if let Err(err) = ready!(poll_write_some(write, batch, progress, metrics)) {
            return Poll::Ready(Err(err));
        }
    }
    *progress = 0;
    Poll::Ready(Ok(()))
}

/// One vectored write of up to [`FRAMES_PER_WRITE`] frames of the batch (which must not be
/// empty), through `write`. Written frames leave the batch; `progress` counts the bytes of
/// the first frame already written.
fn poll_write_some(
    mut write: impl FnMut(&[IoSlice<'_>]) -> Poll<io::Result<usize>>,
    batch: &mut VecDeque<Bytes>,
    progress: &mut usize,
    metrics: &Metrics,
) -> Poll<io::Result<()>> {
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
    let written = match ready!(write(&slices[..used])) {
        Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
        Ok(n) => n,
        Err(err) => return Poll::Ready(Err(err)),
    };
    metrics.bytes_sent.inc_by(written as u64);
    let mut done = written + *progress;
    let mut frames = 0;
    while let Some(frame) = batch.front() {
        let total = websocket::frame_header(websocket::BINARY, frame.len()).1 + frame.len();
        if done < total {
            break;
        }
        done -= total;
        batch.pop_front();
        frames += 1;
    }
    metrics.frames_sent.inc_by(frames);
    *progress = done;
    Poll::Ready(Ok(()))
}

/// A plain TCP socket's sending side, held by the connection's outbox: the document actor
/// writes frames through it itself when the socket takes them at once, the connection's
/// task when it had to wait (see `doc::Outbox`).
pub(super) struct TcpSink {
    half: OwnedWriteHalf,
    settings: Arc<SocketSettings>,
}

impl TcpSink {
    pub(super) fn new(half: OwnedWriteHalf, settings: Arc<SocketSettings>) -> Self {
        Self { half, settings }
    }
}

/// One write: with a task's context it waits for a full socket; without, a full socket is
/// `Pending` and nothing is registered.
fn write_once(
    half: &mut OwnedWriteHalf,
    cx: Option<&mut Context<'_>>,
    slices: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    match cx {
        Some(cx) => Pin::new(half).poll_write_vectored(cx, slices),
        None => match half.try_write_vectored(slices) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            done => Poll::Ready(done),
        },
    }
}

impl Sink for TcpSink {
    fn write(&mut self, mut cx: Option<&mut Context<'_>>, queue: &mut Queue) -> Poll<io::Result<()>> {
        let metrics = &self.settings.metrics;
        loop {
            // A control frame goes at a frame boundary, before the frames queued after it.
            if queue.progress == 0
                && let Some((frame, done)) = &mut queue.control
            {
                let n = match ready!(write_once(
                    &mut self.half,
                    cx.as_deref_mut(),
                    &[IoSlice::new(&frame[*done..])]
                )) {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => n,
                    Err(err) => return Poll::Ready(Err(err)),
                };
                metrics.bytes_sent.inc_by(n as u64);
                *done += n;
                if *done == frame.len() {
                    queue.control = None;
                    metrics.frames_sent.inc();
                }
                continue;
            }
            if queue.frames.is_empty() {
                queue.progress = 0;
                return Poll::Ready(Ok(()));
            }
            let half = &mut self.half;
            let write = |slices: &[IoSlice<'_>]| write_once(half, cx.as_deref_mut(), slices);
            if let Err(err) = ready!(poll_write_some(write, &mut queue.frames, &mut queue.progress, metrics))
            {
                return Poll::Ready(Err(err));
            }
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.half).poll_shutdown(cx)
    }
}

impl Connection {
    /// Writes every frame of the batch. A peer that stops reading stalls the write; the actor
    /// then finds this connection's outbox full and closes it, which ends the wait.
    pub(super) async fn write_batch(&mut self, outbox: &Outbox) -> Result<(), End> {
        let write = poll_fn(|cx| {
            poll_write_frames(cx, &mut self.io, &mut self.batch, &mut self.progress, &self.settings.metrics)
        });
        tokio::select! {
            biased;
            reason = outbox.closed() => Err(End::Close(reason)),
            written = write => written.map_err(|_| End::Broken),
        }
    }

    /// Writes one control frame whole (between frames), waiting for a slow peer a while.
    pub(super) async fn write_control(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let (header, len) = websocket::frame_header(opcode, payload.len());
        let mut frame = Vec::with_capacity(len + payload.len());
        frame.extend_from_slice(&header[..len]);
        frame.extend_from_slice(payload);
        if let Some(outbox) = &self.direct {
            let write = outbox.write_control(Bytes::from(frame));
            return timeout(CONTROL_TIMEOUT, write)
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        }
        let write = self.io.write_all(&frame);
        let written =
            timeout(CONTROL_TIMEOUT, write).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        if written.is_ok() {
            self.settings.metrics.bytes_sent.inc_by(frame.len() as u64);
            self.settings.metrics.frames_sent.inc();
        }
        written
    }

    /// Sends a close frame (if the socket takes it in time), then closes the socket. A frame
    /// half written when the connection was ended is finished first, the rest dropped.
    pub(super) async fn close(&mut self, reason: Close) {
        self.batch.truncate(usize::from(self.progress > 0));
        if let Some(outbox) = &self.direct {
            outbox.drop_unsent();
        }
        let payload = websocket::close_payload(reason.code, reason.reason);
        let send = async {
            let metrics = self.settings.metrics.clone();
            poll_fn(|cx| poll_write_frames(cx, &mut self.io, &mut self.batch, &mut self.progress, &metrics))
                .await?;
            self.write_control(websocket::CLOSE, &payload).await
        };
        if matches!(timeout(CLOSE_TIMEOUT, send).await, Ok(Ok(()))) {
            self.linger().await;
        }
    }

    /// Answers a client's close frame with the same code, then closes the socket the same
    /// orderly way.
    pub(super) async fn answer_close(&mut self, code: Option<u16>) {
        let payload = code.map_or_else(Bytes::new, |code| websocket::close_payload(code, ""));
        if let Some(outbox) = &self.direct {
            outbox.drop_unsent();
        }
        if self.write_control(websocket::CLOSE, &payload).await.is_ok() {
            self.linger().await;
        }
    }

    /// After our close frame: stop writing, then read and drop whatever the client still
    /// sends until it closes too (or a short while passes), so the socket ends in an orderly
    /// way instead of with a reset that could destroy the close frame in flight.
    async fn linger(&mut self) {
        let shut = match &self.direct {
            Some(outbox) => outbox.shutdown().await,
            None => self.io.shutdown().await,
        };
        if shut.is_err() {
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
}
