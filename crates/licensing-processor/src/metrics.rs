//! The processor's Prometheus metrics.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
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
    /// Per lane (worker), how long the oldest command it holds has waited to be settled.
    pub lane_ages: LaneAges,
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
            lane_ages: LaneAges::default(),
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
        r.register(
            "licensing_processor_lane_age_seconds",
            "Per lane, seconds the oldest command it holds has waited since the processor took it (0 when idle)",
            metrics.lane_ages.clone(),
        );
        metrics
    }
}

/// Per lane, since when it holds its oldest unsettled command: a lane that stops moving (a command
/// retried for ever, a store that never answers) shows as an age that keeps growing, while a busy
/// lane that moves stays at a batch's duration. Read at each scrape.
#[derive(Debug, Clone, Default)]
pub struct LaneAges(Arc<Mutex<Vec<Option<Instant>>>>);

impl LaneAges {
    /// Starts over with `lanes` idle lanes (the workers of a new consumer).
    pub fn reset(&self, lanes: usize) {
        *self.lock() = vec![None; lanes];
    }

    /// Lane `lane` holds commands, the oldest taken at `since`.
    pub fn hold(&self, lane: usize, since: Instant) {
        if let Some(slot) = self.lock().get_mut(lane) {
            *slot = Some(since);
        }
    }

    /// Lane `lane` has settled everything it held.
    pub fn idle(&self, lane: usize) {
        if let Some(slot) = self.lock().get_mut(lane) {
            *slot = None;
        }
    }

    /// Each lane's age now, in seconds.
    pub fn ages(&self) -> Vec<f64> {
        let now = Instant::now();
        self.lock()
            .iter()
            .map(|held| held.map_or(0.0, |since| now.duration_since(since).as_secs_f64()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Instant>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TypedMetric for LaneAges {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for LaneAges {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (lane, age) in self.ages().into_iter().enumerate() {
            let labels = [("lane", lane.to_string())];
            encoder.encode_family(&labels)?.encode_gauge(&age)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
