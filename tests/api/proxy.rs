//! tandem behind Debian's nginx, configured by docs/nginx.conf itself (only its ports and
//! file paths changed): REST and WebSocket editing go through it, page origins are judged by
//! the Host nginx forwards, and per-address limits see the clients behind it. Skipped loudly
//! without nginx (and failed in CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{Backend, Client, PATIENCE, TestApp, require_all, shout};

/// nginx running docs/nginx.conf in front of `upstream`, on a port of its own.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Nginx {
    async fn start(binary: &Path, upstream: std::net::SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let template =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/nginx.conf")).unwrap();
        let config = template
            .replace("listen 8443;", &format!("listen 127.0.0.1:{port};"))
            .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
            .replace(
                "/var/log/nginx/tandem.access.log",
                &dir.path().join("access.log").display().to_string(),
            );
        assert_ne!(config, template, "docs/nginx.conf no longer has the lines this test changes");
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let dir_path = dir.path().display().to_string();
        // As root, nginx's workers would switch to an unprivileged user that cannot write here.
        let user = if unsafe_is_root() { "user root;" } else { "" };
        let globals = format!("daemon off; pid {dir_path}/nginx.pid; error_log {dir_path}/error.log; {user}");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg(globals)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let nginx = Self { child, port, _dir: dir };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "nginx did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_through_nginx_with_docs_nginx_conf() {
    let Some(binary) = nginx_binary() else {
        assert!(!require_all(), "nginx is not installed (apt-get install nginx)");
        shout("SKIPPED: proxy::editing_through_nginx_with_docs_nginx_conf (nginx is not installed)");
        return;
    };
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.trust_proxy_headers = true;
        c.max_connections_per_ip = 5;
    })
    .await;
    let nginx = Nginx::start(&binary, app.addr).await;
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(nginx.url("/api/docs"))
        .json(&serde_json::json!({"title": "through nginx"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let ws = format!("ws://127.0.0.1:{}/ws/{id}", nginx.port);
    let mut a = Client::connect(&ws).await;
    // A page served through nginx: its origin is the host nginx forwards.
    let mut request = ws.as_str().into_client_request().unwrap();
    request.headers_mut().insert("origin", format!("http://127.0.0.1:{}", nginx.port).parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("upgrade through nginx");
    let mut b = Client::from_socket(socket, yrs::Doc::new()).await;
    a.synced().await;
    b.synced().await;
    a.append("typed through nginx").await;
    b.wait_for_text("typed through nginx").await;
    b.set_awareness(serde_json::json!({"user": {"name": "Bo"}})).await;
    let b_id = b.client_id();
    a.wait_until("A sees B's cursor", |c| c.awareness_of(b_id).is_some()).await;
    let text =
        http.get(nginx.url(&format!("/api/docs/{id}/text"))).send().await.unwrap().text().await.unwrap();
    assert_eq!(text, "typed through nginx");

    // nginx forwards the client's address: five sockets from one client (another loopback
    // address) fill its cap of five, and nginx is not one client for all.
    let from = |host: &'static str| {
        let ws = ws.clone();
        let port = nginx.port;
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{host}:0").parse().unwrap()).unwrap();
            let tcp = socket.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap();
            tokio_tungstenite::client_async(ws.as_str(), tcp).await
        }
    };
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(from("127.0.0.5").await.expect("within the cap").0);
    }
    match from("127.0.0.5").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("a sixth socket from one client address got through: {other:?}"),
    }
    assert!(from("127.0.0.6").await.is_ok(), "another client behind the same nginx was refused");
    b.append("!").await;
    a.wait_for_text("typed through nginx!").await;
}
