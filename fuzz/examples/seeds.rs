//! Writes the seed inputs of every target into `corpus/<target>/seed-*`: real frames, real
//! y-websocket messages made with yrs, real upgrade requests. Run from `fuzz/`:
//! `cargo run --example seeds`.

use std::fs;
use std::path::Path;

use tandem_fuzz::{client_frame, opcode};
use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Array, Doc, Map, ReadTxn, StateVector, Text, Transact, WriteTxn, XmlFragment};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn main() {
    let streams = frame_streams();
    for (i, (name, stream)) in streams.iter().enumerate() {
        let seed = (i as u32).wrapping_mul(0x9E37_79B9).to_le_bytes();
        write("frames_chunked", name, [&seed[..], stream].concat());
        write("frames_tungstenite", name, [&[0u8][..], stream].concat());
    }
    for (name, specs) in frame_specs() {
        write("frames_tungstenite", name, [&[1u8][..], &specs].concat());
    }
    for (name, frame) in message_frames() {
        write("messages", &format!("{name}-one-by-one"), [&[0u8][..], &frame].concat());
        write("messages", &format!("{name}-together"), [&[1u8][..], &frame].concat());
    }
    for (name, request) in requests() {
        write("handshake", name, request.into_bytes());
    }
}

fn write(target: &str, name: &str, bytes: Vec<u8>) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus folder");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
}

fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(first, MASK, payload)
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    frame(0x80 | opcode::CLOSE, &[&code.to_be_bytes()[..], reason].concat())
}

fn frame_streams() -> Vec<(&'static str, Vec<u8>)> {
    let update = Message::Sync(SyncMessage::Update(edit(&Doc::new(), "hello"))).encode_v1();
    let mut long_length = vec![0x80 | opcode::BINARY, 0x80 | 127];
    long_length.extend_from_slice(&10u64.to_be_bytes());
    long_length.extend_from_slice(&MASK);
    long_length.extend_from_slice(&[1; 10]);
    vec![
        (
            "binary-ping-close",
            [
                frame(0x80 | opcode::BINARY, b"hello"),
                frame(0x80 | opcode::PING, b"are you there"),
                frame(0x80 | opcode::BINARY, &[7; 300]),
                frame(0x80 | opcode::PONG, b""),
                close(1000, "au revoir".as_bytes()),
            ]
            .concat(),
        ),
        (
            "fragmented",
            [
                frame(opcode::BINARY, b"frag"),
                frame(0x80 | opcode::PING, b""),
                frame(opcode::CONTINUATION, b"men"),
                frame(0x80 | opcode::CONTINUATION, b"ted"),
                frame(0x80 | opcode::BINARY, &update),
            ]
            .concat(),
        ),
        ("text", [frame(opcode::TEXT, b"he"), frame(0x80 | opcode::CONTINUATION, b"llo")].concat()),
        ("close-then-garbage", [close(1005, b""), vec![0xFF; 8]].concat()),
        ("close-reason-not-utf8", close(1000, &[0xCE, 0xBA, 0xE1, 0xBD])),
        ("close-4999", [frame(0x80 | opcode::BINARY, b""), close(4999, b"ours")].concat()),
        ("long-length", long_length),
        ("too-big", frame(0x80 | opcode::BINARY, &[0; 2000])),
        ("reserved-bits", [frame(0x80 | opcode::BINARY, b"ok"), frame(0xC2, b"x")].concat()),
        ("unknown-opcode", frame(0x83, b"")),
        ("fragmented-ping", frame(opcode::PING, b"x")),
    ]
}

/// Inputs for `frames_from_specs`: (spec, length, payload) triples.
fn frame_specs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("specs-binary-ping", vec![0x00, 3, b'a', b'b', b'c', 0x03, 1, b'p', 0x05, 2, 0x03, 0xE8]),
        ("specs-fragments", vec![0x08, 2, 1, 2, 0x09, 1, 3, 0x01, 1, 4, 0x04, 0]),
        ("specs-big", [vec![0x30, 200], vec![9; 1600]].concat()),
        ("specs-text", vec![0x0E, 2, b'h', b'i', 0x01, 1, b'!']),
    ]
}

fn edit(doc: &Doc, chunk: &str) -> Vec<u8> {
    let text = doc.get_or_insert_text("content");
    let before = doc.transact().state_vector();
    let len = text.len(&doc.transact());
    text.insert(&mut doc.transact_mut(), len, chunk);
    doc.transact().encode_state_as_update_v1(&before)
}

fn message_frames() -> Vec<(&'static str, Vec<u8>)> {
    let doc = Doc::new();
    let first = edit(&doc, "hello world");
    let second = edit(&doc, ", again");
    {
        let text = doc.get_or_insert_text("content");
        text.remove_range(&mut doc.transact_mut(), 2, 3);
    }
    {
        let mut txn = doc.transact_mut();
        let map = txn.get_or_insert_map("meta");
        map.insert(&mut txn, "title", "seed");
        let array = txn.get_or_insert_array("list");
        array.push_back(&mut txn, 42);
        let xml = txn.get_or_insert_xml_fragment("xml");
        xml.push_back(&mut txn, yrs::XmlTextPrelim::new("x"));
    }
    let full = doc.transact().encode_state_as_update_v1(&StateVector::default());
    let sv = doc.transact().state_vector();
    let sync = |m: SyncMessage| Message::Sync(m).encode_v1();
    let mut awareness = Awareness::new(Doc::new());
    awareness.set_local_state(serde_json::json!({"user": {"name": "Ada", "color": "#f00"}})).unwrap();
    let announce = Message::Awareness(awareness.update().unwrap()).encode_v1();
    awareness.clean_local_state();
    let leave = Message::Awareness(awareness.update().unwrap()).encode_v1();
    vec![
        ("step1-empty", sync(SyncMessage::SyncStep1(StateVector::default()))),
        ("step1", sync(SyncMessage::SyncStep1(sv))),
        ("step2-full", sync(SyncMessage::SyncStep2(full.clone()))),
        (
            "updates",
            [sync(SyncMessage::Update(first.clone())), sync(SyncMessage::Update(second.clone()))].concat(),
        ),
        (
            "update-out-of-order",
            [sync(SyncMessage::Update(second)), sync(SyncMessage::Update(first))].concat(),
        ),
        ("awareness", [announce.clone(), leave].concat()),
        (
            "everything",
            [
                sync(SyncMessage::SyncStep1(StateVector::default())),
                sync(SyncMessage::SyncStep2(full)),
                announce,
                vec![3],
            ]
            .concat(),
        ),
        ("unknown-type", vec![42, 1, 2, 3]),
    ]
}

fn requests() -> Vec<(&'static str, String)> {
    let request = |lines: &[&str]| {
        format!("GET /ws/0b5fbc04-7d4e-4c1e-9e8f-1d2c3b4a5f60 HTTP/1.1\r\n{}\r\n", lines.concat())
    };
    let host = "Host: 127.0.0.1:8080\r\n";
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let version = "Sec-WebSocket-Version: 13\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    vec![
        ("valid", request(&[host, upgrade, version, key])),
        (
            "browser",
            request(&[
                host,
                "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nOrigin: http://127.0.0.1:8080\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
                version,
                key,
            ]),
        ),
        ("no-host", request(&[upgrade, version, key])),
        ("two-keys", request(&[host, upgrade, version, key, key])),
        ("version-8", request(&[host, upgrade, "Sec-WebSocket-Version: 8\r\n", key])),
        ("short-key", request(&[host, upgrade, version, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n"])),
    ]
}
