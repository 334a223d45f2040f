//! The in-process limit: yrs applying the trace with no network and no server, the ceiling any server built on
//! yrs can reach. End-to-end replay figures are reported as a fraction of it. (The criterion bench measures the
//! same thing with statistics; this is the quick single-shot version compare.sh records beside the others.)

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, ensure};
use serde_json::json;

use super::Figures;
use crate::stats::round;
use crate::trace::{Trace, apply_updates, encode_updates, encode_updates_cached, replay_local};

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The gzipped JSON trace (read from this path only).
    pub trace: PathBuf,
    /// Also replay the edits as local edits and time encoding them (slow in yrs 0.28: tens of seconds).
    #[arg(long)]
    pub local: bool,
    /// A folder to cache the trace's encoded updates in (derived data only; encoding is slow, see trace.rs).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<Figures> {
    let trace = Trace::load(&args.trace)?;
    let edits = trace.edits() as f64;

    let mut figures = Figures::new();
    if args.local {
        let started = Instant::now();
        let local = replay_local(&trace);
        let local_s = started.elapsed().as_secs_f64();
        ensure!(local == trace.end_content, "local replay does not reach the final text");
        let started = Instant::now();
        let _ = encode_updates(&trace, 1);
        let encode_s = started.elapsed().as_secs_f64();
        figures.insert("local_edits_per_s".into(), round(edits / local_s, 1).into());
        figures.insert("encode_edits_per_s".into(), round(edits / encode_s, 1).into());
    }
    let updates =
        encode_updates_cached(&args.trace, &trace, super::replay::WRITER_ID, args.cache.as_deref())?;

    let started = Instant::now();
    let applied = apply_updates(&updates)?;
    let apply_s = started.elapsed().as_secs_f64();
    ensure!(applied == trace.end_content, "applying the updates does not reach the final text");

    figures.extend(super::figures(json!({
        "trace": args.trace.file_name().map(|n| n.to_string_lossy().into_owned()),
        "edits": trace.edits(),
        "apply_edits_per_s": round(edits / apply_s, 1),
        "update_bytes": updates.iter().map(Vec::len).sum::<usize>(),
    })));
    Ok(figures)
}
