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
        let mut raws = Vec::with_capacity(updates.len());
        for (conn, IncomingUpdate { update, raw, .. }) in updates {
            match txn.apply_update(update) {
                Ok(()) => raws.push(raw),
                Err(err) => {
                    tracing::info!(error = %err, "refused an update that does not apply");
                    refused.push(conn);
                }
            }
        }
        // Parts waiting for updates not seen yet are not in the transaction's update:
        // then the updates as they came are what the log must keep.
        let waiting = txn.has_missing_updates();
        (refused, raws, waiting)
    }));
    let _ = doc.unobserve_update_v1(MERGED_KEY);
    let (refused, raws, waiting) = applied.map_err(|_| Panicked)?;
    let merged = merged.lock().ok().and_then(|mut slot| slot.take()).map(Bytes::from);
    let mut out = Applied { refused, ..Applied::default() };
    match merged {
        Some(update) if !update.is_empty() => {
            out.log = if waiting { raws } else { vec![update.clone()] };
            tracing::trace!(bytes = update.len(), "applied a batch of updates");
            out.broadcast.push(protocol::encode_update(&update));
        }
        _ => out.log = raws,
    }
    Ok(out)
}
