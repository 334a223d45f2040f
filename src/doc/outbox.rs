//! A connection's outbox: the frames the actor has for it, and the reason when the actor
//! ends it. Shared by the actor (which pushes and never waits) and the connection's task
//! (which waits, then takes everything queued at once and writes it in one go).
//!
//! With a [`Sink`] attached (a plain TCP socket's write half), the actor writes a frame
//! straight to the socket when nothing is queued before it: no wake-up, no task switch. What
//! the socket does not take at once stays queued, and the connection's task writes it when the
//! socket can take more, through the same sink under the same lock, so frames never
//! interleave. Without one (TLS), the task takes the frames and writes them itself.
//!
//! Why not a tokio channel: an idle connection's channel holds a block of 32 slots (about
//! 1 KiB) for life, a second channel is needed for the reason, and the reader takes one frame
//! at a time. This queue costs a few dozen bytes while empty and hands over a whole burst.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;

use super::handle::Close;

/// A socket the outbox writes to itself. Implemented by the connection layer, which knows
/// how frames are encoded.
pub trait Sink: Send {
    /// Writes what `queue` holds, as far as the socket takes it now: finishes a frame begun,
    /// then the control frame if there is one, then the frames, removing what is written.
    /// With `cx` (the connection's task) a full socket registers it for writability; without
    /// (the actor) it does not. Ready once the queue is empty.
    fn write(&mut self, cx: Option<&mut Context<'_>>, queue: &mut Queue) -> Poll<io::Result<()>>;

    /// Shuts the socket's sending side (after a close frame).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// What waits to be written, for a [`Sink`].
#[derive(Debug, Default)]
pub struct Queue {
    pub frames: VecDeque<Bytes>,
    /// Bytes of the first frame already written.
    pub progress: usize,
    /// A control frame of the connection's own, whole (header and payload), with the bytes
    /// of it written: it goes out at the next frame boundary.
    pub control: Option<(Bytes, usize)>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.control.is_none()
    }
}

/// A queue with room for `capacity` frames. A std mutex: it is held only to push, swap or
/// write without waiting.
pub struct Outbox {
    state: Mutex<State>,
    waker: AtomicWaker,
    capacity: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    queue: Queue,
    /// Set when the actor ends the connection; frames still queued are not sent.
    closed: Option<Close>,
    /// Set when the connection ends itself: frames pushed after are dropped.
    stopped: bool,
    sink: Option<Box<dyn Sink>>,
}

/// The actor could not queue a frame: the connection is too slow or already ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// What the connection takes from its outbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Frames were moved into the caller's buffer (or, with a sink, written).
    Frames,
    /// The actor ended the connection, for this reason.
    Closed(Close),
    /// The sink's socket failed.
    Broken,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self { state: Mutex::new(State::default()), waker: AtomicWaker::new(), capacity: capacity.max(2) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // No code panics while holding the lock; if one did, the queue is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Gives the outbox its socket (connection side): from now on it is written through it.
    pub fn attach(&self, sink: Box<dyn Sink>) {
        self.state().sink = Some(sink);
        self.waker.wake();
    }

    /// Queues a frame (actor side), writing it at once when it is first in line and the
    /// socket takes it (`direct`: the caller allows it). Wakes the connection if it must write.
    pub fn push(&self, frame: Bytes, direct: bool) -> Result<(), Full> {
        let wake = {
            let mut state = self.state();
            if state.stopped {
                return Ok(());
            }
            if state.closed.is_some() || state.queue.frames.len() >= self.capacity {
                return Err(Full);
            }
            let first = state.queue.is_empty();
            state.queue.frames.push_back(frame);
            let State { queue, sink, .. } = &mut *state;
            match sink {
                // Written whole: nothing for the connection to do.
                Some(sink) if first && direct => !matches!(sink.write(None, queue), Poll::Ready(Ok(()))),
                _ => first,
            }
        };
        if wake {
            self.waker.wake();
        }
        Ok(())
    }

    /// Ends the connection (actor side); the first reason given wins.
    pub fn close(&self, reason: Close) {
        self.state().closed.get_or_insert(reason);
        self.waker.wake();
    }

    /// The connection ends itself (connection side): frames pushed from now on are dropped.
    pub fn stop(&self) {
        self.state().stopped = true;
    }

    /// Waits until there are frames or a close (connection side), then moves every queued
    /// frame into `into` (which must be empty) or reports the close. Without a sink only.
    pub async fn take(&self, into: &mut VecDeque<Bytes>) -> Taken {
        poll_fn(|cx| {
            if let Some(taken) = self.try_take(into) {
                return Poll::Ready(taken);
            }
            self.waker.register(cx.waker());
            // Checked again after registering, so a push in between is not missed.
            match self.try_take(into) {
                Some(taken) => Poll::Ready(taken),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Waits until there are frames or a close (connection side, with a sink), then writes
    /// every queued frame through the sink, waiting while the socket is full.
    pub async fn write_queued(&self) -> Taken {
        poll_fn(|cx| {
            let mut state = self.state();
            if let Some(close) = state.closed {
                return Poll::Ready(Taken::Closed(close));
            }
            if state.queue.is_empty() {
                self.waker.register(cx.waker());
                // A push waits for this lock; none can come in between.
                return Poll::Pending;
            }
            self.poll_sink(&mut state, cx)
        })
        .await
    }

    /// Writes a control frame (whole: header and payload) at the next frame boundary, with
    /// whatever is queued (connection side, with a sink).
    pub async fn write_control(&self, frame: Bytes) -> io::Result<()> {
        {
            let mut state = self.state();
            // One begun and not finished (its write timed out): another would cut into it.
            if matches!(state.queue.control, Some((_, done)) if done > 0) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            state.queue.control = Some((frame, 0));
        }
        let written = poll_fn(|cx| {
            let mut state = self.state();
            if state.queue.control.is_none() {
                return Poll::Ready(Taken::Frames);
            }
            self.poll_sink(&mut state, cx)
        })
        .await;
        match written {
            Taken::Broken => Err(io::ErrorKind::BrokenPipe.into()),
            _ => Ok(()),
        }
    }

    /// Drops the frames not begun (connection side, when it closes): a frame half written is
    /// finished, the rest never go out.
    pub fn drop_unsent(&self) {
        let mut state = self.state();
        state.stopped = true;
        let keep = usize::from(state.queue.progress > 0);
        state.queue.frames.truncate(keep);
    }

    /// Shuts the socket's sending side (connection side, with a sink).
    pub async fn shutdown(&self) -> io::Result<()> {
        poll_fn(|cx| match &mut self.state().sink {
            Some(sink) => sink.poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        })
        .await
    }

    fn poll_sink(&self, state: &mut State, cx: &mut Context<'_>) -> Poll<Taken> {
        let State { queue, sink, .. } = state;
        let Some(sink) = sink else { return Poll::Ready(Taken::Broken) };
        match sink.write(Some(cx), queue) {
            Poll::Ready(Ok(())) => Poll::Ready(Taken::Frames),
            Poll::Ready(Err(_)) => Poll::Ready(Taken::Broken),
            Poll::Pending => {
                // Woken by the socket, or by a close.
                self.waker.register(cx.waker());
                Poll::Pending
            }
        }
    }

    /// Waits until the actor ends the connection (connection side, while a write is stuck on
    /// a peer that does not read). Frames pushed meanwhile stay queued.
    pub async fn closed(&self) -> Close {
        poll_fn(|cx| {
            if let Some(close) = self.state().closed {
                return Poll::Ready(close);
            }
            self.waker.register(cx.waker());
            match self.state().closed {
                Some(close) => Poll::Ready(close),
                None => Poll::Pending,
            }
        })
        .await
    }

    fn try_take(&self, into: &mut VecDeque<Bytes>) -> Option<Taken> {
        let mut state = self.state();
        if let Some(close) = state.closed {
            return Some(Taken::Closed(close));
        }
        if state.queue.frames.is_empty() {
            return None;
        }
        // Swap buffers: both keep their capacity, and the lock is held for a swap only.
        std::mem::swap(&mut state.queue.frames, into);
        Some(Taken::Frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn frames_arrive_in_order_and_in_one_batch() {
        let outbox = Outbox::new(8);
        for i in 0..3u8 {
            outbox.push(Bytes::from(vec![i]), true).unwrap();
        }
        let mut batch = VecDeque::new();
        assert_eq!(outbox.take(&mut batch).await, Taken::Frames);
        assert_eq!(batch, [vec![0u8], vec![1], vec![2]].map(Bytes::from));
    }

    #[tokio::test]
    async fn a_full_outbox_refuses_and_a_close_wins_over_frames() {
        let outbox = Outbox::new(2);
        outbox.push(Bytes::new(), true).unwrap();
        outbox.push(Bytes::new(), true).unwrap();
        assert_eq!(outbox.push(Bytes::new(), true), Err(Full));
        outbox.close(Close::SLOW);
        outbox.close(Close::SHUTDOWN);
        let mut batch = VecDeque::new();
        assert_eq!(outbox.take(&mut batch).await, Taken::Closed(Close::SLOW));
        assert_eq!(outbox.push(Bytes::new(), true), Err(Full));
    }

    #[tokio::test]
    async fn a_waiting_connection_is_woken() {
        let outbox = Arc::new(Outbox::new(8));
        let waiter = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move {
                let mut batch = VecDeque::new();
                outbox.take(&mut batch).await;
                batch.len()
            })
        };
        tokio::task::yield_now().await;
        outbox.push(Bytes::from_static(b"x"), true).unwrap();
        assert_eq!(waiter.await.unwrap(), 1);
    }

    /// A socket in memory: it takes up to `room` bytes, then is full until given more.
    #[derive(Clone, Default)]
    struct MemorySocket {
        written: Arc<Mutex<Vec<u8>>>,
        room: Arc<Mutex<usize>>,
        waiting: Arc<Mutex<Option<std::task::Waker>>>,
    }

    impl MemorySocket {
        fn give(&self, bytes: usize) {
            *self.room.lock().unwrap() += bytes;
            if let Some(waker) = self.waiting.lock().unwrap().take() {
                waker.wake();
            }
        }

        fn written(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }

        /// Writes what `bytes` holds from `*done`, as far as there is room.
        fn take(&self, cx: &mut Option<&mut Context<'_>>, bytes: &[u8], done: &mut usize) -> Poll<()> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                if let Some(cx) = cx {
                    *self.waiting.lock().unwrap() = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            let n = (*room).min(bytes.len() - *done);
            self.written.lock().unwrap().extend_from_slice(&bytes[*done..*done + n]);
            *room -= n;
            *done += n;
            Poll::Ready(())
        }
    }

    impl Sink for MemorySocket {
        fn write(&mut self, mut cx: Option<&mut Context<'_>>, queue: &mut Queue) -> Poll<io::Result<()>> {
            loop {
                if queue.progress == 0
                    && let Some((frame, done)) = &mut queue.control
                {
                    std::task::ready!(self.take(&mut cx, &frame.clone(), done));
                    if *done == frame.len() {
                        queue.control = None;
                    }
                    continue;
                }
                let Some(frame) = queue.frames.front().cloned() else { return Poll::Ready(Ok(())) };
                std::task::ready!(self.take(&mut cx, &frame, &mut queue.progress));
                if queue.progress == frame.len() {
                    queue.frames.pop_front();
                    queue.progress = 0;
                }
            }
        }

        fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn with_socket(room: usize) -> (Arc<Outbox>, MemorySocket) {
        let outbox = Arc::new(Outbox::new(8));
        let socket = MemorySocket::default();
        socket.give(room);
        outbox.attach(Box::new(socket.clone()));
        (outbox, socket)
    }

    #[tokio::test]
    async fn with_room_the_actor_writes_a_frame_at_once() {
        let (outbox, socket) = with_socket(100);
        outbox.push(Bytes::from_static(b"AAAA"), true).unwrap();
        outbox.push(Bytes::from_static(b"BBBB"), true).unwrap();
        assert_eq!(socket.written(), "AAAABBBB");
        assert!(outbox.state().queue.is_empty(), "nothing left for the connection");
        // Not allowed to write: queued for the connection's task, which writes it.
        outbox.push(Bytes::from_static(b"CCCC"), false).unwrap();
        assert_eq!(socket.written(), "AAAABBBB");
        assert_eq!(outbox.write_queued().await, Taken::Frames);
        assert_eq!(socket.written(), "AAAABBBBCCCC");
    }

    #[tokio::test]
    async fn a_full_socket_leaves_the_rest_to_the_task_in_order() {
        let (outbox, socket) = with_socket(2);
        for frame in [&b"AAAA"[..], b"BBBB", b"CCCC"] {
            outbox.push(Bytes::from_static(frame), true).unwrap();
        }
        assert_eq!(socket.written(), "AA", "the socket took two bytes");
        let task = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.write_queued().await }
        });
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "waits for room");
        socket.give(100);
        assert_eq!(task.await.unwrap(), Taken::Frames);
        assert_eq!(socket.written(), "AAAABBBBCCCC");
        // Whole again: the actor writes the next one itself.
        outbox.push(Bytes::from_static(b"DDDD"), true).unwrap();
        assert_eq!(socket.written(), "AAAABBBBCCCCDDDD");
    }

    #[tokio::test]
    async fn a_control_frame_waits_for_the_frame_begun_and_goes_before_the_rest() {
        let (outbox, socket) = with_socket(2);
        outbox.push(Bytes::from_static(b"AAAA"), true).unwrap();
        outbox.push(Bytes::from_static(b"BBBB"), true).unwrap();
        let ping = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.write_control(Bytes::from_static(b"<ping>")).await }
        });
        tokio::task::yield_now().await;
        socket.give(100);
        ping.await.unwrap().unwrap();
        assert_eq!(socket.written(), "AAAA<ping>BBBB");
    }

    #[tokio::test]
    async fn a_closing_connection_finishes_its_frame_and_drops_the_rest() {
        let (outbox, socket) = with_socket(2);
        outbox.push(Bytes::from_static(b"AAAA"), true).unwrap();
        outbox.push(Bytes::from_static(b"BBBB"), true).unwrap();
        outbox.drop_unsent();
        // Pushed after: dropped, and not a reason to close the connection as slow.
        assert_eq!(outbox.push(Bytes::from_static(b"CCCC"), true), Ok(()));
        socket.give(100);
        outbox.write_control(Bytes::from_static(b"<close>")).await.unwrap();
        assert_eq!(socket.written(), "AAAA<close>");
    }

    #[tokio::test]
    async fn a_control_frame_begun_is_never_cut_into_by_another() {
        let (outbox, socket) = with_socket(3);
        let ping = outbox.write_control(Bytes::from_static(b"<ping>"));
        // The socket took three bytes, then nothing: the write gives up.
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), ping).await.is_err());
        assert_eq!(socket.written(), "<pi");
        let close = outbox.write_control(Bytes::from_static(b"<close>")).await;
        assert_eq!(close.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        socket.give(100);
        assert_eq!(outbox.write_queued().await, Taken::Frames);
        assert_eq!(socket.written(), "<ping>");
    }
}
