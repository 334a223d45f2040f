//! Idle connections: many clients spread over a few hundred documents, each synced and with an awareness state,
//! then doing nothing. Measures the server's resident memory per connection and the time to connect them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use yrs::{ClientID, Doc};

use super::{Ctx, Figures, create_docs, source_addr};
use crate::client;
use crate::stats::round;
use crate::system;
use crate::target::DocRef;

/// Awareness client ids are this plus the connection's index.
const FIRST_CLIENT_ID: u64 = 3_000_000;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Connection counts to reach in turn (each step adds connections to the previous ones).
    #[arg(long, value_delimiter = ',', default_value = "5000,20000")]
    pub steps: Vec<usize>,
    /// Documents the connections are spread over.
    #[arg(long, default_value_t = 500)]
    pub docs: usize,
    /// Loopback source addresses to spread connections over (127.0.0.1, .2, ...), for more ephemeral ports.
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
    /// Handshakes in flight while connecting.
    #[arg(long, default_value_t = 100)]
    pub parallel: usize,
    /// Seconds to wait after each step before reading the server's memory (awareness broadcasts settle).
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds, after each step, over which the server's CPU is read while every connection idles (0: not read).
    /// Over 30 s it spans a round of the server's pings to every connection.
    #[arg(long, default_value_t = 0.0)]
    pub quiet: f64,
}

pub async fn run(ctx: &Ctx, args: &Args) -> Result<Figures> {
    ensure!(!args.steps.is_empty() && args.steps.windows(2).all(|w| w[0] < w[1]), "steps must increase");
    let fd_limit = system::raise_fd_limit();
    let pid = ctx.server_pid.context("the idle scenario needs --server-pid to read the server's memory")?;
    let docs = create_docs(ctx, "idle", args.docs).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let rss_before = system::process_memory_kib(pid, "VmRSS")?;
    let client_rss_before = system::own_rss_kib().unwrap_or(0);

    let (stop_tx, stop_rx) = watch::channel(false);
    let dropped = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(args.parallel.max(1)));
    let mut figures = super::figures(json!({
        "docs": args.docs,
        "sources": args.sources,
        "fd_limit": fd_limit,
        "server_rss_before_mib": round(rss_before as f64 / 1024.0, 1),
    }));
    let mut connected = 0usize;
    let mut errors = 0usize;
    let mut first_error = None;
    let mut tasks = Vec::new();
    for &step in &args.steps {
        let step_start = Instant::now();
        let (ready_tx, mut ready_rx) = mpsc::channel::<Result<()>>(1024);
        for i in connected..step {
            tasks.push(tokio::spawn(hold_connection(
                ctx.target.addr,
                docs[i % docs.len()].clone(),
                i,
                args.sources,
                permits.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
                dropped.clone(),
            )));
        }
        drop(ready_tx);
        while let Some(result) = ready_rx.recv().await {
            if let Err(err) = result {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{err:#}"));
            }
        }
        let connect_s = step_start.elapsed().as_secs_f64();
        connected = step;
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let rss = system::process_memory_kib(pid, "VmRSS")?;
        let per_conn_kib = (rss.saturating_sub(rss_before)) as f64 / (step - errors).max(1) as f64;
        figures.insert(format!("connect_s_{step}"), round(connect_s, 3).into());
        figures.insert(format!("server_rss_mib_{step}"), round(rss as f64 / 1024.0, 1).into());
        figures.insert(format!("kib_per_conn_{step}"), round(per_conn_kib, 2).into());
        let client_rss = system::own_rss_kib().unwrap_or(0).saturating_sub(client_rss_before);
        figures
            .insert(format!("client_kib_per_conn_{step}"), round(client_rss as f64 / step as f64, 2).into());
        if args.quiet > 0.0 {
            // CPU per idle connection: what the server spends on connections that only exist (pings, timers).
            let cpu_before = system::process_cpu(pid)?;
            tokio::time::sleep(Duration::from_secs_f64(args.quiet)).await;
            let cpu = system::process_cpu(pid)?.saturating_sub(cpu_before).as_secs_f64();
            let per_conn_min_us = cpu * 1e6 / (step - errors).max(1) as f64 / (args.quiet / 60.0);
            figures.insert(format!("quiet_cpu_s_{step}"), round(cpu, 3).into());
            figures.insert(format!("cpu_us_per_conn_min_{step}"), round(per_conn_min_us, 2).into());
        }
    }
    figures.insert("errors".into(), errors.into());
    figures.insert("dropped_by_server".into(), dropped.load(Ordering::Relaxed).into());
    if let Some(err) = first_error {
        figures.insert("first_error".into(), err.into());
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(figures)
}

/// One idle client: connect, sync, announce an awareness state, report ready, then read (answering pings,
/// receiving the others' awareness) until told to stop. Counts itself in `dropped` if the server closes first.
#[allow(clippy::too_many_arguments)]
async fn hold_connection(
    addr: std::net::SocketAddr,
    doc: DocRef,
    index: usize,
    sources: usize,
    permits: Arc<Semaphore>,
    ready: mpsc::Sender<Result<()>>,
    mut stop: watch::Receiver<bool>,
    dropped: Arc<AtomicUsize>,
) {
    let connected = async {
        let _permit = permits.acquire().await?;
        let mut ws = client::connect_synced(&doc.url, addr, source_addr(index, sources), &Doc::new()).await?;
        let me = ClientID::new(FIRST_CLIENT_ID + index as u64);
        ws.send(client::awareness_frame(me, 1, &format!("idle-{index}"))).await?;
        anyhow::Ok(ws)
    }
    .await;
    let mut ws = match connected {
        Ok(ws) => {
            let _ = ready.send(Ok(())).await;
            ws
        }
        Err(err) => {
            let _ = ready.send(Err(err)).await;
            return;
        }
    };
    drop(ready);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        }
    }
    let _ = ws.close(None).await;
}
