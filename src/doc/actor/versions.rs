//! The actor's part of version history: keeping automatic versions, handing out its state
//! for versions and restores, and applying a restore. What is kept and when lives in
//! `doc::history`; this is where the actor's document meets it.

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use yrs::sync::Awareness;
use yrs::{ReadTxn, StateVector, Transact};

use super::DocActor;
use crate::doc::apply::Panicked;
use crate::doc::fanout::Fanout;
use crate::doc::handle::{ConnId, Restored};
use crate::doc::history::{self, Capture, Edit};
use crate::doc::presence::Presence;
use crate::doc::protocol;

impl DocActor {
    /// Editing paused (or went on for the interval): keep a version, written in the
    /// background.
    pub(super) fn keep_version(&mut self) {
        let editors = self.editors();
        let state = self.awareness.doc().transact().encode_state_as_update_v1(&StateVector::default());
        self.history.keep_in_background(editors, state);
    }

    /// Before the document leaves memory: keep a version of what changed since the last.
    pub(super) async fn keep_last_version(&mut self) {
        // Not while the store fails: the document's own writes come first.
        if !self.history.is_dirty() || self.settings.versions.after_idle.is_none() || !self.persist.is_clean()
        {
            return;
        }
        let editors = self.editors();
        let state = self.awareness.doc().transact().encode_state_as_update_v1(&StateVector::default());
        self.history.keep_now(editors, state).await;
    }

    /// The state for a version; with `take`, that version covers everything so far.
    pub(super) fn capture(&mut self, take: bool, respond_to: oneshot::Sender<Capture>) {
        let capture = history::capture(self.awareness.doc(), self.editors());
        if take {
            self.history.reset();
        }
        let _ = respond_to.send(capture);
    }

    /// Applies a restore's edits if the document holds exactly what they were computed
    /// against. They reach everyone, the log and the other instances as any update does.
    pub(super) fn restore(
        &mut self,
        edits: &[Edit],
        expect: &StateVector,
        by: Option<&str>,
        respond_to: oneshot::Sender<Restored>,
    ) -> Result<(), Panicked> {
        if self.awareness.doc().transact().state_vector() != *expect {
            let _ = respond_to.send(Restored::Changed);
            return Ok(());
        }
        let update = history::apply_edits(self.awareness.doc(), edits)?;
        // The version kept before the restore holds everything up to here.
        self.history.reset();
        if let Some(update) = update.filter(|update| update.as_slice() != [0, 0]) {
            let now = Instant::now();
            self.history.edited_as(by, now);
            self.size.grew(update.len());
            let frame = protocol::encode_update(&update);
            self.persist.push(Bytes::from(update), now);
            if let Some(remote) = &mut self.remote {
                remote.publish_update(frame.clone());
            }
            self.broadcast(frame);
        }
        tracing::info!(edits = edits.len(), by, "restored a version");
        let _ = respond_to.send(Restored::Applied);
        Ok(())
    }

    /// Who edited since the last version.
    fn editors(&self) -> Vec<String> {
        let (fanout, presence, awareness) = (&self.fanout, &self.presence, &self.awareness);
        self.history.editors(|conn| editor_name(fanout, presence, awareness, conn))
    }

    /// Connections are leaving: the history reads the names of those that edited.
    pub(super) fn editors_leaving(&mut self, conns: &[ConnId]) {
        let (fanout, presence, awareness) = (&self.fanout, &self.presence, &self.awareness);
        self.history.leaving(conns, |conn| editor_name(fanout, presence, awareness, conn));
    }
}

/// The name `conn` edits under: its token's `name`, else the `user.name` of an awareness
/// state it announced.
fn editor_name(fanout: &Fanout, presence: &Presence, awareness: &Awareness, conn: ConnId) -> Option<String> {
    if let Some(name) = fanout.name(conn) {
        return Some(name.to_owned());
    }
    presence
        .clients_of(|owner| owner == conn)
        .into_iter()
        .filter_map(|client| awareness.state::<serde_json::Value>(client))
        .find_map(|state| history::awareness_name(&state))
}
