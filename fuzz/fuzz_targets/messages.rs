//! The incoming message path: a binary frame decoded as y-websocket messages (as the
//! connection does), then applied as the document actor applies them: updates to the yrs
//! document, alone or several in one transaction, awareness updates to the awareness, step 1
//! answered, awareness queried; then the applied updates stored and loaded again as a restart
//! would, and the state compacted into a snapshot and loaded.
//!
//! The server catches panics in two places only: decoding an update (in `decode_frame`) and
//! applying updates (in the actor, which then reloads the document). This target catches
//! panics exactly there; a panic anywhere else is a crash.
//!
//! Input: a mode byte (bit 0: apply a frame's updates in one transaction), then the frame.

#![no_main]

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tandem_fuzz::protocol::{self, ClientMessage, IncomingUpdate};
use tandem_fuzz::untrusted::{Admit, admit};
use yrs::sync::Awareness;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

thread_local! {
    /// The last panic's message and place, printed if it escapes.
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fuzz_target!(
    init: {
        // libfuzzer-sys aborts on every panic, caught or not; the server's own catch_unwind
        // must work here as it does in the server. A panic that escapes still aborts, in
        // the handler around each input.
        std::panic::set_hook(Box::new(|info| LAST_PANIC.with_borrow_mut(|last| *last = info.to_string())));
    },
    |data: &[u8]| {
        if catch_unwind(|| run(data)).is_err() {
            LAST_PANIC.with_borrow(|last| eprintln!("uncaught panic: {last}"));
            std::process::abort();
        }
    }
);

fn run(data: &[u8]) {
    let Some((&mode, frame)) = data.split_first() else {
        return;
    };
    let Ok(messages) = protocol::decode_frame(&Bytes::copy_from_slice(frame), 16) else {
        return;
    };
    let mut awareness = Awareness::new(Doc::new());
    let mut log: Vec<Bytes> = Vec::new();
    let mut updates = Vec::new();
    for message in messages {
        match message {
            ClientMessage::SyncStep1(sv) => {
                let _ = awareness.doc().transact().encode_state_as_update_v1(&sv);
            }
            ClientMessage::Update(update) if mode & 1 == 1 => updates.push(update),
            ClientMessage::Update(update) => {
                if !apply(&awareness, vec![update], &mut log) {
                    awareness = Awareness::new(reload(&log));
                }
            }
            ClientMessage::Awareness(incoming) => {
                let _ = awareness.apply_update_summary(incoming.update);
            }
            ClientMessage::QueryAwareness => {
                let _ = awareness.update();
            }
        }
    }
    if !updates.is_empty() && !apply(&awareness, updates, &mut log) {
        awareness = Awareness::new(reload(&log));
    }
    let text = awareness.doc().get_or_insert_text("content").get_string(&awareness.doc().transact());
    let restarted = reload(&log);
    let snapshot = awareness.doc().transact().encode_state_as_update_v1(&StateVector::default());
    // A snapshot that does not load would lose the document at the next restart.
    assert!(Update::decode_v1(&snapshot).is_ok(), "the snapshot does not decode");
    let compacted = reload(&[Bytes::from(snapshot)]);
    for doc in [restarted, compacted] {
        let _ = doc.get_or_insert_text("content").get_string(&doc.transact());
    }
    drop(text);
}

/// Applies updates in one transaction, as the actor does, catching a panic as it does; the
/// applied updates join the log. False when yrs panicked (the actor then reloads).
fn apply(awareness: &Awareness, updates: Vec<IncomingUpdate>, log: &mut Vec<Bytes>) -> bool {
    let doc = awareness.doc();
    let applied = catch_unwind(AssertUnwindSafe(|| {
        let mut txn = doc.transact_mut();
        let mut raws = Vec::new();
        for IncomingUpdate { update, raw, .. } in updates {
            // What the actor checks before it applies (src/doc/apply.rs).
            if admit(&txn, &update) == Admit::Apply && txn.apply_update(update).is_ok() {
                raws.push(raw);
            }
        }
        let _ = txn.has_missing_updates();
        raws
    }));
    match applied {
        Ok(raws) => {
            log.extend(raws);
            true
        }
        Err(_) => false,
    }
}

/// Loads stored updates into a fresh document, as the actor does after a restart (no panic
/// is caught there).
fn reload(log: &[Bytes]) -> Doc {
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        for data in log {
            if let Ok(update) = Update::decode_v1(data)
                && admit(&txn, &update) == Admit::Apply
            {
                let _ = txn.apply_update(update);
            }
        }
    }
    doc
}
