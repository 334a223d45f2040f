//! What yrs must not be handed: client bytes that decode, but that yrs (0.28) cannot take
//! safely. Each check was found by fuzzing (`fuzz/`, target `messages`), each costs far less
//! than applying the update, and each refuses only input that no Yjs encoder writes.

use std::panic::{AssertUnwindSafe, catch_unwind};

use yrs::block::ItemContent;
use yrs::block::{BLOCK_GC_REF_NUMBER, BLOCK_SKIP_REF_NUMBER, HAS_ORIGIN, HAS_PARENT_SUB, HAS_RIGHT_ORIGIN};
use yrs::encoding::read::{Cursor, Error, Read};
use yrs::updates::decoder::{Decode, Decoder, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Update};

/// The fewest bytes one entry takes: a state vector's (client, clock), an awareness
/// update's (client, clock, state), an update's (block count, client, clock): a varint each.
pub const SV_ENTRY_BYTES: usize = 2;
pub const AWARENESS_ENTRY_BYTES: usize = 3;
pub const UPDATE_CLIENT_BYTES: usize = 3;

/// Whether the count these bytes start with (a varint) leaves room for that many entries of
/// at least `entry_bytes` each. yrs reserves room for the declared count before it reads a
/// single entry, so without this check a dozen bytes could make it reserve gigabytes (a
/// 13-byte step 1 did). An input that fails it would fail to decode anyway.
pub fn count_fits(bytes: &[u8], entry_bytes: usize) -> bool {
    let mut cursor = Cursor::new(bytes);
    let Ok(count) = cursor.read_var::<u64>() else {
        return true; // the decoder reports the broken varint itself
    };
    let room = (bytes.len() - cursor.next) / entry_bytes;
    count <= room as u64
}

/// Whether every block of a v1 update ends at a clock that fits in 32 bits. yrs adds block
/// lengths to clocks unchecked, so in a release build a long block wraps the clock around
/// and the blocks after it overlap those before; applying them made yrs read freed memory.
/// Walks the update as `Update::decode` does, with checked additions. An update that does
/// not decode passes: the decoder refuses it next.
pub fn clocks_fit(bytes: &[u8]) -> bool {
    catch_unwind(AssertUnwindSafe(|| walk_clocks(bytes).unwrap_or(true))).unwrap_or(true)
}

fn walk_clocks(bytes: &[u8]) -> Result<bool, Error> {
    let mut decoder = DecoderV1::new(Cursor::new(bytes));
    let clients: u32 = decoder.read_var()?;
    for _ in 0..clients {
        let blocks: u32 = decoder.read_var()?;
        decoder.read_client()?;
        let mut clock: u32 = decoder.read_var()?;
        for _ in 0..blocks {
            let Some(next) = clock.checked_add(block_len(&mut decoder)?) else {
                return Ok(false);
            };
            clock = next;
        }
    }
    Ok(true)
}

/// Reads one block (as `Update::decode_block` does) and returns the clocks it takes.
fn block_len(decoder: &mut DecoderV1) -> Result<u32, Error> {
    let info = decoder.read_info()?;
    match info {
        BLOCK_SKIP_REF_NUMBER => decoder.read_var(),
        BLOCK_GC_REF_NUMBER => decoder.read_len(),
        info => {
            if info & HAS_ORIGIN != 0 {
                decoder.read_left_id()?;
            }
            if info & HAS_RIGHT_ORIGIN != 0 {
                decoder.read_right_id()?;
            }
            if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
                if decoder.read_parent_info()? {
                    decoder.read_string()?;
                } else {
                    decoder.read_left_id()?;
                }
                if info & HAS_PARENT_SUB != 0 {
                    decoder.read_string()?;
                }
            }
            Ok(ItemContent::decode(decoder, info)?.len_utf16())
        }
    }
}

/// Whether yrs reads back what it writes of this update (decoded from `raw`), and writes that
/// again the same. Some hostile content decodes, but encodes into bytes that yrs cannot read,
/// or reads as something else (two 34-byte updates did). Applied, such an update poisons the
/// document: every later encoding of its state (a step 2, a snapshot) fails or panics inside
/// yrs, and since the update is stored, again after every reload. The check costs one
/// encoding when it gives back `raw` (as for an update a Yjs client wrote: `raw` is known to
/// decode into `update`), else two encodings and a decoding.
pub fn survives_reencoding(update: &Update, raw: &[u8]) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        let once = update.encode_v1();
        once == raw || Update::decode_v1(&once).is_ok_and(|again| again.encode_v1() == once)
    }))
    .unwrap_or(false)
}

/// Whether `update` inserts at clocks of a client where the document already holds a
/// pending update (one waiting for an update it depends on). yrs merges the two, and when
/// their content at the same clocks differs (no honest client writes that: a client's
/// content at a clock never changes), the merge frees blocks it reads again later (found by
/// fuzzing, under AddressSanitizer). Such an update is held back: an honest resend of the
/// pending content adds nothing, and the update it waits for comes from its own author.
pub fn overlaps_pending<T: ReadTxn>(txn: &T, update: &Update) -> bool {
    let Some(pending) = txn.store().pending_update() else {
        return false;
    };
    !pending.update.insertions(true).intersect(&update.insertions(true)).is_empty()
}

/// Whether `update` starts a client's blocks past the clock the document has for that client
/// (counting what it holds pending), leaving a gap in that client's own history. yrs takes
/// some such updates without setting them aside as pending, leaving a hole that later updates
/// of the client trip over (found by fuzzing: it then read freed memory). An honest client
/// sends one only for a moment: back from offline, it may type before its step 2 (with what
/// it typed offline) went out; the step 2 then brings the update's content too. A pending update (one
/// waiting for another client's) starts where the document's clock for its client ends, so
/// an update that continues it is no gap: in a cluster, where another instance's updates
/// may arrive before those they depend on, that is every day.
pub fn skips_clocks<T: ReadTxn>(txn: &T, update: &Update) -> bool {
    let have = txn.state_vector();
    let pending = pending_clocks(txn);
    update
        .state_vector_lower()
        .iter()
        .any(|(client, &clock)| clock > have.get(client).max(pending.get(client)))
}

/// Where the pending update's blocks end, per client. (`Update::state_vector` counts only
/// blocks from clock 0 on, which a pending update never has.)
fn pending_clocks<T: ReadTxn>(txn: &T) -> StateVector {
    let mut ends = StateVector::default();
    if let Some(pending) = txn.store().pending_update() {
        for (client, ranges) in pending.update.insertions(true).iter() {
            if let Some(end) = ranges.iter().map(|range| range.end).max() {
                ends.set_max(*client, end);
            }
        }
    }
    ends
}

/// What to do with an update, given the document it would go into.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Apply,
    /// Not applied, without fuss: see [`overlaps_pending`].
    HoldBack,
    /// Not applied, and its connection asked for a step 2: see [`skips_clocks`].
    Gap,
}

pub fn admit<T: ReadTxn>(txn: &T, update: &Update) -> Admit {
    if skips_clocks(txn, update) {
        Admit::Gap
    } else if overlaps_pending(txn, update) {
        Admit::HoldBack
    } else {
        Admit::Apply
    }
}
