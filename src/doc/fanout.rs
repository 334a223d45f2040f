//! Who is connected to a document, and how frames reach them.
//!
//! Each connection has a bounded outbox; the actor pushes and never waits. A connection
//! whose outbox is full is reported to the caller, which drops it (closed with 1013: it
//! reconnects and resyncs by state vector, so nothing is lost and memory stays bounded).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::handle::{Close, ConnId, Peer};
use super::outbox::Outbox;
use super::protocol;

/// Connections a broadcast frame is written to by the actor itself, at most (those whose
/// socket takes it at once; the others' tasks write it). Each such write is a system call on
/// the actor's thread: past this many, the rest of a frame's readers would wait for them, and
/// the connection tasks spread the writes over the runtime's workers instead.
const DIRECT_PER_FRAME: usize = 32;

/// What a read-only connection is told the first time it tries to write.
const READ_ONLY: &str = "read-only access: this connection may not change the document";

/// A connection, as the actor sees it.
struct Subscriber {
    outbox: Arc<Outbox>,
    peer: Peer,
    /// Updates refused because the connection may not write.
    refused_writes: u64,
}

impl Drop for Subscriber {
    /// However the actor comes to forget a connection (even by unwinding), the connection
    /// learns that it is over; a reason given before (slow, deleted, shutdown) wins.
    fn drop(&mut self) {
        self.outbox.close(Close::FAILED);
        if self.refused_writes > 0 {
            tracing::info!(refused_writes = self.refused_writes, "read-only connection left");
        }
    }
}

#[derive(Default)]
pub(super) struct Fanout {
    subscribers: HashMap<ConnId, Subscriber>,
}

impl Fanout {
    pub(super) fn add(&mut self, conn: ConnId, outbox: Arc<Outbox>, peer: Peer) {
        self.subscribers.insert(conn, Subscriber { outbox, peer, refused_writes: 0 });
    }

    pub(super) fn contains(&self, conn: ConnId) -> bool {
        self.subscribers.contains_key(&conn)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Every connection.
    pub(super) fn conns(&self) -> Vec<ConnId> {
        self.subscribers.keys().copied().collect()
    }

    /// May this connection change the document?
    pub(super) fn can_write(&self, conn: ConnId) -> bool {
        self.subscribers.get(&conn).is_some_and(|s| s.peer.can_write())
    }

    /// The display name the connection's token gives, if any.
    pub(super) fn name(&self, conn: ConnId) -> Option<&str> {
        self.subscribers.get(&conn).and_then(|s| s.peer.name.as_deref())
    }

    /// True when both connections belong to the same known principal.
    pub(super) fn same_principal(&self, a: ConnId, b: ConnId) -> bool {
        let principal = |conn| self.subscribers.get(&conn).and_then(|s| s.peer.principal.as_ref());
        matches!((principal(a), principal(b)), (Some(a), Some(b)) if a == b)
    }

    /// Counts a write refused for lack of scope. The first one is answered with the
    /// y-protocols permission-denied message (the connection stays open: closing it would
    /// make the stock client reconnect and resend the same write, in a loop); later ones
    /// are dropped silently. Returns true when the answer did not fit in the outbox.
    pub(super) fn refuse_write(&mut self, conn: ConnId) -> bool {
        let Some(subscriber) = self.subscribers.get_mut(&conn) else {
            return false;
        };
        subscriber.refused_writes += 1;
        if subscriber.refused_writes > 1 {
            return false;
        }
        tracing::info!(?conn, "refused a write from a read-only connection");
        subscriber.outbox.push(protocol::encode_permission_denied(READ_ONLY), true).is_err()
    }

    /// Sends one frame to one connection. True when its queue was full (drop it).
    pub(super) fn send_to(&self, conn: ConnId, frame: Bytes) -> bool {
        self.subscribers.get(&conn).is_some_and(|s| s.outbox.push(frame, true).is_err())
    }

    /// Sends the same bytes to every connection, the sender included (the protocol relies
    /// on the echo). Returns the connections whose queue was full.
    pub(super) fn broadcast(&self, frame: &Bytes) -> Vec<ConnId> {
        self.subscribers
            .iter()
            .enumerate()
            .filter(|(i, (_, s))| s.outbox.push(frame.clone(), *i < DIRECT_PER_FRAME).is_err())
            .map(|(_, (conn, _))| *conn)
            .collect()
    }

    /// Forgets connections, telling them why if `close` is set.
    pub(super) fn remove(&mut self, conns: &[ConnId], close: Option<Close>) {
        for conn in conns {
            if let Some(subscriber) = self.subscribers.remove(conn)
                && let Some(close) = close
            {
                subscriber.outbox.close(close);
            }
        }
    }

    /// Ends every connection with `close`.
    pub(super) fn close_all(&mut self, close: Close) {
        for (_, subscriber) in self.subscribers.drain() {
            subscriber.outbox.close(close);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::auth::Scope;
    use crate::doc::outbox::Taken;

    fn peer(scope: Scope, principal: Option<&str>) -> Peer {
        Peer { scope, principal: principal.map(Arc::from), name: None }
    }

    #[tokio::test]
    async fn a_read_only_connection_hears_once_why_its_writes_are_refused() {
        let mut fanout = Fanout::default();
        let (reader, writer) = (ConnId::next(), ConnId::next());
        let outbox = Arc::new(Outbox::new(8));
        fanout.add(reader, Arc::clone(&outbox), peer(Scope::Read, None));
        fanout.add(writer, Arc::new(Outbox::new(8)), peer(Scope::Write, None));
        assert!(!fanout.can_write(reader) && fanout.can_write(writer));
        for _ in 0..3 {
            assert!(!fanout.refuse_write(reader));
        }
        let mut frames = VecDeque::new();
        assert_eq!(outbox.take(&mut frames).await, Taken::Frames);
        assert_eq!(frames.len(), 1, "one answer, not one per refused write");
        assert_eq!(&frames[0][..2], &[2, 0], "the y-protocols permission-denied message");
    }

    #[test]
    fn principals_match_only_when_both_are_known() {
        let mut fanout = Fanout::default();
        let conns: Vec<ConnId> = (0..4).map(|_| ConnId::next()).collect();
        fanout.add(conns[0], Arc::new(Outbox::new(2)), peer(Scope::Write, Some("ada")));
        fanout.add(conns[1], Arc::new(Outbox::new(2)), peer(Scope::Write, Some("ada")));
        fanout.add(conns[2], Arc::new(Outbox::new(2)), peer(Scope::Write, Some("bob")));
        fanout.add(conns[3], Arc::new(Outbox::new(2)), peer(Scope::Write, None));
        assert!(fanout.same_principal(conns[0], conns[1]));
        assert!(!fanout.same_principal(conns[0], conns[2]));
        assert!(!fanout.same_principal(conns[3], conns[3]), "no principal, no match");
    }
}
