//! The wire protocol with real clients: handshake order, echo, convergence, late joiners,
//! offline edits, and refusals before the upgrade.

use crate::docs::assert_http_error;
use crate::helpers::{Backend, Client, Received, TestApp};
use crate::on_both_backends;

on_both_backends!(
    handshake_starts_with_step1_after_load,
    updates_are_echoed_to_the_sender,
    two_clients_converge_under_concurrent_edits,
    late_joiner_gets_the_full_state,
    offline_edits_merge_both_ways,
    typing_before_the_offline_edits_went_out_loses_nothing,
    refused_before_upgrade,
    bursts_of_updates_converge_and_persist,
);

async fn handshake_starts_with_step1_after_load(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("handshake").await;
    let mut writer = app.client(&id).await;
    writer.synced().await;
    writer.append("stored text").await;
    writer.wait_until("echo", |c| c.received.contains(&Received::Update)).await;
    drop(writer);
    // Restart, so that the next connection must wait for a load from the store.
    let app = app.restart().await;
    let mut reader = app.client(&id).await;
    reader.synced().await;
    // The server speaks first with its state vector; it answered our step 1 with its state.
    assert_eq!(reader.received.first(), Some(&Received::Step1), "{:?}", reader.received);
    assert_eq!(reader.text(), "stored text");
}

async fn updates_are_echoed_to_the_sender(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("echo").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    let before = client.received.len();
    client.append("x").await;
    client.wait_until("own update comes back", |c| c.received[before..].contains(&Received::Update)).await;
}

async fn two_clients_converge_under_concurrent_edits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("race").await;
    let mut a = app.client(&id).await;
    let mut b = app.client(&id).await;
    a.synced().await;
    b.synced().await;
    // Both type at the same position without waiting for each other.
    for i in 0..20 {
        a.insert(0, &format!("a{i} ")).await;
        b.insert(0, &format!("b{i} ")).await;
    }
    let expected_len = (0..20).map(|i| format!("a{i} ").len() * 2).sum::<usize>();
    a.wait_until("a has everything", |c| c.text().len() == expected_len).await;
    b.wait_until("b has everything", |c| c.text().len() == expected_len).await;
    assert_eq!(a.text(), b.text());
    for i in 0..20 {
        assert!(a.text().contains(&format!("a{i} ")) && a.text().contains(&format!("b{i} ")));
    }
    assert_eq!(app.text(&id).await, a.text());
}

async fn late_joiner_gets_the_full_state(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("late").await;
    let mut early = app.client(&id).await;
    early.synced().await;
    for word in ["one ", "two ", "three"] {
        early.append(word).await;
    }
    early.settled().await;
    let mut late = app.client(&id).await;
    late.synced().await;
    assert_eq!(late.text(), "one two three");
}

async fn offline_edits_merge_both_ways(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("offline").await;
    let mut a = app.client(&id).await;
    let mut b = app.client(&id).await;
    a.synced().await;
    b.synced().await;
    a.append("shared. ").await;
    b.wait_for_text("shared. ").await;
    a.settled().await;

    // A drops off the network (no close frame) and keeps typing; B types meanwhile.
    a.edit_offline(8, "from A offline. ");
    let a_doc = a.into_doc();
    b.append("from B online. ").await;
    b.settled().await;

    // A comes back with its document: both sides end up with both edits.
    let mut a = Client::connect_with(&app.ws_url(&id), a_doc).await;
    a.synced().await;
    let both = |t: &str| {
        t.contains("from A offline. ") && t.contains("from B online. ") && t.starts_with("shared. ")
    };
    a.wait_until("A has B's edit", |c| both(&c.text())).await;
    b.wait_until("B has A's offline edit", |c| both(&c.text())).await;
    assert_eq!(a.text(), b.text());
    assert_eq!(app.text(&id).await, a.text());
}

/// A client back from offline types at once, before its step 2 (with what it typed offline)
/// went out, as the stock provider may: its update skips clocks the server has not seen. It
/// is held back, not applied, and the client is asked for a step 2, which brings both; the
/// connection stays open (closing it would have the client reconnect and do it again).
async fn typing_before_the_offline_edits_went_out_loses_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("typing at once").await;
    let mut watcher = app.client(&id).await;
    watcher.synced().await;
    let offline = yrs::Doc::new();
    {
        use yrs::{Text, Transact};
        offline.get_or_insert_text("content").insert(&mut offline.transact_mut(), 0, "typed offline; ");
    }
    // Sends its step 1, then at once an update that follows the offline edit; only then does
    // it read the server's step 1 and answer it.
    let mut back = Client::connect_with(&app.ws_url(&id), offline).await;
    back.append("typed at once").await;
    back.synced().await;
    let both = |t: &str| t == "typed offline; typed at once";
    back.wait_until("the server has both", |c| c.received.contains(&Received::Step2) && both(&c.text()))
        .await;
    watcher.wait_until("the watcher has both", |c| both(&c.text())).await;
    assert!(back.closed.is_none(), "closed: {:?}", back.closed);
    assert_eq!(app.text(&id).await, "typed offline; typed at once");
}

async fn refused_before_upgrade(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let err = tokio_tungstenite::connect_async(app.ws_url(&unknown)).await.expect_err("unknown doc");
    assert_http_error(err, 404);
    for bad in ["not-a-uuid", "1234"] {
        let err = tokio_tungstenite::connect_async(app.ws_url(bad)).await.expect_err("malformed id");
        assert_http_error(err, 400);
    }
    // A plain GET (no upgrade) to a real document is refused with JSON too.
    let id = app.create_doc("plain").await;
    let resp = app.http.get(app.url(&format!("/ws/{id}"))).send().await.unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"].is_string());
}

/// Many updates arriving at once (here, a hundred messages per WebSocket frame from each of
/// two clients) are applied together; nothing of them may be lost on the way to the others
/// or to the store.
async fn bursts_of_updates_converge_and_persist(backend: Backend) {
    use yrs::sync::{Message, SyncMessage};
    use yrs::updates::encoder::Encode;
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("bursts").await;
    let mut a = app.client(&id).await;
    let mut b = app.client(&id).await;
    a.synced().await;
    b.synced().await;
    for round in 0..3 {
        for (client, letter) in [(&mut a, 'a'), (&mut b, 'b')] {
            // Sixteen messages to a frame, the most the server takes.
            for first in (0..100).step_by(16) {
                let mut frame = Vec::new();
                for i in first..(first + 16).min(100) {
                    let update = client.edit_offline(0, &format!("{letter}{round}.{i};"));
                    frame.extend(Message::Sync(SyncMessage::Update(update)).encode_v1());
                }
                client.send_raw(frame).await;
            }
        }
    }
    let expected_len: usize =
        (0..3).flat_map(|r| (0..100).map(move |i| format!("a{r}.{i};").len() * 2)).sum();
    a.wait_until("A has both bursts", |c| c.text().len() == expected_len).await;
    b.wait_until("B has both bursts", |c| c.text().len() == expected_len).await;
    assert_eq!(a.text(), b.text());
    let text = a.text();
    drop((a, b));
    assert_eq!(app.text(&id).await, text);
    let app = app.restart().await;
    assert_eq!(app.text(&id).await, text);
}
