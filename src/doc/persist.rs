//! A document's way to the store: the pending batch, the one write in flight, compaction
//! and retries. Owned by the actor and polled from its `select!`, so a slow database never
//! blocks the actor from serving its connections (no lock, no extra task).
//!
//! Writes, one at a time:
//! - append: the pending updates become log rows in one transaction (group commit). A batch
//!   starts at most `flush_interval` after its first update; updates that arrive while a
//!   write is in flight form the next batch.
//! - snapshot: the whole state replaces the log rows it covers, in one transaction. Due when
//!   the log has grown past `snapshot_updates` rows or `snapshot_bytes`, and before the
//!   document leaves memory (unload, shutdown) if it has log rows. Pending updates are
//!   folded into it (the state contains them), which also bounds memory during an outage:
//!   past `snapshot_bytes` pending, the updates are dropped from the batch and the next
//!   write is a snapshot of the state that holds them.
//!
//! A failed write puts its updates back and is retried with exponential backoff; nothing is
//! dropped until the store has it.
//!
//! Two bounds, two jobs. `snapshot_bytes` bounds the memory the batch takes (past it the
//! updates are folded into the state, which holds them anyway). `max_pending_bytes` bounds
//! what is applied but not stored, folded or not: the work that only this process holds,
//! lost if it dies before the store answers again. Past it the actor refuses new updates
//! ([`Persist::admits`]); their clients keep them and send them again when they reconnect.

use std::mem;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::registry::DocSettings;
use crate::metrics::{KindLabel, Metrics};
use crate::model::DocId;
use crate::store::{Store, StoreError};

/// Pending updates that trigger an immediate append, whatever the flush timer says.
const MAX_BATCH_UPDATES: usize = 1024;
/// Pending bytes that trigger an immediate append.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// First retry delay after a failed write; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Also how long, at most, held updates wait after the store answers again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a write carried, so a failure can put it back.
enum Job {
    Append { batch: Vec<Bytes>, bytes: usize },
    Snapshot { folded: Vec<Bytes>, folded_bytes: usize, dropped: Dropped, was_owed: bool },
}

/// Updates dropped from the batch (the state holds them, and only the owed snapshot saves
/// them): counted, not kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Dropped {
    updates: usize,
    bytes: usize,
}

/// A finished write.
pub(super) struct Outcome {
    job: Job,
    result: Result<i64, StoreError>,
}

pub(super) struct Persist {
    id: DocId,
    store: Store,
    flush_interval: Duration,
    snapshot_updates: u64,
    snapshot_bytes: u64,
    /// Other instances write this document's log too (see `Store::write_snapshot`).
    shared_log: bool,
    /// Most bytes of applied updates held unstored; past it new updates are refused.
    max_pending_bytes: u64,
    /// Applied updates not yet in the store, oldest first.
    pending: Vec<Bytes>,
    pending_bytes: usize,
    /// When the oldest pending update arrived: the batch is due `flush_interval` later.
    pending_since: Option<Instant>,
    /// Only a snapshot saves what is applied: updates were dropped from `pending` to bound
    /// memory, or the log is being folded before the document leaves memory.
    snapshot_owed: bool,
    /// What was dropped from `pending` and is not stored yet.
    dropped: Dropped,
    /// Write as soon as possible (last connection left, a flush was asked, shutdown).
    urgent: bool,
    /// Highest log `seq` the state covers; the next snapshot's `upto_seq`.
    last_seq: i64,
    /// Log rows (and their bytes) written since the last snapshot.
    log_rows: u64,
    log_bytes: u64,
    in_flight: Option<BoxFuture<'static, Outcome>>,
    /// The write in flight: its kind, when it started, and the updates and bytes it carries.
    in_flight_info: Option<(&'static str, Instant, usize, usize)>,
    failures: u32,
    retry_at: Option<Instant>,
    /// The last append failed without saying whether it committed (a connection can break
    /// during the commit): its retry skips the updates the log already holds.
    maybe_stored: bool,
    metrics: Metrics,
    /// What this document last added to the pending gauges (updates, bytes).
    reported: (i64, i64),
}

impl Persist {
    /// Bookkeeping for a document just loaded with `log_rows` rows after its snapshot.
    pub(super) fn new(
        id: DocId,
        store: Store,
        settings: &DocSettings,
        metrics: Metrics,
        last_seq: i64,
        log_rows: u64,
        log_bytes: u64,
    ) -> Self {
        Self {
            id,
            store,
            flush_interval: settings.flush_interval,
            snapshot_updates: settings.snapshot_updates,
            snapshot_bytes: settings.snapshot_bytes,
            shared_log: settings.shared_log,
            max_pending_bytes: settings.max_pending_bytes,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_since: None,
            snapshot_owed: false,
            dropped: Dropped::default(),
            urgent: false,
            last_seq,
            log_rows,
            log_bytes,
            in_flight: None,
            in_flight_info: None,
            failures: 0,
            retry_at: None,
            maybe_stored: false,
            metrics,
            reported: (0, 0),
        }
    }

    /// Applied updates (and their bytes) not in the store yet: pending, dropped from the
    /// batch into the owed snapshot, or in the write in flight.
    fn unstored(&self) -> (usize, usize) {
        let (in_flight_updates, in_flight_bytes) = self.in_flight_info.map_or((0, 0), |(_, _, n, b)| (n, b));
        (
            self.pending.len() + self.dropped.updates + in_flight_updates,
            self.pending_bytes + self.dropped.bytes + in_flight_bytes,
        )
    }

    /// May an update of `len` bytes be applied? Not when it would take what this document
    /// holds unstored past `max_pending_bytes` (the store is failing, or too slow to keep
    /// up). With nothing unstored it may, however big, or it could never be applied.
    pub(super) fn admits(&self, len: usize) -> bool {
        let (_, bytes) = self.unstored();
        bytes == 0 || (bytes + len) as u64 <= self.max_pending_bytes
    }

    /// Brings the pending gauges up to date with what this document holds unstored.
    fn report(&mut self) {
        let (updates, bytes) = self.unstored();
        let now = (updates as i64, bytes as i64);
        self.metrics.pending_updates.inc_by(now.0 - self.reported.0);
        self.metrics.pending_bytes.inc_by(now.1 - self.reported.1);
        self.reported = now;
    }

    /// Queues an applied update for the log.
    pub(super) fn push(&mut self, update: Bytes, now: Instant) {
        self.pending_bytes += update.len();
        self.pending.push(update);
        self.pending_since.get_or_insert(now);
        if self.pending_bytes as u64 >= self.snapshot_bytes {
            // The state in memory holds these updates; a snapshot will save them.
            self.dropped.updates += self.pending.len();
            self.dropped.bytes += self.pending_bytes;
            self.pending.clear();
            self.pending_bytes = 0;
            self.snapshot_owed = true;
        }
        self.report();
    }

    /// True when the store holds everything this document has applied.
    pub(super) fn is_clean(&self) -> bool {
        self.pending.is_empty() && !self.snapshot_owed && self.in_flight.is_none()
    }

    pub(super) fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Before the document leaves memory: fold the log rows after the last snapshot (and
    /// whatever is pending) into a new snapshot, so that the next load reads one snapshot
    /// instead of replaying the log.
    pub(super) fn fold_log(&mut self) {
        if self.log_rows > 0 || !self.pending.is_empty() {
            self.snapshot_owed = true;
        }
    }

    /// Write what is pending without waiting for the batch window.
    pub(super) fn hurry(&mut self) {
        self.urgent = true;
    }

    fn snapshot_due(&self) -> bool {
        self.snapshot_owed || self.log_rows >= self.snapshot_updates || self.log_bytes >= self.snapshot_bytes
    }

    /// When the next write should start; `None` while one is in flight or nothing is due.
    pub(super) fn due_at(&self) -> Option<Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        let due = if self.snapshot_due() {
            // Compaction has no deadline of its own; it goes as soon as the store is free.
            Some(self.pending_since.unwrap_or_else(Instant::now))
        } else if self.pending.is_empty() {
            None
        } else if self.urgent
            || self.pending.len() >= MAX_BATCH_UPDATES
            || self.pending_bytes >= MAX_BATCH_BYTES
        {
            self.pending_since
        } else {
            self.pending_since.map(|since| since + self.flush_interval)
        };
        match (due, self.retry_at) {
            (Some(due), Some(retry)) => Some(due.max(retry)),
            (due, _) => due,
        }
    }

    /// Starts the write that is due. `state` encodes the whole document, for a snapshot.
    pub(super) fn start(&mut self, state: impl FnOnce() -> Vec<u8>) {
        debug_assert!(self.in_flight.is_none());
        let store = self.store.clone();
        let id = self.id;
        let batch = mem::take(&mut self.pending);
        let bytes = mem::take(&mut self.pending_bytes);
        self.pending_since = None;
        self.urgent = false;
        let started = Instant::now();
        let future = if self.snapshot_due() {
            let upto_seq = self.last_seq;
            let shared = self.shared_log;
            let state = state();
            let was_owed = mem::take(&mut self.snapshot_owed);
            let dropped = mem::take(&mut self.dropped);
            let carries = (batch.len() + dropped.updates, bytes + dropped.bytes);
            self.in_flight_info = Some(("snapshot", started, carries.0, carries.1));
            async move {
                let result = store.write_snapshot(id, upto_seq, state, shared).await.map(|()| upto_seq);
                let job = Job::Snapshot { folded: batch, folded_bytes: bytes, dropped, was_owed };
                Outcome { job, result }
            }
            .boxed()
        } else if batch.is_empty() {
            return;
        } else {
            self.in_flight_info = Some(("append", started, batch.len(), bytes));
            let again = self.maybe_stored.then_some(self.last_seq);
            async move {
                let result = match again {
                    Some(after_seq) => store.append_updates_again(id, batch.clone(), after_seq).await,
                    None => store.append_updates(id, batch.clone()).await,
                };
                Outcome { job: Job::Append { batch, bytes }, result }
            }
            .boxed()
        };
        self.in_flight = Some(future);
        self.report();
    }

    /// Waits for the write in flight; never resolves when there is none.
    pub(super) async fn written(&mut self) -> Outcome {
        match self.in_flight.as_mut() {
            Some(write) => write.await,
            None => std::future::pending().await,
        }
    }

    /// Takes note of a finished write. On failure the updates go back to the front of the
    /// batch and the next attempt waits for the backoff. `NotFound` means the document was
    /// deleted: the caller stops.
    pub(super) fn finish(&mut self, outcome: Outcome, now: Instant) -> Result<(), StoreError> {
        self.in_flight = None;
        if let Some((kind, started, updates, _)) = self.in_flight_info.take() {
            let seconds = now.saturating_duration_since(started).as_secs_f64();
            self.metrics.persist_seconds.get_or_create(&KindLabel { kind }).observe(seconds);
            if kind == "append" && outcome.result.is_ok() {
                self.metrics.persist_batch_updates.observe(updates as f64);
            }
        }
        let result = self.settle(outcome, now);
        self.report();
        result
    }

    fn settle(&mut self, outcome: Outcome, now: Instant) -> Result<(), StoreError> {
        match (outcome.job, outcome.result) {
            (Job::Append { batch, bytes }, Ok(last_seq)) => {
                self.last_seq = last_seq;
                self.maybe_stored = false;
                self.log_rows += batch.len() as u64;
                self.log_bytes += bytes as u64;
                self.succeeded();
            }
            (Job::Snapshot { .. }, Ok(_)) => {
                self.log_rows = 0;
                self.log_bytes = 0;
                self.succeeded();
            }
            (_, Err(StoreError::NotFound)) => return Err(StoreError::NotFound),
            (job, Err(err)) => {
                match job {
                    Job::Append { batch, bytes } => {
                        self.maybe_stored = true;
                        self.put_back(batch, bytes, now);
                    }
                    Job::Snapshot { folded, folded_bytes, dropped, was_owed } => {
                        self.snapshot_owed |= was_owed;
                        self.dropped.updates += dropped.updates;
                        self.dropped.bytes += dropped.bytes;
                        self.put_back(folded, folded_bytes, now);
                    }
                }
                if self.failures == 0 {
                    self.metrics.documents_write_failing.inc();
                }
                self.failures += 1;
                self.metrics.storage_errors.inc();
                let backoff = MIN_BACKOFF.saturating_mul(1 << self.failures.min(16)).min(MAX_BACKOFF);
                self.retry_at = Some(now + backoff);
                tracing::warn!(doc_id = %self.id, error = %err, failures = self.failures,
                    retry_in_ms = backoff.as_millis() as u64, "write failed; will retry");
                return Err(err);
            }
        }
        Ok(())
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(doc_id = %self.id, "writes succeed again");
            self.metrics.documents_write_failing.dec();
        }
        self.failures = 0;
        self.retry_at = None;
    }

    fn put_back(&mut self, mut batch: Vec<Bytes>, bytes: usize, now: Instant) {
        if batch.is_empty() {
            return;
        }
        batch.append(&mut self.pending);
        self.pending = batch;
        self.pending_bytes += bytes;
        self.pending_since = Some(self.pending_since.map_or(now, |since| since.min(now)));
    }
}

impl Drop for Persist {
    /// A document leaving memory takes its share out of the pending gauges.
    fn drop(&mut self) {
        self.metrics.pending_updates.dec_by(self.reported.0);
        self.metrics.pending_bytes.dec_by(self.reported.1);
        if self.failures > 0 {
            self.metrics.documents_write_failing.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DocSettings {
        DocSettings {
            flush_interval: Duration::from_millis(5),
            snapshot_updates: 10,
            snapshot_bytes: 1000,
            idle_unload: Duration::from_secs(30),
            awareness_timeout: Duration::from_secs(30),
            max_doc_bytes: u64::MAX,
            shared_log: false,
            max_pending_bytes: 3000,
            versions: crate::config::Config::defaults().version_settings(),
        }
    }

    fn persist() -> Persist {
        // Never connected: these tests only drive the bookkeeping, not the writes.
        Persist::new(DocId::new(), Store::unconnected(), &settings(), Metrics::new(), 0, 0, 0)
    }

    fn update(len: usize) -> Bytes {
        Bytes::from(vec![0u8; len])
    }

    fn failed(job: Job) -> Outcome {
        let err = StoreError::Database(sqlx::Error::PoolTimedOut);
        Outcome { job, result: Err(err) }
    }

    #[tokio::test]
    async fn a_batch_is_due_one_window_after_its_first_update() {
        let mut p = persist();
        assert_eq!(p.due_at(), None);
        let t0 = Instant::now();
        p.push(update(10), t0);
        p.push(update(10), t0 + Duration::from_millis(3));
        assert_eq!(p.due_at(), Some(t0 + Duration::from_millis(5)));
        assert!(!p.is_clean());
        p.hurry();
        assert_eq!(p.due_at(), Some(t0));
    }

    #[tokio::test]
    async fn a_full_batch_is_due_at_once() {
        let mut p = persist();
        p.snapshot_bytes = u64::MAX;
        let t0 = Instant::now();
        for _ in 0..MAX_BATCH_UPDATES {
            p.push(update(1), t0);
        }
        assert_eq!(p.due_at(), Some(t0));
    }

    #[tokio::test]
    async fn too_much_pending_is_folded_into_a_snapshot() {
        let mut p = persist();
        let t0 = Instant::now();
        p.push(update(600), t0);
        assert!(!p.snapshot_due());
        p.push(update(600), t0);
        // Dropped from the batch: the state in memory holds them, and a snapshot will save it.
        assert!(p.pending.is_empty());
        assert!(p.snapshot_due());
        assert!(!p.is_clean());
        assert_eq!(p.due_at(), Some(t0));
    }

    #[tokio::test]
    async fn a_failed_append_keeps_its_updates_first_and_backs_off() {
        let mut p = persist();
        let t0 = Instant::now();
        p.push(update(1), t0);
        let batch = std::mem::take(&mut p.pending);
        let bytes = std::mem::take(&mut p.pending_bytes);
        p.pending_since = None;
        // Meanwhile another update arrived.
        p.push(update(2), t0);
        assert!(p.finish(failed(Job::Append { batch, bytes }), t0).is_err());
        assert_eq!(p.pending.iter().map(Bytes::len).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(p.pending_bytes, 3);
        let due = p.due_at().expect("a retry is due");
        assert!(due >= t0 + MIN_BACKOFF, "retried without backoff");
        // Each failure doubles the wait, up to the cap.
        for _ in 0..20 {
            let batch = std::mem::take(&mut p.pending);
            let bytes = std::mem::take(&mut p.pending_bytes);
            let _ = p.finish(failed(Job::Append { batch, bytes }), t0);
        }
        assert_eq!(p.retry_at, Some(t0 + MAX_BACKOFF));
        assert_eq!(p.pending.len(), 2);
    }

    #[tokio::test]
    async fn an_append_after_a_failed_one_skips_what_the_store_may_hold() {
        let mut p = persist();
        let t0 = Instant::now();
        p.push(update(1), t0);
        let batch = std::mem::take(&mut p.pending);
        p.pending_bytes = 0;
        assert!(!p.maybe_stored);
        let _ = p.finish(failed(Job::Append { batch, bytes: 1 }), t0);
        assert!(p.maybe_stored, "a failed commit may have landed");
        let outcome = Outcome { job: Job::Append { batch: vec![update(1)], bytes: 1 }, result: Ok(3) };
        assert!(p.finish(outcome, t0).is_ok());
        assert!(!p.maybe_stored);
    }

    #[tokio::test]
    async fn a_failed_snapshot_still_owes_a_snapshot() {
        let mut p = persist();
        let t0 = Instant::now();
        p.push(update(2000), t0);
        assert!(p.snapshot_owed);
        let job = Job::Snapshot { folded: Vec::new(), folded_bytes: 0, dropped: p.dropped, was_owed: true };
        p.dropped = Dropped::default();
        p.snapshot_owed = false;
        assert!(p.finish(failed(job), t0).is_err());
        assert!(p.snapshot_owed && p.snapshot_due() && !p.is_clean());
    }

    #[tokio::test]
    async fn the_log_is_compacted_after_enough_rows() {
        let mut p = persist();
        let t0 = Instant::now();
        let batch: Vec<Bytes> = (0..10).map(|_| update(1)).collect();
        let outcome = Outcome { job: Job::Append { batch, bytes: 10 }, result: Ok(42) };
        assert!(p.finish(outcome, t0).is_ok());
        assert_eq!(p.last_seq, 42);
        assert!(p.snapshot_due());
        let outcome = Outcome {
            job: Job::Snapshot {
                folded: Vec::new(),
                folded_bytes: 0,
                dropped: Dropped::default(),
                was_owed: false,
            },
            result: Ok(42),
        };
        assert!(p.finish(outcome, t0).is_ok());
        assert!(!p.snapshot_due());
        assert!(p.is_clean());
    }

    #[tokio::test]
    async fn folding_owes_a_snapshot_only_when_there_is_a_log() {
        let mut p = persist();
        p.fold_log();
        assert!(p.is_clean() && !p.snapshot_due(), "nothing to fold");
        let outcome = Outcome { job: Job::Append { batch: vec![update(1)], bytes: 1 }, result: Ok(7) };
        assert!(p.finish(outcome, Instant::now()).is_ok());
        assert!(p.is_clean() && !p.snapshot_due(), "one row is below the compaction threshold");
        p.fold_log();
        assert!(!p.is_clean() && p.snapshot_due() && p.due_at().is_some());
    }

    #[tokio::test]
    async fn the_pending_gauges_follow_what_is_not_stored() {
        let mut p = persist();
        let metrics = p.metrics.clone();
        let t0 = Instant::now();
        p.push(update(10), t0);
        p.push(update(5), t0);
        assert_eq!((metrics.pending_updates.get(), metrics.pending_bytes.get()), (2, 15));
        let batch = std::mem::take(&mut p.pending);
        p.pending_bytes = 0;
        p.in_flight_info = Some(("append", t0, 2, 15));
        p.report();
        assert_eq!(metrics.pending_updates.get(), 2, "in flight is not stored yet");
        let outcome = Outcome { job: Job::Append { batch, bytes: 15 }, result: Ok(2) };
        p.finish(outcome, t0).unwrap();
        assert_eq!((metrics.pending_updates.get(), metrics.pending_bytes.get()), (0, 0));
        p.push(update(3), t0);
        drop(p);
        assert_eq!(metrics.pending_updates.get(), 0, "a document leaving memory takes its share out");
    }

    #[tokio::test]
    async fn updates_folded_into_the_owed_snapshot_still_count_as_unstored() {
        let mut p = persist();
        let metrics = p.metrics.clone();
        let t0 = Instant::now();
        p.push(update(600), t0);
        p.push(update(600), t0);
        assert!(p.pending.is_empty(), "folded");
        // Dropped from the batch, not stored: the gauges say so (they said 0 before).
        assert_eq!((metrics.pending_updates.get(), metrics.pending_bytes.get()), (2, 1200));
        let job = Job::Snapshot { folded: Vec::new(), folded_bytes: 0, dropped: p.dropped, was_owed: true };
        p.dropped = Dropped::default();
        p.snapshot_owed = false;
        p.in_flight_info = Some(("snapshot", t0, 2, 1200));
        assert!(p.finish(failed(job), t0).is_err());
        assert_eq!(metrics.pending_bytes.get(), 1200, "a failed snapshot keeps them unstored");
        assert_eq!(metrics.documents_write_failing.get(), 1);
        let job = Job::Snapshot { folded: Vec::new(), folded_bytes: 0, dropped: p.dropped, was_owed: true };
        p.dropped = Dropped::default();
        p.snapshot_owed = false;
        assert!(p.finish(Outcome { job, result: Ok(0) }, t0).is_ok());
        assert_eq!((metrics.pending_updates.get(), metrics.pending_bytes.get()), (0, 0));
        assert_eq!(metrics.documents_write_failing.get(), 0, "writes succeed again");
        assert!(p.is_clean());
    }

    #[tokio::test]
    async fn past_the_pending_bound_updates_are_refused() {
        let mut p = persist();
        assert!(p.admits(10_000), "with nothing unstored any update is admitted");
        let t0 = Instant::now();
        // 1200 folded into the owed snapshot, 900 pending: 2100 of 3000.
        p.push(update(600), t0);
        p.push(update(600), t0);
        p.push(update(900), t0);
        assert!(p.admits(900));
        assert!(!p.admits(901), "past max_pending_bytes");
        // The write in flight still counts: it is not stored until it succeeds.
        p.start(|| vec![0; 10]);
        assert!(p.is_writing());
        assert!(!p.admits(901));
    }

    #[tokio::test]
    async fn a_document_leaving_memory_while_failing_is_no_longer_counted_as_failing() {
        let mut p = persist();
        let metrics = p.metrics.clone();
        let t0 = Instant::now();
        p.push(update(1), t0);
        let batch = std::mem::take(&mut p.pending);
        p.pending_bytes = 0;
        let _ = p.finish(failed(Job::Append { batch, bytes: 1 }), t0);
        assert_eq!(metrics.documents_write_failing.get(), 1);
        drop(p);
        assert_eq!(metrics.documents_write_failing.get(), 0);
    }

    #[tokio::test]
    async fn a_deleted_document_is_reported() {
        let mut p = persist();
        let outcome = Outcome {
            job: Job::Append { batch: vec![update(1)], bytes: 1 },
            result: Err(StoreError::NotFound),
        };
        assert!(matches!(p.finish(outcome, Instant::now()), Err(StoreError::NotFound)));
    }
}
