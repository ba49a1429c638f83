//! Waiting on conditions with deadlines, never fixed sleeps.

use super::*;

/// Polls `check` until it returns `Some`, failing with `what` after `seconds`.
pub async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The messages of `stream` (each acknowledged, as JSON) until `until_count` arrived, or until none
/// came for 20 s.
pub async fn drain(stream: &mut licensing_bus::IncomingStream, until_count: usize) -> Vec<Value> {
    let mut received = Vec::new();
    while received.len() < until_count {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.next()).await;
        let Ok(Some(Ok(message))) = next else { break };
        message.ack().await.unwrap();
        received.push(serde_json::from_slice::<Value>(&message.body).unwrap());
    }
    received
}
