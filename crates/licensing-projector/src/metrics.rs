//! The projector's Prometheus metrics.

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Counters, registered once.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Marketplace calls, by kind and disposition (`credentials` means the AK/SK was refused).
    pub(crate) calls: Family<Labels, Counter>,
}

impl Metrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(registry: &Arc<Mutex<Registry>>) -> Self {
        let metrics = Self {
            calls: Family::default(),
        };
        let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
        r.register(
            "licensing_outbound_calls",
            "Marketplace calls, by kind and disposition",
            metrics.calls.clone(),
        );
        metrics
    }
}
