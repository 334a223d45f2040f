//! What pages of other sites may do: the allowed origins, CORS for the REST API, and the
//! rule that a request body is JSON.
//!
//! A request that carries an `Origin` not allowed is refused with 403 before anything else
//! (a WebSocket upgrade included: browsers open sockets to any site, and the server is the
//! only one who can say no). Requests without `Origin` come from programs, not pages, and
//! pass. The origin the request's own `Host` names is always allowed (by default it is the
//! only one), so the bundled editor works under whatever name the server is reached by. And since a page
//! may send a "simple" cross-site POST without asking first, a body must be declared
//! `application/json`, which no simple request can do.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The origins allowed to use the API from a page.
#[derive(Clone, Debug)]
pub enum Origins {
    /// Only the origin the request's own `Host` names (the server's own pages).
    SameHost,
    /// Any origin (`*`).
    Any,
    /// These origins, normalised (`scheme://host[:port]`, lowercase, no trailing slash),
    /// and the server's own.
    Listed(Vec<String>),
}

impl Origins {
    /// From `--allowed-origins`: empty means same host only; `*` means any.
    pub fn from_settings(list: &[String]) -> Result<Self, String> {
        let list: Vec<&str> = list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        if list.is_empty() {
            return Ok(Self::SameHost);
        }
        if list.contains(&"*") {
            return Ok(Self::Any);
        }
        let mut origins = Vec::with_capacity(list.len());
        for origin in list {
            let normal = normalise(origin);
            let Some((scheme, host)) = normal.split_once("://") else {
                return Err(format!("allowed origin {origin:?} is not of the form https://host[:port]"));
            };
            if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains('/') {
                return Err(format!("allowed origin {origin:?} is not of the form https://host[:port]"));
            }
            origins.push(normal);
        }
        Ok(Self::Listed(origins))
    }

    /// May a page of `origin` make this request (whose `Host` is `host`)?
    pub fn allows(&self, origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = normalise(origin);
        match self {
            Self::Any => true,
            Self::Listed(list) => list.contains(&origin) || same_host(&origin, host),
            Self::SameHost => same_host(&origin, host),
        }
    }
}

/// Does a (normalised) origin name the host this request was sent to? The bundled editor's
/// pages always may use their own server, under whatever name it is reached.
fn same_host(origin: &str, host: Option<&HeaderValue>) -> bool {
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    let host = host.and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase);
    matches!((authority, host), (Some(a), Some(h)) if a == h)
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Refuses (403) a request whose `Origin` is not allowed, preflights included.
pub async fn guard_origin(State(origins): State<Arc<Origins>>, request: Request, next: Next) -> Response {
    if let Err(refused) = check_origin(&origins, request.headers()) {
        return refused.into_response();
    }
    next.run(request).await
}

fn check_origin(origins: &Origins, headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        Some(origin) if !origins.allows(origin, headers.get(header::HOST)) => {
            tracing::info!(origin = ?origin, "refused a request from an origin that is not allowed");
            Err(ApiError::Forbidden(
                "requests from this origin are not allowed (see --allowed-origins)".into(),
            ))
        }
        _ => Ok(()),
    }
}

/// Answers CORS preflights and marks responses for the origins [`guard_origin`] let in.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        // Only allowed origins get this far; the answer names the one that asked.
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(PREFLIGHT_MAX_AGE)
}

/// Refuses (415) a POST, PUT or PATCH whose body is not declared `application/json`. One
/// without a body is fine.
pub async fn require_json_bodies(request: Request, next: Next) -> Response {
    let writes = matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH);
    if writes && has_body(request.headers()) && !is_json(request.headers()) {
        return ApiError::Rejected {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "send the request body as content-type: application/json".into(),
        }
        .into_response();
    }
    next.run(request).await
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    match length {
        Some(length) => length.trim() != "0",
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn by_default_only_the_hosts_own_origin() {
        let origins = Origins::from_settings(&[]).unwrap();
        let host = value("docs.example.com:8080");
        assert!(origins.allows(&value("http://docs.example.com:8080"), Some(&host)));
        assert!(origins.allows(&value("https://DOCS.example.com:8080"), Some(&host)));
        assert!(!origins.allows(&value("http://docs.example.com"), Some(&host)));
        assert!(!origins.allows(&value("https://evil.example"), Some(&host)));
        assert!(!origins.allows(&value("null"), Some(&host)));
        assert!(!origins.allows(&value("http://docs.example.com:8080"), None));
    }

    #[test]
    fn listed_and_any() {
        let listed =
            Origins::from_settings(&["https://app.example.com/".into(), "http://localhost:5173".into()])
                .unwrap();
        assert!(listed.allows(&value("https://app.example.com"), None));
        assert!(listed.allows(&value("http://localhost:5173"), None));
        assert!(!listed.allows(&value("https://app.example.com.evil"), None));
        assert!(Origins::from_settings(&["*".into()]).unwrap().allows(&value("https://anyone"), None));
        assert!(Origins::from_settings(&["app.example.com".into()]).is_err());
        assert!(Origins::from_settings(&["ftp://x".into()]).is_err());
    }

    #[test]
    fn only_json_bodies() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, value("12"));
        headers.insert(header::CONTENT_TYPE, value("text/plain"));
        assert!(has_body(&headers) && !is_json(&headers));
        headers.insert(header::CONTENT_TYPE, value("Application/JSON; charset=utf-8"));
        assert!(is_json(&headers));
        headers.insert(header::CONTENT_LENGTH, value("0"));
        assert!(!has_body(&headers));
    }
}
