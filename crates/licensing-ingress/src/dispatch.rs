//! Handing a command to the processor: publish with confirm, then wait for the reply.

use std::time::{Duration, Instant};

use licensing_messages::{CommandEnvelope, Reply};

use crate::connection::Connection;
use crate::metrics::Metrics;

/// How a hand-over ended.
#[derive(Debug)]
pub(crate) enum Dispatched {
    /// The processor committed and answered.
    Replied(Reply),
    /// The broker confirmed the command (it will be applied), but no answer came in time.
    Pending,
    /// The broker did not take the command: nothing will happen.
    Unavailable(String),
}

/// The `traceparent` header of a request, when it has one.
pub(crate) fn traceparent(req: &actix_web::HttpRequest) -> Option<&str> {
    req.headers()
        .get(licensing_runtime::trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
}

/// Publishes `envelope` (confirmed, with its trace context) and waits up to `deadline` for the reply.
pub(crate) async fn dispatch(
    connection: &Connection,
    metrics: &Metrics,
    envelope: &CommandEnvelope,
    deadline: Duration,
) -> Dispatched {
    let Some(link) = connection.get() else {
        return Dispatched::Unavailable("not connected to the broker".to_owned());
    };
    let started = Instant::now();
    // One id per attempt: two concurrent requests with the same message id must not share a reply slot.
    let correlation = uuid::Uuid::new_v4().to_string();
    let waiting = link.replies.expect(&correlation);
    let published = link
        .bus
        .publish_command(
            envelope.license(),
            &envelope.to_bytes(),
            envelope.message_id.to_string(),
            correlation,
            Some(link.replies.queue().to_owned()),
            envelope.trace_parent.as_deref(),
        )
        .await;
    if let Err(e) = published {
        return Dispatched::Unavailable(e.to_string());
    }
    metrics
        .publish_confirm
        .observe(started.elapsed().as_secs_f64());
    let left = deadline.saturating_sub(started.elapsed());
    match waiting.wait(left).await {
        Some(bytes) => match serde_json::from_slice::<Reply>(&bytes) {
            Ok(reply) => Dispatched::Replied(reply),
            Err(e) => {
                tracing::error!(error = %e, "unreadable reply from the processor");
                Dispatched::Pending
            }
        },
        None => Dispatched::Pending,
    }
}
