//! The processor's Prometheus metrics.

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Counters and histograms, registered once.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Commands handled, by kind and outcome.
    pub commands: Family<Labels, Counter>,
    /// Seconds from the ingress receiving a command to its commit here, by kind.
    pub latency: Family<Labels, Histogram>,
    /// Messages sent to the dead-letter queue, by reason class.
    pub dead_letters: Family<Labels, Counter>,
    /// Store unavailability while applying a command (each wait).
    pub store_unavailable: Counter,
    /// Batches applied again because another writer moved a stream or took a nonce.
    pub conflicts: Counter,
    /// Commands per committed transaction.
    pub batch_size: Histogram,
    /// Command queue shards this processor reads now (ADR 0016).
    pub shards_held: Gauge,
    /// Records of refused requests stored.
    pub evidence_refusals: Counter,
    /// Records of refused requests not stored, by reason (`ceiling`, `unwritable`,
    /// `unavailable`, `unreadable`).
    pub evidence_dropped: Family<Labels, Counter>,
}

impl Metrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Arc<Mutex<Registry>>) -> Self {
        let metrics = Self {
            commands: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            dead_letters: Family::default(),
            store_unavailable: Counter::default(),
            conflicts: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            shards_held: Gauge::default(),
            evidence_refusals: Counter::default(),
            evidence_dropped: Family::default(),
        };
        let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
        r.register(
            "licensing_processor_commands",
            "Commands handled, by kind and outcome",
            metrics.commands.clone(),
        );
        r.register(
            "licensing_processor_latency_seconds",
            "From receipt at the ingress to commit, by kind",
            metrics.latency.clone(),
        );
        r.register(
            "licensing_processor_dead_letters",
            "Commands sent to the dead-letter queue, by reason",
            metrics.dead_letters.clone(),
        );
        r.register(
            "licensing_processor_conflicts",
            "Batches applied again after a concurrent change",
            metrics.conflicts.clone(),
        );
        r.register(
            "licensing_processor_store_unavailable",
            "Waits because PostgreSQL was unavailable",
            metrics.store_unavailable.clone(),
        );
        r.register(
            "licensing_processor_batch_size",
            "Commands applied together in one transaction",
            metrics.batch_size.clone(),
        );
        r.register(
            "licensing_processor_shards_held",
            "Command queue shards this processor reads now",
            metrics.shards_held.clone(),
        );
        r.register(
            "licensing_evidence_refusals_stored",
            "Records of refused callback requests stored",
            metrics.evidence_refusals.clone(),
        );
        r.register(
            "licensing_evidence_dropped",
            "Records of refused callback requests not stored, by reason",
            metrics.evidence_dropped.clone(),
        );
        metrics
    }
}
