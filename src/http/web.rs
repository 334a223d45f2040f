//! The browser editor: the bundle built from web/ (web/dist), embedded in the binary so a
//! fresh clone runs the full editor with no Node. Paths that are not files of the bundle get
//! index.html, where the page's own router takes over (`/d/{id}` opens a document).

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::error::ApiError;

#[derive(RustEmbed)]
#[folder = "web/dist"]
#[allow_missing = true]
struct Assets;

pub async fn serve_asset(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let first = path.split('/').next().unwrap_or_default();
    if first == "api" || first == "ws" {
        return ApiError::NotFound("no such endpoint").into_response();
    }
    if let Some(response) = asset(path, &headers) {
        return response;
    }
    // Anything that looks like a file and is not one is a 404, not the page.
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return ApiError::NotFound("no such file").into_response();
    }
    asset("index.html", &headers).unwrap_or_else(|| {
        let message = "the web editor was not built into this binary (web/dist)";
        (StatusCode::NOT_FOUND, message).into_response()
    })
}

/// One embedded file. File names carry no content hash (the build is reproducible), so
/// browsers revalidate every time, against an ETag made from the content.
fn asset(path: &str, headers: &HeaderMap) -> Option<Response> {
    let file = Assets::get(path)?;
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hash[..16].iter().map(|b| format!("{b:02x}")).collect::<String>());
    let etag = HeaderValue::from_str(&etag).expect("hex is a valid header value");
    let cache = HeaderValue::from_static("no-cache");
    if headers.get(header::IF_NONE_MATCH) == Some(&etag) {
        return Some(
            (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)])
                .into_response(),
        );
    }
    let mime = file.metadata.mimetype();
    let content_type = if mime.starts_with("text/") || mime.ends_with("javascript") || mime.ends_with("json")
    {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    let content_type = HeaderValue::from_str(&content_type).ok()?;
    let headers =
        [(header::CONTENT_TYPE, content_type), (header::ETAG, etag), (header::CACHE_CONTROL, cache)];
    Some((headers, file.data).into_response())
}
