//! The ingress's Prometheus metrics.

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Counters and histograms, registered once.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Callbacks answered, by activity and result code.
    pub(crate) callbacks: Family<Labels, Counter>,
    /// Callbacks failing authentication, by reason.
    pub(crate) verification_failures: Family<Labels, Counter>,
    /// Seconds from publishing a command to the broker's confirm.
    pub(crate) publish_confirm: Histogram,
    /// Requests whose reply did not arrive before the deadline.
    pub(crate) reply_timeouts: Family<Labels, Counter>,
    /// Internal API requests, by route and HTTP status.
    pub(crate) internal_requests: Family<Labels, Counter>,
    /// Evidence records of requests answered without a decision, handed over, by kind.
    pub(crate) evidence_handed_over: Family<Labels, Counter>,
    /// Evidence records not kept, by reason (`rate_limited`, `hand_over_failed`).
    pub(crate) evidence_dropped: Family<Labels, Counter>,
}

impl Metrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(registry: &Arc<Mutex<Registry>>) -> Self {
        let metrics = Self {
            callbacks: Family::default(),
            verification_failures: Family::default(),
            publish_confirm: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            reply_timeouts: Family::default(),
            internal_requests: Family::default(),
            evidence_handed_over: Family::default(),
            evidence_dropped: Family::default(),
        };
        let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
        r.register(
            "licensing_ingress_callbacks",
            "Callbacks answered, by activity and result code",
            metrics.callbacks.clone(),
        );
        r.register(
            "licensing_ingress_verification_failures",
            "Callbacks failing authentication, by reason",
            metrics.verification_failures.clone(),
        );
        r.register(
            "licensing_ingress_publish_confirm_seconds",
            "From publishing a command to the broker's confirm",
            metrics.publish_confirm.clone(),
        );
        r.register(
            "licensing_ingress_reply_timeouts",
            "Requests answered before their commit was confirmed, by source",
            metrics.reply_timeouts.clone(),
        );
        r.register(
            "licensing_ingress_internal_requests",
            "Internal API requests, by route and status",
            metrics.internal_requests.clone(),
        );
        r.register(
            "licensing_evidence_handed_over",
            "Records of callback requests answered without a decision, handed over to be stored, by kind",
            metrics.evidence_handed_over.clone(),
        );
        r.register(
            "licensing_evidence_dropped",
            "Records of callback requests not kept, by reason (rate_limited, hand_over_failed)",
            metrics.evidence_dropped.clone(),
        );
        metrics
    }
}
