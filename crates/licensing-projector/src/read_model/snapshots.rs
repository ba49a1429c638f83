//! Snapshots of licenses' folded states, for as-of reads (ADR 0022): the view follower writes one
//! each time a stream passes a multiple of [`SNAPSHOT_EVERY`] events, and a state as of an instant
//! is the newest snapshot usable then, plus the events after it recorded by then.

use futures_util::StreamExt;
use licensing_domain::License;
use licensing_messages::state_codec::{self, SNAPSHOT_FORMAT};
use licensing_store::{GenericClient, StoreError, Upcasters};
use time::OffsetDateTime;

use crate::read_model::ReadModelError;
use crate::read_model::fold::apply;

/// A snapshot every this many events of a stream.
pub(crate) const SNAPSHOT_EVERY: u64 = 1_000;

/// Whether a stream that went from `before` to `after` events passed a multiple of
/// [`SNAPSHOT_EVERY`].
pub(crate) fn due(before: u64, after: u64) -> bool {
    after / SNAPSHOT_EVERY > before / SNAPSHOT_EVERY
}

/// Writes a snapshot of each `(stream, state)`: one read of the recorded times, one insert.
pub(crate) async fn write(
    client: &impl GenericClient,
    states: &[(&str, &License)],
) -> Result<(), StoreError> {
    if states.is_empty() {
        return Ok(());
    }
    let streams: Vec<&str> = states.iter().map(|(stream, _)| *stream).collect();
    let versions: Vec<i64> = states.iter().map(|(_, s)| s.version as i64).collect();
    let recorded = licensing_store::recorded_by(client, &streams, &versions).await?;
    let (mut kept, mut valid_from) = (Vec::new(), Vec::new());
    for (i, recorded) in recorded.into_iter().enumerate() {
        // A folded state always has its events; a stream without any has nothing to snapshot.
        if let Some(recorded) = recorded {
            kept.push(i);
            valid_from.push(recorded);
        }
    }
    let streams: Vec<&str> = kept.iter().map(|&i| streams[i]).collect();
    let versions: Vec<i64> = kept.iter().map(|&i| versions[i]).collect();
    let json: Vec<String> = kept
        .iter()
        .map(|&i| state_codec::encode(states[i].1))
        .collect();
    client
        .execute(
            "INSERT INTO license_snapshots (stream_id, version, format, valid_from, state)
             SELECT stream_id, version, $5, valid_from, state
               FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[])
                 AS u(stream_id, version, valid_from, state)
             ON CONFLICT (stream_id, version) DO UPDATE
             SET format = EXCLUDED.format, valid_from = EXCLUDED.valid_from, state = EXCLUDED.state",
            &[&streams, &versions, &valid_from, &json, &SNAPSHOT_FORMAT],
        )
        .await?;
    Ok(())
}

/// The newest snapshot of `stream` usable at `at`, if any. One that does not decode, or whose
/// state is not at its row's version, is logged and not used: the read then folds from the start.
async fn newest_before(
    client: &impl GenericClient,
    stream: &str,
    at: OffsetDateTime,
) -> Result<Option<License>, StoreError> {
    let row = client
        .query_opt(
            "SELECT version, state FROM license_snapshots
             WHERE stream_id = $1 AND format = $2 AND valid_from <= $3
             ORDER BY version DESC LIMIT 1",
            &[&stream, &SNAPSHOT_FORMAT, &at],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let version: i64 = row.get(0);
    let state = state_codec::decode(row.get(1)).and_then(|state| {
        if state.version as i64 == version {
            Ok(state)
        } else {
            Err(state_codec::StateError::at_version(state.version, version))
        }
    });
    Ok(state
        .inspect_err(|e| {
            tracing::error!(stream, version, error = %e, "a snapshot cannot be used; folding from the start");
        })
        .ok())
}

/// The state of `stream` as of `at`, as reads see it (without its decided callbacks, which a
/// snapshot does not keep): the newest snapshot usable then, folded on with the events after it
/// recorded by then (from nothing without a snapshot).
pub(crate) async fn state_as_of(
    client: &impl GenericClient,
    stream: &str,
    at: OffsetDateTime,
) -> Result<License, ReadModelError> {
    let mut state = newest_before(client, stream, at).await?.unwrap_or_default();
    let upcasters = Upcasters::new();
    let after = state.version as i64;
    let events = licensing_store::stream_until(client, stream, after, at, &upcasters).await?;
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        state = apply(state, stream, &event?)?;
    }
    Ok(state.without_decided_callbacks())
}

#[cfg(test)]
pub(crate) mod tests {
    use licensing_domain::{self as domain, Event, LicenseCode, MarketTime, Timestamp};
    use licensing_messages::event_codec;
    use licensing_store::testing::TestDatabase;
    use licensing_store::{NewEvent, RecordedEvent, Store};

    use super::*;
    use crate::read_model::fold::replay;

    pub(crate) const STREAM: &str = "license-SNAP1";

    pub(crate) fn stored(event: &Event) -> NewEvent {
        let (event_type, payload) = event_codec::encode(event);
        NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type,
            schema_version: event_codec::SCHEMA_VERSION,
            payload,
            metadata: Default::default(),
        }
    }

    /// A license registered, then renewed 2,499 times, appended 100 events per transaction (so
    /// 25 recorded instants).
    pub(crate) async fn long_license(store: &Store) -> Vec<RecordedEvent> {
        let mut events = vec![stored(&Event::Registered(domain::Registered {
            license: LicenseCode::parse("SNAP1").unwrap(),
            sandbox: false,
            origin: domain::Origin::Callback,
            at: Timestamp::from_millis(1),
        }))];
        for i in 1..2_500i64 {
            events.push(stored(&Event::Renewed(domain::Renewed {
                order_id: "CS1".into(),
                order_line_id: format!("CS1-{i:06}"),
                scene: domain::Scene::Other("RENEWAL".into()),
                product_id: Some(format!("P{}", i % 7)),
                expire: MarketTime {
                    instant: Timestamp::from_millis(1_800_000_000_000 + i * 86_400_000),
                    raw: format!("{i:014}"),
                },
                at: Timestamp::from_millis(1 + i),
            })));
        }
        for (n, chunk) in events.chunks(100).enumerate() {
            store
                .append(STREAM, (n * 100) as i64, chunk.to_vec())
                .await
                .unwrap();
        }
        store.load(STREAM).await.unwrap()
    }

    /// The full fold of the events recorded by `at`: what an as-of read must give (reads see no
    /// decided callbacks).
    pub(crate) fn folded(events: &[RecordedEvent], at: OffsetDateTime) -> License {
        let then: Vec<RecordedEvent> = events
            .iter()
            .filter(|e| e.recorded_at <= at)
            .cloned()
            .collect();
        replay(STREAM, &then).unwrap().without_decided_callbacks()
    }

    pub(crate) async fn snapshot_versions(client: &impl GenericClient) -> Vec<i64> {
        client
            .query(
                "SELECT version FROM license_snapshots WHERE stream_id = $1 ORDER BY version",
                &[&STREAM],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    #[tokio::test]
    async fn a_state_as_of_any_instant_from_snapshots_equals_the_full_fold() {
        let db = TestDatabase::create().await;
        let store = db.store();
        crate::read_model::schema::ensure(&store).await.unwrap();
        let events = long_license(&store).await;
        let client = store.client().await.unwrap();
        // As the view follower writes them: at the end of the batches that passed 1,000 and 2,000
        // events (the follower's test shows it does).
        let at_1200 = replay(STREAM, &events[..1_200]).unwrap();
        let at_2100 = replay(STREAM, &events[..2_100]).unwrap();
        write(&**client, &[(STREAM, &at_1200), (STREAM, &at_2100)])
            .await
            .unwrap();
        assert_eq!(snapshot_versions(&**client).await, [1_200, 2_100]);

        let mut instants: Vec<OffsetDateTime> = events.iter().map(|e| e.recorded_at).collect();
        instants.dedup();
        assert_eq!(instants.len(), 25, "one instant per append");
        let probes: Vec<OffsetDateTime> = instants
            .iter()
            .flat_map(|t| [*t - time::Duration::microseconds(1), *t])
            .collect();
        for at in &probes {
            let state = state_as_of(&**client, STREAM, *at).await.unwrap();
            assert_eq!(state, folded(&events, *at), "as of {at}");
        }

        // A snapshot of another format, or one that does not decode, is passed over.
        client
            .execute(
                "UPDATE license_snapshots SET format = 0 WHERE version = 2100",
                &[],
            )
            .await
            .unwrap();
        client
            .execute(
                "UPDATE license_snapshots SET state = '{}' WHERE version = 1200",
                &[],
            )
            .await
            .unwrap();
        let last = *instants.last().unwrap();
        let state = state_as_of(&**client, STREAM, last).await.unwrap();
        assert_eq!(state, folded(&events, last));
        // So is one whose state is not at its row's version (it would skip or repeat events).
        client
            .execute(
                "UPDATE license_snapshots SET state = $1 WHERE version = 1200",
                &[&state_codec::encode(&folded(&events, instants[5]))],
            )
            .await
            .unwrap();
        let state = state_as_of(&**client, STREAM, last).await.unwrap();
        assert_eq!(state, folded(&events, last));

        // The read starts from the snapshot: one whose state says otherwise shows through.
        let mut marked = folded(&events, instants[20]);
        assert_eq!(marked.version, 2_100);
        marked.product_id = Some("FROM-SNAPSHOT".into());
        client
            .execute(
                "UPDATE license_snapshots SET format = $1, state = $2 WHERE version = 2100",
                &[&SNAPSHOT_FORMAT, &state_codec::encode(&marked)],
            )
            .await
            .unwrap();
        let state = state_as_of(&**client, STREAM, instants[20]).await.unwrap();
        assert_eq!(state.product_id.as_deref(), Some("FROM-SNAPSHOT"));
        assert_eq!(state.version, 2_100);
    }
}
