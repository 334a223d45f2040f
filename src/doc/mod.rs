//! Open documents: one actor (tokio task) per open document.
//!
//! The actor owns the document's yrs `Doc` and `Awareness`; nothing else touches them.
//! Connections and REST handlers reach it only through a [`DocHandle`] (a bounded channel),
//! and receive frames on their own bounded outbox. The actor applies each update once,
//! sends the same bytes to every connection, and writes updates to the store in batches
//! (group commit), compacting the log into snapshots as it grows. The [`Registry`] starts
//! at most one actor per document and forgets it when it unloads.
//!
//! This module knows nothing of HTTP: it speaks in frames (`Bytes`) and close reasons.

mod actor;
mod apply;
mod fanout;
mod handle;
mod history;
mod outbox;
mod persist;
mod presence;
pub mod protocol;
mod registry;
mod remote;
mod size;
mod untrusted;

pub use handle::{Close, ConnId, DocError, DocHandle, Peer, Restored, Subscription};
pub use history::{Capture, Edit, VersionSettings, diff, text_of_state};
pub use outbox::{Outbox, Queue, Sink, Taken};
pub use registry::{DocSettings, Registry};
