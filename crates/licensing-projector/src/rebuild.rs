//! `licensing-projector rebuild`: rebuilds the license view from the event store into a new table,
//! then swaps it in, without stopping the running projector.

use std::time::Instant;

use licensing_store::{Store, Upcasters, load_stream};

use futures_util::StreamExt;
use licensing_domain::{self as domain, License};
use licensing_messages::event_codec;

use crate::schema::{self, view_table};
use crate::views::{replay, write_view, write_views};

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

/// Rebuilds into `license_views_next`, catches up with what was appended meanwhile while holding
/// the live follower's checkpoint (so it waits, and nothing is missed), then swaps the tables.
/// `progress(done, total)` is called as streams are rebuilt.
pub async fn rebuild(
    store: &Store,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, String> {
    let started = Instant::now();
    schema::ensure(store).await.map_err(|e| e.to_string())?;
    let mut client = store.client().await.map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {NEXT}"))
        .await
        .map_err(|e| e.to_string())?;
    client
        .batch_execute(&view_table(NEXT))
        .await
        .map_err(|e| e.to_string())?;
    let until: i64 = client
        .query_one("SELECT coalesce(max(global_position), 0) FROM events", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    let total: i64 = client
        .query_one(
            "SELECT count(DISTINCT stream_id) FROM events WHERE global_position <= $1",
            &[&until],
        )
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    let total = total as u64;
    // One ordered scan of the events; each license is folded as its rows go by, and the rows are
    // written in batches.
    let rows = client
        .query_raw(
            "SELECT stream_id, event_type, schema_version, payload FROM events
              WHERE global_position <= $1 ORDER BY stream_id, stream_version",
            &[&until],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = std::pin::pin!(rows);
    let writer = store.client().await.map_err(|e| e.to_string())?;
    let (mut events, mut done) = (0u64, 0u64);
    let mut current: Option<(String, License)> = None;
    let mut batch: Vec<License> = Vec::with_capacity(BATCH);
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| e.to_string())?;
        let stream: String = row.get(0);
        if current.as_ref().is_some_and(|(s, _)| *s != stream) {
            if let Some((_, state)) = current.take() {
                batch.push(state);
                done += 1;
            }
            if batch.len() == BATCH {
                write_views(&**writer, NEXT, &batch).await?;
                batch.clear();
                progress(done, total);
            }
        }
        let (_, state) = current.get_or_insert_with(|| (stream.clone(), License::default()));
        let event = event_codec::decode(row.get(1), row.get(2), &row.get(3))
            .map_err(|e| format!("{stream}: {e}"))?;
        *state = domain::evolve(std::mem::take(state), &event);
        events += 1;
    }
    if let Some((_, state)) = current.take() {
        batch.push(state);
        done += 1;
    }
    write_views(&**writer, NEXT, &batch).await?;
    progress(done, total);
    drop(writer);

    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    tx.execute(
        "INSERT INTO checkpoints (name) VALUES ('license_views') ON CONFLICT (name) DO NOTHING",
        &[],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.query_one(
        "SELECT position FROM checkpoints WHERE name = 'license_views' FOR UPDATE",
        &[],
    )
    .await
    .map_err(|e| e.to_string())?;
    let recent: Vec<String> = tx
        .query(
            "SELECT DISTINCT stream_id FROM events WHERE global_position > $1",
            &[&until],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for stream in &recent {
        let stored = load_stream(&*tx, stream, &Upcasters::new())
            .await
            .map_err(|e| e.to_string())?;
        write_view(&*tx, NEXT, &replay(stream, &stored)?).await?;
    }
    tx.batch_execute(&format!(
        "LOCK TABLE license_views IN ACCESS EXCLUSIVE MODE;
         DROP TABLE license_views;
         ALTER TABLE {NEXT} RENAME TO license_views;
         ALTER INDEX {NEXT}_pkey RENAME TO license_views_pkey;
         ALTER INDEX {NEXT}_status RENAME TO license_views_status;
         ALTER INDEX {NEXT}_expire RENAME TO license_views_expire;"
    ))
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(RebuildReport {
        streams: done + recent.len() as u64,
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}
