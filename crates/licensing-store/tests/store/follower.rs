//! Followers: catch up, follow live, and resume from the checkpoint after being killed, applying
//! each event exactly once to what they write in the same transaction.

use std::time::Duration;

use licensing_store::testing::TestDatabase;
use licensing_store::{Handler, RecordedEvent, Store, Subscription, Transaction};
use tokio_util::sync::CancellationToken;

use crate::{event, eventually};

/// Writes each event into a table, in the follower's transaction; a duplicate would violate the key.
struct Recorder {
    delay: Duration,
    last_position: i64,
}

impl Handler for Recorder {
    type Error = String;

    async fn handle(
        &mut self,
        tx: &Transaction<'_>,
        events: &[RecordedEvent],
    ) -> Result<(), String> {
        for e in events {
            if e.global_position <= self.last_position {
                return Err(format!(
                    "position {} after {}",
                    e.global_position, self.last_position
                ));
            }
            self.last_position = e.global_position;
            tx.execute(
                "INSERT INTO seen (event_id, position) VALUES ($1, $2)",
                &[&e.event_id, &e.global_position],
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
}

async fn seen_count(store: &Store) -> i64 {
    let client = store.client().await.unwrap();
    client
        .query_one("SELECT count(*) FROM seen", &[])
        .await
        .unwrap()
        .get(0)
}

/// How many other sessions on `database` match `condition` (over `pg_stat_activity`).
async fn backends(store: &Store, database: &str, condition: &str) -> i64 {
    let client = store.client().await.unwrap();
    client
        .query_one(
            &format!(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = $1 AND pid <> pg_backend_pid() AND {condition}"
            ),
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

async fn prepare(store: &Store) {
    let client = store.client().await.unwrap();
    client
        .batch_execute("CREATE TABLE seen (event_id uuid PRIMARY KEY, position bigint NOT NULL)")
        .await
        .unwrap();
}

async fn append_many(store: &Store, streams: usize, per_stream: usize) {
    for s in 0..streams {
        for i in 0..per_stream {
            store
                .append(&format!("s{s}"), i as i64, vec![event("x", i as i64)])
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_follower_catches_up_then_follows_live() {
    let db = TestDatabase::create().await;
    let store = db.store();
    prepare(&store).await;
    append_many(&store, 3, 20).await;

    let cancel = CancellationToken::new();
    let subscription = Subscription::new(store.clone(), "views").with_batch_size(7);
    let run = {
        let cancel = cancel.clone();
        let subscription = subscription.clone();
        tokio::spawn(async move {
            let mut recorder = Recorder {
                delay: Duration::ZERO,
                last_position: 0,
            };
            subscription.run(&mut recorder, cancel, || {}).await
        })
    };
    eventually("the follower to catch up on 60 events", 30, || async {
        (seen_count(&store).await == 60).then_some(())
    })
    .await;

    // Live: one more append is picked up (woken by the notification or the poll).
    store.append("live", 0, vec![event("x", 0)]).await.unwrap();
    eventually("the live event", 30, || async {
        (seen_count(&store).await == 61).then_some(())
    })
    .await;
    let last: i64 = store
        .client()
        .await
        .unwrap()
        .query_one("SELECT max(global_position) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(subscription.position().await.unwrap(), last);

    cancel.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_killed_follower_resumes_from_its_checkpoint_without_loss_or_duplicate() {
    let db = TestDatabase::create().await;
    let store = db.store();
    prepare(&store).await;
    append_many(&store, 5, 40).await;

    let subscription = Subscription::new(store.clone(), "views").with_batch_size(10);
    let first = {
        let subscription = subscription.clone();
        tokio::spawn(async move {
            let mut recorder = Recorder {
                delay: Duration::from_millis(20),
                last_position: 0,
            };
            subscription
                .run(&mut recorder, CancellationToken::new(), || {})
                .await
        })
    };
    eventually("the first follower to handle some events", 30, || async {
        (seen_count(&store).await >= 50).then_some(())
    })
    .await;
    first.abort(); // killed mid-run, possibly inside a batch
    let _ = first.await;
    let handled = seen_count(&store).await;
    assert!(handled < 200, "killed before the end ({handled})");
    let checkpoint = subscription.position().await.unwrap();

    let cancel = CancellationToken::new();
    let second = {
        let subscription = subscription.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut recorder = Recorder {
                delay: Duration::ZERO,
                last_position: checkpoint,
            };
            subscription.run(&mut recorder, cancel, || {}).await
        })
    };
    eventually("the second follower to finish", 30, || async {
        (seen_count(&store).await == 200).then_some(())
    })
    .await;
    cancel.cancel();
    second.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_handler_error_rolls_the_batch_back() {
    let db = TestDatabase::create().await;
    let store = db.store();
    prepare(&store).await;
    append_many(&store, 1, 5).await;
    struct Failing;
    impl Handler for Failing {
        type Error = String;
        async fn handle(
            &mut self,
            tx: &Transaction<'_>,
            events: &[RecordedEvent],
        ) -> Result<(), String> {
            tx.execute(
                "INSERT INTO seen (event_id, position) VALUES ($1, $2)",
                &[&events[0].event_id, &events[0].global_position],
            )
            .await
            .map_err(|e| e.to_string())?;
            Err("view rejected the batch".to_owned())
        }
    }
    let subscription = Subscription::new(store.clone(), "views");
    let error = subscription
        .run(&mut Failing, CancellationToken::new(), || {})
        .await
        .unwrap_err();
    assert!(error.to_string().contains("view rejected the batch"));
    assert_eq!(
        seen_count(&store).await,
        0,
        "the view write was rolled back"
    );
    assert_eq!(
        subscription.position().await.unwrap(),
        0,
        "the checkpoint did not move"
    );
}

#[tokio::test]
async fn an_idle_follower_is_woken_by_the_commit_notification() {
    let db = TestDatabase::create().await;
    let store = db.store();
    prepare(&store).await;
    let cancel = CancellationToken::new();
    // Polling alone would take a minute: only the notification can wake the follower in time.
    let subscription =
        Subscription::new(store.clone(), "views").with_poll_interval(Duration::from_secs(60));
    let run = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut recorder = Recorder {
                delay: Duration::ZERO,
                last_position: 0,
            };
            subscription.run(&mut recorder, cancel, || {}).await
        })
    };
    // Let the follower go idle (its first read found nothing and it listens), then append.
    eventually("the follower listening", 10, || async {
        (backends(&store, &db.name, "state = 'idle' AND query LIKE 'LISTEN %'").await > 0)
            .then_some(())
    })
    .await;
    store.append("s", 0, vec![event("x", 0)]).await.unwrap();
    eventually("the notified follower", 10, || async {
        (seen_count(&store).await == 1).then_some(())
    })
    .await;
    let unit = store
        .begin(licensing_store::Upcasters::new())
        .await
        .unwrap();
    unit.append(&[licensing_store::StreamAppend {
        stream_id: "s".into(),
        expected_version: 1,
        events: vec![event("x", 1)],
    }])
    .await
    .unwrap();
    unit.commit().await.unwrap();
    eventually("the follower notified after a unit of work", 10, || async {
        (seen_count(&store).await == 2).then_some(())
    })
    .await;
    cancel.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_held_checkpoint_makes_the_follower_wait_and_lags_are_reported() {
    let db = TestDatabase::create().await;
    let store = db.store_with_connections(6);
    prepare(&store).await;
    append_many(&store, 1, 3).await;
    let mut holder = store.client().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    assert_eq!(
        licensing_store::hold_checkpoint(&tx, "views")
            .await
            .unwrap(),
        0
    );

    let subscription = Subscription::new(store.clone(), "views");
    let step = tokio::spawn({
        let subscription = subscription.clone();
        async move {
            subscription
                .step(&mut Recorder {
                    delay: Duration::ZERO,
                    last_position: 0,
                })
                .await
                .map_err(|e| e.to_string())
        }
    });
    eventually(
        "the follower waiting for the checkpoint's lock",
        10,
        || async {
            (backends(&store, &db.name, "wait_event_type = 'Lock'").await > 0).then_some(())
        },
    )
    .await;
    assert!(
        !step.is_finished(),
        "the follower waits while the checkpoint is held"
    );
    tx.commit().await.unwrap();
    assert_eq!(step.await.unwrap().unwrap(), 3);

    let lags = store
        .follower_lags(&["views", "never_started"])
        .await
        .unwrap();
    assert_eq!(lags.len(), 2);
    assert_eq!(lags[1].0, "views");
    assert!(lags[1].1 < 0.001, "caught up: {lags:?}");
    assert_eq!(lags[0].0, "never_started");
    assert!(
        lags[0].1 > 0.0,
        "a follower without a checkpoint is behind: {lags:?}"
    );
}

/// Every event's global position, in order.
async fn positions(store: &Store) -> Vec<i64> {
    let client = store.client().await.unwrap();
    let rows = client
        .query(
            "SELECT global_position FROM events ORDER BY global_position",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// A pipelined handler whose batches finish when the test says: `release` is how many may finish,
/// `fail_at` the first (counting from 1) that fails instead.
struct Confirming {
    started: std::sync::Arc<std::sync::Mutex<Vec<(i64, i64)>>>,
    release: tokio::sync::watch::Receiver<usize>,
    finished: usize,
    fail_at: Option<usize>,
}

impl Confirming {
    fn new(release: tokio::sync::watch::Receiver<usize>) -> Self {
        Self {
            started: Default::default(),
            release,
            finished: 0,
            fail_at: None,
        }
    }
}

impl licensing_store::Pipelined for Confirming {
    type Error = String;
    type Started = (i64, i64);

    async fn start(&mut self, events: &[RecordedEvent]) -> Result<(i64, i64), String> {
        let batch = (
            events[0].global_position,
            events.last().unwrap().global_position,
        );
        self.started.lock().unwrap().push(batch);
        Ok(batch)
    }

    async fn finish(&mut self, _batch: (i64, i64)) -> Result<(), String> {
        let n = self.finished + 1;
        self.release
            .wait_for(|released| *released >= n)
            .await
            .map_err(|e| e.to_string())?;
        if self.fail_at == Some(n) {
            return Err(format!("batch {n} was not confirmed"));
        }
        self.finished = n;
        Ok(())
    }
}

#[tokio::test]
async fn a_pipelined_follower_keeps_batches_in_flight_and_moves_its_checkpoint_past_finished_ones()
{
    let db = TestDatabase::create().await;
    let store = db.store();
    append_many(&store, 3, 10).await;
    let at = positions(&store).await;
    let batch = |n: usize| (at[n * 5], at[n * 5 + 4]);
    let subscription = Subscription::new(store.clone(), "publisher").with_batch_size(5);
    let (release, released) = tokio::sync::watch::channel(0);
    let mut handler = Confirming::new(released);
    handler.fail_at = Some(3);
    let started = handler.started.clone();
    let run = tokio::spawn({
        let subscription = subscription.clone();
        async move {
            subscription
                .run_pipelined(&mut handler, 3, CancellationToken::new(), || {})
                .await
                .map_err(|e| e.to_string())
        }
    });
    eventually("three batches started", 10, || async {
        (started.lock().unwrap().len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        subscription.position().await.unwrap(),
        0,
        "nothing finished, so the checkpoint has not moved"
    );

    // One batch finishes: the checkpoint moves past it, and one more batch is started.
    release.send(1).unwrap();
    eventually("the checkpoint past the first batch", 10, || async {
        (subscription.position().await.unwrap() == at[4]).then_some(())
    })
    .await;
    eventually("a fourth batch started", 10, || async {
        (started.lock().unwrap().len() == 4).then_some(())
    })
    .await;
    assert_eq!(
        *started.lock().unwrap(),
        [batch(0), batch(1), batch(2), batch(3)],
        "in global order, never more than three in flight"
    );

    // The third batch fails: the run ends, the checkpoint stays past the second.
    release.send(3).unwrap();
    let error = run.await.unwrap().unwrap_err();
    assert!(error.contains("batch 3 was not confirmed"), "{error}");
    assert_eq!(subscription.position().await.unwrap(), at[9]);

    // The next run hands over again everything after the checkpoint: at least once.
    let (_release, released) = tokio::sync::watch::channel(usize::MAX);
    let mut handler = Confirming::new(released);
    let started = handler.started.clone();
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let subscription = subscription.clone();
        let cancel = cancel.clone();
        async move {
            subscription
                .run_pipelined(&mut handler, 3, cancel, || {})
                .await
                .map_err(|e| e.to_string())
        }
    });
    eventually("the second run caught up", 10, || async {
        (subscription.position().await.unwrap() == at[29]).then_some(())
    })
    .await;
    assert_eq!(
        *started.lock().unwrap(),
        [batch(2), batch(3), batch(4), batch(5)]
    );
    cancel.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_second_instance_of_a_pipelined_follower_waits_then_takes_over_from_the_checkpoint() {
    let db = TestDatabase::create().await;
    let store = db.store_with_connections(6);
    append_many(&store, 1, 4).await;
    let at = positions(&store).await;
    let subscription = Subscription::new(store.clone(), "publisher").with_batch_size(2);
    let run = |handler: Confirming, cancel: CancellationToken| {
        let subscription = subscription.clone();
        tokio::spawn(async move {
            let mut handler = handler;
            subscription
                .run_pipelined(&mut handler, 2, cancel, || {})
                .await
                .map_err(|e| e.to_string())
        })
    };
    let (first_release, released) = tokio::sync::watch::channel(usize::MAX);
    let first = Confirming::new(released);
    let first_started = first.started.clone();
    let first_cancel = CancellationToken::new();
    let first_run = run(first, first_cancel.clone());
    eventually("the first instance caught up", 10, || async {
        (subscription.position().await.unwrap() == at[3]).then_some(())
    })
    .await;

    let (_second_release, released) = tokio::sync::watch::channel(usize::MAX);
    let second = Confirming::new(released);
    let second_started = second.started.clone();
    let second_cancel = CancellationToken::new();
    let second_run = run(second, second_cancel.clone());
    eventually("the second instance waiting for the lock", 10, || async {
        (backends(&store, &db.name, "wait_event_type = 'Lock'").await > 0).then_some(())
    })
    .await;
    store.append("s0", 4, vec![event("x", 4)]).await.unwrap();
    let at = positions(&store).await;
    eventually(
        "the first instance handed over the new event",
        10,
        || async { (subscription.position().await.unwrap() == at[4]).then_some(()) },
    )
    .await;
    assert!(
        second_started.lock().unwrap().is_empty(),
        "the second instance handed over nothing while the first ran"
    );

    first_cancel.cancel();
    drop(first_release);
    first_run.await.unwrap().unwrap();
    assert_eq!(
        *first_started.lock().unwrap(),
        [(at[0], at[1]), (at[2], at[3]), (at[4], at[4])]
    );
    store.append("s0", 5, vec![event("x", 5)]).await.unwrap();
    let at = positions(&store).await;
    eventually("the second instance took over", 10, || async {
        (subscription.position().await.unwrap() == at[5]).then_some(())
    })
    .await;
    assert_eq!(
        *second_started.lock().unwrap(),
        [(at[5], at[5])],
        "from the checkpoint: nothing handed over twice"
    );
    second_cancel.cancel();
    second_run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_cancelled_pipelined_follower_finishes_what_it_handed_over_and_reads_no_more() {
    let db = TestDatabase::create().await;
    let store = db.store();
    append_many(&store, 1, 20).await;
    let at = positions(&store).await;
    let subscription = Subscription::new(store.clone(), "publisher").with_batch_size(5);
    let (release, released) = tokio::sync::watch::channel(0);
    let mut handler = Confirming::new(released);
    let started = handler.started.clone();
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let subscription = subscription.clone();
        let cancel = cancel.clone();
        async move {
            subscription
                .run_pipelined(&mut handler, 3, cancel, || {})
                .await
                .map_err(|e| e.to_string())
        }
    });
    eventually("three batches started", 10, || async {
        (started.lock().unwrap().len() == 3).then_some(())
    })
    .await;
    cancel.cancel();
    release.send(usize::MAX).unwrap();
    run.await.unwrap().unwrap();
    assert_eq!(
        subscription.position().await.unwrap(),
        at[14],
        "the three batches handed over were finished before the run ended"
    );
    assert_eq!(started.lock().unwrap().len(), 3, "and no fourth was read");
}
