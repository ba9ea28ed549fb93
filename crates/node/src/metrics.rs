//! The node's Prometheus metrics, served at `GET /metrics` on the HTTP
//! listener in the OpenMetrics text format (which Prometheus scrapes
//! natively).
//!
//! The metrics live in one process-wide [`Metrics`] ([`get`]): a node
//! process is one node (its own log and the mirrors it serves, labelled by
//! log where it matters), and a global keeps the instrumentation
//! points (the writer thread, the gRPC handlers, the mirror tasks) free of
//! extra constructor parameters, as the default registries of the
//! Prometheus client libraries do. Values that the store already knows
//! exactly (entries per log) are read when the page is scraped rather than
//! tracked twice.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::logs::Logs;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The gRPC code name, e.g. "PERMISSION_DENIED".
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer's configured name (`--peer NAME=…`).
    pub peer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabel {
    /// The log id in hex.
    pub log: String,
    /// "true" for this node's own log, "false" for a mirror.
    pub own: String,
}

pub struct Metrics {
    /// Entries appended to this node's log (duplicates not counted).
    pub appends: Counter,
    /// Submissions refused, by gRPC code.
    pub refusals: Family<CodeLabel, Counter>,
    /// Events sequenced per flushed batch.
    pub batch_size: Histogram,
    /// Time of the store's append (write and flush) per batch.
    pub flush_seconds: Histogram,
    /// Events queued for the writer.
    pub queue_depth: Gauge,
    /// Entries a peer's newest checkpoint has that this node has not yet
    /// mirrored.
    pub mirror_lag: Family<PeerLabel, Gauge>,
    /// New equivocation evidence seen (a log showing two histories).
    pub equivocations: Counter,
    /// Entries per log, own and mirrored (read at scrape time).
    pub log_entries: Family<LogLabel, Gauge>,
    /// Entries per log appended and not yet indexed by its follower (read
    /// at scrape time).
    pub index_lag: Family<LogLabel, Gauge>,
    registry: Registry,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let appends = Counter::<u64, AtomicU64>::default();
        let refusals = Family::<CodeLabel, Counter>::default();
        // 1, 2, 4 … 4096 (MAX_GROUP) events.
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        // 100 µs … about 3.3 s.
        let flush_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        let queue_depth = Gauge::default();
        let mirror_lag = Family::<PeerLabel, Gauge>::default();
        let equivocations = Counter::default();
        let log_entries = Family::<LogLabel, Gauge>::default();
        let index_lag = Family::<LogLabel, Gauge>::default();
        let mut registry = Registry::default();
        registry.register("qtrace_appends", "Entries appended to this node's log", appends.clone());
        registry.register("qtrace_append_refusals", "Submitted events refused, by gRPC status code", refusals.clone());
        registry.register(
            "qtrace_append_batch_size",
            "Events sequenced into one batch (one flush) by the writer",
            batch_size.clone(),
        );
        registry.register(
            "qtrace_append_flush_seconds",
            "Time to write and flush one batch of entries, indexes and checkpoint",
            flush_seconds.clone(),
        );
        registry.register("qtrace_append_queue_depth", "Events waiting for the writer", queue_depth.clone());
        registry.register(
            "qtrace_mirror_lag_entries",
            "Entries in a peer's newest signed checkpoint not yet mirrored here",
            mirror_lag.clone(),
        );
        registry.register(
            "qtrace_equivocations",
            "Equivocation alarms: new evidence that a log showed two histories",
            equivocations.clone(),
        );
        registry.register("qtrace_log_entries", "Entries held per log, own and mirrored", log_entries.clone());
        registry.register(
            "qtrace_index_lag_entries",
            "Entries per log appended and not yet indexed (appends are refused past 262,144 by default)",
            index_lag.clone(),
        );
        Metrics {
            appends,
            refusals,
            batch_size,
            flush_seconds,
            queue_depth,
            mirror_lag,
            equivocations,
            log_entries,
            index_lag,
            registry,
        }
    }

    /// Counts one refused submission.
    pub fn refused(&self, code: tonic::Code) {
        self.refusals.get_or_create(&CodeLabel { code: qtrace_rpc::connect::code_name(code).to_string() }).inc();
    }

    /// Sets a peer's mirror lag from its checkpoint size and the mirror's.
    pub fn set_mirror_lag(&self, peer: &str, checkpoint_size: u64, mirrored: u64) {
        let lag = checkpoint_size.saturating_sub(mirrored);
        self.mirror_lag
            .get_or_create(&PeerLabel { peer: peer.to_string() })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }
}

/// The metrics page: refreshes the values read from the store, then
/// encodes every metric.
pub fn render(logs: &Logs) -> String {
    let metrics = get();
    for log in logs.all() {
        let own = log.log_id() == logs.own.log_id();
        let label = LogLabel { log: log.log_id().to_string(), own: own.to_string() };
        metrics.log_entries.get_or_create(&label).set(i64::try_from(log.head().size).unwrap_or(i64::MAX));
        metrics.index_lag.get_or_create(&label).set(i64::try_from(log.index_lag()).unwrap_or(i64::MAX));
    }
    let mut text = String::new();
    // Writing to a String cannot fail; an error here would be a bug in the
    // encoder, and a partial page is still better than none.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &metrics.registry) {
        tracing::error!(error = %e, "encoding metrics");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_every_metric() {
        let metrics = get();
        metrics.appends.inc();
        metrics.refused(tonic::Code::PermissionDenied);
        metrics.batch_size.observe(3.0);
        metrics.flush_seconds.observe(0.002);
        metrics.set_mirror_lag("north", 10, 4);
        let label = LogLabel { log: "ab".into(), own: "true".into() };
        metrics.index_lag.get_or_create(&label).set(17);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        for expected in [
            "qtrace_appends_total ",
            "qtrace_append_refusals_total{code=\"PERMISSION_DENIED\"} ",
            "qtrace_append_batch_size_bucket{le=\"4.0\"} ",
            "qtrace_append_flush_seconds_count ",
            "qtrace_append_queue_depth ",
            "qtrace_mirror_lag_entries{peer=\"north\"} 6",
            "qtrace_index_lag_entries{log=\"ab\",own=\"true\"} 17",
            // Other tests of this process record evidence: any count.
            "qtrace_equivocations_total ",
            "# EOF",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }
}
