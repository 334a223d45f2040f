//! What a version costs: the whole state of a document at points through an editing trace,
//! raw and compressed with zstd at several levels, beside the text itself and the update log
//! the keystrokes make; and the time to take, compress and read back the last one.
//!
//! `TANDEM_TRACE=../shared/traces/automerge-paper.json.gz cargo bench --bench versions`
//! (`TANDEM_BENCH_CACHE=<dir>` keeps the encoded updates between runs).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tandem_bench::trace::{Trace, encode_updates_cached};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

/// Points through the trace where a version is taken.
const CHECKPOINTS: usize = 10;
/// Runs of each timing; the median is shown.
const RUNS: usize = 7;
const LEVELS: [i32; 4] = [1, 3, 9, 19];

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn timed<T>(mut run: impl FnMut() -> T) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(run());
                start.elapsed()
            })
            .collect(),
    )
}

fn kib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

fn main() {
    let Some(path) = std::env::var_os("TANDEM_TRACE").map(PathBuf::from) else {
        eprintln!(
            "skipping the version benches: set TANDEM_TRACE, e.g. TANDEM_TRACE=../shared/traces/automerge-paper.json.gz"
        );
        return;
    };
    let trace = Trace::load(&path).expect("readable trace");
    let cache = std::env::var_os("TANDEM_BENCH_CACHE").map(PathBuf::from);
    let updates = encode_updates_cached(&path, &trace, 1, cache.as_deref()).expect("encoded updates");
    println!("trace {}: {} updates", path.display(), updates.len());
    println!();
    println!("| edits | text KiB | log KiB | state KiB | zstd-1 | zstd-3 | zstd-9 | zstd-19 | ratio (3) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");

    let doc = Doc::new();
    let text = doc.get_or_insert_text("content");
    let mut log_bytes = 0usize;
    let step = updates.len().div_ceil(CHECKPOINTS);
    let mut state = Vec::new();
    for (i, update) in updates.iter().enumerate() {
        log_bytes += update.len();
        doc.transact_mut().apply_update(Update::decode_v1(update).expect("decodes")).expect("applies");
        if (i + 1) % step != 0 && i + 1 != updates.len() {
            continue;
        }
        state = doc.transact().encode_state_as_update_v1(&StateVector::default());
        let text_len = text.get_string(&doc.transact()).len();
        let sizes: Vec<usize> = LEVELS
            .iter()
            .map(|&level| zstd::bulk::compress(&state, level).expect("compresses").len())
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            i + 1,
            kib(text_len),
            kib(log_bytes),
            kib(state.len()),
            kib(sizes[0]),
            kib(sizes[1]),
            kib(sizes[2]),
            kib(sizes[3]),
            sizes[1] as f64 / state.len() as f64,
        );
    }
    assert_eq!(text.get_string(&doc.transact()), trace.end_content, "the replay ends with the trace's text");

    println!();
    println!("the last version, median of {RUNS} runs:");
    let take = timed(|| doc.transact().encode_state_as_update_v1(&StateVector::default()));
    println!("  take the state:           {take:?}");
    for level in LEVELS {
        let compress = timed(|| zstd::bulk::compress(&state, level).expect("compresses"));
        let packed = zstd::bulk::compress(&state, level).expect("compresses");
        let unpack = timed(|| zstd::bulk::decompress(&packed, state.len()).expect("decompresses"));
        println!("  zstd-{level:<2} compress {compress:?}, decompress {unpack:?}");
    }
    let read = timed(|| tandem::doc::text_of_state(&state).expect("reads"));
    println!("  read its text back:       {read:?}");
}
