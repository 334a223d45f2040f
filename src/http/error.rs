//! The one error type of the HTTP layer: every failure becomes `{"error": "..."}` with a
//! fitting status, including requests axum's own extractors reject.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::handshake::{self, HandshakeError};
use super::limits::Refusal;
use crate::auth::{Denied, TokenError};
use crate::doc::DocError;
use crate::model::{InvalidCursor, InvalidDocId, InvalidLabel, InvalidTitle, InvalidVersionId};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// No valid token (401): a new token can fix it.
    #[error("{0}")]
    Unauthorized(TokenError),
    /// A valid token that does not reach this far, or a page of a refused origin (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    /// A rejection from one of axum's extractors, which knows its own status.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    #[error("{0}")]
    Unavailable(&'static str),
    /// Past a connection cap or rate: 503 or 429, with `Retry-After`.
    #[error("{}", .0.message())]
    Refused(Refusal),
    /// 426: a WebSocket version the server does not speak; the answer names the one it does.
    #[error("{0}")]
    UpgradeRequired(String),
    #[error("internal server error")]
    Internal(String),
}

impl ApiError {
    pub const DOC_NOT_FOUND: Self = Self::NotFound("document not found");
    pub const VERSION_NOT_FOUND: Self = Self::NotFound("version not found");

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Rejected { status, .. } => *status,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Refused(Refusal::TooFast(_)) => StatusCode::TOO_MANY_REQUESTS,
            Self::Refused(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let mut response = (self.status(), Json(json!({ "error": self.to_string() }))).into_response();
        match &self {
            Self::Unauthorized(err) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, www_authenticate(err));
            }
            Self::Refused(refusal) => {
                let seconds = refusal.retry_after().as_secs().max(1);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            Self::UpgradeRequired(_) => {
                let version = HeaderValue::from_static(handshake::VERSION);
                response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, version);
            }
            _ => {}
        }
        // The rest of a body too large, or too slow, is not read: the connection cannot
        // carry another request, and a client must not send one on it.
        if matches!(self.status(), StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// RFC 6750 section 3: a bare challenge when no token came, `invalid_token` otherwise.
fn www_authenticate(err: &TokenError) -> HeaderValue {
    match err {
        TokenError::Missing => HeaderValue::from_static("Bearer realm=\"tandem\""),
        err => {
            let description = err.to_string().replace(['"', '\\', '\r', '\n'], "'");
            let value = format!(
                "Bearer realm=\"tandem\", error=\"invalid_token\", error_description=\"{description}\""
            );
            HeaderValue::from_str(&value).unwrap_or_else(|_| {
                HeaderValue::from_static("Bearer realm=\"tandem\", error=\"invalid_token\"")
            })
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        Self::Unauthorized(err)
    }
}

impl From<Denied> for ApiError {
    fn from(err: Denied) -> Self {
        Self::Forbidden(err.to_string())
    }
}

impl From<HandshakeError> for ApiError {
    fn from(err: HandshakeError) -> Self {
        match err {
            HandshakeError::Version => Self::UpgradeRequired(err.to_string()),
            err => Self::BadRequest(format!("not a WebSocket handshake: {err}")),
        }
    }
}

impl From<StoreError> for ApiError {
    /// Every failure of the database is temporary from a client's point of view (503, try
    /// again): it refused a session, timed out, went away. Only a setup error is ours.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::DOC_NOT_FOUND,
            StoreError::Database(_) | StoreError::Shared(_) | StoreError::WriterStopped => {
                tracing::warn!(error = %err, "database unavailable");
                Self::Unavailable("database unavailable; try again later")
            }
            err @ (StoreError::UnsupportedUrl(_)
            | StoreError::Migrate(_)
            | StoreError::Folder { .. }
            | StoreError::Compression(_)
            | StoreError::Merge(_)) => Self::Internal(err.to_string()),
        }
    }
}

impl From<DocError> for ApiError {
    fn from(err: DocError) -> Self {
        match err {
            DocError::NotFound => Self::DOC_NOT_FOUND,
            DocError::ShuttingDown => Self::Unavailable("server shutting down"),
            DocError::Gone | DocError::Load(_) | DocError::Store(_) => {
                tracing::warn!(error = %err, "document unavailable");
                Self::Unavailable("document temporarily unavailable; try again later")
            }
        }
    }
}

impl From<InvalidDocId> for ApiError {
    fn from(err: InvalidDocId) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl From<InvalidCursor> for ApiError {
    fn from(err: InvalidCursor) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl From<InvalidVersionId> for ApiError {
    fn from(err: InvalidVersionId) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl From<InvalidLabel> for ApiError {
    fn from(err: InvalidLabel) -> Self {
        Self::Unprocessable(err.to_string())
    }
}

impl From<InvalidTitle> for ApiError {
    fn from(err: InvalidTitle) -> Self {
        Self::Unprocessable(err.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::Rejected { status: rejection.status(), message: rejection.body_text() }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::Rejected { status: rejection.status(), message: rejection.body_text() }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::Rejected { status: rejection.status(), message: rejection.body_text() }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        Self::Rejected { status: rejection.status(), message: rejection.body_text() }
    }
}

/// Parses a JSON body read as bytes: 400 when it is not JSON, 422 when it has the wrong shape
/// (the same split as [`ApiJson`]).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        let message = format!("invalid request body: {err}");
        match err.classify() {
            serde_json::error::Category::Data => ApiError::Unprocessable(message),
            _ => ApiError::BadRequest(message),
        }
    })
}

/// `axum::Json`, with rejections as [`ApiError`] (400 bad syntax, 422 wrong shape,
/// 415 not JSON, 413 too large).
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// The raw request body, with rejections (413 too large) as [`ApiError`].
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(axum::body::Bytes::from_request(req, state).await?))
    }
}

/// `axum::extract::Query`, with rejections as [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
