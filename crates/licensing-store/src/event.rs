//! Events as stored: what an append takes, and what a read returns.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Where an event came from and why: stored beside the payload, never interpreted by the store.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The command (or event) that caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The id shared by everything that followed one outside request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The queue message that carried the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
    /// Who sent the command: `koogallery`, `internal-api`, `outbound-worker`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The name of the API token behind an internal request (D20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// When the command was received, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at_ms: Option<i64>,
    /// The evidence record of the exchange with the marketplace that caused it: the callback, or
    /// the open-API call whose answer it records (D20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_id: Option<Uuid>,
    /// The W3C trace context of the work that appended it (ADR 0017): what follows from the event
    /// (its subscriber message, an outbound call) continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id; appending the same ids again writes nothing.
    pub event_id: Uuid,
    /// Stable type name.
    pub event_type: String,
    /// Version of the payload's schema for this type.
    pub schema_version: i32,
    /// The payload.
    pub payload: Value,
    /// Causation, correlation, message, source.
    pub metadata: EventMetadata,
}

/// Events for one stream, starting right after `expected_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    /// The stream, e.g. `license-PL0000000001`.
    pub stream_id: String,
    /// The version the stream must be at (0 for a new stream).
    pub expected_version: i64,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Position in the global order.
    pub global_position: i64,
    /// The stream.
    pub stream_id: String,
    /// Position in the stream, from 1.
    pub stream_version: i64,
    /// Unique id.
    pub event_id: Uuid,
    /// Type name.
    pub event_type: String,
    /// Schema version of `payload` (after upcasting).
    pub schema_version: i32,
    /// The payload (after upcasting).
    pub payload: Value,
    /// Causation, correlation, message, source.
    pub metadata: EventMetadata,
    /// When it was committed.
    pub recorded_at: OffsetDateTime,
}

/// Turns stored payloads of old schema versions into the current one.
///
/// Register one step per (type, version): it receives the payload at that version and returns it
/// at the next. Reads apply the steps until none applies, so an event stored years ago still loads.
#[derive(Default, Clone)]
pub struct Upcasters {
    steps: Vec<UpcastStep>,
}

/// One step: (event type, from schema version, function to the next version).
type UpcastStep = (String, i32, fn(Value) -> Value);

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<_> = self.steps.iter().map(|(t, v, _)| (t, v)).collect();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

impl Upcasters {
    /// No upcasting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step from `from_version` to `from_version + 1` for `event_type`.
    pub fn register(
        mut self,
        event_type: &str,
        from_version: i32,
        step: fn(Value) -> Value,
    ) -> Self {
        self.steps.push((event_type.to_owned(), from_version, step));
        self
    }

    /// Applies every step that applies, in order.
    pub fn apply(&self, event: &mut RecordedEvent) {
        while let Some((_, _, step)) = self
            .steps
            .iter()
            .find(|(t, v, _)| *t == event.event_type && *v == event.schema_version)
        {
            event.payload = step(std::mem::take(&mut event.payload));
            event.schema_version += 1;
        }
    }
}
