//! The document actor: the one task that owns an open document.
//!
//! It loads the document, then serves its inbox until the document is idle (no
//! connections, nothing to write) for `idle_unload`, is deleted, or the server shuts down.
//! The loop and the lifecycle live here; what it delegates has rooms of its own: applying
//! updates (`apply`), awareness and who owns it (`presence`), the connections and how frames
//! reach them (`fanout`), and the way to the store (`persist`). What the other instances of a
//! cluster say is taken in by `peers`; versions are kept and restored by `versions`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use yrs::sync::Awareness;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

use super::apply::{self, Panicked};
use super::fanout::Fanout;
use super::handle::{Close, ConnId, DocError, DocMsg, Peer};
use super::history::History;
use super::outbox::Outbox;
use super::persist::Persist;
use super::presence::{self, Heard, Presence};
use super::protocol::{self, ClientMessage, IncomingAwareness, IncomingUpdate};
use super::registry::DocSettings;
use super::remote::Remote;
use super::size::DocSize;
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::model::DocId;
use crate::store::{Store, StoreError};

mod peers;
mod versions;
use peers::next_remote;

/// The root `Y.Text` the REST API reads: the editor's text.
const TEXT_NAME: &str = "content";

/// Commands taken from the inbox at once, at most.
const MAX_BURST: usize = 256;

/// Why the run loop ended.
enum Exit {
    Idle,
    /// Deleted here (answer when done) or found deleted in the store.
    Deleted(oneshot::Sender<()>),
    /// Another instance deleted it.
    DeletedElsewhere,
    Shutdown,
    Failed,
}

pub(super) struct DocActor {
    /// The document and the awareness states of everyone on it.
    awareness: Awareness,
    /// The connections, and how frames reach them.
    fanout: Fanout,
    /// Which connection owns each awareness client id.
    presence: Presence,
    /// The document's size, against its limit.
    size: DocSize,
    persist: Persist,
    settings: Arc<DocSettings>,
    metrics: Metrics,
    inbox: mpsc::Receiver<DocMsg>,
    /// Answered once everything pending at the time of asking is stored.
    flush_waiters: Vec<oneshot::Sender<Result<(), DocError>>>,
    /// Last message or departure; the idle timer runs from here.
    last_activity: Instant,
    /// The awareness clock counts from here (monotonic milliseconds).
    started: std::time::Instant,
    /// Commands taken from the inbox in one go (kept to reuse its allocation).
    burst: Vec<DocMsg>,
    /// The other instances that have the document open (in a cluster).
    remote: Option<Remote>,
    /// Changes since the last version, and when the next is due.
    history: History,
}

impl DocActor {
    /// Loads the document and runs it. Answers every queued command with an error if the
    /// load fails. Returns when the actor has stopped for good.
    pub(super) async fn run(
        id: DocId,
        store: Store,
        settings: Arc<DocSettings>,
        metrics: Metrics,
        cluster: Option<Cluster>,
        mut inbox: mpsc::Receiver<DocMsg>,
        cancel: CancellationToken,
    ) {
        // In a cluster: subscribe first, then load, so that nothing falls in between.
        let remote = match cluster {
            None => None,
            Some(cluster) => match cluster.join(id).await {
                Ok(link) => Some(Remote::new(id, store.clone(), link, settings.awareness_timeout)),
                Err(err) => {
                    tracing::error!(error = %err, "could not join the document's channel");
                    refuse_all(&mut inbox, &DocError::Load(err.to_string())).await;
                    return;
                }
            },
        };
        let loading = Instant::now();
        let loaded = tokio::select! {
            loaded = load(id, &store) => loaded,
            () = cancel.cancelled() => Err(DocError::ShuttingDown),
        };
        if loaded.is_ok() {
            metrics.document_load_seconds.observe(loading.elapsed().as_secs_f64());
        }
        let (doc, persist, size, history) = match loaded {
            Ok(Loaded { doc, last_seq, log_rows, log_bytes, stored_bytes }) => {
                let size = DocSize::loaded(settings.max_doc_bytes, stored_bytes);
                let history = History::new(id, store.clone(), settings.versions);
                let persist =
                    Persist::new(id, store, &settings, metrics.clone(), last_seq, log_rows, log_bytes);
                (doc, persist, size, history)
            }
            Err(err) => {
                if !matches!(err, DocError::NotFound | DocError::ShuttingDown) {
                    tracing::error!(error = %err, "could not load the document");
                }
                refuse_all(&mut inbox, &err).await;
                return;
            }
        };
        let started = std::time::Instant::now();
        let clock = move || started.elapsed().as_millis() as u64;
        let mut actor = DocActor {
            awareness: Awareness::with_clock(doc, clock),
            fanout: Fanout::default(),
            presence: Presence::default(),
            size,
            persist,
            settings,
            metrics: metrics.clone(),
            inbox,
            flush_waiters: Vec::new(),
            last_activity: Instant::now(),
            started,
            burst: Vec::new(),
            remote,
            history,
        };
        metrics.documents_open.inc();
        let exit = actor.serve(&cancel).await;
        actor.stop(exit).await;
        metrics.documents_open.dec();
    }

    async fn serve(&mut self, cancel: &CancellationToken) -> Exit {
        let sweep_every =
            (self.settings.awareness_timeout / 3).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let write_due = self.persist.due_at();
            let version_due = self.history.due_at();
            let idle = self.fanout.is_empty() && self.persist.is_clean();
            let idle_at = self.last_activity + self.settings.idle_unload;
            tokio::select! {
                msg = self.inbox.recv() => {
                    let Some(msg) = msg else { return Exit::Idle };
                    self.last_activity = Instant::now();
                    match self.handle_burst(msg) {
                        Ok(None) => {}
                        Ok(Some(exit)) => return exit,
                        Err(Panicked) => return Exit::Failed,
                    }
                }
                outcome = self.persist.written(), if self.persist.is_writing() => {
                    if let Some(exit) = self.written(outcome) {
                        return exit;
                    }
                }
                () = sleep_until(write_due.unwrap_or_else(Instant::now)), if write_due.is_some() => {
                    self.start_write();
                }
                step = next_remote(&mut self.remote) => {
                    if let Some(exit) = self.on_remote(step) {
                        return exit;
                    }
                }
                () = sleep_until(version_due.unwrap_or_else(Instant::now)), if version_due.is_some() => {
                    self.keep_version();
                }
                _ = sweep.tick() => self.sweep_awareness(),
                () = sleep_until(idle_at), if idle => return Exit::Idle,
                () = cancel.cancelled() => return Exit::Shutdown,
            }
        }
    }

    /// Ends the actor: tells every connection why, saves what must be saved, and answers
    /// whatever is still queued.
    async fn stop(mut self, exit: Exit) {
        self.inbox.close();
        // The names of who edited, for the last version, before the connections go.
        let conns = self.fanout.conns();
        self.editors_leaving(&conns);
        // Deleted here: the other instances close their sockets too.
        let deleted_here = matches!(exit, Exit::Deleted(_));
        match exit {
            Exit::Idle => {
                tracing::debug!("unloading idle document");
                self.fold_log().await;
                self.keep_last_version().await;
            }
            Exit::Shutdown => {
                self.kick_all(Close::SHUTDOWN);
                self.persist.fold_log();
                self.save_all().await;
                self.keep_last_version().await;
            }
            Exit::Failed => {
                self.kick_all(Close::FAILED);
                self.save_all().await;
            }
            Exit::Deleted(respond_to) => {
                self.kick_all(Close::DELETED);
                let _ = respond_to.send(());
            }
            Exit::DeletedElsewhere => self.kick_all(Close::DELETED),
        }
        if let Some(remote) = self.remote.take() {
            remote.leave(deleted_here).await;
        }
        refuse_all(&mut self.inbox, &DocError::Gone).await;
        for waiter in self.flush_waiters.drain(..) {
            let _ = waiter.send(Err(DocError::Gone));
        }
    }

    /// Writes until the store has everything (retrying with backoff), or the document is
    /// found deleted. The server bounds how long it waits for this at shutdown.
    async fn save_all(&mut self) {
        self.persist.hurry();
        while !self.persist.is_clean() {
            if !self.persist.is_writing() {
                if let Some(due) = self.persist.due_at() {
                    sleep_until(due).await;
                }
                self.start_write();
            }
            let outcome = self.persist.written().await;
            if let Err(StoreError::NotFound) = self.persist.finish(outcome, Instant::now()) {
                return;
            }
        }
        self.answer_flush_waiters();
    }

    /// Folds the log into one snapshot before an idle document leaves memory, so that its
    /// next load reads one snapshot rather than the log. One attempt: the log is whole
    /// without it. (An actor that loads the document meanwhile reads the store before or
    /// after this commit, both whole.)
    async fn fold_log(&mut self) {
        self.persist.fold_log();
        if self.persist.is_clean() {
            return;
        }
        self.start_write();
        if self.persist.is_writing() {
            let outcome = self.persist.written().await;
            let _ = self.persist.finish(outcome, Instant::now());
        }
    }

    /// The command just received and whatever else is queued behind it (up to
    /// [`MAX_BURST`]), in order. Consecutive updates are applied together: one transaction,
    /// one broadcast frame, one log entry; under load that is what keeps the per-update cost
    /// low, and with one update waiting nothing changes.
    fn handle_burst(&mut self, first: DocMsg) -> Result<Option<Exit>, Panicked> {
        let mut burst = std::mem::take(&mut self.burst);
        burst.push(first);
        while burst.len() < MAX_BURST {
            match self.inbox.try_recv() {
                Ok(msg) => burst.push(msg),
                Err(_) => break,
            }
        }
        let mut updates = Vec::new();
        let mut outcome = Ok(None);
        for msg in burst.drain(..) {
            match msg {
                DocMsg::Client { conn, msg: ClientMessage::Update(update) } => {
                    // A connection the actor already dropped may still have messages in flight.
                    if self.fanout.contains(conn) {
                        updates.push((conn, update));
                    }
                }
                other => {
                    self.apply_updates(std::mem::take(&mut updates))?;
                    outcome = self.handle(other);
                    if !matches!(outcome, Ok(None)) {
                        // Stopping: what is left is answered (or dropped) by `stop`.
                        break;
                    }
                }
            }
        }
        if matches!(outcome, Ok(None)) {
            self.apply_updates(updates)?;
        }
        burst.clear();
        self.burst = burst;
        outcome
    }

    /// One command. `Err(Panicked)` when the document can no longer be trusted in memory.
    fn handle(&mut self, msg: DocMsg) -> Result<Option<Exit>, Panicked> {
        match msg {
            DocMsg::Connect { conn, outbox, peer, respond_to } => {
                self.connect(conn, outbox, peer);
                let _ = respond_to.send(Ok(()));
            }
            DocMsg::Client { conn, msg } => {
                // A connection the actor already dropped may still have messages in flight.
                if self.fanout.contains(conn) {
                    self.client_message(conn, msg)?;
                }
            }
            DocMsg::Disconnect { conn } => {
                self.remove(&[conn], None);
            }
            DocMsg::Text { respond_to } => {
                let text = self.awareness.doc().get_or_insert_text(TEXT_NAME);
                let _ = respond_to.send(text.get_string(&self.awareness.doc().transact()));
            }
            DocMsg::Loaded { respond_to } => {
                let _ = respond_to.send(Ok(()));
            }
            DocMsg::Flush { respond_to } => {
                if self.persist.is_clean() {
                    let _ = respond_to.send(Ok(()));
                } else {
                    self.persist.hurry();
                    self.flush_waiters.push(respond_to);
                }
            }
            DocMsg::Capture { respond_to } => self.capture(false, respond_to),
            DocMsg::TakeVersion { respond_to } => self.capture(true, respond_to),
            DocMsg::Restore { edits, expect, by, respond_to } => {
                self.restore(&edits, &expect, by.as_deref(), respond_to)?;
            }
            DocMsg::Close { respond_to } => return Ok(Some(Exit::Deleted(respond_to))),
            #[cfg(test)]
            DocMsg::Fail => return Err(Panicked),
        }
        Ok(None)
    }

    fn connect(&mut self, conn: ConnId, outbox: Arc<Outbox>, peer: Peer) {
        // The outbox is new and holds at least two frames: these pushes cannot fail.
        let sv = self.awareness.doc().transact().state_vector();
        let _ = outbox.push(protocol::encode_step1(&sv), true);
        if let Some(states) = presence::all_states(&self.awareness) {
            let _ = outbox.push(states, true);
        }
        self.fanout.add(conn, outbox, peer);
        tracing::debug!(connections = self.fanout.len(), "connected");
    }

    fn client_message(&mut self, conn: ConnId, msg: ClientMessage) -> Result<(), Panicked> {
        match msg {
            ClientMessage::SyncStep1(sv) => {
                tracing::trace!("answering step 1");
                let update = self.awareness.doc().transact().encode_state_as_update_v1(&sv);
                self.send_to(conn, protocol::encode_step2(update));
            }
            ClientMessage::Update(update) => self.apply_updates(vec![(conn, update)])?,
            ClientMessage::Awareness(update) => self.apply_awareness(conn, update),
            ClientMessage::QueryAwareness => {
                if let Some(states) = presence::all_states(&self.awareness) {
                    self.send_to(conn, states);
                }
            }
        }
        Ok(())
    }

    /// Applies updates from connections that may write: logs and broadcasts what came out,
    /// and closes the connections whose update did not apply.
    fn apply_updates(&mut self, updates: Vec<(ConnId, IncomingUpdate)>) -> Result<(), Panicked> {
        let updates: Vec<_> =
            updates.into_iter().filter(|(conn, update)| self.admits(*conn, update)).collect();
        if updates.is_empty() {
            return Ok(());
        }
        let count = updates.len() as u64;
        let writers: Vec<ConnId> = updates.iter().map(|(conn, _)| *conn).collect();
        let applied = apply::apply(self.awareness.doc(), updates).inspect_err(|_| {
            tracing::error!("applying updates panicked; reloading the document");
        })?;
        let not_applied = applied.refused.len() + applied.skipped.len();
        self.metrics.updates_applied.inc_by(count - not_applied as u64 - applied.held_back);
        if applied.held_back > 0 {
            self.metrics
                .refused_writes
                .get_or_create(&crate::metrics::ReasonLabel { reason: "overlaps_pending" })
                .inc_by(applied.held_back);
        }
        let now = Instant::now();
        for conn in writers {
            if !applied.refused.contains(&conn) && !applied.skipped.contains(&conn) {
                self.history.edited_by(conn, now);
            }
        }
        for update in applied.log {
            self.persist.push(update, now);
        }
        for frame in applied.broadcast {
            if let Some(remote) = &mut self.remote {
                remote.publish_update(frame.clone());
            }
            self.broadcast(frame);
        }
        if !applied.refused.is_empty() {
            self.remove(&applied.refused, Some(Close::BAD_UPDATE));
        }
        self.ask_for_step2(applied.skipped);
        Ok(())
    }

    /// Asks connections whose update skipped clocks of its client for a step 2: a server's
    /// step 1, which the client answers with everything the document lacks of it (what it
    /// typed offline, and the update held back).
    fn ask_for_step2(&mut self, mut conns: Vec<ConnId>) {
        if conns.is_empty() {
            return;
        }
        let mut seen = std::collections::HashSet::new();
        conns.retain(|conn| seen.insert(*conn));
        self.metrics.refused_write("skips_clocks");
        let step1 = protocol::encode_step1(&self.awareness.doc().transact().state_vector());
        for conn in conns {
            self.send_to(conn, step1.clone());
        }
    }

    /// May this update be applied? The actor itself refuses writes from read-only
    /// connections, whatever path their messages took, updates past what it may hold
    /// unstored (closing their connection with 1013), and updates that would take the
    /// document past its size limit (closing it with 1009).
    fn admits(&mut self, conn: ConnId, update: &IncomingUpdate) -> bool {
        if !self.fanout.contains(conn) {
            return false;
        }
        if !self.fanout.can_write(conn) {
            self.refuse_write(conn);
            return false;
        }
        if !self.persist.admits(update.raw.len()) {
            // Not applied, so not broadcast: the client keeps it and resends it on reconnect.
            self.metrics.refused_write("storage_unavailable");
            tracing::warn!(
                ?conn,
                bytes = update.raw.len(),
                limit = self.settings.max_pending_bytes,
                "refused an update: the store has not taken what this document holds"
            );
            self.remove(&[conn], Some(Close::STORAGE_UNAVAILABLE));
            return false;
        }
        let doc = self.awareness.doc();
        let measure = || doc.transact().encode_state_as_update_v1(&StateVector::default()).len() as u64;
        if !self.size.admits(update.raw.len(), measure) {
            self.metrics.refused_write("doc_too_big");
            tracing::warn!(
                ?conn,
                bytes = update.raw.len(),
                limit = self.settings.max_doc_bytes,
                "refused an update that would take the document past its size limit"
            );
            self.remove(&[conn], Some(Close::DOC_TOO_BIG));
            return false;
        }
        self.size.grew(update.raw.len());
        true
    }

    /// A write from a connection that may not write: never applied, stored or broadcast.
    fn refuse_write(&mut self, conn: ConnId) {
        self.metrics.refused_write("read_only");
        if self.fanout.refuse_write(conn) {
            self.remove(&[conn], Some(Close::SLOW));
        }
    }

    fn apply_awareness(&mut self, conn: ConnId, incoming: IncomingAwareness) {
        let fanout = &self.fanout;
        let heard = self
            .presence
            .apply(&mut self.awareness, conn, incoming, |owner| fanout.same_principal(conn, owner));
        match heard {
            Heard::Nothing => {}
            Heard::Changed(frame) => {
                if let Some(remote) = &mut self.remote {
                    remote.publish_awareness(frame.clone());
                }
                self.broadcast(frame);
            }
            // Every state it announced goes with it, and the others hear of the removal only.
            Heard::TooMany => self.remove(&[conn], Some(Close::TOO_MANY_AWARENESS)),
        }
    }

    /// Removes awareness states not renewed within the timeout.
    fn sweep_awareness(&mut self) {
        let now = self.started.elapsed().as_millis() as u64;
        let timeout = self.settings.awareness_timeout.as_millis() as u64;
        if let Some(frame) = self.presence.sweep(&mut self.awareness, now, timeout) {
            self.broadcast(frame);
        }
    }

    /// Sends one frame to one connection; drops the connection if its queue is full.
    fn send_to(&mut self, conn: ConnId, frame: Bytes) {
        if self.fanout.send_to(conn, frame) {
            self.metrics.slow_consumer_drops.inc();
            self.remove(&[conn], Some(Close::SLOW));
        }
    }

    /// Sends the same bytes to every connection. Connections whose queue is full are
    /// dropped; their departure is broadcast in turn.
    fn broadcast(&mut self, frame: Bytes) {
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            let full = self.fanout.broadcast(&frame);
            if !full.is_empty() {
                self.metrics.slow_consumer_drops.inc_by(full.len() as u64);
                next = self.drop_subscribers(&full, Some(Close::SLOW));
            }
        }
    }

    /// Removes connections (telling them why, if `close` is set) and broadcasts the removal
    /// of the awareness states they announced.
    fn remove(&mut self, conns: &[ConnId], close: Option<Close>) {
        if let Some(frame) = self.drop_subscribers(conns, close) {
            self.broadcast(frame);
        }
    }

    fn drop_subscribers(&mut self, conns: &[ConnId], close: Option<Close>) -> Option<Bytes> {
        // Their names, for the next version, while their token and awareness are known.
        self.editors_leaving(conns);
        self.fanout.remove(conns, close);
        if self.fanout.is_empty() {
            // The last one left: save now rather than at the end of the batch window.
            self.persist.hurry();
        }
        let removal = self.presence.forget(&mut self.awareness, conns);
        if let (Some(remote), Some(frame)) = (&mut self.remote, &removal) {
            remote.publish_awareness(frame.clone());
        }
        tracing::debug!(
            connections = self.fanout.len(),
            awareness_removed = removal.is_some(),
            "disconnected"
        );
        removal
    }

    fn kick_all(&mut self, close: Close) {
        self.fanout.close_all(close);
    }

    fn start_write(&mut self) {
        let doc = self.awareness.doc();
        self.persist.start(|| doc.transact().encode_state_as_update_v1(&StateVector::default()));
    }

    /// After a write: answers flush waiters; stops the actor if the document was deleted.
    fn written(&mut self, outcome: super::persist::Outcome) -> Option<Exit> {
        match self.persist.finish(outcome, Instant::now()) {
            Ok(()) => self.answer_flush_waiters(),
            Err(StoreError::NotFound) => {
                tracing::info!("document deleted from the store; closing it");
                let (respond_to, _) = oneshot::channel();
                return Some(Exit::Deleted(respond_to));
            }
            Err(err) => {
                for waiter in self.flush_waiters.drain(..) {
                    let _ = waiter.send(Err(DocError::Store(err.to_string())));
                }
            }
        }
        None
    }

    fn answer_flush_waiters(&mut self) {
        if self.persist.is_clean() {
            for waiter in self.flush_waiters.drain(..) {
                let _ = waiter.send(Ok(()));
            }
        }
    }
}

/// A document read from the store.
struct Loaded {
    doc: Doc,
    /// The highest log `seq` it holds.
    last_seq: i64,
    /// The log after the snapshot, for compaction.
    log_rows: u64,
    log_bytes: u64,
    /// Snapshot and log together, at least the size of the encoded state.
    stored_bytes: u64,
}

/// Reads the stored state into a fresh document: the latest snapshot, then the log after
/// it, in one transaction.
async fn load(id: DocId, store: &Store) -> Result<Loaded, DocError> {
    let stored = store.load_state(id).await.map_err(|err| match err {
        StoreError::NotFound => DocError::NotFound,
        err => DocError::Load(err.to_string()),
    })?;
    let doc = Doc::new();
    let log_rows = stored.updates.len() as u64;
    let log_bytes: u64 = stored.updates.iter().map(|u| u.len() as u64).sum();
    let stored_bytes = log_bytes + stored.snapshot.as_ref().map_or(0, |s| s.len() as u64);
    {
        let mut txn = doc.transact_mut();
        for (i, data) in stored.snapshot.iter().chain(&stored.updates).enumerate() {
            let applied = Update::decode_v1(data).map_err(|e| e.to_string()).and_then(|u| {
                if super::untrusted::admit(&txn, &u) != super::untrusted::Admit::Apply {
                    return Err("it skips clocks or overlaps an update waiting for its dependencies".into());
                }
                txn.apply_update(u).map_err(|e| e.to_string())
            });
            if let Err(error) = applied {
                // Only checked updates are stored; skip a damaged row rather than lose the rest.
                tracing::error!(entry = i, %error, "skipping a stored update that does not apply");
            }
        }
    }
    tracing::debug!(last_seq = stored.last_seq, log_rows, "loaded");
    Ok(Loaded { doc, last_seq: stored.last_seq, log_rows, log_bytes, stored_bytes })
}

/// Answers every command still queued in a closed inbox with `err`.
async fn refuse_all(inbox: &mut mpsc::Receiver<DocMsg>, err: &DocError) {
    inbox.close();
    while let Some(msg) = inbox.recv().await {
        match msg {
            DocMsg::Connect { respond_to, .. } => {
                let _ = respond_to.send(Err(err.clone()));
            }
            DocMsg::Flush { respond_to } | DocMsg::Loaded { respond_to } => {
                let _ = respond_to.send(Err(err.clone()));
            }
            // Dropping the answer tells the asker the actor is gone.
            DocMsg::Capture { .. } | DocMsg::TakeVersion { .. } | DocMsg::Restore { .. } => {}
            DocMsg::Close { respond_to } => {
                let _ = respond_to.send(());
            }
            DocMsg::Client { .. } | DocMsg::Disconnect { .. } | DocMsg::Text { .. } => {}
            #[cfg(test)]
            DocMsg::Fail => {}
        }
    }
}
