//! What the fuzz targets share: the server's sans-IO modules, and a builder of client frames.
//!
//! The modules are compiled from the server's own source files (`#[path]`), not through a
//! dependency on the `tandem` crate: they use nothing else of the server, and compiling the
//! whole server (axum, sqlx, SQLite...) with fuzzing instrumentation would take minutes of
//! every CI run for code no target reaches. That they build here alone is also the check
//! that they stay free of IO.

#[path = "../../src/http/handshake.rs"]
pub mod handshake;
#[path = "../../src/doc/protocol.rs"]
pub mod protocol;
#[path = "../../src/doc/untrusted.rs"]
pub mod untrusted;
#[path = "../../src/http/websocket.rs"]
pub mod websocket;

/// Frame opcodes, for building streams.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The largest message the targets let the reader take: small, so that size limits are hit.
pub const MAX_MESSAGE: usize = 1024;

/// A client frame: `first` is the first header byte (FIN, RSV, opcode), the payload is masked
/// with `mask`, and the length takes the shortest encoding.
pub fn client_frame(first: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
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

/// Turns fuzz input into a stream of client frames that are mostly well formed: each frame
/// is a spec byte (FIN, opcode, and a rare reserved bit or missing mask), a length byte, then
/// that much payload from the input.
pub fn frames_from_specs(mut input: &[u8]) -> Vec<u8> {
    const OPCODES: [u8; 8] = [
        opcode::BINARY,
        opcode::CONTINUATION,
        opcode::BINARY,
        opcode::PING,
        opcode::PONG,
        opcode::CLOSE,
        opcode::TEXT,
        0x3, // reserved
    ];
    let mut stream = Vec::new();
    while let [spec, len, rest @ ..] = input {
        let opcode = OPCODES[usize::from(spec & 0x07)];
        let fin = if spec & 0x08 == 0 { 0x80 } else { 0 };
        let rsv = if spec & 0xF0 == 0xF0 { 0x40 } else { 0 };
        // The length byte is scaled so that some frames pass the size limit.
        let mask = [spec ^ 0x5A, *len, 0xA5, 0x3C];
        let len = usize::from(*len) * if spec & 0x30 == 0x30 { 8 } else { 1 };
        let (payload, tail) = rest.split_at(len.min(rest.len()));
        let mut frame = client_frame(fin | rsv | opcode, mask, payload);
        if spec & 0xF0 == 0xE0 {
            frame[1] &= 0x7F; // unmasked
        }
        stream.extend_from_slice(&frame);
        input = tail;
    }
    stream
}
