//! The frame reader gives the same events, and the same error, however the byte stream is cut
//! into reads; it holds no more memory than its limit allows, and none once the stream ended.
//!
//! Input: four bytes that seed the cut, then the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_fuzz::MAX_MESSAGE;
use tandem_fuzz::websocket::{Event, FrameReader};

/// The most a reader may hold: an incomplete frame in a buffer grown by doubling, and a
/// fragmented message as large as the limit in another.
const MAX_BUFFERED: usize = 2 * (MAX_MESSAGE + 14) + 4096 + 2 * MAX_MESSAGE;

fuzz_target!(|data: &[u8]| {
    let Some((seed, stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let mut whole = Vec::new();
    let mut reader = FrameReader::new(MAX_MESSAGE);
    reader.feed(stream, &mut whole);
    check_memory(&reader, &whole);

    let mut chunked = Vec::new();
    let mut reader = FrameReader::new(MAX_MESSAGE);
    let mut cuts = Cuts(u32::from_le_bytes(*seed) | 1);
    let mut rest = stream;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(cuts.next_len().min(rest.len()));
        reader.feed(chunk, &mut chunked);
        check_memory(&reader, &chunked);
        rest = tail;
    }
    assert_eq!(whole, chunked, "the cut changed what was read");
});

fn check_memory(reader: &FrameReader, events: &[Event]) {
    let held = reader.buffered();
    assert!(held <= MAX_BUFFERED, "{held} bytes held");
    if matches!(events.last(), Some(Event::Close(_) | Event::Invalid(_))) {
        assert_eq!(held, 0, "a reader that ended holds nothing");
    }
}

/// Chunk lengths from a xorshift generator: mostly short (down to one byte), sometimes long.
struct Cuts(u32);

impl Cuts {
    fn next_len(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        let n = self.0 as usize;
        if n.is_multiple_of(4) { 1 + n % 4096 } else { 1 + n % 16 }
    }
}
