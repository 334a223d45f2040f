//! A property: however three clients interleave edits (inserts and deletes anywhere) with
//! dropped connections, offline edits and reconnects, through the running server, they all
//! end with the same text, and so does the server's `GET /api/docs/{id}/text`.
//!
//! Nothing here sleeps: each step waits for a state the protocol promises (synced after a
//! reconnect, an edit echoed back), and the end waits until every client holds the text that
//! merging all three documents gives.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use crate::helpers::{Backend, Client, TestApp};

/// Cases per run: each drives three clients through up to `MAX_STEPS` steps.
const CASES: u32 = 24;
const MAX_STEPS: usize = 32;

#[derive(Debug, Clone)]
enum Step {
    /// Insert `text` at `at` (taken modulo the length the client sees).
    Insert { client: usize, at: u16, text: String },
    /// Delete up to `len` characters from `at` (modulo the length).
    Delete { client: usize, at: u16, len: u8 },
    /// Drop the socket without a close frame, keeping the document: later edits are offline.
    Drop { client: usize },
    /// Connect again with the document kept.
    Reconnect { client: usize },
    /// Read until the server has echoed the client's own edits (taking in others' on the way).
    Settle { client: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let client = 0..3usize;
    let text =
        proptest::collection::vec(b'a'..=b'z', 1..5).prop_map(|b| String::from_utf8(b).expect("ascii"));
    prop_oneof![
        4 => (client.clone(), any::<u16>(), text).prop_map(|(client, at, text)| Step::Insert { client, at, text }),
        2 => (client.clone(), any::<u16>(), 1..4u8).prop_map(|(client, at, len)| Step::Delete { client, at, len }),
        1 => client.clone().prop_map(|client| Step::Drop { client }),
        1 => client.clone().prop_map(|client| Step::Reconnect { client }),
        1 => client.prop_map(|client| Step::Settle { client }),
    ]
}

/// A client, connected or not; its document survives either way.
enum Peer {
    Online(Box<Client>),
    /// Offline with its document, and its own clock when it left (edits after it are new).
    Offline(Doc, u32),
}

impl Peer {
    fn doc(&self) -> &Doc {
        match self {
            Self::Online(client) => client.doc(),
            Self::Offline(doc, _) => doc,
        }
    }

    /// Applies an edit locally and, when connected, sends it as a provider does.
    async fn edit(&mut self, edit: impl FnOnce(&Doc, &yrs::TextRef, u32)) {
        let doc = self.doc().clone();
        let text = doc.get_or_insert_text("content");
        let before = doc.transact().state_vector();
        let len = text.len(&doc.transact());
        edit(&doc, &text, len);
        let update = doc.transact().encode_state_as_update_v1(&before);
        if let Self::Online(client) = self {
            client.send_message(Message::Sync(SyncMessage::Update(update))).await;
        }
    }

    fn drop_connection(self) -> Self {
        match self {
            Self::Online(client) => {
                let clock = own_clock(client.doc());
                Self::Offline((*client).into_doc(), clock)
            }
            offline => offline,
        }
    }

    async fn reconnect(self, url: &str) -> Self {
        let Self::Offline(doc, left_at) = self else {
            return self;
        };
        let mut client = Client::connect_with(url, doc).await;
        // Synced means the server's step 1 was answered too: the offline edits are on their way.
        client.synced().await;
        if own_clock(client.doc()) > left_at {
            client.settled().await;
        } else {
            // Nothing new to echo: what it sent before leaving the server has, or receives in
            // this connection's step 2.
            client.echoed_clock = left_at;
        }
        Self::Online(Box::new(client))
    }
}

fn own_clock(doc: &Doc) -> u32 {
    doc.transact().state_vector().get(&doc.client_id())
}

fn text_of(doc: &Doc) -> String {
    doc.get_or_insert_text("content").get_string(&doc.transact())
}

/// The text all three documents merge into: what everyone must end with.
fn merged_text(peers: &[Peer]) -> String {
    let merged = Doc::new();
    for peer in peers {
        let state = peer.doc().transact().encode_state_as_update_v1(&StateVector::default());
        merged
            .transact_mut()
            .apply_update(Update::decode_v1(&state).expect("state decodes"))
            .expect("applies");
    }
    text_of(&merged)
}

async fn run_case(app: &TestApp, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let id = app.create_doc("convergence").await;
    let url = app.ws_url(&id);
    let mut peers = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(&url).await;
        client.synced().await;
        peers.push(Peer::Online(Box::new(client)));
    }
    for step in steps {
        match step {
            Step::Insert { client, at, text } => {
                peers[client]
                    .edit(|doc, t, len| t.insert(&mut doc.transact_mut(), u32::from(at) % (len + 1), &text))
                    .await
            }
            Step::Delete { client, at, len: n } => {
                peers[client]
                    .edit(|doc, t, len| {
                        if len > 0 {
                            let at = u32::from(at) % len;
                            t.remove_range(&mut doc.transact_mut(), at, u32::from(n).min(len - at));
                        }
                    })
                    .await
            }
            Step::Drop { client } => {
                let peer = peers.remove(client).drop_connection();
                peers.insert(client, peer);
            }
            Step::Reconnect { client } => {
                let peer = peers.remove(client).reconnect(&url).await;
                peers.insert(client, peer);
            }
            Step::Settle { client } => {
                if let Peer::Online(client) = &mut peers[client] {
                    client.settled().await;
                }
            }
        }
    }
    for i in 0..peers.len() {
        let peer = peers.remove(i).reconnect(&url).await;
        peers.insert(i, peer);
    }
    let expected = merged_text(&peers);
    for peer in &mut peers {
        let Peer::Online(client) = peer else { unreachable!("all reconnected") };
        client.wait_for_text(&expected).await;
    }
    prop_assert_eq!(app.text(&id).await, expected);
    Ok(())
}

#[test]
fn edits_and_reconnects_from_three_clients_converge() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = runtime.block_on(TestApp::spawn(Backend::Sqlite));
    let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let steps = proptest::collection::vec(step(), 1..MAX_STEPS);
    let result = runner.run(&steps, |steps| runtime.block_on(run_case(&app, steps)));
    if let Err(err) = result {
        panic!("{err}");
    }
}
