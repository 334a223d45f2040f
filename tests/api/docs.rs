//! The REST contract: status codes, JSON shapes, ordering, paging, and every error case.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    create_get_rename_delete,
    list_pages_newest_first,
    text_is_the_live_content,
    delete_closes_open_connections,
    errors_are_json_with_fitting_status,
);

async fn json_body(resp: reqwest::Response) -> Value {
    resp.json().await.expect("a JSON body")
}

/// The error body is `{"error": "<message>"}` and nothing else.
async fn assert_error(resp: reqwest::Response, status: StatusCode, what: &str) {
    assert_eq!(resp.status(), status, "{what}");
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{what}: content type"
    );
    let body = json_body(resp).await;
    let message = body["error"].as_str().unwrap_or_else(|| panic!("{what}: no error message in {body}"));
    assert!(!message.is_empty(), "{what}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{what}: only the error field: {body}");
}

fn assert_doc_shape(doc: &Value) {
    let id = doc["id"].as_str().expect("id");
    assert!(id.parse::<uuid::Uuid>().is_ok(), "{id}");
    assert!(doc["title"].is_string());
    for field in ["created_at", "updated_at"] {
        let stamp = doc[field].as_str().expect(field);
        assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{field}: {stamp}");
    }
}

async fn create_get_rename_delete(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let resp = app.http.post(app.url("/api/docs")).json(&json!({"title": "  Plans  "})).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let doc = json_body(resp).await;
    assert_doc_shape(&doc);
    assert_eq!(doc["title"], "Plans");
    assert_eq!(doc["created_at"], doc["updated_at"]);
    let id = doc["id"].as_str().unwrap();

    // No body at all: the default title.
    let resp = app.http.post(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(json_body(resp).await["title"], "Untitled");
    let resp = app.http.post(app.url("/api/docs")).json(&json!({})).send().await.unwrap();
    assert_eq!(json_body(resp).await["title"], "Untitled");

    let got = json_body(app.http.get(app.url(&format!("/api/docs/{id}"))).send().await.unwrap()).await;
    assert_eq!(got, doc);

    let resp = app
        .http
        .patch(app.url(&format!("/api/docs/{id}")))
        .json(&json!({"title": "Plans, revised"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let renamed = json_body(resp).await;
    assert_eq!(renamed["title"], "Plans, revised");
    assert_eq!(renamed["created_at"], doc["created_at"]);
    assert!(renamed["updated_at"].as_str() > doc["updated_at"].as_str());
    let got = json_body(app.http.get(app.url(&format!("/api/docs/{id}"))).send().await.unwrap()).await;
    assert_eq!(got["title"], "Plans, revised");

    let resp = app.http.delete(app.url(&format!("/api/docs/{id}"))).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(resp.text().await.unwrap().is_empty());
    let resp = app.http.get(app.url(&format!("/api/docs/{id}"))).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "get after delete").await;
    let resp = app.http.delete(app.url(&format!("/api/docs/{id}"))).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "delete twice").await;
}

async fn list_pages_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(app.create_doc(&format!("doc {i}")).await);
    }
    // Renaming makes a document the most recently updated.
    let first = created[0].clone();
    app.http
        .patch(app.url(&format!("/api/docs/{first}")))
        .json(&json!({"title": "bumped"}))
        .send()
        .await
        .unwrap();
    let mut expected: Vec<String> = created[1..].iter().rev().cloned().collect();
    expected.insert(0, first);

    let all = json_body(app.http.get(app.url("/api/docs")).send().await.unwrap()).await;
    let ids: Vec<&str> = all["docs"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected);
    assert!(all["next_cursor"].is_null());
    all["docs"].as_array().unwrap().iter().for_each(assert_doc_shape);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = app.url("/api/docs?limit=3");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page = json_body(app.http.get(url).send().await.unwrap()).await;
        pages += 1;
        let docs = page["docs"].as_array().unwrap();
        assert!(docs.len() <= 3);
        seen.extend(docs.iter().map(|d| d["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    for bad in [
        "/api/docs?limit=0",
        "/api/docs?limit=501",
        "/api/docs?limit=abc",
        "/api/docs?cursor=garbage",
        "/api/docs?cursor=1.2",
    ] {
        let resp = app.http.get(app.url(bad)).send().await.unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, bad).await;
    }
    let resp = app.http.get(app.url("/api/docs?limit=500")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

async fn text_is_the_live_content(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("text").await;
    let resp = app.http.get(app.url(&format!("/api/docs/{id}/text"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.text().await.unwrap(), "");

    let mut client = app.client(&id).await;
    client.synced().await;
    client.append("héllo wörld ✓").await;
    client.wait_until("echoed", |c| c.received.contains(&crate::helpers::Received::Update)).await;
    assert_eq!(app.text(&id).await, "héllo wörld ✓");
}

async fn delete_closes_open_connections(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("doomed").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    client.append("soon gone").await;
    let resp = app.http.delete(app.url(&format!("/api/docs/{id}"))).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let close = client.wait_closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4404);
    assert_eq!(close.reason.as_str(), "document deleted");
    // Reconnecting is refused before the upgrade.
    let err = tokio_tungstenite::connect_async(app.ws_url(&id)).await.expect_err("refused");
    assert_http_error(err, 404);
    let resp = app.http.get(app.url(&format!("/api/docs/{id}/text"))).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

pub fn assert_http_error(err: tokio_tungstenite::tungstenite::Error, status: u16) {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), status);
            let body = resp.body().as_deref().unwrap_or_default();
            let body: Value = serde_json::from_slice(body).expect("JSON error body");
            assert!(body["error"].is_string(), "{body}");
        }
        other => panic!("expected an HTTP {status} refusal, got {other}"),
    }
}

async fn errors_are_json_with_fitting_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("target").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let doc = |id: &str| app.url(&format!("/api/docs/{id}"));

    for bad_id in ["nope", "123", "0b5e2d0c8f434a8e9a393c6f1f4f2b1a", "%00"] {
        let resp = app.http.get(doc(bad_id)).send().await.unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "get malformed id").await;
        let resp = app.http.patch(doc(bad_id)).json(&json!({"title": "x"})).send().await.unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "patch malformed id").await;
        let resp = app.http.delete(doc(bad_id)).send().await.unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "delete malformed id").await;
        let resp = app.http.get(app.url(&format!("/api/docs/{bad_id}/text"))).send().await.unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "text malformed id").await;
    }
    let resp = app.http.get(doc(&unknown)).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "get unknown").await;
    let resp = app.http.patch(doc(&unknown)).json(&json!({"title": "x"})).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "patch unknown").await;
    let resp = app.http.delete(doc(&unknown)).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "delete unknown").await;
    let resp = app.http.get(app.url(&format!("/api/docs/{unknown}/text"))).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "text unknown").await;

    let send = |method: reqwest::Method, url: String, body: &'static str| {
        app.http.request(method, url).header("content-type", "application/json").body(body).send()
    };
    use reqwest::Method;
    let cases: Vec<(Method, String, &str, StatusCode)> = vec![
        (Method::POST, app.url("/api/docs"), "{\"title\":", StatusCode::BAD_REQUEST),
        (Method::POST, app.url("/api/docs"), "not json", StatusCode::BAD_REQUEST),
        (Method::POST, app.url("/api/docs"), "{\"title\": 5}", StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, app.url("/api/docs"), "{\"title\": \"\"}", StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, app.url("/api/docs"), "{\"title\": \"   \"}", StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, app.url("/api/docs"), "{\"title\": \"a\\u0000b\"}", StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, app.url("/api/docs"), "{\"name\": \"x\"}", StatusCode::UNPROCESSABLE_ENTITY),
        (Method::POST, app.url("/api/docs"), "[]", StatusCode::UNPROCESSABLE_ENTITY),
        (Method::PATCH, doc(&id), "{}", StatusCode::UNPROCESSABLE_ENTITY),
        (Method::PATCH, doc(&id), "{\"title\": null}", StatusCode::UNPROCESSABLE_ENTITY),
        (Method::PATCH, doc(&id), "{\"title\"", StatusCode::BAD_REQUEST),
    ];
    for (method, url, body, status) in cases {
        let resp = send(method.clone(), url, body).await.unwrap();
        assert_error(resp, status, &format!("{method} {body}")).await;
    }
    let long = "x".repeat(201);
    let resp = app.http.post(app.url("/api/docs")).json(&json!({"title": long})).send().await.unwrap();
    assert_error(resp, StatusCode::UNPROCESSABLE_ENTITY, "title too long").await;

    let huge = format!("{{\"title\": \"{}\"}}", "x".repeat(100_000));
    let resp = app
        .http
        .post(app.url("/api/docs"))
        .header("content-type", "application/json")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "create too large").await;
    let resp =
        app.http.patch(doc(&id)).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "rename too large").await;

    let resp = app.http.patch(doc(&id)).body("{\"title\": \"x\"}").send().await.unwrap();
    assert_error(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE, "rename without content type").await;

    let resp = app.http.get(app.url("/api/nothing-here")).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "unknown API path").await;
    let resp = app.http.put(app.url("/api/docs")).send().await.unwrap();
    assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "wrong method").await;

    // The document is untouched by all of the above.
    let got = json_body(app.http.get(doc(&id)).send().await.unwrap()).await;
    assert_eq!(got["title"], "target");
}
