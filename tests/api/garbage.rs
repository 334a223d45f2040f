//! Bad input on the socket, one case per test: the offending connection is closed with a
//! clear code (or the message ignored, where the protocol says so), while another client of
//! the same document keeps working and the document stays intact.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::sync::protocol::{MSG_AWARENESS, MSG_SYNC, MSG_SYNC_UPDATE};
use yrs::updates::encoder::Encode;

use crate::helpers::{Backend, Client, TestApp, raw_socket, read_until_closed};

/// A document with a bystander who has typed something, and a config tweak.
async fn setup(tweak: impl FnOnce(&mut tandem::config::Config)) -> (TestApp, String, Client) {
    let app = TestApp::spawn_with(Backend::Sqlite, tweak).await;
    let id = app.create_doc("target").await;
    let mut bystander = app.client(&id).await;
    bystander.synced().await;
    bystander.append("intact").await;
    bystander.settled().await;
    (app, id, bystander)
}

/// The bystander can still edit, and the document holds exactly what it should.
async fn still_serving(app: &TestApp, id: &str, mut bystander: Client) {
    bystander.append(" and alive").await;
    bystander.settled().await;
    let mut fresh = app.client(id).await;
    fresh.synced().await;
    assert_eq!(fresh.text(), "intact and alive");
    assert_eq!(app.text(id).await, "intact and alive");
}

async fn closed_with(app: &TestApp, id: &str, frames: Vec<WsMessage>, code: u16) {
    let mut socket = raw_socket(app, id).await;
    for frame in frames {
        if socket.send(frame).await.is_err() {
            break;
        }
    }
    let close = read_until_closed(&mut socket).await.expect("a close frame");
    assert_eq!(u16::from(close.code), code, "reason: {}", close.reason);
    assert!(!close.reason.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_closes_with_1003() {
    let (app, id, bystander) = setup(|_| {}).await;
    closed_with(&app, &id, vec![WsMessage::text("hello?")], 1003).await;
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_type_is_ignored() {
    let (app, id, bystander) = setup(|_| {}).await;
    let mut client = app.client(&id).await;
    client.synced().await;
    client.send_raw(vec![42, 1, 2, 3]).await;
    client.send_raw(vec![200, 1, 7]).await;
    // Still connected and heard: its next edit reaches everyone, itself included.
    client.append("!").await;
    client.settled().await;
    let mut bystander = bystander;
    bystander.wait_for_text("intact!").await;
    assert_eq!(app.text(&id).await, "intact!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_varint_closes_with_1007() {
    let (app, id, bystander) = setup(|_| {}).await;
    closed_with(&app, &id, vec![WsMessage::binary(vec![0x80])], 1007).await;
    closed_with(&app, &id, vec![WsMessage::binary(vec![MSG_SYNC, MSG_SYNC_UPDATE, 0xff])], 1007).await;
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_does_not_decode_closes_with_1007() {
    let (app, id, bystander) = setup(|_| {}).await;
    let garbage = vec![MSG_SYNC, MSG_SYNC_UPDATE, 5, 0xde, 0xad, 0xbe, 0xef, 0x01];
    closed_with(&app, &id, vec![WsMessage::binary(garbage)], 1007).await;
    let bad_awareness = vec![MSG_AWARENESS, 3, 1, 1, 1];
    closed_with(&app, &id, vec![WsMessage::binary(bad_awareness)], 1007).await;
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_size_limit_closes_with_1009() {
    let (app, id, bystander) = setup(|c| c.max_message_bytes = 4096).await;
    closed_with(&app, &id, vec![WsMessage::binary(vec![0u8; 64 * 1024])], 1009).await;
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_messages_closes_with_1008() {
    let (app, id, bystander) = setup(|c| c.max_messages_per_sec = 100).await;
    // Query-awareness messages: valid, cheap, and far more than 5 s of 100 per second.
    let flood = (0..5000).map(|_| WsMessage::binary(vec![3u8])).collect();
    closed_with(&app, &id, flood, 1008).await;
    still_serving(&app, &id, bystander).await;
}

/// A WebSocket spoken byte by byte over TCP, for what no client library will send.
struct RawSocket {
    tcp: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl RawSocket {
    async fn connect(app: &TestApp, id: &str, headers: &str) -> (Self, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let request = format!("GET /ws/{id} HTTP/1.1\r\nHost: {}\r\n{headers}\r\n", app.addr);
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed during the handshake");
            buffer.extend_from_slice(&chunk[..n]);
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end);
        (Self { tcp, buffer }, head)
    }

    async fn open(app: &TestApp, id: &str) -> Self {
        let (socket, head) = Self::connect(app, id, UPGRADE_HEADERS).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        socket
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// Reads server frames until a close frame; its code.
    async fn close_code(&mut self) -> u16 {
        self.next_frame_of(0x8).await.map(|p| u16::from_be_bytes([p[0], p[1]])).expect("a close frame")
    }

    /// Reads server frames until one with `opcode`; its payload (None if the stream ends).
    async fn next_frame_of(&mut self, opcode: u8) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
        loop {
            if let Some((op, payload, used)) = server_frame(&self.buffer) {
                self.buffer.drain(..used);
                if op == opcode {
                    return Some(payload);
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n =
                tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await.expect("in time").ok()?;
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

const UPGRADE_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// An unmasked server frame at the start of `buf`: opcode, payload, bytes used.
fn server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let [first, second, ..] = *buf else {
        return None;
    };
    assert_eq!(second & 0x80, 0, "server frames are not masked");
    let (len, start) = match second & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        len => (len as usize, 2),
    };
    let payload = buf.get(start..start + len)?.to_vec();
    Some((first & 0x0F, payload, start + len))
}

/// A masked client frame.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![first];
    match payload.len() {
        len if len < 126 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_with_a_ping_inside_is_assembled() {
    let (app, id, mut bystander) = setup(|_| {}).await;
    let mut raw = RawSocket::open(&app, &id).await;
    // An update appending "!" to "intact", as a y-websocket message in three fragments.
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("content");
    {
        use yrs::{ReadTxn, Text, Transact, Update, updates::decoder::Decode};
        let state = bystander.doc().transact().encode_state_as_update_v1(&Default::default());
        doc.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
        let before = doc.transact().state_vector();
        text.insert(&mut doc.transact_mut(), 6, "!");
        let update = doc.transact().encode_state_as_update_v1(&before);
        let message = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update));
        let bytes = yrs::updates::encoder::Encode::encode_v1(&message);
        let (a, rest) = bytes.split_at(2);
        let (b, c) = rest.split_at(rest.len() / 2);
        let mut stream = client_frame(0x02, a); // binary, not final
        stream.extend(client_frame(0x89, b"ping")); // a ping in between
        stream.extend(client_frame(0x00, b)); // continuation
        stream.extend(client_frame(0x80, c)); // final continuation
        raw.send(&stream).await;
    }
    assert_eq!(raw.next_frame_of(0xA).await.as_deref(), Some(&b"ping"[..]), "a pong with the ping's payload");
    bystander.wait_for_text("intact!").await;
    // A clean close is answered with the same code.
    raw.send(&client_frame(0x88, &1000u16.to_be_bytes())).await;
    assert_eq!(raw.close_code().await, 1000);
    assert_eq!(app.text(&id).await, "intact!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_breaking_the_websocket_protocol_close_with_1002() {
    let (app, id, bystander) = setup(|_| {}).await;
    let mut unmasked = client_frame(0x82, &[3]);
    unmasked[1] &= 0x7F;
    unmasked.truncate(2);
    unmasked.push(3);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", unmasked),
        ("reserved bits", client_frame(0xC2, &[3])),
        ("unknown opcode", client_frame(0x83, &[3])),
        ("continuation out of nowhere", client_frame(0x80, &[3])),
        ("fragmented ping", client_frame(0x09, b"x")),
    ];
    for (name, frame) in cases {
        let mut raw = RawSocket::open(&app, &id).await;
        raw.send(&frame).await;
        assert_eq!(raw.close_code().await, 1002, "{name}");
    }
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_are_refused_with_json() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("handshakes").await;
    let cases = [
        ("no key", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", "400"),
        (
            "old version",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "426",
        ),
        (
            "not an upgrade",
            "Connection: keep-alive\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "400",
        ),
    ];
    for (name, headers, status) in cases {
        let (_, head) = RawSocket::connect(&app, &id, headers).await;
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{name}: {head}");
        assert!(head.contains("application/json"), "{name}: {head}");
    }
}

/// An awareness message whose entries are `(client id, clock, JSON state)`.
fn awareness_message(entries: &[(u64, u32, String)]) -> Vec<u8> {
    use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
    let clients = entries
        .iter()
        .map(|(client, clock, json)| {
            (
                yrs::block::ClientID::new(*client),
                AwarenessUpdateEntry { clock: *clock, json: json.as_str().into() },
            )
        })
        .collect();
    yrs::sync::Message::Awareness(AwarenessUpdate { clients }).encode_v1()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awareness_state_over_64_kib_closes_with_1009() {
    let (app, id, bystander) = setup(|_| {}).await;
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(64 * 1024));
    let frame = awareness_message(&[(7, 1, huge)]);
    closed_with(&app, &id, vec![WsMessage::binary(frame)], 1009).await;
    still_serving(&app, &id, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcing_too_many_awareness_clients_closes_with_1008_and_removes_them() {
    let (app, id, mut bystander) = setup(|_| {}).await;
    let mut spammer = app.client(&id).await;
    spammer.synced().await;
    // Sixteen states from one connection are allowed (and reach the bystander)...
    let states: Vec<_> = (100..116).map(|c| (c, 1, format!("{{\"n\":{c}}}"))).collect();
    spammer.send_raw(awareness_message(&states)).await;
    bystander
        .wait_until("sixteen states arrived", |b| {
            (100..116).all(|c| b.awareness_of(yrs::block::ClientID::new(c)).is_some())
        })
        .await;
    // ...the seventeenth closes the connection, and every state it announced is removed.
    spammer.send_raw(awareness_message(&[(116, 1, "{}".into())])).await;
    let close = spammer.wait_closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008, "{}", close.reason);
    bystander
        .wait_until("the states are removed", |b| {
            (100..117).all(|c| b.awareness_of(yrs::block::ClientID::new(c)).is_none())
        })
        .await;
    still_serving(&app, &id, bystander).await;
}
