//! Everything HTTP: the router, health checks, the REST API, the WebSocket endpoint and
//! the embedded web editor. Only this module knows about HTTP.

mod access;
mod cross_site;
mod docs;
mod error;
mod handshake;
mod limits;
mod links;
mod listener;
mod tls;
mod versions;
mod web;
mod websocket;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio_util::task::TaskTracker;
use tower_http::compression::CompressionLayer;

pub use cross_site::Origins;
pub use error::ApiError;
pub use limits::{LimitSettings, Limits, default_max_connections};
pub use listener::{EdgeSettings, serve};
pub use tls::Tls;
pub use ws::SocketSettings;

use crate::auth::Verifier;
use crate::config::Config;
use crate::doc::Registry;
use crate::metrics::Metrics;
use crate::store::Store;

/// Largest REST request body: titles are short.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long `/readyz` waits for the database to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What every handler can reach: cheap clones only.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Registry,
    pub config: Arc<Config>,
    /// The keys tokens are checked with; `None` in open mode.
    pub auth: Option<Verifier>,
    /// The origins whose pages may use the API and open sockets.
    pub origins: Arc<Origins>,
    /// Connection counts and caps.
    pub limits: Arc<Limits>,
    pub metrics: Metrics,
    /// What every WebSocket connection is held to.
    pub sockets: Arc<SocketSettings>,
    /// Every WebSocket connection's task, so shutdown can let them send their close frames.
    pub connections: TaskTracker,
}

pub fn router(state: AppState) -> Router {
    // What pages and people reach: every route here checks origins and tokens.
    let api = docs::router()
        .merge(versions::router())
        .route("/api/access", get(access::show_access))
        .route("/metrics", get(show_metrics))
        .route("/ws/{id}", get(ws::doc_socket))
        // Set before the layers, so that they wrap it too (CORS answers preflights, which
        // no route has a method for).
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_millis(state.config.request_timeout_ms),
            answer_in_time,
        ))
        .layer(axum::middleware::from_fn(cross_site::require_json_bodies))
        .layer(cross_site::cors())
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state.origins), cross_site::guard_origin));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        // Only the editor's files are compressed: API bodies are small, sockets are not HTTP.
        .fallback(web::serve_asset.layer(CompressionLayer::new()))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), log_request))
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this path".into(),
    }
}

/// One log line per request: method, path (never the query: a WebSocket's carries its
/// token), status, latency and the client's address; and the count by status.
async fn log_request(
    State(metrics): State<Metrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.to_string())
        .unwrap_or_default();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics.http_requests.get_or_create(&crate::metrics::StatusLabel { status }).inc();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(target: "tandem::http::request", %method, path, status, latency_ms, client, "request");
    response
}

/// `GET /metrics`: OpenMetrics text. With access control on, it needs a token for every
/// document with scope admin (a scraper sends it as `Authorization: Bearer`).
async fn show_metrics(
    State(app): State<AppState>,
    access: crate::auth::Access,
) -> Result<impl IntoResponse, ApiError> {
    access.allows_all(crate::auth::Scope::Admin)?;
    Ok(([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], app.metrics.render()))
}

/// A request not answered within the timeout (a body trickling in, say) gets 408.
async fn answer_in_time(
    State(limit): State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Rejected {
            status: StatusCode::REQUEST_TIMEOUT,
            message: "the request took too long to arrive".into(),
        }
        .into_response(),
    }
}

/// 200 while the process is up.
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// 200 while the database answers and takes writes; 503 otherwise. (A database that answers
/// a query but refuses writes, such as a locked or read-only SQLite file, is not ready.)
async fn readyz(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if app.metrics.documents_write_failing.get() > 0 {
        return Err(ApiError::Unavailable("the database is not taking writes"));
    }
    match tokio::time::timeout(READY_TIMEOUT, app.store.ping()).await {
        Ok(Ok(())) => Ok((StatusCode::OK, axum::Json(json!({ "status": "ready" })))),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "database not answering");
            Err(ApiError::Unavailable("database unreachable"))
        }
        Err(_) => Err(ApiError::Unavailable("database unreachable")),
    }
}
