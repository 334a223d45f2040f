//! tandem-bench: a load generator for y-websocket servers.
//!
//! It speaks the y-websocket protocol itself (through `yrs::sync`) so the same scenarios run against tandem, the
//! reference server (`@y/websocket-server`) and y-sweet, on this machine only. Each scenario stops by itself and
//! prints one JSON line. The tour, in the order data flows:

/// One y-websocket connection: connect (from a chosen source address), sync, encode and decode frames.
pub mod client;
/// A tiny HTTP/1.1 client for the two REST calls we need (creating documents), loopback only.
pub mod http;
/// Turns the JSON lines of many runs into the Markdown tables of docs/BENCHMARKS.md.
pub mod report;
/// The scenarios, one file each.
pub mod scenario;
/// Latency summaries (percentiles) and medians.
pub mod stats;
/// Numbers about processes: our own CPU time, a server's CPU time and memory, the file descriptor limit.
pub mod system;
/// The target: a WebSocket URL template, how documents are created, and the 127.0.0.1-only guard.
pub mod target;
/// Editing traces: reading the gzipped JSON and turning every edit into one Yjs update.
pub mod trace;
