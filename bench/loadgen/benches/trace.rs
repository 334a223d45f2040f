//! yrs applying an editing trace in-process: the ceiling for any server built on yrs, with no network, no actor
//! and no storage. End-to-end replay figures in docs/BENCHMARKS.md are read as a fraction of this.
//!
//! `TANDEM_TRACE=../shared/traces/automerge-paper.json.gz cargo bench --bench trace`
//! Optional: `TANDEM_BENCH_CACHE=<dir>` keeps the encoded updates between runs (encoding them takes tens of
//! seconds, see `trace.rs`); `TANDEM_TRACE_LOCAL=1` also times the edits as local edits (minutes).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tandem_bench::trace::{Trace, apply_updates, encode_updates_cached, replay_local};

fn trace_benches(c: &mut Criterion) {
    let Some(path) = std::env::var_os("TANDEM_TRACE").map(PathBuf::from) else {
        eprintln!(
            "skipping the trace benches: set TANDEM_TRACE to a trace file, e.g. \
             TANDEM_TRACE=../shared/traces/automerge-paper.json.gz cargo bench --bench trace"
        );
        return;
    };
    let trace = Trace::load(&path).expect("readable trace");
    let cache = std::env::var_os("TANDEM_BENCH_CACHE").map(PathBuf::from);
    let updates = encode_updates_cached(&path, &trace, 1, cache.as_deref()).expect("encodable trace");
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

    let mut group = c.benchmark_group("trace");
    group.sample_size(10).measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(trace.edits() as u64));
    group.bench_function(format!("apply_updates/{name}"), |b| {
        b.iter(|| {
            let text = apply_updates(black_box(&updates)).expect("applies");
            assert_eq!(text.len(), trace.end_content.len());
        })
    });
    if std::env::var_os("TANDEM_TRACE_LOCAL").is_some() {
        group.measurement_time(Duration::from_secs(120));
        group.bench_function(format!("local_edits/{name}"), |b| b.iter(|| replay_local(black_box(&trace))));
    }
    group.finish();
}

criterion_group!(benches, trace_benches);
criterion_main!(benches);
