//! WebSocket (RFC 6455) frames for the server side, sans IO: reading client frames from bytes,
//! and frame headers for writing. The opening handshake is in `handshake.rs`.
//!
//! Why not a general WebSocket crate: an idle collaborator's connection should cost almost
//! nothing, and a keystroke should be copied as little as possible. Here a connection keeps
//! no buffer while it is idle (partial frames only, while they are partial), and outgoing
//! frames are written straight from the shared `Bytes` every connection of a document gets,
//! behind a header of at most ten bytes (see `ws.rs`). What the server needs of RFC 6455 is
//! small: no extensions, no subprotocols, binary messages; text is refused.
//!
//! The reader reports what arrived as a list of events, in order. A close frame or bytes
//! that break the protocol end the list: nothing after them is read, so what follows a
//! client's close cannot change the answer, and the first offending frame decides how the
//! connection ends however the bytes were split into reads.

use bytes::Bytes;

/// Frame opcodes (RFC 6455 section 5.2).
mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Control frames carry at most this much payload.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest frame header: 2 bytes, 8 bytes of length, 4 bytes of mask.
const MAX_HEADER: usize = 14;

/// Room reserved for the rest of an incomplete frame, at least.
const MIN_RESERVE: usize = 4096;

/// What a client sent, frame by frame, with fragmented binary messages assembled.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Binary(Bytes),
    /// A text message started (reported at its first frame): the y-websocket protocol has
    /// none. Its frames are checked like any other, and their payload dropped.
    Text,
    Ping(Bytes),
    Pong,
    /// The client is closing, with its close code if it gave one (always one a peer may
    /// send, see [`is_valid_close_code`]). Nothing after it is read.
    Close(Option<u16>),
    /// The bytes break the protocol here. Nothing after it is read.
    Invalid(FrameError),
}

/// Why the client's bytes are not acceptable; each maps to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Answered with 1002; the text says which rule was broken.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A close reason that is not UTF-8 (section 5.5.1): answered with 1007.
    #[error("close reason is not UTF-8")]
    CloseReasonNotUtf8,
    #[error("message too big")]
    TooBig,
}

/// Whether a peer may send `code` in a close frame (RFC 6455 section 7.4): the codes the RFC
/// defines for the wire (1004 is reserved; 1005, 1006 and 1015 are for reporting only), and
/// 3000-4999 for libraries and applications. 1012-1014 are registered with IANA since, but
/// not in the RFC; the Autobahn testsuite refuses them too.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// The kind of the message whose continuation frames are expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragmented {
    Binary,
    Text,
}

/// Reads client frames from the bytes of a socket, in whatever pieces they arrive.
#[derive(Debug)]
pub struct FrameReader {
    max_message: usize,
    /// The start of a frame whose end has not arrived yet. Empty between frames.
    partial: Vec<u8>,
    /// The payload so far of a fragmented binary message. Empty between messages.
    message: Vec<u8>,
    /// Inside a fragmented message (continuation frames expected).
    in_message: Option<Fragmented>,
    /// A close or an error was reported: the rest of the stream is ignored.
    ended: bool,
}

/// A frame header, parsed.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

impl FrameReader {
    pub fn new(max_message: usize) -> Self {
        Self { max_message, partial: Vec::new(), message: Vec::new(), in_message: None, ended: false }
    }

    /// True while a frame, or a fragmented message, has started and not ended.
    pub fn mid_frame(&self) -> bool {
        !self.partial.is_empty() || self.in_message.is_some()
    }

    /// Bytes held for frames or messages not complete yet.
    #[cfg(any(test, fuzzing))]
    pub fn buffered(&self) -> usize {
        self.partial.capacity() + self.message.capacity()
    }

    /// Takes the bytes just read and appends every complete event to `events`. Bytes of an
    /// incomplete frame are kept for the next call. After an event that ends the stream
    /// ([`Event::Close`], [`Event::Invalid`]) every byte is ignored.
    pub fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) {
        if self.ended {
            return;
        }
        let mut pending = std::mem::take(&mut self.partial);
        let joined = !pending.is_empty();
        if joined {
            pending.extend_from_slice(data);
        }
        let buf = if joined { &pending[..] } else { data };
        match self.parse(buf, events) {
            Err(err) => {
                events.push(Event::Invalid(err));
                self.end();
            }
            Ok(_) if self.ended => self.end(),
            // Still the one incomplete frame: keep the buffer it is in.
            Ok(0) if joined => self.partial = pending,
            // Keep only the rest, letting go of a buffer a large frame may have grown.
            Ok(used) => self.keep(&buf[used..]),
        }
    }

    /// Stops reading for good and lets go of every buffer.
    fn end(&mut self) {
        self.ended = true;
        self.partial = Vec::new();
        self.message = Vec::new();
        self.in_message = None;
    }

    /// Keeps the start of an incomplete frame, reserving room for more of it when its
    /// length is known (few allocations for a large frame, not one per read), but never
    /// much more than has arrived: a header alone does not get to claim memory.
    fn keep(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            return;
        }
        let room = match parse_header(rest) {
            Ok(Some(header)) => header.header_len.saturating_add(header.payload_len),
            _ => MAX_HEADER,
        };
        let room = room.min(rest.len().saturating_mul(2).max(MIN_RESERVE)).max(rest.len());
        self.partial.reserve_exact(room);
        self.partial.extend_from_slice(rest);
    }

    /// Parses complete frames from `buf` until it runs out or a close frame ends the stream;
    /// returns how many bytes they took.
    fn parse(&mut self, buf: &[u8], events: &mut Vec<Event>) -> Result<usize, FrameError> {
        let mut used = 0;
        while let Some(header) = parse_header(&buf[used..])? {
            self.check(&header)?;
            let start = used + header.header_len;
            let Some(end) = start.checked_add(header.payload_len).filter(|end| *end <= buf.len()) else {
                break;
            };
            self.frame(&header, &buf[start..end], events)?;
            used = end;
            if self.ended {
                break;
            }
        }
        Ok(used)
    }

    /// Refuses a frame as soon as its header shows it is unacceptable.
    fn check(&self, header: &Header) -> Result<(), FrameError> {
        match header.opcode {
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !header.fin {
                    return Err(FrameError::Protocol("fragmented control frame"));
                }
                if header.payload_len > MAX_CONTROL_PAYLOAD {
                    return Err(FrameError::Protocol("control frame too long"));
                }
            }
            opcode::BINARY | opcode::TEXT if self.in_message.is_some() => {
                return Err(FrameError::Protocol("new message inside a fragmented one"));
            }
            opcode::CONTINUATION if self.in_message.is_none() => {
                return Err(FrameError::Protocol("continuation without a message"));
            }
            opcode::BINARY | opcode::TEXT | opcode::CONTINUATION => {
                if self.message.len().saturating_add(header.payload_len) > self.max_message {
                    return Err(FrameError::TooBig);
                }
            }
            _ => return Err(FrameError::Protocol("unknown opcode")),
        }
        Ok(())
    }

    fn frame(&mut self, header: &Header, masked: &[u8], events: &mut Vec<Event>) -> Result<(), FrameError> {
        match header.opcode {
            opcode::BINARY if header.fin => events.push(Event::Binary(unmask(masked, header.mask).into())),
            opcode::BINARY => {
                self.in_message = Some(Fragmented::Binary);
                self.message = unmask(masked, header.mask);
            }
            opcode::TEXT => {
                self.in_message = (!header.fin).then_some(Fragmented::Text);
                events.push(Event::Text);
            }
            opcode::CONTINUATION => self.continuation(header, masked, events),
            opcode::PING => events.push(Event::Ping(unmask(masked, header.mask).into())),
            opcode::PONG => events.push(Event::Pong),
            opcode::CLOSE => {
                events.push(Event::Close(close_code(&unmask(masked, header.mask))?));
                self.ended = true;
            }
            _ => unreachable!("checked before"),
        }
        Ok(())
    }

    /// The next part of a fragmented message: kept (binary) or dropped (text).
    fn continuation(&mut self, header: &Header, masked: &[u8], events: &mut Vec<Event>) {
        if self.in_message == Some(Fragmented::Binary) {
            let offset = self.message.len();
            self.message.extend_from_slice(masked);
            unmask_in_place(&mut self.message[offset..], header.mask);
            if header.fin {
                events.push(Event::Binary(std::mem::take(&mut self.message).into()));
            }
        }
        if header.fin {
            self.in_message = None;
        }
    }
}

/// The code of a close frame's payload (section 5.5.1): none, or a code a peer may send,
/// followed by a UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    let [first, second, reason @ ..] = payload else {
        return match payload {
            [] => Ok(None),
            _ => Err(FrameError::Protocol("close frame with a one-byte payload")),
        };
    };
    let code = u16::from_be_bytes([*first, *second]);
    if !is_valid_close_code(code) {
        return Err(FrameError::Protocol("close code not allowed"));
    }
    std::str::from_utf8(reason).map_err(|_| FrameError::CloseReasonNotUtf8)?;
    Ok(Some(code))
}

/// Parses a frame header; `None` when `buf` does not hold all of it yet.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set (no extension was agreed)"));
    }
    if second & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (payload_len, len_bytes) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("eight bytes")), 8),
            None => return Ok(None),
        },
        len => (u64::from(len), 0),
    };
    let header_len = 2 + len_bytes + 4;
    let Some(mask) = buf.get(2 + len_bytes..header_len) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: first & 0x80 != 0,
        opcode: first & 0x0F,
        mask: mask.try_into().expect("four bytes"),
        header_len,
        // Lengths past usize are too big for any limit; saturating keeps the check simple.
        payload_len: usize::try_from(payload_len).unwrap_or(usize::MAX),
    }))
}

fn unmask(masked: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut data = masked.to_vec();
    unmask_in_place(&mut data, mask);
    data
}

/// XORs the payload with the mask (section 5.3), eight bytes at a time.
fn unmask_in_place(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("eight bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// The header of an unmasked, final server frame with `len` bytes of payload. Returns the
/// buffer and how many of its bytes are the header.
pub fn frame_header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = 0x80 | opcode;
    if len < 126 {
        header[1] = len as u8;
        (header, 2)
    } else if let Ok(len) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&len.to_be_bytes());
        (header, 4)
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 10)
    }
}

pub const BINARY: u8 = opcode::BINARY;
pub const CLOSE: u8 = opcode::CLOSE;
pub const PING: u8 = opcode::PING;
pub const PONG: u8 = opcode::PONG;

/// The payload of a close frame: the code, then the reason.
pub fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    // A close frame is a control frame: its payload is at most 125 bytes.
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame, masked as clients must.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
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

    fn read_all(reader: &mut FrameReader, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        reader.feed(bytes, &mut events);
        events
    }

    /// The error a stream ends with, if it ends with one.
    fn error_of(bytes: &[u8]) -> Option<FrameError> {
        match read_all(&mut FrameReader::new(1024), bytes).pop() {
            Some(Event::Invalid(err)) => Some(err),
            _ => None,
        }
    }

    fn close(payload: &[u8]) -> Vec<u8> {
        client_frame(true, opcode::CLOSE, payload)
    }

    #[test]
    fn frames_of_every_length_encoding_are_read() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut reader = FrameReader::new(1 << 20);
            let events = read_all(&mut reader, &client_frame(true, opcode::BINARY, &payload));
            assert_eq!(events, [Event::Binary(payload.into())], "length {len}");
            assert_eq!(reader.buffered(), 0);
        }
    }

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let mut stream = client_frame(true, opcode::BINARY, b"first");
        stream.extend(client_frame(true, opcode::PING, b"are you there"));
        stream.extend(client_frame(true, opcode::BINARY, &[7u8; 300]));
        for split in 1..stream.len() {
            let mut reader = FrameReader::new(1024);
            let mut events = read_all(&mut reader, &stream[..split]);
            events.extend(read_all(&mut reader, &stream[split..]));
            assert_eq!(
                events,
                [
                    Event::Binary(Bytes::from_static(b"first")),
                    Event::Ping(Bytes::from_static(b"are you there")),
                    Event::Binary(vec![7u8; 300].into()),
                ],
                "split at {split}"
            );
            assert_eq!(reader.buffered(), 0, "nothing kept after a complete frame");
        }
        // One byte at a time.
        let mut reader = FrameReader::new(1024);
        let events: Vec<Event> = stream.iter().flat_map(|b| read_all(&mut reader, &[*b])).collect();
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn fragmented_messages_are_assembled_around_control_frames() {
        let mut stream = client_frame(false, opcode::BINARY, b"frag");
        stream.extend(client_frame(true, opcode::PING, b""));
        stream.extend(client_frame(false, opcode::CONTINUATION, b"men"));
        stream.extend(client_frame(true, opcode::CONTINUATION, b"ted"));
        let mut reader = FrameReader::new(1024);
        let events = read_all(&mut reader, &stream);
        assert_eq!(events, [Event::Ping(Bytes::new()), Event::Binary(Bytes::from_static(b"fragmented"))]);
    }

    #[test]
    fn text_and_pong_are_reported() {
        let mut stream = client_frame(true, opcode::TEXT, b"hi");
        stream.extend(client_frame(true, opcode::PONG, b"x"));
        let events = read_all(&mut FrameReader::new(1024), &stream);
        assert_eq!(events, [Event::Text, Event::Pong]);
    }

    #[test]
    fn a_fragmented_text_message_is_one_text_event_and_framed_like_any_other() {
        let mut stream = client_frame(false, opcode::TEXT, b"he");
        stream.extend(client_frame(true, opcode::PING, b"p"));
        stream.extend(client_frame(true, opcode::CONTINUATION, b"llo"));
        stream.extend(client_frame(true, opcode::BINARY, b"after"));
        let mut reader = FrameReader::new(1024);
        let events = read_all(&mut reader, &stream);
        assert_eq!(
            events,
            [Event::Text, Event::Ping(Bytes::from_static(b"p")), Event::Binary(Bytes::from_static(b"after"))]
        );
        assert_eq!(reader.buffered(), 0, "text is never kept");
        // The text frame comes first, however the bytes arrive: it is what decides.
        let mut stream = client_frame(false, opcode::TEXT, b"he");
        stream.extend(client_frame(true, opcode::CONTINUATION, b"llo"));
        assert_eq!(read_all(&mut FrameReader::new(1024), &stream).first(), Some(&Event::Text));
    }

    #[test]
    fn valid_close_codes_are_reported_with_their_reason_checked() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            let mut payload = u16::to_be_bytes(code).to_vec();
            payload.extend_from_slice("au revoir, ça va".as_bytes());
            assert_eq!(read_all(&mut FrameReader::new(1024), &close(&payload)), [Event::Close(Some(code))]);
        }
        assert_eq!(read_all(&mut FrameReader::new(1024), &close(b"")), [Event::Close(None)]);
        let mut reason = 1000u16.to_be_bytes().to_vec();
        reason.extend_from_slice(&[0xCE, 0xBA, 0xE1, 0xBD]); // "κ" and half of "ό"
        assert_eq!(error_of(&close(&reason)), Some(FrameError::CloseReasonNotUtf8));
        reason.truncate(2);
        reason.extend_from_slice(&[0xED, 0xA0, 0x80]); // a UTF-16 surrogate, not UTF-8
        assert_eq!(error_of(&close(&reason)), Some(FrameError::CloseReasonNotUtf8));
    }

    #[test]
    fn close_codes_a_peer_may_not_send_are_protocol_errors() {
        let not_allowed = FrameError::Protocol("close code not allowed");
        for code in [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert_eq!(error_of(&close(&u16::to_be_bytes(code))), Some(not_allowed), "{code}");
        }
        let one_byte = FrameError::Protocol("close frame with a one-byte payload");
        assert_eq!(error_of(&close(&[3])), Some(one_byte));
    }

    #[test]
    fn nothing_after_a_close_frame_is_read() {
        let mut stream = close(&1000u16.to_be_bytes());
        stream.extend_from_slice(&[0xFF; 20]); // garbage
        for split in 0..=stream.len() {
            let mut reader = FrameReader::new(1024);
            let mut events = read_all(&mut reader, &stream[..split]);
            events.extend(read_all(&mut reader, &stream[split..]));
            assert_eq!(events, [Event::Close(Some(1000))], "split at {split}");
            assert_eq!(reader.buffered(), 0);
        }
        let mut stream = close(b"");
        stream.extend(client_frame(true, opcode::BINARY, b"late"));
        assert_eq!(read_all(&mut FrameReader::new(1024), &stream), [Event::Close(None)]);
    }

    #[test]
    fn events_before_an_error_are_kept_in_order_and_nothing_after_it() {
        let mut stream = client_frame(true, opcode::BINARY, b"ok");
        stream.extend(client_frame(true, 0x3, b""));
        stream.extend(client_frame(true, opcode::BINARY, b"never"));
        let mut reader = FrameReader::new(1024);
        assert_eq!(
            read_all(&mut reader, &stream),
            [
                Event::Binary(Bytes::from_static(b"ok")),
                Event::Invalid(FrameError::Protocol("unknown opcode"))
            ]
        );
        assert_eq!(reader.buffered(), 0);
        assert_eq!(read_all(&mut reader, &client_frame(true, opcode::BINARY, b"later")), []);
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut unmasked = client_frame(true, opcode::BINARY, b"x");
        unmasked[1] &= 0x7F;
        let mut reserved = client_frame(true, opcode::BINARY, b"x");
        reserved[0] |= 0x40;
        let cases: Vec<(&str, Vec<u8>, FrameError)> = vec![
            ("unmasked", unmasked, FrameError::Protocol("client frames must be masked")),
            ("reserved bits", reserved, FrameError::Protocol("reserved bits set (no extension was agreed)")),
            ("unknown opcode", client_frame(true, 0x3, b""), FrameError::Protocol("unknown opcode")),
            ("unknown control opcode", client_frame(true, 0xB, b""), FrameError::Protocol("unknown opcode")),
            (
                "long ping",
                client_frame(true, opcode::PING, &[0; 126]),
                FrameError::Protocol("control frame too long"),
            ),
            (
                "fragmented ping",
                client_frame(false, opcode::PING, b""),
                FrameError::Protocol("fragmented control frame"),
            ),
            (
                "stray continuation",
                client_frame(true, opcode::CONTINUATION, b"x"),
                FrameError::Protocol("continuation without a message"),
            ),
            ("too big", client_frame(true, opcode::BINARY, &[0; 2000]), FrameError::TooBig),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(error_of(&bytes), Some(expected), "{name}");
        }
        // A too-big frame is refused from its header alone, before its payload arrives.
        let huge = client_frame(true, opcode::BINARY, &[0; 70_000]);
        assert_eq!(error_of(&huge[..14]), Some(FrameError::TooBig));
        // So is a fragmented message that grows past the limit.
        let mut parts = client_frame(false, opcode::BINARY, &[0; 600]);
        parts.extend(client_frame(true, opcode::CONTINUATION, &[0; 600]));
        assert_eq!(error_of(&parts), Some(FrameError::TooBig));
        let mut nested = client_frame(false, opcode::BINARY, b"a");
        nested.extend(client_frame(true, opcode::BINARY, b"b"));
        assert!(error_of(&nested).is_some());
        let mut nested_text = client_frame(false, opcode::BINARY, b"a");
        nested_text.extend(client_frame(true, opcode::TEXT, b"b"));
        assert!(error_of(&nested_text).is_some());
    }

    #[test]
    fn server_headers_use_the_shortest_length() {
        assert_eq!(frame_header(BINARY, 5).0[..2], [0x82, 5]);
        let (header, len) = frame_header(BINARY, 300);
        assert_eq!(&header[..len], &[0x82, 126, 1, 44]);
        let (header, len) = frame_header(BINARY, 70_000);
        assert_eq!(&header[..len], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let payload = close_payload(1001, &long);
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert_eq!(&payload[..2], &1001u16.to_be_bytes());
    }
}
