//! `licensing-projector rebuild`: rebuilds the license view from the event store into a new table,
//! then swaps it in, without stopping the running projector.

use std::time::Instant;

use licensing_store::{Store, Upcasters, load_stream};

use crate::schema::{self, view_table};
use crate::views::{replay, write_view};

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
    let streams: Vec<String> = client
        .query(
            "SELECT DISTINCT stream_id FROM events WHERE global_position <= $1",
            &[&until],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let total = streams.len() as u64;
    let mut events = 0u64;
    for (i, stream) in streams.iter().enumerate() {
        let stored = load_stream(&**client, stream, &Upcasters::new())
            .await
            .map_err(|e| e.to_string())?;
        events += stored.len() as u64;
        write_view(&**client, NEXT, &replay(stream, &stored)?).await?;
        progress(i as u64 + 1, total);
    }

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
        streams: total + recent.len() as u64,
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}
