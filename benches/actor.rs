//! The document actor applying an editing trace with persistence, in process: every update
//! goes through a `DocHandle` as a checked client message, is applied, broadcast to one
//! subscriber and written to the store in batches; the clock stops when the store has it all.
//! Compared with yrs alone (`cargo bench -p tandem-bench --bench trace`), this is what the
//! actor and the store cost; the end-to-end replay (`tandem-bench replay`) adds the sockets.
//!
//! `TANDEM_TRACE=../shared/traces/automerge-paper.json.gz cargo bench --bench actor`
//! Postgres too when `TANDEM_BENCH_PG` (or `TEST_POSTGRES_URL`) is a server URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`; `TANDEM_BENCH_CACHE=<dir>` keeps the encoded
//! updates between runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlx::Connection;
use tandem::config::Config;
use tandem::doc::protocol::{ClientMessage, decode_frame, encode_update};
use tandem::doc::{DocSettings, Peer, Registry};
use tandem::model::{DocId, Title};
use tandem::store::Store;
use tandem_bench::trace::{Trace, encode_updates_cached};

/// A fresh database per iteration, so every run starts from an empty log.
enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// A database URL for one iteration, and what to remove afterwards.
    async fn fresh(&self) -> (String, Option<tempfile::TempDir>, Option<String>) {
        match self {
            Self::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                (format!("sqlite://{}", dir.path().join("bench.db").display()), Some(dir), None)
            }
            Self::Postgres(admin) => {
                let name = format!("tandem_bench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect to Postgres");
                sqlx::query(&format!("create database {name}")).execute(&mut conn).await.expect("create");
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                (format!("{base}/{name}"), None, Some(name))
            }
        }
    }

    async fn drop_database(&self, name: Option<String>) {
        if let (Self::Postgres(admin), Some(name)) = (self, name) {
            let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect to Postgres");
            let _ =
                sqlx::query(&format!("drop database if exists {name} with (force)")).execute(&mut conn).await;
        }
    }
}

/// Feeds every update to a fresh document's actor and waits until the store holds them all.
async fn run_once(backend: &Backend, messages: Vec<ClientMessage>) -> Duration {
    let (url, _dir, pg_name) = backend.fresh().await;
    let store = Store::connect(&url).await.expect("store");
    let doc = store.create_doc(&Title::default()).await.expect("doc");
    let id: DocId = doc.id;
    let registry = Registry::new(
        store.clone(),
        DocSettings::from(&Config::defaults()),
        tandem::metrics::Metrics::new(),
        None,
    );
    // A queue as long as the trace: the bench's own subscriber never reads its echoes.
    let (handle, subscription) =
        registry.connect(id, messages.len() + 16, Peer::writer()).await.expect("connect");
    let start = Instant::now();
    for msg in messages {
        handle.client_message(subscription.conn, msg).await.expect("actor takes the message");
    }
    registry.flush(id).await.expect("flushed");
    let elapsed = start.elapsed();
    registry.shutdown(Duration::from_secs(30)).await;
    drop(store);
    backend.drop_database(pg_name).await;
    elapsed
}

fn actor_benches(c: &mut Criterion) {
    let Some(path) = std::env::var_os("TANDEM_TRACE").map(PathBuf::from) else {
        eprintln!(
            "skipping the actor benches: set TANDEM_TRACE, e.g. TANDEM_TRACE=../shared/traces/automerge-paper.json.gz"
        );
        return;
    };
    let trace = Trace::load(&path).expect("readable trace");
    let cache = std::env::var_os("TANDEM_BENCH_CACHE").map(PathBuf::from);
    let updates = encode_updates_cached(&path, &trace, 1, cache.as_deref()).expect("encodable trace");
    // What a connection hands the actor: each update as a checked message.
    let frames: Vec<Bytes> = updates.iter().map(|update| encode_update(update)).collect();
    let decode = || -> Vec<ClientMessage> {
        frames.iter().flat_map(|frame| decode_frame(frame, usize::MAX).expect("valid message")).collect()
    };
    let mut backends = vec![Backend::Sqlite];
    match std::env::var("TANDEM_BENCH_PG").or_else(|_| std::env::var("TEST_POSTGRES_URL")) {
        Ok(url) => backends.push(Backend::Postgres(url)),
        Err(_) => eprintln!("actor bench on Postgres skipped: set TANDEM_BENCH_PG to a Postgres server URL"),
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut group = c.benchmark_group("actor");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(updates.len() as u64));
    for backend in &backends {
        group.bench_function(format!("apply_and_store/{}/{name}", backend.name()), |b| {
            b.iter_custom(|iterations| {
                (0..iterations).map(|_| runtime.block_on(run_once(backend, decode()))).sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, actor_benches);
criterion_main!(benches);
