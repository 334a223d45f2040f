//! What operators see inside a running server: counters, gauges and histograms, served at
//! `GET /metrics` in the OpenMetrics text format (which Prometheus reads), every name
//! prefixed `tandem_`.
//!
//! One [`Metrics`] per server (not a process-wide recorder): the handles are atomics, cheap
//! to bump on every frame, and each layer is handed the ones it counts. Imports nothing of
//! ours.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A WebSocket close code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

/// Why something was refused, or which kind of write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

/// Every metric of one server. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

pub struct Inner {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Open TCP connections (REST and WebSocket, half-open ones too).
    pub tcp_connections: Gauge,
    pub documents_open: Gauge,
    pub connects: Counter,
    /// Closed WebSocket connections by the close code sent or received (0: none, the
    /// socket just broke).
    pub closes: Family<CodeLabel, Counter>,
    pub updates_applied: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub frames_sent: Counter,
    /// Connections dropped because their queue was full (closed with 1013).
    pub slow_consumer_drops: Counter,
    /// Times a connection was held back for going over its message rate.
    pub throttled: Counter,
    /// Updates refused: `read_only`, `doc_too_big`, `storage_unavailable`.
    pub refused_writes: Family<ReasonLabel, Counter>,
    /// Requests and connections refused at the door: `full`, `address_full`, `doc_full`,
    /// `too_fast`.
    pub refused_connections: Family<ReasonLabel, Counter>,
    /// HTTP requests answered, by status.
    pub http_requests: Family<StatusLabel, Counter>,
    /// Updates per append to the log.
    pub persist_batch_updates: Histogram,
    /// How long each write took: `append`, `snapshot`.
    pub persist_seconds: Family<KindLabel, Histogram>,
    /// Applied updates not yet in the store, and their bytes.
    pub pending_updates: Gauge,
    pub pending_bytes: Gauge,
    pub storage_errors: Counter,
    /// Documents whose last write failed (each retries with backoff); `/readyz` says 503
    /// while there are any.
    pub documents_write_failing: Gauge,
    pub document_load_seconds: Histogram,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds from 100 µs to about 100 s.
fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tandem");
        let connections = Gauge::default();
        let tcp_connections = Gauge::default();
        let documents_open = Gauge::default();
        let connects = Counter::default();
        let closes = Family::<CodeLabel, Counter>::default();
        let updates_applied = Counter::default();
        let bytes_received = Counter::default();
        let bytes_sent = Counter::default();
        let frames_sent = Counter::default();
        let slow_consumer_drops = Counter::default();
        let throttled = Counter::default();
        let refused_writes = Family::<ReasonLabel, Counter>::default();
        let refused_connections = Family::<ReasonLabel, Counter>::default();
        let http_requests = Family::<StatusLabel, Counter>::default();
        let persist_batch_updates = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let persist_seconds =
            Family::<KindLabel, Histogram>::new_with_constructor(seconds_buckets as fn() -> Histogram);
        let pending_updates = Gauge::default();
        let pending_bytes = Gauge::default();
        let storage_errors = Counter::default();
        let documents_write_failing = Gauge::default();
        let document_load_seconds = seconds_buckets();

        let r = &mut registry;
        r.register("connections", "Open WebSocket connections", connections.clone());
        r.register("tcp_connections", "Open TCP connections, REST and WebSocket", tcp_connections.clone());
        r.register("documents_open", "Documents in memory", documents_open.clone());
        r.register("websocket_connects", "WebSocket connections opened", connects.clone());
        r.register(
            "websocket_closes",
            "WebSocket connections closed, by close code (0: broken)",
            closes.clone(),
        );
        r.register("updates_applied", "Document updates applied", updates_applied.clone());
        r.register_with_unit("received", "Bytes read from WebSockets", Unit::Bytes, bytes_received.clone());
        r.register_with_unit("sent", "Bytes written to WebSockets", Unit::Bytes, bytes_sent.clone());
        r.register("frames_sent", "WebSocket frames written", frames_sent.clone());
        r.register(
            "slow_consumer_drops",
            "Connections closed (1013) because their queue was full",
            slow_consumer_drops.clone(),
        );
        r.register("throttled", "Times a connection was held back for its message rate", throttled.clone());
        r.register("refused_writes", "Updates refused, by reason", refused_writes.clone());
        r.register(
            "refused_connections",
            "Connections refused at the door, by reason",
            refused_connections.clone(),
        );
        r.register("http_requests", "HTTP requests answered, by status", http_requests.clone());
        r.register(
            "persist_batch_updates",
            "Updates per write to the update log",
            persist_batch_updates.clone(),
        );
        r.register_with_unit(
            "persist",
            "Time a write to the store took, by kind",
            Unit::Seconds,
            persist_seconds.clone(),
        );
        r.register("pending_updates", "Applied updates not yet in the store", pending_updates.clone());
        r.register_with_unit(
            "pending",
            "Bytes of applied updates not yet in the store",
            Unit::Bytes,
            pending_bytes.clone(),
        );
        r.register("storage_errors", "Failed writes to the store (each is retried)", storage_errors.clone());
        r.register(
            "documents_write_failing",
            "Documents whose last write to the store failed (retrying)",
            documents_write_failing.clone(),
        );
        r.register_with_unit(
            "document_load",
            "Time to load a document",
            Unit::Seconds,
            document_load_seconds.clone(),
        );

        let inner = Inner {
            registry,
            connections,
            tcp_connections,
            documents_open,
            connects,
            closes,
            updates_applied,
            bytes_received,
            bytes_sent,
            frames_sent,
            slow_consumer_drops,
            throttled,
            refused_writes,
            refused_connections,
            http_requests,
            persist_batch_updates,
            persist_seconds,
            pending_updates,
            pending_bytes,
            storage_errors,
            documents_write_failing,
            document_load_seconds,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Every metric, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }

    pub fn refused_write(&self, reason: &'static str) {
        self.refused_writes.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn refused_connection(&self, reason: &'static str) {
        self.refused_connections.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn closed(&self, code: u16) {
        self.closes.get_or_create(&CodeLabel { code }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_counters_end_in_total() {
        let metrics = Metrics::new();
        metrics.updates_applied.inc_by(3);
        metrics.closed(1013);
        metrics.refused_write("read_only");
        metrics.persist_seconds.get_or_create(&KindLabel { kind: "append" }).observe(0.002);
        let text = metrics.render();
        assert!(text.contains("tandem_updates_applied_total 3"), "{text}");
        assert!(text.contains(r#"tandem_websocket_closes_total{code="1013"} 1"#), "{text}");
        assert!(text.contains(r#"tandem_refused_writes_total{reason="read_only"} 1"#), "{text}");
        assert!(text.contains(r#"tandem_persist_seconds_count{kind="append"} 1"#), "{text}");
        assert!(text.contains("# TYPE tandem_connections gauge"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
