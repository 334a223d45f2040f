//! Versions on SQLite: ids as text, timestamps as integer microseconds.
//!
//! These writes go to the pool, not through the log's writer task: they are rare (one a
//! minute per document at most), and the busy timeout covers the moment the writer holds
//! the file.

use std::time::Duration;

use sqlx::{Row as _, SqlitePool};
use uuid::Uuid;

use super::{Aged, NewVersion, Row, merged_into};
use crate::model::{DocId, Version, VersionCursor, VersionId};
use crate::store::StoreError;

const COLUMNS: &str = "id, doc_id, created_at, label, reason, editors";

/// Ids bound in one `delete ... in (...)`, well under SQLite's limit on bound values.
const IDS_PER_DELETE: usize = 500;

fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)).into())
}

fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(micros: i64) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| sqlx::Error::Decode(format!("timestamp out of range: {micros}").into()).into())
}

fn row(row: &sqlx::sqlite::SqliteRow) -> Result<Row, StoreError> {
    Ok(Row {
        id: VersionId::from(uuid(row.try_get("id")?)?),
        doc_id: DocId::from(uuid(row.try_get("doc_id")?)?),
        created_at: time(row.try_get("created_at")?)?,
        label: row.try_get("label")?,
        reason: row.try_get("reason")?,
        editors: row.try_get("editors")?,
    })
}

fn version(sqlite: &sqlx::sqlite::SqliteRow) -> Result<Version, StoreError> {
    row(sqlite)?.into_version()
}

/// A foreign key that names no document: the document was deleted.
fn not_found_if_gone(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => StoreError::Database(err),
    }
}

pub(super) async fn insert<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    id: VersionId,
    new: &NewVersion,
    compressed: &[u8],
) -> Result<Version, StoreError> {
    let inserted = sqlx::query(&format!(
        "insert into doc_versions (id, doc_id, created_at, label, reason, editors, state, state_bytes)
         values (?, ?, ?, ?, ?, ?, ?, ?) returning {COLUMNS}"
    ))
    .bind(id.to_string())
    .bind(new.doc_id.to_string())
    .bind(micros(new.created_at))
    .bind(new.label.as_ref().map(|l| l.as_str()))
    .bind(new.reason.as_str())
    .bind(new.editors_json())
    .bind(compressed)
    .bind(new.state.len() as i64)
    .fetch_one(db)
    .await
    .map_err(not_found_if_gone)?;
    version(&inserted)
}

/// One instance writes a SQLite file, and each document's automatic versions come from its
/// one actor, one at a time: the check and the write need no lock beyond the transaction.
pub(super) async fn keep_auto(
    pool: &SqlitePool,
    new: &NewVersion,
    within: Duration,
) -> Result<Version, StoreError> {
    let mut tx = pool.begin().await?;
    let since = new.created_at - chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
    let recent = sqlx::query(&format!(
        "select {COLUMNS}, state, state_bytes from doc_versions
         where doc_id = ? and reason = 'auto' and created_at > ?
         order by created_at desc limit 1"
    ))
    .bind(new.doc_id.to_string())
    .bind(micros(since))
    .fetch_optional(&mut *tx)
    .await?;
    let kept = match recent {
        None => insert(&mut *tx, VersionId::new(), new, &new.compressed()?).await?,
        Some(recent) => {
            let found = row(&recent)?.into_version()?;
            let stored: Vec<u8> = recent.try_get("state")?;
            let merged = merged_into(&found, &stored, recent.try_get("state_bytes")?, new)?;
            replace(&mut *tx, new.doc_id, found.id, &merged, &merged.compressed()?)
                .await?
                .ok_or(StoreError::NotFound)?
        }
    };
    tx.commit().await?;
    Ok(kept)
}

async fn replace<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    doc: DocId,
    id: VersionId,
    new: &NewVersion,
    compressed: &[u8],
) -> Result<Option<Version>, StoreError> {
    let updated = sqlx::query(&format!(
        "update doc_versions set state = ?, state_bytes = ?, editors = ?
         where doc_id = ? and id = ? returning {COLUMNS}"
    ))
    .bind(compressed)
    .bind(new.state.len() as i64)
    .bind(new.editors_json())
    .bind(doc.to_string())
    .bind(id.to_string())
    .fetch_optional(db)
    .await?;
    updated.as_ref().map(version).transpose()
}

pub(super) async fn replace_state(
    pool: &SqlitePool,
    doc: DocId,
    id: VersionId,
    new: &NewVersion,
    compressed: &[u8],
) -> Result<bool, StoreError> {
    Ok(replace(pool, doc, id, new, compressed).await?.is_some())
}

pub(super) async fn list(
    pool: &SqlitePool,
    doc: DocId,
    limit: u32,
    after: Option<VersionCursor>,
) -> Result<Vec<Version>, StoreError> {
    let rows = match after {
        None => {
            sqlx::query(&format!(
                "select {COLUMNS} from doc_versions where doc_id = ?
                 order by created_at desc, id desc limit ?"
            ))
            .bind(doc.to_string())
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        Some(cursor) => {
            sqlx::query(&format!(
                "select {COLUMNS} from doc_versions
                 where doc_id = ?1 and (created_at < ?2 or (created_at = ?2 and id < ?3))
                 order by created_at desc, id desc limit ?4"
            ))
            .bind(doc.to_string())
            .bind(micros(cursor.created_at))
            .bind(cursor.id.to_string())
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(version).collect()
}

pub(super) async fn get(pool: &SqlitePool, doc: DocId, id: VersionId) -> Result<Option<Version>, StoreError> {
    let found = sqlx::query(&format!("select {COLUMNS} from doc_versions where doc_id = ? and id = ?"))
        .bind(doc.to_string())
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?;
    found.as_ref().map(version).transpose()
}

pub(super) async fn state(
    pool: &SqlitePool,
    doc: DocId,
    id: VersionId,
) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
    let found = sqlx::query("select state, state_bytes from doc_versions where doc_id = ? and id = ?")
        .bind(doc.to_string())
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?;
    found.map(|row| Ok((row.try_get("state")?, row.try_get("state_bytes")?))).transpose()
}

pub(super) async fn delete(pool: &SqlitePool, doc: DocId, ids: &[VersionId]) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for chunk in ids.chunks(IDS_PER_DELETE) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("delete from doc_versions where doc_id = ? and id in ({marks})");
        let mut query = sqlx::query(&sql).bind(doc.to_string());
        for id in chunk {
            query = query.bind(id.to_string());
        }
        deleted += query.execute(pool).await?.rows_affected();
    }
    Ok(deleted)
}

pub(super) async fn aged(pool: &SqlitePool, doc: DocId) -> Result<Vec<Aged>, StoreError> {
    let rows = sqlx::query(
        "select id, created_at, label is not null as labelled from doc_versions
         where doc_id = ? order by created_at desc, id desc",
    )
    .bind(doc.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Aged {
                id: VersionId::from(uuid(row.try_get("id")?)?),
                created_at: time(row.try_get("created_at")?)?,
                labelled: row.try_get("labelled")?,
            })
        })
        .collect()
}

pub(super) async fn docs_with_versions(pool: &SqlitePool) -> Result<Vec<DocId>, StoreError> {
    let ids: Vec<String> =
        sqlx::query_scalar("select distinct doc_id from doc_versions").fetch_all(pool).await?;
    ids.iter().map(|id| uuid(id).map(DocId::from)).collect()
}
