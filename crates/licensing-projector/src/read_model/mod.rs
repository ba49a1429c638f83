//! The read model: the projector's own tables (license views, owed calls, heartbeat days, the
//! probe log, the access schedule), the followers of the event store that write them, and their
//! rebuild. No HTTP and no broker here: the API, the console and the workers read through it.

pub(crate) mod fold;
pub(crate) mod probe_log;
pub(crate) mod rebuild;
pub(crate) mod schema;
pub(crate) mod snapshots;
pub(crate) mod time;
pub(crate) mod views;

use licensing_messages::event_codec::DecodeError;
use licensing_store::{RecordedEvent, Store, StoreError};
use serde_json::{Value, json};

use self::time::rfc3339;

/// Why the read model could not be read, written or rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    /// The store failed: unavailable (try again) or refusing the statement.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event this build cannot decode.
    #[error("{stream}: {source}")]
    Undecodable {
        /// The event's stream.
        stream: String,
        /// What is wrong with it.
        #[source]
        source: DecodeError,
    },
}

/// The projector's followers of the event store, by checkpoint name.
pub(crate) const FOLLOWERS: [&str; 2] = ["event_publisher", "license_views"];

/// Creates the projector's tables if they do not exist (benchmarks and tools; the projector does
/// it at start).
pub async fn ensure_schema(store: &Store) -> Result<(), licensing_store::StoreError> {
    schema::ensure(store).await
}

/// A stored event as the query API and the evidence pack show it.
pub(crate) fn event_json(e: &RecordedEvent) -> Value {
    json!({
        "event_id": e.event_id,
        "event_type": e.event_type,
        "stream_version": e.stream_version,
        "global_position": e.global_position,
        "schema_version": e.schema_version,
        "recorded_at": rfc3339(Some(e.recorded_at)),
        "metadata": e.metadata,
        "payload": e.payload,
    })
}
