//! A document's side of the cluster: what the other instances that have it open say, and
//! what this one tells them.
//!
//! Each other instance is a peer with a place in the document's awareness (a connection id
//! of its own, so its clients' cursors go when it does: a goodbye, or silence past the
//! timeout). Its messages are numbered; a gap (a lost message) or a lost connection to
//! Redis has this instance read the document from the database again and send its clients
//! what they lack. So does the first moment after loading, for what the others had sent
//! but not yet stored when this instance subscribed.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::{Instant, sleep_until};

use super::handle::ConnId;
use crate::cluster::{Body, DocLink, Envelope, Incoming, InstanceId};
use crate::model::DocId;
use crate::store::{Store, StoreError, StoredState};

/// Heartbeats per peer timeout: a peer is given up only after missing this many.
const HEARTBEATS_PER_TIMEOUT: u32 = 3;
/// After a load: when to read the store again, for what peers had not stored yet.
const AFTER_LOAD: Duration = Duration::from_millis(1000);
/// After a gap: how long to wait before reading the store, so that what was missed has
/// been stored by its instance (its batch window, with room to spare).
const AFTER_GAP: Duration = Duration::from_millis(200);

/// What the actor is to do.
pub(super) enum Step {
    /// A peer's update (a y-websocket update message): apply it, tell the local clients.
    Update(bytes::Bytes),
    /// A peer's awareness message: apply it as its own, tell the local clients.
    Awareness { frame: bytes::Bytes, peer: ConnId },
    /// These peers are gone: remove their clients' cursors.
    Gone(Vec<ConnId>),
    /// The document was deleted elsewhere.
    Deleted,
    /// The store was read again: apply what it holds, tell the local clients what is new.
    CaughtUp(Result<StoredState, StoreError>),
    /// Nothing to do (a heartbeat went out, a peer was heard).
    Nothing,
}

struct Peer {
    /// The number its next message should carry.
    next: u64,
    heard: Instant,
    /// Its place in the document's awareness.
    conn: ConnId,
}

pub(super) struct Remote {
    id: DocId,
    store: Store,
    link: DocLink,
    /// A peer not heard from for this long is gone: its clients' cursors are removed. Half
    /// the awareness timeout (15 s by default), so that a dead instance's cursors go sooner
    /// than a silent client's would.
    peer_timeout: Duration,
    /// How often this instance says it still has the document open.
    heartbeat_every: Duration,
    peers: HashMap<InstanceId, Peer>,
    next_heartbeat: Instant,
    catch_up_at: Option<Instant>,
    /// A peer appeared, or Redis came back: tell the others this instance's clients' states
    /// (they were published before the peer listened, or may have been lost).
    announce: bool,
    catching_up: Option<BoxFuture<'static, Result<StoredState, StoreError>>>,
}

impl Remote {
    pub(super) fn new(id: DocId, store: Store, link: DocLink, awareness_timeout: Duration) -> Self {
        let now = Instant::now();
        let peer_timeout = (awareness_timeout / 2).max(Duration::from_millis(300));
        Self {
            id,
            store,
            link,
            peer_timeout,
            heartbeat_every: peer_timeout / HEARTBEATS_PER_TIMEOUT,
            peers: HashMap::new(),
            next_heartbeat: now,
            catch_up_at: Some(now + AFTER_LOAD),
            announce: false,
            catching_up: None,
        }
    }

    /// Tells the others about an update this instance's clients made (the message as its
    /// clients received it).
    pub(super) fn publish_update(&mut self, frame: bytes::Bytes) {
        self.publish(Body::Update(frame));
    }

    pub(super) fn publish_awareness(&mut self, frame: bytes::Bytes) {
        self.publish(Body::Awareness(frame));
    }

    fn publish(&mut self, body: Body) {
        if !self.link.publish(body) {
            tracing::debug!("the publishing queue is full: dropped a message (the others will catch up)");
        }
    }

    /// The next thing to do: a peer's message, a read of the store finished, or a timer.
    pub(super) async fn next(&mut self) -> Step {
        let due = self.due();
        tokio::select! {
            incoming = self.link.recv() => self.receive(incoming),
            stored = async {
                match self.catching_up.as_mut() {
                    Some(read) => read.await,
                    None => std::future::pending().await,
                }
            } => {
                self.catching_up = None;
                Step::CaughtUp(stored)
            }
            () = sleep_until(due) => self.tick(),
        }
    }

    fn due(&self) -> Instant {
        let mut due = self.next_heartbeat;
        if self.catching_up.is_none()
            && let Some(at) = self.catch_up_at
        {
            due = due.min(at);
        }
        if let Some(oldest) = self.peers.values().map(|p| p.heard).min() {
            due = due.min(oldest + self.peer_timeout);
        }
        due
    }

    fn receive(&mut self, incoming: Incoming) -> Step {
        let envelope = match incoming {
            Incoming::Message(envelope) => envelope,
            Incoming::Reconnected => {
                self.catch_up_soon(Instant::now());
                self.announce = true;
                return Step::Nothing;
            }
        };
        let Envelope { from, seq, body } = envelope;
        let now = Instant::now();
        let numbered = body.numbered();
        let announce = &mut self.announce;
        let peer = self.peers.entry(from).or_insert_with(|| {
            tracing::debug!(peer = %from, "a peer has the document open");
            *announce = true;
            // Counted from its first message: what it said before is in the store, or will
            // be read by the catch-up after this instance's load.
            Peer { next: if numbered { seq } else { seq + 1 }, heard: now, conn: ConnId::next() }
        });
        peer.heard = now;
        let conn = peer.conn;
        // A numbered message should carry the next number; a heartbeat the last one sent,
        // which this instance should have had.
        let missed = if numbered { seq > peer.next } else { seq >= peer.next };
        peer.next = peer.next.max(seq + 1);
        if missed {
            tracing::debug!(peer = %from, seq, "missed messages of a peer: catching up from the store");
            self.catch_up_soon(now);
        }
        match body {
            Body::Update(frame) => Step::Update(frame),
            Body::Awareness(frame) => Step::Awareness { frame, peer: conn },
            Body::Heartbeat => Step::Nothing,
            Body::Goodbye => {
                self.peers.remove(&from);
                Step::Gone(vec![conn])
            }
            Body::Deleted => Step::Deleted,
        }
    }

    /// Whether this instance's clients' states should be published now (once).
    pub(super) fn take_announce(&mut self) -> bool {
        std::mem::take(&mut self.announce)
    }

    /// A peer's update did not fit (it follows one this instance never had): catch up.
    pub(super) fn missed(&mut self) {
        self.catch_up_soon(Instant::now());
    }

    fn catch_up_soon(&mut self, now: Instant) {
        let at = now + AFTER_GAP;
        self.catch_up_at = Some(self.catch_up_at.map_or(at, |due| due.min(at)));
    }

    /// Heartbeats, silent peers, and the reads of the store that are due.
    fn tick(&mut self) -> Step {
        let now = Instant::now();
        if now >= self.next_heartbeat {
            self.publish(Body::Heartbeat);
            self.next_heartbeat = now + self.heartbeat_every;
        }
        if self.catching_up.is_none() && self.catch_up_at.is_some_and(|at| at <= now) {
            self.catch_up_at = None;
            let (store, id) = (self.store.clone(), self.id);
            self.catching_up = Some(async move { store.load_state(id).await }.boxed());
        }
        let silent: Vec<InstanceId> = self
            .peers
            .iter()
            .filter(|(_, p)| now >= p.heard + self.peer_timeout)
            .map(|(id, _)| *id)
            .collect();
        if silent.is_empty() {
            return Step::Nothing;
        }
        let conns = silent.iter().filter_map(|id| self.peers.remove(id)).map(|p| p.conn).collect();
        tracing::info!(peers = silent.len(), "peers went silent: their clients' cursors are removed");
        // A peer that died may not have stored everything it published: read the store, and
        // store what it lacks of what this instance applied.
        self.catch_up_soon(now);
        Step::Gone(conns)
    }

    /// Tells the others this instance is done with the document, and unsubscribes.
    pub(super) async fn leave(mut self, deleted: bool) {
        self.publish(if deleted { Body::Deleted } else { Body::Goodbye });
        self.link.leave().await;
    }
}
