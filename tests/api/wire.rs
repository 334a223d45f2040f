//! A WebSocket spoken byte by byte over TCP, for what no client library will send: frames
//! built by hand, handshakes with missing or doubled headers.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{PATIENCE, TestApp};

/// The upgrade headers of a valid handshake (the RFC's example key).
pub const UPGRADE_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// The `Sec-WebSocket-Accept` answer to the key in [`UPGRADE_HEADERS`].
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Frame opcodes, as the first header byte of a final frame (FIN set).
pub mod op {
    pub const CONTINUATION: u8 = 0x80;
    pub const TEXT: u8 = 0x81;
    pub const BINARY: u8 = 0x82;
    pub const CLOSE: u8 = 0x88;
    pub const PING: u8 = 0x89;
    pub const PONG: u8 = 0x8A;
    /// Clears FIN: a frame more of the message follows.
    pub const MORE: u8 = 0x7F;
}

pub struct RawSocket {
    tcp: TcpStream,
    buffer: Vec<u8>,
}

impl RawSocket {
    /// Sends `GET /ws/{id}` with a Host header and `headers`; the socket and the response head.
    pub async fn connect(app: &TestApp, id: &str, headers: &str) -> (Self, String) {
        let request = format!("GET /ws/{id} HTTP/1.1\r\nHost: {}\r\n{headers}\r\n", app.addr);
        Self::request(app, &request).await
    }

    /// Sends `request` as it is; the socket and the response head.
    pub async fn request(app: &TestApp, request: &str) -> (Self, String) {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk)).await.expect("an answer").unwrap();
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

    /// A WebSocket to `/ws/{id}`, upgraded.
    pub async fn open(app: &TestApp, id: &str) -> Self {
        let (socket, head) = Self::connect(app, id, UPGRADE_HEADERS).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("sec-websocket-accept: {}", ACCEPT.to_ascii_lowercase()))
        );
        socket
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// Sends, or says the server has closed the connection.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok()
    }

    /// Reads server frames until a close frame; its code (panics on an empty close).
    pub async fn close_code(&mut self) -> u16 {
        let payload = self.close_payload().await;
        assert!(payload.len() >= 2, "a close frame with a code: {payload:?}");
        u16::from_be_bytes([payload[0], payload[1]])
    }

    /// Reads server frames until a close frame; its payload.
    pub async fn close_payload(&mut self) -> Vec<u8> {
        self.next_frame_of(0x8).await.expect("a close frame")
    }

    /// Reads server frames until one with `opcode`; its payload (None if the stream ends).
    pub async fn next_frame_of(&mut self, opcode: u8) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some((op, payload, used)) = server_frame(&self.buffer) {
                self.buffer.drain(..used);
                if op == opcode {
                    return Some(payload);
                }
                continue;
            }
            if !self.read_more(deadline).await {
                return None;
            }
        }
    }

    /// Whether the server ends the TCP stream (after whatever frames it still sends).
    pub async fn ends(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.read_more(deadline).await {}
        true
    }

    /// Reads more bytes; false at the end of the stream (or a reset).
    async fn read_more(&mut self, deadline: tokio::time::Instant) -> bool {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await.expect("in time");
        match read {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

/// An unmasked server frame at the start of `buf`: opcode, payload, bytes used.
fn server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let [first, second, ..] = *buf else {
        return None;
    };
    assert_eq!(second & 0x80, 0, "server frames are not masked");
    assert_eq!(first & 0x70, 0, "server frames set no reserved bit");
    let (len, start) = match second & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        len => (len as usize, 2),
    };
    let payload = buf.get(start..start + len)?.to_vec();
    Some((first & 0x0F, payload, start + len))
}

/// A masked client frame; `first` is the first header byte (FIN, reserved bits, opcode).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![first];
    match payload.len() {
        len if len < 126 => frame.push(0x80 | len as u8),
        len if len <= 0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// A client close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    client_frame(op::CLOSE, &[&code.to_be_bytes()[..], reason].concat())
}
