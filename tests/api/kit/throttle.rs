//! A socket that reads no faster than a rate the test can change while it runs: 0 is a
//! client that never reads, 1,024 one that reads a kilobyte a second, `UNLIMITED` one that
//! reads as fast as it can (a slow client coming back).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub const UNLIMITED: u64 = u64::MAX;

/// How often a stalled reader looks again (at the rate, and for more budget).
const RECHECK: Duration = Duration::from_millis(20);

/// Bytes per second a throttled socket may read; shared with the test.
pub type Rate = Arc<AtomicU64>;

pub fn rate(bytes_per_second: u64) -> Rate {
    Arc::new(AtomicU64::new(bytes_per_second))
}

pub struct Throttled<S> {
    inner: S,
    /// Applies once engaged (after the WebSocket handshake, which reads at full speed).
    rate: Option<Rate>,
    engaged: bool,
    /// Bytes it may read now; refilled at the rate, up to one second's worth.
    budget: f64,
    refilled: Instant,
    wait: Option<Pin<Box<Sleep>>>,
}

impl<S> Throttled<S> {
    /// Reads at `rate` (none: unthrottled).
    pub fn new(inner: S, rate: Option<Rate>) -> Self {
        Self { inner, rate, engaged: false, budget: 0.0, refilled: Instant::now(), wait: None }
    }

    /// From now on, reads keep to the rate.
    pub fn engage(&mut self) {
        self.engaged = true;
        self.refilled = Instant::now();
    }

    /// What it may read now (`None`: no limit), if anything; else it waits and wakes the
    /// task later.
    fn allowance(&mut self, cx: &mut Context<'_>) -> Poll<Option<usize>> {
        let rate = match self.rate.as_ref().filter(|_| self.engaged).map(|r| r.load(Ordering::Relaxed)) {
            None | Some(UNLIMITED) => return Poll::Ready(None),
            Some(rate) => rate as f64,
        };
        let now = Instant::now();
        self.budget = (self.budget + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        if self.budget >= 1.0 {
            self.wait = None;
            return Poll::Ready(Some(self.budget as usize));
        }
        let wait = self.wait.get_or_insert_with(|| Box::pin(tokio::time::sleep(RECHECK)));
        if wait.as_mut().poll(cx).is_ready() {
            // Time has passed: look again at once (the budget, or a new rate).
            self.wait = None;
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Throttled<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let allowed = match self.allowance(cx) {
            Poll::Ready(None) => return Pin::new(&mut self.inner).poll_read(cx, buf),
            Poll::Ready(Some(allowed)) => allowed.min(buf.remaining()),
            Poll::Pending => return Poll::Pending,
        };
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(allowed));
        let read = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.advance(n);
        self.budget -= n as f64;
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Throttled<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
