//! Differential: our frame reader against tungstenite's (a server-role `WebSocket` over an
//! in-memory stream). Same messages, same payloads, and an error where it errs.
//!
//! Input: a mode byte, then either the raw stream (even mode) or frame specs that
//! `frames_from_specs` turns into a mostly valid stream (odd mode).
//!
//! Documented differences, which the comparison allows for:
//! - Text: we report a text message at its first frame and the server closes with 1003;
//!   tungstenite reads it whole. Nothing after our `Text` is compared.
//! - We refuse a frame from its header (reserved bits, opcode, mask, fragmentation, size);
//!   tungstenite from the whole frame. When our error is on a frame tungstenite still waits
//!   for, the frame is completed with zeros and tungstenite must then fail on it.
//! - A close code a peer may not send is an error for us (answered 1002); tungstenite reads
//!   it as a close with code 1002, and it takes 1012 and 1013, which we (as the Autobahn
//!   testsuite) refuse.

#![no_main]

use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;
use tandem_fuzz::websocket::{Event, FrameError, FrameReader};
use tandem_fuzz::{MAX_MESSAGE, frames_from_specs};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error, Message};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let stream = if mode & 1 == 0 { rest.to_vec() } else { frames_from_specs(rest) };
    let mut ours = Vec::new();
    FrameReader::new(MAX_MESSAGE).feed(&stream, &mut ours);
    let mut theirs = Reference::new(stream);
    for event in ours {
        match event {
            Event::Binary(payload) => theirs.expect(&Message::Binary(payload)),
            Event::Ping(payload) => theirs.expect(&Message::Ping(payload)),
            Event::Pong => match theirs.read() {
                Ok(Message::Pong(_)) => {}
                other => panic!("we read a pong, tungstenite {other:?}"),
            },
            Event::Close(code) => {
                return match theirs.read() {
                    Ok(Message::Close(frame)) => assert_eq!(frame.map(|f| u16::from(f.code)), code),
                    other => panic!("we read a close ({code:?}), tungstenite {other:?}"),
                };
            }
            Event::Text => return,
            Event::Invalid(err) => return theirs.expect_refusal(err),
        }
    }
    match theirs.read() {
        Err(Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("we wait for more bytes, tungstenite {other:?}"),
    }
});

struct Reference(WebSocket<Input>);

impl Reference {
    fn new(stream: Vec<u8>) -> Self {
        let config =
            WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
        Self(WebSocket::from_raw_socket(Input { data: stream, read: 0 }, Role::Server, Some(config)))
    }

    fn read(&mut self) -> Result<Message, Error> {
        self.0.read()
    }

    fn expect(&mut self, message: &Message) {
        match self.read() {
            Ok(theirs) if theirs == *message => {}
            other => panic!("we read {message:?}, tungstenite {other:?}"),
        }
    }

    fn expect_refusal(&mut self, err: FrameError) {
        let theirs = match self.read() {
            Err(Error::Io(io)) if io.kind() == io::ErrorKind::WouldBlock => {
                // Refused from its header by us: complete the frame for tungstenite.
                self.0.get_mut().data.extend(std::iter::repeat_n(0, MAX_MESSAGE + 14));
                self.read()
            }
            other => other,
        };
        match theirs {
            Err(Error::Io(io)) if io.kind() == io::ErrorKind::WouldBlock => {
                panic!("we refused ({err}) a frame tungstenite still waits for")
            }
            Err(_) => {}
            Ok(Message::Close(Some(frame)))
                if err == FrameError::Protocol("close code not allowed")
                    && matches!(u16::from(frame.code), 1002 | 1012 | 1013) => {}
            Ok(other) => panic!("we refused ({err}) what tungstenite read as {other:?}"),
        }
    }
}

/// The client's bytes, then "no more for now"; whatever tungstenite writes is dropped.
struct Input {
    data: Vec<u8>,
    read: usize,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.data[self.read..];
        if rest.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        Ok(n)
    }
}

impl Write for Input {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
