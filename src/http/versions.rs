//! The REST API for version history: `/api/docs/{id}/versions`.
//!
//! Listing and reading go to the store. Keeping a version on request and restoring one go
//! through the document's actor, which holds the live state: a restore becomes an ordinary
//! CRDT update there, so every connected editor sees it at once.

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::docs::{DocIdPath, ensure_exists, page_limit};
use super::error::{ApiBytes, ApiError, ApiQuery, parse_json};
use crate::auth::{Access, Scope};
use crate::doc::{Restored, diff, text_of_state};
use crate::model::{self, DocId, Label, Reason, Version, VersionCursor, VersionId};
use crate::store::NewVersion;

/// Times a restore is tried again when the document changed between reading its state and
/// applying the edits (someone typed in those milliseconds).
const RESTORE_ATTEMPTS: usize = 8;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/docs/{id}/versions", get(list_versions).post(create_version))
        .route("/api/docs/{id}/versions/{vid}", get(get_version).delete(delete_version))
        .route("/api/docs/{id}/versions/{vid}/text", get(get_version_text))
        .route("/api/docs/{id}/versions/{vid}/restore", post(restore_version))
}

/// A document id and a version id from the path; malformed ones are a 400 with a JSON body.
struct VersionPath(DocId, VersionId);

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((doc, version)) = Path::<(String, String)>::from_request_parts(parts, state).await?;
        Ok(Self(doc.parse()?, version.parse()?))
    }
}

/// 404 for a document that does not exist, from the store.
async fn doc_exists(app: &AppState, id: DocId) -> Result<(), ApiError> {
    app.store.get_doc(id).await?.map(drop).ok_or(ApiError::DOC_NOT_FOUND)
}

/// The version, or which of the two is missing.
async fn find_version(app: &AppState, doc: DocId, id: VersionId) -> Result<Version, ApiError> {
    match app.store.get_version(doc, id).await? {
        Some(version) => Ok(version),
        None => {
            doc_exists(app, doc).await?;
            Err(ApiError::VERSION_NOT_FOUND)
        }
    }
}

/// The text a version holds. Reading a state is CPU work that grows with the document, so it
/// runs off the request threads.
async fn version_text(app: &AppState, doc: DocId, id: VersionId) -> Result<String, ApiError> {
    let Some(state) = app.store.version_state(doc, id).await? else {
        doc_exists(app, doc).await?;
        return Err(ApiError::VERSION_NOT_FOUND);
    };
    tokio::task::spawn_blocking(move || text_of_state(&state))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(|err| ApiError::Internal(format!("version {id} does not decode: {err}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct VersionList {
    versions: Vec<Version>,
    next_cursor: Option<String>,
}

/// `GET /api/docs/{id}/versions?limit=N&cursor=C`: newest first.
async fn list_versions(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    access: Access,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<axum::Json<VersionList>, ApiError> {
    access.allows(id, Scope::Read)?;
    let limit = page_limit(params.limit)?;
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<VersionCursor>()?),
    };
    doc_exists(&app, id).await?;
    // One more than asked tells whether there is a next page.
    let mut versions = app.store.list_versions(id, limit + 1, after).await?;
    let next_cursor = if versions.len() > limit as usize {
        versions.truncate(limit as usize);
        versions.last().map(|v| VersionCursor::after(v).to_string())
    } else {
        None
    };
    Ok(axum::Json(VersionList { versions, next_cursor }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateVersion {
    label: Option<String>,
}

/// `POST /api/docs/{id}/versions {"label": "..."}` -> 201 Version: the live state, now. The
/// body may be omitted.
async fn create_version(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    access: Access,
    ApiBytes(body): ApiBytes,
) -> Result<impl IntoResponse, ApiError> {
    access.allows(id, Scope::Write)?;
    let body: CreateVersion =
        if body.iter().all(u8::is_ascii_whitespace) { CreateVersion::default() } else { parse_json(&body)? };
    let label = body.label.as_deref().map(Label::parse).transpose()?;
    ensure_exists(&app, id).await?;
    let capture = app.registry.take_version(id).await?;
    let version = app
        .store
        .insert_version(&NewVersion {
            doc_id: id,
            created_at: model::now(),
            label,
            reason: Reason::Request,
            editors: capture.editors,
            state: capture.state,
        })
        .await?;
    prune(&app, id).await;
    tracing::info!(doc_id = %id, version = %version.id, by = access.who(), "version kept on request");
    Ok((StatusCode::CREATED, axum::Json(version)))
}

/// Thins the document's versions by the retention rule; a failure only delays it.
async fn prune(app: &AppState, id: DocId) {
    let retention = app.config.version_settings().retention;
    if let Err(err) = app.store.prune_versions(id, retention, model::now()).await {
        tracing::warn!(doc_id = %id, error = %err, "could not apply version retention");
    }
}

/// `GET /api/docs/{id}/versions/{vid}`.
async fn get_version(
    State(app): State<AppState>,
    VersionPath(doc, id): VersionPath,
    access: Access,
) -> Result<axum::Json<Version>, ApiError> {
    access.allows(doc, Scope::Read)?;
    Ok(axum::Json(find_version(&app, doc, id).await?))
}

/// `GET /api/docs/{id}/versions/{vid}/text`: the text of `content` at that version.
async fn get_version_text(
    State(app): State<AppState>,
    VersionPath(doc, id): VersionPath,
    access: Access,
) -> Result<impl IntoResponse, ApiError> {
    access.allows(doc, Scope::Read)?;
    let text = version_text(&app, doc, id).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// `DELETE /api/docs/{id}/versions/{vid}` -> 204.
async fn delete_version(
    State(app): State<AppState>,
    VersionPath(doc, id): VersionPath,
    access: Access,
) -> Result<StatusCode, ApiError> {
    access.allows(doc, Scope::Admin)?;
    if !app.store.delete_version(doc, id).await? {
        doc_exists(&app, doc).await?;
        return Err(ApiError::VERSION_NOT_FOUND);
    }
    tracing::info!(doc_id = %doc, version = %id, by = access.who(), "version deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/docs/{id}/versions/{vid}/restore` -> 200 Version: the live text becomes the
/// version's, through the document's actor; the answer is the version that keeps the state
/// from before, so restoring that undoes this.
///
/// The state before is stored first, then the edits are applied only if the document still
/// holds exactly that state; if someone typed in between, the stored state is brought up to
/// date and the edits computed again. So nothing typed before the restore is lost from the
/// history.
async fn restore_version(
    State(app): State<AppState>,
    VersionPath(doc, id): VersionPath,
    access: Access,
) -> Result<axum::Json<Version>, ApiError> {
    access.allows(doc, Scope::Write)?;
    let target = version_text(&app, doc, id).await?;
    ensure_exists(&app, doc).await?;
    let mut before: Option<Version> = None;
    for _ in 0..RESTORE_ATTEMPTS {
        let capture = app.registry.capture(doc).await?;
        let kept = NewVersion {
            doc_id: doc,
            created_at: model::now(),
            label: None,
            reason: Reason::Restore,
            editors: capture.editors,
            state: capture.state,
        };
        let version = match &before {
            None => app.store.insert_version(&kept).await?,
            Some(version) => {
                app.store.replace_version_state(doc, version.id, &kept).await?;
                Version { editors: kept.editors.clone(), ..version.clone() }
            }
        };
        before = Some(version);
        let current = capture.text;
        let edits = {
            let target = target.clone();
            tokio::task::spawn_blocking(move || diff(&current, &target))
                .await
                .map_err(|err| ApiError::Internal(err.to_string()))?
        };
        let by = access.name.as_deref();
        match app.registry.restore(doc, &edits, &capture.state_vector, by).await? {
            Restored::Applied => {
                let before = before.expect("set above");
                tracing::info!(doc_id = %doc, version = %id, before = %before.id, by = access.who(), "restored");
                return Ok(axum::Json(before));
            }
            Restored::Changed => tracing::debug!(doc_id = %doc, "changed while restoring; again"),
        }
    }
    // Not restored: the state kept for it would only confuse the list.
    if let Some(version) = before {
        let _ = app.store.delete_version(doc, version.id).await;
    }
    Err(ApiError::Conflict("the document kept changing while restoring it; try again".into()))
}
