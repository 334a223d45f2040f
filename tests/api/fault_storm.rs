//! Reconnect storm: 2,000 connections on 200 documents, all dropped at once by a restart of
//! the real binary (SIGTERM, then a new process on the same port). They come back by
//! themselves with the stock provider's backoff and resync, edits made while the server was
//! down included; the new server's memory stays bounded; nothing is refused (no limit is set
//! that could refuse them). Prints its counts and figures.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::helpers::{Backend, PATIENCE, TestDb};
use crate::kit::figures::{self, mib, ms};
use crate::kit::process::{Binary, Memory};
use crate::kit::replica::{Replica, wait_all, wait_converged};
use crate::metrics::sample;
use crate::on_both_backends;

on_both_backends!(two_thousand_connections_dropped_at_once_come_back_whole);

const DOCS: usize = 200;
const PER_DOC: usize = 10;
/// What the storm may take beyond the steady state, at its peak: transient handshakes and
/// document loads, not a copy of everything per connection.
const STORM_HEADROOM_KIB: u64 = 64 * 1024;

async fn two_thousand_connections_dropped_at_once_come_back_whole(backend: Backend) {
    let _heavy = crate::kit::one_heavy_test_at_a_time().await;
    let test = format!("reconnect storm ({backend:?})");
    let db = TestDb::new(backend).await;
    let mut server = Binary::start(&db.url, &[]);
    let mut ids = Vec::new();
    for i in 0..DOCS {
        ids.push(server.create_doc(&format!("storm {i}")).await);
    }
    let idle = server.memory();
    let replicas: Vec<(usize, Replica)> =
        (0..DOCS * PER_DOC).map(|i| (i % DOCS, Replica::spawn(server.ws_url(&ids[i % DOCS])))).collect();
    let all: Vec<&Replica> = replicas.iter().map(|(_, r)| r).collect();
    wait_all(&all, "connected and synced", PATIENCE * 3, |r| r.log(|l| l.synced > 0)).await;
    // Each document gets some text from one of its clients.
    for (_, replica) in replicas.iter().take(DOCS) {
        replica.edit();
    }
    wait_converged(&replicas).await;
    let steady = server.memory();
    let per_connection = steady.rss_kib.saturating_sub(idle.rss_kib) / (DOCS * PER_DOC) as u64;

    let dropped = Instant::now();
    assert!(server.terminate().success(), "the graceful shutdown did not save everything");
    // While it is down, one client per document edits: the resync must bring these too.
    for (_, replica) in replicas.iter().skip(DOCS).take(DOCS) {
        replica.edit();
    }
    let server = server.restart();
    let up = dropped.elapsed();
    wait_all(&all, "back and resynced", PATIENCE * 3, |r| r.log(|l| l.synced >= 2)).await;
    let resynced = dropped.elapsed();
    wait_converged(&replicas).await;
    let converged = dropped.elapsed();
    let storm = server.memory();

    let metrics = server.metrics().await;
    let tcp = sample(&metrics, "tandem_tcp_connections").unwrap_or(0.0);
    let sockets = sample(&metrics, "tandem_connections").unwrap_or(0.0);
    let refused_at_door: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("tandem_refused_connections_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|n| n as u64)
        .sum();
    let mut refused: HashMap<u16, usize> = HashMap::new();
    let mut closes: HashMap<(u16, String), usize> = HashMap::new();
    let mut unreachable = 0;
    for replica in &all {
        replica.log(|l| {
            unreachable += l.unreachable;
            for status in &l.refused {
                *refused.entry(*status).or_default() += 1;
            }
            for close in l.closes.iter().flatten().filter(|c| c.0 != 1001) {
                *closes.entry(close.clone()).or_default() += 1;
            }
        });
    }
    let connected = all.iter().filter(|r| r.log(|l| l.connected)).count();
    figures::report(
        &test,
        &format!(
            "{} connections on {DOCS} documents; server down for {}; all resynced {} and whole {} after the drop; \
             {unreachable} attempts found nothing listening, upgrades refused {refused:?}, {refused_at_door} refused \
             at the door, closes other than 1001 {closes:?}; memory: idle {}, with every connection {} ({} KiB \
             each), peak through the storm {}, after it {}",
            DOCS * PER_DOC,
            ms(up),
            ms(resynced),
            ms(converged),
            mib(idle.rss_kib),
            mib(steady.rss_kib),
            per_connection,
            mib(storm.peak_kib),
            mib(storm.rss_kib),
        ),
    );
    assert_eq!(connected, DOCS * PER_DOC, "clients connected after the storm");
    assert!(tcp >= (DOCS * PER_DOC) as f64, "the server holds {tcp} TCP connections");
    assert_eq!(sockets, (DOCS * PER_DOC) as f64, "WebSocket sessions open after the storm");
    assert!(refused.is_empty(), "upgrades refused without any limit set: {refused:?}");
    assert_eq!(refused_at_door, 0, "connections refused at the door without any limit set");
    assert!(closes.is_empty(), "sessions closed for another reason than the shutdown: {closes:?}");
    assert_bounded(steady, storm);
}

/// The new server's peak, through the storm, stays within the steady state of the old one
/// (every connection open) plus a fixed headroom.
fn assert_bounded(steady: Memory, storm: Memory) {
    let bound = steady.rss_kib + STORM_HEADROOM_KIB;
    assert!(
        storm.peak_kib <= bound,
        "peak {} through the storm, over {} (steady {} + headroom)",
        mib(storm.peak_kib),
        mib(bound),
        mib(steady.rss_kib)
    );
}
