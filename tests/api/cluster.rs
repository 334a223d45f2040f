//! Several instances on one Postgres, fanned out through Redis: real processes (the binary
//! three times, a Redis server of the test's own so that restarting or pausing it touches no
//! other test, Debian's nginx as a round-robin balancer in front). Skipped loudly without
//! Postgres, redis-server or nginx (and failed in CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, Client, PATIENCE, TestDb, require_all, shout};
use crate::kit::process::Binary;
use crate::kit::replica::{Replica, wait_converged};
use crate::kit::stored::Reader;

/// A Redis server of the test's own, on a port of its own.
struct Redis {
    child: Option<Child>,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Redis {
    async fn start() -> Self {
        let mut redis = Self { child: None, port: free_port() };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
    }

    /// Stops it for good and starts a new one on the same port: everything in flight is lost.
    async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a cluster test needs; `None` (after a loud skip) when something is missing.
async fn prerequisites(test: &str) -> Option<TestDb> {
    let backend = Backend::postgres_or_skip(test)?;
    if Command::new("redis-server").arg("--version").output().is_err() {
        assert!(!require_all(), "{test}: redis-server is not installed (apt-get install redis-server)");
        shout(&format!("SKIPPED: {test} (redis-server is not installed)"));
        return None;
    }
    Some(TestDb::new(backend).await)
}

/// Three instances on a fresh database, fanned out through a Redis of the test's own.
struct Three {
    servers: Vec<Binary>,
    redis: Redis,
    db: TestDb,
}

/// Starts [`Three`] with `extra` settings; `None` (after a loud skip) when something is missing.
async fn three(test: &str, extra: &[(&str, &str)]) -> Option<Three> {
    let db = prerequisites(test).await?;
    let redis = Redis::start().await;
    let url = redis.url();
    let mut env: Vec<(&str, &str)> = vec![("TANDEM_REDIS_URL", &url), ("TANDEM_MAX_MESSAGES_PER_SEC", "0")];
    env.extend_from_slice(extra);
    let servers = (0..3).map(|_| Binary::start(&db.url, &env)).collect();
    Some(Three { servers, redis, db })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_three_instances_see_each_others_edits_and_cursors() {
    let test = "cluster::clients_on_three_instances_see_each_others_edits_and_cursors";
    let Some(Three { servers, redis: _redis, db: _db }) = three(test, &[]).await else {
        return;
    };
    let id = servers[0].create_doc("spread").await;
    let mut clients = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let mut client = Client::connect(&server.ws_url(&id)).await;
        client.synced().await;
        client.set_awareness(json!({"user": {"name": format!("on instance {i}")}})).await;
        clients.push(client);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.append(&format!("[{i}]")).await;
    }
    let ids: Vec<_> = clients.iter().map(Client::client_id).collect();
    for client in &mut clients {
        client.wait_until("every edit", |c| (0..3).all(|i| c.text().contains(&format!("[{i}]")))).await;
        client.wait_until("every cursor", |c| ids.iter().all(|id| c.awareness_of(*id).is_some())).await;
    }
    let texts: Vec<String> = clients.iter().map(Client::text).collect();
    assert!(texts.iter().all(|t| *t == texts[0]), "{texts:?}");
    for server in &servers {
        assert_eq!(server.text(&id).await, texts[0]);
    }
    // A client that leaves takes its cursor with it, on every instance.
    let gone = clients.remove(0);
    let gone_id = gone.client_id();
    drop(gone);
    for client in &mut clients {
        client
            .wait_until("the cursor of the one who left is gone", |c| c.awareness_of(gone_id).is_none())
            .await;
    }
}

/// An instance that dies says no goodbye: the others stop hearing its heartbeats and remove
/// its clients' cursors (half the awareness timeout after its last word), so no ghost cursor
/// stays behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursors_of_a_dead_instances_clients_go_with_it() {
    let test = "cluster::the_cursors_of_a_dead_instances_clients_go_with_it";
    // Peers are given up 2 s after their last word; a client's own state after 4 s.
    let Some(Three { mut servers, redis: _redis, db: _db }) =
        three(test, &[("TANDEM_AWARENESS_TIMEOUT_MS", "4000")]).await
    else {
        return;
    };
    let id = servers[0].create_doc("ghosts").await;
    let mut watcher = Client::connect(&servers[0].ws_url(&id)).await;
    watcher.synced().await;
    let mut doomed = Client::connect(&servers[2].ws_url(&id)).await;
    doomed.synced().await;
    doomed.set_awareness(json!({"user": {"name": "on the instance that dies"}})).await;
    let ghost = doomed.client_id();
    watcher.wait_until("the other instance's cursor", |c| c.awareness_of(ghost).is_some()).await;
    // Renewed just before the end: the sweep of stale states would take it 4 s from now.
    doomed.set_awareness(json!({"user": {"name": "on the instance that dies", "renewed": true}})).await;
    watcher
        .wait_until("the renewal", |c| c.awareness_of(ghost).is_some_and(|s| s["user"]["renewed"] == true))
        .await;
    servers[2].kill();
    watcher.wait_until("the dead instance's cursor is gone", |c| c.awareness_of(ghost).is_none()).await;
    // Taken away because its instance went silent.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !servers[0].logged("peers went silent") {
        assert!(tokio::time::Instant::now() < deadline, "the cursor went, but its instance was not given up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(doomed);
}

/// Redis is a shared bus: what arrives on a document's channel is checked as a client's
/// messages are. Garbage, an envelope of another version, and envelopes whose update or
/// awareness payload does not decode are dropped; the instances carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_documents_channel_is_dropped() {
    use tandem::cluster::{Body, Envelope, InstanceId};
    let test = "cluster::garbage_on_a_documents_channel_is_dropped";
    let Some(Three { servers, redis, db: _db }) = three(test, &[]).await else {
        return;
    };
    let id = servers[0].create_doc("bus").await;
    let mut here = Client::connect(&servers[0].ws_url(&id)).await;
    let mut there = Client::connect(&servers[1].ws_url(&id)).await;
    here.synced().await;
    there.synced().await;
    let stranger = InstanceId(uuid::Uuid::new_v4());
    let garbage: Vec<Vec<u8>> = vec![
        b"not an envelope".to_vec(),
        vec![9; 40],
        Envelope {
            from: stranger,
            seq: 1,
            body: Body::Update(bytes::Bytes::from_static(&[0, 2, 3, 0xff, 0xff])),
        }
        .encode()
        .to_vec(),
        Envelope { from: stranger, seq: 2, body: Body::Awareness(bytes::Bytes::from_static(&[1, 5, 1, 2])) }
            .encode()
            .to_vec(),
        Envelope { from: stranger, seq: 3, body: Body::Update(bytes::Bytes::from(vec![0u8; 3000])) }
            .encode()
            .to_vec(),
    ];
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for message in garbage {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("tandem:doc:{id}"))
            .arg(message)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    there.append("still fanned out").await;
    here.wait_for_text("still fanned out").await;
    assert!(here.closed.is_none() && there.closed.is_none());
    for server in &servers {
        assert_eq!(server.text(&id).await, "still fanned out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_one_instance_closes_the_documents_sockets_on_all() {
    let test = "cluster::a_delete_on_one_instance_closes_the_documents_sockets_on_all";
    let Some(Three { servers, redis: _redis, db: _db }) = three(test, &[]).await else {
        return;
    };
    let id = servers[0].create_doc("doomed").await;
    let mut clients = Vec::new();
    for server in &servers {
        let mut client = Client::connect(&server.ws_url(&id)).await;
        client.synced().await;
        clients.push(client);
    }
    // A rename on one instance is what every other one answers at once (titles live in the database).
    let http = reqwest::Client::new();
    let path = format!("/api/docs/{id}");
    let renamed =
        http.patch(servers[2].url(&path)).json(&json!({"title": "renamed on 2"})).send().await.unwrap();
    assert_eq!(renamed.status(), 200);
    for server in &servers {
        let doc: serde_json::Value = http.get(server.url(&path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["title"], "renamed on 2");
    }
    let resp = http.delete(servers[1].url(&path)).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    for client in &mut clients {
        let close = client.wait_closed().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 4404, "{}", close.reason);
    }
    for server in &servers {
        let refused = tokio_tungstenite::connect_async(server.ws_url(&id)).await;
        assert!(
            matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 404)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_writing_one_document_while_it_compacts_lose_nothing() {
    let test = "cluster::three_instances_writing_one_document_while_it_compacts_lose_nothing";
    // A snapshot every 20 log rows: compactions all the time, by every instance.
    let Some(Three { mut servers, db, redis: _redis }) =
        three(test, &[("TANDEM_SNAPSHOT_UPDATES", "20")]).await
    else {
        return;
    };
    let id = servers[0].create_doc("compacted").await;
    let replicas: Vec<(usize, Replica)> =
        (0..6).map(|i| (0, Replica::spawn(servers[i % 3].ws_url(&id)))).collect();
    for (_, replica) in &replicas {
        replica.type_every(Duration::from_millis(5));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (_, replica) in &replicas {
        replica.stop_typing();
    }
    wait_converged(&replicas).await;
    let edits: u32 = replicas.iter().map(|(_, r)| r.own_clock()).sum();
    // Every instance stops; what the store holds is every edit of every client.
    for server in &mut servers {
        assert!(server.terminate().success());
    }
    let reader = Reader::new(&db).await;
    let stored = reader.doc(&id).await;
    let stored_sv = yrs::ReadTxn::state_vector(&yrs::Transact::transact(&stored));
    let missing: u32 =
        replicas.iter().map(|(_, r)| r.own_clock().saturating_sub(stored_sv.get(&r.client_id()))).sum();
    crate::kit::figures::report(
        "cluster compaction",
        &format!("{edits} edits by 6 clients on 3 instances, {missing} missing from the store"),
    );
    assert_eq!(missing, 0, "edits lost by compaction with several writers");
    assert_eq!(crate::kit::stored::text_of(&stored), replicas[0].1.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_or_paused_every_replica_converges_without_reconnecting() {
    let test = "cluster::redis_restarted_or_paused_every_replica_converges_without_reconnecting";
    let Some(Three { servers, mut redis, db: _db }) = three(test, &[]).await else {
        return;
    };
    let id = servers[0].create_doc("through trouble").await;
    let replicas: Vec<(usize, Replica)> =
        (0..6).map(|i| (0, Replica::spawn(servers[i % 3].ws_url(&id)))).collect();
    for (_, replica) in &replicas {
        replica.type_every(Duration::from_millis(50));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.signal("STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.signal("CONT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (_, replica) in &replicas {
        replica.stop_typing();
    }
    wait_converged(&replicas).await;
    let sessions: Vec<usize> = replicas.iter().map(|(_, r)| r.log(|l| l.sessions)).collect();
    crate::kit::figures::report(
        "cluster redis",
        &format!("sessions per replica through a restart and a pause: {sessions:?}"),
    );
    let closes: Vec<_> = replicas.iter().map(|(_, r)| r.log(|l| l.closes.clone())).collect();
    assert!(sessions.iter().all(|s| *s == 1), "replicas reconnected: {sessions:?}, closed with {closes:?}");
}

/// nginx running docs/nginx-cluster.conf in front of `upstreams`, round robin.
struct Balancer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Balancer {
    async fn start(upstreams: &[std::net::SocketAddr]) -> Option<Self> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists())?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let template =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/nginx-cluster.conf"))
                .unwrap();
        let servers: String = upstreams.iter().map(|a| format!("        server {a};\n")).collect();
        let marked = "        server tandem1:8080;\n        server tandem2:8080;\n";
        assert!(
            template.contains(marked),
            "docs/nginx-cluster.conf no longer has the lines this test changes"
        );
        let config = template
            .replace(marked, &servers)
            .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
            .replace(
                "/var/log/nginx/tandem.access.log",
                &dir.path().join("access.log").display().to_string(),
            );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let d = dir.path().display().to_string();
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
        let child = Command::new(binary)
            .args(["-p", &d, "-c", &conf.display().to_string(), "-g"])
            .arg(format!("daemon off; pid {d}/nginx.pid; error_log {d}/error.log; {user}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "nginx did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Self { child, port, _dir: dir })
    }

    fn ws_url(&self, id: &str) -> String {
        format!("ws://127.0.0.1:{}/ws/{id}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_behind_the_balancer_loses_nothing() {
    let test = "cluster::an_instance_killed_behind_the_balancer_loses_nothing";
    // The survivors give the dead instance up 2 s after its last word (half the awareness
    // timeout), then store what it had published but not stored.
    let Some(Three { mut servers, db, redis: _redis }) =
        three(test, &[("TANDEM_AWARENESS_TIMEOUT_MS", "4000")]).await
    else {
        return;
    };
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let Some(balancer) = Balancer::start(&addrs).await else {
        assert!(!require_all(), "{test}: nginx is not installed");
        shout(&format!("SKIPPED: {test} (nginx is not installed)"));
        return;
    };
    let id = servers[0].create_doc("behind nginx").await;
    // Round robin, no stickiness: the clients land on all three.
    let replicas: Vec<(usize, Replica)> = (0..9).map(|_| (0, Replica::spawn(balancer.ws_url(&id)))).collect();
    for (_, replica) in &replicas {
        replica.type_every(Duration::from_millis(20));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    servers[1].kill();
    // Its clients reconnect through the balancer, to the others; editing goes on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (_, replica) in &replicas {
        replica.stop_typing();
    }
    wait_converged(&replicas).await;
    let reconnected = replicas.iter().filter(|(_, r)| r.log(|l| l.sessions) > 1).count();
    // What every client typed is in the store (the dead instance's last batch too: its
    // clients sent it again to the instance they reconnected to).
    let reader = Reader::new(&db).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let missing = loop {
        let stored = reader.doc(&id).await;
        let sv = yrs::ReadTxn::state_vector(&yrs::Transact::transact(&stored));
        let missing: u32 =
            replicas.iter().map(|(_, r)| r.own_clock().saturating_sub(sv.get(&r.client_id()))).sum();
        if missing == 0 || tokio::time::Instant::now() >= deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let edits: u32 = replicas.iter().map(|(_, r)| r.own_clock()).sum();
    crate::kit::figures::report(
        "cluster kill",
        &format!(
            "{edits} edits by 9 clients; {reconnected} reconnected after the kill; {missing} missing from the store"
        ),
    );
    assert!(reconnected >= 1, "no client was on the killed instance");
    assert_eq!(missing, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_sqlite_is_refused_at_start() {
    let db = TestDb::new(Backend::Sqlite).await;
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .env("TANDEM_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", &db.url)
        .env("TANDEM_REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs Postgres"), "{stderr}");
}

/// Every instance that has a document open sees the end of the same burst of editing; one
/// automatic version comes of it, naming the editors of every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_burst_edited_on_three_instances_makes_one_version() {
    let test = "cluster::one_burst_edited_on_three_instances_makes_one_version";
    let Some(Three { servers, redis: _redis, db: _db }) =
        three(test, &[("TANDEM_VERSION_AFTER_IDLE", "600ms")]).await
    else {
        return;
    };
    let id = servers[0].create_doc("versions").await;
    let mut clients = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let mut client = Client::connect(&server.ws_url(&id)).await;
        client.synced().await;
        client.set_awareness(json!({"user": {"name": format!("Editor {i}")}})).await;
        clients.push(client);
    }
    // Editors on instances 0 and 1 take turns; instance 2 only watches.
    for round in 0..4 {
        let client = &mut clients[round % 2];
        client.append(&format!("[{round}]")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for client in &mut clients {
        client.wait_until("every edit", |c| (0..4).all(|i| c.text().contains(&format!("[{i}]")))).await;
    }
    let list = |server: &Binary| {
        let url = server.url(&format!("/api/docs/{id}/versions"));
        async move {
            let body: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            body["versions"].as_array().unwrap().clone()
        }
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while list(&servers[2]).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no version was kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for every instance to have kept (and merged) its own.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let versions = list(&servers[1]).await;
    assert_eq!(versions.len(), 1, "{versions:#?}");
    assert_eq!(versions[0]["editors"], json!(["Editor 0", "Editor 1"]));
    let vid = versions[0]["id"].as_str().unwrap();
    let url = servers[2].url(&format!("/api/docs/{id}/versions/{vid}/text"));
    assert_eq!(reqwest::get(url).await.unwrap().text().await.unwrap(), clients[2].text());
}
