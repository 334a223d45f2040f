//! Version history, as the document actor keeps it: whether the document changed since its
//! last version and who changed it, when the next automatic version is due, and restoring a
//! version's text as an ordinary CRDT update.
//!
//! A version is kept when a burst of editing ends (`after_idle` without a change) and during
//! long sessions at least every `every`. Each is written by a task of its own, so the actor
//! never waits on the store for one; in a cluster every instance that has the document open
//! keeps one at the end of the same burst, and the store merges them into one
//! (`Store::keep_auto_version`).
//!
//! A restore is computed outside the actor (`diff`, on the text the actor handed out with
//! its state vector) and applied by it only if the document has not changed since
//! (`apply_edits`): then the edits are exactly the difference, and the text that stays the
//! same keeps its CRDT items, so the cursors of people working there stay where they are.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, OffsetKind, ReadTxn, StateVector, Text, Transact, Update};

use super::apply::{self, Panicked};
use super::handle::ConnId;
use crate::model::{self, DocId, Reason};
use crate::store::{NewVersion, Retention, Store};

/// The root `Y.Text` the editor edits and a version's text is read from.
pub(super) const TEXT_NAME: &str = "content";

/// How long a restore's diff may search for the smallest difference before it settles for
/// a correct but coarser one.
const DIFF_DEADLINE: Duration = Duration::from_millis(500);

/// How long the version kept as a document leaves memory may take.
const LAST_WRITE: Duration = Duration::from_secs(1);

/// Attempts at writing an automatic version before it is given up (logged).
const WRITE_ATTEMPTS: u32 = 5;

/// When versions are kept and for how long.
#[derive(Clone, Copy, Debug)]
pub struct VersionSettings {
    /// A version is kept once the document has had no change for this long; `None`: no
    /// automatic versions.
    pub after_idle: Option<Duration>,
    /// ...and while changes go on, at least this often; `None`: only at pauses.
    pub every: Option<Duration>,
    pub retention: Retention,
}

/// The actor's part of version history.
pub(super) struct History {
    id: DocId,
    store: Store,
    settings: VersionSettings,
    /// The first change since the last version, and the latest.
    first_change: Option<Instant>,
    last_change: Option<Instant>,
    /// Connections that edited since the last version; their names are read when the
    /// version is kept, or when they leave (their awareness goes with them).
    editing: HashSet<ConnId>,
    /// Names already read.
    editors: BTreeSet<String>,
}

/// A document's state, handed out for a version.
#[derive(Debug)]
pub struct Capture {
    /// The whole state (a Yjs v1 update).
    pub state: Vec<u8>,
    /// What the state holds: a restore applies only while the document still has it.
    pub state_vector: StateVector,
    /// The text of `content` in it.
    pub text: String,
    /// Who edited since the last version.
    pub editors: Vec<String>,
}

impl History {
    pub(super) fn new(id: DocId, store: Store, settings: VersionSettings) -> Self {
        Self {
            id,
            store,
            settings,
            first_change: None,
            last_change: None,
            editing: HashSet::new(),
            editors: BTreeSet::new(),
        }
    }

    /// The document changed (here or on another instance).
    pub(super) fn changed(&mut self, now: Instant) {
        self.first_change.get_or_insert(now);
        self.last_change = Some(now);
    }

    /// `conn` changed the document.
    pub(super) fn edited_by(&mut self, conn: ConnId, now: Instant) {
        self.changed(now);
        self.editing.insert(conn);
    }

    /// A change made in a person's name rather than through a connection (a restore).
    pub(super) fn edited_as(&mut self, name: Option<&str>, now: Instant) {
        self.changed(now);
        self.editors.extend(name.map(str::to_owned));
    }

    /// Connections are leaving: their names are read now, while their awareness is there.
    pub(super) fn leaving(&mut self, conns: &[ConnId], name_of: impl Fn(ConnId) -> Option<String>) {
        for conn in conns {
            if self.editing.remove(conn)
                && let Some(name) = name_of(*conn)
            {
                self.editors.insert(name);
            }
        }
    }

    /// Changed since the last version.
    pub(super) fn is_dirty(&self) -> bool {
        self.first_change.is_some()
    }

    /// When the next automatic version is due, if one is.
    pub(super) fn due_at(&self) -> Option<Instant> {
        let after_idle = self.settings.after_idle?;
        let at_pause = self.last_change? + after_idle;
        let by_interval = self.settings.every.and_then(|every| Some(self.first_change? + every));
        Some(by_interval.map_or(at_pause, |every| every.min(at_pause)))
    }

    /// Who edited since the last version, without forgetting them.
    pub(super) fn editors(&self, name_of: impl Fn(ConnId) -> Option<String>) -> Vec<String> {
        let mut names = self.editors.clone();
        names.extend(self.editing.iter().filter_map(|conn| name_of(*conn)));
        names.into_iter().collect()
    }

    /// A version now covers everything so far: start counting again.
    pub(super) fn reset(&mut self) {
        self.first_change = None;
        self.last_change = None;
        self.editing.clear();
        self.editors.clear();
    }

    /// The automatic version of `capture`, written by a task of its own (with retries); then
    /// the document's versions are thinned by the retention rule.
    pub(super) fn keep_in_background(&mut self, editors: Vec<String>, state: Vec<u8>) {
        let (store, version, within, retention) = self.auto_version(editors, state);
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(500);
            for attempt in 1..=WRITE_ATTEMPTS {
                match keep(&store, &version, within, retention).await {
                    Ok(()) => return,
                    Err(crate::store::StoreError::NotFound) => return,
                    Err(err) if attempt == WRITE_ATTEMPTS => {
                        tracing::error!(doc_id = %version.doc_id, error = %err, "could not keep a version");
                    }
                    Err(err) => {
                        tracing::warn!(doc_id = %version.doc_id, error = %err, "keeping a version failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        });
    }

    /// The automatic version of what the document holds, written before the actor stops. One
    /// attempt, bounded: the document itself is stored already, and a shutdown has a deadline.
    pub(super) async fn keep_now(&mut self, editors: Vec<String>, state: Vec<u8>) {
        let (store, version, within, retention) = self.auto_version(editors, state);
        match tokio::time::timeout(LAST_WRITE, keep(&store, &version, within, retention)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "could not keep a version before unloading"),
            Err(_) => tracing::warn!("keeping a version before unloading took too long; skipped"),
        }
    }

    fn auto_version(
        &mut self,
        editors: Vec<String>,
        state: Vec<u8>,
    ) -> (Store, NewVersion, Duration, Retention) {
        self.reset();
        let version = NewVersion {
            doc_id: self.id,
            created_at: model::now(),
            label: None,
            reason: Reason::Auto,
            editors,
            state,
        };
        // Another instance's version of the same burst is at most a relay's delay away; two
        // versions of this document are at least `after_idle` or `every` apart (each counts
        // from a change after the version before).
        let apart = self.settings.after_idle.unwrap_or_default();
        let within = self.settings.every.map_or(apart, |every| every.min(apart)) / 2;
        (self.store.clone(), version, within, self.settings.retention)
    }
}

async fn keep(
    store: &Store,
    version: &NewVersion,
    within: Duration,
    retention: Retention,
) -> Result<(), crate::store::StoreError> {
    let kept = store.keep_auto_version(version, within).await?;
    tracing::debug!(version = %kept.id, editors = kept.editors.len(), "kept a version");
    let pruned = store.prune_versions(version.doc_id, retention, model::now()).await?;
    if pruned > 0 {
        tracing::debug!(pruned, "versions removed by retention");
    }
    Ok(())
}

/// The state of `doc` for a version.
pub(super) fn capture(doc: &Doc, editors: Vec<String>) -> Capture {
    let text = doc.get_or_insert_text(TEXT_NAME);
    let txn = doc.transact();
    Capture {
        state: txn.encode_state_as_update_v1(&StateVector::default()),
        state_vector: txn.state_vector(),
        text: text.get_string(&txn),
        editors,
    }
}

/// The name a display name is read from in an awareness state: `{"user": {"name": ...}}`,
/// as the bundled editor and most Yjs editors set it.
pub(super) fn awareness_name(state: &serde_json::Value) -> Option<String> {
    let name = state.get("user")?.get("name")?.as_str()?.trim();
    (!name.is_empty()).then(|| name.chars().take(model::Label::MAX_CHARS).collect())
}

/// The text of `content` in a version's state.
pub fn text_of_state(state: &[u8]) -> Result<String, String> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text(TEXT_NAME);
    let update = Update::decode_v1(state).map_err(|err| err.to_string())?;
    let mut txn = doc.transact_mut();
    txn.apply_update(update).map_err(|err| err.to_string())?;
    Ok(text.get_string(&txn))
}

/// One change of a restore, at an offset into the text as it is when the change is made
/// (UTF-8 bytes, the unit of the server's documents).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    Delete { at: u32, len: u32 },
    Insert { at: u32, text: String },
}

/// The edits that turn `from` into `to`: the difference character by character, so text
/// both hold is left alone.
pub fn diff(from: &str, to: &str) -> Vec<Edit> {
    let diff = similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .deadline(std::time::Instant::now() + DIFF_DEADLINE)
        .diff_chars(from, to);
    let mut edits = Vec::new();
    // Where the next change goes, in the text as changed so far.
    let mut at = 0u32;
    for change in diff.iter_all_changes() {
        let value = change.value();
        let len = value.len() as u32;
        match change.tag() {
            similar::ChangeTag::Equal => at += len,
            similar::ChangeTag::Delete => match edits.last_mut() {
                Some(Edit::Delete { at: start, len: run }) if *start == at => *run += len,
                _ => edits.push(Edit::Delete { at, len }),
            },
            similar::ChangeTag::Insert => {
                match edits.last_mut() {
                    Some(Edit::Insert { at: start, text }) if *start + text.len() as u32 == at => {
                        text.push_str(value)
                    }
                    _ => edits.push(Edit::Insert { at, text: value.to_owned() }),
                }
                at += len;
            }
        }
    }
    edits
}

/// Applies a restore's edits to `content` in one transaction; the update it made, if any.
pub(super) fn apply_edits(doc: &Doc, edits: &[Edit]) -> Result<Option<Vec<u8>>, Panicked> {
    debug_assert_eq!(doc.offset_kind(), OffsetKind::Bytes, "edits count UTF-8 bytes");
    let text = doc.get_or_insert_text(TEXT_NAME);
    let ((), update) = apply::in_one_transaction(doc, || {
        let mut txn = doc.transact_mut();
        for edit in edits {
            match edit {
                Edit::Delete { at, len } => text.remove_range(&mut txn, *at, *len),
                Edit::Insert { at, text: inserted } => text.insert(&mut txn, *at, inserted),
            }
        }
    })?;
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restored(from: &str, to: &str) -> String {
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT_NAME);
        text.insert(&mut doc.transact_mut(), 0, from);
        apply_edits(&doc, &diff(from, to)).unwrap();
        text.get_string(&doc.transact())
    }

    #[test]
    fn edits_turn_one_text_into_the_other() {
        for (from, to) in [
            ("", "hello"),
            ("hello", ""),
            ("hello world", "hello brave new world"),
            ("one\ntwo\nthree\n", "one\n2\nthree\nfour\n"),
            ("naïve café — ünïcödé 👩‍👩‍👧", "naive cafe — unicode 👩‍👩‍👦 ok"),
            ("abc", "xyz"),
            ("same", "same"),
        ] {
            assert_eq!(restored(from, to), to, "from {from:?}");
        }
    }

    #[test]
    fn text_both_hold_keeps_its_items_so_cursors_there_stay() {
        use yrs::{Assoc, IndexedSequence};
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT_NAME);
        let from = "first paragraph\n\nsecond paragraph, where Bo types\n\nthird\n";
        text.insert(&mut doc.transact_mut(), 0, from);
        // Bo's cursor, just before "types".
        let offset = from.find("types").unwrap() as u32;
        let cursor = text.sticky_index(&doc.transact_mut(), offset, Assoc::After).unwrap();
        let to = "FIRST paragraph, rewritten\n\nsecond paragraph, where Bo types\n\n";
        apply_edits(&doc, &diff(from, to)).unwrap();
        let txn = doc.transact();
        assert_eq!(text.get_string(&txn), to);
        let now_at = cursor.get_offset(&txn).unwrap().index;
        assert_eq!(&to[now_at as usize..now_at as usize + 5], "types");
    }

    #[test]
    fn the_text_of_a_state_is_read_back_exactly() {
        let doc = Doc::new();
        let text = doc.get_or_insert_text(TEXT_NAME);
        text.insert(&mut doc.transact_mut(), 0, "line one\r\n\ttabbed 😀\n");
        let state = capture(&doc, vec![]).state;
        assert_eq!(text_of_state(&state).unwrap(), "line one\r\n\ttabbed 😀\n");
        assert!(text_of_state(b"\xff\xff garbage").is_err());
    }

    #[test]
    fn names_are_read_from_the_user_field_of_awareness() {
        let state = serde_json::json!({"user": {"name": "  Ada ", "color": "#f00"}, "cursor": null});
        assert_eq!(awareness_name(&state).as_deref(), Some("Ada"));
        assert_eq!(awareness_name(&serde_json::json!({"user": {"name": ""}})), None);
        assert_eq!(awareness_name(&serde_json::json!({"name": "x"})), None);
        assert_eq!(awareness_name(&serde_json::json!({"user": {"name": 7}})), None);
    }

    #[tokio::test]
    async fn a_version_is_due_after_a_pause_and_at_least_every_interval() {
        let settings = VersionSettings {
            after_idle: Some(Duration::from_secs(60)),
            every: Some(Duration::from_secs(600)),
            retention: Retention { keep_all: Duration::ZERO, keep_hourly: Duration::ZERO },
        };
        let mut history = History::new(DocId::new(), Store::unconnected(), settings);
        assert_eq!(history.due_at(), None, "nothing changed");
        let start = Instant::now();
        history.changed(start);
        assert_eq!(history.due_at(), Some(start + Duration::from_secs(60)));
        // Changes every 30 s: the pause never comes, the interval does.
        for minute in 1..20 {
            history.changed(start + Duration::from_secs(30 * minute));
        }
        assert_eq!(history.due_at(), Some(start + Duration::from_secs(600)));
        history.reset();
        assert_eq!(history.due_at(), None);
        assert!(!history.is_dirty());

        let off = VersionSettings { after_idle: None, ..settings };
        let mut history = History::new(DocId::new(), Store::unconnected(), off);
        history.changed(start);
        assert_eq!(history.due_at(), None, "automatic versions are off");
    }

    #[tokio::test]
    async fn editors_are_the_names_of_who_edited_read_before_they_leave() {
        let settings = VersionSettings {
            after_idle: Some(Duration::from_secs(60)),
            every: None,
            retention: Retention { keep_all: Duration::ZERO, keep_hourly: Duration::ZERO },
        };
        let mut history = History::new(DocId::new(), Store::unconnected(), settings);
        let (ada, bo, cy) = (ConnId::next(), ConnId::next(), ConnId::next());
        let now = Instant::now();
        history.edited_by(ada, now);
        history.edited_by(bo, now);
        let name =
            |conn: ConnId| (conn == ada).then(|| "Ada".to_owned()).or((conn == bo).then(|| "Bo".to_owned()));
        history.leaving(&[bo], name);
        // Bo's awareness is gone now; his name was read as he left.
        let name = |conn: ConnId| (conn == ada).then(|| "Ada".to_owned());
        history.leaving(&[cy], name);
        history.edited_as(Some("Restorer"), now);
        assert_eq!(history.editors(name), ["Ada", "Bo", "Restorer"]);
    }
}
