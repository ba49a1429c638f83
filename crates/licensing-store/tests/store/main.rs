//! The event store against the real PostgreSQL, each test on a database of its own.

mod append;
mod follower;
mod gap_safety;
mod inbox;
mod outage;

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
