//! Persistence: document metadata, the append-only update log and snapshots.
//!
//! All SQL lives in this module, one file per backend; callers see one `Store` with one
//! named method per question. `Store` is an enum rather than a trait object because the set
//! of backends is closed (two) and the enum keeps every call static.
//!
//! The log: each applied CRDT update is one row of `doc_updates` with a growing `seq`. A
//! snapshot row holds the whole state covering every log row up to its `upto_seq`, and the
//! same transaction deletes the rows it covers. Loading = latest snapshot + later rows.

mod postgres;
mod sqlite;
mod versions;

pub use versions::{NewVersion, Retention};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::model::{Doc, DocId, PageCursor, Title};

/// How long a caller waits for a free database connection before the call fails; keeps a
/// database outage from hanging requests (they fail, `/readyz` says 503, writes retry).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The database, shared by every task (a cheap clone of a pool handle).
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(sqlite::Sqlite),
    Postgres(sqlx::PgPool),
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("document not found")]
    NotFound,
    #[error("unsupported database url {0:?}: use postgres://... or sqlite://...")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// One error of a commit that several documents' writes shared.
    #[error("database: {0}")]
    Shared(Arc<sqlx::Error>),
    #[error("the database writer has stopped")]
    WriterStopped,
    /// Stored updates that yrs could not merge into a snapshot.
    #[error("merging stored updates: {0}")]
    Merge(String),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A version's state that zstd could not compress or decompress.
    #[error("version state: {0}")]
    Compression(std::io::Error),
    #[error("could not create the database folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
}

/// Everything stored about a document's content, as read at load time.
#[derive(Debug, Default)]
pub struct StoredState {
    /// The latest snapshot (a Yjs v1 update of the whole state), if any.
    pub snapshot: Option<Vec<u8>>,
    /// Log entries after the snapshot, oldest first (each a Yjs v1 update).
    pub updates: Vec<Vec<u8>>,
    /// The highest `seq` covered by the snapshot or the log; 0 when there is none.
    pub last_seq: i64,
}

impl StoreError {
    /// True for failures that waiting can fix (the database is not up yet, or busy), as
    /// opposed to a bad URL, a migration that fails, or a folder that cannot be made.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(err) => !matches!(err, sqlx::Error::Configuration(_) | sqlx::Error::Migrate(_)),
            Self::Shared(_) | Self::WriterStopped => true,
            Self::NotFound
            | Self::UnsupportedUrl(_)
            | Self::Migrate(_)
            | Self::Folder { .. }
            | Self::Compression(_)
            | Self::Merge(_) => false,
        }
    }
}

/// The updates of a batch not among `stored` (rows of the log, seq and data), in order, and
/// the highest seq of those that are.
fn not_yet_stored<'a>(updates: &'a [Bytes], stored: &[(i64, Vec<u8>)]) -> (Vec<&'a [u8]>, Option<i64>) {
    let stored: std::collections::HashMap<&[u8], i64> =
        stored.iter().map(|(seq, data)| (data.as_slice(), *seq)).collect();
    let mut highest = None;
    let mut rest = Vec::with_capacity(updates.len());
    for update in updates {
        match stored.get(update.as_ref()) {
            Some(&seq) => highest = highest.max(Some(seq)),
            None => rest.push(update.as_ref()),
        }
    }
    (rest, highest)
}

/// One update holding every part: applied to a fresh document, which sets aside what it
/// already holds (the parts overlap: the state holds rows, the snapshot holds rows).
pub(super) fn merge(parts: &[Vec<u8>]) -> Result<Vec<u8>, StoreError> {
    use yrs::updates::decoder::Decode;
    use yrs::{ReadTxn, Transact};
    let doc = yrs::Doc::new();
    {
        let mut txn = doc.transact_mut();
        for part in parts {
            let update = yrs::Update::decode_v1(part).map_err(|err| StoreError::Merge(err.to_string()))?;
            txn.apply_update(update).map_err(|err| StoreError::Merge(err.to_string()))?;
        }
    }
    Ok(doc.transact().encode_state_as_update_v1(&yrs::StateVector::default()))
}

impl Store {
    /// Connects to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres(postgres::connect(url).await?)
        } else if url.starts_with("sqlite:") {
            Self::Sqlite(sqlite::Sqlite::open(url).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(db) => sqlx::migrate!("./migrations/sqlite").run(&db.pool).await?,
            Self::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// The name of the backend, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Ok while the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::ping(&db.pool).await,
            Self::Postgres(pool) => postgres::ping(pool).await,
        }
    }

    pub async fn create_doc(&self, title: &Title) -> Result<Doc, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::create_doc(&db.pool, title).await,
            Self::Postgres(pool) => postgres::create_doc(pool, title).await,
        }
    }

    pub async fn get_doc(&self, id: DocId) -> Result<Option<Doc>, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::get_doc(&db.pool, id).await,
            Self::Postgres(pool) => postgres::get_doc(pool, id).await,
        }
    }

    /// Up to `limit` documents, newest `updated_at` first, strictly after `after`.
    pub async fn list_docs(&self, limit: u32, after: Option<PageCursor>) -> Result<Vec<Doc>, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::list_docs(&db.pool, limit, after).await,
            Self::Postgres(pool) => postgres::list_docs(pool, limit, after).await,
        }
    }

    pub async fn rename_doc(&self, id: DocId, title: &Title) -> Result<Option<Doc>, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::rename_doc(&db.pool, id, title).await,
            Self::Postgres(pool) => postgres::rename_doc(pool, id, title).await,
        }
    }

    /// Deletes the document with its log and snapshots; false if there was none.
    pub async fn delete_doc(&self, id: DocId) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::delete_doc(&db.pool, id).await,
            Self::Postgres(pool) => postgres::delete_doc(pool, id).await,
        }
    }

    /// The stored content of a document; `NotFound` if the document does not exist.
    pub async fn load_state(&self, id: DocId) -> Result<StoredState, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::load_state(&db.pool, id).await,
            Self::Postgres(pool) => postgres::load_state(pool, id).await,
        }
    }

    /// Appends `updates` to the log in one transaction and marks the document updated.
    /// Returns the `seq` of the last row written. `NotFound` if the document is gone.
    /// On SQLite the write joins other documents' writes in one commit (see `sqlite`).
    pub async fn append_updates(&self, id: DocId, updates: Vec<Bytes>) -> Result<i64, StoreError> {
        self.append(id, updates, None).await
    }

    /// Appends `updates` again after an attempt that failed without saying whether it
    /// committed (a connection that broke during the commit): the updates already in the log
    /// after `after_seq` (the last seq this writer knew stored), byte for byte, are not
    /// written twice. (Skipping a byte-equal update is safe in any case: applying the same
    /// CRDT update twice changes nothing.) Returns the highest seq of the batch's rows.
    pub async fn append_updates_again(
        &self,
        id: DocId,
        updates: Vec<Bytes>,
        after_seq: i64,
    ) -> Result<i64, StoreError> {
        self.append(id, updates, Some(after_seq)).await
    }

    async fn append(
        &self,
        id: DocId,
        updates: Vec<Bytes>,
        after_seq: Option<i64>,
    ) -> Result<i64, StoreError> {
        debug_assert!(!updates.is_empty());
        match self {
            Self::Sqlite(db) => db.append_updates(id, updates, after_seq).await,
            Self::Postgres(pool) => postgres::append_updates(pool, id, &updates, after_seq).await,
        }
    }

    /// Stores `state` as the snapshot covering every log row up to `upto_seq`, deletes those
    /// rows and older snapshots, and marks the document updated, in one transaction.
    /// `NotFound` if the document is gone.
    ///
    /// With a log that several instances write (`shared`, Postgres only), one instance's
    /// state may lack rows others wrote, and rows may become visible out of `seq` order;
    /// then only one instance compacts a document at a time (an advisory lock; the others
    /// skip), the snapshot is what the database holds (the last snapshot and the rows read,
    /// merged with `state`), and it deletes exactly the rows it read.
    pub async fn write_snapshot(
        &self,
        id: DocId,
        upto_seq: i64,
        state: Vec<u8>,
        shared: bool,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(db) => db.write_snapshot(id, upto_seq, state).await,
            Self::Postgres(pool) if shared => postgres::compact_shared(pool, id, &state).await,
            Self::Postgres(pool) => postgres::write_snapshot(pool, id, upto_seq, &state).await,
        }
    }

    /// A SQLite store that never connects, for tests of bookkeeping around the store.
    #[cfg(test)]
    pub(crate) fn unconnected() -> Self {
        let pool = sqlx::SqlitePool::connect_lazy("sqlite::memory:").expect("lazy pool");
        Self::Sqlite(sqlite::Sqlite::with_pool(pool))
    }
}
