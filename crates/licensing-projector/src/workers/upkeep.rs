//! The projector's upkeep: the gauges, refreshed every few seconds, and once a day on the
//! projector's clock the evidence log's partitions and expiry (D20).

use std::time::Duration;

use licensing_runtime::{CancellationToken, Clock};
use licensing_store::{Store, StoreError};
use time::UtcOffset;

use crate::metrics::Metrics;

/// How often the upkeep looks again.
const EVERY: Duration = Duration::from_secs(5);

/// Waits `EVERY` or until `cancel`.
async fn pause(cancel: &CancellationToken) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(EVERY) => {}
    }
}

/// Refreshes the gauges until `cancel`; a refresh that fails is logged and tried again.
pub(crate) async fn gauges(
    metrics: &Metrics,
    store: &Store,
    clock: &Clock,
    zone: UtcOffset,
    cancel: &CancellationToken,
) {
    while !cancel.is_cancelled() {
        let today = crate::read_model::time::today(clock, zone);
        if let Err(e) = metrics.refresh(store, today).await {
            tracing::warn!(error = %e, "cannot refresh the gauges");
        }
        pause(cancel).await;
    }
}

/// Once a day on `clock` until `cancel`: next month's partition, expiry by whole months (D20),
/// refusals by their own retention.
pub(crate) async fn evidence(
    store: &Store,
    clock: &Clock,
    retention: time::Duration,
    refused_retention: time::Duration,
    cancel: &CancellationToken,
) -> Result<(), StoreError> {
    let mut done: Option<time::Date> = None;
    while !cancel.is_cancelled() {
        let now = clock.now();
        let day = now.to_offset(UtcOffset::UTC).date();
        if done != Some(day) {
            store
                .maintain_evidence(now, retention, refused_retention)
                .await?;
            done = Some(day);
        }
        pause(cancel).await;
    }
    Ok(())
}
