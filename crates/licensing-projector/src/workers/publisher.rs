//! The event publisher: every committed event goes to `licensing.events` with routing key
//! `license.<event_type>` (`test.license.<event_type>` for sandbox streams, `probe.<event_type>`
//! for the probe log), as a versioned JSON envelope. A batch is sent whole and its confirms are
//! awaited together; the follower's checkpoint moves only after the broker confirmed all of it: at
//! least once, in order per license (the event store is the outbox).

use licensing_bus::{Bus, EventMessage};
use licensing_runtime::trace::{Span, SpanKind};
use licensing_store::{Handler, RecordedEvent, Transaction};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

/// The subscriber envelope's version.
pub const EVENT_ENVELOPE_VERSION: u32 = 1;

/// Where an event is published, and what subscribers receive.
pub fn envelope(event: &RecordedEvent) -> (String, Value) {
    let (sandbox, license) = match event.stream_id.strip_prefix("test-license-") {
        Some(code) => (true, code),
        None => (
            false,
            event
                .stream_id
                .strip_prefix("license-")
                .unwrap_or(&event.stream_id),
        ),
    };
    let probe = event.stream_id == licensing_domain::PROBE_STREAM;
    let routing_key = if probe {
        format!("probe.{}", event.event_type)
    } else {
        format!(
            "{}license.{}",
            if sandbox { "test." } else { "" },
            event.event_type
        )
    };
    let occurred_at = event.payload["at_ms"]
        .as_i64()
        .and_then(koogallery::market_time::from_unix_millis)
        .and_then(|t| t.format(&Rfc3339).ok());
    let mut payload = event.payload.clone();
    if let Some(map) = payload.as_object_mut() {
        map.remove("at_ms");
    }
    let body = json!({
        "v": EVENT_ENVELOPE_VERSION,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "license": if probe { None } else { Some(license) },
        "sandbox": sandbox,
        "stream_version": event.stream_version,
        "global_position": event.global_position,
        "occurred_at": occurred_at,
        "recorded_at": event.recorded_at.format(&Rfc3339).ok(),
        "causation_id": event.metadata.causation_id,
        "correlation_id": event.metadata.correlation_id,
        "schema_version": event.schema_version,
        "payload": payload,
    });
    (routing_key, body)
}

/// Publishes each batch before its checkpoint commits.
#[derive(Debug)]
pub(crate) struct Publisher<'a> {
    /// The connected bus.
    pub(crate) bus: &'a Bus,
}

impl Handler for Publisher<'_> {
    type Error = licensing_bus::BusError;

    async fn handle(
        &mut self,
        _tx: &Transaction<'_>,
        events: &[RecordedEvent],
    ) -> Result<(), Self::Error> {
        let mut spans = Vec::with_capacity(events.len());
        let mut encoded = Vec::with_capacity(events.len());
        for event in events {
            let (routing_key, body) = envelope(event);
            // The subscriber message continues the trace of the work that appended the event.
            let mut span = event
                .metadata
                .trace_parent
                .as_deref()
                .map(|parent| Span::start("publish event", SpanKind::Producer, Some(parent)));
            if let Some(span) = &mut span {
                span.set("messaging.destination", &routing_key);
                span.set("event.type", &event.event_type);
            }
            let trace = span.as_ref().and_then(Span::traceparent);
            encoded.push((routing_key, body.to_string(), trace));
            spans.push(span);
        }
        let messages: Vec<EventMessage<'_>> = events
            .iter()
            .zip(&encoded)
            .map(|(event, (routing_key, body, trace))| EventMessage {
                routing_key,
                body: body.as_bytes(),
                message_id: event.event_id.to_string(),
                trace: trace.as_deref(),
            })
            .collect();
        // The whole batch in flight at once, its confirms awaited together (in order on the one
        // channel, so per license too); the spans end once the broker has confirmed.
        let published = self.bus.publish_events(&messages).await;
        drop(spans);
        published
    }
}
