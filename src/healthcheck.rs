//! `tandem healthcheck`: asks a running server, reached by the same settings it runs with
//! (`--listen` / `TANDEM_LISTEN` / `PORT`, `--tls-cert`), for `/readyz`, so that a container's
//! HEALTHCHECK needs no curl in the image. Ready means 200: the server answers and so does
//! its database.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Ok when the server at the configured address answers `/readyz` with 200.
pub async fn check(config: &Config) -> anyhow::Result<()> {
    let addr = reachable(config.listen);
    tokio::time::timeout(TIMEOUT, ask(config, addr))
        .await
        .with_context(|| format!("no answer from {addr} within {TIMEOUT:?}"))?
}

/// A wildcard listen address is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, v4.port())),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, v6.port())),
        addr => addr,
    }
}

async fn ask(config: &Config, addr: SocketAddr) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    let status = match &config.tls_cert {
        None => readyz(tcp, addr).await?,
        Some(cert) => {
            let own =
                CertificateDer::from_pem_file(cert).with_context(|| format!("reading {}", cert.display()))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(trusting_only(own)));
            let name = ServerName::from(addr.ip());
            readyz(tls.connect(name, tcp).await.context("TLS handshake")?, addr).await?
        }
    };
    if status != 200 {
        bail!("{addr}/readyz answered {status}");
    }
    Ok(())
}

/// Sends `GET /readyz` and reads the status of the answer.
async fn readyz(mut io: impl AsyncRead + AsyncWrite + Unpin, addr: SocketAddr) -> anyhow::Result<u16> {
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    io.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = io.read(&mut chunk).await?;
        if n == 0 || head.len() > 4096 {
            bail!("{addr} closed the connection without an answer");
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))
}

/// A client that trusts exactly the server's own certificate, whatever name it is for: the
/// check talks to its own server at a loopback address the certificate does not name.
fn trusting_only(own: CertificateDer<'static>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(OwnCertificate { own, provider: Arc::clone(&provider) });
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

#[derive(Debug)]
struct OwnCertificate {
    own: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for OwnCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.own.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the configured certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
