//! Version history: versions kept when editing pauses and on request, their exact text,
//! restores seen live by everyone (cursors elsewhere staying put), retention, compaction and
//! restarts leaving versions alone, access, and garbage on every input.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tandem::auth::{Docs, Scope};
use tandem::config::Config;
use tandem::model::{DocId, Label, Reason};
use tandem::store::{NewVersion, Retention, Store};
use yrs::{Assoc, IndexedSequence, Transact};

use crate::helpers::{Backend, PATIENCE, TestApp, TestDb, with_auth};
use crate::on_both_backends;

on_both_backends!(
    a_burst_makes_one_version_and_a_pause_then_more_editing_another,
    a_long_session_gets_a_version_at_least_every_interval,
    a_version_on_request_keeps_the_text_of_that_moment_exactly,
    a_restore_reaches_every_editor_live_and_leaves_other_cursors_in_place,
    a_restore_can_be_undone_by_restoring_the_version_before_it,
    retention_thins_old_versions_and_keeps_labelled_ones,
    compaction_and_restarts_leave_versions_intact,
);

/// Versions after a pause of 400 ms (tests cannot wait a minute).
fn quick_versions(config: &mut Config) {
    config.version_after_idle = Duration::from_millis(400);
}

async fn versions(app: &TestApp, id: &str) -> Vec<Value> {
    let resp = app.request(Method::GET, &format!("/api/docs/{id}/versions")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["versions"].as_array().expect("versions").clone()
}

/// Waits until the document has `n` versions; returns them, newest first.
async fn wait_for_versions(app: &TestApp, id: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let found = versions(app, id).await;
        if found.len() >= n {
            assert_eq!(found.len(), n, "more versions than expected: {found:#?}");
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} versions, waited for {n}", found.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn make_version(app: &TestApp, id: &str, label: Option<&str>) -> Value {
    let request = app.request(Method::POST, &format!("/api/docs/{id}/versions"));
    let request = match label {
        Some(label) => request.json(&json!({ "label": label })),
        None => request,
    };
    let resp = request.send().await.unwrap();
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

async fn version_text(app: &TestApp, id: &str, vid: &str) -> String {
    let resp = app.request(Method::GET, &format!("/api/docs/{id}/versions/{vid}/text")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    resp.text().await.unwrap()
}

async fn restore(app: &TestApp, id: &str, vid: &str) -> Value {
    let resp =
        app.request(Method::POST, &format!("/api/docs/{id}/versions/{vid}/restore")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn a_burst_makes_one_version_and_a_pause_then_more_editing_another(backend: Backend) {
    let app = TestApp::spawn_with(backend, quick_versions).await;
    let id = app.create_doc("bursts").await;
    let mut ada = app.client(&id).await;
    ada.synced().await;
    ada.set_awareness(json!({"user": {"name": "Ada", "color": "#c33"}})).await;
    for word in ["one ", "two ", "three "] {
        ada.append(word).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ada.settled().await;
    let first = wait_for_versions(&app, &id, 1).await;
    assert_eq!(first[0]["reason"], "auto");
    assert_eq!(first[0]["label"], Value::Null);
    assert_eq!(first[0]["editors"], json!(["Ada"]));
    assert_eq!(version_text(&app, &id, first[0]["id"].as_str().unwrap()).await, "one two three ");
    // Nothing changes: no more versions.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(versions(&app, &id).await.len(), 1);

    // Bo edits after the pause: another version, with his name only.
    let mut bo = app.client(&id).await;
    bo.synced().await;
    bo.set_awareness(json!({"user": {"name": "Bo"}})).await;
    bo.append("four").await;
    bo.settled().await;
    let both = wait_for_versions(&app, &id, 2).await;
    assert_eq!(both[0]["editors"], json!(["Bo"]));
    assert_eq!(version_text(&app, &id, both[0]["id"].as_str().unwrap()).await, "one two three four");
    assert_eq!(both[1]["id"], first[0]["id"], "newest first");
    // Created at, in RFC 3339, in order.
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str().unwrap()).unwrap();
    assert!(at(&both[0]) > at(&both[1]));
}

async fn a_long_session_gets_a_version_at_least_every_interval(backend: Backend) {
    // The pause never comes (30 s); the interval (600 ms) does, while the typing goes on.
    let app = TestApp::spawn_with(backend, |config| {
        config.version_after_idle = Duration::from_secs(30);
        config.version_every = Duration::from_millis(600);
    })
    .await;
    let id = app.create_doc("long session").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut i = 0;
    let kept = loop {
        client.append(&format!("{i} ")).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let kept = versions(&app, &id).await;
        if kept.len() >= 2 {
            break kept;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} versions while typing", kept.len());
    };
    client.settled().await;
    // Each holds what was typed up to then: a beginning of the text now.
    let now = client.text();
    for version in &kept {
        assert_eq!(version["reason"], "auto");
        let text = version_text(&app, &id, version["id"].as_str().unwrap()).await;
        assert!(!text.is_empty() && now.starts_with(&text), "{text:?} is not how {now:?} began");
    }
    let older = version_text(&app, &id, kept[1]["id"].as_str().unwrap()).await;
    let newer = version_text(&app, &id, kept[0]["id"].as_str().unwrap()).await;
    assert!(older.len() < newer.len(), "{older:?} then {newer:?}");
}

async fn a_version_on_request_keeps_the_text_of_that_moment_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("on request").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    let then = "Draft: naïve café, 😀 tabs\tand\r\nnewlines\n";
    client.append(then).await;
    client.settled().await;
    let labelled = make_version(&app, &id, Some("  First draft  ")).await;
    assert_eq!(labelled["label"], "First draft");
    assert_eq!(labelled["reason"], "request");
    assert_eq!(labelled["doc_id"], id.as_str());
    client.append(" and more").await;
    client.insert(0, "Title\n").await;
    client.settled().await;
    // No body at all: an unnamed version.
    let unnamed = make_version(&app, &id, None).await;
    assert_eq!(unnamed["label"], Value::Null);

    let vid = labelled["id"].as_str().unwrap();
    assert_eq!(version_text(&app, &id, vid).await, then);
    assert_eq!(version_text(&app, &id, unnamed["id"].as_str().unwrap()).await, client.text());
    let resp = app.request(Method::GET, &format!("/api/docs/{id}/versions/{vid}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), labelled);
    // The automatic setting (a minute) has not kept any: exactly the two asked for.
    let listed = versions(&app, &id).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], unnamed["id"]);

    // Deleted: gone from the list, 404 after.
    let resp = app.request(Method::DELETE, &format!("/api/docs/{id}/versions/{vid}")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let resp = app.request(Method::GET, &format!("/api/docs/{id}/versions/{vid}/text")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "version not found");
    assert_eq!(versions(&app, &id).await.len(), 1);
}

const BEFORE: &str = "Intro, as first written.\n\nThe middle paragraph, where Cy works.\n\nThe end.\n";

/// A document whose version holds [`BEFORE`], and whose live text then changed at its start
/// and end; returns the version's id and the live text.
async fn edited_after_a_version(app: &TestApp, id: &str) -> (String, String) {
    let mut ada = app.client(id).await;
    ada.synced().await;
    ada.append(BEFORE).await;
    ada.settled().await;
    let version = make_version(app, id, Some("before the rewrite")).await;
    ada.insert(0, "A new title\n\n").await;
    ada.append("An appendix Ada added.\n").await;
    ada.settled().await;
    let after = ada.text();
    assert_ne!(after, BEFORE);
    (version["id"].as_str().unwrap().to_owned(), after)
}

async fn a_restore_reaches_every_editor_live_and_leaves_other_cursors_in_place(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("restore").await;
    let (vid, after) = edited_after_a_version(&app, &id).await;
    let mut ada = app.client(&id).await;
    let mut bo = app.client(&id).await;
    let mut cy = app.client(&id).await;
    for client in [&mut ada, &mut bo, &mut cy] {
        client.wait_for_text(&after).await;
    }
    // Cy's cursor, just before "works" in the paragraph both texts share.
    let at = after.find("works").unwrap() as u32;
    let content = cy.doc().get_or_insert_text("content");
    let cursor = content.sticky_index(&cy.doc().transact_mut(), at, Assoc::After).unwrap();

    let before = restore(&app, &id, &vid).await;
    assert_eq!(before["reason"], "restore");
    assert_eq!(version_text(&app, &id, before["id"].as_str().unwrap()).await, after);
    for client in [&mut ada, &mut bo, &mut cy] {
        client.wait_for_text(BEFORE).await;
    }
    assert_eq!(app.text(&id).await, BEFORE);
    let now_at = cursor.get_offset(&cy.doc().transact()).unwrap().index as usize;
    assert_eq!(&BEFORE[now_at..now_at + 5], "works", "Cy's cursor moved");
    // Someone joining later reads the restored text, and so does the store after a restart.
    let mut late = app.client(&id).await;
    late.wait_for_text(BEFORE).await;
    drop((ada, bo, cy, late));
    let app = app.restart().await;
    assert_eq!(app.text(&id).await, BEFORE);
}

async fn a_restore_can_be_undone_by_restoring_the_version_before_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.create_doc("undo").await;
    let (vid, after) = edited_after_a_version(&app, &id).await;
    let mut watcher = app.client(&id).await;
    watcher.wait_for_text(&after).await;
    let first = restore(&app, &id, &vid).await;
    watcher.wait_for_text(BEFORE).await;
    // Undo: restore the state kept before the restore.
    let second = restore(&app, &id, first["id"].as_str().unwrap()).await;
    watcher.wait_for_text(&after).await;
    assert_eq!(app.text(&id).await, after);
    assert_eq!(version_text(&app, &id, second["id"].as_str().unwrap()).await, BEFORE);
    // Nothing of the history went: the version, both states before restores.
    let listed = versions(&app, &id).await;
    let reasons: Vec<&str> = listed.iter().map(|v| v["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["restore", "restore", "request"]);
    // Restoring the text the document already holds changes nothing.
    let third = restore(&app, &id, first["id"].as_str().unwrap()).await;
    assert_eq!(version_text(&app, &id, third["id"].as_str().unwrap()).await, after);
    assert_eq!(app.text(&id).await, after);
}

async fn retention_thins_old_versions_and_keeps_labelled_ones(backend: Backend) {
    // Through the store, with versions made days and weeks ago.
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    let doc = store.create_doc(&tandem::model::Title::default()).await.unwrap().id;
    let now = tandem::model::now();
    let hours = |h: i64| now - chrono::Duration::hours(h);
    let mut made = Vec::new();
    for (age, label) in [
        (1, None),             // kept: younger than keep_all
        (2, None),             // kept
        (24 * 10, None),       // ten days old: the newest of its hour...
        (24 * 10, None),       // ...and an older one in the same hour (made second, 1 µs older)
        (24 * 40, Some("v1")), // forty days old, labelled: kept
        (24 * 40, None),       // its day's newest unlabelled: kept
        (24 * 40 + 1, None),   // the same day, older: goes (unless the hour crosses midnight)
    ] {
        let created_at = hours(age) - chrono::Duration::microseconds(made.len() as i64);
        let version = store
            .insert_version(&NewVersion {
                doc_id: doc,
                created_at,
                label: label.map(|l| Label::parse(l).unwrap()),
                reason: Reason::Auto,
                editors: vec![],
                state: vec![0, 0],
            })
            .await
            .unwrap();
        made.push(version);
    }
    let retention = Retention {
        keep_all: Duration::from_secs(7 * 86_400),
        keep_hourly: Duration::from_secs(30 * 86_400),
    };
    let pruned = store.prune_versions(doc, retention, now).await.unwrap();
    let left: Vec<_> = store.list_versions(doc, 100, None).await.unwrap().into_iter().map(|v| v.id).collect();
    let same_day = made[5].created_at.date_naive() == made[6].created_at.date_naive();
    let mut expected = vec![made[0].id, made[1].id, made[2].id, made[4].id, made[5].id];
    if !same_day {
        expected.push(made[6].id);
    }
    assert_eq!(left, expected);
    assert_eq!(pruned as usize, made.len() - expected.len());
    // Applying it again removes nothing more.
    assert_eq!(store.prune_versions(doc, retention, now).await.unwrap(), 0);

    // Through the server: with nothing kept whole, versions made in the same hour leave the
    // newest, and the labelled one stays.
    let app = TestApp::spawn_with(backend, |config| config.version_keep_all = Duration::ZERO).await;
    let id = app.create_doc("retention").await;
    let named = make_version(&app, &id, Some("keep me")).await;
    make_version(&app, &id, None).await;
    let newest = make_version(&app, &id, None).await;
    let listed: Vec<Value> = versions(&app, &id).await.into_iter().map(|v| v["id"].clone()).collect();
    assert_eq!(listed, [newest["id"].clone(), named["id"].clone()]);
}

async fn compaction_and_restarts_leave_versions_intact(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.snapshot_updates = 5;
        quick_versions(config);
    })
    .await;
    let id = app.create_doc("compacted").await;
    let mut client = app.client(&id).await;
    client.synced().await;
    client.append("kept in a version").await;
    client.settled().await;
    let version = make_version(&app, &id, Some("early")).await;
    let vid = version["id"].as_str().unwrap().to_owned();
    // Sixty more edits: the log is compacted a dozen times.
    for i in 0..60 {
        client.append(&format!(" {i}")).await;
    }
    client.settled().await;
    let live = client.text();
    assert_eq!(version_text(&app, &id, &vid).await, "kept in a version");
    // Edits not yet in a version when the server stops get one on the way out.
    drop(client);
    let app = app.restart().await;
    let listed = versions(&app, &id).await;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    assert_eq!(listed[1]["id"], vid.as_str());
    assert_eq!(version_text(&app, &id, &vid).await, "kept in a version");
    assert_eq!(version_text(&app, &id, listed[0]["id"].as_str().unwrap()).await, live);
    assert_eq!(app.text(&id).await, live);
}

/// Reading versions needs read, making one and restoring need write, deleting needs admin;
/// a token's `name` is who the version says edited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_on_versions_needs_its_scope() {
    let app = TestApp::spawn_with(Backend::Sqlite, with_auth).await;
    let id = app.create_doc("scoped").await;
    let docs = Docs::parse(&id).unwrap();
    let secret = app.config.auth.auth_secret.clone().unwrap();
    let named = |scope: Scope| crate::helpers::sign_named(&secret, docs, scope, "Grace");
    let (read, write, admin) = (named(Scope::Read), named(Scope::Write), named(Scope::Admin));

    let mut writer = crate::helpers::Client::connect(&app.ws_url_with(&id, &write)).await;
    writer.synced().await;
    writer.append("by Grace").await;
    writer.settled().await;
    let call = |method: Method, path: String, token: &str| {
        app.http.request(method, app.url(&path)).bearer_auth(token).send()
    };
    let path = format!("/api/docs/{id}/versions");
    assert_eq!(call(Method::POST, path.clone(), &read).await.unwrap().status(), 403);
    let resp = call(Method::POST, path.clone(), &write).await.unwrap();
    assert_eq!(resp.status(), 201);
    let version: Value = resp.json().await.unwrap();
    assert_eq!(version["editors"], json!(["Grace"]));
    let vid = version["id"].as_str().unwrap();
    for path in [path.clone(), format!("{path}/{vid}"), format!("{path}/{vid}/text")] {
        assert_eq!(call(Method::GET, path.clone(), &read).await.unwrap().status(), 200, "{path}");
        let resp = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path} without a token");
    }
    let restore = format!("{path}/{vid}/restore");
    assert_eq!(call(Method::POST, restore.clone(), &read).await.unwrap().status(), 403);
    assert_eq!(call(Method::POST, restore, &write).await.unwrap().status(), 200);
    let one = format!("{path}/{vid}");
    assert_eq!(call(Method::DELETE, one.clone(), &write).await.unwrap().status(), 403);
    assert_eq!(call(Method::DELETE, one.clone(), &admin).await.unwrap().status(), 204);
    // A token for another document reaches none of this one's versions.
    let other = crate::helpers::sign_named(
        &secret,
        Docs::parse(&DocId::new().to_string()).unwrap(),
        Scope::Admin,
        "X",
    );
    assert_eq!(call(Method::GET, path.clone(), &other).await.unwrap().status(), 403);

    // Grace edits after a version, and the server stops while she is connected: the version
    // kept on the way out names her, from her token.
    assert_eq!(call(Method::POST, path, &write).await.unwrap().status(), 201);
    writer.append(" and more").await;
    writer.settled().await;
    let app = app.restart().await;
    let last = versions(&app, &id).await.remove(0);
    assert_eq!(last["reason"], "auto");
    assert_eq!(last["editors"], json!(["Grace"]));
    drop(writer);
}

/// Every input of the versions API fed garbage: a JSON error with a 4xx, and the server
/// carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_versions_api_gets_clear_errors() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("garbage").await;
    let other = app.create_doc("another").await;
    let version = make_version(&app, &id, None).await;
    let vid = version["id"].as_str().unwrap();
    let unknown_doc = DocId::new();
    let unknown_version = uuid::Uuid::new_v4();
    let long = "x".repeat(201);
    let cases: Vec<(Method, String, Option<&str>, u16, &str)> = vec![
        (Method::GET, "/api/docs/nope/versions".into(), None, 400, "malformed document id"),
        (Method::GET, format!("/api/docs/{unknown_doc}/versions"), None, 404, "document not found"),
        (Method::GET, format!("/api/docs/{id}/versions?limit=0"), None, 400, "limit"),
        (Method::GET, format!("/api/docs/{id}/versions?limit=501"), None, 400, "limit"),
        (Method::GET, format!("/api/docs/{id}/versions?limit=x"), None, 400, ""),
        (Method::GET, format!("/api/docs/{id}/versions?cursor=garbage"), None, 400, "cursor"),
        (Method::GET, format!("/api/docs/{id}/versions?what=1"), None, 400, "unknown field"),
        (Method::GET, format!("/api/docs/{id}/versions/12"), None, 400, "malformed version id"),
        (Method::GET, format!("/api/docs/{id}/versions/{unknown_version}"), None, 404, "version not found"),
        (Method::GET, format!("/api/docs/{other}/versions/{vid}"), None, 404, "version not found"),
        (Method::GET, format!("/api/docs/{unknown_doc}/versions/{vid}"), None, 404, "document not found"),
        (
            Method::GET,
            format!("/api/docs/{id}/versions/{unknown_version}/text"),
            None,
            404,
            "version not found",
        ),
        (Method::POST, format!("/api/docs/{id}/versions"), Some("{"), 400, "invalid request body"),
        (
            Method::POST,
            format!("/api/docs/{id}/versions"),
            Some(r#"{"label": 5}"#),
            422,
            "invalid request body",
        ),
        (Method::POST, format!("/api/docs/{id}/versions"), Some(r#"{"name": "x"}"#), 422, "unknown field"),
        (
            Method::POST,
            format!("/api/docs/{id}/versions"),
            Some(r#"{"label": "  "}"#),
            422,
            "must not be empty",
        ),
        (Method::POST, format!("/api/docs/{id}/versions"), Some(r#"{"label": "a\u0007"}"#), 422, "control"),
        (Method::POST, format!("/api/docs/{unknown_doc}/versions"), None, 404, "document not found"),
        (
            Method::POST,
            format!("/api/docs/{id}/versions/{unknown_version}/restore"),
            None,
            404,
            "version not found",
        ),
        (Method::POST, format!("/api/docs/{other}/versions/{vid}/restore"), None, 404, "version not found"),
        (
            Method::DELETE,
            format!("/api/docs/{id}/versions/{unknown_version}"),
            None,
            404,
            "version not found",
        ),
        (Method::PUT, format!("/api/docs/{id}/versions/{vid}"), None, 405, "method not allowed"),
    ];
    let too_long = format!(r#"{{"label": "{long}"}}"#);
    let mut cases = cases;
    cases.push((
        Method::POST,
        format!("/api/docs/{id}/versions"),
        Some(too_long.as_str()),
        422,
        "at most 200",
    ));
    for (method, path, body, status, says) in cases {
        let mut request = app.request(method.clone(), &path);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path} {body:?}");
        let error: Value = resp.json().await.unwrap_or_else(|_| panic!("{method} {path}: not JSON"));
        let message = error["error"].as_str().unwrap_or_else(|| panic!("{method} {path}: {error}"));
        assert!(message.contains(says), "{method} {path}: {message:?} lacks {says:?}");
    }
    // Still serving, and nothing was made by the refused requests.
    assert_eq!(versions(&app, &id).await.len(), 1);
    assert!(versions(&app, &other).await.is_empty());
}

/// Paged like the document list: `limit`, then `next_cursor` until it is null, newest first,
/// each version once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_listed_in_pages_newest_first() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("pages").await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(make_version(&app, &id, Some(&format!("v{i}"))).await["id"].clone());
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/api/docs/{id}/versions?limit=2"),
            Some(c) => format!("/api/docs/{id}/versions?limit=2&cursor={c}"),
        };
        let page: Value = app.request(Method::GET, &path).send().await.unwrap().json().await.unwrap();
        let versions = page["versions"].as_array().unwrap();
        assert!(versions.len() <= 2);
        seen.extend(versions.iter().map(|v| v["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, made);
    // Deleting the document takes its versions with it.
    let resp = app.request(Method::DELETE, &format!("/api/docs/{id}")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let resp = app.request(Method::GET, &format!("/api/docs/{id}/versions")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}
