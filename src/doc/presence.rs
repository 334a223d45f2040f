//! Awareness (cursors, names, selections) and who owns it.
//!
//! Each awareness client id belongs to the connection that announced it first: only that
//! connection may change or remove it, so nobody (a read-only visitor least of all) can
//! move someone else's cursor or change their name. A newer connection of the same
//! principal may take a state over (a person's reconnect that beat the old socket's close).
//! When a connection leaves, the states it owns are removed and everyone is told; states
//! not renewed in time are swept (a browser that vanished stops renewing).

use std::collections::HashMap;

use bytes::Bytes;
use yrs::block::ClientID;
use yrs::sync::Awareness;

use super::handle::ConnId;
use super::protocol::{self, IncomingAwareness};

/// Awareness client ids one connection may announce. A stock client announces one (its
/// document's client id); the cap bounds what a connection can make every other one keep.
pub(super) const MAX_AWARENESS_CLIENTS: usize = 16;

/// What became of an awareness message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Heard {
    /// Nothing changed (an echo of states already known, or only others' states).
    Nothing,
    /// Applied: this frame tells everyone.
    Changed(Bytes),
    /// The connection announced more client ids than allowed: drop it.
    TooMany,
}

/// Which connection owns each awareness client id.
#[derive(Default)]
pub(super) struct Presence {
    owners: HashMap<ClientID, ConnId>,
}

impl Presence {
    /// Applies what `conn` says, keeping only the states it owns or may claim:
    /// `may_take_over(owner)` says whether `conn` may take a state from its current owner.
    pub(super) fn apply(
        &mut self,
        awareness: &mut Awareness,
        conn: ConnId,
        incoming: IncomingAwareness,
        may_take_over: impl Fn(ConnId) -> bool,
    ) -> Heard {
        self.apply_for(awareness, conn, incoming, MAX_AWARENESS_CLIENTS, may_take_over)
    }

    /// As [`Presence::apply`], with `limit` client ids for `conn` (another instance speaks
    /// for all its clients).
    pub(super) fn apply_for(
        &mut self,
        awareness: &mut Awareness,
        conn: ConnId,
        incoming: IncomingAwareness,
        limit: usize,
        may_take_over: impl Fn(ConnId) -> bool,
    ) -> Heard {
        let IncomingAwareness { mut update, frame } = incoming;
        let before = update.clients.len();
        update.clients.retain(|client, _| match self.owners.get(client) {
            None => true,
            Some(owner) => *owner == conn || may_take_over(*owner),
        });
        if update.clients.is_empty() {
            if before > 0 {
                tracing::debug!(?conn, "ignored awareness states owned by other connections");
            }
            return Heard::Nothing;
        }
        // What others hear: the message as it came, unless part of it was held back.
        let kept = (update.clients.len() < before).then(|| update.clone());
        let summary = match awareness.apply_update_summary(update) {
            Ok(Some(summary)) => summary,
            // Nothing newer than what we have: typically a client echoing states it heard.
            Ok(None) => return Heard::Nothing,
            Err(err) => {
                tracing::debug!(error = %err, "awareness update not applied");
                return Heard::Nothing;
            }
        };
        // A state that is new or newer came from its own client through this connection
        // (clients re-send the states they hear, but those are never newer).
        for client in summary.added.iter().chain(&summary.updated) {
            self.owners.insert(*client, conn);
        }
        for client in &summary.removed {
            self.owners.remove(client);
        }
        if !summary.added.is_empty() && self.owned_by(conn) > limit {
            return Heard::TooMany;
        }
        Heard::Changed(kept.map_or(frame, protocol::encode_awareness))
    }

    /// The client ids announced by the connections `mine` picks.
    pub(super) fn clients_of(&self, mine: impl Fn(ConnId) -> bool) -> Vec<ClientID> {
        self.owners.iter().filter(|(_, conn)| mine(**conn)).map(|(client, _)| *client).collect()
    }

    fn owned_by(&self, conn: ConnId) -> usize {
        self.owners.values().filter(|&&owner| owner == conn).count()
    }

    /// Removes the states the given connections own; the message announcing it, if any.
    pub(super) fn forget(&mut self, awareness: &mut Awareness, conns: &[ConnId]) -> Option<Bytes> {
        let gone: Vec<ClientID> =
            self.owners.iter().filter(|(_, conn)| conns.contains(conn)).map(|(client, _)| *client).collect();
        for client in &gone {
            self.owners.remove(client);
        }
        remove_states(awareness, gone)
    }

    /// Removes states not renewed for `timeout_ms` (clocks in the awareness's milliseconds);
    /// the message announcing it, if any.
    pub(super) fn sweep(&mut self, awareness: &mut Awareness, now_ms: u64, timeout_ms: u64) -> Option<Bytes> {
        let stale: Vec<ClientID> = awareness
            .iter()
            .filter(|(_, state)| {
                state.data.is_some() && now_ms.saturating_sub(state.last_updated) >= timeout_ms
            })
            .map(|(client, _)| client)
            .collect();
        for client in &stale {
            self.owners.remove(client);
        }
        remove_states(awareness, stale)
    }
}

/// Every known awareness state as one message, or `None` when there is none.
pub(super) fn all_states(awareness: &Awareness) -> Option<Bytes> {
    let update = awareness.update().ok()?;
    (!update.clients.is_empty()).then(|| protocol::encode_awareness(update))
}

/// Clears the given states; the message announcing their removal.
fn remove_states(awareness: &mut Awareness, clients: Vec<ClientID>) -> Option<Bytes> {
    if clients.is_empty() {
        return None;
    }
    for client in &clients {
        awareness.remove_state(*client);
    }
    let update = awareness.update_with_clients(clients).ok()?;
    Some(protocol::encode_awareness(update))
}

#[cfg(test)]
mod tests {
    use yrs::Doc;
    use yrs::sync::AwarenessUpdate;
    use yrs::sync::awareness::AwarenessUpdateEntry;

    use super::*;

    /// What a client with `id` sends when it sets its state, `clock` times over.
    fn announce(id: u64, clock: u32, name: &str) -> IncomingAwareness {
        let mut update = AwarenessUpdate { clients: Default::default() };
        let json = format!(r#"{{"user":{{"name":"{name}"}}}}"#);
        update.clients.insert(ClientID::new(id), AwarenessUpdateEntry { clock, json: json.into() });
        let frame = protocol::encode_awareness(update.clone());
        IncomingAwareness { update, frame }
    }

    fn name_of(awareness: &Awareness, id: u64) -> Option<String> {
        awareness.state::<serde_json::Value>(ClientID::new(id)).map(|s| s["user"]["name"].to_string())
    }

    #[test]
    fn only_the_owner_changes_a_state() {
        let mut awareness = Awareness::new(Doc::new());
        let mut presence = Presence::default();
        let (ada, eve) = (ConnId::next(), ConnId::next());
        assert!(matches!(
            presence.apply(&mut awareness, ada, announce(1, 1, "Ada"), |_| false),
            Heard::Changed(_)
        ));
        // Eve claims Ada's id with a newer clock: held back, Ada keeps her name.
        assert_eq!(presence.apply(&mut awareness, eve, announce(1, 5, "Eve"), |_| false), Heard::Nothing);
        assert_eq!(name_of(&awareness, 1).as_deref(), Some("\"Ada\""));
        // Ada renews hers.
        assert!(matches!(
            presence.apply(&mut awareness, ada, announce(1, 2, "Ada L."), |_| false),
            Heard::Changed(_)
        ));
        // A takeover the caller allows (same person, new socket) moves the state.
        assert!(matches!(
            presence.apply(&mut awareness, eve, announce(1, 3, "Ada again"), |_| true),
            Heard::Changed(_)
        ));
        assert!(presence.forget(&mut awareness, &[ada]).is_none(), "Ada's old socket owns nothing now");
        assert!(presence.forget(&mut awareness, &[eve]).is_some());
        assert_eq!(name_of(&awareness, 1), None);
    }

    #[test]
    fn a_mixed_message_is_passed_on_without_the_states_held_back() {
        let mut awareness = Awareness::new(Doc::new());
        let mut presence = Presence::default();
        let (ada, eve) = (ConnId::next(), ConnId::next());
        presence.apply(&mut awareness, ada, announce(1, 1, "Ada"), |_| false);
        let mut both = announce(1, 9, "Eve as Ada");
        both.update.clients.insert(
            ClientID::new(2),
            AwarenessUpdateEntry { clock: 1, json: r#"{"user":{"name":"Eve"}}"#.into() },
        );
        both.frame = protocol::encode_awareness(both.update.clone());
        let Heard::Changed(frame) = presence.apply(&mut awareness, eve, both, |_| false) else {
            panic!("not applied")
        };
        let passed_on = crate::doc::protocol::decode_frame(&frame, usize::MAX).unwrap();
        let [crate::doc::protocol::ClientMessage::Awareness(sent)] = passed_on.as_slice() else { panic!() };
        assert_eq!(sent.update.clients.keys().copied().collect::<Vec<_>>(), [ClientID::new(2)]);
        assert_eq!(name_of(&awareness, 1).as_deref(), Some("\"Ada\""));
    }

    #[test]
    fn too_many_client_ids_on_one_connection() {
        let mut awareness = Awareness::new(Doc::new());
        let mut presence = Presence::default();
        let conn = ConnId::next();
        for id in 1..=MAX_AWARENESS_CLIENTS as u64 {
            assert!(matches!(
                presence.apply(&mut awareness, conn, announce(id, 1, "x"), |_| false),
                Heard::Changed(_)
            ));
        }
        assert_eq!(presence.apply(&mut awareness, conn, announce(99, 1, "x"), |_| false), Heard::TooMany);
    }
}
