//! Versions: what is stored of each (metadata, and the whole state compressed with zstd),
//! and the retention rule that thins the unlabelled ones as they age.
//!
//! A version is kept apart from the update log and its snapshots, so compaction never
//! touches one. Its state is a Yjs v1 update of the whole document: the text, and whatever
//! else the document holds, read back exactly.

mod postgres;
mod sqlite;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::model::{DocId, Label, Reason, Version, VersionCursor, VersionId};

/// zstd's level: its default, which compresses Yjs states about as well as the higher
/// levels (docs/BENCHMARKS.md) at a fraction of the time.
const ZSTD_LEVEL: i32 = 3;

/// A version about to be stored.
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub doc_id: DocId,
    pub created_at: DateTime<Utc>,
    pub label: Option<Label>,
    pub reason: Reason,
    pub editors: Vec<String>,
    /// The whole state, uncompressed (a Yjs v1 update).
    pub state: Vec<u8>,
}

impl NewVersion {
    fn compressed(&self) -> Result<Vec<u8>, StoreError> {
        zstd::bulk::compress(&self.state, ZSTD_LEVEL).map_err(StoreError::Compression)
    }

    fn editors_json(&self) -> String {
        serde_json::to_string(&self.editors).expect("a list of strings serialises")
    }
}

/// How long versions are kept: every one for `keep_all`, then the newest of each hour until
/// `keep_hourly`, then the newest of each day. Labelled versions stay until deleted.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub keep_all: Duration,
    pub keep_hourly: Duration,
}

/// A version as retention sees it.
pub(super) struct Aged {
    pub id: VersionId,
    pub created_at: DateTime<Utc>,
    pub labelled: bool,
}

impl Retention {
    /// The versions this rule removes at `now`, of `versions` listed newest first.
    pub(super) fn expired(&self, versions: &[Aged], now: DateTime<Utc>) -> Vec<VersionId> {
        let keep_all = chrono::Duration::from_std(self.keep_all).unwrap_or(chrono::Duration::MAX);
        let keep_hourly = chrono::Duration::from_std(self.keep_hourly).unwrap_or(chrono::Duration::MAX);
        // (bucket length in seconds, bucket number) of each version kept past `keep_all`.
        let mut taken: HashSet<(i64, i64)> = HashSet::new();
        let mut expired = Vec::new();
        for version in versions {
            let age = now.signed_duration_since(version.created_at);
            if version.labelled || age <= keep_all {
                continue;
            }
            let span = if age <= keep_hourly { 3600 } else { 86_400 };
            let bucket = (span, version.created_at.timestamp().div_euclid(span));
            // Newest first: the first one seen in a bucket is the one kept.
            if !taken.insert(bucket) {
                expired.push(version.id);
            }
        }
        expired
    }
}

/// The stored form of a version's row, before it is checked.
struct Row {
    id: VersionId,
    doc_id: DocId,
    created_at: DateTime<Utc>,
    label: Option<String>,
    reason: String,
    editors: String,
}

impl Row {
    fn into_version(self) -> Result<Version, StoreError> {
        let reason = Reason::parse(&self.reason)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown version reason {:?}", self.reason).into()))?;
        let editors: Vec<String> = serde_json::from_str(&self.editors)
            .map_err(|err| sqlx::Error::Decode(format!("version editors: {err}").into()))?;
        Ok(Version {
            id: self.id,
            doc_id: self.doc_id,
            created_at: self.created_at,
            // Labels were checked on the way in; one edited by hand to nothing shows as none.
            label: self.label.as_deref().and_then(|raw| Label::parse(raw).ok()),
            editors,
            reason,
        })
    }
}

/// Decompresses a stored state whose size before compression was `bytes`.
fn decompress(stored: &[u8], bytes: i64) -> Result<Vec<u8>, StoreError> {
    let capacity = usize::try_from(bytes).unwrap_or(0);
    zstd::bulk::decompress(stored, capacity).map_err(StoreError::Compression)
}

/// `new` merged into `found`, another instance's version of the same burst whose stored state
/// is `stored` (`bytes` before compression): the states merged as CRDT updates, the editors
/// joined.
fn merged_into(
    found: &Version,
    stored: &[u8],
    bytes: i64,
    new: &NewVersion,
) -> Result<NewVersion, StoreError> {
    let state = decompress(stored, bytes)?;
    tracing::debug!(version = %found.id, "another instance kept this burst's version: merged into it");
    Ok(NewVersion {
        state: super::merge(&[state, new.state.clone()])?,
        editors: union(&found.editors, &new.editors),
        ..new.clone()
    })
}

/// The union of two lists of names, sorted.
fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut all: Vec<String> = a.iter().chain(b).cloned().collect();
    all.sort();
    all.dedup();
    all
}

impl Store {
    /// Stores a new version. `NotFound` if the document is gone.
    pub async fn insert_version(&self, version: &NewVersion) -> Result<Version, StoreError> {
        let id = VersionId::new();
        let compressed = version.compressed()?;
        match self {
            Self::Sqlite(db) => sqlite::insert(&db.pool, id, version, &compressed).await,
            Self::Postgres(pool) => postgres::insert(pool, id, version, &compressed).await,
        }
    }

    /// Stores an automatic version, unless another instance kept one for the same burst of
    /// editing: when the document's newest automatic version is younger than `within`, this
    /// one is merged into it (states merged as CRDT updates, editors joined) instead.
    pub async fn keep_auto_version(
        &self,
        version: &NewVersion,
        within: Duration,
    ) -> Result<Version, StoreError> {
        debug_assert_eq!(version.reason, Reason::Auto);
        match self {
            Self::Sqlite(db) => sqlite::keep_auto(&db.pool, version, within).await,
            Self::Postgres(pool) => postgres::keep_auto(pool, version, within).await,
        }
    }

    /// Up to `limit` of a document's versions, newest first, strictly after `after`.
    pub async fn list_versions(
        &self,
        doc: DocId,
        limit: u32,
        after: Option<VersionCursor>,
    ) -> Result<Vec<Version>, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::list(&db.pool, doc, limit, after).await,
            Self::Postgres(pool) => postgres::list(pool, doc, limit, after).await,
        }
    }

    pub async fn get_version(&self, doc: DocId, id: VersionId) -> Result<Option<Version>, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::get(&db.pool, doc, id).await,
            Self::Postgres(pool) => postgres::get(pool, doc, id).await,
        }
    }

    /// The whole state a version holds (a Yjs v1 update), if there is such a version.
    pub async fn version_state(&self, doc: DocId, id: VersionId) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = match self {
            Self::Sqlite(db) => sqlite::state(&db.pool, doc, id).await?,
            Self::Postgres(pool) => postgres::state(pool, doc, id).await?,
        };
        stored.map(|(data, bytes)| decompress(&data, bytes)).transpose()
    }

    /// Replaces the state (and editors) of a version; false if there is no such version.
    pub async fn replace_version_state(
        &self,
        doc: DocId,
        id: VersionId,
        version: &NewVersion,
    ) -> Result<bool, StoreError> {
        let compressed = version.compressed()?;
        match self {
            Self::Sqlite(db) => sqlite::replace_state(&db.pool, doc, id, version, &compressed).await,
            Self::Postgres(pool) => postgres::replace_state(pool, doc, id, version, &compressed).await,
        }
    }

    /// Deletes a version; false if there was none.
    pub async fn delete_version(&self, doc: DocId, id: VersionId) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::delete(&db.pool, doc, &[id]).await.map(|n| n > 0),
            Self::Postgres(pool) => postgres::delete(pool, doc, &[id]).await.map(|n| n > 0),
        }
    }

    /// Removes what `retention` no longer keeps of a document's versions at `now`; returns
    /// how many went.
    pub async fn prune_versions(
        &self,
        doc: DocId,
        retention: Retention,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let aged = match self {
            Self::Sqlite(db) => sqlite::aged(&db.pool, doc).await?,
            Self::Postgres(pool) => postgres::aged(pool, doc).await?,
        };
        let expired = retention.expired(&aged, now);
        if expired.is_empty() {
            return Ok(0);
        }
        match self {
            Self::Sqlite(db) => sqlite::delete(&db.pool, doc, &expired).await,
            Self::Postgres(pool) => postgres::delete(pool, doc, &expired).await,
        }
    }

    /// Every document that has versions (for the periodic retention sweep).
    pub async fn docs_with_versions(&self) -> Result<Vec<DocId>, StoreError> {
        match self {
            Self::Sqlite(db) => sqlite::docs_with_versions(&db.pool).await,
            Self::Postgres(pool) => postgres::docs_with_versions(pool).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).single().expect("a valid time")
    }

    /// Versions at these times (seconds), labelled where `labels` says, newest first.
    fn aged(times: &[(i64, bool)]) -> (Vec<Aged>, Vec<VersionId>) {
        let mut versions: Vec<Aged> = times
            .iter()
            .map(|&(t, labelled)| Aged { id: VersionId::new(), created_at: at(t), labelled })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.created_at));
        let ids = versions.iter().map(|v| v.id).collect();
        (versions, ids)
    }

    const WEEK_THEN_MONTH: Retention = Retention {
        keep_all: Duration::from_secs(7 * 86_400),
        keep_hourly: Duration::from_secs(30 * 86_400),
    };

    #[test]
    fn everything_younger_than_keep_all_stays() {
        let now = 100 * DAY;
        let times: Vec<(i64, bool)> = (0..50).map(|i| (now - i * 60, false)).collect();
        let (versions, _) = aged(&times);
        assert!(WEEK_THEN_MONTH.expired(&versions, at(now)).is_empty());
    }

    #[test]
    fn between_a_week_and_a_month_the_newest_of_each_hour_stays() {
        let now = 100 * DAY;
        let hour = now / HOUR * HOUR - 10 * DAY; // the start of an hour ten days ago
        let (versions, ids) = aged(&[
            (hour + 100, false),
            (hour + 2000, false),
            (hour + 3500, false),
            (hour + HOUR + 5, false),
        ]);
        // Newest first: [hour+1h+5, hour+3500, hour+2000, hour+100].
        let expired = WEEK_THEN_MONTH.expired(&versions, at(now));
        assert_eq!(expired, vec![ids[2], ids[3]]);
    }

    #[test]
    fn past_a_month_the_newest_of_each_day_stays() {
        let now = 400 * DAY;
        let day = now / DAY * DAY - 40 * DAY;
        let (versions, ids) = aged(&[
            (day + 10, false),
            (day + 5 * HOUR, false),
            (day + 23 * HOUR, false),
            (day + DAY + 1, false),
        ]);
        let expired = WEEK_THEN_MONTH.expired(&versions, at(now));
        assert_eq!(expired, vec![ids[2], ids[3]]);
    }

    #[test]
    fn labelled_versions_stay_whatever_their_age() {
        let now = 400 * DAY;
        let day = now / DAY * DAY - 100 * DAY;
        let (versions, ids) =
            aged(&[(day + 10, true), (day + 20, false), (day + 30, true), (day + 40, false)]);
        // Newest first: [40 unlabelled (kept), 30 labelled, 20 unlabelled (same day: goes), 10 labelled].
        assert_eq!(WEEK_THEN_MONTH.expired(&versions, at(now)), vec![ids[2]]);
    }

    #[test]
    fn a_compressed_state_comes_back_byte_for_byte() {
        let version = NewVersion {
            doc_id: DocId::new(),
            created_at: at(0),
            label: None,
            reason: Reason::Auto,
            editors: vec![],
            state: b"state ".repeat(1000),
        };
        let compressed = version.compressed().unwrap();
        assert!(compressed.len() < 100, "{} bytes", compressed.len());
        assert_eq!(decompress(&compressed, version.state.len() as i64).unwrap(), version.state);
        // A size that does not match what is stored is an error, not a bigger allocation.
        assert!(decompress(&compressed, 10).is_err());
        assert!(decompress(b"garbage", 100).is_err());
    }

    #[test]
    fn editors_are_joined_sorted_and_once() {
        let a = vec!["Bo".to_owned(), "Al".to_owned()];
        let b = vec!["Al".to_owned(), "Cy".to_owned()];
        assert_eq!(union(&a, &b), ["Al", "Bo", "Cy"]);
    }
}
