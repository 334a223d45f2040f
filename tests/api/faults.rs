//! Real faults, each with what must not be lost: a delete the database refuses, a database
//! that refuses sessions while documents are open, a burst of updates whose dependency is
//! missing.

use std::time::Duration;

use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, Text, Transact};

use crate::helpers::{Backend, Client, PATIENCE, TestApp};
use crate::on_both_backends;

on_both_backends!(a_delete_the_database_refuses_loses_nothing);

async fn a_delete_the_database_refuses_loses_nothing(backend: Backend) {
    // A long batch window: the edit below is still pending when the delete comes.
    let app = TestApp::spawn_with(backend, |c| c.flush_ms = 600_000).await;
    let id = app.create_doc("kept").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    client.append("pending edit").await;
    client.settled().await;
    app.db.refuse("delete", "documents").await;
    let resp = app.request(reqwest::Method::DELETE, &format!("/api/docs/{id}")).send().await.unwrap();
    assert_eq!(resp.status(), 503, "a refused delete is the database's failure");
    assert!(resp.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    // The session carries on and the edit is still there, in memory and, after a restart,
    // in the store.
    client.append(", and more").await;
    client.settled().await;
    assert_eq!(app.text(&id).await, "pending edit, and more");
    app.db.allow("delete", "documents").await;
    drop(client);
    let app = app.restart().await;
    assert_eq!(app.text(&id).await, "pending edit, and more");
    // Deleting works again, and closes sessions with 4404.
    let mut late = app.client(&id).await;
    late.synced().await;
    let resp = app.request(reqwest::Method::DELETE, &format!("/api/docs/{id}")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(u16::from(late.wait_closed().await.expect("a close frame").code), 4404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_refusing_sessions_is_a_503_and_open_documents_carry_on() {
    let Some(backend) = Backend::postgres_or_skip(
        "faults::a_database_refusing_sessions_is_a_503_and_open_documents_carry_on",
    ) else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("open during the outage").await;
    let mut a = app.client(&id).await;
    a.synced().await;
    a.append("before;").await;
    a.settled().await;

    app.db.refuse_sessions(true).await;
    // REST on the database: 503, not 500.
    for (method, path) in
        [(reqwest::Method::GET, "/api/docs".to_owned()), (reqwest::Method::POST, "/api/docs".to_owned())]
    {
        let resp = app.request(method.clone(), &path).send().await.unwrap();
        assert_eq!(resp.status(), 503, "{method} {path}");
        assert!(resp.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    }
    assert_eq!(app.http.get(app.url("/readyz")).send().await.unwrap().status(), 503);
    // The open document: new collaborators join, edits flow, its text is served.
    let mut b = app.client(&id).await;
    b.synced().await;
    a.append("during;").await;
    b.wait_for_text("before;during;").await;
    assert_eq!(app.text(&id).await, "before;during;");

    app.db.refuse_sessions(false).await;
    // Once the database answers again, the pending edit is written; a restart shows it.
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    while app.http.get(app.url("/readyz")).send().await.unwrap().status() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((a, b));
    let app = app.restart().await;
    assert_eq!(app.text(&id).await, "before;during;");
}

/// One frame carrying two update messages: the server's actor takes them as one burst.
fn two_updates_in_one_frame(first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut frame = Message::Sync(SyncMessage::Update(first.to_vec())).encode_v1();
    frame.extend(Message::Sync(SyncMessage::Update(second.to_vec())).encode_v1());
    frame
}

fn edit(doc: &Doc, at: u32, text: &str) -> Vec<u8> {
    let before = doc.transact().state_vector();
    doc.get_or_insert_text("content").insert(&mut doc.transact_mut(), at, text);
    doc.transact().encode_state_as_update_v1(&before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_missing_a_dependency_reaches_every_peer_without_a_reconnect() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("bursts").await;
    let mut sender = app.client(&id).await;
    let mut peer = app.client(&id).await;
    sender.synced().await;
    peer.synced().await;
    // Made elsewhere: Ada's edit, Bob's that depends on it, and Carol's unrelated one.
    let ada = Doc::new();
    let first = edit(&ada, 0, "abc");
    let bob = Doc::new();
    bob.transact_mut().apply_update(yrs::Update::decode_v1(&first).unwrap()).unwrap();
    let second = edit(&bob, 3, "def");
    let carol = Doc::new();
    let unrelated = edit(&carol, 0, "xyz");
    sender.send_raw(two_updates_in_one_frame(&second, &unrelated)).await;
    sender.send_message(Message::Sync(SyncMessage::Update(first))).await;
    // Both ends hold all nine characters, the peer without reconnecting.
    peer.wait_until("the peer holds everything", |c| c.text().len() == 9).await;
    sender.wait_until("the sender holds everything", |c| c.text().len() == 9).await;
    assert_eq!(peer.text(), sender.text());
    assert_eq!(app.text(&id).await, peer.text());
    assert!(peer.closed.is_none());
    let fresh = Client::connect(&app.ws_url(&id)).await;
    let mut fresh = fresh;
    fresh.synced().await;
    assert_eq!(fresh.text(), peer.text());
}
