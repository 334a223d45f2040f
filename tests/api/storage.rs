//! Persistence on each backend: the update log written in batches, compaction into
//! snapshots, loading snapshot + log, and updates kept through a database outage.

use std::time::Duration;

use bytes::Bytes;
use sqlx::Row;
use tandem::model::Title;
use tandem::store::{Store, StoreError};
use yrs::{Doc, ReadTxn, Text, Transact};

use crate::helpers::{Backend, PATIENCE, TestApp, TestDb};
use crate::on_both_backends;

on_both_backends!(
    updates_are_logged_in_batches,
    the_log_is_compacted_into_snapshots,
    many_documents_write_at_once
);

/// Rows in the log, snapshots, and distinct write transactions (batches) of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub log_rows: i64,
    pub snapshots: i64,
    pub batches: i64,
}

pub async fn counts(db: &TestDb, id: &str) -> Counts {
    // Each batch is one transaction, and every row of a transaction has the same created_at.
    let sql = "select
        (select count(*) from doc_updates where doc_id = $1) as log_rows,
        (select count(*) from doc_snapshots where doc_id = $1) as snapshots,
        (select count(distinct created_at) from doc_updates where doc_id = $1) as batches";
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let row = sqlx::query(&sql.replace("$1", "?1")).bind(id).fetch_one(&pool).await.unwrap();
            Counts { log_rows: row.get(0), snapshots: row.get(1), batches: row.get(2) }
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let id: uuid::Uuid = id.parse().unwrap();
            let row = sqlx::query(sql).bind(id).fetch_one(&pool).await.unwrap();
            Counts { log_rows: row.get(0), snapshots: row.get(1), batches: row.get(2) }
        }
    }
}

/// Appends an update inserting `text` at the start of `content` straight into the log, as
/// if another writer had stored it.
pub async fn append_raw_update(db: &TestDb, id: &str, text: &str) {
    let doc = Doc::new();
    let content = doc.get_or_insert_text("content");
    content.insert(&mut doc.transact_mut(), 0, text);
    let update = doc.transact().encode_state_as_update_v1(&Default::default());
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query("insert into doc_updates (doc_id, data, created_at) values (?, ?, 0)")
                .bind(id)
                .bind(update)
                .execute(&pool)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query("insert into doc_updates (doc_id, data) values ($1, $2)")
                .bind(id.parse::<uuid::Uuid>().unwrap())
                .bind(update)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
}

/// The document's text as the store holds it: its snapshot and log, applied in order.
pub async fn stored_text(db: &TestDb, id: &str) -> String {
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Update};
    let sql_snapshot = "select state from doc_snapshots where doc_id = $1 order by upto_seq desc limit 1";
    let sql_log = "select data from doc_updates where doc_id = $1 order by seq";
    let rows: Vec<Vec<u8>> = match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let mut rows: Vec<Vec<u8>> =
                sqlx::query_scalar(&sql_snapshot.replace("$1", "?")).bind(id).fetch_all(&pool).await.unwrap();
            rows.extend(
                sqlx::query_scalar::<_, Vec<u8>>(&sql_log.replace("$1", "?"))
                    .bind(id)
                    .fetch_all(&pool)
                    .await
                    .unwrap(),
            );
            rows
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let id: uuid::Uuid = id.parse().unwrap();
            let mut rows: Vec<Vec<u8>> =
                sqlx::query_scalar(sql_snapshot).bind(id).fetch_all(&pool).await.unwrap();
            rows.extend(sqlx::query_scalar::<_, Vec<u8>>(sql_log).bind(id).fetch_all(&pool).await.unwrap());
            rows
        }
    };
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        for row in rows {
            txn.apply_update(Update::decode_v1(&row).expect("stored updates decode")).expect("apply");
        }
    }
    let text = doc.get_or_insert_text("content");
    text.get_string(&doc.transact())
}

/// Polls the store until it holds exactly `expected` as the document's text.
pub async fn wait_for_stored_text(db: &TestDb, id: &str, expected: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let stored = stored_text(db, id).await;
        if stored == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the store holds {stored:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the store until `done` holds for the document's counts.
pub async fn wait_for_counts(db: &TestDb, id: &str, what: &str, done: impl Fn(Counts) -> bool) -> Counts {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = counts(db, id).await;
        if done(now) {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn updates_are_logged_in_batches(backend: Backend) {
    // A window long enough that the whole burst below falls into one batch.
    let app = TestApp::spawn_with(backend, |c| c.flush_ms = 3000).await;
    let id = app.create_doc("batched").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    for i in 0..30 {
        client.append(&format!("{i},")).await;
    }
    let expected: String = (0..30).map(|i| format!("{i},")).collect();
    client.settled().await;
    // Nothing is written per keystroke...
    assert_eq!(counts(&app.db, &id).await.log_rows, 0, "written before the batch window ended");
    // ...the batch lands once the window has passed, in one transaction, with the
    // connection still open.
    let done = wait_for_counts(&app.db, &id, "the batch is written", |c| c.log_rows > 0).await;
    assert_eq!(done.batches, 1, "{done:?}");
    assert_eq!(done.snapshots, 0);
    assert_eq!(stored_text(&app.db, &id).await, expected);

    // With the default 5 ms window, an update is in the store soon after it arrives.
    let (db, mut config) = app.stop().await;
    config.flush_ms = 5;
    let app = TestApp::start(db, config).await;
    let mut client = app.client(&id).await;
    client.synced().await;
    client.append("!").await;
    wait_for_stored_text(&app.db, &id, &format!("{expected}!")).await;
    drop(client);
    assert_eq!(app.text(&id).await, format!("{expected}!"));
}

async fn the_log_is_compacted_into_snapshots(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.snapshot_updates = 10;
        c.flush_ms = 1;
    })
    .await;
    let id = app.create_doc("compacted").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    let mut expected = String::new();
    for i in 0..25 {
        let piece = format!("[{i}]");
        client.append(&piece).await;
        expected.push_str(&piece);
        // One at a time, so that batches are small and compaction has something to cover.
        client.settled().await;
    }
    let after =
        wait_for_counts(&app.db, &id, "a snapshot and a short log", |c| c.snapshots == 1 && c.log_rows < 10)
            .await;
    assert_eq!(after.snapshots, 1, "{after:?}");

    // Load = snapshot + the log after it, including rows written after the snapshot.
    let app = app.restart().await;
    assert_eq!(app.text(&id).await, expected);
    let mut client = app.client(&id).await;
    client.synced().await;
    assert_eq!(client.text(), expected);
    client.append("+tail").await;
    expected.push_str("+tail");
    client.settled().await;
    wait_for_counts(&app.db, &id, "the tail is logged", |c| c.log_rows >= 1 || c.snapshots == 1).await;
    drop(client);
    let app = app.restart().await;
    assert_eq!(app.text(&id).await, expected);
}

/// Writes of many documents at the same moment (on SQLite they share commits): each gets its
/// own outcome, a deleted document's write fails alone, and every other write is stored.
async fn many_documents_write_at_once(backend: Backend) {
    const DOCS: usize = 40;
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.expect("store");
    let mut ids = Vec::new();
    for i in 0..DOCS {
        ids.push(store.create_doc(&Title::parse(&format!("doc {i}")).unwrap()).await.unwrap().id);
    }
    let gone = ids[DOCS / 2];
    assert!(store.delete_doc(gone).await.unwrap());

    let update_for = |i: usize| Bytes::from(update_inserting(&format!("text of {i}")));
    let appends = ids.iter().enumerate().map(|(i, &id)| {
        let store = store.clone();
        async move { store.append_updates(id, vec![update_for(i), update_for(i + 1000)]).await }
    });
    let outcomes = futures_util::future::join_all(appends).await;
    for (i, (&id, outcome)) in ids.iter().zip(outcomes).enumerate() {
        if id == gone {
            assert!(matches!(outcome, Err(StoreError::NotFound)), "deleted doc: {outcome:?}");
            continue;
        }
        let last_seq = outcome.unwrap_or_else(|e| panic!("doc {i}: {e}"));
        let state = store.load_state(id).await.unwrap();
        assert_eq!(state.last_seq, last_seq, "doc {i} got another document's seq");
        assert_eq!(state.updates, vec![update_for(i).to_vec(), update_for(i + 1000).to_vec()], "doc {i}");
    }
    if backend == Backend::Sqlite {
        let rows = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let commits: i64 = sqlx::query_scalar("select count(distinct created_at) from doc_updates")
            .fetch_one(&rows)
            .await
            .unwrap();
        assert!(commits < (DOCS / 2) as i64, "{DOCS} documents' writes took {commits} commits");
    }

    let snapshots = ids.iter().enumerate().filter(|&(_, &id)| id != gone).map(|(i, &id)| {
        let store = store.clone();
        async move {
            let upto_seq = store.load_state(id).await.unwrap().last_seq;
            store.write_snapshot(id, upto_seq, update_for(i).to_vec(), false).await.map(|()| (i, id))
        }
    });
    for outcome in futures_util::future::join_all(snapshots).await {
        let (i, id) = outcome.unwrap();
        let state = store.load_state(id).await.unwrap();
        assert_eq!(state.snapshot, Some(update_for(i).to_vec()), "doc {i}");
        assert!(state.updates.is_empty(), "doc {i}: the snapshot covers the log");
    }
}

/// The same bytes for the same text (a fixed client id).
fn update_inserting(text: &str) -> Vec<u8> {
    let doc = Doc::with_client_id(1);
    doc.get_or_insert_text("content").insert(&mut doc.transact_mut(), 0, text);
    doc.transact().encode_state_as_update_v1(&Default::default())
}

/// While the database refuses connections, edits go on in memory, `/readyz` says 503, and
/// nothing is lost: once it is back, every update reaches the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_survive_a_database_outage() {
    let Some(backend) = Backend::postgres_or_skip("storage::updates_survive_a_database_outage") else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("outage").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    client.append("before. ").await;
    wait_for_stored_text(&app.db, &id, "before. ").await;

    let admin = std::env::var("TEST_POSTGRES_URL").unwrap();
    let admin = sqlx::PgPool::connect(&admin).await.unwrap();
    let name: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&sqlx::PgPool::connect(&app.db.url).await.unwrap())
        .await
        .unwrap();
    let set_allowed = |allowed: bool| {
        let admin = admin.clone();
        let name = name.clone();
        async move {
            sqlx::query(&format!("alter database {name} with allow_connections {allowed}"))
                .execute(&admin)
                .await
                .unwrap();
            if !allowed {
                sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
                    .bind(&name)
                    .execute(&admin)
                    .await
                    .unwrap();
            }
        }
    };
    set_allowed(false).await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = app.http.get(app.url("/readyz")).send().await.unwrap().status();
        if status == 503 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz stayed {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Editing carries on during the outage; everyone still sees it live.
    for i in 0..5 {
        client.append(&format!("during {i}. ")).await;
    }
    let expected = "before. during 0. during 1. during 2. during 3. during 4. ";
    client.settled().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    set_allowed(true).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.http.get(app.url("/readyz")).send().await.unwrap().status() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "/readyz never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_stored_text(&app.db, &id, expected).await;
    drop(client);
    let app = app.restart().await;
    assert_eq!(app.text(&id).await, expected);
}
