//! Crash under load: 50 clients edit 20 documents without pause; the real binary is killed
//! (SIGKILL) and started again on the same database and port; the clients reconnect by
//! themselves, resync, and every client's edits end up in every replica and in the store.
//!
//! What the kill may take is bounded by the way writes work: a document has one write in
//! flight at a time, and each write takes everything applied before it starts. So once a
//! write has committed, everything applied before the previous write's commit is stored.
//! The store dates each write (its rows' `created_at`, no later than its commit), so the test
//! checks exactly that, without a timing margin: every edit the server echoed before the
//! second-to-last committed write of its document is in the database. How far the store was
//! behind at the kill (one batch window plus a commit, on a quiet machine) is measured and
//! printed, not asserted: it is a matter of speed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use yrs::{ReadTxn, StateVector, Transact};

use crate::helpers::{Backend, PATIENCE, TestDb};
use crate::kit::figures::{self, mib, ms};
use crate::kit::process::Binary;
use crate::kit::replica::{Replica, wait_all, wait_converged};
use crate::kit::stored::{Reader, wait_stored};
use crate::on_both_backends;

on_both_backends!(a_crash_under_load_loses_nothing);

const DOCS: usize = 20;
const CLIENTS: usize = 50;
/// Each client edits this often: 1,000 edits a second in all.
const TYPE_EVERY: Duration = Duration::from_millis(50);
const LOAD: Duration = Duration::from_secs(3);
/// Slack between the test's clock readings and the database's timestamps (the same clock,
/// read by three processes).
const CLOCK_SLACK: Duration = Duration::from_millis(5);

/// What the store held after the kill, per document.
struct AtKill {
    sv: StateVector,
    /// The second-to-last write's time: everything echoed before it must be stored.
    covered_until: SystemTime,
    /// The last write's time.
    last_write: SystemTime,
}

/// The clients' edits against what the store held after the kill.
#[derive(Debug, Default)]
struct Tally {
    /// Edits made before the kill.
    made: usize,
    /// Of those, echoed by the server before the kill (so it had applied them).
    echoed: usize,
    /// Edits in the store.
    stored: usize,
    /// Echoed before their document's second-to-last write: these must be stored.
    covered: usize,
    /// Covered, yet not stored. Must be zero.
    lost: usize,
    /// Echoed but not stored: in flight at the kill (their clients send them again).
    in_flight: usize,
    /// How long before the kill the oldest echoed edit missing from the store was echoed.
    oldest_missing: Option<Duration>,
}

async fn a_crash_under_load_loses_nothing(backend: Backend) {
    let _heavy = crate::kit::one_heavy_test_at_a_time().await;
    let test = format!("crash under load ({backend:?})");
    let db = TestDb::new(backend).await;
    let mut server = Binary::start(&db.url, &[]);
    let mut ids = Vec::new();
    for i in 0..DOCS {
        ids.push(server.create_doc(&format!("crash {i}")).await);
    }
    let replicas: Vec<(usize, Replica)> =
        (0..CLIENTS).map(|i| (i % DOCS, Replica::spawn(server.ws_url(&ids[i % DOCS])))).collect();
    let all: Vec<&Replica> = replicas.iter().map(|(_, r)| r).collect();
    wait_all(&all, "synced", PATIENCE, |r| r.log(|l| l.synced > 0)).await;
    for replica in &all {
        replica.type_every(TYPE_EVERY);
    }
    tokio::time::sleep(LOAD).await;

    let memory = server.memory();
    let killed = (Instant::now(), SystemTime::now());
    server.kill();
    let reader = Reader::new(&db).await;
    let mut at_kill = HashMap::new();
    for (doc, id) in ids.iter().enumerate() {
        at_kill.insert(doc, read_at_kill(&reader, id).await);
    }
    let tally = tally(&replicas, &at_kill, killed);
    let behind = at_kill.values().map(|s| killed.1.duration_since(s.last_write).unwrap_or_default()).max();
    figures::report(&test, &describe(&tally, behind.unwrap_or_default()));
    figures::report(
        &test,
        &format!("server memory at the kill {}, peak {}", mib(memory.rss_kib), mib(memory.peak_kib)),
    );
    assert_eq!(
        tally.lost, 0,
        "edits echoed before their document's second-to-last write are not stored: {tally:?}"
    );
    assert!(tally.covered > 0, "nothing was stored during the load: {tally:?}");

    let server = server.restart();
    let restarted = Instant::now();
    // The clients come back by themselves, typing all along; then they stop.
    wait_all(&all, "resynced after the restart", PATIENCE, |r| r.log(|l| l.synced >= 2)).await;
    let resynced = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for replica in &all {
        replica.stop_typing();
    }
    let stopped = Instant::now();
    wait_converged(&replicas).await;
    let reconnects: usize = all.iter().map(|r| r.log(|l| l.sessions) - 1).sum();
    let after = format!(
        "{reconnects} reconnections, all resynced {} after the restart; once typing stopped, every replica \
         held every edit {} later",
        ms(resynced),
        ms(stopped.elapsed())
    );
    figures::report(&test, &after);
    // The restarted server holds every edit, and stores it.
    for (doc, id) in ids.iter().enumerate() {
        let group: Vec<&Replica> = replicas.iter().filter(|(d, _)| *d == doc).map(|(_, r)| r).collect();
        assert_eq!(server.text(id).await, group[0].text(), "the server's text of {id}");
        wait_stored(&reader, id, &group[0].state_vector()).await;
    }
}

async fn read_at_kill(reader: &Reader, id: &str) -> AtKill {
    let sv = reader.doc(id).await.transact().state_vector();
    let times = reader.write_times(id).await;
    assert!(times.len() >= 2, "{id}: fewer than two writes during {LOAD:?} of load");
    AtKill { sv, covered_until: times[times.len() - 2] - CLOCK_SLACK, last_write: times[times.len() - 1] }
}

/// Counts each client's edits against what the store held.
fn tally(
    replicas: &[(usize, Replica)],
    at_kill: &HashMap<usize, AtKill>,
    killed: (Instant, SystemTime),
) -> Tally {
    // An instant of the test's clock as the time of day (both read just before the kill).
    let wall = |at: Instant| killed.1 - (killed.0 - at);
    let mut tally = Tally::default();
    for (doc, replica) in replicas {
        let me = replica.client_id();
        let stored = &at_kill[doc];
        let in_store = stored.sv.get(&me);
        replica.log(|log| {
            for &(clock, _) in log.edits.iter().filter(|(_, at)| *at < killed.0) {
                tally.made += 1;
                let missing = clock > in_store;
                tally.stored += usize::from(!missing);
                let Some(echoed) = log.echoed(me, clock).filter(|at| *at < killed.0) else { continue };
                tally.echoed += 1;
                if wall(echoed) < stored.covered_until {
                    tally.covered += 1;
                    tally.lost += usize::from(missing);
                }
                if missing {
                    tally.in_flight += 1;
                    let age = killed.0 - echoed;
                    tally.oldest_missing = Some(tally.oldest_missing.map_or(age, |a| a.max(age)));
                }
            }
        });
    }
    tally.in_flight -= tally.lost;
    tally
}

fn describe(t: &Tally, behind: Duration) -> String {
    format!(
        "at the kill: {} edits made, {} echoed by the server, {} in the store; {} echoed before their \
         document's second-to-last write, of which lost {}; in flight (echoed, not stored) {}, the oldest \
         echoed {} before the kill; the store's last write began at most {} before the kill",
        t.made,
        t.echoed,
        t.stored,
        t.covered,
        t.lost,
        t.in_flight,
        t.oldest_missing.map_or("-".into(), ms),
        ms(behind),
    )
}
