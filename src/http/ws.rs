//! `GET /ws/{id}`: the y-websocket endpoint. Socket IO only: frames in are checked and
//! handed to the document actor; frames out come from the actor, already encoded.
//!
//! Refusals happen before the upgrade (400 malformed id, 404 unknown document), because the
//! stock client backs off on a failed upgrade but retries a closed socket almost at once.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};

use super::AppState;
use super::docs::DocIdPath;
use super::error::ApiError;
use crate::doc::protocol::{self, ProtocolError};
use crate::doc::{Close, ConnId, DocHandle, Subscription};
use crate::model::DocId;

/// How often the server pings a connection, and how long it waits for any sign of life
/// before it gives the connection up (a vanished peer does not close its socket).
const PING_EVERY: Duration = Duration::from_secs(30);
const SILENCE_LIMIT: Duration = Duration::from_secs(75);

/// Bytes read from a socket at a time (messages larger than this are assembled).
const READ_BUFFER: usize = 4 * 1024;

/// How long a closing connection waits for the peer to take the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames queued for a connection that are written with one flush.
const WRITE_BATCH: usize = 64;

const CLOSE_TEXT: Close = Close {
    code: 1003,
    reason: "text frames are not part of the protocol",
};
const CLOSE_MALFORMED: Close = Close {
    code: 1007,
    reason: "malformed message",
};
const CLOSE_TOO_BIG: Close = Close {
    code: 1009,
    reason: "message too big",
};
const CLOSE_FLOOD: Close = Close {
    code: 1008,
    reason: "too many messages; slow down",
};
const CLOSE_SILENT: Close = Close {
    code: 1001,
    reason: "no sign of life from the client",
};

/// Refuses bad requests before the upgrade, then hands the socket to [`serve`].
pub async fn doc_socket(
    State(app): State<AppState>,
    DocIdPath(id): DocIdPath,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    app.store
        .get_doc(id)
        .await?
        .ok_or(ApiError::DOC_NOT_FOUND)?;
    let upgrade = upgrade?;
    let config = &app.config;
    let max = config.max_message_bytes;
    Ok(upgrade
        .max_message_size(max)
        .max_frame_size(max)
        // tungstenite's default 128 KiB read buffer is zero-filled before every read and
        // dominates the memory of an idle connection; messages are mostly tens of bytes.
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| serve(app, id, socket)))
}

/// One connection, for its whole life, in one task.
async fn serve(app: AppState, id: DocId, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (handle, mut sub) = match app.registry.connect(id, app.config.client_queue).await {
        Ok(joined) => joined,
        Err(err) => {
            tracing::debug!(doc_id = %id, error = %err, "connection refused");
            close(&mut sink, err.close()).await;
            return;
        }
    };
    let limiter = RateLimiter::new(app.config.max_messages_per_sec);
    let close_with = pump(&handle, &mut sub, &mut sink, &mut stream, limiter).await;
    handle.disconnect(sub.conn).await;
    if let Some(reason) = close_with {
        tracing::debug!(doc_id = %id, code = reason.code, reason = reason.reason, "closing connection");
        close(&mut sink, reason).await;
    }
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// Moves frames both ways until either side ends. Returns how to close the socket, or
/// `None` when the client closed it (or it broke).
async fn pump(
    handle: &DocHandle,
    sub: &mut Subscription,
    sink: &mut Sink,
    stream: &mut Stream,
    mut limiter: RateLimiter,
) -> Option<Close> {
    let Subscription { conn, outbox, kick } = sub;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            biased;
            reason = &mut *kick => {
                // A dropped sender without a reason means the actor stopped unexpectedly.
                return Some(reason.unwrap_or(Close::FAILED));
            }
            frame = outbox.recv() => {
                let Some(frame) = frame else { return Some(Close::FAILED) };
                // A peer that stops reading stalls this write; the actor then drops the
                // connection (its queue fills), and the kick must still get through.
                tokio::select! {
                    biased;
                    reason = &mut *kick => return Some(reason.unwrap_or(Close::FAILED)),
                    written = write_batch(sink, outbox, frame) => {
                        if written.is_err() {
                            return None;
                        }
                    }
                }
            }
            incoming = stream.next() => {
                last_seen = Instant::now();
                match incoming? {
                    Ok(Message::Binary(frame)) => {
                        if !limiter.allow(last_seen) {
                            return Some(CLOSE_FLOOD);
                        }
                        if let Err(close) = forward(handle, *conn, frame).await {
                            return Some(close);
                        }
                    }
                    Ok(Message::Text(_)) => return Some(CLOSE_TEXT),
                    Ok(Message::Ping(_) | Message::Pong(_)) => {}
                    Ok(Message::Close(_)) => return None,
                    Err(err) => return read_error(err),
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > SILENCE_LIMIT {
                    return Some(CLOSE_SILENT);
                }
                match tokio::time::timeout(PING_EVERY, sink.send(Message::Ping(Bytes::new()))).await {
                    Ok(Ok(())) => {}
                    _ => return None,
                }
            }
        }
    }
}

/// Checks one incoming frame and hands its messages to the actor.
async fn forward(handle: &DocHandle, conn: ConnId, frame: Bytes) -> Result<(), Close> {
    let messages = protocol::decode_frame(&frame).map_err(|err| {
        tracing::debug!(error = %err, "refusing a malformed frame");
        match err {
            ProtocolError::Empty
            | ProtocolError::Malformed(_)
            | ProtocolError::BadUpdate(_)
            | ProtocolError::BadAwarenessJson => CLOSE_MALFORMED,
        }
    })?;
    for msg in messages {
        handle
            .client_message(conn, msg)
            .await
            .map_err(|err| err.close())?;
    }
    Ok(())
}

/// Writes `first` and whatever else is already queued, then flushes once.
async fn write_batch(
    sink: &mut Sink,
    outbox: &mut tokio::sync::mpsc::Receiver<Bytes>,
    first: Bytes,
) -> Result<(), axum::Error> {
    sink.feed(Message::Binary(first)).await?;
    for _ in 1..WRITE_BATCH {
        match outbox.try_recv() {
            Ok(frame) => sink.feed(Message::Binary(frame)).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

/// A read error: a message over the size limit gets 1009; anything else means the socket
/// is broken and there is nobody to tell.
fn read_error(err: axum::Error) -> Option<Close> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::CapacityError;
    match err.into_inner().downcast::<WsError>() {
        Ok(err)
            if matches!(
                *err,
                WsError::Capacity(CapacityError::MessageTooLong { .. })
            ) =>
        {
            Some(CLOSE_TOO_BIG)
        }
        Ok(err) => {
            tracing::debug!(error = %err, "socket read failed");
            None
        }
        Err(_) => None,
    }
}

/// Sends a close frame, giving a peer that does not read [`CLOSE_TIMEOUT`] to take it.
async fn close(sink: &mut Sink, reason: Close) {
    let frame = CloseFrame {
        code: reason.code,
        reason: reason.reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let _ = sink.send(Message::Close(Some(frame))).await;
        let _ = sink.close().await;
    })
    .await;
}

/// A token bucket per connection: `rate` messages per second on average, bursts of five
/// seconds' worth.
struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    const BURST_SECONDS: f64 = 5.0;

    fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        let burst = rate * Self::BURST_SECONDS;
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
