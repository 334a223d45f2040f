//! Everything HTTP: the router, health checks, the REST API, the WebSocket endpoint and
//! the embedded web editor. Only this module knows about HTTP.

mod access;
mod cross_site;
mod docs;
mod error;
mod limits;
mod links;
mod listener;
mod tls;
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

pub use cross_site::Origins;
pub use error::ApiError;
pub use limits::{LimitSettings, Limits, default_max_connections};
pub use listener::{EdgeSettings, serve};
pub use tls::Tls;

use crate::auth::Verifier;
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
    /// The keys tokens are checked with; `None` in open mode.
    pub auth: Option<Verifier>,
    /// The origins whose pages may use the API and open sockets.
    pub origins: Arc<Origins>,
    /// Connection counts and caps.
    pub limits: Arc<Limits>,
    /// Every WebSocket connection's task, so shutdown can let them send their close frames.
    pub connections: TaskTracker,
}

pub fn router(state: AppState) -> Router {
    // What pages and people reach: every route here checks origins and tokens.
    let api = docs::router()
        .route("/api/access", get(access::show_access))
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
        // The path only: a WebSocket's query string carries its token.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
            tracing::debug_span!("request", method = %request.method(), path = request.uri().path())
        }))
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this path".into(),
    }
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
