//! Applying client updates to the document, sans IO: what comes out is what the log keeps
//! and what everyone receives.
//!
//! One update is applied and passed on exactly as it came. Several (a burst queued in the
//! inbox) are applied in one transaction, whose own update (yrs encodes it on commit) is
//! what everyone receives and the log keeps: one frame and one row instead of many.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use yrs::{Doc, ReadTxn, Transact};

use super::handle::ConnId;
use super::protocol::{self, IncomingUpdate};

/// The key of the update observer that collects a batch's merged update.
const MERGED_KEY: &str = "merged";

/// The result of applying updates.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// Updates for the log, in order.
    pub log: Vec<Bytes>,
    /// Frames for every connection, in order.
    pub broadcast: Vec<Bytes>,
    /// Connections whose update did not apply (they are closed with 1007).
    pub refused: Vec<ConnId>,
}

/// yrs panicked while applying: the document can no longer be trusted in memory.
#[derive(Debug)]
pub(super) struct Panicked;

/// Applies updates from connections, in order.
pub(super) fn apply(doc: &Doc, mut updates: Vec<(ConnId, IncomingUpdate)>) -> Result<Applied, Panicked> {
    match updates.len() {
        0 => Ok(Applied::default()),
        1 => {
            let (conn, update) = updates.pop().expect("one update");
            apply_one(doc, conn, update)
        }
        _ => apply_many(doc, updates),
    }
}

fn apply_one(doc: &Doc, conn: ConnId, incoming: IncomingUpdate) -> Result<Applied, Panicked> {
    let IncomingUpdate { update, raw, frame } = incoming;
    // yrs may panic on input it failed to reject; then the in-memory document is suspect.
    let applied = catch_unwind(AssertUnwindSafe(|| doc.transact_mut().apply_update(update)));
    match applied {
        Ok(Ok(())) => {
            tracing::trace!(bytes = raw.len(), "applied an update");
            Ok(Applied { log: vec![raw], broadcast: vec![frame], refused: Vec::new() })
        }
        Ok(Err(err)) => {
            tracing::info!(error = %err, "refused an update that does not apply");
            Ok(Applied { refused: vec![conn], ..Applied::default() })
        }
        Err(_) => Err(Panicked),
    }
}

fn apply_many(doc: &Doc, updates: Vec<(ConnId, IncomingUpdate)>) -> Result<Applied, Panicked> {
    let merged = Arc::new(Mutex::new(None::<Vec<u8>>));
    let slot = Arc::clone(&merged);
    // Observed only for this transaction: yrs encodes a transaction's update only when
    // someone listens.
    let _ = doc.observe_update_v1(MERGED_KEY, move |_, event| {
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(event.update.clone());
        }
    });
    let applied = catch_unwind(AssertUnwindSafe(|| {
        let mut txn = doc.transact_mut();
        let mut refused = Vec::new();
        let mut applied = Vec::with_capacity(updates.len());
        for (conn, IncomingUpdate { update, raw, frame }) in updates {
            match txn.apply_update(update) {
                Ok(()) => applied.push((raw, frame)),
                Err(err) => {
                    tracing::info!(error = %err, "refused an update that does not apply");
                    refused.push(conn);
                }
            }
        }
        // Parts waiting for updates not seen yet are not in the transaction's update.
        let waiting = txn.has_missing_updates();
        (refused, applied, waiting)
    }));
    let _ = doc.unobserve_update_v1(MERGED_KEY);
    let (refused, applied, waiting) = applied.map_err(|_| Panicked)?;
    let merged = merged.lock().ok().and_then(|mut slot| slot.take()).map(Bytes::from);
    let mut out = Applied { refused, ..Applied::default() };
    match merged {
        Some(update) if !update.is_empty() && !waiting => {
            tracing::trace!(bytes = update.len(), "applied a batch of updates");
            out.broadcast.push(protocol::encode_update(&update));
            out.log.push(update);
        }
        // Some of it waits for an update not seen yet, which the merged update leaves out
        // (or nothing merged came out): the updates go on and into the log as they came, so
        // that peers too hold the waiting parts and integrate them when the rest arrives.
        _ => {
            for (raw, frame) in applied {
                out.log.push(raw);
                out.broadcast.push(frame);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, ReadTxn, StateVector, Text, Update};

    use super::*;
    use crate::doc::protocol::{ClientMessage, decode_frame};

    /// An edit on `doc` and the update it made.
    fn edit(doc: &Doc, at: u32, text: &str) -> Vec<u8> {
        let before = doc.transact().state_vector();
        doc.get_or_insert_text("content").insert(&mut doc.transact_mut(), at, text);
        doc.transact().encode_state_as_update_v1(&before)
    }

    fn incoming(update: &[u8]) -> (ConnId, IncomingUpdate) {
        match decode_frame(&protocol::encode_update(update)).unwrap().pop() {
            Some(ClientMessage::Update(incoming)) => (ConnId::next(), incoming),
            other => panic!("not an update: {other:?}"),
        }
    }

    fn text(doc: &Doc) -> String {
        doc.get_or_insert_text("content").get_string(&doc.transact())
    }

    /// What a peer does with the frames it receives.
    fn receive(peer: &Doc, frames: &[Bytes]) {
        for frame in frames {
            let Some(ClientMessage::Update(update)) = decode_frame(frame).unwrap().pop() else {
                panic!("not an update")
            };
            peer.transact_mut().apply_update(update.update).unwrap();
        }
    }

    #[test]
    fn a_burst_with_a_missing_dependency_reaches_peers_whole() {
        let ada = Doc::with_client_id(1);
        let first = edit(&ada, 0, "abc");
        let second = edit(&ada, 3, "def"); // depends on `first`
        let bob = Doc::with_client_id(2);
        let unrelated = edit(&bob, 0, "xyz");

        let server = Doc::new();
        let peer = Doc::new();
        // One burst: an update whose dependency has not arrived, and an unrelated one.
        let burst = apply(&server, vec![incoming(&second), incoming(&unrelated)]).unwrap();
        receive(&peer, &burst.broadcast);
        // Then the dependency, alone.
        let late = apply(&server, vec![incoming(&first)]).unwrap();
        receive(&peer, &late.broadcast);
        assert_eq!(text(&server).len(), 9);
        assert_eq!(text(&peer), text(&server), "the peer diverged");
        // The log, replayed, is the same document too.
        let replayed = Doc::new();
        for update in burst.log.iter().chain(&late.log) {
            replayed.transact_mut().apply_update(Update::decode_v1(update).unwrap()).unwrap();
        }
        assert_eq!(text(&replayed), text(&server));
        assert!(!replayed.transact().has_missing_updates());
    }

    #[test]
    fn a_burst_with_nothing_to_integrate_is_still_passed_on() {
        let ada = Doc::with_client_id(1);
        let first = edit(&ada, 0, "abc");
        let second = edit(&ada, 3, "def");
        let third = edit(&ada, 6, "ghi");
        let server = Doc::new();
        let peer = Doc::new();
        // Both wait for `first`: no merged update comes out of this transaction.
        let burst = apply(&server, vec![incoming(&third), incoming(&second)]).unwrap();
        assert_eq!(burst.broadcast.len(), 2, "nothing was passed on");
        receive(&peer, &burst.broadcast);
        receive(&peer, &apply(&server, vec![incoming(&first)]).unwrap().broadcast);
        assert_eq!(text(&server), "abcdefghi");
        assert_eq!(text(&peer), "abcdefghi");
    }

    #[test]
    fn a_whole_burst_goes_out_as_one_merged_update() {
        let ada = Doc::with_client_id(1);
        let first = edit(&ada, 0, "abc");
        let second = edit(&ada, 3, "def");
        let server = Doc::new();
        let out = apply(&server, vec![incoming(&first), incoming(&second)]).unwrap();
        assert_eq!((out.broadcast.len(), out.log.len()), (1, 1));
        let peer = Doc::new();
        receive(&peer, &out.broadcast);
        assert_eq!(text(&peer), "abcdef");
        assert!(server.transact().encode_state_as_update_v1(&StateVector::default()).len() > 6);
    }
}
