//! Encoding and decoding the y-websocket messages a server handles most: a one-character update, sync step 1,
//! and an awareness update, through `yrs::sync::Message`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tandem_bench::client::decode_frame;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, ReadTxn, Text, Transact};

/// A one-character insert typed at the end of a 1,000-character paragraph: the most common message of all.
fn one_char_update() -> Vec<u8> {
    let doc = Doc::with_client_id(123_456_789);
    let text = doc.get_or_insert_text("content");
    text.insert(&mut doc.transact_mut(), 0, &"lorem ipsum ".repeat(84)[..1000]);
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 1000, "x");
    txn.encode_update_v1()
}

/// Sync step 1 of a document several people have edited.
fn step1() -> Message {
    let doc = Doc::new();
    for client in 1..=8u64 {
        let other = Doc::with_client_id(client * 1_000_003);
        let text = other.get_or_insert_text("content");
        text.insert(&mut other.transact_mut(), 0, "hello");
        let update = other.transact().encode_state_as_update_v1(&Default::default());
        doc.transact_mut().apply_update(yrs::Update::decode_v1(&update).expect("valid")).expect("applies");
    }
    Message::Sync(SyncMessage::SyncStep1(doc.transact().state_vector()))
}

/// One browser's presence: name, colour and a cursor, as the editor announces it.
fn awareness() -> Message {
    let json = r##"{"user":{"name":"Ada","color":"#30bced"},"cursor":{"anchor":{"type":null,"tname":"content","item":{"client":123456789,"clock":1000},"assoc":0},"head":{"type":null,"tname":"content","item":{"client":123456789,"clock":1000},"assoc":0}}}"##;
    let entry = AwarenessUpdateEntry { clock: 42, json: json.into() };
    Message::Awareness(AwarenessUpdate {
        clients: [(ClientID::new(123_456_789), entry)].into_iter().collect(),
    })
}

fn protocol_benches(c: &mut Criterion) {
    let cases = [
        ("update_one_char", Message::Sync(SyncMessage::Update(one_char_update()))),
        ("step1", step1()),
        ("awareness", awareness()),
    ];
    let mut group = c.benchmark_group("protocol");
    for (name, message) in cases {
        let bytes = message.encode_v1();
        group.bench_function(format!("encode/{name}"), |b| b.iter(|| black_box(&message).encode_v1()));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| Message::decode_v1(black_box(&bytes)).expect("decodes"))
        });
        group.bench_function(format!("decode_frame/{name}"), |b| {
            b.iter(|| decode_frame(black_box(&bytes)).expect("decodes"))
        });
    }
    group.finish();
}

criterion_group!(benches, protocol_benches);
criterion_main!(benches);
