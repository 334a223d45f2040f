//! Which documents are open: at most one actor per document id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::actor::DocActor;
use super::handle::{DocError, DocHandle, INBOX_CAPACITY, Peer, Subscription};
use crate::config::Config;
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
        }
    }
}

/// The open documents. Cheap to clone; every clone sees the same map.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    /// A std mutex: it is held only to look up or insert, never across an await.
    docs: Mutex<HashMap<DocId, DocHandle>>,
    store: Store,
    settings: Arc<DocSettings>,
    /// Cancelled at shutdown: every actor saves and stops.
    cancel: CancellationToken,
    /// Every actor task, so shutdown can wait for their last writes.
    tracker: TaskTracker,
}

impl Registry {
    pub fn new(store: Store, settings: DocSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                docs: Mutex::new(HashMap::new()),
                store,
                settings: Arc::new(settings),
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
        if let Some(handle) = docs.get(&id).filter(|h| h.is_alive()) {
            return Ok(handle.clone());
        }
        let handle = self.spawn(id);
        docs.insert(id, handle.clone());
        Ok(handle)
    }

    fn spawn(&self, id: DocId) -> DocHandle {
        let (tx, inbox) = mpsc::channel(INBOX_CAPACITY);
        let handle = DocHandle::new(tx);
        let inner = Arc::clone(&self.inner);
        let mine = handle.clone();
        let span = tracing::info_span!("doc", doc_id = %id);
        let cancel = inner.cancel.child_token();
        let run = DocActor::run(id, inner.store.clone(), Arc::clone(&inner.settings), inbox, cancel);
        self.inner.tracker.spawn(
            async move {
                run.await;
                // Forget this actor, unless a newer one has taken its place already.
                let mut docs = inner.docs.lock().expect("registry lock poisoned");
                if docs.get(&id).is_some_and(|h| h.same_actor(&mine)) {
                    docs.remove(&id);
                }
            }
            .instrument(span),
        );
        handle
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

    /// True while the document has a running actor (it is in memory, so it exists).
    pub fn is_open(&self, id: DocId) -> bool {
        self.inner.docs.lock().expect("registry lock poisoned").get(&id).is_some_and(DocHandle::is_alive)
    }

    /// The live text of a document (loading it if needed).
    pub async fn text(&self, id: DocId) -> Result<String, DocError> {
        for _ in 0..RACE_RETRIES {
            match self.open(id)?.text().await {
                Err(DocError::Gone) => continue,
                other => return other,
            }
        }
        Err(DocError::Gone)
    }

    /// Writes everything pending for a document, if it is open.
    pub async fn flush(&self, id: DocId) -> Result<(), DocError> {
        let handle = self.inner.docs.lock().expect("registry lock poisoned").get(&id).cloned();
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
        let handle = self.inner.docs.lock().expect("registry lock poisoned").remove(&id);
        if let Some(handle) = handle {
            handle.close().await;
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
