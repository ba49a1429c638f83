//! The event publisher: every committed event goes to `licensing.events` with routing key
//! `license.<event_type>` (`test.license.<event_type>` for sandbox streams, `probe.<event_type>`
//! for the probe log), as a versioned JSON envelope. A batch is sent whole, and several batches are
//! in flight before the oldest's confirms are awaited ([`IN_FLIGHT`]); the follower's checkpoint
//! moves past a batch only after the broker confirmed all of it: at least once, in order per
//! license (one channel; the event store is the outbox).

use licensing_bus::{Bus, EventMessage, PendingConfirms};
use licensing_runtime::trace::{Span, SpanKind};
use licensing_store::{Pipelined, RecordedEvent};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

/// Batches handed to the broker before the oldest one's confirms are awaited: while the broker
/// confirms one, the next are read, encoded and sent.
pub(crate) const IN_FLIGHT: usize = 4;

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

/// Publishes each batch; the checkpoint moves past it once the broker confirmed it.
#[derive(Debug)]
pub(crate) struct Publisher<'a> {
    /// The connected bus.
    pub(crate) bus: &'a Bus,
}

/// A batch handed to the broker: its confirms, and the spans that end with them.
#[derive(Debug)]
pub(crate) struct Sent {
    confirms: PendingConfirms,
    spans: Vec<Option<Span>>,
}

impl Pipelined for Publisher<'_> {
    type Error = licensing_bus::BusError;
    type Started = Sent;

    async fn start(&mut self, events: &[RecordedEvent]) -> Result<Sent, Self::Error> {
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
        let confirms = self.bus.send_events(&messages).await?;
        Ok(Sent { confirms, spans })
    }

    async fn finish(&mut self, sent: Sent) -> Result<(), Self::Error> {
        // The spans end once the broker has confirmed.
        let settled = sent.confirms.settled().await;
        drop(sent.spans);
        settled
    }
}
