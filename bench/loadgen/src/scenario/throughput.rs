//! Throughput: many documents, a few clients each, every client inserting one character at a time as fast as the
//! server acknowledges (its own update echoed back), keeping a small window of unacknowledged updates.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use yrs::{ClientID, Doc, Text, Transact};

use super::{Ctx, Figures, connect_many, create_docs};
use crate::client::{self, Ws};
use crate::stats::round;
use crate::system::ServerCpu;
use crate::trace::{TEXT_NAME, new_doc};

/// Client ids are this plus the client's index, so each one is known and distinct.
const FIRST_CLIENT_ID: u64 = 2_000_000;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Number of documents.
    #[arg(long, default_value_t = 50)]
    pub docs: usize,
    /// Clients per document.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Unacknowledged updates each client may have in flight.
    #[arg(long, default_value_t = 4)]
    pub window: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Handshakes in flight while connecting.
    #[arg(long, default_value_t = 50)]
    pub parallel: usize,
}

/// What one client counted during the measured interval.
#[derive(Default)]
struct Counts {
    /// Its own inserts the server echoed back: applied by the server.
    applied: u64,
    /// Inserts of the other clients it received.
    delivered: u64,
}

pub async fn run(ctx: &Ctx, args: &Args) -> Result<Figures> {
    let docs = create_docs(ctx, "throughput", args.docs).await?;
    let total = args.docs * args.clients;
    let connect_start = Instant::now();
    let clients = connect_many(ctx, &docs, total, args.parallel, |i| new_doc(FIRST_CLIENT_ID + i as u64))
        .await
        .context("connect clients")?;
    let connect_s = connect_start.elapsed().as_secs_f64();

    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, (ws, doc))| {
            tokio::spawn(insert_loop(
                ws,
                doc,
                ClientID::new(FIRST_CLIENT_ID + i as u64),
                args.window,
                start,
                end,
            ))
        })
        .collect();
    tokio::time::sleep_until(start).await;
    let cpu = ServerCpu::start(ctx.server_pid);
    let mut counts = Counts::default();
    let mut client_errors = 0usize;
    for task in tasks {
        match task.await? {
            Ok(c) => {
                counts.applied += c.applied;
                counts.delivered += c.delivered;
            }
            Err(_) => client_errors += 1,
        }
    }
    let server_cpu_s = cpu.seconds();
    let seconds = args.seconds;
    let mut figures = super::figures(json!({
        "docs": args.docs,
        "clients_per_doc": args.clients,
        "window": args.window,
        "seconds": seconds,
        "connect_s": round(connect_s, 3),
        "applied": counts.applied,
        "applied_per_s": round(counts.applied as f64 / seconds, 1),
        "delivered_per_s": round(counts.delivered as f64 / seconds, 1),
        "client_errors": client_errors,
        "server_cpu_s": server_cpu_s.map(|s| round(s, 3)),
        "applied_per_server_cpu_s": server_cpu_s.filter(|s| *s > 0.0).map(|s| round(counts.applied as f64 / s, 1)),
    }));
    ctx.server_memory(&mut figures);
    Ok(figures)
}

/// One client: keeps `window` inserts in flight from `start` until `end`, counting acknowledgements (its own clock
/// coming back) and the other clients' inserts.
async fn insert_loop(
    mut ws: Ws,
    doc: Doc,
    me: ClientID,
    window: u32,
    start: Instant,
    end: Instant,
) -> Result<Counts> {
    let text = doc.get_or_insert_text(TEXT_NAME);
    // Highest clock + 1 seen per client, so merged or repeated updates are not counted twice.
    let mut seen: HashMap<ClientID, u32> = HashMap::new();
    let mut sent = 0u32;
    let mut counts = Counts::default();
    tokio::time::sleep_until(start).await;
    while Instant::now() < end {
        let acked = seen.get(&me).copied().unwrap_or(0);
        if sent - acked < window {
            let update = {
                let mut txn = doc.transact_mut();
                let len = text.len(&txn);
                text.insert(&mut txn, len, "x");
                txn.encode_update_v1()
            };
            ws.feed(client::update_frame(update)).await?;
            sent += 1;
            if sent - acked < window {
                continue;
            }
        }
        ws.flush().await?;
        let data = match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => break,
            Ok(None) => anyhow::bail!("server closed the connection"),
            Ok(Some(Ok(tungstenite::Message::Binary(data)))) => data,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(err))) => return Err(err.into()),
        };
        for message in client::decode_frame(&data)? {
            let Some(update) = client::update_payload(&message) else {
                continue;
            };
            for (client, _lower, upper) in client::clock_ranges(update)? {
                let before = seen.entry(client).or_insert(0);
                if upper > *before {
                    let new = u64::from(upper - *before);
                    *before = upper;
                    if client == me {
                        counts.applied += new;
                    } else {
                        counts.delivered += new;
                    }
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(counts)
}
