//! The inbox: stored replies for redelivered messages and repeated callbacks, and nonces with expiry.

use licensing_store::testing::TestDatabase;
use licensing_store::{InboxLookup, Upcasters};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// A nonce to remember from `now` for `minutes`.
fn remember(
    nonce: &str,
    now: OffsetDateTime,
    minutes: i64,
) -> Option<(&str, OffsetDateTime, OffsetDateTime)> {
    Some((nonce, now, now + Duration::minutes(minutes)))
}

#[tokio::test]
async fn a_processed_message_keeps_its_reply() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let id = Uuid::new_v4();
    let now = OffsetDateTime::now_utc();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert_eq!(
        unit.inbox_lookup(id, None, None, now).await.unwrap(),
        InboxLookup::default()
    );
    assert!(
        unit.record_outcome(id, &json!({"resultCode": "000000"}), None, None)
            .await
            .unwrap()
    );
    unit.commit().await.unwrap();

    let unit = store.begin(Upcasters::new()).await.unwrap();
    let known = unit.inbox_lookup(id, None, None, now).await.unwrap();
    assert_eq!(known.processed_reply, Some(json!({"resultCode": "000000"})));
    assert!(
        unit.record_outcome(id, &json!({}), None, None)
            .await
            .is_err(),
        "a message is processed once"
    );
}

#[tokio::test]
async fn a_callback_keeps_its_first_reply() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = OffsetDateTime::now_utc();
    let key = "refreshLicenseCode|PL1|CS1|CS1-1|RENEWAL|20250101000000|";
    let unit = store.begin(Upcasters::new()).await.unwrap();
    unit.record_outcome(Uuid::new_v4(), &json!({"first": true}), None, Some(key))
        .await
        .unwrap();
    unit.record_outcome(Uuid::new_v4(), &json!({"first": false}), None, Some(key))
        .await
        .unwrap();
    unit.commit().await.unwrap();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let id = Uuid::new_v4();
    assert_eq!(
        unit.inbox_lookup(id, None, Some(key), now)
            .await
            .unwrap()
            .callback_reply,
        Some(json!({"first": true}))
    );
    assert_eq!(
        unit.inbox_lookup(id, None, Some("other"), now)
            .await
            .unwrap()
            .callback_reply,
        None
    );
}

#[tokio::test]
async fn nonces_are_refused_until_they_expire_then_purged() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let t0 = OffsetDateTime::now_utc();
    let seen = |nonce, now| {
        let store = store.clone();
        async move {
            let unit = store.begin(Upcasters::new()).await.unwrap();
            unit.inbox_lookup(Uuid::new_v4(), Some(nonce), None, now)
                .await
                .unwrap()
                .nonce_seen
        }
    };

    assert!(!seen("n1", t0).await);
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert!(
        unit.record_outcome(Uuid::new_v4(), &json!({}), remember("n1", t0, 10), None)
            .await
            .unwrap()
    );
    assert!(
        unit.record_outcome(Uuid::new_v4(), &json!({}), remember("n2", t0, 1), None)
            .await
            .unwrap()
    );
    unit.commit().await.unwrap();

    let later = t0 + Duration::minutes(5);
    assert!(seen("n1", later).await, "a replay within ten minutes");
    assert!(!seen("n2", later).await, "n2 expired after a minute");
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert!(
        !unit
            .record_outcome(Uuid::new_v4(), &json!({}), remember("n1", later, 10), None)
            .await
            .unwrap()
    );
    unit.rollback().await.unwrap();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert!(
        unit.record_outcome(Uuid::new_v4(), &json!({}), remember("n2", later, 10), None)
            .await
            .unwrap(),
        "an expired nonce may be used again"
    );
    unit.commit().await.unwrap();

    let much_later = t0 + Duration::minutes(30);
    assert_eq!(store.purge_expired_nonces(much_later).await.unwrap(), 2);
    assert_eq!(store.purge_expired_nonces(much_later).await.unwrap(), 0);
}

#[tokio::test]
async fn the_retention_job_purges_expired_nonces_until_cancelled() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = OffsetDateTime::now_utc();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let old = now - Duration::minutes(20);
    unit.record_outcome(Uuid::new_v4(), &json!({}), remember("old", old, 10), None)
        .await
        .unwrap();
    unit.record_outcome(Uuid::new_v4(), &json!({}), remember("fresh", now, 10), None)
        .await
        .unwrap();
    unit.commit().await.unwrap();

    let cancel = tokio_util::sync::CancellationToken::new();
    let job = tokio::spawn({
        let store = store.clone();
        let cancel = cancel.clone();
        async move {
            store
                .run_nonce_retention(std::time::Duration::from_millis(50), cancel)
                .await
        }
    });
    crate::eventually("the expired nonce to be purged", 10, || async {
        let client = store.client().await.unwrap();
        let left: Vec<String> = client
            .query("SELECT nonce FROM inbox_nonces", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        (left == ["fresh"]).then_some(())
    })
    .await;
    cancel.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), job)
        .await
        .expect("the job stops when cancelled")
        .unwrap();
}

#[tokio::test]
async fn one_lookup_and_one_write_cover_the_whole_inbox() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = OffsetDateTime::now_utc();
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert_eq!(
        unit.inbox_lookup(first, Some("n1"), Some("k1"), now)
            .await
            .unwrap(),
        InboxLookup::default()
    );
    assert!(
        unit.record_outcome(first, &json!({"r": 1}), remember("n1", now, 10), Some("k1"))
            .await
            .unwrap()
    );
    unit.commit().await.unwrap();

    let unit = store.begin(Upcasters::new()).await.unwrap();
    let known = unit
        .inbox_lookup(first, Some("n1"), Some("k1"), now)
        .await
        .unwrap();
    assert_eq!(
        (
            known.processed_reply,
            known.nonce_seen,
            known.callback_reply
        ),
        (Some(json!({"r": 1})), true, Some(json!({"r": 1})))
    );
    // The same nonce again, not expired: refused, and the caller rolls back.
    assert!(
        !unit
            .record_outcome(second, &json!({"r": 2}), remember("n1", now, 10), None)
            .await
            .unwrap()
    );
    unit.rollback().await.unwrap();
    // Without a nonce or a key, only the message is remembered.
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert!(
        unit.record_outcome(second, &json!({"r": 2}), None, None)
            .await
            .unwrap()
    );
    unit.commit().await.unwrap();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let known = unit.inbox_lookup(second, None, None, now).await.unwrap();
    assert_eq!(
        (
            known.processed_reply,
            known.nonce_seen,
            known.callback_reply
        ),
        (Some(json!({"r": 2})), false, None)
    );
}
