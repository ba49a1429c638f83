//! Helpers shared by the store's test binaries: events with fresh ids, polling with a deadline,
//! and writers that keep appending through an outage until told to stop.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use licensing_store::AppendOutcome;
use licensing_store::{EventMetadata, NewEvent};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// An event with a fresh id.
pub fn event(event_type: &str, n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        payload: json!({ "n": n }),
        metadata: EventMetadata {
            correlation_id: Some(Uuid::new_v4()),
            source: Some("test".to_owned()),
            ..EventMetadata::default()
        },
    }
}

/// Polls `check` until it returns `Some`, failing with `what` after `seconds`.
pub async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Four writers appending until told to stop, retrying through outages.
pub struct Writers {
    handles: Vec<tokio::task::JoinHandle<Vec<Uuid>>>,
    acknowledged: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Writers {
    /// Starts them.
    pub fn spawn(store: &licensing_store::Store) -> Self {
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let handles = (0..4)
            .map(|w| {
                let (store, count, stop) = (store.clone(), acknowledged.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut ids: Vec<Uuid> = Vec::new();
                    let mut version = 0;
                    while !stop.is_cancelled() {
                        let e = event("x", version);
                        let id = e.event_id;
                        match store.append(&format!("w{w}"), version, vec![e]).await {
                            Ok(AppendOutcome::Appended { .. }) => {
                                ids.push(id);
                                version += 1;
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                            // The connection died after the commit: the retry of the same event
                            // is a duplicate.
                            Ok(AppendOutcome::Conflict { .. }) => {
                                version = store
                                    .load(&format!("w{w}"))
                                    .await
                                    .map(|l| l.len() as i64)
                                    .unwrap_or(version);
                            }
                            Ok(AppendOutcome::Duplicate) => unreachable!("fresh ids"),
                            Err(e) => {
                                assert!(e.is_unavailable(), "only unavailability is expected: {e}");
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    ids
                })
            })
            .collect();
        Self {
            handles,
            acknowledged,
            stop,
        }
    }

    /// Waits until `more` appends beyond those acknowledged so far are acknowledged: the load is
    /// running (again).
    pub async fn progress(&self, more: usize) {
        let target = self.acknowledged.load(Ordering::SeqCst) + more;
        eventually(&format!("{more} more acknowledged appends"), 60, || async {
            (self.acknowledged.load(Ordering::SeqCst) >= target).then_some(())
        })
        .await;
    }
}

/// Stops the writers, checks the pool serves again and every acknowledged event is stored.
pub async fn check_nothing_acknowledged_was_lost(store: &licensing_store::Store, writers: Writers) {
    writers.stop.cancel();
    let mut acknowledged = Vec::new();
    for writer in writers.handles {
        acknowledged.extend(writer.await.unwrap());
    }
    // The pool serves again.
    eventually("an append after the outage", 30, || async {
        matches!(
            store.append("after", 0, vec![event("x", 0)]).await,
            Ok(AppendOutcome::Appended { .. })
        )
        .then_some(())
    })
    .await;
    let client = store.client().await.unwrap();
    let stored: std::collections::HashSet<Uuid> = client
        .query("SELECT event_id FROM events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}
