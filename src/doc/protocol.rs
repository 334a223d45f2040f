//! The y-websocket wire protocol, sans IO: bytes in, typed messages out; messages in,
//! frames out. No tokio here, so it is tested with plain in-memory documents.
//!
//! Framing follows y-protocols (`sync.js`, `awareness.js`) and y-websocket: a varuint
//! message type, then its payload, several messages possibly concatenated in one incoming
//! frame. The payloads are decoded and encoded with `yrs::sync` and `yrs::updates` types;
//! only the outer varints are read here, with lib0's reader, because we need each message's
//! exact byte range: an incoming update message is forwarded to every connection as the very
//! bytes that arrived (zero copies, zero re-encoding).

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use yrs::encoding::read::{Cursor, Read};

use super::untrusted::{AWARENESS_ENTRY_BYTES, SV_ENTRY_BYTES, UPDATE_CLIENT_BYTES};
use super::untrusted::{clocks_fit, count_fits, survives_reencoding};
use yrs::sync::protocol::{MSG_AUTH, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC};
use yrs::sync::protocol::{MSG_SYNC_STEP_1, MSG_SYNC_STEP_2, MSG_SYNC_UPDATE};
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{StateVector, Update};

/// The largest awareness state a client may publish (its JSON text). Real states (a name, a
/// colour, a cursor) take a few hundred bytes; the server keeps every state and sends it to
/// every newcomer, so a cap keeps one client from filling memory.
pub const MAX_AWARENESS_STATE_BYTES: usize = 64 * 1024;

/// A message from a client, checked and decoded at the edge (in the connection's task), so
/// the document actor only ever sees well-formed input.
#[derive(Debug)]
pub enum ClientMessage {
    /// Sync step 1: the client's state vector; answer with the update it lacks.
    SyncStep1(StateVector),
    /// Sync step 2 or an update: apply it, persist `raw`, broadcast `frame`.
    Update(IncomingUpdate),
    /// An awareness update: apply it, broadcast `frame`.
    Awareness(IncomingAwareness),
    /// Query awareness: answer with every known awareness state.
    QueryAwareness,
}

/// A non-empty document update from a client.
#[derive(Debug)]
pub struct IncomingUpdate {
    /// The decoded update, ready to apply.
    pub update: Update,
    /// The update bytes (Yjs v1 encoding), for the update log.
    pub raw: Bytes,
    /// `[sync, update, raw]`: the message to broadcast. For an incoming update message
    /// this is a slice of the incoming frame; for a step 2 it is encoded anew.
    pub frame: Bytes,
}

/// An awareness update from a client whose states are all valid JSON.
#[derive(Debug)]
pub struct IncomingAwareness {
    pub update: AwarenessUpdate,
    /// The awareness message exactly as it arrived, to broadcast.
    pub frame: Bytes,
}

/// Why an incoming frame was refused. Every variant closes the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("empty message")]
    Empty,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("update does not decode: {0}")]
    BadUpdate(String),
    #[error("awareness state is not valid JSON")]
    BadAwarenessJson,
    #[error("awareness state over {MAX_AWARENESS_STATE_BYTES} bytes")]
    AwarenessTooBig,
    #[error("more than {0} messages in one frame")]
    TooMany(usize),
}

/// Reads every message of one incoming binary frame.
///
/// Unknown message types are skipped with the rest of the frame (their length is unknown),
/// as the reference server does. An auth message from a client means nothing to a server
/// and is skipped the same way. Empty updates (a client's step 2 when it has nothing new)
/// are dropped here: they change nothing and need neither storing nor broadcasting.
///
/// A frame of more than `max_messages` messages is refused as soon as the next one starts
/// (the stock client sends one per frame): one frame must not make the server decode, and
/// hand the actor, millions of one-byte messages.
pub fn decode_frame(frame: &Bytes, max_messages: usize) -> Result<Vec<ClientMessage>, ProtocolError> {
    if frame.is_empty() {
        return Err(ProtocolError::Empty);
    }
    let mut messages = Vec::with_capacity(1);
    let mut cursor = Cursor::new(frame);
    while cursor.has_content() {
        if messages.len() >= max_messages {
            return Err(ProtocolError::TooMany(max_messages));
        }
        let start = cursor.next;
        let kind: u32 = cursor.read_var().map_err(malformed)?;
        match kind as u8 {
            _ if kind > u32::from(u8::MAX) => return skip_unknown(kind, messages),
            MSG_SYNC => {
                let sub: u32 = cursor.read_var().map_err(malformed)?;
                let payload = cursor.read_buf().map_err(malformed)?;
                let payload = frame.slice_ref(payload);
                match sub as u8 {
                    _ if sub > u32::from(u8::MAX) => return Err(unknown_sync(sub)),
                    MSG_SYNC_STEP_1 => {
                        if !count_fits(&payload, SV_ENTRY_BYTES) {
                            return Err(malformed("state vector longer than its bytes"));
                        }
                        let sv = StateVector::decode_v1(&payload).map_err(malformed)?;
                        messages.push(ClientMessage::SyncStep1(sv));
                    }
                    MSG_SYNC_STEP_2 => {
                        if let Some(update) = decode_update(&payload)? {
                            let frame = encode_update(&payload);
                            messages.push(ClientMessage::Update(IncomingUpdate {
                                update,
                                raw: payload,
                                frame,
                            }));
                        }
                    }
                    MSG_SYNC_UPDATE => {
                        if let Some(update) = decode_update(&payload)? {
                            let frame = frame.slice(start..cursor.next);
                            messages.push(ClientMessage::Update(IncomingUpdate {
                                update,
                                raw: payload,
                                frame,
                            }));
                        }
                    }
                    _ => return Err(unknown_sync(sub)),
                }
            }
            MSG_AWARENESS => {
                let payload = cursor.read_buf().map_err(malformed)?;
                if !count_fits(payload, AWARENESS_ENTRY_BYTES) {
                    return Err(malformed("more awareness states than its bytes hold"));
                }
                let update = AwarenessUpdate::decode_v1(payload).map_err(malformed)?;
                for entry in update.clients.values() {
                    if entry.json.len() > MAX_AWARENESS_STATE_BYTES {
                        return Err(ProtocolError::AwarenessTooBig);
                    }
                    if serde_json::from_str::<serde::de::IgnoredAny>(&entry.json).is_err() {
                        return Err(ProtocolError::BadAwarenessJson);
                    }
                }
                let frame = frame.slice(start..cursor.next);
                messages.push(ClientMessage::Awareness(IncomingAwareness { update, frame }));
            }
            MSG_QUERY_AWARENESS => messages.push(ClientMessage::QueryAwareness),
            MSG_AUTH => return Ok(messages),
            _ => return skip_unknown(kind, messages),
        }
    }
    Ok(messages)
}

fn skip_unknown(kind: u32, messages: Vec<ClientMessage>) -> Result<Vec<ClientMessage>, ProtocolError> {
    tracing::debug!(kind, "ignoring a message of unknown type and the rest of its frame");
    Ok(messages)
}

fn unknown_sync(sub: u32) -> ProtocolError {
    ProtocolError::Malformed(format!("unknown sync message type {sub}"))
}

fn malformed(err: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Malformed(err.to_string())
}

/// Decodes a Yjs v1 update; `None` when it carries nothing. yrs is not trusted to reject
/// every hostile input without panicking, so a panic counts as a decoding error.
fn decode_update(bytes: &[u8]) -> Result<Option<Update>, ProtocolError> {
    if !count_fits(bytes, UPDATE_CLIENT_BYTES) {
        return Err(ProtocolError::BadUpdate("more clients than its bytes hold".into()));
    }
    if !clocks_fit(bytes) {
        return Err(ProtocolError::BadUpdate("clocks past 2^32".into()));
    }
    let update = catch_unwind(AssertUnwindSafe(|| Update::decode_v1(bytes)))
        .map_err(|_| ProtocolError::BadUpdate("decoder panicked".into()))?
        .map_err(|e| ProtocolError::BadUpdate(e.to_string()))?;
    if update.is_empty() {
        return Ok(None);
    }
    if !survives_reencoding(&update, bytes) {
        return Err(ProtocolError::BadUpdate("yrs cannot read the update back once encoded".into()));
    }
    Ok(Some(update))
}

/// `[sync, step 1, state vector]`: what the server has, so the client sends what it lacks.
pub fn encode_step1(sv: &StateVector) -> Bytes {
    Message::Sync(SyncMessage::SyncStep1(sv.clone())).encode_v1().into()
}

/// `[sync, step 2, update]`: the answer to a client's step 1.
pub fn encode_step2(update: Vec<u8>) -> Bytes {
    Message::Sync(SyncMessage::SyncStep2(update)).encode_v1().into()
}

/// `[sync, update, update]`: how an applied update travels to every connection.
pub fn encode_update(update: &[u8]) -> Bytes {
    Message::Sync(SyncMessage::Update(update.to_vec())).encode_v1().into()
}

/// `[auth, permission denied, reason]`: y-protocols' answer to a message the client may not
/// send. The stock client logs it and carries on.
pub fn encode_permission_denied(reason: &str) -> Bytes {
    Message::Auth(Some(reason.to_owned())).encode_v1().into()
}

/// `[awareness, update]`.
pub fn encode_awareness(update: AwarenessUpdate) -> Bytes {
    Message::Awareness(update).encode_v1().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{Doc, GetString, ReadTxn, Text, Transact};

    fn edit(doc: &Doc, text: &str) -> Vec<u8> {
        let content = doc.get_or_insert_text("content");
        let before = doc.transact().state_vector();
        content.push(&mut doc.transact_mut(), text);
        doc.transact().encode_state_as_update_v1(&before)
    }

    fn update_message(update: &[u8]) -> Bytes {
        encode_update(update)
    }

    #[test]
    fn an_update_message_is_forwarded_as_the_bytes_that_arrived() {
        let update = edit(&Doc::new(), "hi");
        let frame = update_message(&update);
        let messages = decode_frame(&frame, usize::MAX).unwrap();
        let [ClientMessage::Update(incoming)] = messages.as_slice() else { panic!("{messages:?}") };
        assert_eq!(incoming.frame, frame);
        assert_eq!(incoming.raw.as_ref(), update.as_slice());
        assert!(!incoming.update.is_empty());
    }

    #[test]
    fn a_step2_is_broadcast_as_an_update() {
        let update = edit(&Doc::new(), "hi");
        let frame = encode_step2(update.clone());
        let messages = decode_frame(&frame, usize::MAX).unwrap();
        let [ClientMessage::Update(incoming)] = messages.as_slice() else { panic!("{messages:?}") };
        assert_eq!(incoming.frame, encode_update(&update));
    }

    #[test]
    fn several_messages_in_one_frame_are_all_read() {
        let doc = Doc::new();
        let mut frame = encode_step1(&doc.transact().state_vector()).to_vec();
        frame.extend_from_slice(&update_message(&edit(&doc, "a")));
        frame.push(MSG_QUERY_AWARENESS);
        let messages = decode_frame(&Bytes::from(frame), usize::MAX).unwrap();
        assert!(matches!(
            messages.as_slice(),
            [ClientMessage::SyncStep1(_), ClientMessage::Update(_), ClientMessage::QueryAwareness]
        ));
    }

    #[test]
    fn empty_updates_are_dropped() {
        let empty = Doc::new().transact().encode_state_as_update_v1(&StateVector::default());
        assert!(decode_frame(&encode_step2(empty), usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn unknown_message_types_are_skipped_with_the_rest_of_the_frame() {
        let messages = decode_frame(&Bytes::from_static(&[9, 1, 2, 3]), usize::MAX).unwrap();
        assert!(messages.is_empty());
        let mut frame = vec![MSG_QUERY_AWARENESS];
        frame.extend_from_slice(&[200, 1, 0xff]); // varint 200 is two bytes: 200, 1
        assert_eq!(decode_frame(&Bytes::from(frame), usize::MAX).unwrap().len(), 1);
    }

    #[test]
    fn garbage_is_refused() {
        let update = edit(&Doc::new(), "hello");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty frame", vec![]),
            ("truncated varint", vec![0x80]),
            ("sync without payload", vec![MSG_SYNC, MSG_SYNC_UPDATE]),
            ("unknown sync type", vec![MSG_SYNC, 7, 0]),
            ("length past the end", vec![MSG_SYNC, MSG_SYNC_UPDATE, 50, 1, 2]),
            ("update that does not decode", vec![MSG_SYNC, MSG_SYNC_UPDATE, 3, 0xff, 0xff, 0xff]),
            ("truncated update", update_message(&update[..update.len() - 2]).to_vec()),
            ("awareness with bad json", {
                let mut update = AwarenessUpdate { clients: Default::default() };
                update.clients.insert(
                    yrs::block::ClientID::new(1),
                    yrs::sync::awareness::AwarenessUpdateEntry { clock: 1, json: "{not json".into() },
                );
                encode_awareness(update).to_vec()
            }),
        ];
        for (name, frame) in cases {
            assert!(decode_frame(&Bytes::from(frame), usize::MAX).is_err(), "{name} was accepted");
        }
    }

    #[test]
    fn counts_larger_than_their_bytes_are_refused_before_decoding() {
        // Found by fuzzing: a 13-byte step 1 made yrs reserve 73 GB for its state vector.
        // Each of these claims 2^28 entries in a few bytes.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x01];
        let step1 = [&[MSG_SYNC, MSG_SYNC_STEP_1, 7][..], &huge, &[1, 1]].concat();
        let awareness = [&[MSG_AWARENESS, 8][..], &huge, &[1, 1, 1]].concat();
        let update = [&[MSG_SYNC, MSG_SYNC_UPDATE, 8][..], &huge, &[1, 1, 1]].concat();
        for (frame, expected) in [
            (step1, ProtocolError::Malformed("state vector longer than its bytes".into())),
            (awareness, ProtocolError::Malformed("more awareness states than its bytes hold".into())),
            (update, ProtocolError::BadUpdate("more clients than its bytes hold".into())),
        ] {
            assert_eq!(decode_frame(&Bytes::from(frame), usize::MAX).unwrap_err(), expected);
        }
        // The check counts the fewest bytes an entry can take: a real one passes it.
        let mut sv = StateVector::default();
        sv.set_max(yrs::block::ClientID::new(1), 1);
        assert!(matches!(
            decode_frame(&encode_step1(&sv), usize::MAX).unwrap().as_slice(),
            [ClientMessage::SyncStep1(_)]
        ));
    }

    #[test]
    fn an_update_yrs_cannot_read_back_is_refused() {
        // Found by fuzzing: each decodes and applies (waiting for a missing clock), after
        // which encoding the document's state panicked inside yrs. The first encodes into
        // bytes yrs cannot read, the second into another update.
        let unreadable: &[u8] = &[
            0x01, 0x01, 0x00, 0x01, 0x82, 0xd8, 0x8b, 0xbd, 0xdc, 0xed, 0xc5, 0xa8, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x09, 0x00, 0x04, 0x01, 0x07, 0x63, 0x6f, 0x6e, 0x00, 0x00, 0x02, 0x22, 0x01,
            0x01, 0x82,
        ];
        let unstable: &[u8] = &[
            0x01, 0x01, 0x82, 0xd8, 0x8b, 0xbd, 0x01, 0x00, 0x02, 0x22, 0x01, 0x00, 0x00, 0x00, 0x02, 0x22,
            0x01, 0x00, 0x00, 0xde, 0xfd, 0xff, 0x02, 0x00, 0x02, 0x1e, 0x01, 0x5c, 0xed, 0xc5, 0x09, 0x41,
            0x00, 0x5c,
        ];
        let refused = ProtocolError::BadUpdate("yrs cannot read the update back once encoded".into());
        for poison in [unreadable, unstable] {
            assert!(Update::decode_v1(poison).is_ok(), "yrs reads it");
            assert_eq!(decode_frame(&update_message(poison), usize::MAX).unwrap_err(), refused);
            assert_eq!(decode_frame(&encode_step2(poison.to_vec()), usize::MAX).unwrap_err(), refused);
        }
        // Real updates pass.
        let doc = Doc::new();
        edit(&doc, "hello");
        let text = doc.get_or_insert_text("content");
        let before = doc.transact().state_vector();
        text.remove_range(&mut doc.transact_mut(), 1, 2);
        let delete = doc.transact().encode_state_as_update_v1(&before);
        assert_eq!(decode_frame(&update_message(&delete), usize::MAX).unwrap().len(), 1);
    }

    #[test]
    fn an_update_whose_clocks_wrap_is_refused() {
        // Found by fuzzing: lengths that take a client's clock past u32::MAX wrap around in a
        // release build of yrs; applied, the overlapping blocks made yrs read freed memory.
        // Client 7 from clock 0: deleted items in the root type "", of the given lengths.
        let deleted = |lengths: &[&[u8]]| {
            let mut update = vec![1, lengths.len() as u8, 7, 0];
            for len in lengths {
                update.extend_from_slice(&[1, 1, 0]); // deleted content, parent named ""
                update.extend_from_slice(len);
            }
            update.push(0); // no deletions
            update
        };
        let u32_max: &[u8] = &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
        let refused = ProtocolError::BadUpdate("clocks past 2^32".into());
        let wrapping = deleted(&[u32_max, &[2]]);
        assert_eq!(decode_frame(&update_message(&wrapping), usize::MAX).unwrap_err(), refused);
        let wrapping = deleted(&[&[2], u32_max]);
        assert_eq!(decode_frame(&update_message(&wrapping), usize::MAX).unwrap_err(), refused);
        // Up to u32::MAX exactly, the clocks fit.
        assert!(decode_frame(&update_message(&deleted(&[u32_max])), usize::MAX).is_ok());
        assert!(decode_frame(&update_message(&deleted(&[&[2], &[3]])), usize::MAX).is_ok());
    }

    #[test]
    fn two_docs_sync_through_the_messages() {
        // What the actor does, without the actor: a server doc answers step 1 with step 2.
        let server = Doc::new();
        edit(&server, "from server");
        let client = Doc::new();
        let step1 = encode_step1(&client.transact().state_vector());
        let Some(ClientMessage::SyncStep1(sv)) = decode_frame(&step1, usize::MAX).unwrap().pop() else {
            panic!("not a step 1")
        };
        let reply = encode_step2(server.transact().encode_state_as_update_v1(&sv));
        let Some(ClientMessage::Update(incoming)) = decode_frame(&reply, usize::MAX).unwrap().pop() else {
            panic!("not an update")
        };
        client.transact_mut().apply_update(incoming.update).unwrap();
        let text = client.get_or_insert_text("content");
        assert_eq!(text.get_string(&client.transact()), "from server");
    }
}
