//! Races: a document deleted while clients edit it and others are joining it; twenty REST
//! clients creating, renaming and deleting documents at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use yrs::Doc;

use crate::helpers::{Backend, PATIENCE, TestApp};
use crate::kit::figures;
use crate::kit::replica::{Replica, Style, wait_all};
use crate::kit::stored::Reader;
use crate::on_both_backends;

on_both_backends!(
    a_document_deleted_under_its_clients_closes_them_with_4404_and_stays_deleted,
    twenty_rest_clients_at_once_leave_a_consistent_list,
);

const EDITORS: usize = 5;
const JOINERS: usize = 10;

async fn a_document_deleted_under_its_clients_closes_them_with_4404_and_stays_deleted(backend: Backend) {
    let test = format!("delete under clients ({backend:?})");
    let app = TestApp::spawn(backend).await;
    let reader = Reader::new(&app.db).await;
    let id = app.create_doc("doomed").await;
    let editors: Vec<Replica> = (0..EDITORS).map(|_| Replica::spawn(app.ws_url(&id))).collect();
    let all: Vec<&Replica> = editors.iter().collect();
    wait_all(&all, "synced", PATIENCE, |r| r.log(|l| l.synced > 0)).await;
    for editor in &editors {
        editor.type_every(Duration::from_millis(10));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Others join while the delete is on its way: each is refused (404) or closed (4404).
    let joiners: Vec<Replica> = (0..JOINERS).map(|_| Replica::spawn(app.ws_url(&id))).collect();
    let resp = app.request(reqwest::Method::DELETE, &format!("/api/docs/{id}")).send().await.unwrap();
    assert_eq!(resp.status(), 204);

    let everyone: Vec<&Replica> = editors.iter().chain(&joiners).collect();
    wait_all(&everyone, "told the document is gone", PATIENCE, |r| r.log(|l| l.finished.is_some())).await;
    let mut endings: HashMap<String, usize> = HashMap::new();
    for replica in &everyone {
        *endings.entry(replica.log(|l| l.finished.clone().unwrap_or_default())).or_default() += 1;
    }
    for editor in &editors {
        assert_eq!(editor.log(|l| l.closed_with(4404)), 1, "an editor was not closed with 4404");
    }
    assert!(endings.keys().all(|e| e == "4404" || e == "404"), "{endings:?}");
    // Coming back (as a client that kept its document would) is refused before the upgrade.
    let back: Vec<Replica> = editors
        .into_iter()
        .map(|editor| Replica::spawn_with(app.ws_url(&id), editor.stop(), Style::default()))
        .collect();
    let returning: Vec<&Replica> = back.iter().collect();
    wait_all(&returning, "refused with 404", PATIENCE, |r| r.log(|l| l.finished.as_deref() == Some("404")))
        .await;
    assert!(back.iter().all(|r| r.log(|l| l.sessions == 0)), "a reconnect to a deleted document opened");

    // Nothing brought it back: not the edits in flight, not the joiners.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for path in [format!("/api/docs/{id}"), format!("/api/docs/{id}/text")] {
        let status = app.request(reqwest::Method::GET, &path).send().await.unwrap().status();
        assert_eq!(status, 404, "GET {path}");
    }
    let stored = reader.stored(&id).await;
    assert_eq!((stored.snapshots, reader.log_rows(&id).await), (0, 0), "rows of the deleted document");
    let late = Replica::spawn_with(app.ws_url(&id), Doc::new(), Style::default());
    wait_all(&[&late], "refused", PATIENCE, |r| r.log(|l| l.finished.is_some())).await;
    figures::report(&test, &format!("{EDITORS} editors and {JOINERS} joiners ended: {endings:?}"));
}

const WORKERS: usize = 20;
const ROUNDS: usize = 12;

/// What the REST clients did, as they saw it.
#[derive(Default)]
struct Ledger {
    /// Every document created, and its owner (the only one who renames it).
    created: Vec<(String, usize)>,
    /// The title each document's owner last set successfully (or created it with).
    titles: HashMap<String, String>,
    /// Successful deletes (204) of each document.
    deletes: HashMap<String, usize>,
    /// Answers by status.
    statuses: HashMap<u16, usize>,
}

async fn twenty_rest_clients_at_once_leave_a_consistent_list(backend: Backend) {
    let test = format!("parallel REST ({backend:?})");
    let app = Arc::new(TestApp::spawn(backend).await);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| tokio::spawn(churn(Arc::clone(&app), Arc::clone(&ledger), worker)))
        .collect();
    for worker in workers {
        worker.await.expect("a REST client panicked");
    }
    let churned = started.elapsed();
    let ledger = Arc::try_unwrap(ledger).ok().expect("the clients are done").into_inner().unwrap();
    let twice: Vec<_> = ledger.deletes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "deleted twice (two 204s): {twice:?}");
    let expected: HashMap<&String, &String> = ledger
        .created
        .iter()
        .filter(|(id, _)| !ledger.deletes.contains_key(id))
        .map(|(id, _)| (id, &ledger.titles[id]))
        .collect();
    let listed = list_all(&app).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (id, _) in &listed {
        *seen.entry(id.clone()).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "listed more than once: {repeated:?}");
    for (id, title) in &listed {
        match expected.get(id) {
            Some(last) => assert_eq!(title, *last, "{id}: not its last title"),
            None => panic!("{id} is listed, but was deleted or never created"),
        }
    }
    assert_eq!(listed.len(), expected.len(), "documents missing from the list");
    figures::report(
        &test,
        &format!(
            "{WORKERS} clients, {} documents created, {} deleted, {} listed at the end, in {:?}; answers {:?}",
            ledger.created.len(),
            ledger.deletes.len(),
            listed.len(),
            churned,
            ledger.statuses
        ),
    );
}

/// One REST client: each round it creates a document, renames one of its own, and deletes
/// one of anyone's (sometimes one already deleted by another).
async fn churn(app: Arc<TestApp>, ledger: Arc<Mutex<Ledger>>, worker: usize) {
    let mut mine: Vec<String> = Vec::new();
    let mut rng = (worker as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for round in 0..ROUNDS {
        let title = format!("w{worker} r{round} created");
        let id = app.create_doc(&title).await;
        {
            let mut ledger = ledger.lock().unwrap();
            ledger.created.push((id.clone(), worker));
            ledger.titles.insert(id.clone(), title);
        }
        mine.push(id);
        let own = &mine[next(&mut rng) as usize % mine.len()];
        let title = format!("w{worker} r{round} renamed");
        let resp = app
            .request(reqwest::Method::PATCH, &format!("/api/docs/{own}"))
            .json(&serde_json::json!({ "title": title }))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(status == 200 || status == 404, "rename: {status}");
        {
            let mut ledger = ledger.lock().unwrap();
            *ledger.statuses.entry(status).or_default() += 1;
            if status == 200 {
                ledger.titles.insert(own.clone(), title);
            }
        }
        if next(&mut rng).is_multiple_of(2) {
            let victim = {
                let ledger = ledger.lock().unwrap();
                ledger.created[next(&mut rng) as usize % ledger.created.len()].0.clone()
            };
            let resp =
                app.request(reqwest::Method::DELETE, &format!("/api/docs/{victim}")).send().await.unwrap();
            let status = resp.status().as_u16();
            assert!(status == 204 || status == 404, "delete: {status}");
            let mut ledger = ledger.lock().unwrap();
            *ledger.statuses.entry(status).or_default() += 1;
            if status == 204 {
                *ledger.deletes.entry(victim).or_default() += 1;
            }
        }
    }
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// Every document the list shows, page by page (small pages: many cursors).
async fn list_all(app: &TestApp) -> Vec<(String, String)> {
    let mut docs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/docs?limit=7&cursor={cursor}"),
            None => "/api/docs?limit=7".to_owned(),
        };
        let page: serde_json::Value =
            app.request(reqwest::Method::GET, &path).send().await.unwrap().json().await.unwrap();
        for doc in page["docs"].as_array().unwrap() {
            docs.push((doc["id"].as_str().unwrap().to_owned(), doc["title"].as_str().unwrap().to_owned()));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return docs,
        }
    }
}
