//! The embedded web editor: pages, assets, revalidation, compression, and 404s.

use crate::helpers::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_is_served_from_the_binary() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let index = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    let etag = index.headers()["etag"].clone();
    let page = index.text().await.unwrap();
    assert!(page.contains("/assets/app.js"), "{page}");

    // The page's own routes get the same page.
    let doc = app.create_doc("x").await;
    let editor = app.http.get(app.url(&format!("/d/{doc}"))).send().await.unwrap();
    assert_eq!(editor.status(), 200);
    assert_eq!(editor.text().await.unwrap(), page);

    // Unchanged files are not sent again.
    let again = app.http.get(app.url("/")).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(again.status(), 304);

    let script =
        app.http.get(app.url("/assets/app.js")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(script.headers()["content-encoding"], "gzip");

    for missing in ["/assets/nope.js", "/favicon.ico", "/api/nope", "/ws"] {
        let resp = app.http.get(app.url(missing)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{missing}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"].is_string(), "{missing}");
    }
}
