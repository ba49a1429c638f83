//! Reads: one stream in order, and every stream in global order for followers.

use std::collections::HashMap;

use tokio_postgres::types::Json;
use tokio_postgres::{GenericClient, Row, ToStatement};

use crate::error::StoreError;
use crate::event::{EventMetadata, RecordedEvent, Upcasters};

const COLUMNS: &str = "global_position, stream_id, stream_version, event_id, event_type, \
                       schema_version, payload, metadata, recorded_at";

/// Only events of transactions older than every transaction still running: nothing can commit
/// later below them (ADR 0005).
pub(crate) const SAFE: &str = "global_position < licensing_safe_position()";

fn decode(row: &Row, upcasters: &Upcasters) -> Result<RecordedEvent, StoreError> {
    // Straight from the column's bytes, not through a `Value`.
    let Json(metadata) = row
        .try_get::<_, Json<EventMetadata>>(7)
        .map_err(|e| StoreError::Decode(format!("metadata: {e}")))?;
    let mut event = RecordedEvent {
        global_position: row
            .try_get(0)
            .map_err(|e| StoreError::Decode(e.to_string()))?,
        stream_id: row
            .try_get(1)
            .map_err(|e| StoreError::Decode(e.to_string()))?,
        stream_version: row
            .try_get(2)
            .map_err(|e| StoreError::Decode(e.to_string()))?,
        event_id: row
            .try_get(3)
            .map_err(|e| StoreError::Decode(e.to_string()))?,
        event_type: row
            .try_get(4)
            .map_err(|e| StoreError::Decode(e.to_string()))?,
        schema_version: row
            .try_get(5)
            .map_err(|e| StoreError::Decode(e.to_string()))?,
        payload: row
            .try_get(6)
            .map_err(|e| StoreError::Decode(e.to_string()))?,
        metadata,
        recorded_at: row
            .try_get(8)
            .map_err(|e| StoreError::Decode(e.to_string()))?,
    };
    upcasters.apply(&mut event);
    Ok(event)
}

/// Every committed event of a stream, in stream order.
pub(crate) async fn load_in(
    client: &impl GenericClient,
    stream_id: &str,
    upcasters: &Upcasters,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version");
    let rows = client.query(&sql, &[&stream_id]).await?;
    rows.iter().map(|r| decode(r, upcasters)).collect()
}

/// The newest `last` events of a stream recorded at or before `until` (all times with `None`), in
/// order.
pub(crate) async fn load_tail_in(
    client: &impl GenericClient,
    stream_id: &str,
    last: i64,
    until: Option<time::OffsetDateTime>,
    upcasters: &Upcasters,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT * FROM (SELECT {COLUMNS} FROM events WHERE stream_id = $1
            AND ($3::timestamptz IS NULL OR recorded_at <= $3)
          ORDER BY stream_version DESC LIMIT $2) newest ORDER BY stream_version"
    );
    let rows = client.query(&sql, &[&stream_id, &last, &until]).await?;
    rows.iter().map(|r| decode(r, upcasters)).collect()
}

/// The events of some streams after a version each (the version of a state kept of it; 0 for
/// all), each stream's in order.
pub(crate) const LOAD_AFTER: &str = "SELECT e.global_position, e.stream_id, e.stream_version, \
     e.event_id, e.event_type, e.schema_version, e.payload, e.metadata, e.recorded_at \
     FROM unnest($1::text[], $2::bigint[]) AS kept(stream_id, after) \
     JOIN events e ON e.stream_id = kept.stream_id AND e.stream_version > kept.after \
     ORDER BY e.stream_id, e.stream_version";

/// The events of each stream after its version (one query for a batch); `statement` is
/// [`LOAD_AFTER`], prepared or not. A stream without such events maps to an empty list.
pub(crate) async fn load_after_in<S>(
    client: &impl GenericClient,
    statement: &S,
    streams: &[(&str, i64)],
    upcasters: &Upcasters,
) -> Result<HashMap<String, Vec<RecordedEvent>>, StoreError>
where
    S: ?Sized + ToStatement + Sync + Send,
{
    let (ids, after): (Vec<&str>, Vec<i64>) = streams.iter().copied().unzip();
    if streams.is_empty() {
        return by_stream(&ids, &[], upcasters);
    }
    let rows = client.query(statement, &[&ids, &after]).await?;
    by_stream(&ids, &rows, upcasters)
}

/// Rows of events ordered by stream, grouped by stream; each of `streams` maps to its events, an
/// empty list when it has none.
fn by_stream(
    streams: &[&str],
    rows: &[Row],
    upcasters: &Upcasters,
) -> Result<HashMap<String, Vec<RecordedEvent>>, StoreError> {
    let mut found: HashMap<String, Vec<RecordedEvent>> = streams
        .iter()
        .map(|id| ((*id).to_owned(), Vec::new()))
        .collect();
    for row in rows {
        let event = decode(row, upcasters)?;
        found
            .entry(event.stream_id.clone())
            .or_default()
            .push(event);
    }
    Ok(found)
}

/// The events of some streams at or below a global position (a follower's batch end), each
/// stream's in order.
const LOAD_UNTIL: &str = "SELECT e.global_position, e.stream_id, e.stream_version, \
     e.event_id, e.event_type, e.schema_version, e.payload, e.metadata, e.recorded_at \
     FROM unnest($1::text[]) AS s(stream_id) \
     JOIN events e ON e.stream_id = s.stream_id AND e.global_position <= $2 \
     ORDER BY e.stream_id, e.stream_version";

/// [`LOAD_UNTIL`]: each stream's events up to `until`, in one query. A stream without such events
/// maps to an empty list.
pub(crate) async fn load_until_in(
    client: &impl GenericClient,
    streams: &[&str],
    until: i64,
    upcasters: &Upcasters,
) -> Result<HashMap<String, Vec<RecordedEvent>>, StoreError> {
    if streams.is_empty() {
        return by_stream(streams, &[], upcasters);
    }
    let rows = client.query(LOAD_UNTIL, &[&streams, &until]).await?;
    by_stream(streams, &rows, upcasters)
}

/// Up to `limit` events after `after_position`, in global order, that are safe to follow.
pub(crate) async fn read_all_in(
    client: &impl GenericClient,
    after_position: i64,
    limit: i64,
    upcasters: &Upcasters,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE global_position > $1 AND {SAFE} \
         ORDER BY global_position LIMIT $2"
    );
    let rows = client.query(&sql, &[&after_position, &limit]).await?;
    rows.iter().map(|r| decode(r, upcasters)).collect()
}

/// Every event at or below `until`, ordered by stream then version, read as a stream (rebuilds:
/// one scan, each stream's events together).
pub(crate) async fn scan_by_stream_in<'a>(
    client: &'a impl GenericClient,
    until: i64,
    upcasters: &'a Upcasters,
) -> Result<impl futures_util::Stream<Item = Result<RecordedEvent, StoreError>> + 'a, StoreError> {
    use futures_util::StreamExt;
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE global_position <= $1 ORDER BY stream_id, stream_version"
    );
    let rows = client.query_raw(&sql, [&until]).await?;
    Ok(rows.map(move |row| decode(&row?, upcasters)))
}

/// One stream's events after version `after` recorded at or before `until`, in order, read as a
/// stream (a state as of an instant: folding overlaps the transfer).
pub(crate) async fn stream_until_in<'a>(
    client: &'a impl GenericClient,
    stream_id: &str,
    after: i64,
    until: time::OffsetDateTime,
    upcasters: &'a Upcasters,
) -> Result<impl futures_util::Stream<Item = Result<RecordedEvent, StoreError>> + 'a, StoreError> {
    use futures_util::StreamExt;
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 AND recorded_at <= $3 \
         ORDER BY stream_version"
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&stream_id, &after, &until];
    let rows = client.query_raw(&sql, params).await?;
    Ok(rows.map(move |row| decode(&row?, upcasters)))
}

/// For each stream and version, the latest `recorded_at` of the stream's events up to that
/// version (`None` for a stream without any), in one query.
pub(crate) async fn recorded_by_in(
    client: &impl GenericClient,
    streams: &[&str],
    versions: &[i64],
) -> Result<Vec<Option<time::OffsetDateTime>>, StoreError> {
    let rows = client
        .query(
            "SELECT (SELECT max(e.recorded_at) FROM events e
                      WHERE e.stream_id = u.stream_id AND e.stream_version <= u.version)
               FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS u(stream_id, version, n)
              ORDER BY u.n",
            &[&streams, &versions],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The ids of the streams with events after `position`.
pub(crate) async fn stream_ids_after_in(
    client: &impl GenericClient,
    position: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT DISTINCT stream_id FROM events WHERE global_position > $1",
            &[&position],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How many streams have events at or below `until`.
pub(crate) async fn stream_count_in(
    client: &impl GenericClient,
    until: i64,
) -> Result<u64, StoreError> {
    let count: i64 = client
        .query_one(
            "SELECT count(DISTINCT stream_id) FROM events WHERE global_position <= $1",
            &[&until],
        )
        .await?
        .get(0);
    Ok(count.max(0) as u64)
}
