//! Cold load: a document holding a whole trace's history sits in the server's database; after a restart (done by
//! bench/compare.sh between the two steps), how long until a new client has fully synced it?
//!
//! `cold-fill` writes the document (every edit as its own update, as a real editing session leaves it, or the
//! whole history as one update for servers too slow to take the edits one by one) and prints its id;
//! `cold-measure` connects to that id and times the first and a second client's full sync.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use tokio::time::Instant;
use yrs::{GetString, ReadTxn, StateVector, Transact};

use super::{Ctx, Figures, create_docs};
use crate::client;
use crate::stats::{ms, round};
use crate::trace::{TEXT_NAME, Trace, encode_updates_cached, new_doc};

/// How the fill step writes the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fill {
    /// One update per edit (the server's log holds every edit, as after a real session).
    Edits,
    /// The whole history in one update (same document content, one write).
    Single,
}

#[derive(Clone, Debug, clap::Args)]
pub struct FillArgs {
    /// The gzipped JSON trace (read from this path only).
    pub trace: PathBuf,
    #[arg(long, value_enum, default_value_t = Fill::Edits)]
    pub fill: Fill,
    /// Unacknowledged updates the writer may have in flight (edits fill).
    #[arg(long, default_value_t = 64)]
    pub window: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// A folder to cache the trace's encoded updates in (derived data only; encoding is slow, see trace.rs).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct MeasureArgs {
    /// The same trace as the fill step, to check the synced text.
    pub trace: PathBuf,
    /// The document id `cold-fill` printed.
    #[arg(long)]
    pub doc: String,
}

pub async fn fill(ctx: &Ctx, args: &FillArgs) -> Result<Figures> {
    let trace = Trace::load(&args.trace)?;
    let writer_id = super::replay::WRITER_ID;
    let mut updates = encode_updates_cached(&args.trace, &trace, writer_id, args.cache.as_deref())?;
    if args.fill == Fill::Single {
        let whole = new_doc(writer_id + 100);
        for update in &updates {
            client::apply(&whole, update)?;
        }
        updates = vec![whole.transact().encode_state_as_update_v1(&StateVector::default())];
    }
    let doc = create_docs(ctx, "cold", 1).await?.remove(0);
    let timeout = Duration::from_secs_f64(args.timeout);
    let outcome = super::replay::push(ctx, &doc, &updates, &trace, args.window, timeout).await?;
    ensure!(outcome.done_after.is_some(), "the fill did not reach the trace's final text within {timeout:?}");
    Ok(super::figures(json!({
        "doc": doc.id,
        "fill": format!("{:?}", args.fill).to_lowercase(),
        "updates": updates.len(),
        "bytes": updates.iter().map(Vec::len).sum::<usize>(),
        "seconds": round(outcome.elapsed.as_secs_f64(), 3),
    })))
}

pub async fn measure(ctx: &Ctx, args: &MeasureArgs) -> Result<Figures> {
    let trace = Trace::load(&args.trace)?;
    let doc = ctx.target.doc(&args.doc).await?;
    let first = sync_once(ctx, &doc.url, &trace).await.context("first client")?;
    let second = sync_once(ctx, &doc.url, &trace).await.context("second client")?;
    let mut figures = super::figures(json!({
        "doc": doc.id,
        "connect_ms": ms(first.0),
        "sync_ms": ms(first.1),
        "warm_connect_ms": ms(second.0),
        "warm_sync_ms": ms(second.1),
    }));
    ctx.server_memory(&mut figures);
    Ok(figures)
}

/// A new client's upgrade time and time to a full sync (its text equals the trace's final text), both from the
/// start of the TCP connect.
async fn sync_once(ctx: &Ctx, url: &str, trace: &Trace) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let mut ws = client::connect(url, ctx.target.addr, None).await?;
    let upgraded = start.elapsed();
    let doc = new_doc(5_000_000 + crate::target::random_u64() % 1_000_000);
    tokio::time::timeout(client::SYNC_TIMEOUT, client::sync(&mut ws, &doc))
        .await
        .context("sync timed out")??;
    let synced = start.elapsed();
    let text = doc.get_or_insert_text(TEXT_NAME).get_string(&doc.transact());
    ensure!(
        text == trace.end_content,
        "synced text differs from the trace's final text ({} vs {} chars)",
        text.chars().count(),
        trace.end_content.chars().count()
    );
    let _ = ws.close(None).await;
    Ok((upgraded, synced))
}
