use std::time::Duration;

use anyhow::{Context, Result};

/// CPU time (user + system) this process has used so far, from `getrusage(RUSAGE_SELF)`.
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// CPU time (user + system) a process has used, from fields 14 and 15 of `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name come field 3 (state) onwards, so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .context("malformed /proc stat")?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
}

/// A memory figure of a process in KiB from `/proc/<pid>/status` (`VmRSS` now, `VmHWM` its peak).
pub fn process_memory_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The resident memory of this process in KiB.
pub fn own_rss_kib() -> Option<u64> {
    process_memory_kib(std::process::id(), "VmRSS").ok()
}

/// Raises this process's open-file limit to its hard limit and returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write only the struct we hand them.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let wanted = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                return wanted.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}

/// CPU time the whole machine has spent busy so far (every core, every process), from the first line of
/// `/proc/stat`. Minus the server's and our own, it shows how much else was running during a measurement.
pub fn machine_busy_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy is everything but idle and iowait.
    let busy: u64 =
        fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(busy * 1_000_000_000 / per_second))
}

/// Samples a server process's CPU time over an interval, when a pid was given.
pub struct ServerCpu {
    pid: Option<u32>,
    start: Option<Duration>,
}

impl ServerCpu {
    /// Starts the interval now.
    pub fn start(pid: Option<u32>) -> Self {
        Self { pid, start: pid.and_then(|pid| process_cpu(pid).ok()) }
    }

    /// CPU seconds the server used since [`ServerCpu::start`], or `None` without a pid.
    pub fn seconds(&self) -> Option<f64> {
        let now = process_cpu(self.pid?).ok()?;
        Some((now - self.start?).as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process_figures() {
        let pid = std::process::id();
        assert!(process_memory_kib(pid, "VmRSS").expect("rss") > 0);
        assert!(process_cpu(pid).is_ok());
        assert!(raise_fd_limit() > 0);
        assert!(machine_busy_cpu().is_some());
    }
}
