//! Awareness (cursors, names): states reach everyone, are removed when a connection closes
//! without saying goodbye, are swept when not renewed, and are answered on query.

use serde_json::json;
use yrs::block::ClientID;
use yrs::sync::Message;

use crate::helpers::{Backend, Client, Received, TestApp};

/// A document where Ada (`a`) has announced her state and another client has seen it:
/// `(id, a, other, Ada's client id)`.
async fn ada_seen_by_another(app: &TestApp, title: &str) -> (String, Client, Client, ClientID) {
    let id = app.create_doc(title).await;
    let mut a = app.client(&id).await;
    let mut other = app.client(&id).await;
    a.synced().await;
    other.synced().await;
    a.set_awareness(json!({"user": {"name": "Ada"}})).await;
    let a_id = a.client_id();
    other.wait_until("the other sees Ada", |c| c.awareness_of(a_id).is_some()).await;
    (id, a, other, a_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_reach_everyone_including_late_joiners() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("presence").await;
    let mut a = app.client(&id).await;
    a.synced().await;
    a.set_awareness(json!({"user": {"name": "Ada", "color": "#f00"}})).await;
    let a_id = a.client_id();
    // Echoed to the sender too.
    a.wait_until("own state echoed", |c| c.received.contains(&Received::Awareness)).await;

    let mut b = app.client(&id).await;
    b.wait_until("B sees Ada on connect", |c| c.awareness_of(a_id).is_some()).await;
    // The connect sequence: step 1 first, then the awareness of the others.
    assert_eq!(&b.received[..2], &[Received::Step1, Received::Awareness], "{:?}", b.received);
    assert_eq!(b.awareness_of(a_id).unwrap()["user"]["name"], "Ada");

    b.set_awareness(json!({"user": {"name": "Bob", "color": "#00f"}})).await;
    let b_id = b.client_id();
    a.wait_until("A sees Bob", |c| c.awareness_of(b_id).is_some()).await;

    // A moves its cursor: B sees the new state.
    a.set_awareness(json!({"user": {"name": "Ada", "color": "#f00"}, "cursor": 3})).await;
    b.wait_until("B sees Ada's cursor", |c| c.awareness_of(a_id).is_some_and(|s| s["cursor"] == 3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_of_a_closed_connection_are_removed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (id, a, mut b, a_id) = ada_seen_by_another(&app, "leaving").await;
    // The tab closes: the TCP connection goes, no null state is sent.
    drop(a);
    b.wait_until("Ada's state is removed", |c| c.awareness_of(a_id).is_none()).await;
    // A newcomer does not see her either.
    let mut c = app.client(&id).await;
    c.synced().await;
    assert!(c.awareness_of(a_id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_not_renewed_are_swept() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.awareness_timeout_ms = 300).await;
    let (_, mut a, mut b, a_id) = ada_seen_by_another(&app, "stale").await;
    // A stays connected but never renews: her state times out.
    b.wait_until("Ada's stale state is swept", |c| c.awareness_of(a_id).is_none()).await;
    // A renewing client keeps its state: B's own renewals keep it alive for A.
    b.set_awareness(json!({"user": {"name": "Bob"}})).await;
    let b_id = b.client_id();
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        b.set_awareness(json!({"user": {"name": "Bob"}})).await;
    }
    a.wait_until("A sees Bob", |c| c.awareness_of(b_id).is_some()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_awareness_is_answered() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("query").await;
    let mut a = app.client(&id).await;
    a.synced().await;
    a.set_awareness(json!({"user": {"name": "Ada"}})).await;
    let a_id = a.client_id();
    let mut b = app.client(&id).await;
    b.synced().await;
    b.wait_until("B sees Ada", |c| c.awareness_of(a_id).is_some()).await;
    let before = b.received.iter().filter(|r| **r == Received::Awareness).count();
    b.send_message(Message::AwarenessQuery).await;
    b.wait_until("an answer to the query", |c| {
        c.received.iter().filter(|r| **r == Received::Awareness).count() > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoing_a_state_does_not_take_it_over() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Ada stays connected throughout (`_a`, not `_`, which would drop her at once).
    let (id, _a, mut c, a_id) = ada_seen_by_another(&app, "echoes").await;
    // Stock clients re-send every awareness change they hear; C echoes Ada's state...
    let echo = c.awareness.update_with_clients([a_id]).unwrap();
    c.send_message(Message::Awareness(echo)).await;
    c.send_message(Message::AwarenessQuery).await;
    let before = c.received.len();
    c.wait_until("the query is answered", |c| c.received.len() > before).await;
    // ...and leaves: Ada, still connected, keeps her state.
    drop(c);
    let mut b = app.client(&id).await;
    b.synced().await;
    b.wait_until("B sees Ada", |c| c.awareness_of(a_id).is_some()).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    b.send_message(Message::AwarenessQuery).await;
    let before = b.received.len();
    b.wait_until("the query is answered", |c| c.received.len() > before).await;
    assert!(b.awareness_of(a_id).is_some(), "C's departure removed Ada's state");
}
