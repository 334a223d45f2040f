//! `GET /ws/{id}`: the y-websocket endpoint. Refusals happen before the upgrade (400 a
//! malformed id or handshake, 401/403 the token, 404 an unknown document, 503 a full
//! document), because the stock client backs off on a failed upgrade but retries a closed
//! socket almost at once. Then one task per connection moves frames (`connection`), over its
//! socket (`io`), at a rate (`limiter`).

mod connection;
mod io;
mod limiter;

pub use connection::SocketSettings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Version, header};
use axum::response::Response;
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_util::either::Either;
use tracing::Instrument;

use self::connection::{Connection, End, Io};
use self::io::TcpSink;
use super::AppState;
use super::access::{TokenFrom, authenticate};
use super::docs::{DocIdPath, ensure_exists};
use super::error::ApiError;
use super::handshake;
use super::limits::{DocSeat, Seat};
use super::listener::Stream;
use crate::auth::{Access, Scope};
use crate::doc::{Outbox, Peer};
use crate::model::DocId;

/// Refuses bad requests before the upgrade (the origin was checked on the way in), then
/// hands the socket to [`serve`].
pub async fn doc_socket(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let access = authenticate(&app, &parts, TokenFrom::HeaderOrQuery)?;
    access.allows(id, Scope::Read)?;
    let accept = check_handshake(&parts.method, parts.version, &parts.headers)?;
    ensure_exists(&app, id).await?;
    let doc_seat =
        app.limits.join_doc(id).map_err(|refusal| ApiError::Refused(app.limits.refused(refusal)))?;
    let session = Session {
        id,
        peer: Peer {
            scope: access.scope,
            principal: principal(&app, &access, client),
            name: access.name.clone(),
        },
        expires: access.expires.map(deadline),
        _seats: (parts.extensions.remove::<Arc<Seat>>(), doc_seat),
    };
    tracing::debug!(doc_id = %id, scope = %access.scope, who = access.who(), "joining");
    let on_upgrade = parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or_else(|| ApiError::BadRequest("this connection cannot be upgraded".into()))?;
    let connections = app.connections.clone();
    // Every line about this connection names its document.
    let span = tracing::info_span!("conn", doc_id = %id);
    connections.spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => serve(app, session, upgraded).await,
                Err(err) => tracing::debug!(error = %err, "upgrade failed"),
            }
        }
        .instrument(span),
    );
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(response)
}

/// What a connection is, besides its socket.
struct Session {
    id: DocId,
    peer: Peer,
    /// When its token expires, on the runtime's clock.
    expires: Option<Instant>,
    /// Its places within the connection caps, given back when it ends.
    _seats: (Option<Arc<Seat>>, DocSeat),
}

/// The upgraded socket as the connection uses it: plain TCP split into the read half and the
/// sink its outbox writes through (see `doc::Outbox`), TLS whole; and the bytes hyper read
/// past the handshake, which come first.
fn open_socket(upgraded: Upgraded, settings: &Arc<SocketSettings>) -> (Io, Option<TcpSink>, Bytes) {
    match upgraded.downcast::<TokioIo<Stream>>() {
        Ok(parts) => match parts.io.into_inner() {
            Either::Left(tcp) => {
                let (read, write) = tcp.into_split();
                (Io::Tcp(read), Some(TcpSink::new(write, Arc::clone(settings))), parts.read_buf)
            }
            Either::Right(tls) => (Io::Tls(tls), None, parts.read_buf),
        },
        Err(upgraded) => (Io::Upgraded(TokioIo::new(upgraded)), None, Bytes::new()),
    }
}

/// Who a connection belongs to, for taking over one's own cursor from an older socket: the
/// token's subject; in open mode (no identities), the client's address.
fn principal(app: &AppState, access: &Access, client: SocketAddr) -> Option<Arc<str>> {
    match &app.auth {
        Some(_) => access.sub.clone(),
        None => Some(Arc::from(client.ip().to_string())),
    }
}

/// The moment a token expires, on the runtime's clock. No leeway here: the socket closes
/// at `exp` itself (a token the door took within its leeway is closed at once), so that
/// 4401 comes within a second of `exp` even with the timer's own lateness.
fn deadline(expires: SystemTime) -> Instant {
    let left = expires.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + left
}

/// Checks an opening handshake (RFC 6455 section 4.2.1); the `Sec-WebSocket-Accept` value.
fn check_handshake(method: &Method, version: Version, headers: &HeaderMap) -> Result<String, ApiError> {
    Ok(handshake::check(method, version, headers)?)
}

/// One connection, for its whole life, in one task. The task is sized for its largest state,
/// and every connection holds one even while idle: the steps that run once (joining,
/// leaving, closing) are boxed so that only the pump sets the size.
async fn serve(app: AppState, session: Session, upgraded: Upgraded) {
    let settings = Arc::clone(&app.sockets);
    let (io, sink, read) = open_socket(upgraded, &settings);
    let mut conn = Connection::new(io, Arc::clone(&settings));
    conn.feed(&read);
    drop(read);
    let id = session.id;
    let joined = Box::pin(app.registry.connect(id, settings.client_queue, session.peer.clone())).await;
    let (handle, sub) = match joined {
        Ok(joined) => joined,
        Err(err) => {
            tracing::debug!(error = %err, "connection refused");
            settings.metrics.closed(err.close().code);
            if let Some(sink) = sink {
                // An outbox of its own, only to write the close through.
                let outbox = Arc::new(Outbox::new(2));
                outbox.attach(Box::new(sink));
                conn.direct = Some(outbox);
            }
            Box::pin(conn.close(err.close())).await;
            return;
        }
    };
    if let Some(sink) = sink {
        // Frames already queued (the first step 1) go out through it too.
        sub.outbox.attach(Box::new(sink));
        conn.direct = Some(Arc::clone(&sub.outbox));
    }
    let metrics = &settings.metrics;
    metrics.connects.inc();
    metrics.connections.inc();
    let end = conn.pump(&handle, &sub, session.expires).await;
    metrics.connections.dec();
    metrics.closed(end.code());
    Box::pin(handle.disconnect(sub.conn)).await;
    match end {
        End::Close(reason) => {
            tracing::debug!(code = reason.code, reason = reason.reason, "closing connection");
            Box::pin(conn.close(reason)).await;
        }
        End::Closing(code) => Box::pin(conn.answer_close(code)).await,
        End::Broken => {}
    }
}
