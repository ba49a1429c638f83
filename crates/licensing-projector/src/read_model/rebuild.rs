//! `licensing-projector rebuild`: rebuilds the license view from the event store into a new table,
//! then swaps it in, without stopping the running projector.

use std::time::Instant;

use licensing_store::{
    Store, StoreError, Upcasters, hold_checkpoint, last_position, load_stream, scan_by_stream,
    stream_count, stream_ids_after,
};

use futures_util::StreamExt;
use licensing_domain::{self as domain, License};
use licensing_messages::event_codec;

use crate::read_model::ReadModelError;
use crate::read_model::fold::replay;
use crate::read_model::schema;
use crate::read_model::schema::view_table;
use crate::read_model::snapshots;
use crate::read_model::views::{write_view, write_views};

/// Licenses written per statement while rebuilding.
const BATCH: usize = 1000;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    /// Licenses (streams) rebuilt.
    pub streams: u64,
    /// Events replayed.
    pub events: u64,
    /// Seconds taken.
    pub seconds: f64,
}

const NEXT: &str = "license_views_next";

/// A snapshot of a rebuilt stream's final state when it is long enough to have one (ADR 0022): a
/// store whose licenses grew before snapshots existed gets them at once.
async fn snapshot_if_long(
    client: &impl licensing_store::GenericClient,
    stream: &str,
    state: &License,
) -> Result<(), StoreError> {
    if state.version >= snapshots::SNAPSHOT_EVERY {
        snapshots::write(client, &[(stream, state)]).await?;
    }
    Ok(())
}

/// Rebuilds into `license_views_next`, catches up with what was appended meanwhile while holding
/// the live follower's checkpoint (so it waits, and nothing is missed), then swaps the tables.
/// `progress(done, total)` is called as streams are rebuilt.
pub async fn rebuild(
    store: &Store,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, ReadModelError> {
    let started = Instant::now();
    schema::ensure(store).await?;
    let mut client = store.client().await?;
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {NEXT}"))
        .await
        .map_err(StoreError::from)?;
    client
        .batch_execute(&view_table(NEXT))
        .await
        .map_err(StoreError::from)?;
    let until = last_position(&**client).await?;
    let total = stream_count(&**client, until).await?;
    // One ordered scan of the events; each license is folded as its events go by, and the rows
    // are written in batches.
    let upcasters = Upcasters::new();
    let writer = store.client().await?;
    let (mut events, mut done) = (0u64, 0u64);
    let mut current: Option<(String, License)> = None;
    let mut batch: Vec<License> = Vec::with_capacity(BATCH);
    {
        let mut scan = std::pin::pin!(scan_by_stream(&**client, until, &upcasters).await?);
        while let Some(stored) = scan.next().await {
            let stored = stored?;
            if stored.stream_id == domain::PROBE_STREAM {
                continue;
            }
            if current
                .as_ref()
                .is_some_and(|(s, _)| *s != stored.stream_id)
            {
                if let Some((stream, state)) = current.take() {
                    snapshot_if_long(&**writer, &stream, &state).await?;
                    batch.push(state);
                    done += 1;
                }
                if batch.len() == BATCH {
                    write_views(&**writer, NEXT, &batch).await?;
                    batch.clear();
                    progress(done, total);
                }
            }
            let (stream, state) =
                current.get_or_insert_with(|| (stored.stream_id.clone(), License::default()));
            let event =
                event_codec::decode(&stored.event_type, stored.schema_version, &stored.payload)
                    .map_err(|source| ReadModelError::Undecodable {
                        stream: stream.clone(),
                        source,
                    })?;
            *state = domain::evolve(std::mem::take(state), &event);
            events += 1;
        }
    }
    if let Some((stream, state)) = current.take() {
        snapshot_if_long(&**writer, &stream, &state).await?;
        batch.push(state);
        done += 1;
    }
    write_views(&**writer, NEXT, &batch).await?;
    progress(done, total);
    drop(writer);

    // Catch up with what was appended meanwhile, holding the live follower's checkpoint so that it
    // waits, then swap.
    let tx = client.transaction().await.map_err(StoreError::from)?;
    hold_checkpoint(&tx, "license_views").await?;
    let recent = stream_ids_after(&*tx, until).await?;
    for stream in recent.iter().filter(|s| *s != domain::PROBE_STREAM) {
        let stored = load_stream(&*tx, stream, &Upcasters::new()).await?;
        write_view(&*tx, NEXT, &replay(stream, &stored)?).await?;
    }
    let indexes: String = schema::VIEW_INDEXES
        .iter()
        .map(|suffix| format!("ALTER INDEX {NEXT}_{suffix} RENAME TO license_views_{suffix};"))
        .collect();
    tx.batch_execute(&format!(
        "LOCK TABLE license_views IN ACCESS EXCLUSIVE MODE;
         DROP TABLE license_views;
         ALTER TABLE {NEXT} RENAME TO license_views;
         {indexes}"
    ))
    .await
    .map_err(StoreError::from)?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(RebuildReport {
        streams: done + recent.len() as u64,
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use licensing_store::testing::TestDatabase;

    use super::*;
    use crate::read_model::snapshots::state_as_of;
    use crate::read_model::snapshots::tests::{STREAM, folded, long_license, snapshot_versions};

    #[tokio::test]
    async fn a_rebuild_writes_the_snapshot_of_a_long_streams_final_state() {
        let db = TestDatabase::create().await;
        let store = db.store();
        crate::read_model::schema::ensure(&store).await.unwrap();
        let events = long_license(&store).await;
        let client = store.client().await.unwrap();
        client
            .execute("DELETE FROM license_snapshots", &[])
            .await
            .unwrap();
        rebuild(&store, |_, _| {}).await.unwrap();
        assert_eq!(snapshot_versions(&**client).await, [2_500]);
        let last = events.last().unwrap().recorded_at;
        let state = state_as_of(&**client, STREAM, last).await.unwrap();
        assert_eq!(state, folded(&events, last));
    }
}
