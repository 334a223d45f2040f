//! Slow and stuck consumers: while four clients type fast and a fifth pastes 64 KiB at a time
//! (into a scratch text, then deletes it, so that the traffic is heavy and the document stays
//! small), one client never reads its socket and one reads a kilobyte a second. The server's
//! memory stays bounded (their queues are, and past them they are closed with 1013); when the
//! two come back (read at full speed) they find the 1013, reconnect by themselves and resync
//! fully. The fast clients' delivery latency is measured with and without the slow ones and
//! printed, not asserted (speed belongs to the benchmarks).

use std::time::Duration;

use tokio::time::Instant;
use yrs::Doc;

use crate::helpers::{Backend, PATIENCE, TestDb};
use crate::kit::figures::{self, mib, ms, percentile};
use crate::kit::process::Binary;
use crate::kit::replica::{Replica, Style, wait_all, wait_converged};
use crate::kit::throttle::{self, UNLIMITED};

const FAST: usize = 4;
const TYPE_EVERY: Duration = Duration::from_millis(5);
const PASTE: usize = 64 * 1024;
const PASTE_EVERY: Duration = Duration::from_millis(10);
/// Frames queued for one connection before it counts as too slow (the default is 512; a
/// small queue makes the bound on memory tight enough to tell from the traffic).
const QUEUE: usize = 64;
const PHASE: Duration = Duration::from_secs(3);
/// What the slow phase may add to the server's memory: the two slow queues (`QUEUE` frames
/// each, at most a paste apiece), twice over, and allocator slack. Buffering what the slow
/// ones cannot take (6 MB a second each) would pass it within the phase.
const MEMORY_HEADROOM_KIB: u64 = 2 * 2 * (QUEUE * PASTE) as u64 / 1024 + 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_stuck_consumers_are_dropped_and_resync_while_the_others_carry_on() {
    let _heavy = crate::kit::one_heavy_test_at_a_time().await;
    let test = "slow and stuck consumers";
    let db = TestDb::new(Backend::Sqlite).await;
    let queue = QUEUE.to_string();
    let server = Binary::start(&db.url, &[("TANDEM_CLIENT_QUEUE", &queue)]);
    let id = server.create_doc("firehose").await;
    let fast: Vec<Replica> = (0..FAST)
        .map(|_| Replica::spawn_with(server.ws_url(&id), Doc::new(), Style { chars: 32, ..Style::default() }))
        .collect();
    let paster =
        Replica::spawn_with(server.ws_url(&id), Doc::new(), Style { churn: Some(PASTE), ..Style::default() });
    let everyone: Vec<&Replica> = fast.iter().chain([&paster]).collect();
    wait_all(&everyone, "synced", PATIENCE, |r| r.log(|l| l.synced > 0)).await;
    for replica in &fast {
        replica.type_every(TYPE_EVERY);
    }
    paster.type_every(PASTE_EVERY);

    // Without slow consumers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alone = Instant::now();
    tokio::time::sleep(PHASE).await;
    let mut without = latencies(&fast, alone, Instant::now());
    let before = server.memory();

    // With one that never reads and one that reads a kilobyte a second.
    let stuck_rate = throttle::rate(0);
    let slow_rate = throttle::rate(1024);
    let stuck =
        Replica::spawn_reading(server.ws_url(&id), Doc::new(), Style::default(), Some(stuck_rate.clone()));
    let slow =
        Replica::spawn_reading(server.ws_url(&id), Doc::new(), Style::default(), Some(slow_rate.clone()));
    let joined = Instant::now();
    let dropped = wait_dropped(&server, 2).await;
    let drop_time = joined.elapsed();
    tokio::time::sleep(PHASE.saturating_sub(drop_time)).await;
    let mut with = latencies(&fast, joined, Instant::now());
    let during = server.memory();

    // They come back: read at full speed, find the close, reconnect, resync.
    stuck_rate.store(UNLIMITED, std::sync::atomic::Ordering::Relaxed);
    slow_rate.store(UNLIMITED, std::sync::atomic::Ordering::Relaxed);
    let back = Instant::now();
    let returning = [&stuck, &slow];
    // (A while: each first reads what was queued for it, thousands of pastes.)
    wait_all(&returning, "closed with 1013 and resynced", PATIENCE * 3, |r| {
        r.log(|l| l.closed_with(1013) > 0 && l.in_sync)
    })
    .await;
    let resynced = back.elapsed();
    for replica in everyone.iter().chain(&returning) {
        replica.stop_typing();
    }
    let group: Vec<(usize, Replica)> =
        fast.into_iter().chain([paster, stuck, slow]).map(|r| (0, r)).collect();
    wait_converged(&group).await;
    let reasons: Vec<String> = group[FAST + 1..]
        .iter()
        .map(|(_, r)| r.log(|l| format!("{:?}", l.closes.iter().flatten().next())))
        .collect();
    figures::report(
        test,
        &format!(
            "fast clients' delivery latency p50 {} p99 {} ({} samples) alone, p50 {} p99 {} ({} samples) with \
             the slow ones; slow ones dropped {} after joining ({dropped} drops), back and resynced {} after \
             reading again; closes {reasons:?}; server memory {} before, peak {} with them (bound +{})",
            ms(percentile(&mut without, 50.0)),
            ms(percentile(&mut without, 99.0)),
            without.len(),
            ms(percentile(&mut with, 50.0)),
            ms(percentile(&mut with, 99.0)),
            with.len(),
            ms(drop_time),
            ms(resynced),
            mib(before.rss_kib),
            mib(during.peak_kib),
            mib(MEMORY_HEADROOM_KIB),
        ),
    );
    assert!(
        during.peak_kib <= before.rss_kib + MEMORY_HEADROOM_KIB,
        "memory grew from {} to a peak of {} with two slow consumers",
        mib(before.rss_kib),
        mib(during.peak_kib)
    );
}

/// Waits until the server has dropped `n` slow consumers; how many it dropped.
async fn wait_dropped(server: &Binary, n: u64) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let metrics = server.metrics().await;
        let drops =
            crate::metrics::sample(&metrics, "tandem_slow_consumer_drops_total").unwrap_or(0.0) as u64;
        if drops >= n {
            return drops;
        }
        assert!(Instant::now() < deadline, "the slow consumers were never dropped ({drops} drops)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long each fast client's edits made in [from, to) took to reach each other fast
/// client.
fn latencies(fast: &[Replica], from: Instant, to: Instant) -> Vec<Duration> {
    let mut samples = Vec::new();
    for sender in fast {
        let me = sender.client_id();
        let edits: Vec<(u32, Instant)> =
            sender.log(|l| l.edits.iter().copied().filter(|(_, at)| *at >= from && *at < to).collect());
        for receiver in fast.iter().filter(|r| r.client_id() != me) {
            let arrivals: Vec<(u32, Instant)> =
                receiver.log(|l| l.arrivals.iter().filter(|a| a.0 == me).map(|a| (a.1, a.2)).collect());
            // Both in clock order: walk them together.
            let mut next = arrivals.iter().peekable();
            for (clock, made) in &edits {
                while next.peek().is_some_and(|(reached, _)| reached < clock) {
                    next.next();
                }
                if let Some((_, at)) = next.peek() {
                    samples.push(at.saturating_duration_since(*made));
                }
            }
        }
    }
    samples
}
