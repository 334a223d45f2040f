//! Trace replay: one writer sends a real editing history as one update per edit; one observer applies what it
//! receives. The figure is the time until the observer's text equals the trace's final text.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use yrs::block::ClientID;
use yrs::updates::decoder::Decode;
use yrs::{GetString, Text, Transact};
use yrs::{ID, IdSet, Update};

use super::{Ctx, Figures, create_docs};
use crate::client::{self, Ws};
use crate::stats::round;
use crate::system::ServerCpu;
use crate::target::DocRef;
use crate::trace::{TEXT_NAME, Trace, encode_updates_cached, new_doc};

/// The writer's client id (the trace's only author).
pub const WRITER_ID: u64 = 4_000_001;
/// The observer's client id.
const OBSERVER_ID: u64 = 4_000_002;
/// If no echo arrives for this long while the window is full, send anyway (and count a stall).
const STALL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The gzipped JSON trace, e.g. ../shared/traces/automerge-paper.json.gz (read from this path only).
    pub trace: PathBuf,
    /// Updates the writer may have sent but not yet heard back (0 = no limit).
    #[arg(long, default_value_t = 64)]
    pub window: u64,
    /// Give up after this many seconds and report how far the observer got.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// A folder to cache the trace's encoded updates in (derived data only; encoding is slow, see trace.rs).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

/// How a replay ended.
pub struct Outcome {
    /// When the observer's text equalled the final text, if it did before the timeout.
    pub done_after: Option<Duration>,
    /// Seconds from the first send to the end (equality or timeout).
    pub elapsed: Duration,
    /// What the observer saw.
    pub observed: Observed,
    /// Times the writer sent past a full window because no echo came.
    pub stalls: u64,
    /// Server CPU seconds during the replay.
    pub server_cpu_s: Option<f64>,
}

pub async fn run(ctx: &Ctx, args: &Args) -> Result<Figures> {
    let trace = Trace::load(&args.trace)?;
    let updates = encode_updates_cached(&args.trace, &trace, WRITER_ID, args.cache.as_deref())?;
    let doc = create_docs(ctx, "replay", 1).await?.remove(0);
    let outcome =
        push(ctx, &doc, &updates, &trace, args.window, Duration::from_secs_f64(args.timeout)).await?;
    let seconds = outcome.done_after.unwrap_or(outcome.elapsed).as_secs_f64();
    // Progress of an unfinished replay: the share of the writer's inserted characters the observer has.
    let progress = if outcome.done_after.is_some() {
        1.0
    } else {
        f64::from(outcome.observed.clock) / trace.inserted_len().max(1) as f64
    };
    let edits_done = progress * trace.edits() as f64;
    let mut figures = super::figures(json!({
        "trace": args.trace.file_name().map(|n| n.to_string_lossy().into_owned()),
        "edits": trace.edits(),
        "window": args.window,
        "doc": doc.id,
        "finished": outcome.done_after.is_some(),
        "seconds": round(seconds, 3),
        "edits_per_s": round(edits_done / outcome.elapsed.as_secs_f64().max(1e-9), 1),
        "observed_fraction": round(progress, 4),
        "observer_reconnects": outcome.observed.reconnects,
        "observer_closed": outcome.observed.first_close,
        "stalls": outcome.stalls,
        "server_cpu_s": outcome.server_cpu_s.map(|s| round(s, 3)),
    }));
    ctx.server_memory(&mut figures);
    Ok(figures)
}

/// Sends `updates` to `doc` from one writer and waits until an observer's text equals the trace's final text.
pub async fn push(
    ctx: &Ctx,
    doc: &DocRef,
    updates: &[Vec<u8>],
    trace: &Trace,
    window: u64,
    timeout: Duration,
) -> Result<Outcome> {
    let observer_doc = new_doc(OBSERVER_ID);
    let observer =
        client::connect_synced(&doc.url, ctx.target.addr, None, &observer_doc).await.context("observer")?;
    let writer = client::connect_synced_bulk(&doc.url, ctx.target.addr, &new_doc(WRITER_ID))
        .await
        .context("writer")?;

    // Worked out before the clock starts: what acknowledges each update, for the writer's window.
    let acks = acks_of(updates)?;
    let start = Instant::now();
    let give_up = start + timeout;
    let cpu = ServerCpu::start(ctx.server_pid);
    let end_content: Arc<str> = Arc::from(trace.end_content.as_str());
    let observe = tokio::spawn(observe(
        observer,
        doc.url.clone(),
        ctx.target.addr,
        observer_doc,
        end_content,
        trace.end_len(),
        give_up,
    ));
    let (stalls, mut writer) = send_all(writer, updates, &acks, window, give_up).await?;
    let observed = observe.await??;
    let done_after = observed.done_after;
    // Only now close the writer: a socket closed with unread echoes sends a reset, and the server's kernel drops
    // whatever the server had not read yet, losing the last updates.
    writer.close().await;
    let elapsed = done_after.unwrap_or_else(|| start.elapsed());
    Ok(Outcome { done_after, elapsed, observed, stalls, server_cpu_s: cpu.seconds() })
}

/// The writer: sends each update as its own frame, at most `window` ahead of the echoes it has heard back.
///
/// A server may merge updates that arrive together into one echo, so echoes are not counted: an update is
/// acknowledged once the echoes cover the writer's clock at its end and, when it deletes, the first item it
/// deletes.
async fn send_all(
    ws: Ws,
    updates: &[Vec<u8>],
    acks: &[Ack],
    window: u64,
    give_up: Instant,
) -> Result<(u64, Writer)> {
    let (mut sink, mut stream) = ws.split();
    let echoed = Arc::new(std::sync::Mutex::new(Echoed::default()));
    let echo = Arc::new(Notify::new());
    let closed = Arc::new(std::sync::Mutex::new(None::<String>));
    let counter = {
        let (echoed, echo, closed) = (echoed.clone(), echo.clone(), closed.clone());
        tokio::spawn(async move {
            let why = loop {
                let frame = match tokio::time::timeout_at(give_up, stream.next()).await {
                    Err(_) => return,
                    Ok(None) => break "the connection ended".to_string(),
                    Ok(Some(Err(err))) => break format!("read error: {err}"),
                    Ok(Some(Ok(tungstenite::Message::Close(frame)))) => {
                        break format!("close frame {frame:?}");
                    }
                    Ok(Some(Ok(frame))) => frame,
                };
                let tungstenite::Message::Binary(data) = frame else {
                    continue;
                };
                let Ok(messages) = client::decode_frame(&data) else {
                    continue;
                };
                let mut heard = false;
                for update in messages.iter().filter_map(client::update_payload) {
                    let Ok(update) = Update::decode_v1(update) else { continue };
                    if let Ok(mut echoed) = echoed.lock() {
                        echoed.add(&update);
                        heard = true;
                    }
                }
                if heard {
                    echo.notify_one();
                }
            };
            if let Ok(mut slot) = closed.lock() {
                *slot = Some(why);
            }
        })
    };
    let mut stalls = 0;
    let mut acked = 0usize;
    for (sent, update) in updates.iter().enumerate() {
        if Instant::now() >= give_up {
            break;
        }
        loop {
            if let Ok(echoed) = echoed.lock() {
                while acked < sent && echoed.covers(&acks[acked]) {
                    acked += 1;
                }
            }
            if window == 0 || ((sent - acked) as u64) < window {
                break;
            }
            sink.flush().await?;
            if tokio::time::timeout(STALL, echo.notified()).await.is_err() {
                stalls += 1;
                break;
            }
        }
        if let Err(err) = sink.feed(client::update_frame(update.clone())).await {
            let why = closed.lock().ok().and_then(|slot| slot.clone()).unwrap_or_default();
            anyhow::bail!("writer send after {sent} updates: {err} (server side: {why})");
        }
    }
    sink.flush().await?;
    Ok((stalls, Writer { sink, reader: counter }))
}

/// What an update must see echoed to count as acknowledged.
pub struct Ack {
    /// The writer's clock at the end of the update.
    clock: u32,
    /// The first item the update deletes, if it deletes.
    deleted: Option<ID>,
}

/// What the writer has heard back so far.
#[derive(Default)]
struct Echoed {
    clock: u32,
    deleted: IdSet,
}

impl Echoed {
    fn add(&mut self, update: &Update) {
        let writer = ClientID::new(WRITER_ID);
        let insertions = update.insertions(true);
        let ends = insertions.iter().filter(|(client, _)| **client == writer);
        let end = ends.flat_map(|(_, ranges)| ranges.iter().map(|r| r.end).collect::<Vec<_>>()).max();
        self.clock = self.clock.max(end.unwrap_or(0));
        self.deleted.merge_with(update.delete_set().clone());
    }

    fn covers(&self, ack: &Ack) -> bool {
        self.clock >= ack.clock && ack.deleted.is_none_or(|id| self.deleted.contains(&id))
    }
}

/// For each update, what acknowledges it.
fn acks_of(updates: &[Vec<u8>]) -> Result<Vec<Ack>> {
    let mut echoed = Echoed::default();
    updates
        .iter()
        .map(|bytes| {
            let update = Update::decode_v1(bytes).context("trace update")?;
            echoed.add(&update);
            let deleted =
                update.delete_set().iter().next().and_then(|(client, ranges)| {
                    ranges.iter().next().map(|range| ID::new(*client, range.start))
                });
            Ok(Ack { clock: echoed.clock, deleted })
        })
        .collect()
}

/// The writer's socket after sending: the reader task keeps draining echoes until [`Writer::close`].
pub struct Writer {
    pub sink: SplitSink<Ws, tungstenite::Message>,
    pub reader: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Sends a close frame, then stops reading.
    pub async fn close(&mut self) {
        let _ = self.sink.send(tungstenite::Message::Close(None)).await;
        self.reader.abort();
    }
}

/// What the observer saw.
pub struct Observed {
    /// When its text equalled the final text, if it did before the deadline.
    pub done_after: Option<Duration>,
    /// The writer's insert clock the observer reached (progress, for a replay that did not finish).
    pub clock: u32,
    /// How often the server closed the observer's socket (it reconnects and resyncs, as a browser does).
    pub reconnects: u32,
    /// The first reason the server gave for closing it.
    pub first_close: Option<String>,
}

/// The observer: applies every update it receives; after each one that brings the length to the final length,
/// compares the whole text. If the server closes the socket (for example because the observer fell behind), it
/// reconnects and resyncs by state vector, as the stock client does. Returns at equality or at `give_up`.
async fn observe(
    mut ws: Ws,
    url: String,
    addr: std::net::SocketAddr,
    doc: yrs::Doc,
    end: Arc<str>,
    end_len: u32,
    give_up: Instant,
) -> Result<Observed> {
    let start = Instant::now();
    let text = doc.get_or_insert_text(TEXT_NAME);
    let writer = yrs::ClientID::new(WRITER_ID);
    let clock = |doc: &yrs::Doc| yrs::ReadTxn::state_vector(&doc.transact()).get(&writer);
    let mut observed = Observed { done_after: None, clock: 0, reconnects: 0, first_close: None };
    loop {
        let data = match tokio::time::timeout_at(give_up, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(tungstenite::Message::Binary(data)))) => Some(data),
            Ok(Some(Ok(tungstenite::Message::Close(frame)))) => {
                observed.first_close.get_or_insert_with(|| format!("{frame:?}"));
                None
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(err))) => {
                observed.first_close.get_or_insert_with(|| format!("read error: {err}"));
                None
            }
            Ok(None) => {
                observed.first_close.get_or_insert_with(|| "connection ended".into());
                None
            }
        };
        match data {
            Some(data) => {
                for message in client::decode_frame(&data)? {
                    if let Some(update) = client::update_payload(&message) {
                        client::apply(&doc, update)?;
                    }
                }
            }
            None => {
                if Instant::now() >= give_up {
                    break;
                }
                observed.reconnects += 1;
                ws = client::connect_synced(&url, addr, None, &doc).await.context("observer reconnect")?;
            }
        }
        let txn = doc.transact();
        if text.len(&txn) == end_len && *text.get_string(&txn) == *end {
            drop(txn);
            observed.done_after = Some(start.elapsed());
            break;
        }
    }
    observed.clock = clock(&doc);
    let _ = ws.close(None).await;
    Ok(observed)
}
