//! A connection's message rate: a token bucket, `rate` messages per second on average with
//! bursts of five seconds' worth. Over it, the connection is not closed but slowed down: the
//! caller stops reading the socket until [`RateLimiter::wait_until`] says it may go on, so TCP
//! holds the sender back (a closed stock client would reconnect and send it all again).

use tokio::time::{Duration, Instant};

pub(super) struct RateLimiter {
    rate: f64,
    burst: f64,
    /// May go below zero: a frame of several messages is taken whole, then paid for.
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    const BURST_SECONDS: f64 = 5.0;

    /// `per_second` messages a second; 0 means no limit.
    pub(super) fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        let burst = rate * Self::BURST_SECONDS;
        Self { rate, burst, tokens: burst, last: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
    }

    /// `None` when a message may be taken now; else when the next one may.
    pub(super) fn wait_until(&mut self, now: Instant) -> Option<Instant> {
        if self.rate == 0.0 {
            return None;
        }
        self.refill(now);
        (self.tokens < 1.0).then(|| now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    /// Counts `messages` taken.
    pub(super) fn take(&mut self, messages: usize) {
        if self.rate != 0.0 {
            self.tokens -= messages as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let mut limiter = RateLimiter::new(10);
        let start = Instant::now();
        for _ in 0..50 {
            assert_eq!(limiter.wait_until(start), None);
            limiter.take(1);
        }
        let wait = limiter.wait_until(start).expect("over the burst");
        assert_eq!(wait, start + Duration::from_millis(100));
        assert_eq!(limiter.wait_until(wait), None, "one more after a tenth of a second");
        // A frame of sixteen is taken whole, and paid for before the next one.
        limiter.take(16);
        let later = limiter.wait_until(wait).unwrap();
        assert!(later >= wait + Duration::from_millis(1500), "{:?}", later - wait);
    }

    #[test]
    fn zero_is_no_limit() {
        let mut limiter = RateLimiter::new(0);
        limiter.take(1_000_000);
        assert_eq!(limiter.wait_until(Instant::now()), None);
    }
}
