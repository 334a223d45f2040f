//! Access control: every row of the scope table both ways, over REST and the WebSocket;
//! every misuse of a token answered before the upgrade; read-only connections that keep
//! their cursor but change nothing; cursors that belong to their connection; expiry on an
//! open socket; share links; origins, CORS and the JSON-body rule.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tandem::auth::{Claims, Docs, Scope};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Transact, Update};

use crate::helpers::{Backend, Client, Received, SECRET, TestApp, TestDb, sign, test_config, with_auth};
use crate::on_both_backends;

async fn auth_app() -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, with_auth).await
}

/// A REST call with `token` (or none): status, JSON body, headers.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut request = app.http.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// Tries to open `/ws/{id}` with a token in the query: `Ok(client)` on 101, else the
/// refusal's status and JSON body.
async fn upgrade(app: &TestApp, id: &str, token: Option<&str>) -> Result<Client, (u16, Value)> {
    let url = match token {
        Some(token) => app.ws_url_with(id, token),
        None => format!("ws://{}/ws/{id}", app.addr),
    };
    upgrade_request(url.into_client_request().unwrap()).await
}

async fn upgrade_request(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<Client, (u16, Value)> {
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(Client::from_socket(socket, Doc::new()).await),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body =
                resp.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
            // Every 401, on the socket as over REST, names the scheme to authenticate with.
            if resp.status() == 401 {
                let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap());
                assert!(challenge.is_some_and(|c| c.starts_with("Bearer")), "a 401 upgrade: {challenge:?}");
            }
            Err((resp.status().as_u16(), body))
        }
        Err(err) => panic!("upgrade failed oddly: {err}"),
    }
}

fn refused(result: Result<Client, (u16, Value)>) -> (u16, Value) {
    match result {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(refusal) => refusal,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_scope_table_over_rest() {
    let app = auth_app().await;
    let x = app.create_doc("X").await;
    let y = app.create_doc("Y").await;
    let doc = |id: &str| format!("/api/docs/{id}");
    let text = |id: &str| format!("/api/docs/{id}/text");
    let links = |id: &str| format!("/api/docs/{id}/links");
    let title = || Some(json!({"title": "renamed"}));
    let link = |scope: &str| Some(json!({"scope": scope, "ttl": "1h"}));

    let read_x = app.doc_token(&x, Scope::Read);
    let write_x = app.doc_token(&x, Scope::Write);
    let admin_x = app.doc_token(&x, Scope::Admin);
    let read_all = app.token(Docs::All, Scope::Read, 60);
    let write_all = app.token(Docs::All, Scope::Write, 60);
    let admin_all = app.admin.clone().expect("admin token");

    type Row<'a> = (&'a str, Method, String, Option<Value>, u16);
    let rows: Vec<Row> = vec![
        // read: the document and its text, nothing more.
        (&read_x, Method::GET, doc(&x), None, 200),
        (&read_x, Method::GET, text(&x), None, 200),
        (&read_x, Method::PATCH, doc(&x), title(), 403),
        (&read_x, Method::DELETE, doc(&x), None, 403),
        (&read_x, Method::POST, links(&x), link("read"), 403),
        (&read_x, Method::GET, "/api/docs".into(), None, 403),
        (&read_x, Method::POST, "/api/docs".into(), None, 403),
        (&read_x, Method::GET, doc(&y), None, 403),
        (&read_x, Method::GET, text(&y), None, 403),
        // write: also rename.
        (&write_x, Method::GET, doc(&x), None, 200),
        (&write_x, Method::GET, text(&x), None, 200),
        (&write_x, Method::PATCH, doc(&x), title(), 200),
        (&write_x, Method::DELETE, doc(&x), None, 403),
        (&write_x, Method::POST, links(&x), link("read"), 403),
        (&write_x, Method::GET, "/api/docs".into(), None, 403),
        (&write_x, Method::POST, "/api/docs".into(), None, 403),
        (&write_x, Method::PATCH, doc(&y), title(), 403),
        // admin of one document: also share links; listing and creating need "*".
        (&admin_x, Method::PATCH, doc(&x), title(), 200),
        (&admin_x, Method::POST, links(&x), link("read"), 201),
        (&admin_x, Method::POST, links(&x), link("write"), 201),
        (&admin_x, Method::POST, links(&x), link("admin"), 422),
        (&admin_x, Method::POST, links(&y), link("read"), 403),
        (&admin_x, Method::GET, "/api/docs".into(), None, 403),
        (&admin_x, Method::POST, "/api/docs".into(), None, 403),
        (&admin_x, Method::DELETE, doc(&y), None, 403),
        // every document, below admin: each document, but no list and no create.
        (&read_all, Method::GET, doc(&y), None, 200),
        (&read_all, Method::PATCH, doc(&y), title(), 403),
        (&read_all, Method::GET, "/api/docs".into(), None, 403),
        (&write_all, Method::PATCH, doc(&y), title(), 200),
        (&write_all, Method::POST, "/api/docs".into(), None, 403),
        (&write_all, Method::DELETE, doc(&y), None, 403),
        // admin of every document: everything.
        (&admin_all, Method::GET, "/api/docs".into(), None, 200),
        (&admin_all, Method::POST, "/api/docs".into(), None, 201),
        (&admin_all, Method::POST, links(&y), link("write"), 201),
        // Deletes last.
        (&admin_x, Method::DELETE, doc(&x), None, 204),
        (&admin_all, Method::DELETE, doc(&y), None, 204),
    ];
    for (token, method, path, body, expected) in rows {
        let (status, body, _) = call(&app, method.clone(), &path, Some(token), body).await;
        assert_eq!(status.as_u16(), expected, "{method} {path}: {body}");
        if status.as_u16() >= 400 {
            assert!(body["error"].is_string(), "{method} {path}: error body {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_scope_table_over_the_socket() {
    let app = auth_app().await;
    let x = app.create_doc("X").await;
    let y = app.create_doc("Y").await;
    for scope in [Scope::Read, Scope::Write, Scope::Admin] {
        let mut client = upgrade(&app, &x, Some(&app.doc_token(&x, scope))).await.expect("upgraded");
        client.synced().await;
        let (status, body) = refused(upgrade(&app, &y, Some(&app.doc_token(&x, scope))).await);
        assert_eq!(status, 403, "{scope} token for another document: {body}");
    }
    // Writing: a write connection's update is applied; a read connection's is not.
    let mut writer = upgrade(&app, &x, Some(&app.doc_token(&x, Scope::Write))).await.unwrap();
    writer.synced().await;
    writer.append("written").await;
    writer.settled().await;
    let mut reader = upgrade(&app, &x, Some(&app.doc_token(&x, Scope::Read))).await.unwrap();
    reader.synced().await;
    reader.append(" refused").await;
    reader.wait_until("the permission-denied answer", permission_denied).await;
    assert_eq!(app.text(&x).await, "written");
    // The Authorization header works for clients that can set one.
    let mut request = format!("ws://{}/ws/{x}", app.addr).into_client_request().unwrap();
    let bearer = format!("Bearer {}", app.doc_token(&x, Scope::Read));
    request.headers_mut().insert("authorization", bearer.parse().unwrap());
    let mut by_header = upgrade_request(request).await.expect("upgraded with the header");
    by_header.wait_for_text("written").await;
}

/// True once the client has received the y-protocols permission-denied message.
fn permission_denied(client: &Client) -> bool {
    client.received.iter().any(|r| matches!(r, Received::Other(m) if m.starts_with("Auth(Some(")))
}

/// A token with `alg: none` and no signature.
fn unsigned_token(claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    format!("{header}.{payload}.")
}

fn signed(claims: &Claims, alg: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn now() -> u64 {
    tandem::auth::unix_seconds(std::time::SystemTime::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misuse_of_a_token_is_refused_before_the_upgrade() {
    let app = auth_app().await;
    let id = app.create_doc("guarded").await;
    let docs = Docs::parse(&id).unwrap();
    let secret = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let valid = Claims::new(docs, Scope::Admin, Duration::from_secs(60));
    let expired = Claims { exp: now() - 5, ..valid.clone() };
    let early = Claims { nbf: Some(now() + 30), ..valid.clone() };
    let mut other = valid.clone();
    other.doc = Docs::parse(&app.create_doc("other").await).unwrap().to_string();
    let low = Claims::new(docs, Scope::Read, Duration::from_secs(60));
    let bad_doc = Claims { doc: "everything".into(), ..valid.clone() };
    let mut no_exp = serde_json::to_value(&valid).unwrap();
    no_exp.as_object_mut().unwrap().remove("exp");
    let no_exp = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &no_exp, &secret).unwrap();
    let forged = signed(&valid, Algorithm::HS256, &EncodingKey::from_secret(b"a guess").unwrap());
    let tampered = {
        let token = signed(&low, Algorithm::HS256, &secret);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&valid).unwrap());
        parts.join(".")
    };
    let hs384 = signed(&valid, Algorithm::HS384, &secret);

    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("missing", None, 401),
        ("malformed", Some("not-a-token".into()), 401),
        ("three dots of junk", Some("a.b.c".into()), 401),
        ("alg none", Some(unsigned_token(&valid)), 401),
        ("another algorithm", Some(hs384), 401),
        ("wrong signature", Some(forged), 401),
        ("tampered claims", Some(tampered), 401),
        ("expired", Some(signed(&expired, Algorithm::HS256, &secret)), 401),
        ("nbf in the future", Some(signed(&early, Algorithm::HS256, &secret)), 401),
        ("no exp", Some(no_exp), 401),
        ("doc that is not an id", Some(signed(&bad_doc, Algorithm::HS256, &secret)), 401),
        ("wrong document", Some(signed(&other, Algorithm::HS256, &secret)), 403),
        ("scope too low to delete", Some(signed(&low, Algorithm::HS256, &secret)), 403),
    ];
    for (name, token, expected) in &cases {
        // REST: deleting needs admin.
        let (status, body, headers) =
            call(&app, Method::DELETE, &format!("/api/docs/{id}"), token.as_deref(), None).await;
        assert_eq!(status.as_u16(), *expected, "REST, {name}: {body}");
        assert!(body["error"].is_string(), "REST, {name}: {body}");
        if *expected == 401 {
            let challenge = headers.get("www-authenticate").expect("WWW-Authenticate").to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
        }
        // The socket: everything but the low scope is refused before the upgrade.
        if *name != "scope too low to delete" {
            let (status, body) = refused(upgrade(&app, &id, token.as_deref()).await);
            assert_eq!(status, *expected, "socket, {name}: {body}");
            assert!(body["error"].is_string(), "socket, {name}: {body}");
        }
    }
    let (_, body, _) = call(
        &app,
        Method::GET,
        &format!("/api/docs/{id}"),
        Some(&signed(&expired, Algorithm::HS256, &secret)),
        None,
    )
    .await;
    assert_eq!(body["error"], "token expired");
    // The document is still there.
    assert_eq!(call(&app, Method::GET, &format!("/api/docs/{id}"), app.admin.as_deref(), None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_tokens_are_refused_and_the_server_carries_on() {
    let app = auth_app().await;
    let id = app.create_doc("garbage").await;
    let mut seed = 7u64;
    for len in [1, 2, 3, 10, 100, 1000, 6000] {
        // Printable junk (a header value must be), with dots where a JWT has them.
        let junk: String = (0..len)
            .map(|i| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if i % 37 == 5 { '.' } else { char::from(b'!' + (seed >> 58) as u8 % 90) }
            })
            .collect();
        let (status, body, _) = call(&app, Method::GET, &format!("/api/docs/{id}"), Some(&junk), None).await;
        assert_eq!(status, 401, "{len} bytes of junk: {body}");
        let encoded: String = url_encode(&junk);
        let (status, _) = refused(upgrade(&app, &id, Some(&encoded)).await);
        assert_eq!(status, 401, "{len} bytes of junk on the socket");
    }
    for header in ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer x y z", "Token abc"] {
        let resp = app
            .http
            .get(app.url(&format!("/api/docs/{id}")))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{header:?}");
    }
    let mut ok = app.client(&id).await;
    ok.synced().await;
}

fn url_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A server that only verifies (the application keeps the private key).
async fn public_key_app(key: &rcgen::KeyPair) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("public.pem");
    std::fs::write(&path, key.public_key_pem()).unwrap();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.auth.auth_public_key = Some(path)).await;
    (app, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_verify_their_own_algorithm_only() {
    for (alg, rcgen_alg) in
        [(Algorithm::EdDSA, &rcgen::PKCS_ED25519), (Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256)]
    {
        let key = rcgen::KeyPair::generate_for(rcgen_alg).unwrap();
        let (app, _dir) = public_key_app(&key).await;
        let private = key.serialize_pem();
        let encoding = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
        };
        let all = Claims::new(Docs::All, Scope::Admin, Duration::from_secs(60));
        let token = signed(&all, alg, &encoding);
        let (status, body, _) = call(&app, Method::POST, "/api/docs", Some(&token), None).await;
        assert_eq!(status, 201, "{alg:?}: {body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let mut client = upgrade(&app, &id, Some(&token)).await.expect("upgraded");
        client.synced().await;

        // Algorithm confusion: HS256 "signed" with the public key as the secret.
        let confused = signed(
            &all,
            Algorithm::HS256,
            &EncodingKey::from_secret(key.public_key_pem().as_bytes()).unwrap(),
        );
        let (status, body, _) = call(&app, Method::GET, "/api/docs", Some(&confused), None).await;
        assert_eq!(status, 401, "{alg:?} server took an HS256 token: {body}");
        assert_eq!(refused(upgrade(&app, &id, Some(&confused)).await).0, 401);
        // A key of the other kind.
        let other = match alg {
            Algorithm::EdDSA => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            _ => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        };
        let (other_alg, other_key) = match alg {
            Algorithm::EdDSA => {
                (Algorithm::ES256, EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap())
            }
            _ => (Algorithm::EdDSA, EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()).unwrap()),
        };
        let (status, _, _) =
            call(&app, Method::GET, "/api/docs", Some(&signed(&all, other_alg, &other_key)), None).await;
        assert_eq!(status, 401, "{alg:?} server took an {other_alg:?} token");
        // Same algorithm, another key pair.
        let stranger = rcgen::KeyPair::generate_for(rcgen_alg).unwrap();
        let stranger = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(stranger.serialize_pem().as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(stranger.serialize_pem().as_bytes()).unwrap(),
        };
        let (status, _, _) =
            call(&app, Method::GET, "/api/docs", Some(&signed(&all, alg, &stranger)), None).await;
        assert_eq!(status, 401, "{alg:?} server took a token of another key");
        // Without the secret, no share links.
        let (status, body, _) = call(
            &app,
            Method::POST,
            &format!("/api/docs/{id}/links"),
            Some(&token),
            Some(json!({"scope": "read"})),
        )
        .await;
        assert_eq!(status, 409, "{body}");
    }
}

on_both_backends!(a_read_connection_changes_nothing_but_keeps_its_cursor);

async fn a_read_connection_changes_nothing_but_keeps_its_cursor(backend: Backend) {
    let app = TestApp::spawn_with(backend, with_auth).await;
    let id = app.create_doc("view only").await;
    let mut writer = upgrade(&app, &id, Some(&app.doc_token(&id, Scope::Write))).await.unwrap();
    writer.synced().await;
    writer.append("hello").await;
    writer.settled().await;

    // A reader that typed while offline: its step 2 carries that, and is refused.
    let offline = Doc::new();
    let text = offline.get_or_insert_text("content");
    yrs::Text::insert(&text, &mut offline.transact_mut(), 0, "offline intrusion ");
    let url = app.ws_url_with(&id, &app.doc_token(&id, Scope::Read));
    let mut reader = Client::connect_with(&url, offline).await;
    reader.synced().await;
    assert!(reader.text().contains("hello"), "the reader received the document");
    reader.wait_until("the step 2 refused", permission_denied).await;
    let reader_id = reader.client_id();

    // Its update is refused too, and answered only once.
    reader.append(" intrusion").await;
    let everything = reader.doc().transact().encode_state_as_update_v1(&Default::default());
    reader.send_message(Message::Sync(SyncMessage::SyncStep2(everything))).await;
    // Its cursor shows to the writer.
    reader.set_awareness(json!({"user": {"name": "Viewer"}, "cursor": 2})).await;
    writer.wait_until("the writer sees the viewer's cursor", |c| c.awareness_of(reader_id).is_some()).await;

    // It still receives others' edits.
    writer.append(" world").await;
    writer.settled().await;
    reader.wait_until("the reader receives the edit", |c| c.text().contains(" world")).await;
    let denials =
        reader.received.iter().filter(|r| matches!(r, Received::Other(m) if m.starts_with("Auth("))).count();
    assert_eq!(denials, 1, "one permission-denied answer per connection");

    // Nothing of the reader's reached the document, in memory...
    assert_eq!(app.text(&id).await, "hello world");
    let mut fresh = app.client(&id).await;
    fresh.synced().await;
    assert_eq!(
        fresh.doc().transact().state_vector().get(&reader_id),
        0,
        "the reader's client id is in the document"
    );
    drop((reader, writer, fresh));
    // ...or in the store.
    let (db, _) = app.stop().await;
    let store = tandem::store::Store::connect(&db.url).await.unwrap();
    let stored = store.load_state(id.parse().unwrap()).await.unwrap();
    let doc = Doc::new();
    for update in stored.snapshot.iter().chain(&stored.updates) {
        doc.transact_mut().apply_update(Update::decode_v1(update).unwrap()).unwrap();
    }
    assert_eq!(doc.get_or_insert_text("content").get_string(&doc.transact()), "hello world");
    assert_eq!(doc.transact().state_vector().get(&reader_id), 0, "the reader's client id was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cannot_change_anothers_cursor() {
    let app = auth_app().await;
    let id = app.create_doc("cursors").await;
    let mut ada = upgrade(&app, &id, Some(&app.doc_token(&id, Scope::Write))).await.unwrap();
    let mut eve = upgrade(&app, &id, Some(&app.doc_token(&id, Scope::Read))).await.unwrap();
    let mut bob = upgrade(&app, &id, Some(&app.doc_token(&id, Scope::Write))).await.unwrap();
    for client in [&mut ada, &mut eve, &mut bob] {
        client.synced().await;
    }
    ada.set_awareness(json!({"user": {"name": "Ada"}, "cursor": 1})).await;
    let ada_id = ada.client_id();
    bob.wait_until("Bob sees Ada", |c| c.awareness_of(ada_id).is_some()).await;

    // Eve sends a newer state under Ada's client id, then her own.
    let spoof = {
        let mut victim = yrs::sync::Awareness::new(Doc::with_client_id(ada_id.get()));
        for _ in 0..10 {
            victim.set_local_state(json!({"user": {"name": "Eve was here"}, "cursor": 99})).unwrap();
        }
        victim.update().unwrap()
    };
    eve.send_message(Message::Awareness(spoof)).await;
    eve.set_awareness(json!({"user": {"name": "Eve"}})).await;
    let eve_id = eve.client_id();
    // Bob hears Eve's own state (sent after the spoof), and Ada's is untouched.
    bob.wait_until("Bob sees Eve", |c| c.awareness_of(eve_id).is_some()).await;
    assert_eq!(bob.awareness_of(ada_id).unwrap()["user"]["name"], "Ada");
    let mut late = app.client(&id).await;
    late.wait_until("a newcomer sees Ada and Eve", |c| {
        c.awareness_of(ada_id).is_some() && c.awareness_of(eve_id).is_some()
    })
    .await;
    assert_eq!(late.awareness_of(ada_id).unwrap()["user"]["name"], "Ada");
    // Eve cannot remove Ada's state either; Ada can change her own.
    let removal = {
        let mut victim = yrs::sync::Awareness::new(Doc::with_client_id(ada_id.get()));
        for _ in 0..20 {
            victim.set_local_state(json!({})).unwrap();
        }
        victim.clean_local_state();
        victim.update().unwrap()
    };
    eve.send_message(Message::Awareness(removal)).await;
    ada.set_awareness(json!({"user": {"name": "Ada"}, "cursor": 2})).await;
    bob.wait_until("Bob sees Ada move", |c| c.awareness_of(ada_id).is_some_and(|s| s["cursor"] == 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_closes_its_socket_with_4401() {
    let app = auth_app().await;
    let id = app.create_doc("expiring").await;
    let short = app.token(Docs::parse(&id).unwrap(), Scope::Write, 2);
    let mut client = upgrade(&app, &id, Some(&short)).await.unwrap();
    client.synced().await;
    client.append("before expiry").await;
    client.settled().await;
    let close = client.wait_closed().await.expect("a close frame");
    let closed_at = std::time::SystemTime::now();
    assert_eq!(u16::from(close.code), 4401);
    assert_eq!(close.reason.as_str(), "token expired");
    // Not before `exp` (the claim is in whole seconds; the close comes at it, not a leeway later).
    let exp = std::time::UNIX_EPOCH + Duration::from_secs(expiry_of(&short));
    let late = closed_at.duration_since(exp).expect("closed before the token expired");
    eprintln!("4401 came {} ms after exp", late.as_millis());
    assert_eq!(app.text(&id).await, "before expiry");
}

/// The `exp` claim of a token (read without checking it: the server did that).
fn expiry_of(token: &str) -> u64 {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let claims = URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    let claims: Value = serde_json::from_slice(&claims).expect("JSON claims");
    claims["exp"].as_u64().expect("exp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_hand_out_read_or_write_for_one_document() {
    let app = auth_app().await;
    let id = app.create_doc("shared").await;
    let admin = app.doc_token(&id, Scope::Admin);
    let path = format!("/api/docs/{id}/links");
    let (status, view, _) =
        call(&app, Method::POST, &path, Some(&admin), Some(json!({"scope": "read", "ttl": "7d"}))).await;
    assert_eq!(status, 201, "{view}");
    let token = view["token"].as_str().unwrap();
    let url = view["url"].as_str().unwrap();
    assert_eq!(url, format!("http://{}/d/{id}?token={token}", app.addr));
    assert_eq!(view["scope"], "read");
    let expires = chrono::DateTime::parse_from_rfc3339(view["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.timestamp() - now() as i64) as f64 / 86_400.0;
    assert!((6.9..=7.0).contains(&days), "expires in {days} days");
    // It reads, and nothing more.
    assert_eq!(call(&app, Method::GET, &format!("/api/docs/{id}"), Some(token), None).await.0, 200);
    assert_eq!(
        call(&app, Method::PATCH, &format!("/api/docs/{id}"), Some(token), Some(json!({"title": "x"})))
            .await
            .0,
        403
    );
    let (_, access, _) = call(&app, Method::GET, "/api/access", Some(token), None).await;
    assert_eq!(
        access,
        json!({"mode": "token", "doc": id, "scope": "read", "name": null, "sub": null, "expires_at": access["expires_at"]})
    );
    // An edit link edits.
    let (_, edit, _) = call(&app, Method::POST, &path, Some(&admin), Some(json!({"scope": "write"}))).await;
    let mut editor = upgrade(&app, &id, edit["token"].as_str()).await.unwrap();
    editor.synced().await;
    editor.append("edited by link").await;
    editor.settled().await;
    assert_eq!(app.text(&id).await, "edited by link");

    for (body, expected) in [
        (json!({"scope": "admin"}), 422),
        (json!({"scope": "owner"}), 422),
        (json!({"scope": "read", "ttl": "0s"}), 422),
        (json!({"scope": "read", "ttl": "400d"}), 422),
        (json!({"scope": "read", "ttl": "soon"}), 422),
        (json!({"scope": "read", "extra": 1}), 422),
        (json!({}), 422),
    ] {
        let (status, answer, _) = call(&app, Method::POST, &path, Some(&admin), Some(body.clone())).await;
        assert_eq!(status.as_u16(), expected, "{body}: {answer}");
    }
    let resp = app
        .http
        .post(app.url(&path))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body(r#"{"scope":"read"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // Behind a proxy that says the request came over https, a link says https.
    let plain = app
        .http
        .post(app.url(&path))
        .bearer_auth(&admin)
        .header("x-forwarded-proto", "https")
        .json(&json!({"scope": "read"}))
        .send()
        .await
        .unwrap();
    let url = plain.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://"), "the proxy header is not trusted here: {url}");
    let unknown = tandem::model::DocId::new().to_string();
    let (status, _, _) = call(
        &app,
        Method::POST,
        &format!("/api/docs/{unknown}/links"),
        app.admin.as_deref(),
        Some(json!({"scope": "read"})),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_say_https_behind_a_trusted_proxy_and_use_the_public_url() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        with_auth(c);
        c.trust_proxy_headers = true;
    })
    .await;
    let id = app.create_doc("proxied").await;
    let path = format!("/api/docs/{id}/links");
    let link = |proto: &'static str| {
        app.http
            .post(app.url(&path))
            .bearer_auth(app.admin.as_deref().unwrap())
            .header("x-forwarded-proto", proto)
            .json(&json!({"scope": "read"}))
            .send()
    };
    let url = link("https").await.unwrap().json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("https://{}/d/{id}?token=", app.addr)), "{url}");
    let url = link("http").await.unwrap().json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://"), "{url}");
    let public = TestApp::spawn_with(Backend::Sqlite, |c| {
        with_auth(c);
        c.public_url = Some("https://docs.example.com/".into());
    })
    .await;
    let id = public.create_doc("public").await;
    let (_, link, _) = call(
        &public,
        Method::POST,
        &format!("/api/docs/{id}/links"),
        public.admin.as_deref(),
        Some(json!({"scope": "write"})),
    )
    .await;
    assert!(
        link["url"].as_str().unwrap().starts_with(&format!("https://docs.example.com/d/{id}?token=")),
        "{link}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_needs_no_token_and_makes_no_links() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("open").await;
    let (status, access, _) = call(&app, Method::GET, "/api/access", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(access["mode"], "open");
    assert_eq!(access["scope"], "admin");
    let (status, body, _) =
        call(&app, Method::POST, &format!("/api/docs/{id}/links"), None, Some(json!({"scope": "read"})))
            .await;
    assert_eq!(status, 409, "{body}");
    // A token means nothing here: even junk is not refused.
    assert_eq!(call(&app, Method::GET, "/api/docs", Some("junk"), None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_origins_are_refused_and_cors_answers_the_allowed() {
    let app =
        TestApp::spawn_with(Backend::Sqlite, |c| c.allowed_origins = vec!["https://app.example.com".into()])
            .await;
    let id = app.create_doc("origins").await;
    let own = format!("http://{}", app.addr);
    let ws = |origin: Option<&str>| {
        let mut request = format!("ws://{}/ws/{id}", app.addr).into_client_request().unwrap();
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse().unwrap());
        }
        upgrade_request(request)
    };
    // The socket: the listed origin, the server's own, and programs (no Origin) get in.
    for origin in [Some("https://app.example.com"), Some(own.as_str()), None] {
        ws(origin).await.unwrap_or_else(|e| panic!("{origin:?} refused: {e:?}")).synced().await;
    }
    for origin in
        ["https://evil.example", "null", "https://app.example.com.evil.example", "http://app.example.com"]
    {
        let (status, body) = refused(ws(Some(origin)).await);
        assert_eq!(status, 403, "{origin}: {body}");
        assert!(body["error"].is_string());
    }
    // REST the same way.
    let get = |origin: &str| app.http.get(app.url("/api/docs")).header("origin", origin).send();
    let allowed = get("https://app.example.com").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    let evil = get("https://evil.example").await.unwrap();
    assert_eq!(evil.status(), 403);
    assert!(evil.headers().get("access-control-allow-origin").is_none());

    // Preflights: answered for the allowed origin, refused for others.
    let preflight = |origin: &str| {
        app.http
            .request(Method::OPTIONS, app.url(&format!("/api/docs/{id}")))
            .header("origin", origin)
            .header("access-control-request-method", "PATCH")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let answer = preflight("https://app.example.com").await.unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    let header = |name: &str| {
        answer.headers().get(name).map(|v| v.to_str().unwrap().to_ascii_lowercase()).unwrap_or_default()
    };
    assert_eq!(header("access-control-allow-origin"), "https://app.example.com");
    for method in ["get", "post", "patch", "delete"] {
        assert!(
            header("access-control-allow-methods").contains(method),
            "{}",
            header("access-control-allow-methods")
        );
    }
    assert!(header("access-control-allow-headers").contains("authorization"));
    assert!(header("access-control-allow-headers").contains("content-type"));
    let refused_preflight = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused_preflight.status(), 403);
    assert!(refused_preflight.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_only_the_servers_own_origin() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let own = format!("http://{}", app.addr);
    let get = |origin: String| app.http.get(app.url("/api/docs")).header("origin", origin).send();
    assert_eq!(get(own.clone()).await.unwrap().status(), 200);
    assert_eq!(get(own.replace("http://", "https://")).await.unwrap().status(), 200);
    assert_eq!(get("http://localhost:1".into()).await.unwrap().status(), 403);
    assert_eq!(get("https://evil.example".into()).await.unwrap().status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_be_json() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("bodies").await;
    let post = |content_type: &'static str, body: &'static str| {
        app.http.post(app.url("/api/docs")).header("content-type", content_type).body(body).send()
    };
    // What a cross-site form or a simple fetch can send.
    assert_eq!(post("text/plain", r#"{"title":"csrf"}"#).await.unwrap().status(), 415);
    assert_eq!(post("application/x-www-form-urlencoded", "title=csrf").await.unwrap().status(), 415);
    assert_eq!(post("multipart/form-data; boundary=x", "--x--").await.unwrap().status(), 415);
    let resp = app.http.post(app.url("/api/docs")).body(r#"{"title":"no type"}"#).send().await.unwrap();
    assert_eq!(resp.status(), 415);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("application/json"));
    assert_eq!(post("application/json; charset=utf-8", r#"{"title":"fine"}"#).await.unwrap().status(), 201);
    assert_eq!(app.http.post(app.url("/api/docs")).send().await.unwrap().status(), 201, "no body at all");
    let patch = app
        .http
        .patch(app.url(&format!("/api/docs/{id}")))
        .header("content-type", "text/plain")
        .body(r#"{"title":"x"}"#);
    assert_eq!(patch.send().await.unwrap().status(), 415);
    // Nothing was created by the refused ones.
    let (_, list, _) = call(&app, Method::GET, "/api/docs", None, None).await;
    let titles: Vec<&str> =
        list["docs"].as_array().unwrap().iter().map(|d| d["title"].as_str().unwrap()).collect();
    assert!(!titles.contains(&"csrf") && !titles.contains(&"no type"), "{titles:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tandem_token_prints_a_token_the_server_accepts() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = test_config(&db);
    with_auth(&mut config);
    let app = TestApp::start(db, config).await;
    let id = app.create_doc("minted").await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["token", "--doc", &id, "--scope", "write", "--ttl", "10m", "--name", "Ada Lovelace"])
        .env("TANDEM_AUTH_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let (status, access, _) = call(&app, Method::GET, "/api/access", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (access["doc"].as_str(), access["scope"].as_str(), access["name"].as_str()),
        (Some(id.as_str()), Some("write"), Some("Ada Lovelace"))
    );
    let expires = chrono::DateTime::parse_from_rfc3339(access["expires_at"].as_str().unwrap()).unwrap();
    assert!((590..=600).contains(&(expires.timestamp() - now() as i64)));
    assert_eq!(sign(SECRET, Docs::All, Scope::Read, 1).split('.').count(), 3);

    // Without a secret, or with nonsense, it says why and fails.
    for (args, env) in [
        (vec!["token", "--doc", "*", "--scope", "read"], None),
        (vec!["token", "--doc", "nonsense", "--scope", "read"], Some(SECRET)),
        (vec!["token", "--doc", "*", "--scope", "owner"], Some(SECRET)),
        (vec!["token", "--doc", "*", "--scope", "read", "--ttl", "forever"], Some(SECRET)),
    ] {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"));
        command.args(&args).env_remove("TANDEM_AUTH_SECRET");
        if let Some(secret) = env {
            command.env("TANDEM_AUTH_SECRET", secret);
        }
        let output = command.output().await.unwrap();
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(!output.stderr.is_empty(), "{args:?} said nothing");
    }
}
