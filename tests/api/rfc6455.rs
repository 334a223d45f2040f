//! RFC 6455, rule by rule, against the running server over raw TCP sockets. The groups follow
//! the Autobahn testsuite's (framing, pings and pongs, reserved bits, opcodes, fragmentation,
//! UTF-8, close handling, limits), after the opening handshake, which Autobahn leaves out.
//!
//! Where the Autobahn testsuite expects an echo, the server's y-websocket protocol gives
//! something as visible: an update message sent in the frames under test reaches another
//! client of the document (the bystander) and the stored text.

use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Text, Transact, Update};

use crate::helpers::{Backend, Client, TestApp, setup, still_serving};
use crate::wire::{RawSocket, UPGRADE_HEADERS, client_frame, close_frame, op};

/// A y-websocket update message appending `chunk` to what `bystander` has, from a writer of
/// its own whose client id is fixed per bystander (so that message sizes are predictable).
fn append_message(bystander: &Client, chunk: &str) -> Vec<u8> {
    let writer = bystander.client_id().get() ^ 1;
    let doc = yrs::Doc::with_client_id(writer);
    let text = doc.get_or_insert_text("content");
    let state = bystander.doc().transact().encode_state_as_update_v1(&Default::default());
    doc.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
    let before = doc.transact().state_vector();
    let len = text.len(&doc.transact());
    text.insert(&mut doc.transact_mut(), len, chunk);
    let update = doc.transact().encode_state_as_update_v1(&before);
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

/// Opens a raw socket, sends `bytes` in one write, and returns the server's close code.
async fn close_code_for(app: &TestApp, id: &str, bytes: &[u8]) -> u16 {
    let mut raw = RawSocket::open(app, id).await;
    raw.send(bytes).await;
    raw.close_code().await
}

mod handshake {
    use super::*;

    /// The status line and head of the answer to an upgrade of `doc` with `headers`.
    async fn answer(headers: &str) -> String {
        let app = TestApp::spawn(Backend::Sqlite).await;
        let id = app.create_doc("handshakes").await;
        RawSocket::connect(&app, &id, headers).await.1
    }

    fn assert_refused(head: &str, status: &str) {
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
        assert!(head.contains("application/json"), "a JSON error body: {head}");
    }

    const KEY_LINE: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_that_are_not_handshakes_get_400_in_json() {
        let no_key = format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n");
        assert_refused(&answer(&no_key).await, "400");
        let no_upgrade = format!("Connection: keep-alive\r\nSec-WebSocket-Version: 13\r\n{KEY_LINE}");
        assert_refused(&answer(&no_upgrade).await, "400");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_or_missing_version_gets_426_naming_version_13() {
        for version in
            ["Sec-WebSocket-Version: 8\r\n", "", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n"]
        {
            let head = answer(&format!("{UPGRADE}{version}{KEY_LINE}")).await;
            assert_refused(&head, "426");
            assert!(
                head.to_ascii_lowercase().contains("sec-websocket-version: 13\r\n"),
                "{version:?}: {head}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_key_must_be_the_base64_of_16_bytes() {
        for key in ["AAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA=", "not base64, not at all!!", "x"] {
            let head =
                answer(&format!("{UPGRADE}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n")).await;
            assert_refused(&head, "400");
        }
        let head = answer(&format!(
            "{UPGRADE}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
        ))
        .await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_key_gets_400() {
        let other = "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n";
        assert_refused(
            &answer(&format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n{KEY_LINE}{other}")).await,
            "400",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_without_host_gets_400() {
        let app = TestApp::spawn(Backend::Sqlite).await;
        let id = app.create_doc("no host").await;
        let (_, head) =
            RawSocket::request(&app, &format!("GET /ws/{id} HTTP/1.1\r\n{UPGRADE_HEADERS}\r\n")).await;
        assert_refused(&head, "400");
    }
}

mod framing {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_in_each_length_encoding_are_read() {
        let (app, id, mut bystander) = setup(|_| {}).await;
        let mut raw = RawSocket::open(&app, &id).await;
        // 7-bit, 16-bit and 64-bit payload lengths.
        let mut expected = bystander.text();
        for (letter, len) in [('a', 10), ('b', 300), ('c', 70_000)] {
            let chunk = letter.to_string().repeat(len);
            raw.send(&client_frame(op::BINARY, &append_message(&bystander, &chunk))).await;
            expected.push_str(&chunk);
            bystander.wait_for_text(&expected).await;
        }
        assert_eq!(app.text(&id).await, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frame_written_one_byte_at_a_time_is_read() {
        let (app, id, mut bystander) = setup(|_| {}).await;
        let mut raw = RawSocket::open(&app, &id).await;
        for byte in client_frame(op::BINARY, &append_message(&bystander, "!")) {
            raw.send(&[byte]).await;
        }
        bystander.wait_for_text("intact!").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unmasked_frame_closes_with_1002() {
        let (app, id, bystander) = setup(|_| {}).await;
        assert_eq!(close_code_for(&app, &id, &[op::BINARY, 1, 3]).await, 1002);
        still_serving(&app, &id, bystander).await;
    }
}

mod pings {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ping_is_answered_with_a_pong_carrying_its_payload() {
        let (app, id, _bystander) = setup(|_| {}).await;
        let mut raw = RawSocket::open(&app, &id).await;
        let binary: Vec<u8> = (0..125u8).map(|i| i.wrapping_mul(37) | 0x80).collect();
        for payload in [&b""[..], b"hello", &binary] {
            raw.send(&client_frame(op::PING, payload)).await;
            assert_eq!(raw.next_frame_of(0xA).await.as_deref(), Some(payload));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_of_a_burst_of_pings_is_answered() {
        let (app, id, _bystander) = setup(|_| {}).await;
        let mut raw = RawSocket::open(&app, &id).await;
        let burst: Vec<u8> = (0..10u8).flat_map(|i| client_frame(op::PING, &[i])).collect();
        raw.send(&burst).await;
        // A server may answer only the latest of several pings (section 5.5.3).
        loop {
            let pong = raw.next_frame_of(0xA).await.expect("pongs");
            if pong == [9] {
                break;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unsolicited_pong_is_ignored() {
        let (app, id, mut bystander) = setup(|_| {}).await;
        let mut raw = RawSocket::open(&app, &id).await;
        let mut stream = client_frame(op::PONG, b"unasked");
        stream.extend(client_frame(op::BINARY, &append_message(&bystander, "!")));
        raw.send(&stream).await;
        bystander.wait_for_text("intact!").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ping_over_125_bytes_closes_with_1002() {
        let (app, id, bystander) = setup(|_| {}).await;
        assert_eq!(close_code_for(&app, &id, &client_frame(op::PING, &[b'p'; 126])).await, 1002);
        still_serving(&app, &id, bystander).await;
    }
}

mod reserved_bits {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_reserved_bit_closes_with_1002_on_any_frame() {
        let (app, id, bystander) = setup(|_| {}).await;
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            for (first, payload) in [(op::BINARY, &[3u8][..]), (op::PING, b"p"), (op::CLOSE, &[0x03, 0xE8])] {
                let code = close_code_for(&app, &id, &client_frame(first | rsv, payload)).await;
                assert_eq!(code, 1002, "reserved bits {rsv:#x} on {first:#x}");
            }
        }
        still_serving(&app, &id, bystander).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_before_the_bad_frame_is_still_applied() {
        let (app, id, mut bystander) = setup(|_| {}).await;
        let mut stream = client_frame(op::BINARY, &append_message(&bystander, "!"));
        stream.extend(client_frame(op::BINARY | 0x40, &[3]));
        stream.extend(client_frame(op::PING, b"never answered"));
        assert_eq!(close_code_for(&app, &id, &stream).await, 1002);
        bystander.wait_for_text("intact!").await;
    }
}

mod opcodes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reserved_opcodes_close_with_1002() {
        let (app, id, bystander) = setup(|_| {}).await;
        for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            for payload in [&b""[..], b"payload"] {
                let code = close_code_for(&app, &id, &client_frame(0x80 | opcode, payload)).await;
                assert_eq!(code, 1002, "opcode {opcode:#x}");
            }
        }
        still_serving(&app, &id, bystander).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_before_a_reserved_opcode_is_still_applied() {
        let (app, id, mut bystander) = setup(|_| {}).await;
        let mut stream = client_frame(op::BINARY, &append_message(&bystander, "?"));
        stream.extend(client_frame(0x85, b""));
        assert_eq!(close_code_for(&app, &id, &stream).await, 1002);
        bystander.wait_for_text("intact?").await;
    }
}

mod fragmentation {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fragmented_message_with_a_ping_inside_is_assembled() {
        let (app, id, mut bystander) = setup(|_| {}).await;
        let mut raw = RawSocket::open(&app, &id).await;
        let message = append_message(&bystander, "!");
        let (a, rest) = message.split_at(2);
        let (b, c) = rest.split_at(rest.len() / 2);
        let mut stream = client_frame(op::BINARY & op::MORE, a);
        stream.extend(client_frame(op::PING, b"ping"));
        stream.extend(client_frame(op::CONTINUATION & op::MORE, b));
        stream.extend(client_frame(op::CONTINUATION, c));
        raw.send(&stream).await;
        assert_eq!(
            raw.next_frame_of(0xA).await.as_deref(),
            Some(&b"ping"[..]),
            "a pong with the ping's payload"
        );
        bystander.wait_for_text("intact!").await;
        assert_eq!(app.text(&id).await, "intact!");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_byte_fragments_are_assembled() {
        let (app, id, mut bystander) = setup(|_| {}).await;
        let mut raw = RawSocket::open(&app, &id).await;
        let message = append_message(&bystander, "!");
        let last = message.len() - 1;
        let stream: Vec<u8> = message
            .iter()
            .enumerate()
            .flat_map(|(i, byte)| {
                let kind = if i == 0 { op::BINARY } else { op::CONTINUATION };
                client_frame(if i == last { kind } else { kind & op::MORE }, &[*byte])
            })
            .collect();
        raw.send(&stream).await;
        bystander.wait_for_text("intact!").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fragmented_control_frames_close_with_1002() {
        let (app, id, bystander) = setup(|_| {}).await;
        for (first, payload) in [(op::PING, &b"p"[..]), (op::PONG, b"p"), (op::CLOSE, &[0x03, 0xE8])] {
            let code = close_code_for(&app, &id, &client_frame(first & op::MORE, payload)).await;
            assert_eq!(code, 1002, "{first:#x}");
        }
        still_serving(&app, &id, bystander).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_continuation_without_a_message_closes_with_1002() {
        let (app, id, bystander) = setup(|_| {}).await;
        for first in [op::CONTINUATION, op::CONTINUATION & op::MORE] {
            assert_eq!(close_code_for(&app, &id, &client_frame(first, &[3])).await, 1002);
        }
        still_serving(&app, &id, bystander).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_message_inside_a_fragmented_one_closes_with_1002() {
        let (app, id, bystander) = setup(|_| {}).await;
        let mut stream = client_frame(op::BINARY & op::MORE, &[0]);
        stream.extend(client_frame(op::BINARY, &[3]));
        assert_eq!(close_code_for(&app, &id, &stream).await, 1002);
        still_serving(&app, &id, bystander).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fragmented_text_message_closes_with_1003() {
        let (app, id, bystander) = setup(|_| {}).await;
        let mut stream = client_frame(op::TEXT & op::MORE, b"frag");
        stream.extend(client_frame(op::CONTINUATION, b"mented"));
        assert_eq!(close_code_for(&app, &id, &stream).await, 1003);
        still_serving(&app, &id, bystander).await;
    }
}

mod utf8 {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn text_closes_with_1003_whatever_its_encoding() {
        let (app, id, bystander) = setup(|_| {}).await;
        for text in ["κόσμε".as_bytes(), b"", &[0xCE, 0xBA, 0xE1, 0xBD], &[0xED, 0xA0, 0x80]] {
            assert_eq!(close_code_for(&app, &id, &client_frame(op::TEXT, text)).await, 1003, "{text:?}");
        }
        still_serving(&app, &id, bystander).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_reason_in_utf8_is_accepted() {
        let (app, id, _bystander) = setup(|_| {}).await;
        assert_eq!(close_code_for(&app, &id, &close_frame(1000, "κόσμε".as_bytes())).await, 1000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_reason_that_is_not_utf8_closes_with_1007() {
        let (app, id, bystander) = setup(|_| {}).await;
        // Half a character, a UTF-16 surrogate, a byte that is never UTF-8.
        for reason in [&[0xCE, 0xBA, 0xE1, 0xBD][..], &[0xED, 0xA0, 0x80], b"ok \xFF"] {
            assert_eq!(close_code_for(&app, &id, &close_frame(1000, reason)).await, 1007, "{reason:?}");
        }
        still_serving(&app, &id, bystander).await;
    }
}

mod close {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_without_a_code_is_answered_with_an_empty_close_and_the_end() {
        let (app, id, _bystander) = setup(|_| {}).await;
        let mut raw = RawSocket::open(&app, &id).await;
        raw.send(&client_frame(op::CLOSE, b"")).await;
        assert_eq!(raw.close_payload().await, b"");
        assert!(raw.ends().await, "the server ends the TCP stream");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn valid_close_codes_are_echoed() {
        let (app, id, _bystander) = setup(|_| {}).await;
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            let mut raw = RawSocket::open(&app, &id).await;
            raw.send(&close_frame(code, b"bye")).await;
            assert_eq!(raw.close_code().await, code);
            assert!(raw.ends().await);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_codes_a_client_may_not_send_close_with_1002() {
        let (app, id, bystander) = setup(|_| {}).await;
        for code in [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert_eq!(close_code_for(&app, &id, &close_frame(code, b"")).await, 1002, "code {code}");
        }
        still_serving(&app, &id, bystander).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_one_byte_close_payload_closes_with_1002() {
        let (app, id, _bystander) = setup(|_| {}).await;
        assert_eq!(close_code_for(&app, &id, &client_frame(op::CLOSE, &[3])).await, 1002);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_payload_may_be_125_bytes_not_126() {
        let (app, id, _bystander) = setup(|_| {}).await;
        assert_eq!(close_code_for(&app, &id, &close_frame(1000, &[b'r'; 123])).await, 1000);
        assert_eq!(close_code_for(&app, &id, &close_frame(1000, &[b'r'; 124])).await, 1002);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_after_a_close_frame_is_read() {
        let (app, id, bystander) = setup(|_| {}).await;
        // A frame breaking the protocol after the close does not change the answer...
        let mut stream = close_frame(1000, b"bye");
        stream.extend(client_frame(op::BINARY | 0x40, &[3]));
        assert_eq!(close_code_for(&app, &id, &stream).await, 1000);
        // ...and a message after the close is not applied.
        let mut stream = close_frame(1000, b"bye");
        stream.extend(client_frame(op::BINARY, &append_message(&bystander, " and late")));
        assert_eq!(close_code_for(&app, &id, &stream).await, 1000);
        still_serving(&app, &id, bystander).await;
    }
}

mod limits {
    use super::*;

    const LIMIT: usize = 4096;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frame_over_the_limit_is_refused_from_its_header_alone() {
        let (app, id, bystander) = setup(|c| c.max_message_bytes = LIMIT).await;
        let frame = client_frame(op::BINARY, &vec![0u8; 60 * 1024]);
        // The 16-bit length and the mask only: the payload is never sent.
        assert_eq!(close_code_for(&app, &id, &frame[..8]).await, 1009);
        still_serving(&app, &id, bystander).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_64_bit_length_with_the_high_bit_set_closes_with_1009() {
        let (app, id, _bystander) = setup(|_| {}).await;
        let mut header = vec![op::BINARY, 0x80 | 127];
        header.extend_from_slice(&(u64::MAX - 1).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(close_code_for(&app, &id, &header).await, 1009);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fragmented_message_over_the_limit_closes_with_1009() {
        let (app, id, bystander) = setup(|c| c.max_message_bytes = LIMIT).await;
        let mut stream = client_frame(op::BINARY & op::MORE, &[0; LIMIT / 2 + 1]);
        stream.extend(client_frame(op::CONTINUATION, &[0; LIMIT / 2]));
        assert_eq!(close_code_for(&app, &id, &stream).await, 1009);
        still_serving(&app, &id, bystander).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_of_exactly_the_limit_is_read() {
        let (app, id, mut bystander) = setup(|c| c.max_message_bytes = LIMIT).await;
        // The longest appended run of 'x' whose update message fits the limit exactly.
        let (chunk, message) = (3900..LIMIT)
            .map(|n| {
                let chunk = "x".repeat(n);
                let message = append_message(&bystander, &chunk);
                (chunk, message)
            })
            .find(|(_, message)| message.len() == LIMIT)
            .expect("a message of exactly the limit");
        let mut raw = RawSocket::open(&app, &id).await;
        let (a, b) = message.split_at(1000);
        let mut stream = client_frame(op::BINARY & op::MORE, a);
        stream.extend(client_frame(op::CONTINUATION, b));
        raw.send(&stream).await;
        bystander.wait_for_text(&format!("intact{chunk}")).await;
    }
}
