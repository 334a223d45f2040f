//! Tokens out of requests: a REST call's `Authorization: Bearer <token>`, a WebSocket's
//! `?token=` (the stock provider's `params: { token }`) or the same header. Every check that
//! can run at the door does, before any handler or upgrade: 401 for a token that is missing
//! or not valid, 403 (in the handlers, via [`Access::allows`]) for one that does not reach.
//!
//! `GET /api/access` tells a page what its token allows, as the server sees it, so the
//! editor never has to read a token itself.

use axum::extract::{FromRequestParts, Query};
use axum::http::header;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::auth::{Access, Scope, TokenError};

/// Where a token may come from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TokenFrom {
    /// REST: the `Authorization` header only (a token in a URL ends up in logs and history).
    Header,
    /// WebSocket upgrades: browsers cannot set headers on a WebSocket, so `?token=` too.
    HeaderOrQuery,
}

/// The access of a request: open mode's, or its token's. `Err` is a 401.
pub fn authenticate(app: &AppState, parts: &Parts, from: TokenFrom) -> Result<Access, ApiError> {
    let Some(verifier) = &app.auth else {
        return Ok(Access::open());
    };
    let token = match bearer(parts)? {
        Some(token) => token,
        None if from == TokenFrom::HeaderOrQuery => query_token(parts)?.ok_or(TokenError::Missing)?,
        None => return Err(TokenError::Missing.into()),
    };
    Ok(verifier.verify(&token)?)
}

/// The token of an `Authorization: Bearer` header, if there is one.
fn bearer(parts: &Parts) -> Result<Option<String>, TokenError> {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(TokenError::Malformed("more than one Authorization header".into()));
    }
    let value = value.to_str().map_err(|_| TokenError::Malformed("Authorization is not text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(TokenError::Malformed("expected Authorization: Bearer <token>".into())),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn query_token(parts: &Parts) -> Result<Option<String>, TokenError> {
    let Query(query) = Query::<TokenQuery>::try_from_uri(&parts.uri)
        .map_err(|_| TokenError::Malformed("the query string does not parse".into()))?;
    Ok(query.token.filter(|token| !token.is_empty()))
}

impl FromRequestParts<AppState> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        authenticate(app, parts, TokenFrom::Header)
    }
}

/// What `GET /api/access` answers.
#[derive(Serialize)]
pub struct AccessView {
    /// `open` (no tokens needed) or `token`.
    mode: &'static str,
    /// The document id, or `*`.
    doc: String,
    scope: Scope,
    name: Option<String>,
    sub: Option<String>,
    /// RFC 3339, or null in open mode.
    expires_at: Option<String>,
}

/// `GET /api/access`: what the presented token allows (401 when it is not valid).
pub async fn show_access(
    axum::extract::State(app): axum::extract::State<AppState>,
    access: Access,
) -> axum::Json<AccessView> {
    let expires_at = access.expires.map(|at| chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339());
    axum::Json(AccessView {
        mode: if app.auth.is_some() { "token" } else { "open" },
        doc: access.docs.to_string(),
        scope: access.scope,
        name: access.name.as_deref().map(str::to_owned),
        sub: access.sub.as_deref().map(str::to_owned),
        expires_at,
    })
}
