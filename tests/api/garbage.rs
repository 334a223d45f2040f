//! Bad input on the socket, one case per test: the offending connection is closed with a
//! clear code (or the message ignored, where the protocol says so), while another client of
//! the same document keeps working and the document stays intact.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::sync::protocol::{MSG_AWARENESS, MSG_SYNC, MSG_SYNC_UPDATE};
use yrs::updates::encoder::Encode;

use crate::helpers::{TestApp, raw_socket, read_until_closed, setup, still_serving};

async fn closed_with(app: &TestApp, id: &str, frames: Vec<WsMessage>, code: u16) {
    let mut socket = raw_socket(app, id).await;
    for frame in frames {
        if socket.send(frame).await.is_err() {
            break;
        }
    }
    let close = read_until_closed(&mut socket).await.expect("a close frame");
    assert_eq!(u16::from(close.code), code, "reason: {}", close.reason);
    assert!(!close.reason.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_closes_with_1003() {
    let (app, id, bystander) = setup(|_| {}).await;
    closed_with(&app, &id, vec![WsMessage::text("hello?")], 1003).await;
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_type_is_ignored() {
    let (app, id, bystander) = setup(|_| {}).await;
    let mut client = app.client(&id).await;
    client.synced().await;
    client.send_raw(vec![42, 1, 2, 3]).await;
    client.send_raw(vec![200, 1, 7]).await;
    // Still connected and heard: its next edit reaches everyone, itself included.
    client.append("!").await;
    client.settled().await;
    let mut bystander = bystander;
    bystander.wait_for_text("intact!").await;
    assert_eq!(app.text(&id).await, "intact!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_varint_closes_with_1007() {
    let (app, id, bystander) = setup(|_| {}).await;
    closed_with(&app, &id, vec![WsMessage::binary(vec![0x80])], 1007).await;
    closed_with(&app, &id, vec![WsMessage::binary(vec![MSG_SYNC, MSG_SYNC_UPDATE, 0xff])], 1007).await;
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_does_not_decode_closes_with_1007() {
    let (app, id, bystander) = setup(|_| {}).await;
    let garbage = vec![MSG_SYNC, MSG_SYNC_UPDATE, 5, 0xde, 0xad, 0xbe, 0xef, 0x01];
    closed_with(&app, &id, vec![WsMessage::binary(garbage)], 1007).await;
    let bad_awareness = vec![MSG_AWARENESS, 3, 1, 1, 1];
    closed_with(&app, &id, vec![WsMessage::binary(bad_awareness)], 1007).await;
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_size_limit_closes_with_1009() {
    let (app, id, bystander) = setup(|c| c.max_message_bytes = 4096).await;
    closed_with(&app, &id, vec![WsMessage::binary(vec![0u8; 64 * 1024])], 1009).await;
    still_serving(&app, &id, bystander).await;
}

/// An awareness message whose entries are `(client id, clock, JSON state)`.
fn awareness_message(entries: &[(u64, u32, String)]) -> Vec<u8> {
    use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
    let clients = entries
        .iter()
        .map(|(client, clock, json)| {
            (
                yrs::block::ClientID::new(*client),
                AwarenessUpdateEntry { clock: *clock, json: json.as_str().into() },
            )
        })
        .collect();
    yrs::sync::Message::Awareness(AwarenessUpdate { clients }).encode_v1()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awareness_state_over_64_kib_closes_with_1009() {
    let (app, id, bystander) = setup(|_| {}).await;
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(64 * 1024));
    let frame = awareness_message(&[(7, 1, huge)]);
    closed_with(&app, &id, vec![WsMessage::binary(frame)], 1009).await;
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcing_too_many_awareness_clients_closes_with_1008_and_removes_them() {
    let (app, id, mut bystander) = setup(|_| {}).await;
    let mut spammer = app.client(&id).await;
    spammer.synced().await;
    // Sixteen states from one connection are allowed (and reach the bystander)...
    let states: Vec<_> = (100..116).map(|c| (c, 1, format!("{{\"n\":{c}}}"))).collect();
    spammer.send_raw(awareness_message(&states)).await;
    bystander
        .wait_until("sixteen states arrived", |b| {
            (100..116).all(|c| b.awareness_of(yrs::block::ClientID::new(c)).is_some())
        })
        .await;
    // ...the seventeenth closes the connection, and every state it announced is removed.
    spammer.send_raw(awareness_message(&[(116, 1, "{}".into())])).await;
    let close = spammer.wait_closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008, "{}", close.reason);
    bystander
        .wait_until("the states are removed", |b| {
            (100..117).all(|c| b.awareness_of(yrs::block::ClientID::new(c)).is_none())
        })
        .await;
    still_serving(&app, &id, bystander).await;
}
