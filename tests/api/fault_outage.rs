//! The store goes away for ten seconds while 20 clients edit: Postgres cut off by a TCP
//! proxy of the test's own (Postgres is shared by tests running in parallel, so it is never
//! stopped), a SQLite file whose writes fail, and a SQLite file whose write lock another
//! connection holds. Editing and broadcasting go on, new clients of open documents join,
//! `/readyz` says 503, applied updates are held up to `--max-pending-bytes` and new ones
//! past it are refused (1013 "storage unavailable"); once the store answers, what was held is
//! written in order, without duplicates, within ten seconds, and the refused edits come back
//! from their clients. Prints its counts; fails on any loss.
//!
//! In order and without duplicates, exactly: the actor logs the very updates it broadcasts,
//! in the same order, so an observer on each document (connected throughout, never typing)
//! receives the sequence the log must hold, row for row.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Connection;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use yrs::{Doc, ReadTxn, Transact};

use crate::helpers::{Backend, Client, PATIENCE, TestApp, TestDb, test_config};
use crate::kit::figures::{self, ms};
use crate::kit::proxy::Proxy;
use crate::kit::replica::{Replica, Style, wait_all, wait_converged};
use crate::kit::stored::{Reader, text_of, wait_stored};
use crate::metrics::sample;
use crate::on_both_backends;

const DOCS: usize = 4;
const TYPISTS: usize = 20;
const TYPE_EVERY: Duration = Duration::from_millis(50);
const OUTAGE: Duration = Duration::from_secs(10);
/// Small enough that the typists reach it within the outage (about 3.5 KB a second per
/// document).
const PENDING_BOUND: u64 = 16 * 1024;
/// The promise: what was held is stored within this long of the store answering again.
const WRITTEN_WITHIN: Duration = Duration::from_secs(10);

/// A way to take the store away from a server, and to give it back.
enum Outage {
    /// Postgres behind the test's proxy: connections reset, new ones refused.
    Cut(Proxy),
    /// Every insert fails (triggers), as on a full disk or a read-only file.
    Refusing,
    /// Another connection holds SQLite's write lock (`begin immediate`).
    Locked(Option<sqlx::SqliteConnection>),
}

impl Outage {
    fn name(&self) -> &'static str {
        match self {
            Self::Cut(_) => "Postgres cut off by a proxy",
            Self::Refusing => "store refusing every insert",
            Self::Locked(_) => "SQLite write lock held",
        }
    }

    async fn begin(&mut self, db: &TestDb) {
        match self {
            Self::Cut(proxy) => proxy.cut(),
            Self::Refusing => {
                db.refuse("insert", "doc_updates").await;
                db.refuse("insert", "doc_snapshots").await;
            }
            Self::Locked(lock) => {
                let mut conn = sqlx::SqliteConnection::connect(&db.url).await.expect("open SQLite");
                sqlx::query("begin immediate").execute(&mut conn).await.expect("take the write lock");
                *lock = Some(conn);
            }
        }
    }

    async fn end(&mut self, db: &TestDb) {
        match self {
            Self::Cut(proxy) => proxy.let_through(),
            Self::Refusing => {
                db.allow("insert", "doc_updates").await;
                db.allow("insert", "doc_snapshots").await;
            }
            Self::Locked(lock) => {
                let mut conn = lock.take().expect("the lock is held");
                sqlx::query("rollback").execute(&mut conn).await.expect("release the write lock");
            }
        }
    }
}

/// Settings of the outage tests: the bound within reach, and no compaction (the log's rows
/// are what the test counts).
fn outage_config(db: &TestDb, database_url: String) -> tandem::config::Config {
    let mut config = test_config(db);
    config.database_url = database_url;
    config.max_pending_bytes = PENDING_BOUND;
    config.snapshot_updates = u64::MAX;
    config.snapshot_bytes = u64::MAX;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_holds_then_writes_everything_in_order() {
    let test = "fault_outage::a_postgres_outage_holds_then_writes_everything_in_order";
    let Some(backend) = Backend::postgres_or_skip(test) else { return };
    let db = TestDb::new(backend).await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let through = db.url.replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
    assert_ne!(through, db.url, "TEST_POSTGRES_URL is expected to name 127.0.0.1:5432");
    let config = outage_config(&db, through);
    let app = TestApp::start(db, config).await;
    outage(app, Outage::Cut(proxy)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_refusing_writes_holds_then_writes_everything_in_order() {
    let db = TestDb::new(Backend::Sqlite).await;
    let config = outage_config(&db, db.url.clone());
    outage(TestApp::start(db, config).await, Outage::Refusing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_file_holds_then_writes_everything_in_order() {
    let db = TestDb::new(Backend::Sqlite).await;
    let config = outage_config(&db, db.url.clone());
    outage(TestApp::start(db, config).await, Outage::Locked(None)).await;
}

/// What the test saw during the outage.
#[derive(Debug, Default)]
struct During {
    readyz_503: bool,
    peak_pending_bytes: f64,
    refused_updates: f64,
}

async fn outage(app: TestApp, mut fault: Outage) {
    let test = format!("database outage ({})", fault.name());
    let reader = Reader::new(&app.db).await;
    let mut ids = Vec::new();
    for i in 0..DOCS {
        ids.push(app.create_doc(&format!("outage {i}")).await);
    }
    let observers: Vec<Replica> = ids
        .iter()
        .map(|id| Replica::spawn_with(app.ws_url(id), Doc::new(), Style { record: true, ..Style::default() }))
        .collect();
    wait_all(&observers.iter().collect::<Vec<_>>(), "synced", PATIENCE, |r| r.log(|l| l.synced > 0)).await;
    let style = Style { chars: 16, ..Style::default() };
    let mut replicas: Vec<(usize, Replica)> = (0..TYPISTS)
        .map(|i| (i % DOCS, Replica::spawn_with(app.ws_url(&ids[i % DOCS]), Doc::new(), style)))
        .collect();
    let typists: Vec<&Replica> = replicas.iter().map(|(_, r)| r).collect();
    wait_all(&typists, "synced", PATIENCE, |r| r.log(|l| l.synced > 0)).await;
    for replica in &typists {
        replica.type_every(TYPE_EVERY);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    fault.begin(&app.db).await;
    let began = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let clocks: HashMap<_, _> = typists.iter().map(|r| (r.client_id(), r.own_clock())).collect();
    // Editing and broadcasting go on: every typist receives the others' edits.
    let peers_of = |doc: usize| replicas.iter().filter(move |(d, _)| *d == doc).map(|(_, r)| r.client_id());
    let heard_all = |doc: usize, r: &Replica| {
        let sv = r.state_vector();
        peers_of(doc).all(|peer| sv.get(&peer) >= clocks[&peer])
    };
    let deadline = Instant::now() + PATIENCE;
    while !replicas.iter().all(|(doc, r)| heard_all(*doc, r)) {
        assert!(Instant::now() < deadline, "edits stopped reaching the other clients during the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New clients of open documents join, and receive everything.
    let newcomers: Vec<(usize, Replica)> =
        (0..DOCS).map(|doc| (doc, Replica::spawn(app.ws_url(&ids[doc])))).collect();
    let joined: Vec<&Replica> = newcomers.iter().map(|(_, r)| r).collect();
    wait_all(&joined, "joined during the outage", PATIENCE, |r| r.log(|l| l.synced > 0)).await;
    for (doc, newcomer) in &newcomers {
        assert!(heard_all(*doc, newcomer), "a client that joined during the outage lacks edits");
    }
    let during = watch_outage(&app, began + OUTAGE).await;
    assert!(during.readyz_503, "/readyz never said 503 during the outage: {during:?}");
    assert!(during.refused_updates > 0.0, "nothing was refused past the pending bound: {during:?}");
    let bound = (DOCS as u64 * PENDING_BOUND) as f64;
    assert!(
        during.peak_pending_bytes <= bound,
        "held {} bytes, more than the bound {bound}",
        during.peak_pending_bytes
    );
    let refused_closes: usize = typists.iter().map(|r| r.log(storage_refusals)).sum();
    assert!(refused_closes > 0, "no client was closed with 1013 \"storage unavailable\"");

    // The store answers again. What the server had applied (echoed) is written within the
    // promise; what it refused comes back from the clients.
    let held: Vec<(String, u64, u32)> = replicas
        .iter()
        .map(|(doc, r)| (ids[*doc].clone(), r.client_id().get(), echoed_before(r, Instant::now())))
        .collect();
    fault.end(&app.db).await;
    let answered = Instant::now();
    wait_held_stored(&reader, &held, answered + WRITTEN_WITHIN).await;
    let written = answered.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for replica in &typists {
        replica.stop_typing();
    }
    let stopped = Instant::now();
    replicas.extend(newcomers);
    wait_converged(&replicas).await;
    let converged = stopped.elapsed();
    let mut logs = Vec::new();
    for (doc, id) in ids.iter().enumerate() {
        let group: Vec<&Replica> = replicas.iter().filter(|(d, _)| *d == doc).map(|(_, r)| r).collect();
        wait_stored(&reader, id, &group[0].state_vector()).await;
        assert_eq!(text_of(&reader.doc(id).await), group[0].text(), "the store's text of {id}");
        let rows: Vec<Vec<u8>> = reader.stored(id).await.log.into_iter().map(|(_, data)| data).collect();
        let (sessions, broadcast) = observers[doc].log(|l| (l.sessions, l.updates.clone()));
        assert_eq!(sessions, 1, "{id}: the observer was disconnected, so it cannot vouch for the order");
        logs.push(compare(&rows, &broadcast));
    }
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap().status();
    assert_eq!(ready, 200, "/readyz after the outage");
    let metrics = app.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let applied = sample(&metrics, "tandem_updates_applied_total").unwrap_or(0.0);
    report(&test, &during, refused_closes, &logs, applied, written, converged);
    for (id, log) in ids.iter().zip(&logs) {
        assert_eq!(log.first_difference, None, "{id}: the log is not what was broadcast, in order: {log:?}");
    }
}

/// A document's log against the updates its observer received.
#[derive(Debug)]
struct LogVsBroadcast {
    rows: usize,
    broadcast: usize,
    /// Rows equal to an earlier row byte for byte. With the log equal to the broadcast, a
    /// client sent that update twice (a provider may send an edit both on its own and in the
    /// step 2 of a sync); a write made twice would make the two differ.
    repeated: usize,
    /// Where the two sequences first differ, if they do.
    first_difference: Option<usize>,
}

fn compare(rows: &[Vec<u8>], broadcast: &[Vec<u8>]) -> LogVsBroadcast {
    let mut seen = std::collections::HashSet::new();
    let repeated = rows.iter().filter(|row| !seen.insert(row.as_slice())).count();
    let first_difference = (0..rows.len().max(broadcast.len())).find(|&i| rows.get(i) != broadcast.get(i));
    LogVsBroadcast { rows: rows.len(), broadcast: broadcast.len(), repeated, first_difference }
}

/// Polls `/readyz` and `/metrics` until `until`.
async fn watch_outage(app: &TestApp, until: Instant) -> During {
    let mut during = During::default();
    while Instant::now() < until {
        let ready = app.http.get(app.url("/readyz")).send().await.unwrap().status();
        during.readyz_503 |= ready == 503;
        let metrics =
            app.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
        let pending = sample(&metrics, "tandem_pending_bytes").unwrap_or(0.0);
        during.peak_pending_bytes = during.peak_pending_bytes.max(pending);
        let refused = r#"tandem_refused_writes_total{reason="storage_unavailable"}"#;
        during.refused_updates = sample(&metrics, refused).unwrap_or(0.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    during
}

/// Sessions the server ended with 1013 "storage unavailable".
fn storage_refusals(log: &crate::kit::replica::Log) -> usize {
    log.closes.iter().filter(|c| matches!(c, Some((1013, reason)) if reason == "storage unavailable")).count()
}

/// The highest clock of a replica's own edits the server had echoed by `at`.
fn echoed_before(replica: &Replica, at: Instant) -> u32 {
    let me = replica.client_id();
    replica
        .log(|log| {
            log.arrivals
                .iter()
                .filter(|(c, _, when)| *c == me && *when <= at)
                .map(|(_, clock, _)| *clock)
                .max()
        })
        .unwrap_or(0)
}

/// Waits until the store holds every (document, client, clock) the server had applied.
async fn wait_held_stored(reader: &Reader, held: &[(String, u64, u32)], deadline: Instant) {
    loop {
        let mut missing = 0;
        let mut svs = HashMap::new();
        for (id, client, clock) in held {
            if !svs.contains_key(id) {
                svs.insert(id.clone(), reader.doc(id).await.transact().state_vector());
            }
            missing += usize::from(svs[id].get(&yrs::block::ClientID::new(*client)) < *clock);
        }
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} clients' held edits not stored within {WRITTEN_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report(
    test: &str,
    during: &During,
    closes: usize,
    logs: &[LogVsBroadcast],
    applied: f64,
    written: Duration,
    converged: Duration,
) {
    let rows: usize = logs.iter().map(|l| l.rows).sum();
    let broadcast: usize = logs.iter().map(|l| l.broadcast).sum();
    let repeated: usize = logs.iter().map(|l| l.repeated).sum();
    let differ = logs.iter().filter(|l| l.first_difference.is_some()).count();
    figures::report(
        test,
        &format!(
            "peak held {:.0} bytes (bound {} per document, {DOCS} documents); {} updates refused, {closes} \
             sessions closed 1013 \"storage unavailable\"; held updates stored {} after the store answered; \
             every replica whole {} after typing stopped; {applied} updates applied, {broadcast} broadcast, \
             {rows} log rows ({repeated} repeating an earlier one as a client sent it twice), {differ} documents \
             whose log is not the broadcast",
            during.peak_pending_bytes,
            PENDING_BOUND,
            during.refused_updates,
            ms(written),
            ms(converged),
        ),
    );
}

on_both_backends!(past_the_pending_bound_an_update_is_refused_and_comes_back);

/// The bound on its own, step by step: an update past it is refused with 1013 "storage
/// unavailable", not applied, not broadcast; the client's reconnect brings it back once the
/// store has taken what was held. A store refusing writes is not ready.
async fn past_the_pending_bound_an_update_is_refused_and_comes_back(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_pending_bytes = 1000).await;
    let id = app.create_doc("bounded").await;
    let mut writer = app.client(&id).await;
    let mut peer = app.client(&id).await;
    writer.synced().await;
    peer.synced().await;
    app.db.refuse("insert", "doc_updates").await;
    app.db.refuse("insert", "doc_snapshots").await;
    writer.append(&"a".repeat(600)).await;
    writer.settled().await;
    // Held, unstored: a second one would take it past 1000 bytes.
    writer.append(&"b".repeat(600)).await;
    let close = writer.wait_closed().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Again, "{close:?}");
    assert_eq!(close.reason, "storage unavailable");
    // Not broadcast: the peer hears its own edit, and nothing of the refused one before it.
    peer.append("c").await;
    peer.settled().await;
    assert!(!peer.text().contains('b'), "the refused update reached a peer");
    assert!(!app.text(&id).await.contains('b'), "the refused update was applied");
    wait_readyz(&app, 503).await;
    let metrics = app.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&metrics, r#"tandem_refused_writes_total{reason="storage_unavailable"}"#), Some(1.0));
    // /readyz said 503 because a write failed: each failure is counted (and retried).
    let errors = sample(&metrics, "tandem_storage_errors_total").unwrap_or(0.0);
    assert!(errors >= 1.0, "failed writes not counted:\n{metrics}");
    assert!(sample(&metrics, "tandem_pending_updates").unwrap_or(0.0) >= 1.0, "{metrics}");

    app.db.allow("insert", "doc_updates").await;
    app.db.allow("insert", "doc_snapshots").await;
    wait_readyz(&app, 200).await;
    // The client kept its edit: its step 2 brings it now.
    let mut back = Client::connect_with(&app.ws_url(&id), writer.into_doc()).await;
    back.synced().await;
    back.settled().await;
    peer.wait_until("the refused edit arrives", |c| c.text().contains('b')).await;
    let expected = back.text();
    assert_eq!(peer.text(), expected);
    drop((back, peer));
    let app = app.restart().await;
    assert_eq!(app.text(&id).await, expected);
}

/// Polls `/readyz` until it answers `status`.
async fn wait_readyz(app: &TestApp, status: u16) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = app.http.get(app.url("/readyz")).send().await.unwrap().status();
        if now == status {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {now}, not {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection to Postgres that keeps breaking (a flapping network): each cut may land
/// while a commit is in flight, when the server cannot tell whether it was stored. The log
/// still holds each broadcast update once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_postgres_connection_writes_each_update_once() {
    let test = "fault_outage::a_flapping_postgres_connection_writes_each_update_once";
    let Some(backend) = Backend::postgres_or_skip(test) else { return };
    let db = TestDb::new(backend).await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let through = db.url.replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
    let config = outage_config(&db, through);
    let app = TestApp::start(db, config).await;
    let reader = Reader::new(&app.db).await;
    let mut ids = Vec::new();
    for i in 0..DOCS {
        ids.push(app.create_doc(&format!("flapping {i}")).await);
    }
    let observers: Vec<Replica> = ids
        .iter()
        .map(|id| Replica::spawn_with(app.ws_url(id), Doc::new(), Style { record: true, ..Style::default() }))
        .collect();
    wait_all(&observers.iter().collect::<Vec<_>>(), "synced", PATIENCE, |r| r.log(|l| l.synced > 0)).await;
    let typists: Vec<(usize, Replica)> =
        (0..TYPISTS).map(|i| (i % DOCS, Replica::spawn(app.ws_url(&ids[i % DOCS])))).collect();
    for (_, typist) in &typists {
        typist.type_every(TYPE_EVERY);
    }
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(30)).await;
        proxy.let_through();
    }
    for (_, typist) in &typists {
        typist.stop_typing();
    }
    let mut logs = Vec::new();
    for (doc, id) in ids.iter().enumerate() {
        let deadline = Instant::now() + PATIENCE * 2;
        loop {
            let rows: Vec<Vec<u8>> = reader.stored(id).await.log.into_iter().map(|(_, data)| data).collect();
            let broadcast = observers[doc].log(|l| l.updates.clone());
            let log = compare(&rows, &broadcast);
            if log.first_difference.is_none() || Instant::now() >= deadline {
                logs.push(log);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let repeated: usize = logs.iter().map(|l| l.repeated).sum();
    let rows: usize = logs.iter().map(|l| l.rows).sum();
    figures::report(
        test,
        &format!(
            "40 cuts, {} connections reset; {rows} log rows ({repeated} repeating an earlier one); documents {logs:?}",
            proxy.cut_connections()
        ),
    );
    for (id, log) in ids.iter().zip(&logs) {
        assert_eq!(log.first_difference, None, "{id}: the log is not what was broadcast, in order: {log:?}");
    }
}

on_both_backends!(an_append_made_again_writes_only_what_the_log_lacks);

/// The store's side of a retry after a commit whose answer was lost: the updates the log
/// holds after the last seq the writer knew are not written twice.
async fn an_append_made_again_writes_only_what_the_log_lacks(backend: Backend) {
    use bytes::Bytes;
    use tandem::model::Title;
    use tandem::store::Store;
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    let id = store.create_doc(&Title::default()).await.unwrap().id;
    let update = |text: &str| {
        let doc = Doc::with_client_id(7);
        yrs::Text::insert(&doc.get_or_insert_text("content"), &mut doc.transact_mut(), 0, text);
        Bytes::from(doc.transact().encode_state_as_update_v1(&Default::default()))
    };
    let (a, b, c) = (update("a"), update("bb"), update("ccc"));
    let first = store.append_updates(id, vec![a.clone()]).await.unwrap();
    // This one committed, but its writer never heard so.
    let landed = store.append_updates(id, vec![b.clone()]).await.unwrap();
    let last = store.append_updates_again(id, vec![b.clone(), c.clone()], first).await.unwrap();
    let state = store.load_state(id).await.unwrap();
    assert_eq!(state.updates, vec![a.to_vec(), b.to_vec(), c.to_vec()], "b was written twice");
    assert_eq!(state.last_seq, last);
    // Nothing new at all: nothing written, and the seq of what was there.
    assert_eq!(store.append_updates_again(id, vec![b.clone()], first).await.unwrap(), landed);
    assert_eq!(store.load_state(id).await.unwrap().updates.len(), 3);
}
