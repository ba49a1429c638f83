//! The refusal writer: records of refused callback requests come on a queue of their own, apart
//! from every command lane, and are written best effort, one at a time, in transactions of their
//! own. A record that cannot be written is counted (`licensing_evidence_dropped_total{reason}`)
//! and dropped: never retried without end, never dead-lettered, never in a license's way.

use std::time::Duration;

use licensing_bus::{Bus, Incoming};
use licensing_messages::{CommandBody, CommandEnvelope};
use licensing_runtime::{Backoff, CancellationToken};
use licensing_store::Store;

use crate::metrics::Metrics;

/// Tries at writing one record while PostgreSQL is unavailable, before it is dropped.
const TRIES: u32 = 3;

/// Writes the refusals queue's records until `cancel`; each message is acknowledged once its
/// record is stored or dropped.
pub(crate) async fn write(
    store: &Store,
    bus: &Bus,
    metrics: &Metrics,
    max_bytes_per_day: i64,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let mut records = bus.consume_refusals(16).await.map_err(|e| e.to_string())?;
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            next = records.next() => next,
        };
        let incoming = match next {
            Some(Ok(incoming)) => incoming,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the refusals consumer ended".to_owned()),
        };
        match store_one(store, &incoming, max_bytes_per_day, cancel).await {
            Ok(()) => metrics.evidence_refusals.inc(),
            Err(reason) => metrics
                .evidence_dropped
                .get_or_create(&vec![("reason", reason.to_owned())])
                .inc(),
        };
        incoming.ack().await.map_err(|e| e.to_string())?;
    }
}

/// Stores one record, or says why it was dropped.
async fn store_one(
    store: &Store,
    incoming: &Incoming,
    max_bytes_per_day: i64,
    cancel: &CancellationToken,
) -> Result<(), &'static str> {
    let envelope = CommandEnvelope::from_bytes(&incoming.body).map_err(|_| "unreadable")?;
    let CommandBody::RecordInbound(record) = &envelope.command else {
        return Err("unreadable");
    };
    let exchange = crate::evidence::undecided(&envelope, record);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut attempt = 1;
    loop {
        match store.record_refusal(&exchange, max_bytes_per_day).await {
            Ok(true) => return Ok(()),
            Ok(false) => return Err("ceiling"),
            Err(e) if e.is_unavailable() => {
                if attempt == TRIES || !backoff.wait(cancel).await {
                    return Err("unavailable");
                }
                attempt += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a refused request's record cannot be written; dropped");
                return Err("unwritable");
            }
        }
    }
}
