//! The browser editor: the bundle built from web/ (web/dist), embedded in the binary so a
//! fresh clone runs the full editor with no Node. Paths that are not files of the bundle get
//! index.html, where the page's own router takes over (`/d/{id}` opens a document).

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::error::ApiError;

#[derive(RustEmbed)]
#[folder = "web/dist"]
#[allow_missing = true]
struct Assets;

pub async fn serve_asset(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") || path.starts_with("ws/") {
        return ApiError::NotFound("no such endpoint").into_response();
    }
    if let Some(response) = asset(path) {
        return response;
    }
    // Anything that looks like a file and is not one is a 404, not the page.
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return ApiError::NotFound("no such file").into_response();
    }
    asset("index.html").unwrap_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            "the web editor was not built into this binary (web/dist)",
        )
            .into_response()
    })
}

fn asset(path: &str) -> Option<Response> {
    let file = Assets::get(path)?;
    let mime = file.metadata.mimetype().to_owned();
    // File names carry no content hash (the build is reproducible), so browsers revalidate.
    Some(
        (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            file.data,
        )
            .into_response(),
    )
}
