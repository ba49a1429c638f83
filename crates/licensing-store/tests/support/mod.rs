//! Helpers shared by the store's test binaries: events with fresh ids, polling with a deadline,
//! and writers that keep appending through an outage.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use licensing_store::AppendOutcome;
use licensing_store::{EventMetadata, NewEvent};
use serde_json::json;
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

/// Four writers appending for `seconds`, retrying through outages; returns their acknowledged ids.
pub fn spawn_writers(
    store: &licensing_store::Store,
    seconds: u64,
) -> Vec<tokio::task::JoinHandle<(Vec<Uuid>, u32)>> {
    (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut acknowledged: Vec<Uuid> = Vec::new();
                let mut version = 0;
                let mut failures = 0;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
                while tokio::time::Instant::now() < deadline {
                    let e = event("x", version);
                    let id = e.event_id;
                    match store.append(&format!("w{w}"), version, vec![e]).await {
                        Ok(AppendOutcome::Appended { .. }) => {
                            acknowledged.push(id);
                            version += 1;
                        }
                        // The connection died after the commit: the retry of the same event is a duplicate.
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
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (acknowledged, failures)
            })
        })
        .collect()
}

/// Waits for the writers, checks the pool serves again and every acknowledged event is stored.
pub async fn check_nothing_acknowledged_was_lost(
    store: &licensing_store::Store,
    writers: Vec<tokio::task::JoinHandle<(Vec<Uuid>, u32)>>,
) {
    let mut acknowledged = Vec::new();
    for writer in writers {
        let (ids, _failures) = writer.await.unwrap();
        acknowledged.extend(ids);
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
    let stored: Vec<Uuid> = client
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
    assert!(
        acknowledged.len() > 20,
        "the writers made progress ({})",
        acknowledged.len()
    );
}
