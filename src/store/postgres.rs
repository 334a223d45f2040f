//! The Postgres backend: uuid ids, timestamptz, bytea, and one round trip per batch.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use uuid::Uuid;

use super::{ACQUIRE_TIMEOUT, StoreError, StoredState};
use crate::model::{self, Doc, DocId, PageCursor, Title};

/// Connections in the pool: writes from many document actors proceed in parallel.
const POOL_SIZE: u32 = 16;

/// Statements that run longer than this fail (and are retried by their caller) instead of
/// holding a connection forever when the server hangs.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);

pub(super) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse()?;
    // One connection first, on its own: its error is the database's own (refused, no such
    // database, bad password, TLS), where the pool would only say it timed out.
    PgConnection::connect_with(&options).await?.close().await?;
    let statement_timeout = format!("{}", STATEMENT_TIMEOUT.as_millis());
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _meta| {
            let statement_timeout = statement_timeout.clone();
            Box::pin(async move {
                sqlx::query(&format!("set statement_timeout = {statement_timeout}")).execute(conn).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(pool)
}

pub(super) async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query("select 1").execute(pool).await?;
    Ok(())
}

const DOC_COLUMNS: &str = "id, title, created_at, updated_at";

fn doc_from_row(row: &sqlx::postgres::PgRow) -> Result<Doc, StoreError> {
    let id: Uuid = row.try_get("id")?;
    let title: String = row.try_get("title")?;
    Ok(Doc {
        id: DocId::from(id),
        // Titles were checked on the way in; a row edited by hand still shows as it is.
        title: Title::parse(&title).unwrap_or_default(),
        created_at: row.try_get::<DateTime<Utc>, _>("created_at")?,
        updated_at: row.try_get::<DateTime<Utc>, _>("updated_at")?,
    })
}

pub(super) async fn create_doc(pool: &PgPool, title: &Title) -> Result<Doc, StoreError> {
    let now = model::now();
    let doc = Doc { id: DocId::new(), title: title.clone(), created_at: now, updated_at: now };
    sqlx::query("insert into documents (id, title, created_at, updated_at) values ($1, $2, $3, $3)")
        .bind(doc.id.as_uuid())
        .bind(doc.title.as_str())
        .bind(now)
        .execute(pool)
        .await?;
    Ok(doc)
}

pub(super) async fn get_doc(pool: &PgPool, id: DocId) -> Result<Option<Doc>, StoreError> {
    let row = sqlx::query(&format!("select {DOC_COLUMNS} from documents where id = $1"))
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(doc_from_row).transpose()
}

pub(super) async fn list_docs(
    pool: &PgPool,
    limit: u32,
    after: Option<PageCursor>,
) -> Result<Vec<Doc>, StoreError> {
    let rows = match after {
        None => {
            sqlx::query(&format!(
                "select {DOC_COLUMNS} from documents order by updated_at desc, id desc limit $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }
        Some(cursor) => {
            sqlx::query(&format!(
                "select {DOC_COLUMNS} from documents
                 where (updated_at, id) < ($1, $2)
                 order by updated_at desc, id desc limit $3"
            ))
            .bind(cursor.updated_at)
            .bind(cursor.id.as_uuid())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(doc_from_row).collect()
}

pub(super) async fn rename_doc(pool: &PgPool, id: DocId, title: &Title) -> Result<Option<Doc>, StoreError> {
    let row = sqlx::query(&format!(
        "update documents set title = $1, updated_at = $2 where id = $3 returning {DOC_COLUMNS}"
    ))
    .bind(title.as_str())
    .bind(model::now())
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(doc_from_row).transpose()
}

pub(super) async fn delete_doc(pool: &PgPool, id: DocId) -> Result<bool, StoreError> {
    let done = sqlx::query("delete from documents where id = $1").bind(id.as_uuid()).execute(pool).await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn load_state(pool: &PgPool, id: DocId) -> Result<StoredState, StoreError> {
    let id = id.as_uuid();
    let mut tx = pool.begin().await?;
    // One view of the store for all three reads: a snapshot that compacts the log between
    // them would otherwise hide rows it covers from this load.
    sqlx::query("set transaction isolation level repeatable read, read only").execute(&mut *tx).await?;
    let exists =
        sqlx::query("select 1 from documents where id = $1").bind(id).fetch_optional(&mut *tx).await?;
    if exists.is_none() {
        return Err(StoreError::NotFound);
    }
    let mut state = StoredState::default();
    let snapshot = sqlx::query(
        "select upto_seq, state from doc_snapshots where doc_id = $1 order by upto_seq desc limit 1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = snapshot {
        state.last_seq = row.try_get("upto_seq")?;
        state.snapshot = Some(row.try_get("state")?);
    }
    // Every row left, not only those after the snapshot's seq: with several writers a row
    // below it may have been invisible to the compaction, which then left it (see
    // `compact_shared`). A row a snapshot covers is deleted with it, in its transaction.
    let rows = sqlx::query("select seq, data from doc_updates where doc_id = $1 order by seq")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    for row in rows {
        state.last_seq = state.last_seq.max(row.try_get("seq")?);
        state.updates.push(row.try_get("data")?);
    }
    tx.commit().await?;
    Ok(state)
}

/// Marks a document updated, first in a write transaction: it locks the document's row, so
/// a concurrent delete waits for the transaction or makes it fail. `NotFound` if it is gone.
async fn touch(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, id: Uuid) -> Result<(), StoreError> {
    let touched = sqlx::query("update documents set updated_at = $1 where id = $2")
        .bind(model::now())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    if touched.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) async fn append_updates(
    pool: &PgPool,
    id: DocId,
    updates: &[Bytes],
    after_seq: Option<i64>,
) -> Result<i64, StoreError> {
    let id = id.as_uuid();
    let mut tx = pool.begin().await?;
    touch(&mut tx, id).await?;
    let (data, stored_seq) = match after_seq {
        Some(after_seq) => {
            let stored: Vec<(i64, Vec<u8>)> =
                sqlx::query_as("select seq, data from doc_updates where doc_id = $1 and seq > $2")
                    .bind(id)
                    .bind(after_seq)
                    .fetch_all(&mut *tx)
                    .await?;
            super::not_yet_stored(updates, &stored)
        }
        None => (updates.iter().map(|u| u.as_ref()).collect(), None),
    };
    if data.is_empty() {
        tx.commit().await?;
        return Ok(stored_seq.unwrap_or_default());
    }
    // One statement for the whole batch: the rows keep the order of the array.
    let last_seq: i64 = sqlx::query_scalar(
        "with written as (
             insert into doc_updates (doc_id, data)
             select $1, d from unnest($2::bytea[]) with ordinality as t(d, n) order by n
             returning seq
         )
         select max(seq) from written",
    )
    .bind(id)
    .bind(&data)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(last_seq.max(stored_seq.unwrap_or_default()))
}

/// Compacts a log several instances write: under an advisory lock (another instance
/// compacting the document makes this one skip), the last snapshot, every row visible now and
/// `state` merged into one snapshot, which replaces exactly the rows read. A row committed
/// later, even with a lower `seq`, stays in the log, and loads read every row.
pub(super) async fn compact_shared(pool: &PgPool, id: DocId, state: &[u8]) -> Result<(), StoreError> {
    let key = advisory_key(id);
    let id = id.as_uuid();
    let mut tx = pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("select pg_try_advisory_xact_lock($1)").bind(key).fetch_one(&mut *tx).await?;
    if !locked {
        tracing::debug!(doc_id = %id, "another instance is compacting this document");
        return Ok(());
    }
    touch(&mut tx, id).await?;
    let snapshot = sqlx::query(
        "select upto_seq, state from doc_snapshots where doc_id = $1 order by upto_seq desc limit 1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let mut upto_seq = 0i64;
    let mut parts: Vec<Vec<u8>> = Vec::new();
    if let Some(row) = snapshot {
        upto_seq = row.try_get("upto_seq")?;
        parts.push(row.try_get("state")?);
    }
    let rows = sqlx::query("select seq, data from doc_updates where doc_id = $1")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    let mut read = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        upto_seq = upto_seq.max(seq);
        read.push(seq);
        parts.push(row.try_get("data")?);
    }
    parts.push(state.to_vec());
    let merged = super::merge(&parts)?;
    replace_snapshot(&mut tx, id, upto_seq, &merged).await?;
    sqlx::query("delete from doc_updates where doc_id = $1 and seq = any($2)")
        .bind(id)
        .bind(&read)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Stores `state` as the document's snapshot up to `upto_seq` and drops the older ones.
async fn replace_snapshot(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: uuid::Uuid,
    upto_seq: i64,
    state: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into doc_snapshots (doc_id, upto_seq, state) values ($1, $2, $3)
         on conflict (doc_id, upto_seq) do update set state = excluded.state, created_at = now()",
    )
    .bind(id)
    .bind(upto_seq)
    .bind(state)
    .execute(&mut **tx)
    .await?;
    sqlx::query("delete from doc_snapshots where doc_id = $1 and upto_seq < $2")
        .bind(id)
        .bind(upto_seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The advisory lock of a document's compaction: the first 64 bits of its id.
fn advisory_key(id: DocId) -> i64 {
    let bytes = id.as_uuid().into_bytes();
    i64::from_be_bytes(bytes[..8].try_into().expect("eight bytes"))
}

pub(super) async fn write_snapshot(
    pool: &PgPool,
    id: DocId,
    upto_seq: i64,
    state: &[u8],
) -> Result<(), StoreError> {
    let id = id.as_uuid();
    let mut tx = pool.begin().await?;
    // Snapshots follow edits, so marking the document updated is true.
    touch(&mut tx, id).await?;
    replace_snapshot(&mut tx, id, upto_seq, state).await?;
    sqlx::query("delete from doc_updates where doc_id = $1 and seq <= $2")
        .bind(id)
        .bind(upto_seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
