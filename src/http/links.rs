//! Share links: `POST /api/docs/{id}/links` makes a link a person can send to someone else,
//! carrying a token for that one document, with scope `read` (view) or `write` (edit) and an
//! expiry. Only an admin of the document may make one, and a link never hands out more than
//! editing. The server signs it with its own secret, so share links need `--auth-secret`.

use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::docs::DocIdPath;
use super::error::{ApiError, ApiJson};
use crate::auth::{Access, Claims, Docs, Scope, parse_ttl};

/// How long a link lasts when the request does not say.
const DEFAULT_TTL: &str = "7d";
/// The longest a link may last: a link is easily forwarded, so it must end.
const MAX_TTL: Duration = Duration::from_secs(366 * 86_400);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    scope: Scope,
    ttl: Option<String>,
}

#[derive(Serialize)]
pub struct Link {
    url: String,
    token: String,
    scope: Scope,
    expires_at: String,
}

/// `POST /api/docs/{id}/links {"scope": "read"|"write", "ttl": "7d"}` -> 201 Link.
pub async fn create_link(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    access: Access,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewLink>,
) -> Result<impl IntoResponse, ApiError> {
    access.allows(id, Scope::Admin)?;
    let verifier = app.auth.as_ref().filter(|v| v.can_sign()).ok_or_else(|| {
        ApiError::Conflict(
            "share links need the server to sign tokens: start it with --auth-secret (TANDEM_AUTH_SECRET)"
                .into(),
        )
    })?;
    if body.scope == Scope::Admin {
        return Err(ApiError::Unprocessable("a link gives at most scope write".into()));
    }
    let ttl = parse_ttl(body.ttl.as_deref().unwrap_or(DEFAULT_TTL)).map_err(ApiError::Unprocessable)?;
    if ttl > MAX_TTL {
        return Err(ApiError::Unprocessable("a link lasts at most 366 days".into()));
    }
    app.store.get_doc(id).await?.ok_or(ApiError::DOC_NOT_FOUND)?;
    let claims = Claims::new(Docs::One(id), body.scope, ttl);
    let token = verifier.sign(&claims).map_err(|err| ApiError::Internal(err.to_string()))?;
    let expires = crate::auth::from_unix_seconds(claims.exp);
    let url = format!("{}/d/{id}?token={token}", public_base(&app, &headers));
    tracing::info!(doc_id = %id, scope = %body.scope, by = access.who(), "share link made");
    let link = Link { url, token, scope: body.scope, expires_at: rfc3339(expires) };
    Ok((StatusCode::CREATED, axum::Json(link)))
}

/// Where people reach this server: `--public-url`, else this request's own host, with
/// https when tandem serves TLS itself or a trusted proxy says the request came over it.
fn public_base(app: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &app.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let secure =
        app.config.tls_cert.is_some() || (app.config.trust_proxy_headers && forwarded_https(headers));
    let scheme = if secure { "https" } else { "http" };
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("{scheme}://{host}"),
        None => format!("{scheme}://{}", app.config.listen),
    }
}

/// `X-Forwarded-Proto: https`, or `proto=https` in `Forwarded`.
fn forwarded_https(headers: &HeaderMap) -> bool {
    let proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
    let forwarded = headers.get("forwarded").and_then(|v| v.to_str().ok()).unwrap_or_default();
    proto.is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        || forwarded.split([';', ',']).any(|part| part.trim().eq_ignore_ascii_case("proto=https"))
}

fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
