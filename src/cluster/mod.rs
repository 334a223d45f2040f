//! Several instances of tandem behind a load balancer, fanned out through Redis pub/sub.
//!
//! Each instance that has a document open subscribes to the document's channel, publishes
//! what its own clients send (updates, awareness), and applies what the others publish. The
//! record stays in Postgres: each instance stores its own clients' updates, so pub/sub may
//! lose a message (across a reconnect, to a slow subscriber) without losing an edit; whoever
//! notices a gap catches up from the database. No sticky sessions: a CRDT merges the same
//! updates in any order.
//!
//! This module is the transport only: one connection to Redis (RESP3, resubscribed by the
//! connection manager after a reconnect), a route from each channel to its document's
//! actor, and a publishing queue that never makes an actor wait. What the messages mean to a
//! document is the actor's business (`doc::remote`).

mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

pub use wire::{Body, Envelope, InstanceId};

use crate::model::DocId;

/// Messages queued for Redis before new ones are dropped (receivers then notice the gap and
/// catch up from the database): an actor never waits for Redis.
const PUBLISH_QUEUE: usize = 8192;

/// Messages queued for one document's actor before new ones are dropped (the same way).
const DOC_QUEUE: usize = 4096;

/// How long a command to Redis may take, and a connection attempt.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What reaches a document's actor.
#[derive(Debug)]
pub enum Incoming {
    /// Another instance said something about the document.
    Message(Envelope),
    /// The connection to Redis was lost: what was published meanwhile is gone.
    Reconnected,
}

/// Why the cluster cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The connection to the other instances. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    id: InstanceId,
    redis: ConnectionManager,
    /// The actor of each document this instance has open, by channel.
    routes: Arc<Mutex<HashMap<String, mpsc::Sender<Incoming>>>>,
    outgoing: mpsc::Sender<(String, Bytes)>,
}

impl Cluster {
    /// Connects to Redis at `url` (`redis://host:port/db`).
    pub async fn connect(url: &str) -> Result<Self, ClusterError> {
        let routes: Arc<Mutex<HashMap<String, mpsc::Sender<Incoming>>>> = Arc::default();
        let client = redis::Client::open(with_resp3(url))?;
        let deliver = {
            let routes = Arc::clone(&routes);
            move |push: PushInfo| {
                route(&routes, push);
                Ok::<(), std::convert::Infallible>(())
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_push_sender(deliver)
            .set_automatic_resubscription()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(Duration::from_secs(2));
        let redis = ConnectionManager::new_with_config(client, config).await?;
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publish_all(redis.clone(), queue));
        let id = InstanceId(Uuid::new_v4());
        tracing::info!(instance = %id, "joined the cluster");
        Ok(Self { inner: Arc::new(Inner { id, redis, routes, outgoing }) })
    }

    /// This instance.
    pub fn id(&self) -> InstanceId {
        self.inner.id
    }

    /// Subscribes to a document's channel. Messages published from now on reach the link
    /// (subscribe first, then load: nothing falls in between).
    pub async fn join(&self, doc: DocId) -> Result<DocLink, ClusterError> {
        let channel = channel(doc);
        let (tx, rx) = mpsc::channel(DOC_QUEUE);
        self.inner.routes.lock().unwrap_or_else(|p| p.into_inner()).insert(channel.clone(), tx.clone());
        let mut redis = self.inner.redis.clone();
        if let Err(err) = redis.subscribe(&channel).await {
            self.forget(&channel, &tx);
            return Err(err.into());
        }
        Ok(DocLink { cluster: self.clone(), channel, route: tx, rx, seq: 0, left: false })
    }

    fn forget(&self, channel: &str, mine: &mpsc::Sender<Incoming>) {
        let mut routes = self.inner.routes.lock().unwrap_or_else(|p| p.into_inner());
        if routes.get(channel).is_some_and(|tx| tx.same_channel(mine)) {
            routes.remove(channel);
        }
    }
}

/// `url` with RESP3 asked for (pub/sub on the connection that also publishes).
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}protocol=resp3")
}

fn channel(doc: DocId) -> String {
    format!("tandem:doc:{doc}")
}

/// Hands a message Redis pushed to the actor of its channel; a lost connection to every
/// actor. Never waits: a full actor queue drops the message (the actor notices the gap).
fn route(routes: &Mutex<HashMap<String, mpsc::Sender<Incoming>>>, push: PushInfo) {
    let routes = routes.lock().unwrap_or_else(|p| p.into_inner());
    match push.kind {
        PushKind::Message => {
            let [channel, payload] = push.data.as_slice() else { return };
            let (Some(channel), Some(payload)) = (text(channel), bytes(payload)) else { return };
            let Some(envelope) = Envelope::decode(&payload) else {
                tracing::debug!(channel, "ignored a message that is not ours");
                return;
            };
            if let Some(actor) = routes.get(&channel)
                && actor.try_send(Incoming::Message(envelope)).is_err()
            {
                tracing::debug!(channel, "a document's queue is full: dropped a message");
            }
        }
        PushKind::Disconnection => {
            tracing::warn!("lost the connection to Redis; reconnecting");
            for actor in routes.values() {
                let _ = actor.try_send(Incoming::Reconnected);
            }
        }
        _ => {}
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::BulkString(bytes) => Some(Bytes::copy_from_slice(bytes)),
        _ => None,
    }
}

/// Publishes what the actors queue, in order. A failed publish is dropped (receivers catch
/// up from the database).
async fn publish_all(mut redis: ConnectionManager, mut queue: mpsc::Receiver<(String, Bytes)>) {
    while let Some((channel, payload)) = queue.recv().await {
        let published: redis::RedisResult<()> =
            redis::cmd("PUBLISH").arg(&channel).arg(payload.as_ref()).query_async(&mut redis).await;
        if let Err(err) = published {
            tracing::debug!(channel, error = %err, "a message was not published");
        }
    }
}

/// A document's place in the cluster: its subscription, and the numbering of what this
/// instance says about it.
pub struct DocLink {
    cluster: Cluster,
    channel: String,
    route: mpsc::Sender<Incoming>,
    rx: mpsc::Receiver<Incoming>,
    /// The number of the last message sent.
    seq: u64,
    left: bool,
}

impl DocLink {
    pub fn instance(&self) -> InstanceId {
        self.cluster.id()
    }

    /// Tells the other instances; never waits. False when the message had to be dropped
    /// (Redis is slow or away); it still counts, so receivers notice the gap.
    pub fn publish(&mut self, body: Body) -> bool {
        if body.numbered() {
            self.seq += 1;
        }
        let envelope = Envelope { from: self.cluster.id(), seq: self.seq, body };
        self.cluster.inner.outgoing.try_send((self.channel.clone(), envelope.encode())).is_ok()
    }

    /// The next message for this document from the others (their own echoes left out).
    pub async fn recv(&mut self) -> Incoming {
        loop {
            match self.rx.recv().await {
                Some(Incoming::Message(envelope)) if envelope.from == self.cluster.id() => {}
                Some(incoming) => return incoming,
                // The route is this link's own sender too: the channel never closes first.
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Unsubscribes, before a newer actor of the document may subscribe.
    pub async fn leave(mut self) {
        self.left = true;
        self.cluster.forget(&self.channel, &self.route);
        let mut redis = self.cluster.inner.redis.clone();
        if let Err(err) = redis.unsubscribe(&self.channel).await {
            tracing::debug!(channel = self.channel, error = %err, "unsubscribe failed");
        }
    }
}

impl Drop for DocLink {
    /// An actor that ended without `leave` (it panicked) still gives its route back.
    fn drop(&mut self) {
        if !self.left {
            self.cluster.forget(&self.channel, &self.route);
            let mut redis = self.cluster.inner.redis.clone();
            let channel = std::mem::take(&mut self.channel);
            tokio::spawn(async move {
                let _ = redis.unsubscribe(&channel).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp3_is_asked_for_once() {
        assert_eq!(with_resp3("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379?protocol=resp3");
        assert_eq!(with_resp3("redis://h/1?timeout=3"), "redis://h/1?timeout=3&protocol=resp3");
        assert_eq!(with_resp3("redis://h?protocol=resp3"), "redis://h?protocol=resp3");
    }
}
