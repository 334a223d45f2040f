//! The real binary, killed and signalled: after `kill -9`, everything written at least one
//! batch window before the kill is there; SIGTERM and SIGINT shut down gracefully.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Backend, Client, TestDb};
use crate::on_both_backends;

on_both_backends!(
    kill_9_loses_nothing_older_than_a_batch_window,
    sigterm_and_sigint_shut_down_gracefully,
    a_shutdown_that_cannot_save_says_so_and_exits_non_zero,
);

/// The `tandem` binary, started on an ephemeral port.
struct Server {
    child: Child,
    addr: String,
    /// Every line it has logged.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn start(db: &TestDb, extra_env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .env("TANDEM_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", &db.url)
            .env("TANDEM_LOG", "tandem=info")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the tandem binary");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = std::sync::Arc::clone(&log);
        // Find the address in the log, then keep draining stdout so the server never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the server logs its address");
        Self { child, addr, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn create_doc(&self) -> String {
        let doc: serde_json::Value =
            reqwest::Client::new().post(self.url("/api/docs")).send().await.unwrap().json().await.unwrap();
        doc["id"].as_str().unwrap().to_owned()
    }

    async fn text(&self, id: &str) -> String {
        reqwest::get(self.url(&format!("/api/docs/{id}/text"))).await.unwrap().text().await.unwrap()
    }

    async fn client(&self, id: &str) -> Client {
        let mut client = Client::connect(&format!("ws://{}/ws/{id}", self.addr)).await;
        client.synced().await;
        client
    }

    fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(status.expect("kill").success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server did not exit within 30 s");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn kill_9_loses_nothing_older_than_a_batch_window(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut server = Server::start(&db, &[]);
    let id = server.create_doc().await;
    let mut client = server.client(&id).await;
    let mut expected = String::new();
    for i in 0..200 {
        let piece = format!("{i} ");
        client.append(&piece).await;
        expected.push_str(&piece);
    }
    client.settled().await;
    // Every update has been applied; wait out the 5 ms batch window many times over.
    tokio::time::sleep(Duration::from_millis(250)).await;
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reap");
    drop(client);

    let server = Server::start(&db, &[]);
    assert_eq!(server.text(&id).await, expected);
}

async fn sigterm_and_sigint_shut_down_gracefully(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut id = None;
    let mut expected = String::new();
    for signal in ["TERM", "INT"] {
        // Only a graceful shutdown can save updates inside a ten-minute batch window.
        let mut server = Server::start(&db, &[("TANDEM_FLUSH_MS", "600000")]);
        let doc = match &id {
            Some(doc) => doc,
            None => id.insert(server.create_doc().await),
        };
        let mut client = server.client(doc).await;
        let piece = format!("before SIG{signal}. ");
        client.append(&piece).await;
        expected.push_str(&piece);
        client.settled().await;
        server.signal(signal);
        let close = client.wait_closed().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 1001);
        let status = server.wait_exit();
        assert!(status.success(), "SIG{signal}: {status}");
    }
    let server = Server::start(&db, &[]);
    assert_eq!(server.text(id.as_ref().unwrap()).await, expected);
}

async fn a_shutdown_that_cannot_save_says_so_and_exits_non_zero(backend: Backend) {
    let db = TestDb::new(backend).await;
    let env = [("TANDEM_FLUSH_MS", "600000"), ("TANDEM_SHUTDOWN_TIMEOUT", "1500ms")];
    let mut server = Server::start(&db, &env);
    let id = server.create_doc().await;
    let mut client = server.client(&id).await;
    // The database stops taking writes.
    db.refuse("insert", "doc_updates").await;
    db.refuse("insert", "doc_snapshots").await;
    client.append("never saved").await;
    client.settled().await;
    let started = std::time::Instant::now();
    server.signal("TERM");
    let status = server.wait_exit();
    assert!(!status.success(), "exited with {status} though a document was not saved");
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    let log = server.log.lock().unwrap().join("\n");
    let named = log.lines().any(|line| line.contains("not saved") && line.contains(&id));
    assert!(named, "the log does not name the unsaved document:\n{log}");
}
