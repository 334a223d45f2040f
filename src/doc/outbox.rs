//! A connection's outbox: the frames the actor has for it, and the reason when the actor
//! ends it. Shared by the actor (which pushes and never waits) and the connection's task
//! (which waits, then takes everything queued at once and writes it in one go).
//!
//! Why not a tokio channel: an idle connection's channel holds a block of 32 slots (about
//! 1 KiB) for life, a second channel is needed for the reason, and the reader takes one frame
//! at a time. This queue costs a few dozen bytes while empty and hands over a whole burst.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::Poll;

use bytes::Bytes;
use futures_util::task::AtomicWaker;

use super::handle::Close;

/// A queue with room for `capacity` frames. A std mutex: it is held only to push or swap.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    waker: AtomicWaker,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    /// Set when the actor ends the connection; frames still queued are not sent.
    closed: Option<Close>,
}

/// The actor could not queue a frame: the connection is too slow or already ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// What the connection takes from its outbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Frames were moved into the caller's buffer.
    Frames,
    /// The actor ended the connection, for this reason.
    Closed(Close),
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self { state: Mutex::new(State::default()), waker: AtomicWaker::new(), capacity: capacity.max(2) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // No code panics while holding the lock; if one did, the queue is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame (actor side). Wakes the connection if it was waiting.
    pub fn push(&self, frame: Bytes) -> Result<(), Full> {
        let was_empty = {
            let mut state = self.state();
            if state.closed.is_some() || state.frames.len() >= self.capacity {
                return Err(Full);
            }
            state.frames.push_back(frame);
            state.frames.len() == 1
        };
        if was_empty {
            self.waker.wake();
        }
        Ok(())
    }

    /// Ends the connection (actor side); the first reason given wins.
    pub fn close(&self, reason: Close) {
        self.state().closed.get_or_insert(reason);
        self.waker.wake();
    }

    /// Waits until there are frames or a close (connection side), then moves every queued
    /// frame into `into` (which must be empty) or reports the close.
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
        if state.frames.is_empty() {
            return None;
        }
        // Swap buffers: both keep their capacity, and the lock is held for a swap only.
        std::mem::swap(&mut state.frames, into);
        Some(Taken::Frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn frames_arrive_in_order_and_in_one_batch() {
        let outbox = Outbox::new(8);
        for i in 0..3u8 {
            outbox.push(Bytes::from(vec![i])).unwrap();
        }
        let mut batch = VecDeque::new();
        assert_eq!(outbox.take(&mut batch).await, Taken::Frames);
        assert_eq!(batch, [vec![0u8], vec![1], vec![2]].map(Bytes::from));
    }

    #[tokio::test]
    async fn a_full_outbox_refuses_and_a_close_wins_over_frames() {
        let outbox = Outbox::new(2);
        outbox.push(Bytes::new()).unwrap();
        outbox.push(Bytes::new()).unwrap();
        assert_eq!(outbox.push(Bytes::new()), Err(Full));
        outbox.close(Close::SLOW);
        outbox.close(Close::SHUTDOWN);
        let mut batch = VecDeque::new();
        assert_eq!(outbox.take(&mut batch).await, Taken::Closed(Close::SLOW));
        assert_eq!(outbox.push(Bytes::new()), Err(Full));
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
        outbox.push(Bytes::from_static(b"x")).unwrap();
        assert_eq!(waiter.await.unwrap(), 1);
    }
}
