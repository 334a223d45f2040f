//! Versions on Postgres.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

use super::{Aged, NewVersion, Row, merged_into};
use crate::model::{DocId, Version, VersionCursor, VersionId};
use crate::store::StoreError;

const COLUMNS: &str = "id, doc_id, created_at, label, reason, editors";

/// The advisory lock that makes one instance at a time keep a document's automatic
/// version: the two-key form, whose keys never meet compaction's one-key locks.
const VERSION_LOCK_CLASS: i32 = 0x7665_7273; // "vers"

fn row(row: &sqlx::postgres::PgRow) -> Result<Row, StoreError> {
    Ok(Row {
        id: VersionId::from(row.try_get::<Uuid, _>("id")?),
        doc_id: DocId::from(row.try_get::<Uuid, _>("doc_id")?),
        created_at: row.try_get("created_at")?,
        label: row.try_get("label")?,
        reason: row.try_get("reason")?,
        editors: row.try_get("editors")?,
    })
}

fn version(pg: &sqlx::postgres::PgRow) -> Result<Version, StoreError> {
    row(pg)?.into_version()
}

/// A foreign key that names no document: the document was deleted.
fn not_found_if_gone(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => StoreError::Database(err),
    }
}

pub(super) async fn insert<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: VersionId,
    new: &NewVersion,
    compressed: &[u8],
) -> Result<Version, StoreError> {
    let inserted = sqlx::query(&format!(
        "insert into doc_versions (id, doc_id, created_at, label, reason, editors, state, state_bytes)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"
    ))
    .bind(id.as_uuid())
    .bind(new.doc_id.as_uuid())
    .bind(new.created_at)
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

pub(super) async fn keep_auto(
    pool: &PgPool,
    new: &NewVersion,
    within: Duration,
) -> Result<Version, StoreError> {
    let doc = new.doc_id.as_uuid();
    let mut tx = pool.begin().await?;
    let key = i32::from_be_bytes(doc.as_bytes()[..4].try_into().expect("four bytes"));
    sqlx::query("select pg_advisory_xact_lock($1, $2)")
        .bind(VERSION_LOCK_CLASS)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    let since = new.created_at - chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
    let recent = sqlx::query(&format!(
        "select {COLUMNS}, state, state_bytes from doc_versions
         where doc_id = $1 and reason = 'auto' and created_at > $2
         order by created_at desc limit 1"
    ))
    .bind(doc)
    .bind(since)
    .fetch_optional(&mut *tx)
    .await?;
    let kept = match recent {
        None => {
            let compressed = new.compressed()?;
            insert(&mut *tx, VersionId::new(), new, &compressed).await?
        }
        Some(recent) => {
            let found = row(&recent)?.into_version()?;
            let stored: Vec<u8> = recent.try_get("state")?;
            let merged = merged_into(&found, &stored, recent.try_get("state_bytes")?, new)?;
            replace(&mut *tx, doc, found.id, &merged, &merged.compressed()?)
                .await?
                .ok_or(StoreError::NotFound)?
        }
    };
    tx.commit().await?;
    Ok(kept)
}

async fn replace<'e>(
    db: impl sqlx::PgExecutor<'e>,
    doc: Uuid,
    id: VersionId,
    new: &NewVersion,
    compressed: &[u8],
) -> Result<Option<Version>, StoreError> {
    let updated = sqlx::query(&format!(
        "update doc_versions set state = $3, state_bytes = $4, editors = $5
         where doc_id = $1 and id = $2 returning {COLUMNS}"
    ))
    .bind(doc)
    .bind(id.as_uuid())
    .bind(compressed)
    .bind(new.state.len() as i64)
    .bind(new.editors_json())
    .fetch_optional(db)
    .await?;
    updated.as_ref().map(version).transpose()
}

pub(super) async fn replace_state(
    pool: &PgPool,
    doc: DocId,
    id: VersionId,
    new: &NewVersion,
    compressed: &[u8],
) -> Result<bool, StoreError> {
    Ok(replace(pool, doc.as_uuid(), id, new, compressed).await?.is_some())
}

pub(super) async fn list(
    pool: &PgPool,
    doc: DocId,
    limit: u32,
    after: Option<VersionCursor>,
) -> Result<Vec<Version>, StoreError> {
    let rows = match after {
        None => {
            sqlx::query(&format!(
                "select {COLUMNS} from doc_versions where doc_id = $1
                 order by created_at desc, id desc limit $2"
            ))
            .bind(doc.as_uuid())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }
        Some(cursor) => {
            sqlx::query(&format!(
                "select {COLUMNS} from doc_versions
                 where doc_id = $1 and (created_at < $2 or (created_at = $2 and id < $3))
                 order by created_at desc, id desc limit $4"
            ))
            .bind(doc.as_uuid())
            .bind(cursor.created_at)
            .bind(cursor.id.as_uuid())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(version).collect()
}

pub(super) async fn get(pool: &PgPool, doc: DocId, id: VersionId) -> Result<Option<Version>, StoreError> {
    let found = sqlx::query(&format!("select {COLUMNS} from doc_versions where doc_id = $1 and id = $2"))
        .bind(doc.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    found.as_ref().map(version).transpose()
}

pub(super) async fn state(
    pool: &PgPool,
    doc: DocId,
    id: VersionId,
) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
    let found = sqlx::query("select state, state_bytes from doc_versions where doc_id = $1 and id = $2")
        .bind(doc.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    found.map(|row| Ok((row.try_get("state")?, row.try_get("state_bytes")?))).transpose()
}

pub(super) async fn delete(pool: &PgPool, doc: DocId, ids: &[VersionId]) -> Result<u64, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(VersionId::as_uuid).collect();
    let deleted = sqlx::query("delete from doc_versions where doc_id = $1 and id = any($2)")
        .bind(doc.as_uuid())
        .bind(&ids)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected())
}

pub(super) async fn aged(pool: &PgPool, doc: DocId) -> Result<Vec<Aged>, StoreError> {
    let rows = sqlx::query(
        "select id, created_at, label is not null as labelled from doc_versions
         where doc_id = $1 order by created_at desc, id desc",
    )
    .bind(doc.as_uuid())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Aged {
                id: VersionId::from(row.try_get::<Uuid, _>("id")?),
                created_at: row.try_get::<DateTime<Utc>, _>("created_at")?,
                labelled: row.try_get("labelled")?,
            })
        })
        .collect()
}

pub(super) async fn docs_with_versions(pool: &PgPool) -> Result<Vec<DocId>, StoreError> {
    let ids: Vec<Uuid> =
        sqlx::query_scalar("select distinct doc_id from doc_versions").fetch_all(pool).await?;
    Ok(ids.into_iter().map(DocId::from).collect())
}
