//! Applying client updates to the document, sans IO: what comes out is what the log keeps
//! and what everyone receives.
//!
//! One update is applied and passed on exactly as it came. Several (a burst queued in the
//! inbox) are applied in one transaction, whose own update (yrs encodes it on commit) is
//! what everyone receives and the log keeps: one frame and one row instead of many.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, Transact};

use super::handle::ConnId;
use super::protocol::{self, IncomingUpdate};
use super::untrusted::{Admit, admit};

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
    /// Connections whose update skips clocks of its client (see `untrusted::skips_clocks`):
    /// not applied. An honest client sends one when it types before its step 2 (with what it
    /// typed offline) went out; they are asked for a step 2, which holds this one's content.
    pub skipped: Vec<ConnId>,
    /// Updates held back because they overlap a pending one (see `untrusted::overlaps_pending`).
    pub held_back: u64,
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

/// What applying relayed updates did.
#[derive(Debug, Default)]
pub(super) struct Relayed {
    /// The update message for the connections: what the document took in, if anything.
    pub frame: Option<Bytes>,
    /// Some part did not fit (it skips clocks, or overlaps what waits for a dependency), or
    /// waits for a dependency itself: the document lacks something it should catch up on.
    pub missed: bool,
}

/// Applies updates relayed from elsewhere (another instance's, or the store's in a catch-up)
/// and passes on only what the document took in. A relayed update may arrive before one it
/// depends on; what waits for it is not passed on, so that clients never hold content the
/// server holds pending (a client that sends it back would overlap the pending update).
pub(super) fn apply_relayed<'a>(
    doc: &Doc,
    parts: impl Iterator<Item = &'a [u8]>,
) -> Result<Relayed, Panicked> {
    let (missed, merged) = in_one_transaction(doc, || {
        let mut txn = doc.transact_mut();
        let mut missed = false;
        for part in parts {
            let Ok(update) = yrs::Update::decode_v1(part) else { continue };
            if admit(&txn, &update) == Admit::Apply {
                let _ = txn.apply_update(update);
            } else {
                missed = true;
            }
        }
        missed || txn.has_missing_updates()
    })?;
    let frame =
        merged.filter(|update| !update_is_empty(update)).map(|update| protocol::encode_update(&update));
    Ok(Relayed { frame, missed })
}

/// What `doc` holds that the stored parts lack (blocks past their state vector, or deletions
/// they do not have), as one update; `None` when the store has it all. In a cluster each
/// instance stores what its own clients sent: an update another instance published but died
/// before storing lives on only in the instances that applied it, which store it this way.
pub(super) fn missing_from_store<'a>(
    doc: &Doc,
    parts: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<Vec<u8>>, Panicked> {
    catch_unwind(AssertUnwindSafe(|| {
        let stored = Doc::new();
        {
            let mut txn = stored.transact_mut();
            for part in parts {
                if let Ok(update) = yrs::Update::decode_v1(part) {
                    let _ = txn.apply_update(update);
                }
            }
        }
        let stored = stored.transact().snapshot();
        let txn = doc.transact();
        let own = txn.snapshot();
        let ahead = own.state_map.iter().any(|(client, &clock)| clock > stored.state_map.get(client));
        if !ahead && own.delete_set == stored.delete_set {
            return None;
        }
        Some(txn.encode_state_as_update_v1(&stored.state_map))
    }))
    .map_err(|_| Panicked)
}

/// An update that carries nothing (two zero counts: no blocks, no deletions).
fn update_is_empty(update: &[u8]) -> bool {
    update == [0, 0]
}

fn apply_one(doc: &Doc, conn: ConnId, incoming: IncomingUpdate) -> Result<Applied, Panicked> {
    let IncomingUpdate { update, raw, frame } = incoming;
    // yrs may panic on input it failed to reject; then the in-memory document is suspect.
    let applied = catch_unwind(AssertUnwindSafe(|| {
        let mut txn = doc.transact_mut();
        let admitted = admit(&txn, &update);
        if admitted == Admit::Apply {
            txn.apply_update(update)?;
        }
        Ok::<_, yrs::error::UpdateError>(admitted)
    }));
    match applied {
        Ok(Ok(Admit::HoldBack)) => {
            tracing::info!(?conn, "held back an update that overlaps one waiting for its dependencies");
            Ok(Applied { held_back: 1, ..Applied::default() })
        }
        Ok(Ok(Admit::Gap)) => {
            tracing::debug!(?conn, "held back an update that skips clocks of its client");
            Ok(Applied { skipped: vec![conn], ..Applied::default() })
        }
        Ok(Ok(Admit::Apply)) => {
            tracing::trace!(bytes = raw.len(), "applied an update");
            Ok(Applied { log: vec![raw], broadcast: vec![frame], ..Applied::default() })
        }
        Ok(Err(err)) => {
            tracing::info!(error = %err, "refused an update that does not apply");
            Ok(Applied { refused: vec![conn], ..Applied::default() })
        }
        Err(_) => Err(Panicked),
    }
}

/// Runs `apply` (one transaction on `doc`) and returns what it returned with the
/// transaction's update, observed only for it: yrs encodes a transaction's update only when
/// someone listens. yrs panicking is `Panicked`.
pub(super) fn in_one_transaction<R>(
    doc: &Doc,
    apply: impl FnOnce() -> R,
) -> Result<(R, Option<Vec<u8>>), Panicked> {
    let merged = Arc::new(Mutex::new(None::<Vec<u8>>));
    let slot = Arc::clone(&merged);
    let _ = doc.observe_update_v1(MERGED_KEY, move |_, event| {
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(event.update.clone());
        }
    });
    let result = catch_unwind(AssertUnwindSafe(apply));
    let _ = doc.unobserve_update_v1(MERGED_KEY);
    let result = result.map_err(|_| Panicked)?;
    let merged = merged.lock().ok().and_then(|mut slot| slot.take());
    Ok((result, merged))
}

fn apply_many(doc: &Doc, updates: Vec<(ConnId, IncomingUpdate)>) -> Result<Applied, Panicked> {
    let (applied, merged) = in_one_transaction(doc, || {
        let mut txn = doc.transact_mut();
        let mut refused = Vec::new();
        let mut skipped = Vec::new();
        let mut held_back = 0;
        let mut applied = Vec::with_capacity(updates.len());
        for (conn, IncomingUpdate { update, raw, frame }) in updates {
            match admit(&txn, &update) {
                Admit::Apply => {}
                Admit::HoldBack => {
                    tracing::info!(
                        ?conn,
                        "held back an update that overlaps one waiting for its dependencies"
                    );
                    held_back += 1;
                    continue;
                }
                Admit::Gap => {
                    tracing::debug!(?conn, "held back an update that skips clocks of its client");
                    skipped.push(conn);
                    continue;
                }
            }
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
        (refused, skipped, held_back, applied, waiting)
    })?;
    let (refused, skipped, held_back, applied, waiting) = applied;
    let merged = merged.map(Bytes::from);
    let mut out = Applied { refused, skipped, held_back, ..Applied::default() };
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
        match decode_frame(&protocol::encode_update(update), usize::MAX).unwrap().pop() {
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
            let Some(ClientMessage::Update(update)) = decode_frame(frame, usize::MAX).unwrap().pop() else {
                panic!("not an update")
            };
            peer.transact_mut().apply_update(update.update).unwrap();
        }
    }

    /// Bob's edit, made after he received Ada's: it depends on hers.
    fn dependent_pair() -> (Vec<u8>, Vec<u8>) {
        let ada = Doc::with_client_id(1);
        let first = edit(&ada, 0, "abc");
        let bob = Doc::with_client_id(2);
        bob.transact_mut().apply_update(Update::decode_v1(&first).unwrap()).unwrap();
        (first, edit(&bob, 3, "def"))
    }

    #[test]
    fn a_burst_with_a_missing_dependency_reaches_peers_whole() {
        let (first, second) = dependent_pair();
        let carol = Doc::with_client_id(3);
        let unrelated = edit(&carol, 0, "xyz");

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
        let (first, second) = dependent_pair();
        let carol = Doc::with_client_id(3);
        carol.transact_mut().apply_update(Update::decode_v1(&first).unwrap()).unwrap();
        carol.transact_mut().apply_update(Update::decode_v1(&second).unwrap()).unwrap();
        let third = edit(&carol, 6, "ghi");
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

    /// Found by fuzzing: two 34-byte updates of one client, the first at clock 8 with nothing
    /// before it, the second from clock 0 with other content. yrs took the first without
    /// setting it aside, then read freed memory when the second came.
    const SKIPPED_CLOCKS: &[u8] = include_bytes!("../../fuzz/known-crashes/messages-use-after-free-minimal");

    #[test]
    fn an_update_that_skips_its_clients_clocks_is_held_back() {
        // The file is a fuzz input: a mode byte, then one frame with both updates.
        let updates: Vec<IncomingUpdate> =
            decode_frame(&Bytes::copy_from_slice(&SKIPPED_CLOCKS[1..]), usize::MAX)
                .unwrap()
                .into_iter()
                .map(|m| match m {
                    ClientMessage::Update(update) => update,
                    other => panic!("not an update: {other:?}"),
                })
                .collect();
        assert_eq!(updates.len(), 2);
        let fresh = || updates.iter().map(|u| incoming(&u.raw));
        for together in [false, true] {
            let server = Doc::new();
            let skipped: usize = if together {
                apply(&server, fresh().collect()).unwrap().skipped.len()
            } else {
                fresh().map(|u| apply(&server, vec![u]).unwrap().skipped.len()).sum()
            };
            assert_eq!(skipped, 1, "together: {together}");
            // The second, whole from clock 0, went in.
            assert_eq!(server.transact().state_vector().iter().map(|(_, c)| *c).max(), Some(11));
            let state = server.transact().encode_state_as_update_v1(&StateVector::default());
            Doc::new().transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
        }
    }

    #[test]
    fn an_update_overlapping_a_pending_one_is_held_back() {
        let ada = Doc::with_client_id(1);
        let first = edit(&ada, 0, "abc");
        let bob = Doc::with_client_id(2);
        bob.transact_mut().apply_update(Update::decode_v1(&first).unwrap()).unwrap();
        let waiting = edit(&bob, 3, "def"); // waits for Ada's `first`
        let server = Doc::new();
        assert_eq!(apply(&server, vec![incoming(&waiting)]).unwrap().held_back, 0);
        assert!(server.transact().has_missing_updates());
        // The same clocks of Bob's again, with other content: held back.
        let eve = Doc::with_client_id(2);
        eve.transact_mut().apply_update(Update::decode_v1(&first).unwrap()).unwrap();
        let forged = edit(&eve, 3, "XYZ");
        assert_eq!(apply(&server, vec![incoming(&forged)]).unwrap().held_back, 1);
        // Ada's update arrives: Bob's waiting one goes in with it.
        apply(&server, vec![incoming(&first)]).unwrap();
        assert_eq!(text(&server), "abcdef");
    }

    #[test]
    fn an_update_that_continues_a_pending_one_is_no_gap() {
        // Bob's two edits wait for Ada's: the second continues the first's clocks, which the
        // document holds pending, not integrated (in a cluster, another instance's updates
        // can arrive before those they depend on).
        let (first, second) = dependent_pair();
        let bob = Doc::with_client_id(2);
        bob.transact_mut().apply_update(Update::decode_v1(&first).unwrap()).unwrap();
        bob.transact_mut().apply_update(Update::decode_v1(&second).unwrap()).unwrap();
        let third = edit(&bob, 6, "ghi");
        let server = Doc::new();
        for update in [&second, &third] {
            let out = apply(&server, vec![incoming(update)]).unwrap();
            assert!(out.refused.is_empty(), "a continuation of a pending update was refused");
        }
        assert!(server.transact().has_missing_updates());
        apply(&server, vec![incoming(&first)]).unwrap();
        assert_eq!(text(&server), "abcdefghi");
    }

    #[test]
    fn stored_parts_already_held_bring_nothing_new() {
        let (first, second) = dependent_pair();
        let server = Doc::new();
        apply(&server, vec![incoming(&first), incoming(&second)]).unwrap();
        let parts = [first.as_slice(), second.as_slice()];
        assert_eq!(apply_relayed(&server, parts.into_iter()).unwrap().frame, None);
        let carol = Doc::with_client_id(3);
        let news = edit(&carol, 0, "xyz");
        let frame = apply_relayed(&server, [news.as_slice(), first.as_slice()].into_iter()).unwrap().frame;
        assert!(frame.is_some(), "a stored update the document lacked is passed on");
        let text = text(&server);
        assert!(text.len() == 9 && text.contains("xyz") && text.contains("abcdef"), "{text}");
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
