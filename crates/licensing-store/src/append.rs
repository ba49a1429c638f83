//! Appends: atomic, at an expected version, idempotent by event id, in gap-safe global order.

use serde_json::Value;
use tokio_postgres::{GenericClient, ToStatement};
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::StreamAppend;

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written; the global position of each event, in order.
    Appended {
        /// Positions of the appended events, in the order given.
        positions: Vec<i64>,
    },
    /// Every event id was appended before: nothing written (an idempotent retry).
    Duplicate,
    /// A stream was not at the expected version: nothing written.
    Conflict {
        /// The stream that moved.
        stream_id: String,
    },
}

pub(crate) const APPEND: &str =
    "SELECT out_event_id, out_position FROM licensing_append($1, $2, $3, $4, $5, $6, $7)";

/// Appends to one or more streams in one call; at most one call per transaction (positions are
/// derived from the transaction id, ADR 0005). `statement` is [`APPEND`], prepared or not.
pub(crate) async fn append_in<S>(
    client: &impl GenericClient,
    statement: &S,
    appends: &[StreamAppend],
) -> Result<AppendOutcome, StoreError>
where
    S: ?Sized + ToStatement + Sync + Send,
{
    let count: usize = appends.iter().map(|a| a.events.len()).sum();
    if count == 0 {
        return Ok(AppendOutcome::Appended {
            positions: Vec::new(),
        });
    }
    let mut stream_ids = Vec::with_capacity(count);
    let mut versions = Vec::with_capacity(count);
    let mut event_ids = Vec::with_capacity(count);
    let mut types = Vec::with_capacity(count);
    let mut schema_versions = Vec::with_capacity(count);
    let mut payloads: Vec<&Value> = Vec::with_capacity(count);
    let mut metadata = Vec::with_capacity(count);
    for append in appends {
        for (i, event) in append.events.iter().enumerate() {
            stream_ids.push(append.stream_id.as_str());
            versions.push(append.expected_version + i as i64 + 1);
            event_ids.push(event.event_id);
            types.push(event.event_type.as_str());
            schema_versions.push(event.schema_version);
            payloads.push(&event.payload);
            // Serialised once, straight into the statement's buffer (no `Value` in between).
            metadata.push(tokio_postgres::types::Json(&event.metadata));
        }
    }
    let result = client
        .query(
            statement,
            &[
                &stream_ids,
                &versions,
                &event_ids,
                &types,
                &schema_versions,
                &payloads,
                &metadata,
            ],
        )
        .await;
    let rows = match result {
        Ok(rows) => rows,
        Err(error) => {
            if let Some(db) = error.as_db_error() {
                match db.code().code() {
                    "LS002" => {
                        return Ok(AppendOutcome::Conflict {
                            stream_id: db.detail().unwrap_or_default().to_owned(),
                        });
                    }
                    // A concurrent append took the same stream version first.
                    "23505" if db.constraint() == Some("events_stream_version_key") => {
                        let stream_id = db
                            .detail()
                            .and_then(|d| d.split("=(").nth(1))
                            .and_then(|d| d.split(", ").next())
                            .unwrap_or_default()
                            .to_owned();
                        return Ok(AppendOutcome::Conflict { stream_id });
                    }
                    // A concurrent append of the same events won.
                    "23505" if db.constraint() == Some("events_event_id_key") => {
                        return Ok(AppendOutcome::Duplicate);
                    }
                    _ => {}
                }
            }
            return Err(error.into());
        }
    };
    if rows.is_empty() {
        return Ok(AppendOutcome::Duplicate);
    }
    let by_id: std::collections::HashMap<Uuid, i64> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let positions = event_ids
        .iter()
        .map(|id| {
            by_id
                .get(id)
                .copied()
                .ok_or_else(|| StoreError::Decode(format!("no position returned for event {id}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(AppendOutcome::Appended { positions })
}
