//! Startup and shutdown: one path, used by `main` and by the tests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::doc::{DocSettings, Registry};
use crate::http::{self, AppState, EdgeSettings, LimitSettings, Limits, Origins, SocketSettings, Tls};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Of the shutdown budget, what is kept for connections to send their close frames after
/// the documents have saved.
const CLOSE_SHARE: Duration = Duration::from_millis(500);

/// How often version retention is applied to every document, beside the pruning each new
/// version does for its own document (a document no one edits still ages).
const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

/// Connects the store (applying migrations), then serves on `listener` until `shutdown`
/// resolves. Then it stops accepting, closes every socket with 1001 and writes every
/// document's pending updates before returning.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let auth =
        Verifier::from_settings(config.auth.auth_secret.as_deref(), config.auth.auth_public_key.as_deref())
            .context("setting up access control")?;
    let origins = Origins::from_settings(&config.allowed_origins)
        .map_err(anyhow::Error::msg)
        .context("reading --allowed-origins")?;
    let tls = Tls::from_settings(config.tls_cert.as_deref(), config.tls_key.as_deref())
        .context("setting up TLS")?;
    let metrics = Metrics::new();
    let limits = Limits::new(limit_settings(&config), metrics.clone());
    let store = connect_store(&config).await?;
    let cluster = join_cluster(&config, &store).await?;
    let registry = Registry::new(store.clone(), DocSettings::from(&config), metrics.clone(), cluster.clone());
    let connections = TaskTracker::new();
    let sockets = Arc::new(socket_settings(&config, &metrics));
    let state = AppState {
        store: store.clone(),
        registry: registry.clone(),
        config: Arc::new(config),
        auth: auth.clone(),
        origins: Arc::new(origins),
        limits: Arc::clone(&limits),
        sockets,
        metrics,
        connections: connections.clone(),
    };
    let shutdown_timeout = state.config.shutdown_timeout;
    let edge = EdgeSettings {
        header_timeout: Duration::from_millis(state.config.header_timeout_ms),
        keepalive_timeout: Duration::from_millis(state.config.keepalive_timeout_ms),
        max_header_bytes: state.config.max_header_bytes,
    };
    let addr = listener.local_addr()?;
    let access = if auth.is_some() { "tokens" } else { "open" };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/");
    tracing::info!(version = env!("CARGO_PKG_VERSION"), %url, %addr, store = %redact(&state.config.database_url),
        backend = store.backend(), access, max_connections = limits.settings().max_connections, "tandem listening");
    if auth.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "running open (no --auth-secret or --auth-public-key) on an address others can reach: \
             anyone who reaches it can read, change and delete every document"
        );
    }

    let retention = state.config.version_settings().retention;
    let app = http::router(state);
    let watching = tokio_util::sync::CancellationToken::new();
    tokio::spawn(sweep_versions(store.clone(), retention, watching.clone()));
    if let Some(tls) = &tls {
        tls.clone().watch(watching.clone());
    }
    let mut deadline = tokio::time::Instant::now();
    let shutdown = async {
        shutdown.await;
        deadline = tokio::time::Instant::now() + shutdown_timeout;
    };
    http::serve(listener, app, limits, tls, edge, shutdown).await;
    watching.cancel();

    tracing::info!(open_docs = registry.open_count(), "shutting down: saving open documents");
    let save_until = deadline.checked_sub(CLOSE_SHARE).unwrap_or(deadline);
    let unsaved = registry.shutdown(save_until.saturating_duration_since(tokio::time::Instant::now())).await;
    for doc_id in &unsaved {
        tracing::error!(%doc_id, "document not saved before the shutdown deadline: its last updates are lost \
            unless its clients send them again");
    }
    // Every actor has told its connections to close (1001); let them send that.
    connections.close();
    if tokio::time::timeout_at(deadline, connections.wait()).await.is_err() {
        tracing::warn!(left = connections.len(), "some connections did not close in time");
    }
    if !unsaved.is_empty() {
        anyhow::bail!("{} documents were not saved before the shutdown deadline", unsaved.len());
    }
    tracing::info!("stopped");
    Ok(())
}

/// Applies version retention to every document with versions, a minute after start and then
/// every [`RETENTION_SWEEP`], until `stop`.
async fn sweep_versions(
    store: Store,
    retention: crate::store::Retention,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut next = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = stop.cancelled() => return,
        }
        next += RETENTION_SWEEP;
        let docs = match store.docs_with_versions().await {
            Ok(docs) => docs,
            Err(err) => {
                tracing::warn!(error = %err, "could not apply version retention");
                continue;
            }
        };
        let mut pruned = 0;
        for doc in docs {
            match store.prune_versions(doc, retention, crate::model::now()).await {
                Ok(n) => pruned += n,
                Err(err) => tracing::warn!(doc_id = %doc, error = %err, "could not apply version retention"),
            }
        }
        tracing::info!(pruned, "version retention applied");
    }
}

/// Opens the store (applying migrations). A database that does not answer yet (a container
/// still starting) is tried again with backoff for `--database-wait-ms`; what finally fails
/// is reported with the database's own error.
async fn connect_store(config: &Config) -> anyhow::Result<Store> {
    let shown = redact(&config.database_url);
    let connect = || Store::connect(&config.database_url);
    let store = patiently(config, &shown, connect, StoreError::is_transient).await;
    store.with_context(|| format!("opening the database {shown}"))
}

/// Tries `connect` until it succeeds, fails for good (`worth_retrying` says no), or
/// `--database-wait-ms` has passed, with backoff from 250 ms to 5 s: a service that does not
/// answer yet (a container still starting) is waited for, and the last error is returned.
async fn patiently<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    config: &Config,
    shown: &str,
    mut connect: impl FnMut() -> F,
    worth_retrying: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(config.database_wait_ms);
    let mut wait = Duration::from_millis(250);
    loop {
        match connect().await {
            Err(err) if worth_retrying(&err) && tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(service = %shown, error = %err, retry_in_ms = wait.as_millis() as u64,
                    "it does not answer yet; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            done => return done,
        }
    }
}

/// What every WebSocket connection is held to.
fn socket_settings(config: &Config, metrics: &Metrics) -> SocketSettings {
    SocketSettings {
        max_message: config.max_message_bytes,
        messages_per_sec: config.max_messages_per_sec,
        messages_per_frame: config.max_messages_per_frame.max(1),
        frame_timeout: config.frame_timeout(),
        client_queue: config.client_queue,
        metrics: metrics.clone(),
    }
}

/// With `--redis-url`: the connection to the other instances (tried again with backoff for
/// `--database-wait-ms`, as the database is). Needs Postgres: the record every instance
/// writes and reads.
async fn join_cluster(config: &Config, store: &Store) -> anyhow::Result<Option<Cluster>> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    if store.backend() != "postgres" {
        anyhow::bail!(
            "--redis-url runs several instances on one database, which needs Postgres: \
             set DATABASE_URL=postgres://... (the embedded SQLite file is one instance's own)"
        );
    }
    let shown = redact(url);
    let cluster = patiently(config, &shown, || Cluster::connect(url), |_| true).await;
    cluster.map(Some).with_context(|| format!("connecting to Redis at {shown}"))
}

/// The connection caps, with the default total worked out from the descriptor limit.
fn limit_settings(config: &Config) -> LimitSettings {
    let max_connections = match config.max_connections {
        0 => http::default_max_connections(),
        n => n,
    };
    LimitSettings {
        max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        max_connections_per_doc: config.max_connections_per_doc.max(1),
        connect_rate_per_ip: config.connect_rate_per_ip,
        trust_proxy_headers: config.trust_proxy_headers,
    }
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("signal received");
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://data/tandem.db"), "sqlite://data/tandem.db");
    }
}
