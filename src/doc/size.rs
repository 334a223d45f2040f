//! How big a document is, against `--max-doc-bytes`, without encoding it on every update.
//!
//! The size is the length of the encoded state. It is measured exactly when the document
//! loads and whenever a check comes close to the limit; in between, each applied update adds
//! its own length, which is at least what it adds to the state (an update's encoding is the
//! state's encoding of what it carries), so the estimate never lets a document grow past the
//! limit unnoticed, and an exact measure only happens near it.

/// A document's size and limit.
#[derive(Debug)]
pub(super) struct DocSize {
    limit: u64,
    /// Encoded size at the last measure, plus the updates applied since.
    estimate: u64,
    /// True while `estimate` is an exact measure (nothing applied since).
    exact: bool,
}

impl DocSize {
    /// A document that measures `size` bytes now.
    #[cfg(test)]
    pub(super) fn new(limit: u64, size: u64) -> Self {
        Self { limit, estimate: size, exact: true }
    }

    /// A document just loaded from `stored` bytes (its snapshot and log), at least as many
    /// as its encoded state.
    pub(super) fn loaded(limit: u64, stored: u64) -> Self {
        Self { limit, estimate: stored, exact: false }
    }

    /// May an update of `len` bytes be applied? `measure` encodes the state (called only
    /// when the estimate says no and is not exact).
    pub(super) fn admits(&mut self, len: usize, measure: impl FnOnce() -> u64) -> bool {
        let len = len as u64;
        if self.estimate.saturating_add(len) <= self.limit {
            return true;
        }
        if !self.exact {
            self.estimate = measure();
            self.exact = true;
        }
        self.estimate.saturating_add(len) <= self.limit
    }

    /// An update of `len` bytes was applied.
    pub(super) fn grew(&mut self, len: usize) {
        self.estimate = self.estimate.saturating_add(len as u64);
        self.exact = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_only_near_the_limit_and_refuses_past_it() {
        let mut size = DocSize::new(100, 10);
        let mut measured = 0;
        assert!(size.admits(50, || unreachable!("far from the limit")));
        size.grew(50);
        // 60 + 50 > 100 by the estimate; the exact measure says 40 (updates overlapped).
        assert!(size.admits(50, || {
            measured += 1;
            40
        }));
        size.grew(50);
        // Estimate 90; 90 + 20 > 100, measured exactly 95: refused.
        assert!(!size.admits(20, || {
            measured += 1;
            95
        }));
        // Still exact: no second measure for the next refusal.
        assert!(!size.admits(20, || unreachable!("already exact")));
        assert!(size.admits(5, || unreachable!("fits")));
        assert_eq!(measured, 2);
    }
}
