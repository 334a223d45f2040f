//! The scenarios of issue 4. Each one creates its own documents, runs for a bounded time, and returns its figures
//! as JSON fields; `main` adds the common ones (label, wall time, our own CPU time) and prints the line.

use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::Result;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use yrs::Doc;

use crate::client::{self, Ws};
use crate::system;
use crate::target::{DocRef, Target};

pub mod cold;
pub mod fanout;
pub mod idle;
pub mod limit;
pub mod replay;
pub mod throughput;

/// The figures of one scenario run, as JSON fields.
pub type Figures = Map<String, Value>;

/// What every scenario gets: where to send the load and which process to watch.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub target: Target,
    /// The server's pid, for its CPU time and memory from /proc.
    pub server_pid: Option<u32>,
}

impl Ctx {
    /// The server's resident memory in MiB, and its peak, when a pid was given.
    pub fn server_memory(&self, figures: &mut Figures) {
        let Some(pid) = self.server_pid else { return };
        for (field, name) in [("VmRSS", "server_rss_mib"), ("VmHWM", "server_peak_rss_mib")] {
            if let Ok(kib) = system::process_memory_kib(pid, field) {
                figures.insert(name.into(), (kib as f64 / 1024.0).round().into());
            }
        }
    }
}

/// Connects `count` synced clients, client `i` to `docs[i % docs.len()]`, at most `parallel` handshakes at once.
/// Returns the sockets with the documents they synced, in order.
pub async fn connect_many(
    ctx: &Ctx,
    docs: &[DocRef],
    count: usize,
    parallel: usize,
    make_doc: impl Fn(usize) -> Doc,
) -> Result<Vec<(Ws, Doc)>> {
    let permits = Arc::new(Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permits = permits.clone();
        let url = docs[i % docs.len()].url.clone();
        let addr = ctx.target.addr;
        let doc = make_doc(i);
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let ws = client::connect_synced(&url, addr, None, &doc).await?;
            anyhow::Ok((ws, doc))
        }));
    }
    let mut out = Vec::with_capacity(count);
    for task in tasks {
        out.push(task.await??);
    }
    Ok(out)
}

/// Creates `count` documents named after the scenario.
pub async fn create_docs(ctx: &Ctx, hint: &str, count: usize) -> Result<Vec<DocRef>> {
    let mut docs = Vec::with_capacity(count);
    for i in 0..count {
        docs.push(ctx.target.create_doc(&format!("{hint}-{i}")).await?);
    }
    Ok(docs)
}

/// The loopback source address for connection `i` when spreading over `sources` addresses (127.0.0.1, .2, ...).
pub fn source_addr(i: usize, sources: usize) -> Option<Ipv4Addr> {
    if sources <= 1 {
        return None;
    }
    Some(Ipv4Addr::new(127, 0, 0, 1 + (i % sources.min(250)) as u8))
}

/// The fields of a JSON object (scenarios build their figures with `json!`).
pub fn figures(value: Value) -> Figures {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
