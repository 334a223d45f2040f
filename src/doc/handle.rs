//! The only way into a document actor: a cheap, cloneable handle over its inbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::history::{Capture, Edit};
use super::outbox::Outbox;
use super::protocol::ClientMessage;
use crate::auth::Scope;

/// Commands an actor has queued before senders wait: enough to absorb a burst from many
/// connections at once, small enough that a stalled actor pushes back quickly.
pub(super) const INBOX_CAPACITY: usize = 1024;

/// Identifies one connection to one document, for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

impl ConnId {
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Why the server ends a connection: a WebSocket close code and a reason for humans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

impl Close {
    pub const SHUTDOWN: Self = Self { code: 1001, reason: "server shutting down" };
    pub const SLOW: Self =
        Self { code: 1013, reason: "connection too slow: its queue is full; reconnect to resync" };
    pub const UNAVAILABLE: Self =
        Self { code: 1013, reason: "document temporarily unavailable; try again later" };
    /// The document holds as many unstored updates as it may: the client keeps its edit and
    /// sends it again on reconnect.
    pub const STORAGE_UNAVAILABLE: Self = Self { code: 1013, reason: "storage unavailable" };
    pub const FAILED: Self = Self { code: 1011, reason: "document failed on the server; reconnect" };
    pub const BAD_UPDATE: Self = Self { code: 1007, reason: "update could not be applied" };
    pub const DELETED: Self = Self { code: 4404, reason: "document deleted" };
    pub const TOO_MANY_AWARENESS: Self =
        Self { code: 1008, reason: "too many awareness clients on one connection" };
    pub const DOC_TOO_BIG: Self =
        Self { code: 1009, reason: "document too big: the update would take it past the server's limit" };
    /// Final (4400-4499): the stock client stops reconnecting; the application brings a new token.
    pub const EXPIRED: Self = Self { code: 4401, reason: "token expired" };
}

/// Who is on the other end of a connection, as far as the document cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// What the connection may do: below `write`, its updates are refused by the actor.
    pub scope: Scope,
    /// Who this is (a token's subject; in open mode, the client's address). A new connection
    /// of the same principal may take over the cursor of an older one: a reconnect that beat
    /// the old socket's close. Without one, a cursor stays with the connection that made it.
    pub principal: Option<Arc<str>>,
    /// The display name a token gives (`name`), which versions record as the editor's; without
    /// one, the `user.name` of the connection's awareness is.
    pub name: Option<Arc<str>>,
}

impl Peer {
    /// A peer that may do everything and shares its cursor with no one (tests, benchmarks).
    pub fn writer() -> Self {
        Self { scope: Scope::Admin, principal: None, name: None }
    }

    pub fn can_write(&self) -> bool {
        self.scope >= Scope::Write
    }
}

/// A connection's seat at a document: frames (and, when the actor ends the connection, the
/// reason) arrive in `outbox`.
pub struct Subscription {
    pub conn: ConnId,
    pub outbox: Arc<Outbox>,
}

/// What went wrong when asking a document actor.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DocError {
    #[error("document not found")]
    NotFound,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the document actor has stopped")]
    Gone,
    #[error("loading the document failed: {0}")]
    Load(String),
    #[error("storing the document failed: {0}")]
    Store(String),
}

impl DocError {
    /// How a connection refused with this error is closed.
    pub fn close(&self) -> Close {
        match self {
            Self::NotFound => Close::DELETED,
            Self::ShuttingDown => Close::SHUTDOWN,
            Self::Gone | Self::Load(_) | Self::Store(_) => Close::UNAVAILABLE,
        }
    }
}

pub(super) enum DocMsg {
    /// A new connection; the actor queues sync step 1 and the awareness states in `outbox`.
    Connect {
        conn: ConnId,
        outbox: Arc<Outbox>,
        peer: Peer,
        respond_to: oneshot::Sender<Result<(), DocError>>,
    },
    /// A checked message from a connection.
    Client { conn: ConnId, msg: ClientMessage },
    /// The connection has closed; forget it and the awareness states it announced.
    Disconnect { conn: ConnId },
    /// The live text of the root `Y.Text` named `content`.
    Text { respond_to: oneshot::Sender<String> },
    /// Answered once the document has loaded (or with why it did not: `NotFound`).
    Loaded { respond_to: oneshot::Sender<Result<(), DocError>> },
    /// Write everything pending; answers once it is in the store.
    Flush { respond_to: oneshot::Sender<Result<(), DocError>> },
    /// The state, text and editors since the last version, for a restore (the history goes on).
    Capture { respond_to: oneshot::Sender<Capture> },
    /// The same, for a version kept now: the history starts again from here.
    TakeVersion { respond_to: oneshot::Sender<Capture> },
    /// Apply a restore's edits, unless the document no longer holds `expect` exactly.
    Restore {
        edits: Vec<Edit>,
        expect: yrs::StateVector,
        by: Option<String>,
        respond_to: oneshot::Sender<Restored>,
    },
    /// The document is being deleted: end every connection and stop without saving.
    Close { respond_to: oneshot::Sender<()> },
    /// Tests: the actor fails as when yrs panics (it saves what it holds and stops).
    #[cfg(test)]
    Fail,
}

/// What became of a restore's edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restored {
    Applied,
    /// The document changed after its state was captured: capture it again.
    Changed,
}

/// A handle to a running document actor. Cloning is cheap (a channel sender).
#[derive(Clone, Debug)]
pub struct DocHandle {
    tx: mpsc::Sender<DocMsg>,
}

impl DocHandle {
    pub(super) fn new(tx: mpsc::Sender<DocMsg>) -> Self {
        Self { tx }
    }

    /// False once the actor has stopped taking commands (it unloaded or failed).
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    pub(super) fn same_actor(&self, other: &DocHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    async fn send(&self, msg: DocMsg) -> Result<(), DocError> {
        self.tx.send(msg).await.map_err(|_| DocError::Gone)
    }

    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> DocMsg) -> Result<T, DocError> {
        let (respond_to, answer) = oneshot::channel();
        self.send(msg(respond_to)).await?;
        answer.await.map_err(|_| DocError::Gone)
    }

    /// Joins the document. `queue` bounds the frames waiting for this connection.
    pub async fn connect(&self, queue: usize, peer: Peer) -> Result<Subscription, DocError> {
        let conn = ConnId::next();
        let outbox = Arc::new(Outbox::new(queue));
        let shared = Arc::clone(&outbox);
        self.ask(|respond_to| DocMsg::Connect { conn, outbox: shared, peer, respond_to }).await??;
        Ok(Subscription { conn, outbox })
    }

    /// Hands a checked client message to the actor, waiting while its inbox is full.
    pub async fn client_message(&self, conn: ConnId, msg: ClientMessage) -> Result<(), DocError> {
        self.client_messages(conn, vec![msg]).await
    }

    /// Hands checked client messages to the actor in order, waiting while its inbox is full.
    /// The wait is boxed: it is rare, and inline it would add hundreds of bytes to every
    /// connection's task, idle or not.
    pub async fn client_messages(&self, conn: ConnId, messages: Vec<ClientMessage>) -> Result<(), DocError> {
        let mut messages = messages.into_iter();
        loop {
            // No message is bound across the await below (that too would size the task).
            let Some(msg) = messages.next() else { return Ok(()) };
            let wait = match self.tx.try_send(DocMsg::Client { conn, msg }) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(DocError::Gone),
                Err(mpsc::error::TrySendError::Full(msg)) => Box::pin(self.send(msg)),
            };
            wait.await?;
        }
    }

    pub async fn disconnect(&self, conn: ConnId) {
        // If the actor is gone, so is everything it knew about this connection.
        let _ = self.send(DocMsg::Disconnect { conn }).await;
    }

    /// Waits until the actor has loaded the document; `NotFound` if it does not exist.
    pub async fn loaded(&self) -> Result<(), DocError> {
        self.ask(|respond_to| DocMsg::Loaded { respond_to }).await?
    }

    pub async fn text(&self) -> Result<String, DocError> {
        self.ask(|respond_to| DocMsg::Text { respond_to }).await
    }

    pub async fn capture(&self) -> Result<Capture, DocError> {
        self.ask(|respond_to| DocMsg::Capture { respond_to }).await
    }

    pub async fn take_version(&self) -> Result<Capture, DocError> {
        self.ask(|respond_to| DocMsg::TakeVersion { respond_to }).await
    }

    pub async fn restore(
        &self,
        edits: Vec<Edit>,
        expect: yrs::StateVector,
        by: Option<String>,
    ) -> Result<Restored, DocError> {
        self.ask(|respond_to| DocMsg::Restore { edits, expect, by, respond_to }).await
    }

    pub async fn flush(&self) -> Result<(), DocError> {
        self.ask(|respond_to| DocMsg::Flush { respond_to }).await?
    }

    #[cfg(test)]
    pub(super) async fn fail(&self) {
        let _ = self.send(DocMsg::Fail).await;
    }

    pub(super) async fn close(&self) {
        let _ = self.ask(|respond_to| DocMsg::Close { respond_to }).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn queries(n: usize) -> Vec<ClientMessage> {
        (0..n).map(|_| ClientMessage::QueryAwareness).collect()
    }

    #[tokio::test]
    async fn messages_wait_for_room_in_a_full_inbox_and_keep_their_order() {
        let (tx, mut inbox) = mpsc::channel(2);
        let handle = DocHandle::new(tx);
        let (a, b) = (ConnId::next(), ConnId::next());
        handle.client_messages(a, queries(1)).await.unwrap();
        let sending = tokio::spawn({
            let handle = handle.clone();
            async move { handle.client_messages(b, queries(3)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sending.is_finished(), "sent into a full inbox");
        let mut from = Vec::new();
        while from.len() < 4 {
            match inbox.recv().await {
                Some(DocMsg::Client { conn, msg: ClientMessage::QueryAwareness }) => from.push(conn),
                _ => panic!("unexpected message"),
            }
        }
        assert_eq!(from, [a, b, b, b]);
        sending.await.unwrap().unwrap();

        drop(inbox);
        let gone = handle.client_messages(a, queries(1)).await;
        assert!(matches!(gone, Err(DocError::Gone)), "{gone:?}");
    }
}
