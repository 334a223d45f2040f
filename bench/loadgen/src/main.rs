//! `tandem-bench`: run one benchmark scenario against a y-websocket server on this machine and print one JSON line.
//!
//! ```text
//! tandem-bench --url 'ws://127.0.0.1:8080/ws/{doc}' --create tandem --server-pid 1234 fanout --readers 100
//! tandem-bench limit ../shared/traces/automerge-paper.json.gz
//! tandem-bench report results.jsonl > tables.md
//! ```

use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

use tandem_bench::scenario::{self, Ctx, Figures};
use tandem_bench::stats::round;
use tandem_bench::target::{CreateMode, Target};
use tandem_bench::{report, system};

#[derive(Parser, Debug)]
#[command(version, about = "Load generator for y-websocket servers (tandem, the reference server, y-sweet)")]
struct Cli {
    /// WebSocket URL template; `{doc}` is replaced by the document's id. Only 127.0.0.1 is accepted.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:8080/ws/{doc}")]
    url: String,
    /// How documents are created: tandem's REST API, y-sweet's, or not at all (rooms open on demand).
    #[arg(long, global = true, value_enum, default_value_t = CreateMode::Tandem)]
    create: CreateMode,
    /// The server's pid, to read its CPU time and memory from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// A name for the server under test, copied into the JSON line (the report's column).
    #[arg(long, global = true, default_value = "server")]
    label: String,
    /// A name for this variant of the scenario (e.g. fanout-1000), copied into the JSON line (the report's table).
    #[arg(long, global = true)]
    case: Option<String>,
    /// The repetition number, copied into the JSON line.
    #[arg(long, global = true, default_value_t = 1)]
    run: u32,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// One writer, N readers on one document: delivery latency.
    Fanout(scenario::fanout::Args),
    /// Many documents, a few clients each, inserting as fast as the server acknowledges.
    Throughput(scenario::throughput::Args),
    /// Many idle, synced connections with awareness: server memory per connection.
    Idle(scenario::idle::Args),
    /// Replay an editing trace, one update per edit: time until an observer has the final text.
    Replay(scenario::replay::Args),
    /// Write a trace's whole history into a new document and print its id (before a restart).
    ColdFill(scenario::cold::FillArgs),
    /// Time a new client's full sync of a document written by cold-fill (after a restart).
    ColdMeasure(scenario::cold::MeasureArgs),
    /// yrs applying the trace in this process: the limit for any server built on it.
    Limit(scenario::limit::Args),
    /// Turn JSON lines of many runs into Markdown tables of medians and ratios.
    Report(report::Args),
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::Throughput(_) => "throughput",
            Scenario::Idle(_) => "idle",
            Scenario::Replay(_) => "replay",
            Scenario::ColdFill(_) => "cold-fill",
            Scenario::ColdMeasure(_) => "cold-measure",
            Scenario::Limit(_) => "limit",
            Scenario::Report(_) => "report",
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Scenario::Report(args) = &cli.scenario {
        return report::run(args);
    }
    let runtime = tokio::runtime::Runtime::new().context("start the tokio runtime")?;
    let cpu_before = system::own_cpu();
    let machine_before = system::machine_busy_cpu();
    let server_before = cli.server_pid.and_then(|pid| system::process_cpu(pid).ok());
    let started = Instant::now();
    let result = runtime.block_on(run(&cli));
    let wall = started.elapsed().as_secs_f64();
    let cpu = (system::own_cpu() - cpu_before).as_secs_f64();
    // CPU time of everything else on the machine while the scenario ran (other builds, other tests): a noisy
    // neighbour shows here. The server's share is left out when its pid is known.
    let server_cpu = server_before
        .zip(cli.server_pid.and_then(|pid| system::process_cpu(pid).ok()))
        .map_or(0.0, |(before, after)| (after - before).as_secs_f64());
    let other_cpu = machine_before
        .zip(system::machine_busy_cpu())
        .map(|(before, after)| ((after - before).as_secs_f64() - cpu - server_cpu).max(0.0));
    // Idle sockets are closed by dropping the runtime; do not wait for stragglers.
    runtime.shutdown_background();

    let mut line = Map::new();
    line.insert("scenario".into(), cli.scenario.name().into());
    line.insert("case".into(), cli.case.clone().unwrap_or_else(|| cli.scenario.name().into()).into());
    line.insert("label".into(), cli.label.clone().into());
    line.insert("run".into(), cli.run.into());
    let failed = match result {
        Ok(figures) => {
            line.extend(figures);
            false
        }
        Err(err) => {
            line.insert("error".into(), format!("{err:#}").into());
            true
        }
    };
    line.insert("wall_s".into(), round(wall, 3).into());
    line.insert("client_cpu_s".into(), round(cpu, 3).into());
    if let Some(other) = other_cpu {
        line.insert("other_cpu_s".into(), round(other, 3).into());
    }
    println!("{}", Value::Object(line));
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(cli: &Cli) -> Result<Figures> {
    if let Scenario::Limit(args) = &cli.scenario {
        return scenario::limit::run(args);
    }
    let ctx = Ctx { target: Target::new(&cli.url, cli.create)?, server_pid: cli.server_pid };
    match &cli.scenario {
        Scenario::Fanout(args) => scenario::fanout::run(&ctx, args).await,
        Scenario::Throughput(args) => scenario::throughput::run(&ctx, args).await,
        Scenario::Idle(args) => scenario::idle::run(&ctx, args).await,
        Scenario::Replay(args) => scenario::replay::run(&ctx, args).await,
        Scenario::ColdFill(args) => scenario::cold::fill(&ctx, args).await,
        Scenario::ColdMeasure(args) => scenario::cold::measure(&ctx, args).await,
        Scenario::Limit(_) | Scenario::Report(_) => {
            unreachable!("handled before the runtime starts")
        }
    }
}
