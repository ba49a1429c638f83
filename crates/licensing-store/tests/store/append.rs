//! Appends and loads: round trip, conflicts, idempotent re-appends, atomic batches, upcasting.

use licensing_store::testing::TestDatabase;
use licensing_store::{AppendOutcome, StreamAppend, Upcasters};
use serde_json::json;

use crate::event;

#[tokio::test]
async fn append_then_load_round_trips_every_field() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let events = vec![event("registered", 1), event("frozen", 2)];
    let AppendOutcome::Appended { positions } = store
        .append("license-PL1", 0, events.clone())
        .await
        .unwrap()
    else {
        panic!("not appended")
    };
    assert_eq!(positions.len(), 2);
    assert!(positions[0] < positions[1]);
    let loaded = store.load("license-PL1").await.unwrap();
    assert_eq!(loaded.len(), 2);
    for (i, (stored, sent)) in loaded.iter().zip(&events).enumerate() {
        assert_eq!(stored.stream_id, "license-PL1");
        assert_eq!(stored.stream_version, i as i64 + 1);
        assert_eq!(stored.global_position, positions[i]);
        assert_eq!(stored.event_id, sent.event_id);
        assert_eq!(stored.event_type, sent.event_type);
        assert_eq!(stored.schema_version, 1);
        assert_eq!(stored.payload, sent.payload);
        assert_eq!(stored.metadata, sent.metadata);
        assert!(
            (time::OffsetDateTime::now_utc() - stored.recorded_at)
                .whole_seconds()
                .abs()
                < 60
        );
    }
    assert!(store.load("license-other").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stale_expected_version_conflicts_and_writes_nothing() {
    let db = TestDatabase::create().await;
    let store = db.store();
    store.append("s", 0, vec![event("a", 1)]).await.unwrap();
    for stale in [0, 2, 5] {
        assert_eq!(
            store.append("s", stale, vec![event("b", 2)]).await.unwrap(),
            AppendOutcome::Conflict {
                stream_id: "s".into()
            },
            "expected version {stale}"
        );
    }
    assert_eq!(store.load("s").await.unwrap().len(), 1);
    assert!(matches!(
        store.append("s", 1, vec![event("b", 2)]).await.unwrap(),
        AppendOutcome::Appended { .. }
    ));
}

#[tokio::test]
async fn re_appending_the_same_events_writes_nothing() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let events = vec![event("a", 1), event("b", 2)];
    store.append("s", 0, events.clone()).await.unwrap();
    // A retry after a lost acknowledgement: same ids, same expected version.
    assert_eq!(
        store.append("s", 0, events.clone()).await.unwrap(),
        AppendOutcome::Duplicate
    );
    // Even at another version.
    assert_eq!(
        store.append("s", 2, events.clone()).await.unwrap(),
        AppendOutcome::Duplicate
    );
    assert_eq!(store.load("s").await.unwrap().len(), 2);
    // A mix of old and new ids is a bug, refused whole.
    let mixed = vec![events[0].clone(), event("c", 3)];
    assert!(store.append("s", 2, mixed).await.is_err());
    assert_eq!(store.load("s").await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_batch_over_several_streams_is_all_or_nothing() {
    let db = TestDatabase::create().await;
    let store = db.store();
    store.append("b", 0, vec![event("x", 0)]).await.unwrap();
    let batch = |b_expected| {
        vec![
            StreamAppend {
                stream_id: "a".into(),
                expected_version: 0,
                events: vec![event("x", 1), event("x", 2)],
            },
            StreamAppend {
                stream_id: "b".into(),
                expected_version: b_expected,
                events: vec![event("x", 3)],
            },
        ]
    };
    assert_eq!(
        store.append_many(&batch(0)).await.unwrap(),
        AppendOutcome::Conflict {
            stream_id: "b".into()
        }
    );
    assert!(
        store.load("a").await.unwrap().is_empty(),
        "nothing of the batch was written"
    );
    let AppendOutcome::Appended { positions } = store.append_many(&batch(1)).await.unwrap() else {
        panic!()
    };
    assert_eq!(positions.len(), 3);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(store.load("a").await.unwrap().len(), 2);
    assert_eq!(
        store
            .load("b")
            .await
            .unwrap()
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

#[tokio::test]
async fn concurrent_appends_at_the_same_version_let_exactly_one_win() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.append("race", 0, vec![event("x", i)]).await.unwrap() })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            AppendOutcome::Appended { .. } => won += 1,
            AppendOutcome::Conflict { stream_id } => assert_eq!(stream_id, "race"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.load("race").await.unwrap().len(), 1);
}

#[tokio::test]
async fn events_are_append_only() {
    let db = TestDatabase::create().await;
    let store = db.store();
    store.append("s", 0, vec![event("a", 1)]).await.unwrap();
    let client = store.client().await.unwrap();
    assert!(
        client
            .execute("UPDATE events SET payload = '{}'", &[])
            .await
            .is_err()
    );
    assert!(client.execute("DELETE FROM events", &[]).await.is_err());
    assert_eq!(store.load("s").await.unwrap()[0].payload, json!({"n": 1}));
}

#[tokio::test]
async fn a_transaction_appends_once_after_any_inbox_writes() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = time::OffsetDateTime::now_utc();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let reply = serde_json::json!({});
    let outcome = licensing_store::InboxOutcome {
        message_id: uuid::Uuid::new_v4(),
        reply: &reply,
        nonce: Some(("n1", now + time::Duration::minutes(10))),
        signature_key: None,
        content_key: None,
    };
    assert!(
        unit.record_outcomes(&[outcome], now)
            .await
            .unwrap()
            .is_empty()
    );
    let one = StreamAppend {
        stream_id: "s".into(),
        expected_version: 0,
        events: vec![event("a", 1)],
    };
    assert!(matches!(
        unit.append(std::slice::from_ref(&one)).await.unwrap(),
        AppendOutcome::Appended { .. }
    ));
    let error = unit
        .append(&[StreamAppend {
            stream_id: "t".into(),
            ..one
        }])
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("one append per transaction"),
        "{error}"
    );
    unit.rollback().await.unwrap();
    assert!(store.load("s").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_unit_of_work_dropped_without_commit_is_rolled_back() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    unit.append(&[StreamAppend {
        stream_id: "s".into(),
        expected_version: 0,
        events: vec![event("a", 1)],
    }])
    .await
    .unwrap();
    assert_eq!(
        unit.load("s").await.unwrap().len(),
        1,
        "the transaction sees its own append"
    );
    drop(unit);
    assert!(store.load("s").await.unwrap().is_empty());

    let unit = store.begin(Upcasters::new()).await.unwrap();
    unit.append(&[StreamAppend {
        stream_id: "s".into(),
        expected_version: 0,
        events: vec![event("a", 1)],
    }])
    .await
    .unwrap();
    unit.commit().await.unwrap();
    assert_eq!(store.load("s").await.unwrap().len(), 1);
}

#[tokio::test]
async fn old_schema_versions_are_upcast_on_load() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let mut old = event("renewed", 0);
    old.payload = json!({"expire": "20250101000000"});
    store.append("s", 0, vec![old]).await.unwrap();
    let upcasters = Upcasters::new()
        .register("renewed", 1, |p| json!({"expire": {"raw": p["expire"]}}))
        .register("renewed", 2, |mut p| {
            p["expire"]["zone"] = json!("+08:00");
            p
        });
    let loaded = store.load_with("s", &upcasters).await.unwrap();
    assert_eq!(loaded[0].schema_version, 3);
    assert_eq!(
        loaded[0].payload,
        json!({"expire": {"raw": "20250101000000", "zone": "+08:00"}})
    );
    assert_eq!(
        store.load("s").await.unwrap()[0].schema_version,
        1,
        "stored as written"
    );
}

#[tokio::test]
async fn a_scan_by_stream_returns_each_stream_together_and_in_order() {
    use futures_util::StreamExt;
    let db = TestDatabase::create().await;
    let store = db.store();
    assert_eq!(
        licensing_store::last_position(&**store.client().await.unwrap())
            .await
            .unwrap(),
        0
    );
    // Interleaved appends to three streams.
    for round in 0..3 {
        for stream in ["c", "a", "b"] {
            store
                .append(stream, round, vec![event("x", round)])
                .await
                .unwrap();
        }
    }
    let client = store.client().await.unwrap();
    let until = licensing_store::last_position(&**client).await.unwrap();
    store.append("d", 0, vec![event("late", 0)]).await.unwrap();

    let upcasters = Upcasters::new();
    let scanned: Vec<(String, i64)> = licensing_store::scan_by_stream(&**client, until, &upcasters)
        .await
        .unwrap()
        .map(|e| e.map(|e| (e.stream_id, e.stream_version)).unwrap())
        .collect()
        .await;
    let expected: Vec<(String, i64)> = ["a", "b", "c"]
        .iter()
        .flat_map(|s| (1..=3).map(move |v| ((*s).to_owned(), v)))
        .collect();
    assert_eq!(
        scanned, expected,
        "grouped by stream, in version order, nothing after `until`"
    );
    assert_eq!(
        licensing_store::stream_count(&**client, until)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        licensing_store::stream_ids_after(&**client, until)
            .await
            .unwrap(),
        ["d"]
    );
}

#[tokio::test]
async fn a_batch_loads_its_streams_in_one_query_and_appends_in_command_order() {
    let db = TestDatabase::create().await;
    let store = db.store();
    store.append("a", 0, vec![event("a1", 1)]).await.unwrap();
    store
        .append("b", 0, vec![event("b1", 1), event("b2", 2)])
        .await
        .unwrap();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let loaded = unit
        .load_many_after(&[("b", 0), ("a", 0), ("none", 0)])
        .await
        .unwrap();
    let versions = |id: &str| -> Vec<i64> { loaded[id].iter().map(|e| e.stream_version).collect() };
    assert_eq!(
        (versions("a"), versions("b"), versions("none")),
        (vec![1], vec![1, 2], vec![])
    );
    assert_eq!(loaded["b"][1].event_type, "b2");
    // A state kept at a version needs only what came after it.
    let after = unit
        .load_many_after(&[("b", 1), ("a", 1), ("none", 3)])
        .await
        .unwrap();
    let versions = |id: &str| -> Vec<i64> { after[id].iter().map(|e| e.stream_version).collect() };
    assert_eq!(
        (versions("a"), versions("b"), versions("none")),
        (vec![], vec![2], vec![])
    );

    // Commands of a batch, in order: a, b, a again; one stream's appends chain their versions.
    let append = |stream: &str, expected, name| StreamAppend {
        stream_id: stream.into(),
        expected_version: expected,
        events: vec![event(name, 9)],
    };
    let AppendOutcome::Appended { positions } = unit
        .append(&[
            append("a", 1, "a2"),
            append("b", 2, "b3"),
            append("a", 2, "a3"),
        ])
        .await
        .unwrap()
    else {
        panic!("not appended")
    };
    unit.commit().await.unwrap();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let a: Vec<String> = store
        .load("a")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(a, ["a1", "a2", "a3"]);
}

#[tokio::test]
async fn a_stream_tail_is_its_newest_events_in_order_up_to_an_instant() {
    let db = TestDatabase::create().await;
    let store = db.store();
    store
        .append(
            "license-PL1",
            0,
            (1..=3).map(|i| event("renewed", i)).collect(),
        )
        .await
        .unwrap();
    let cut = store.load("license-PL1").await.unwrap()[2].recorded_at;
    store
        .append(
            "license-PL1",
            3,
            (4..=5).map(|i| event("renewed", i)).collect(),
        )
        .await
        .unwrap();
    let versions = |events: Vec<licensing_store::RecordedEvent>| {
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>()
    };
    let tail = store.load_tail("license-PL1", 2, None).await.unwrap();
    assert_eq!(versions(tail), [4, 5]);
    let all = store.load_tail("license-PL1", 10, None).await.unwrap();
    assert_eq!(versions(all), [1, 2, 3, 4, 5]);
    let then = store.load_tail("license-PL1", 2, Some(cut)).await.unwrap();
    assert_eq!(
        versions(then),
        [2, 3],
        "events recorded after the instant are left out"
    );
    assert!(
        store
            .load_tail("license-other", 2, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_stream_until_an_instant_yields_that_streams_events_after_a_version_recorded_by_then_in_order()
 {
    use futures_util::StreamExt;
    let db = TestDatabase::create().await;
    let store = db.store();
    for version in 0..3 {
        store
            .append("s", version, vec![event("x", version)])
            .await
            .unwrap();
        store
            .append("other", version, vec![event("x", version)])
            .await
            .unwrap();
    }
    let recorded: Vec<time::OffsetDateTime> = store
        .load("s")
        .await
        .unwrap()
        .iter()
        .map(|e| e.recorded_at)
        .collect();
    let client = store.client().await.unwrap();
    let upcasters = Upcasters::new();
    let read_after = async |after, until| -> Vec<i64> {
        licensing_store::stream_until(&**client, "s", after, until, &upcasters)
            .await
            .unwrap()
            .map(|e| e.unwrap().stream_version)
            .collect()
            .await
    };
    let read = async |until| read_after(0, until).await;
    assert_eq!(read(recorded[2]).await, vec![1, 2, 3]);
    assert_eq!(
        read_after(1, recorded[2]).await,
        vec![2, 3],
        "after a snapshot's version"
    );
    assert_eq!(
        read(recorded[1]).await,
        vec![1, 2],
        "nothing after the instant"
    );
    assert_eq!(
        read(recorded[0] - time::Duration::seconds(1)).await,
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn streams_load_up_to_a_position_and_no_further() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let positions = |outcome| match outcome {
        AppendOutcome::Appended { positions } => positions,
        other => panic!("not appended: {other:?}"),
    };
    let a = positions(
        store
            .append("s-a", 0, vec![event("registered", 1), event("frozen", 2)])
            .await
            .unwrap(),
    );
    let b = positions(
        store
            .append("s-b", 0, vec![event("registered", 1)])
            .await
            .unwrap(),
    );
    // Committed later: past the batch a follower handles up to `b[0]`.
    store
        .append("s-a", 2, vec![event("unfrozen", 3)])
        .await
        .unwrap();
    let client = store.client().await.unwrap();
    let loaded = licensing_store::load_streams(
        &**client,
        &["s-a", "s-b", "s-none"],
        b[0],
        &Upcasters::new(),
    )
    .await
    .unwrap();
    let versions =
        |stream: &str| -> Vec<i64> { loaded[stream].iter().map(|e| e.stream_version).collect() };
    assert_eq!(versions("s-a"), [1, 2], "nothing past the position");
    assert_eq!(loaded["s-a"][1].global_position, a[1]);
    assert_eq!(versions("s-b"), [1]);
    assert!(loaded["s-none"].is_empty());
}
