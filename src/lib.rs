//! tandem: a collaborative text editing server for Yjs clients.
//!
//! A tour, in the order data flows (socket -> actor -> store):

/// Access control: tokens, scopes, what each request may do.
pub mod auth;
/// Several instances behind a load balancer: fan-out through Redis pub/sub.
pub mod cluster;
/// Every setting: flag, then `TANDEM_*` environment variable, then default.
pub mod config;
/// Open documents: one actor per document owning its yrs `Doc` and awareness; the
/// y-websocket protocol, sans IO; the registry of open documents.
pub mod doc;
/// `tandem healthcheck`: asks a running server for `/readyz`.
pub mod healthcheck;
/// HTTP: REST API, `/ws/{id}` socket IO, health checks, the embedded web editor.
pub mod http;
/// Counters, gauges and histograms for operators, served at `/metrics`.
pub mod metrics;
/// Shared nouns (`DocId`, `Title`, `Doc`), used by every layer; imports nothing of ours.
pub mod model;
/// Startup and graceful shutdown; the one path `main` and the tests both take.
pub mod server;
/// Persistence: metadata, update log and snapshots on Postgres or embedded SQLite.
pub mod store;
