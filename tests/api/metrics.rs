//! `GET /metrics`: the OpenMetrics text, with figures that follow what happens.

use crate::helpers::{Backend, TestApp, with_auth};

/// The value of one sample (`name` with its labels, as written), if present.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.request(reqwest::Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_connections_documents_and_updates() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let before = scrape(&app).await;
    assert!(before.ends_with("# EOF\n"));
    assert_eq!(sample(&before, "tandem_connections"), Some(0.0));
    assert_eq!(sample(&before, "tandem_documents_open"), Some(0.0));
    let id = app.create_doc("counted").await;
    let mut a = app.client(&id).await;
    let mut b = app.client(&id).await;
    a.synced().await;
    b.synced().await;
    for i in 0..5 {
        a.append(&format!("{i}")).await;
    }
    b.wait_for_text("01234").await;
    let during = scrape(&app).await;
    assert_eq!(sample(&during, "tandem_documents_open"), Some(1.0), "{during}");
    assert_eq!(sample(&during, "tandem_connections"), Some(2.0), "{during}");
    assert_eq!(sample(&during, "tandem_websocket_connects_total"), Some(2.0), "{during}");
    assert!(sample(&during, "tandem_received_bytes_total").unwrap() > 0.0, "{during}");
    assert!(sample(&during, "tandem_frames_sent_total").unwrap() >= 4.0, "{during}");
    assert!(sample(&during, "tandem_updates_applied_total").unwrap() >= 5.0, "{during}");
    assert!(sample(&during, r#"tandem_http_requests_total{status="201"}"#).unwrap() >= 1.0, "{during}");
    assert!(sample(&during, r#"tandem_http_requests_total{status="101"}"#).unwrap() >= 2.0, "{during}");
    assert!(sample(&during, "tandem_tcp_connections").unwrap() >= 2.0, "{during}");
    assert!(sample(&during, "tandem_document_load_seconds_count").unwrap() >= 1.0, "{during}");
    // The batch reaches the store within a few milliseconds.
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        let text = scrape(&app).await;
        let appends = sample(&text, r#"tandem_persist_seconds_count{kind="append"}"#).unwrap_or(0.0);
        if appends >= 1.0 {
            assert!(sample(&text, "tandem_persist_batch_updates_count").unwrap() >= 1.0, "{text}");
            assert_eq!(sample(&text, "tandem_pending_updates"), Some(0.0), "{text}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no write was counted:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A client leaving is counted by its close code (none: the socket just went).
    drop(a);
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    loop {
        let text = scrape(&app).await;
        if sample(&text, "tandem_connections") == Some(1.0) {
            assert_eq!(sample(&text, r#"tandem_websocket_closes_total{code="0"}"#), Some(1.0), "{text}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the departure was not counted:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The editor's page is not what a scraper gets any more.
    assert!(!during.contains("<html"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_metrics_need_an_admin_token_for_every_document() {
    let app = TestApp::spawn_with(Backend::Sqlite, with_auth).await;
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let id = app.create_doc("secret").await;
    let doc_admin = app.doc_token(&id, tandem::auth::Scope::Admin);
    let resp = app.http.get(app.url("/metrics")).bearer_auth(doc_admin).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(scrape(&app).await.contains("tandem_documents_open"));
}
