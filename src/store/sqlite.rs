//! The embedded SQLite backend: one file in WAL mode, timestamps as integer microseconds.
//!
//! SQLite has one writer at a time, and every commit waits for its fsync. With many busy
//! documents each committing its own batch, the writers queue on the file lock (SQLite's busy
//! handler sleeps between attempts) and durability lags by seconds. So the documents' log
//! appends and snapshots go through one writer task, which commits everything queued since
//! its last commit in one transaction: group commit across documents, one fsync per round.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{ACQUIRE_TIMEOUT, StoreError, StoredState};
use crate::model::{self, Doc, DocId, PageCursor, Title};

/// Connections in the pool. SQLite runs one writer at a time; a few connections let reads
/// (document list, loads) proceed beside a write.
const POOL_SIZE: u32 = 4;

/// How long a writer waits for the write lock before failing (the actor then retries).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes waiting for the writer task. Each document has at most one write in flight, so
/// this only fills with more open documents than this; their actors then wait to queue.
const WRITE_QUEUE: usize = 1024;

/// At most this many writes share one transaction, so one commit stays short.
const WRITES_PER_COMMIT: usize = 256;

/// Log rows per insert statement: SQLite binds at most 32,766 values, three per row here.
const ROWS_PER_INSERT: usize = 1000;

/// The SQLite store: a pool for reads and REST calls, and the queue of the writer task that
/// commits documents' content.
#[derive(Clone, Debug)]
pub struct Sqlite {
    pub(super) pool: SqlitePool,
    writes: mpsc::Sender<Write>,
}

/// One document's write, with where its outcome goes.
#[derive(Debug)]
struct Write {
    id: String,
    op: Op,
    done: oneshot::Sender<Result<i64, StoreError>>,
}

#[derive(Debug)]
enum Op {
    /// With the last seq known stored when an earlier attempt's outcome is unknown.
    Append(Vec<Bytes>, Option<i64>),
    Snapshot {
        upto_seq: i64,
        state: Vec<u8>,
    },
}

impl Sqlite {
    /// Opens the database file and starts the writer task (on the current runtime).
    pub(super) async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self::with_pool(connect(url).await?))
    }

    pub(super) fn with_pool(pool: SqlitePool) -> Self {
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_loop(pool.clone(), queue));
        Self { pool, writes }
    }

    /// Appends `updates` to the log; see `Store::append_updates` and `append_updates_again`.
    pub(super) async fn append_updates(
        &self,
        id: DocId,
        updates: Vec<Bytes>,
        after_seq: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.write(id, Op::Append(updates, after_seq)).await
    }

    /// Writes a snapshot and compacts the log; see `Store::write_snapshot`.
    pub(super) async fn write_snapshot(
        &self,
        id: DocId,
        upto_seq: i64,
        state: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write(id, Op::Snapshot { upto_seq, state }).await.map(drop)
    }

    async fn write(&self, id: DocId, op: Op) -> Result<i64, StoreError> {
        let (done, outcome) = oneshot::channel();
        let write = Write { id: id.to_string(), op, done };
        self.writes.send(write).await.map_err(|_| StoreError::WriterStopped)?;
        outcome.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// The writer task: takes everything queued, commits it in one transaction, answers each
/// write, repeats. Ends when every handle to the store is gone.
async fn write_loop(pool: SqlitePool, mut queue: mpsc::Receiver<Write>) {
    let mut round = Vec::with_capacity(WRITES_PER_COMMIT);
    while queue.recv_many(&mut round, WRITES_PER_COMMIT).await > 0 {
        match commit(&pool, &round).await {
            Ok(outcomes) => {
                for (write, outcome) in round.drain(..).zip(outcomes) {
                    let _ = write.done.send(outcome);
                }
            }
            // Nothing of the round was stored: every document keeps its batch and retries.
            Err(err) => {
                let err = Arc::new(err);
                for write in round.drain(..) {
                    let _ = write.done.send(Err(StoreError::Shared(Arc::clone(&err))));
                }
            }
        }
    }
}

/// Stores a round of writes in one transaction. A document deleted meanwhile gets its own
/// `NotFound` (its `touch` finds no row and writes nothing); a database error fails the round.
async fn commit(pool: &SqlitePool, round: &[Write]) -> Result<Vec<Result<i64, StoreError>>, sqlx::Error> {
    let now = model::now().timestamp_micros();
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(round.len());
    for write in round {
        let outcome = match &write.op {
            Op::Append(updates, after_seq) => append(&mut tx, &write.id, updates, *after_seq, now).await?,
            Op::Snapshot { upto_seq, state } => snapshot(&mut tx, &write.id, *upto_seq, state, now).await?,
        };
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn connect(url: &str) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a committed batch survives a power cut, not only a crash of the process.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    if let Some(dir) = options.get_filename().parent()
        && dir != Path::new("")
    {
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::Folder { path: dir.display().to_string(), source })?;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?;
    Ok(pool)
}

pub(super) async fn ping(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query("select 1").execute(pool).await?;
    Ok(())
}

const DOC_COLUMNS: &str = "id, title, created_at, updated_at";

fn doc_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Doc, StoreError> {
    let id: String = row.try_get("id")?;
    let id = Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let title: String = row.try_get("title")?;
    Ok(Doc {
        id: DocId::from(id),
        // Titles were checked on the way in; a row edited by hand still shows as it is.
        title: Title::parse(&title).unwrap_or_default(),
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

fn from_micros(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| sqlx::Error::Decode(format!("timestamp out of range: {micros}").into()).into())
}

pub(super) async fn create_doc(pool: &SqlitePool, title: &Title) -> Result<Doc, StoreError> {
    let now = model::now();
    let doc = Doc { id: DocId::new(), title: title.clone(), created_at: now, updated_at: now };
    sqlx::query(r"insert into documents (id, title, created_at, updated_at) values (?, ?, ?, ?)")
        .bind(doc.id.to_string())
        .bind(doc.title.as_str())
        .bind(now.timestamp_micros())
        .bind(now.timestamp_micros())
        .execute(pool)
        .await?;
    Ok(doc)
}

pub(super) async fn get_doc(pool: &SqlitePool, id: DocId) -> Result<Option<Doc>, StoreError> {
    let row = sqlx::query(&format!("select {DOC_COLUMNS} from documents where id = ?"))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(doc_from_row).transpose()
}

pub(super) async fn list_docs(
    pool: &SqlitePool,
    limit: u32,
    after: Option<PageCursor>,
) -> Result<Vec<Doc>, StoreError> {
    let rows = match after {
        None => {
            sqlx::query(&format!(
                "select {DOC_COLUMNS} from documents order by updated_at desc, id desc limit ?"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        Some(cursor) => {
            sqlx::query(&format!(
                "select {DOC_COLUMNS} from documents
                 where updated_at < ?1 or (updated_at = ?1 and id < ?2)
                 order by updated_at desc, id desc limit ?3"
            ))
            .bind(cursor.updated_at.timestamp_micros())
            .bind(cursor.id.to_string())
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(doc_from_row).collect()
}

pub(super) async fn rename_doc(
    pool: &SqlitePool,
    id: DocId,
    title: &Title,
) -> Result<Option<Doc>, StoreError> {
    let row = sqlx::query(&format!(
        "update documents set title = ?, updated_at = ? where id = ? returning {DOC_COLUMNS}"
    ))
    .bind(title.as_str())
    .bind(model::now().timestamp_micros())
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(doc_from_row).transpose()
}

pub(super) async fn delete_doc(pool: &SqlitePool, id: DocId) -> Result<bool, StoreError> {
    let done = sqlx::query("delete from documents where id = ?").bind(id.to_string()).execute(pool).await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn load_state(pool: &SqlitePool, id: DocId) -> Result<StoredState, StoreError> {
    let id = id.to_string();
    let mut tx = pool.begin().await?;
    let exists =
        sqlx::query("select 1 from documents where id = ?").bind(&id).fetch_optional(&mut *tx).await?;
    if exists.is_none() {
        return Err(StoreError::NotFound);
    }
    let mut state = StoredState::default();
    let snapshot = sqlx::query(
        "select upto_seq, state from doc_snapshots where doc_id = ? order by upto_seq desc limit 1",
    )
    .bind(&id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = snapshot {
        state.last_seq = row.try_get("upto_seq")?;
        state.snapshot = Some(row.try_get("state")?);
    }
    let rows = sqlx::query("select seq, data from doc_updates where doc_id = ? and seq > ? order by seq")
        .bind(&id)
        .bind(state.last_seq)
        .fetch_all(&mut *tx)
        .await?;
    for row in rows {
        state.last_seq = row.try_get("seq")?;
        state.updates.push(row.try_get("data")?);
    }
    tx.commit().await?;
    Ok(state)
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

/// Marks a document updated, as the first statement of its part of a write: false if the
/// document is gone (then nothing else of it is written).
async fn touch(tx: &mut Tx<'_>, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let touched = sqlx::query("update documents set updated_at = ? where id = ?")
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(touched.rows_affected() > 0)
}

/// Appends to the log; the outcome is the `seq` of the last row, or `NotFound`.
async fn append(
    tx: &mut Tx<'_>,
    id: &str,
    updates: &[Bytes],
    after_seq: Option<i64>,
    now: i64,
) -> Result<Result<i64, StoreError>, sqlx::Error> {
    if !touch(tx, id, now).await? {
        return Ok(Err(StoreError::NotFound));
    }
    let (updates, stored_seq) = match after_seq {
        Some(after_seq) => {
            let stored: Vec<(i64, Vec<u8>)> =
                sqlx::query_as("select seq, data from doc_updates where doc_id = ? and seq > ?")
                    .bind(id)
                    .bind(after_seq)
                    .fetch_all(&mut **tx)
                    .await?;
            super::not_yet_stored(updates, &stored)
        }
        None => (updates.iter().map(|u| u.as_ref()).collect(), None),
    };
    // One statement per chunk, not per update: under load a statement's round trip to
    // SQLite's thread is what a commit costs, and a round of many documents' batches would
    // otherwise grow with its backlog (and the backlog with it).
    let mut last_seq = stored_seq.unwrap_or_default();
    for chunk in updates.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::new("insert into doc_updates (doc_id, data, created_at) ");
        insert.push_values(chunk, |mut row, update| {
            row.push_bind(id).push_bind(*update).push_bind(now);
        });
        // Rows get rowids in the order listed: the last is the batch's last seq.
        last_seq = insert.build().execute(&mut **tx).await?.last_insert_rowid();
    }
    Ok(Ok(last_seq))
}

/// Stores the snapshot and deletes the log rows and snapshots it covers; `NotFound` if the
/// document is gone.
async fn snapshot(
    tx: &mut Tx<'_>,
    id: &str,
    upto_seq: i64,
    state: &[u8],
    now: i64,
) -> Result<Result<i64, StoreError>, sqlx::Error> {
    // Snapshots follow edits, so marking the document updated is true.
    if !touch(tx, id, now).await? {
        return Ok(Err(StoreError::NotFound));
    }
    sqlx::query(
        "insert into doc_snapshots (doc_id, upto_seq, state, created_at) values (?1, ?2, ?3, ?4)
         on conflict (doc_id, upto_seq) do update set state = ?3, created_at = ?4",
    )
    .bind(id)
    .bind(upto_seq)
    .bind(state)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("delete from doc_updates where doc_id = ? and seq <= ?")
        .bind(id)
        .bind(upto_seq)
        .execute(&mut **tx)
        .await?;
    sqlx::query("delete from doc_snapshots where doc_id = ? and upto_seq < ?")
        .bind(id)
        .bind(upto_seq)
        .execute(&mut **tx)
        .await?;
    Ok(Ok(upto_seq))
}
