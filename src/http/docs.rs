//! The REST API for documents: `/api/docs`.

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiBytes, ApiError, ApiJson, ApiQuery, parse_json};
use super::links;
use crate::auth::{Access, Scope};
use crate::model::{Doc, DocId, PageCursor, Title};

/// Page size when the client does not ask for one, and the most it may ask for (every list of
/// the API: documents, versions).
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// The page size a `limit` query parameter asks for; 400 outside 1 to [`MAX_LIMIT`].
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    Ok(limit)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/docs", get(list_docs).post(create_doc))
        .route("/api/docs/{id}", get(get_doc).patch(rename_doc).delete(delete_doc))
        .route("/api/docs/{id}/text", get(get_doc_text))
        .route("/api/docs/{id}/links", post(links::create_link))
}

/// A document id from the path; a malformed one is a 400 with a JSON body.
pub struct DocIdPath(pub DocId);

impl<S: Send + Sync> FromRequestParts<S> for DocIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(raw.parse()?))
    }
}

/// 404 unless the document exists. The registry answers (see `Registry::exists`): an open
/// document exists whatever the database says, so its readers and new collaborators are
/// served during a database outage; one that is not open is loaded, once for every caller.
pub async fn ensure_exists(app: &AppState, id: DocId) -> Result<(), ApiError> {
    if app.registry.exists(id).await? { Ok(()) } else { Err(ApiError::DOC_NOT_FOUND) }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct DocList {
    docs: Vec<Doc>,
    next_cursor: Option<String>,
}

/// `GET /api/docs?limit=N&cursor=C`: newest `updated_at` first.
async fn list_docs(
    State(app): State<AppState>,
    access: Access,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<axum::Json<DocList>, ApiError> {
    access.allows_all(Scope::Admin)?;
    let limit = page_limit(params.limit)?;
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<PageCursor>()?),
    };
    // One more than asked tells whether there is a next page.
    let mut docs = app.store.list_docs(limit + 1, after).await?;
    let next_cursor = if docs.len() > limit as usize {
        docs.truncate(limit as usize);
        docs.last().map(|doc| PageCursor::after(doc).to_string())
    } else {
        None
    };
    Ok(axum::Json(DocList { docs, next_cursor }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDoc {
    title: Option<String>,
}

/// `POST /api/docs {"title": "..."}` -> 201 Doc. The body may be omitted.
async fn create_doc(
    State(app): State<AppState>,
    access: Access,
    ApiBytes(body): ApiBytes,
) -> Result<impl IntoResponse, ApiError> {
    access.allows_all(Scope::Admin)?;
    let body: CreateDoc =
        if body.iter().all(u8::is_ascii_whitespace) { CreateDoc { title: None } } else { parse_json(&body)? };
    let title = match body.title {
        Some(raw) => Title::parse(&raw)?,
        None => Title::default(),
    };
    let doc = app.store.create_doc(&title).await?;
    tracing::info!(doc_id = %doc.id, by = access.who(), "document created");
    Ok((StatusCode::CREATED, axum::Json(doc)))
}

/// `GET /api/docs/{id}`.
async fn get_doc(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    access: Access,
) -> Result<axum::Json<Doc>, ApiError> {
    access.allows(id, Scope::Read)?;
    let doc = app.store.get_doc(id).await?.ok_or(ApiError::DOC_NOT_FOUND)?;
    Ok(axum::Json(doc))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameDoc {
    title: String,
}

/// `PATCH /api/docs/{id} {"title": "..."}`.
async fn rename_doc(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    access: Access,
    ApiJson(body): ApiJson<RenameDoc>,
) -> Result<axum::Json<Doc>, ApiError> {
    access.allows(id, Scope::Write)?;
    let title = Title::parse(&body.title)?;
    let doc = app.store.rename_doc(id, &title).await?.ok_or(ApiError::DOC_NOT_FOUND)?;
    Ok(axum::Json(doc))
}

/// `DELETE /api/docs/{id}` -> 204. Open connections to it are closed (4404).
async fn delete_doc(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    access: Access,
) -> Result<StatusCode, ApiError> {
    access.allows(id, Scope::Admin)?;
    // The store first: if the delete fails, the document's actor is still running with
    // everything it holds, so nothing is lost. Once it is gone from the store, every later
    // write of the actor fails as not found, and closing it ends its sessions (4404).
    if !app.store.delete_doc(id).await? {
        return Err(ApiError::DOC_NOT_FOUND);
    }
    app.registry.close(id).await;
    tracing::info!(doc_id = %id, by = access.who(), "document deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/docs/{id}/text`: the live content of the root `Y.Text` named `content`.
async fn get_doc_text(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    access: Access,
) -> Result<impl IntoResponse, ApiError> {
    access.allows(id, Scope::Read)?;
    ensure_exists(&app, id).await?;
    let text = app.registry.text(id).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}
