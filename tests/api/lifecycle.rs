//! The life of a server and its documents: restarts, graceful shutdown, idle unloading, and
//! slow readers.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, TestApp, read_until_closed};
use crate::on_both_backends;
use crate::storage::{append_raw_update, counts, wait_for_counts};

on_both_backends!(
    restart_keeps_every_document,
    shutdown_writes_what_is_pending,
    idle_documents_unload_and_reload_from_the_store,
);

async fn restart_keeps_every_document(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut docs = Vec::new();
    for i in 0..3 {
        let id = app.create_doc(&format!("doc {i}")).await;
        let mut client = app.client(&id).await;
        client.synced().await;
        let text = format!("content of doc {i}: {}", "é".repeat(i * 10));
        client.append(&text).await;
        client.settled().await;
        docs.push((id, text));
    }
    let app = app.restart().await;
    for (id, text) in &docs {
        assert_eq!(&app.text(id).await, text);
        let mut client = app.client(id).await;
        client.synced().await;
        assert_eq!(&client.text(), text);
    }
    let list: serde_json::Value =
        app.http.get(app.url("/api/docs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["docs"].as_array().unwrap().len(), 3);
}

async fn shutdown_writes_what_is_pending(backend: Backend) {
    // A batch window far longer than the test: only the shutdown can have saved the text.
    let app = TestApp::spawn_with(backend, |c| c.flush_ms = 600_000).await;
    let id = app.create_doc("pending").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    client.append("typed just before shutdown").await;
    client.settled().await;
    let (db, config) = app.stop().await;
    let close = client.wait_closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    // Written as one snapshot, so that the next start loads it without replaying a log.
    let stored = counts(&db, &id).await;
    assert_eq!((stored.snapshots, stored.log_rows), (1, 0), "{stored:?}");
    let app = TestApp::start(db, config).await;
    assert_eq!(app.text(&id).await, "typed just before shutdown");
}

async fn idle_documents_unload_and_reload_from_the_store(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.idle_unload_ms = 100).await;
    let id = app.create_doc("idle").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    client.append("typed").await;
    client.settled().await;
    wait_for_counts(&app.db, &id, "the edit is logged", |c| c.log_rows == 1).await;
    drop(client);
    // Unloading folds the log into one snapshot.
    wait_for_counts(&app.db, &id, "the log is folded", |c| c.snapshots == 1 && c.log_rows == 0).await;
    // Once unloaded, a change made in the store behind the server's back shows on the next
    // load; a document still in memory would not show it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    append_raw_update(&app.db, &id, "stored:").await;
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        let text = app.text(&id).await;
        if text.contains("stored:") {
            assert!(text.contains("typed"), "{text}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the document never reloaded: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_closed_with_1013_and_others_carry_on() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.client_queue = 8;
        c.max_messages_per_sec = 0;
    })
    .await;
    let id = app.create_doc("firehose").await;
    // Connects with a tiny receive buffer and never reads: the kernel buffers fill, then its
    // queue on the server.
    let mut slow = tiny_buffer_socket(&app, &id).await;
    let mut writer = app.client(&id).await;
    writer.synced().await;
    // 8 MB in all, more than the kernel buffers hold (loopback send buffers grow to 4 MB);
    // four frames at a time, so that the writer's own echoes fit its queue of eight.
    // Inserting at the start keeps the client's own work per insert constant.
    let chunk = "x".repeat(16 * 1024);
    let rounds = 128;
    for _ in 0..rounds {
        for _ in 0..4 {
            writer.insert(0, &chunk).await;
        }
        writer.settled().await;
    }
    let expected = rounds * 4 * chunk.len();
    let close = read_until_closed(&mut slow).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1013, "{}", close.reason);
    // The writer was never held back, and the document is whole.
    assert_eq!(app.text(&id).await.len(), expected);
    writer.set_awareness(json!({"user": {"name": "still here"}})).await;
    let mut fresh = app.client(&id).await;
    fresh.synced().await;
    assert_eq!(fresh.text().len(), expected);
}

async fn tiny_buffer_socket(
    app: &TestApp,
    id: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    tokio_tungstenite::client_async(app.ws_url(id), stream).await.expect("websocket handshake").0
}
