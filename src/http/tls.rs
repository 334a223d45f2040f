//! HTTPS and WSS served directly, with rustls: a certificate chain and key from PEM files
//! (`--tls-cert`, `--tls-key`), ALPN `http/1.1`. A renewed certificate is picked up without a
//! restart, on SIGHUP or when the files change: each new handshake gets the newest pair, and
//! open connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the files are looked at for a change (besides SIGHUP).
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the certificate and key do not go together: {0}")]
    Mismatch(String),
    #[error("--tls-cert and --tls-key go together: give both")]
    Half,
}

/// The server's TLS: an acceptor whose certificate can be swapped while it runs.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<Current>,
}

/// The certificate every new handshake gets.
#[derive(Debug)]
struct Current {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    pair: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' modification times when read, to notice a renewal.
    stamps: (Option<SystemTime>, Option<SystemTime>),
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.pair.read().unwrap_or_else(|p| p.into_inner()).key))
    }
}

impl Tls {
    /// TLS from the settings: `None` when neither file is given.
    pub fn from_settings(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Self::load(cert, key).map(Some),
            _ => Err(TlsError::Half),
        }
    }

    fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = read_pair(cert, key, &provider)?;
        let resolver = Arc::new(Current {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider: Arc::clone(&provider),
            pair: RwLock::new(pair),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Mismatch(err.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)), resolver })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again and, if they hold a good pair, serves it from now on. A bad
    /// pair (a renewal half written, say) is reported and the current one kept.
    pub fn reload(&self) -> Result<(), TlsError> {
        let current = &self.resolver;
        let pair = read_pair(&current.cert, &current.key, &current.provider)?;
        *current.pair.write().unwrap_or_else(|p| p.into_inner()) = pair;
        tracing::info!(cert = %current.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// True when either file changed since it was read.
    fn changed(&self) -> bool {
        let current = &self.resolver;
        let now = (modified(&current.cert), modified(&current.key));
        now != current.pair.read().unwrap_or_else(|p| p.into_inner()).stamps
    }

    /// Reloads on SIGHUP and when the files change, until `stop`.
    pub fn watch(self, stop: CancellationToken) {
        // Registered before returning: a SIGHUP from now on reloads (instead of killing).
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            loop {
                #[cfg(unix)]
                let hangup_signal = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup_signal = std::future::pending::<Option<()>>();
                let asked = tokio::select! {
                    () = stop.cancelled() => return,
                    _ = hangup_signal => true,
                    _ = tick.tick() => false,
                };
                if (asked || self.changed())
                    && let Err(err) = self.reload()
                {
                    tracing::error!(error = %err, "TLS certificate not reloaded; keeping the current one");
                }
            }
        });
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let stamps = (modified(cert), modified(key));
    let cert_error = |reason: String| TlsError::Cert { path: cert.display().to_string(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|err| cert_error(err.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|err| cert_error(err.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| TlsError::Key { path: key.display().to_string(), reason: err.to_string() })?;
    let key = CertifiedKey::from_der(chain, private, provider)
        .map_err(|err| TlsError::Mismatch(err.to_string()))?;
    Ok(Loaded { key: Arc::new(key), stamps })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn a_pair_loads_and_bad_files_say_which() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "localhost");
        assert!(Tls::from_settings(Some(&cert), Some(&key)).unwrap().is_some());
        assert!(Tls::from_settings(None, None).unwrap().is_none());
        assert!(matches!(Tls::from_settings(Some(&cert), None), Err(TlsError::Half)));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(Tls::from_settings(Some(&missing), Some(&key)), Err(TlsError::Cert { .. })));
        assert!(matches!(Tls::from_settings(Some(&cert), Some(&missing)), Err(TlsError::Key { .. })));
        // Another pair's key does not go with this certificate.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = write_pair(other.path(), "localhost");
        assert!(matches!(Tls::from_settings(Some(&cert), Some(&other_key)), Err(TlsError::Mismatch(_))));
    }

    #[test]
    fn a_renewal_is_noticed_and_a_broken_one_keeps_the_old_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "localhost");
        let tls = Tls::from_settings(Some(&cert), Some(&key)).unwrap().unwrap();
        let first = tls.resolver.pair.read().unwrap().key.cert[0].clone();
        assert!(!tls.changed());
        std::thread::sleep(Duration::from_millis(20));
        write_pair(dir.path(), "renewed.localhost");
        assert!(tls.changed());
        tls.reload().unwrap();
        assert_ne!(tls.resolver.pair.read().unwrap().key.cert[0], first);
        std::fs::write(&key, "not a key").unwrap();
        assert!(tls.reload().is_err());
        assert!(!tls.resolver.pair.read().unwrap().key.cert.is_empty(), "the current pair is kept");
    }
}
