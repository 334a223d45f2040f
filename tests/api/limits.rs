//! Limits on what one connection may make the server do: document size, messages per
//! frame, the message rate (which slows a client down instead of closing it), frame
//! deadlines and pings. Each holds for the offender only; everyone else carries on.

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

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
