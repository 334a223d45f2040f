//! What the store holds, read behind the server's back (straight from the database, never
//! through a proxy the test may have cut): a document's log and snapshot, the document they
//! make, and when its writes happened.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

use crate::helpers::{Backend, TestDb};

/// A connection pool to a test's database, for reading.
pub enum Reader {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// A document's stored rows.
#[derive(Debug, Default)]
pub struct Stored {
    /// The latest snapshot's size and the seq it covers, if there is one.
    pub snapshot: Option<(usize, i64)>,
    pub snapshot_state: Option<Vec<u8>>,
    /// Log rows after the snapshot, in seq order: (seq, data).
    pub log: Vec<(i64, Vec<u8>)>,
    /// Snapshot rows in all (compaction keeps one).
    pub snapshots: i64,
}

impl Reader {
    pub async fn new(db: &TestDb) -> Self {
        match db.backend {
            Backend::Sqlite => Self::Sqlite(sqlx::SqlitePool::connect(&db.url).await.expect("open SQLite")),
            Backend::Postgres => Self::Postgres(sqlx::PgPool::connect(&db.url).await.expect("connect")),
        }
    }

    /// The document's rows. (The snapshot and the log are read in two statements; a test
    /// reads while the server may compact, so it reads again when they disagree.)
    pub async fn stored(&self, id: &str) -> Stored {
        let snapshot_sql =
            "select upto_seq, state from doc_snapshots where doc_id = $1 order by upto_seq desc limit 1";
        let count_sql = "select count(*) from doc_snapshots where doc_id = $1";
        let log_sql = "select seq, data from doc_updates where doc_id = $1 and seq > $2 order by seq";
        let mut stored = Stored::default();
        let (snapshot, log, count) = match self {
            Self::Sqlite(pool) => {
                let q = |sql: &str| sql.replace("$1", "?1").replace("$2", "?2");
                let snapshot = sqlx::query(&q(snapshot_sql)).bind(id).fetch_optional(pool).await.unwrap();
                let snapshot = snapshot.map(|r| (r.get::<i64, _>(0), r.get::<Vec<u8>, _>(1)));
                let after = snapshot.as_ref().map_or(0, |s| s.0);
                let log = sqlx::query(&q(log_sql)).bind(id).bind(after).fetch_all(pool).await.unwrap();
                let log = log.iter().map(|r| (r.get::<i64, _>(0), r.get::<Vec<u8>, _>(1))).collect();
                let count = sqlx::query_scalar(&q(count_sql)).bind(id).fetch_one(pool).await.unwrap();
                (snapshot, log, count)
            }
            Self::Postgres(pool) => {
                let id: uuid::Uuid = id.parse().unwrap();
                let snapshot = sqlx::query(snapshot_sql).bind(id).fetch_optional(pool).await.unwrap();
                let snapshot = snapshot.map(|r| (r.get::<i64, _>(0), r.get::<Vec<u8>, _>(1)));
                let after = snapshot.as_ref().map_or(0, |s| s.0);
                let log = sqlx::query(log_sql).bind(id).bind(after).fetch_all(pool).await.unwrap();
                let log = log.iter().map(|r| (r.get::<i64, _>(0), r.get::<Vec<u8>, _>(1))).collect();
                let count = sqlx::query_scalar(count_sql).bind(id).fetch_one(pool).await.unwrap();
                (snapshot, log, count)
            }
        };
        stored.snapshot = snapshot.as_ref().map(|(seq, state)| (state.len(), *seq));
        stored.snapshot_state = snapshot.map(|(_, state)| state);
        stored.log = log;
        stored.snapshots = count;
        stored
    }

    /// The document the store holds: its snapshot, then its log.
    pub async fn doc(&self, id: &str) -> Doc {
        self.stored(id).await.doc()
    }

    /// When each write of the document that is still visible began: the distinct times of
    /// its log rows (one per write), and of its snapshot, oldest first. Each is no later
    /// than the commit of its write.
    pub async fn write_times(&self, id: &str) -> Vec<SystemTime> {
        let sql = "select created_at from doc_updates where doc_id = $1
                   union select created_at from doc_snapshots where doc_id = $1";
        let mut times: Vec<SystemTime> = match self {
            Self::Sqlite(pool) => {
                let micros: Vec<i64> =
                    sqlx::query_scalar(&sql.replace("$1", "?1")).bind(id).fetch_all(pool).await.unwrap();
                micros.into_iter().map(|m| UNIX_EPOCH + Duration::from_micros(m as u64)).collect()
            }
            Self::Postgres(pool) => {
                let id: uuid::Uuid = id.parse().unwrap();
                let at: Vec<chrono::DateTime<chrono::Utc>> =
                    sqlx::query_scalar(sql).bind(id).fetch_all(pool).await.unwrap();
                at.into_iter().map(SystemTime::from).collect()
            }
        };
        times.sort();
        times
    }

    /// Log rows of every document (all of them, including any a snapshot left behind).
    pub async fn log_rows(&self, id: &str) -> i64 {
        let sql = "select count(*) from doc_updates where doc_id = $1";
        match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar(&sql.replace("$1", "?")).bind(id).fetch_one(pool).await.unwrap()
            }
            Self::Postgres(pool) => {
                let id: uuid::Uuid = id.parse().unwrap();
                sqlx::query_scalar(sql).bind(id).fetch_one(pool).await.unwrap()
            }
        }
    }
}

impl Stored {
    pub fn doc(&self) -> Doc {
        let doc = Doc::new();
        let mut txn = doc.transact_mut();
        for data in self.snapshot_state.iter().chain(self.log.iter().map(|(_, data)| data)) {
            txn.apply_update(Update::decode_v1(data).expect("stored updates decode")).expect("apply");
        }
        drop(txn);
        doc
    }
}

/// A document's text.
pub fn text_of(doc: &Doc) -> String {
    let text = doc.get_or_insert_text("content");
    text.get_string(&doc.transact())
}

/// Waits until the store holds everything in `sv`.
pub async fn wait_stored(reader: &Reader, id: &str, sv: &StateVector) {
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        let stored = reader.doc(id).await.transact().state_vector();
        if sv.iter().all(|(client, clock)| stored.get(client) >= *clock) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the store never caught up with {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
