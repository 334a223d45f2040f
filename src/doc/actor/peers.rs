//! What the other instances of a cluster say about the document, as the actor takes it in:
//! their updates and cursors, their going away, a deletion elsewhere, and the catch-ups from
//! the store that `doc::remote` asks for when something was missed.

use bytes::Bytes;
use tokio::time::Instant;

use super::{DocActor, Exit};
use crate::doc::apply::{self, Panicked};
use crate::doc::presence::Heard;
use crate::doc::protocol::{self, ClientMessage};
use crate::doc::remote::{Remote, Step};
use crate::store::StoreError;

impl DocActor {
    /// What another instance said, or a read of the store the cluster asked for.
    pub(super) fn on_remote(&mut self, step: Step) -> Option<Exit> {
        self.announce_presence();
        match step {
            Step::Update(frame) => {
                let updates: Vec<Bytes> = decode_peer(&frame)
                    .into_iter()
                    .filter_map(|message| match message {
                        ClientMessage::Update(update) => Some(update.raw),
                        _ => None,
                    })
                    .collect();
                // Stored by the instance that took it from its client; here only applied.
                match apply::apply_relayed(self.awareness.doc(), updates.iter().map(|u| u.as_ref())) {
                    Ok(relayed) => {
                        self.size.grew(updates.iter().map(Bytes::len).sum());
                        // It follows, or waits for, a message this instance never had: the
                        // store has what is missing.
                        if relayed.missed
                            && let Some(remote) = &mut self.remote
                        {
                            remote.missed();
                        }
                        if let Some(frame) = relayed.frame {
                            self.history.changed(Instant::now());
                            self.broadcast(frame);
                        }
                    }
                    Err(Panicked) => return Some(Exit::Failed),
                }
            }
            Step::Awareness { frame, peer } => {
                for message in decode_peer(&frame) {
                    let ClientMessage::Awareness(incoming) = message else { continue };
                    // A peer speaks for all its clients: it owns what it says, however many.
                    let heard =
                        self.presence.apply_for(&mut self.awareness, peer, incoming, usize::MAX, |_| true);
                    if let Heard::Changed(frame) = heard {
                        self.broadcast(frame);
                    }
                }
            }
            Step::Gone(peers) => {
                if let Some(frame) = self.presence.forget(&mut self.awareness, &peers) {
                    self.broadcast(frame);
                }
            }
            Step::Deleted => return Some(Exit::DeletedElsewhere),
            Step::CaughtUp(Ok(stored)) => {
                let parts: Vec<&[u8]> =
                    stored.snapshot.iter().chain(&stored.updates).map(Vec::as_slice).collect();
                match apply::apply_relayed(self.awareness.doc(), parts.iter().copied()) {
                    Ok(relayed) => {
                        if let Some(frame) = relayed.frame {
                            tracing::debug!(bytes = frame.len(), "caught up from the store");
                            self.history.changed(Instant::now());
                            self.broadcast(frame);
                        }
                    }
                    Err(Panicked) => return Some(Exit::Failed),
                }
                match apply::missing_from_store(self.awareness.doc(), parts.into_iter()) {
                    Ok(Some(update)) => {
                        tracing::debug!(
                            bytes = update.len(),
                            "the store lacks what this instance holds: storing it"
                        );
                        self.persist.push(Bytes::from(update), Instant::now());
                    }
                    Ok(None) => {}
                    Err(Panicked) => return Some(Exit::Failed),
                }
            }
            Step::CaughtUp(Err(StoreError::NotFound)) => return Some(Exit::DeletedElsewhere),
            Step::CaughtUp(Err(err)) => tracing::warn!(error = %err, "could not catch up from the store"),
            Step::Nothing => {}
        }
        None
    }

    /// Publishes the states of this instance's own clients, when the cluster asks for it.
    fn announce_presence(&mut self) {
        let Some(remote) = &mut self.remote else { return };
        if !remote.take_announce() {
            return;
        }
        let fanout = &self.fanout;
        let mine = self.presence.clients_of(|conn| fanout.contains(conn));
        if mine.is_empty() {
            return;
        }
        if let Ok(update) = self.awareness.update_with_clients(mine) {
            remote.publish_awareness(protocol::encode_awareness(update));
        }
    }
}

/// The next step of the cluster, if the document is in one; never otherwise.
pub(super) async fn next_remote(remote: &mut Option<Remote>) -> Step {
    match remote {
        Some(remote) => remote.next().await,
        None => std::future::pending().await,
    }
}

/// The messages of a peer's frame. Checked as a client's are (a peer is another tandem, but
/// Redis is a shared bus): what does not decode is dropped.
fn decode_peer(frame: &Bytes) -> Vec<ClientMessage> {
    protocol::decode_frame(frame, 1).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "a peer's message does not decode");
        Vec::new()
    })
}
