//! Fanout: one writer and N readers on one document. The writer inserts one character at a time at a fixed rate;
//! each reader times the arrival of every insert against the writer's send time (same process, monotonic clock).
//! With `--flooders N`, N more connections meanwhile write to another document as fast as the server reads them:
//! what a flood does to a normal document's latency, and what the message-rate limit lets through.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use yrs::{ClientID, Doc, Text, Transact};

use super::replay::Writer;
use super::{Ctx, Figures, connect_many, create_docs};
use crate::client::{self, Ws};
use crate::stats::{self, ms, round};
use crate::system::ServerCpu;
use crate::trace::{TEXT_NAME, new_doc};

/// The writer's client id; readers look for its clock in every update they receive.
const WRITER_ID: u64 = 1_000_001;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Number of readers.
    #[arg(long, default_value_t = 100)]
    pub readers: usize,
    /// Number of one-character inserts the writer sends.
    #[arg(long, default_value_t = 2000)]
    pub updates: usize,
    /// Inserts per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// An insert counts as delivered if it arrives within this many seconds; readers stop waiting this long after
    /// the last send.
    #[arg(long, default_value_t = 10.0)]
    pub deadline: f64,
    /// Handshakes in flight while connecting the readers.
    #[arg(long, default_value_t = 50)]
    pub parallel: usize,
    /// Connections that write one-character inserts to another document as fast as they can while the writer
    /// writes (each reads and drops its echoes).
    #[arg(long, default_value_t = 0)]
    pub flooders: usize,
    /// Spread the readers over several instances of one cluster: reader i connects through the URL template
    /// i mod n of this comma-separated list (the writer stays on --url). Latencies are then also reported for the
    /// readers on the writer's instance (`local`: the first template should be --url) and on the others (`remote`:
    /// one hop through the cluster's broker more).
    #[arg(long, value_delimiter = ',')]
    pub reader_urls: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: &Args) -> Result<Figures> {
    let doc = create_docs(ctx, "fanout", 1).await?.remove(0);
    let connect_start = Instant::now();
    let readers = if args.reader_urls.is_empty() {
        connect_many(ctx, std::slice::from_ref(&doc), args.readers, args.parallel, |_| Doc::new())
            .await
            .context("connect readers")?
    } else {
        connect_spread(&args.reader_urls, &doc.id, args.readers, args.parallel)
            .await
            .context("connect readers")?
    };
    let connect_s = connect_start.elapsed().as_secs_f64();
    let instances = args.reader_urls.len().max(1);

    let writer_doc = new_doc(WRITER_ID);
    let writer = client::connect_synced(&doc.url, ctx.target.addr, None, &writer_doc)
        .await
        .context("connect writer")?;

    let period = Duration::from_secs_f64(1.0 / args.rate);
    let base = Instant::now();
    let start = base + Duration::from_millis(200);
    let last_send = start + period * args.updates as u32;
    let give_up = last_send + Duration::from_secs_f64(args.deadline);
    // Send time of insert c (the writer's clock c), in nanoseconds after `base`; written before the frame is sent.
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..args.updates).map(|_| AtomicU64::new(0)).collect());

    let flood = start_flood(ctx, args.flooders, last_send).await?;
    let cpu = ServerCpu::start(ctx.server_pid);
    let reader_tasks: Vec<_> = readers
        .into_iter()
        .map(|(ws, _)| tokio::spawn(read_inserts(ws, sent_at.clone(), base, give_up, args.updates)))
        .collect();
    let writer_task =
        tokio::spawn(write_inserts(writer, writer_doc, sent_at.clone(), base, start, period, give_up));

    let mut latencies: Vec<u32> = Vec::with_capacity(args.readers * args.updates);
    // Split by where the reader is: on the writer's instance or on another one.
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let mut reader_errors = 0usize;
    for (i, task) in reader_tasks.into_iter().enumerate() {
        match task.await? {
            Ok(received) => {
                if instances > 1 {
                    let side = if i % instances == 0 { &mut local } else { &mut remote };
                    side.extend_from_slice(&received);
                }
                latencies.extend(received);
            }
            Err(_) => reader_errors += 1,
        }
    }
    let (send_behind, mut writer) = writer_task.await??;
    writer.close().await;
    let server_cpu_s = cpu.seconds();
    let mut flood_sent = Vec::with_capacity(flood.len());
    let mut flood_errors = 0usize;
    for task in flood {
        match task.await? {
            Ok(sent) => flood_sent.push(sent),
            Err(_) => flood_errors += 1,
        }
    }
    let flood_seconds = (last_send - start).as_secs_f64();
    flood_sent.sort_unstable();

    latencies.sort_unstable();
    local.sort_unstable();
    remote.sort_unstable();
    let q_of = |sorted: &[u32], q: f64| stats::quantile(sorted, q).map(|us| round(us as f64 / 1000.0, 3));
    let expected = (args.readers * args.updates) as f64;
    let deadline_us = (args.deadline * 1e6) as u32;
    let within = latencies.partition_point(|&l| l <= deadline_us);
    let q = |q: f64| stats::quantile(&latencies, q).map(|us| round(us as f64 / 1000.0, 3));
    let mut figures = super::figures(json!({
        "readers": args.readers,
        "updates": args.updates,
        "rate": args.rate,
        "deadline_s": args.deadline,
        "connect_s": round(connect_s, 3),
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "max_ms": q(1.0),
        "delivered_fraction": round(within as f64 / expected, 4),
        "received_fraction": round(latencies.len() as f64 / expected, 4),
        "reader_errors": reader_errors,
        "writer_behind_ms": ms(send_behind),
        "server_cpu_s": server_cpu_s.map(|s| round(s, 3)),
        "flooders": args.flooders,
        "flood_errors": flood_errors,
        "flood_updates": flood_sent.iter().sum::<u64>(),
        "flood_rate_per_conn": stats::quantile(&flood_sent, 0.5).map(|n| round(n as f64 / flood_seconds, 1)),
    }));
    if instances > 1 {
        figures.insert("instances".into(), instances.into());
        for (name, sorted) in [("local", &local), ("remote", &remote)] {
            figures.insert(format!("p50_ms_{name}"), q_of(sorted, 0.5).into());
            figures.insert(format!("p99_ms_{name}"), q_of(sorted, 0.99).into());
        }
    }
    ctx.server_memory(&mut figures);
    Ok(figures)
}

/// The writer: one one-character insert every `period` from `start`, each as its own update frame. Returns how
/// far behind schedule the last send was (a saturated load generator shows here). Echoes are read and dropped.
async fn write_inserts(
    ws: Ws,
    doc: Doc,
    sent_at: Arc<Vec<AtomicU64>>,
    base: Instant,
    start: Instant,
    period: Duration,
    give_up: Instant,
) -> Result<(Duration, Writer)> {
    let (mut sink, mut stream) = ws.split();
    let drain = tokio::spawn(async move {
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(give_up, stream.next()).await {}
    });
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut behind = Duration::ZERO;
    for (clock, slot) in sent_at.iter().enumerate() {
        let due = start + period * clock as u32;
        tokio::time::sleep_until(due).await;
        let update = {
            let mut txn = doc.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, if clock % 2 == 0 { "a" } else { "b" });
            txn.encode_update_v1()
        };
        let now = Instant::now();
        behind = now - due;
        slot.store((now - base).as_nanos() as u64, Ordering::Release);
        sink.send(client::update_frame(update)).await.context("writer send")?;
    }
    // Keep reading our own echoes until the readers are done (see `Writer`).
    Ok((behind, Writer { sink, reader: drain }))
}

/// A reader: for every update frame, the writer's clock range it covers marks those inserts as arrived now.
/// Returns one latency in microseconds per insert received before `give_up`.
async fn read_inserts(
    mut ws: Ws,
    sent_at: Arc<Vec<AtomicU64>>,
    base: Instant,
    give_up: Instant,
    updates: usize,
) -> Result<Vec<u32>> {
    let writer = ClientID::new(WRITER_ID);
    let mut latencies = Vec::with_capacity(updates);
    let mut seen = 0u32;
    while (seen as usize) < updates {
        let data = match tokio::time::timeout_at(give_up, ws.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Ok(tungstenite::Message::Binary(data)))) => data,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(err))) => return Err(err.into()),
        };
        let now = (Instant::now() - base).as_nanos() as u64;
        for message in client::decode_frame(&data)? {
            let Some(update) = client::update_payload(&message) else {
                continue;
            };
            for (client, _lower, upper) in client::clock_ranges(update)? {
                if client != writer || upper <= seen {
                    continue;
                }
                for slot in &sent_at[seen as usize..(upper as usize).min(updates)] {
                    let sent = slot.load(Ordering::Acquire);
                    latencies.push((now.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32);
                }
                seen = upper;
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(latencies)
}

/// Starts `count` flooders on a document of their own, each writing until `until`. Each task returns how many
/// inserts it sent (the server's reading pace holds it back: a send waits while the socket is full).
async fn start_flood(
    ctx: &Ctx,
    count: usize,
    until: Instant,
) -> Result<Vec<tokio::task::JoinHandle<Result<u64>>>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let doc = create_docs(ctx, "flood", 1).await?.remove(0);
    let flooders =
        connect_many(ctx, std::slice::from_ref(&doc), count, 50, |i| new_doc(2_000_000 + i as u64))
            .await
            .context("connect flooders")?;
    Ok(flooders.into_iter().map(|(ws, doc)| tokio::spawn(flood(ws, doc, until))).collect())
}

/// One flooder: inserts one character per update, as fast as the socket takes them, until `until`.
async fn flood(ws: Ws, doc: Doc, until: Instant) -> Result<u64> {
    let (mut sink, mut stream) = ws.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut sent = 0u64;
    while Instant::now() < until {
        let update = {
            let mut txn = doc.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, "f");
            txn.encode_update_v1()
        };
        let send = sink.send(client::update_frame(update));
        match tokio::time::timeout_at(until, send).await {
            Ok(result) => result.context("flooder send")?,
            Err(_) => break,
        }
        sent += 1;
    }
    // The server may hold the socket full (it reads a flooder no faster than its rate): do
    // not wait long to say goodbye.
    let close = sink.send(tungstenite::Message::Close(None));
    let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    drain.abort();
    Ok(sent)
}

/// Connects `count` synced readers to document `id`, reader i through `templates[i % n]` (instances of one
/// cluster), at most `parallel` handshakes at once.
async fn connect_spread(
    templates: &[String],
    id: &str,
    count: usize,
    parallel: usize,
) -> Result<Vec<(Ws, Doc)>> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let target =
            crate::target::Target::new(&templates[i % templates.len()], crate::target::CreateMode::Tandem)?;
        let doc_ref = target.doc(id).await?;
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let doc = Doc::new();
            let ws = client::connect_synced(&doc_ref.url, target.addr, None, &doc).await?;
            anyhow::Ok((ws, doc))
        }));
    }
    let mut out = Vec::with_capacity(count);
    for task in tasks {
        out.push(task.await??);
    }
    Ok(out)
}
