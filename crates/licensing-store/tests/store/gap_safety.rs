//! Gap safety: a follower that has seen position N never later finds a committed event below N,
//! even when transactions commit out of position order. The naive `position > N` read loses events
//! under the same schedule; the store's read does not.

use std::collections::HashSet;
use std::time::Duration;

use licensing_store::testing::TestDatabase;
use licensing_store::{AppendOutcome, Store, StreamAppend, Upcasters};
use uuid::Uuid;

use crate::{event, eventually};

async fn naive_read(store: &Store, after: i64) -> Vec<i64> {
    let client = store.client().await.unwrap();
    client
        .query("SELECT global_position FROM events WHERE global_position > $1 ORDER BY global_position", &[&after])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn one(stream: &str) -> Vec<StreamAppend> {
    vec![StreamAppend {
        stream_id: stream.into(),
        expected_version: 0,
        events: vec![event("x", 0)],
    }]
}

#[tokio::test]
async fn a_transaction_committing_late_is_not_skipped() {
    let db = TestDatabase::create().await;
    let store = db.store();

    // A takes the lower position and stays open; B takes the next one and commits.
    let a = store.begin(Upcasters::new()).await.unwrap();
    let AppendOutcome::Appended { positions: pa } = a.append(&one("a")).await.unwrap() else {
        panic!()
    };
    let AppendOutcome::Appended { positions: pb } = store.append_many(&one("b")).await.unwrap()
    else {
        panic!()
    };
    assert!(pa[0] < pb[0]);

    // The naive reader sees B and moves its checkpoint past A's position.
    let naive_seen = naive_read(&store, 0).await;
    assert_eq!(naive_seen, pb);
    let naive_checkpoint = *naive_seen.last().unwrap();
    // The store's read exposes nothing yet: A could still commit below B.
    assert!(store.read_all(0, 100).await.unwrap().is_empty());

    a.commit().await.unwrap();

    // The naive reader never sees A: the trap this design avoids.
    assert!(naive_read(&store, naive_checkpoint).await.is_empty());
    // The store's reader sees both, in order.
    let safe = eventually("both events to become readable", 30, || async {
        let events = store.read_all(0, 100).await.unwrap();
        (events.len() == 2).then_some(events)
    })
    .await;
    assert_eq!(
        safe.iter().map(|e| e.global_position).collect::<Vec<_>>(),
        [pa[0], pb[0]]
    );
}

#[tokio::test]
async fn concurrent_writers_with_random_commit_delays_are_followed_exactly_once_in_order() {
    let db = TestDatabase::create().await;
    let store = db.store_with_connections(24);
    let writers = 12;
    let appends_per_writer = 25;

    // The follower: reads continuously, checks order, remembers every event id, and stops once it
    // has seen as many events as were committed (or after a deadline; the assertions then say why).
    let (total_tx, mut total_rx) = tokio::sync::watch::channel(None::<usize>);
    let follower = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut checkpoint = 0;
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while tokio::time::Instant::now() < deadline {
                let batch = store.read_all(checkpoint, 37).await.unwrap();
                for e in &batch {
                    assert!(
                        e.global_position > checkpoint,
                        "position {} after {checkpoint}",
                        e.global_position
                    );
                    checkpoint = e.global_position;
                    seen.push(e.event_id);
                }
                if batch.is_empty() {
                    if total_rx
                        .borrow_and_update()
                        .is_some_and(|total| seen.len() >= total)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            seen
        })
    };

    // One transaction held open for a while, in the middle of the run.
    let holder = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let unit = store.begin(Upcasters::new()).await.unwrap();
            let appended = vec![event("held", 0), event("held", 1)];
            let ids: Vec<Uuid> = appended.iter().map(|e| e.event_id).collect();
            unit.append(&[StreamAppend {
                stream_id: "held".into(),
                expected_version: 0,
                events: appended,
            }])
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
            unit.commit().await.unwrap();
            ids
        })
    };

    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut committed = Vec::new();
                for i in 0..appends_per_writer {
                    let stream = format!("w{w}");
                    let appended = vec![event("x", i as i64), event("y", i as i64)];
                    let ids: Vec<Uuid> = appended.iter().map(|e| e.event_id).collect();
                    let unit = store.begin(Upcasters::new()).await.unwrap();
                    let outcome = unit
                        .append(&[StreamAppend {
                            stream_id: stream,
                            expected_version: 2 * i as i64,
                            events: appended,
                        }])
                        .await
                        .unwrap();
                    assert!(matches!(outcome, AppendOutcome::Appended { .. }));
                    // A random delay between taking positions and committing.
                    let delay = rand_u64() % 20;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    unit.commit().await.unwrap();
                    committed.extend(ids);
                }
                committed
            })
        })
        .collect();

    let mut committed = Vec::new();
    for task in tasks {
        committed.extend(task.await.unwrap());
    }
    committed.extend(holder.await.unwrap());
    total_tx.send(Some(committed.len())).unwrap();
    let seen = follower.await.unwrap();

    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event seen twice");
    let expected: HashSet<_> = committed.iter().collect();
    assert_eq!(unique, expected, "every committed event seen");
}

fn rand_u64() -> u64 {
    Uuid::new_v4().as_u64_pair().0
}
