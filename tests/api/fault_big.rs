//! Big documents: about 20 MB of text pasted in chunks of 256 to 512 KiB (each under
//! `--max-message-bytes`, the whole under `--max-doc-bytes`). While it grows, the log after
//! the latest snapshot and the snapshot itself stay bounded (read from the store after every
//! paste); a new client syncs all of it; once its clients leave it is folded into one
//! snapshot; after a restart it loads and syncs again, whole.

use std::time::Duration;

use tokio::time::Instant;
use yrs::Doc;

use crate::helpers::{Backend, PATIENCE, TestApp};
use crate::kit::figures::{self, mib, ms};
use crate::kit::replica::{Replica, Style, wait_all};
use crate::kit::stored::{Reader, Stored};
use crate::on_both_backends;

on_both_backends!(a_twenty_megabyte_document_loads_syncs_compacts_and_survives_a_restart);

const TARGET: usize = 20 << 20;
/// Paste sizes, in turn.
const PASTES: [usize; 5] = [256 << 10, 320 << 10, 384 << 10, 448 << 10, 512 << 10];
/// The log after the latest snapshot: the compaction threshold (`--snapshot-bytes`, 1 MiB by
/// default), plus what arrives while a snapshot is being written.
const LOG_BOUND: usize = 4 << 20;

async fn a_twenty_megabyte_document_loads_syncs_compacts_and_survives_a_restart(backend: Backend) {
    let _heavy = crate::kit::one_heavy_test_at_a_time().await;
    let test = format!("big document ({backend:?})");
    let app = TestApp::spawn_with(backend, |c| c.idle_unload_ms = 500).await;
    let reader = Reader::new(&app.db).await;
    let id = app.create_doc("big").await;
    let mut writer = app.client(&id).await;
    writer.synced().await;
    let (mut pasted, mut pastes, mut worst_log, mut worst_snapshot) = (0, 0, 0, 0);
    let started = Instant::now();
    while pasted < TARGET {
        let chunk = paste(pastes, PASTES[pastes % PASTES.len()]);
        writer.append(&chunk).await;
        writer.settled().await;
        pasted += chunk.len();
        pastes += 1;
        let stored = reader.stored(&id).await;
        let (log, snapshot) = sizes(&stored);
        worst_log = worst_log.max(log);
        worst_snapshot = worst_snapshot.max(snapshot);
        assert!(log <= LOG_BOUND, "after {pastes} pastes the log holds {log} bytes after the snapshot");
        assert!(
            snapshot <= bounded_state(pasted),
            "a snapshot of {snapshot} bytes for {pasted} bytes of text"
        );
        assert!(stored.snapshots <= 1, "{} snapshots kept", stored.snapshots);
    }
    let paste_time = started.elapsed();
    let expected = writer.text();
    assert_eq!(expected.len(), pasted);

    // A new client receives all of it in one sync.
    let joined = Instant::now();
    let fresh = Replica::spawn(app.ws_url(&id));
    wait_all(&[&fresh], "synced", PATIENCE * 3, |r| r.log(|l| l.synced > 0)).await;
    let sync_time = joined.elapsed();
    assert!(fresh.text() == expected, "the new client's text differs");

    // Its clients leave: it is folded into one snapshot, then leaves memory.
    drop(writer);
    let _ = fresh.stop();
    let folded = wait_folded(&app, &reader, &id).await;
    let (_, snapshot) = sizes(&folded);

    let app = app.restart().await;
    let loading = Instant::now();
    assert!(app.text(&id).await == expected, "the text after a restart differs");
    let load_time = loading.elapsed();
    let back = Replica::spawn_with(app.ws_url(&id), Doc::new(), Style::default());
    wait_all(&[&back], "synced after the restart", PATIENCE * 3, |r| r.log(|l| l.synced > 0)).await;
    assert!(back.text() == expected, "a client's text after the restart differs");
    figures::report(
        &test,
        &format!(
            "{pastes} pastes, {} of text in {}; worst log after a snapshot {}, worst snapshot {}; a new client \
             synced in {}; folded into one snapshot of {}; loaded after the restart in {}",
            mib(pasted as u64 / 1024),
            ms(paste_time),
            mib(worst_log as u64 / 1024),
            mib(worst_snapshot as u64 / 1024),
            ms(sync_time),
            mib(snapshot as u64 / 1024),
            ms(load_time),
        ),
    );
}

/// A paste of `len` bytes that tells itself apart from the others.
fn paste(n: usize, len: usize) -> String {
    let mark = format!("[paste {n}]");
    let mut text = mark.repeat(len / mark.len() + 1);
    text.truncate(len);
    text
}

/// Bytes of log after the latest snapshot, and the snapshot's size.
fn sizes(stored: &Stored) -> (usize, usize) {
    let log = stored.log.iter().map(|(_, data)| data.len()).sum();
    (log, stored.snapshot.map_or(0, |(size, _)| size))
}

/// The most a snapshot of `text` bytes of pasted text may take: the text and a little.
fn bounded_state(text: usize) -> usize {
    text + text / 20 + (64 << 10)
}

/// Waits until the document has left memory (folding its log on the way out), then reads
/// what the store holds: one snapshot and no log.
async fn wait_folded(app: &TestApp, reader: &Reader, id: &str) -> Stored {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let metrics =
            app.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
        if crate::metrics::sample(&metrics, "tandem_documents_open") == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the document never left memory");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = reader.stored(id).await;
    assert_eq!((stored.snapshots, reader.log_rows(id).await), (1, 0), "not folded into one snapshot");
    stored
}
