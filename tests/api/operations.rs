//! What operators rely on: `tandem healthcheck`, `PORT`, JSON logs with a start-up line,
//! waiting for a database that is not up yet, start-up errors that say what failed, and
//! Postgres over TLS.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::Connection;

use crate::helpers::{Backend, PATIENCE, TestApp, TestDb};

fn tandem() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
    command.env_remove("TANDEM_LISTEN").env_remove("PORT").env_remove("RUST_LOG").env_remove("DATABASE_URL");
    command
}

fn healthcheck(args: &[&str]) -> std::process::Output {
    tandem().arg("healthcheck").args(args).output().expect("run tandem healthcheck")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_only_when_the_server_is_ready() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.addr.to_string();
    let ok = tokio::task::spawn_blocking(move || healthcheck(&["--listen", &addr])).await.unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let port = free_port().to_string();
    let nobody =
        tokio::task::spawn_blocking(move || healthcheck(&["--listen", &format!("127.0.0.1:{port}")]))
            .await
            .unwrap();
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("cannot connect"), "{nobody:?}");
    // TANDEM_LISTEN and PORT are read as the server reads them; 0.0.0.0 is asked on loopback.
    let port = app.addr.port().to_string();
    let by_port =
        tokio::task::spawn_blocking(move || tandem().arg("healthcheck").env("PORT", &port).output().unwrap())
            .await
            .unwrap();
    assert!(by_port.status.success(), "{}", String::from_utf8_lossy(&by_port.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_fails_while_the_database_is_down() {
    let Some(backend) = Backend::postgres_or_skip("operations::healthcheck_fails_while_the_database_is_down")
    else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    app.db.refuse_sessions(true).await;
    let addr = app.addr.to_string();
    let down = tokio::task::spawn_blocking(move || healthcheck(&["--listen", &addr])).await.unwrap();
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("503"), "{down:?}");
    app.db.refuse_sessions(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_speaks_tls_to_a_tls_server() {
    let dir = tempfile::tempdir().unwrap();
    let (app, cert) = crate::tls::tls_app(dir.path()).await;
    let (addr, cert) = (app.addr.to_string(), cert.cert.display().to_string());
    let ok = tokio::task::spawn_blocking(move || healthcheck(&["--listen", &addr, "--tls-cert", &cert]))
        .await
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

/// The lines a child writes to stdout, read as they come.
type Lines = std::sync::mpsc::Receiver<String>;

/// Starts the binary with `env`, collects its stdout lines, and waits for `until` in them;
/// later lines keep coming on the receiver.
fn start(env: &[(&str, String)], until: &str) -> (std::process::Child, Vec<String>, Lines) {
    let mut child =
        tandem().envs(env.iter().map(|(k, v)| (*k, v.as_str()))).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Drained to the end, so the server never writes into a closed pipe.
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + PATIENCE * 3;
    while !lines.iter().any(|l: &String| l.contains(until)) {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no {until:?} in the log: {lines:#?}");
            }
        }
    }
    (child, lines, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_is_honoured_and_json_logs_say_what_started() {
    let db = TestDb::new(Backend::Sqlite).await;
    let port = free_port();
    let env = [
        ("PORT", port.to_string()),
        ("DATABASE_URL", db.url.clone()),
        ("TANDEM_LOG_FORMAT", "json".to_string()),
        ("TANDEM_LOG", "tandem=info".to_string()),
    ];
    let (mut child, lines, more) =
        tokio::task::spawn_blocking(move || start(&env, "tandem listening")).await.unwrap();
    let started: serde_json::Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "tandem listening")
        .expect("a JSON start-up line");
    let fields = &started["fields"];
    assert_eq!(fields["addr"], format!("0.0.0.0:{port}"), "{started}");
    assert_eq!(fields["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(fields["url"], format!("http://0.0.0.0:{port}/"));
    assert_eq!(fields["store"], db.url);
    assert_eq!(fields["access"], "open");
    // A request gets its line, with status, latency and client address.
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/api/docs/not-an-id")).await.unwrap();
    assert_eq!(resp.status(), 400);
    let request = tokio::task::spawn_blocking(move || {
        loop {
            let line = more.recv_timeout(PATIENCE).expect("a request line");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == "request"
            {
                break v;
            }
        }
    })
    .await
    .unwrap();
    let fields = &request["fields"];
    assert_eq!(fields["method"], "GET", "{request}");
    assert_eq!(fields["path"], "/api/docs/not-an-id", "{request}");
    assert_eq!(fields["status"], 400, "{request}");
    assert!(fields["latency_ms"].is_number(), "{request}");
    assert!(fields["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1")), "{request}");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_up_yet_is_waited_for() {
    let Some(_) = Backend::postgres_or_skip("operations::a_database_that_is_not_up_yet_is_waited_for") else {
        return;
    };
    // The database does not exist yet, as when a Postgres container is still starting.
    let admin = std::env::var("TEST_POSTGRES_URL").unwrap();
    let name = format!("tandem_late_{}", uuid::Uuid::new_v4().simple());
    let url = admin.rsplit_once('/').map(|(base, _)| format!("{base}/{name}")).unwrap();
    let port = free_port();
    let env = [
        ("TANDEM_LISTEN", format!("127.0.0.1:{port}")),
        ("DATABASE_URL", url.clone()),
        ("TANDEM_DATABASE_WAIT_MS", "30000".to_string()),
        ("TANDEM_LOG", "tandem=info".to_string()),
    ];
    let waiting = tokio::task::spawn_blocking(move || start(&env, "does not answer yet"));
    let (mut child, _, _) = waiting.await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("create database {name}")).execute(&mut conn).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    loop {
        if let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
            && resp.status() == 200
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the server never came up once the database did");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let _ = sqlx::query(&format!("drop database if exists {name} with (force)")).execute(&mut conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_errors_say_what_failed() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    // A port nobody listens on: connecting is refused at once.
    let refusing = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a file");
    std::fs::write(&file, "").unwrap();
    let cases = [
        (vec![("TANDEM_LISTEN", addr.clone())], format!("cannot listen on {addr}")),
        (
            vec![
                ("TANDEM_LISTEN", "127.0.0.1:0".into()),
                ("DATABASE_URL", format!("sqlite://{}/data/tandem.db", file.display())),
            ],
            format!("could not create the database folder {}/data", file.display()),
        ),
        (
            vec![("TANDEM_LISTEN", "127.0.0.1:0".into()), ("DATABASE_URL", "mysql://x".into())],
            "unsupported database url".into(),
        ),
        // The database's own error (here the refused connection), not "pool timed out"; the
        // password stays out of the message.
        (
            vec![
                ("TANDEM_LISTEN", "127.0.0.1:0".into()),
                ("DATABASE_URL", format!("postgres://tandem:hunter2@127.0.0.1:{refusing}/tandem")),
            ],
            "Connection refused".into(),
        ),
        (
            vec![("TANDEM_LISTEN", "127.0.0.1:0".into()), ("TANDEM_TLS_CERT", file.display().to_string())],
            "--tls-cert and --tls-key go together".into(),
        ),
    ];
    for (env, expected) in cases {
        let output = tokio::task::spawn_blocking(move || {
            tandem()
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .env("TANDEM_DATABASE_WAIT_MS", "0")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(&expected), "expected {expected:?} in {stderr}");
        assert!(!stderr.contains("hunter2") && !stderr.contains("timed out"), "{stderr}");
    }
    drop(busy);
}

/// Postgres over TLS, `sslmode=require` and `verify-full` (Debian's Postgres serves its
/// snakeoil certificate, made for `localhost`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_require_and_verify_full() {
    let Some(backend) = Backend::postgres_or_skip("operations::postgres_over_tls_require_and_verify_full")
    else {
        return;
    };
    let snakeoil = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    for params in ["sslmode=require".to_string(), format!("sslmode=verify-full&sslrootcert={snakeoil}")] {
        let app = TestApp::spawn_with(backend, |c| {
            c.database_url = c.database_url.replace("127.0.0.1", "localhost") + "?" + &params;
        })
        .await;
        let id = app.create_doc("over tls").await;
        let mut client = app.client(&id).await;
        client.synced().await;
        client.append("encrypted").await;
        client.settled().await;
        let name = app.db.url.rsplit('/').next().unwrap().to_owned();
        let admin = std::env::var("TEST_POSTGRES_URL").unwrap();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        let encrypted: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_ssl s join pg_stat_activity a using (pid) where a.datname = $1 and s.ssl",
        )
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(encrypted > 0, "{params}: no encrypted session");
        assert_eq!(app.text(&id).await, "encrypted");
    }
}
