//! Figures the fault tests print (and docs/RELIABILITY.md reports): percentiles, memory,
//! and one line per figure that is easy to find in the test output.

use std::time::Duration;

/// Prints one figure of a fault test, prefixed so that `grep FIGURE` finds them all.
pub fn report(test: &str, line: &str) {
    crate::helpers::shout(&format!("FIGURE {test}: {line}"));
}

/// The `p`-th percentile (0-100) of `samples`, by nearest rank; zero when there are none.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Mebibytes from kibibytes, for printing.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
