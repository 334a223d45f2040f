//! Everything HTTP: the router, health checks, the REST API, the WebSocket endpoint and
//! the embedded web editor. Only this module knows about HTTP.

mod docs;
mod error;
mod handshake;
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
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::config::Config;
use crate::doc::Registry;
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
    /// Every WebSocket connection's task, so shutdown can let them send their close frames.
    pub connections: TaskTracker,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(docs::router())
        .route("/ws/{id}", get(ws::doc_socket))
        // Only the editor's files are compressed: API bodies are small, sockets are not HTTP.
        .fallback(web::serve_asset.layer(CompressionLayer::new()))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this path".into(),
    }
}

/// 200 while the process is up.
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// 200 while the database answers; 503 otherwise.
async fn readyz(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, app.store.ping()).await {
        Ok(Ok(())) => Ok((StatusCode::OK, axum::Json(json!({ "status": "ready" })))),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "database not answering");
            Err(ApiError::Unavailable("database unreachable"))
        }
        Err(_) => Err(ApiError::Unavailable("database unreachable")),
    }
}
