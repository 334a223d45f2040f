//! https and wss served directly, with a self-signed certificate made in the test; a renewed
//! certificate is served without a restart (when the files change, and on SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use yrs::Doc;

use crate::helpers::{Backend, Client, PATIENCE, TestApp};

/// A self-signed certificate for 127.0.0.1 and localhost, written to `dir`.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn write(dir: &Path) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        // Written beside, then renamed: a reader never sees half a file.
        std::fs::write(dir.join("cert.pem.new"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem.new"), made.signing_key.serialize_pem()).unwrap();
        std::fs::rename(dir.join("key.pem.new"), &key).unwrap();
        std::fs::rename(dir.join("cert.pem.new"), &cert).unwrap();
        Self { cert, key, der: made.cert.der().clone() }
    }
}

pub async fn tls_app(dir: &Path) -> (TestApp, TestCert) {
    let cert = TestCert::write(dir);
    let (cert_path, key_path) = (cert.cert.clone(), cert.key.clone());
    let app = TestApp::spawn_with(Backend::Sqlite, move |c| {
        c.tls_cert = Some(cert_path);
        c.tls_key = Some(key_path);
    })
    .await;
    (app, cert)
}

/// A client TLS config that trusts `cert` only.
fn trusting(cert: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    cert: &CertificateDer<'static>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(trusting(cert)).connect(name, tcp).await
}

pub async fn https_get(addr: std::net::SocketAddr, cert: &CertificateDer<'static>, path: &str) -> String {
    let mut tls = tls_connect(addr, cert).await.expect("TLS handshake");
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

async fn wss_client(app: &TestApp, id: &str, cert: &CertificateDer<'static>) -> Client {
    let url = format!("wss://127.0.0.1:{}/ws/{id}", app.addr.port());
    let connector = tokio_tungstenite::Connector::Rustls(trusting(cert));
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
        .await
        .expect("wss connect");
    Client::from_socket(socket, Doc::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (app, cert) = tls_app(dir.path()).await;
    let health = https_get(app.addr, &cert.der, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let tls = tls_connect(app.addr, &cert.der).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]), "ALPN http/1.1");
    drop(tls);

    // REST and two editors, all over TLS.
    let id = app.create_doc_over_tls(&cert.der).await;
    let mut a = wss_client(&app, &id, &cert.der).await;
    let mut b = wss_client(&app, &id, &cert.der).await;
    a.synced().await;
    b.synced().await;
    a.append("over wss").await;
    b.wait_for_text("over wss").await;

    // Plain HTTP on the TLS port gets nowhere, and the server carries on.
    let mut plain = TcpStream::connect(app.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut answer)).await.expect("closed");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    b.append(" still").await;
    a.wait_for_text("over wss still").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (app, old) = tls_app(dir.path()).await;
    let id = app.create_doc_over_tls(&old.der).await;
    let mut open = wss_client(&app, &id, &old.der).await;
    open.synced().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let new = TestCert::write(dir.path());
    // The files changed: within a few seconds, new handshakes get the new certificate.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tls_connect(app.addr, &new.der).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the renewed certificate was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(tls_connect(app.addr, &old.der).await.is_err(), "the old certificate is still served");
    // The connection made before carries on.
    open.append("kept").await;
    open.settled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::TestDb::new(Backend::Sqlite).await;
    let old = TestCert::write(dir.path());
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .env("TANDEM_LISTEN", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", &db.url)
        .env("TANDEM_TLS_CERT", &old.cert)
        .env("TANDEM_TLS_KEY", &old.key)
        .env("TANDEM_LOG", "tandem=warn")
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    while tls_connect(addr, &old.der).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new = TestCert::write(dir.path());
    // SIGHUP reloads at once (the file watch would take a few seconds).
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tls_connect(addr, &new.der).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "SIGHUP did not reload the certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = https_get(addr, &new.der, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
}

impl TestApp {
    pub async fn create_doc_over_tls(&self, cert: &CertificateDer<'static>) -> String {
        let mut tls = tls_connect(self.addr, cert).await.unwrap();
        let head =
            "POST /api/docs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        let body = response.split("\r\n\r\n").nth(1).expect("a body");
        serde_json::from_str::<serde_json::Value>(body).unwrap()["id"].as_str().unwrap().to_owned()
    }
}
