//! Limits on what one connection may make the server do: document size, messages per
//! frame, the message rate (which slows a client down instead of closing it), frame
//! deadlines and pings. Each holds for the offender only; everyone else carries on.

use std::time::Duration;

use crate::helpers::{Backend, Client, PATIENCE, TestApp};
use crate::on_both_backends;
use crate::wire::{RawSocket, client_frame, op};

on_both_backends!(an_update_past_the_document_size_limit_is_refused_with_1009);

async fn an_update_past_the_document_size_limit_is_refused_with_1009(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.max_doc_bytes = 4096).await;
    let id = app.create_doc("bounded").await;
    let mut writer = app.client(&id).await;
    let mut bystander = app.client(&id).await;
    writer.synced().await;
    bystander.synced().await;
    let fits = "a".repeat(2000);
    writer.append(&fits).await;
    writer.settled().await;
    // This one would take the document past 4 KiB: not applied, stored or broadcast.
    writer.append(&"b".repeat(3000)).await;
    let close = writer.wait_closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009, "{}", close.reason);
    assert!(close.reason.contains("document too big"), "{}", close.reason);
    // Small edits still fit, from others.
    bystander.wait_for_text(&fits).await;
    bystander.append("c").await;
    bystander.settled().await;
    let expected = format!("{fits}c");
    assert_eq!(app.text(&id).await, expected);
    assert_eq!(bystander.text(), expected, "the refused update reached a bystander");
    let app = app.restart().await;
    assert_eq!(app.text(&id).await, expected, "the refused update was stored");
}

/// A document with a writer who typed "intact", for the tests below.
async fn served(tweak: impl FnOnce(&mut tandem::config::Config)) -> (TestApp, String, Client) {
    let app = TestApp::spawn_with(Backend::Sqlite, tweak).await;
    let id = app.create_doc("limits").await;
    let mut bystander = app.client(&id).await;
    bystander.synced().await;
    bystander.append("intact").await;
    bystander.settled().await;
    (app, id, bystander)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_writing_as_fast_as_it_can_is_slowed_down_never_closed() {
    // The defaults: 1,000 messages a second, bursts of 5,000.
    let (app, id, mut bystander) = served(|_| {}).await;
    let mut writer = app.client(&id).await;
    writer.synced().await;
    let start = writer.text().chars().count() as u32;
    for i in 0..20_000u32 {
        writer.insert(start + i, "x").await;
    }
    // The socket buffers take most of the 20,000 at once; the server reads 5,000 at once and
    // then 1,000 a second: at least 15 s of echoes to wait for.
    writer.settled_within(Duration::from_secs(15) + PATIENCE * 2).await;
    assert!(writer.closed.is_none(), "the fast writer was closed: {:?}", writer.closed);
    let expected = format!("intact{}", "x".repeat(20_000));
    assert_eq!(app.text(&id).await, expected, "an update was lost");
    bystander.wait_for_text(&expected).await;
    let metrics = app.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let throttled = crate::metrics::sample(&metrics, "tandem_throttled_total").unwrap();
    assert!(throttled >= 1.0, "the writer was never held back:\n{metrics}");
    assert_eq!(crate::metrics::sample(&metrics, r#"tandem_websocket_closes_total{code="1008"}"#), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_messages_in_a_frame_than_allowed_close_with_1008() {
    let (app, id, bystander) = served(|c| c.max_messages_per_frame = 16).await;
    // Sixteen query-awareness messages in one frame are fine...
    let mut fine = RawSocket::open(&app, &id).await;
    fine.send(&client_frame(op::BINARY, &[3u8; 16])).await;
    // ...seventeen are not, nor are 8 MiB of them: refused after the seventeenth, so the
    // huge frame costs no more than the small one.
    for count in [17usize, 8 << 20] {
        let mut socket = RawSocket::open(&app, &id).await;
        socket.send(&client_frame(op::BINARY, &vec![3u8; count])).await;
        let payload = socket.close_payload().await;
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008, "{count} messages");
        assert!(String::from_utf8_lossy(&payload[2..]).contains("too many messages"), "{payload:?}");
    }
    fine.send(&client_frame(op::PING, b"still open")).await;
    assert_eq!(fine.next_frame_of(0xA).await.as_deref(), Some(&b"still open"[..]));
    still_intact(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_answered_with_the_latest_pong_only() {
    let (app, id, bystander) = served(|c| c.max_messages_per_sec = 20_000).await;
    let mut socket = RawSocket::open(&app, &id).await;
    let mut flood = Vec::new();
    for i in 0..60_000u32 {
        flood.extend_from_slice(&client_frame(op::PING, &i.to_be_bytes()));
    }
    socket.send(&flood).await;
    // The pongs carry the payloads of the pings they answer; the last ping is answered.
    let mut pongs = 0;
    loop {
        let payload = socket.next_frame_of(0xA).await.expect("a pong");
        pongs += 1;
        if payload == 59_999u32.to_be_bytes() {
            break;
        }
    }
    assert!(pongs < 1_000, "{pongs} pongs for 60,000 pings");
    still_intact(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_trickled_in_is_closed_with_1008_at_its_deadline() {
    let (app, id, bystander) = served(|c| c.frame_timeout_ms = 500).await;
    let mut socket = RawSocket::open(&app, &id).await;
    // A frame of 1,000 bytes, sent ten bytes at a time, every 100 ms: each byte is no sign of
    // life, and the frame would take ten seconds.
    let frame = client_frame(op::BINARY, &[0u8; 1000]);
    for chunk in frame.chunks(10) {
        if !socket.try_send(chunk).await {
            break; // closed (the close frame waits in our receive buffer)
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let payload = socket.close_payload().await;
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
    assert!(String::from_utf8_lossy(&payload[2..]).contains("not completed in time"));
    still_intact(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_left_unfinished_is_closed_with_1008_at_its_deadline() {
    let (app, id, bystander) = served(|c| c.frame_timeout_ms = 500).await;
    let mut socket = RawSocket::open(&app, &id).await;
    // Whole frames, one every 100 ms, each a fragment of one message that never ends: the
    // frames are complete, the message is not, and pings between them change nothing.
    let mut frames = vec![client_frame(op::BINARY & op::MORE, &[0])];
    for i in 0..100u8 {
        frames.push(client_frame(op::PING, &[i]));
        frames.push(client_frame(op::CONTINUATION & op::MORE, &[i]));
    }
    for frame in frames {
        if !socket.try_send(&frame).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let payload = socket.close_payload().await;
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
    assert!(String::from_utf8_lossy(&payload[2..]).contains("not completed in time"));
    still_intact(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_rate_a_client_waits_and_everything_arrives() {
    // 50 a second, bursts of 250: 600 updates take seven seconds or so, unclosed.
    let (app, id, _bystander) = served(|c| c.max_messages_per_sec = 50).await;
    let mut writer = app.client(&id).await;
    writer.synced().await;
    for i in 0..600u32 {
        writer.insert(6 + i, "y").await;
    }
    writer.settled().await;
    assert!(writer.closed.is_none());
    assert_eq!(app.text(&id).await, format!("intact{}", "y".repeat(600)));
}

/// The bystander still edits and the document is whole.
async fn still_intact(app: &TestApp, id: &str, mut bystander: Client) {
    bystander.append(" and alive").await;
    bystander.settled().await;
    assert!(app.text(id).await.starts_with("intact"));
}
