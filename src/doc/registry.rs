//! Which documents are open: at most one actor per document id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::actor::DocActor;
use super::handle::{DocError, DocHandle, INBOX_CAPACITY, Peer, Restored, Subscription};
use super::history::{Capture, Edit, VersionSettings};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::DocId;
use crate::store::Store;

/// How many times a caller retries when it raced with an actor that was unloading.
const RACE_RETRIES: usize = 5;

/// What every document actor needs to know about its limits and timers.
#[derive(Clone, Debug)]
pub struct DocSettings {
    pub flush_interval: Duration,
    pub snapshot_updates: u64,
    pub snapshot_bytes: u64,
    pub idle_unload: Duration,
    pub awareness_timeout: Duration,
    /// Largest encoded state a document may grow to.
    pub max_doc_bytes: u64,
    /// Several instances write the documents' logs (a cluster).
    pub shared_log: bool,
    /// Most bytes of applied updates a document holds unstored (see `persist`).
    pub max_pending_bytes: u64,
    /// When versions are kept, and for how long.
    pub versions: VersionSettings,
}

impl From<&Config> for DocSettings {
    fn from(config: &Config) -> Self {
        Self {
            flush_interval: config.flush_interval(),
            snapshot_updates: config.snapshot_updates.max(1),
            snapshot_bytes: config.snapshot_bytes.max(1),
            idle_unload: config.idle_unload(),
            awareness_timeout: config.awareness_timeout(),
            max_doc_bytes: config.max_doc_bytes,
            shared_log: config.redis_url.is_some(),
            max_pending_bytes: config.max_pending_bytes,
            versions: config.version_settings(),
        }
    }
}

/// A document's actor, as the registry knows it.
struct Entry {
    handle: DocHandle,
    /// Cancelled once the actor's task has ended, its last writes done (or given up).
    finished: CancellationToken,
}

/// The open documents. Cheap to clone; every clone sees the same map.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    /// A std mutex: it is held only to look up or insert, never across an await.
    docs: Mutex<HashMap<DocId, Entry>>,
    store: Store,
    settings: Arc<DocSettings>,
    metrics: Metrics,
    /// The other instances, in a cluster.
    cluster: Option<Cluster>,
    /// Cancelled at shutdown: every actor saves and stops.
    cancel: CancellationToken,
    /// Every actor task, so shutdown can wait for their last writes.
    tracker: TaskTracker,
}

impl Registry {
    pub fn new(store: Store, settings: DocSettings, metrics: Metrics, cluster: Option<Cluster>) -> Self {
        Self {
            inner: Arc::new(Inner {
                docs: Mutex::new(HashMap::new()),
                store,
                settings: Arc::new(settings),
                metrics,
                cluster,
                cancel: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// The handle of the document's actor, starting (and loading) one if needed.
    pub fn open(&self, id: DocId) -> Result<DocHandle, DocError> {
        if self.inner.cancel.is_cancelled() {
            return Err(DocError::ShuttingDown);
        }
        let mut docs = self.inner.docs.lock().expect("registry lock poisoned");
        if let Some(entry) = docs.get(&id).filter(|e| e.handle.is_alive()) {
            return Ok(entry.handle.clone());
        }
        // An actor that stopped taking commands may still be writing what it held (a failed
        // or unloading one): the new one loads only after it has finished.
        let previous = docs.get(&id).map(|e| e.finished.clone());
        let entry = self.spawn(id, previous);
        let handle = entry.handle.clone();
        docs.insert(id, entry);
        Ok(handle)
    }

    fn spawn(&self, id: DocId, previous: Option<CancellationToken>) -> Entry {
        let (tx, inbox) = mpsc::channel(INBOX_CAPACITY);
        let handle = DocHandle::new(tx);
        let inner = Arc::clone(&self.inner);
        let mine = handle.clone();
        let finished = CancellationToken::new();
        let done = finished.clone();
        let span = tracing::info_span!("doc", doc_id = %id);
        let cancel = inner.cancel.child_token();
        let run = DocActor::run(
            id,
            inner.store.clone(),
            Arc::clone(&inner.settings),
            inner.metrics.clone(),
            inner.cluster.clone(),
            inbox,
            cancel,
        );
        self.inner.tracker.spawn(
            async move {
                // Cancelled on the way out, even if the actor panics.
                let _finished = done.drop_guard();
                if let Some(previous) = previous {
                    previous.cancelled().await;
                }
                run.await;
                // Forget this actor, unless a newer one has taken its place already.
                let mut docs = inner.docs.lock().expect("registry lock poisoned");
                if docs.get(&id).is_some_and(|e| e.handle.same_actor(&mine)) {
                    docs.remove(&id);
                }
            }
            .instrument(span),
        );
        Entry { handle, finished }
    }

    /// Joins a document as a new connection. Retries when it raced with an unloading actor.
    pub async fn connect(
        &self,
        id: DocId,
        queue: usize,
        peer: Peer,
    ) -> Result<(DocHandle, Subscription), DocError> {
        let mut last = DocError::Gone;
        for _ in 0..RACE_RETRIES {
            let handle = self.open(id)?;
            match handle.connect(queue, peer.clone()).await {
                Ok(subscription) => return Ok((handle, subscription)),
                Err(DocError::Gone) => last = DocError::Gone,
                Err(err) => return Err(err),
            }
        }
        Err(last)
    }

    /// Whether the document exists, answered by its actor (started, and the document loaded,
    /// if need be). Callers asking about one document at once share its one load: in a
    /// reconnect storm thousands of upgrades ask, and as many existence queries would queue on
    /// the database's few connections until some timed out (503s with nothing wrong). An
    /// open document is answered from memory, through a database outage too.
    pub async fn exists(&self, id: DocId) -> Result<bool, DocError> {
        for _ in 0..RACE_RETRIES {
            match self.open(id)?.loaded().await {
                Ok(()) => return Ok(true),
                Err(DocError::NotFound) => return Ok(false),
                Err(DocError::Gone) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(DocError::Gone)
    }

    /// Asks a document's actor (started, and the document loaded, if need be), again if it
    /// raced with one that was unloading.
    async fn ask<T, F: Future<Output = Result<T, DocError>>>(
        &self,
        id: DocId,
        ask: impl Fn(DocHandle) -> F,
    ) -> Result<T, DocError> {
        for _ in 0..RACE_RETRIES {
            match ask(self.open(id)?).await {
                Err(DocError::Gone) => continue,
                other => return other,
            }
        }
        Err(DocError::Gone)
    }

    /// The live text of a document (loading it if needed).
    pub async fn text(&self, id: DocId) -> Result<String, DocError> {
        self.ask(id, |handle| async move { handle.text().await }).await
    }

    /// The document's state for a restore: what a version of it keeps, and what the restore's
    /// edits are computed against.
    pub async fn capture(&self, id: DocId) -> Result<Capture, DocError> {
        self.ask(id, |handle| async move { handle.capture().await }).await
    }

    /// The document's state for a version kept now; the next one records who edits from here.
    pub async fn take_version(&self, id: DocId) -> Result<Capture, DocError> {
        self.ask(id, |handle| async move { handle.take_version().await }).await
    }

    /// Applies a restore's edits through the document's actor, if it still holds `expect`.
    pub async fn restore(
        &self,
        id: DocId,
        edits: &[Edit],
        expect: &yrs::StateVector,
        by: Option<&str>,
    ) -> Result<Restored, DocError> {
        self.ask(id, |handle| async move {
            handle.restore(edits.to_vec(), expect.clone(), by.map(str::to_owned)).await
        })
        .await
    }

    /// Writes everything pending for a document, if it is open.
    pub async fn flush(&self, id: DocId) -> Result<(), DocError> {
        let handle =
            self.inner.docs.lock().expect("registry lock poisoned").get(&id).map(|e| e.handle.clone());
        match handle {
            Some(handle) => match handle.flush().await {
                Err(DocError::Gone) => Ok(()),
                other => other,
            },
            None => Ok(()),
        }
    }

    /// For a deleted document: ends its connections and stops its actor without saving.
    pub async fn close(&self, id: DocId) {
        let entry = self.inner.docs.lock().expect("registry lock poisoned").remove(&id);
        if let Some(entry) = entry {
            entry.handle.close().await;
        }
    }

    /// How many documents are open.
    pub fn open_count(&self) -> usize {
        self.inner.docs.lock().expect("registry lock poisoned").len()
    }

    /// Stops every actor: each closes its connections (1001), writes what is pending and
    /// stops. Returns the documents that had not finished within `timeout`.
    pub async fn shutdown(&self, timeout: Duration) -> Vec<DocId> {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(timeout, self.inner.tracker.wait()).await.is_ok() {
            return Vec::new();
        }
        // An actor forgets itself once it has stopped: those still here have not saved.
        self.inner.docs.lock().expect("registry lock poisoned").keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;
    use sqlx::Connection;
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, ReadTxn, Text, Transact, Update};

    use super::*;
    use crate::doc::handle::Peer;
    use crate::doc::protocol::{self, ClientMessage, IncomingUpdate};
    use crate::model::Title;

    fn update(bytes: &[u8]) -> ClientMessage {
        ClientMessage::Update(IncomingUpdate {
            update: Update::decode_v1(bytes).expect("decodes"),
            raw: Bytes::copy_from_slice(bytes),
            frame: protocol::encode_update(bytes),
        })
    }

    fn edit(text: &str) -> Vec<u8> {
        let doc = Doc::new();
        doc.get_or_insert_text("content").insert(&mut doc.transact_mut(), 0, text);
        doc.transact().encode_state_as_update_v1(&Default::default())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_asking_whether_a_document_exists_share_one_load() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tandem.db").display());
        let store = Store::connect(&url).await.unwrap();
        let id = store.create_doc(&Title::default()).await.unwrap().id;
        let metrics = Metrics::new();
        let registry = Registry::new(store, DocSettings::from(&Config::defaults()), metrics.clone(), None);
        let asks = (0..50).map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.exists(id).await })
        });
        for answer in futures_util::future::join_all(asks).await {
            assert!(answer.unwrap().unwrap());
        }
        let loads = metrics.render();
        assert!(loads.contains("tandem_document_load_seconds_count 1\n"), "{loads}");
        assert!(!registry.exists(DocId::new()).await.unwrap(), "an unknown id");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_actor_loads_only_after_the_failed_one_has_saved() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tandem.db").display());
        let store = Store::connect(&url).await.unwrap();
        let id = store.create_doc(&Title::default()).await.unwrap().id;
        let settings = DocSettings::from(&Config { flush_ms: 3_600_000, ..Config::defaults() });
        let registry = Registry::new(store, settings, Metrics::new(), None);
        let (handle, sub) = registry.connect(id, 16, Peer::writer()).await.unwrap();

        // Another connection holds SQLite's write lock: the actor's writes wait for it.
        let mut locker = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("begin immediate").execute(&mut locker).await.unwrap();
        // One update, made once: each `edit` has a random client id, whose varint length varies.
        let kept = edit("kept");
        handle.client_message(sub.conn, update(&kept)).await.unwrap();
        // Applied (its echo is back), and pending: the write lock holds it.
        let mut frames = VecDeque::new();
        let echo = protocol::encode_update(&kept);
        while !frames.contains(&echo) {
            frames.clear();
            let taken = tokio::time::timeout(Duration::from_secs(10), sub.outbox.take(&mut frames));
            assert_eq!(taken.await.expect("the echo comes back"), crate::doc::Taken::Frames);
        }
        // The actor fails (as when yrs panics): it stops taking commands and saves what it holds.
        handle.fail().await;
        while !matches!(sub.outbox.take(&mut frames).await, crate::doc::Taken::Closed(_)) {
            frames.clear();
        }
        assert!(!handle.is_alive());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            sqlx::query("rollback").execute(&mut locker).await.unwrap();
        });
        // A new actor for the document sees what the failed one saved.
        assert_eq!(registry.text(id).await.unwrap(), "kept");
    }
}
