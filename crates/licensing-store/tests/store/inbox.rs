//! The inbox: stored replies for redelivered messages and repeated callbacks, and nonces with expiry.

use licensing_store::Upcasters;
use licensing_store::testing::TestDatabase;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

#[tokio::test]
async fn a_processed_message_keeps_its_reply() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let id = Uuid::new_v4();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert_eq!(unit.processed_reply(id).await.unwrap(), None);
    unit.record_processed(id, &json!({"resultCode": "000000"}))
        .await
        .unwrap();
    unit.commit().await.unwrap();

    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert_eq!(
        unit.processed_reply(id).await.unwrap(),
        Some(json!({"resultCode": "000000"}))
    );
    assert!(
        unit.record_processed(id, &json!({})).await.is_err(),
        "a message is processed once"
    );
}

#[tokio::test]
async fn a_callback_keeps_its_first_reply() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let key = "refreshLicenseCode|PL1|CS1|CS1-1|RENEWAL|20250101000000|";
    let unit = store.begin(Upcasters::new()).await.unwrap();
    unit.record_callback(key, Uuid::new_v4(), &json!({"first": true}))
        .await
        .unwrap();
    unit.record_callback(key, Uuid::new_v4(), &json!({"first": false}))
        .await
        .unwrap();
    unit.commit().await.unwrap();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert_eq!(
        unit.callback_reply(key).await.unwrap(),
        Some(json!({"first": true}))
    );
    assert_eq!(unit.callback_reply("other").await.unwrap(), None);
}

#[tokio::test]
async fn nonces_are_refused_until_they_expire_then_purged() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let t0 = OffsetDateTime::now_utc();
    let ttl = Duration::minutes(10);

    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert!(!unit.nonce_seen("n1", t0).await.unwrap());
    assert!(unit.remember_nonce("n1", t0, t0 + ttl).await.unwrap());
    assert!(
        unit.remember_nonce("n2", t0, t0 + Duration::minutes(1))
            .await
            .unwrap()
    );
    unit.commit().await.unwrap();

    let unit = store.begin(Upcasters::new()).await.unwrap();
    let later = t0 + Duration::minutes(5);
    assert!(
        unit.nonce_seen("n1", later).await.unwrap(),
        "a replay within ten minutes"
    );
    assert!(!unit.remember_nonce("n1", later, later + ttl).await.unwrap());
    assert!(
        !unit.nonce_seen("n2", later).await.unwrap(),
        "n2 expired after a minute"
    );
    assert!(
        unit.remember_nonce("n2", later, later + ttl).await.unwrap(),
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
    unit.remember_nonce(
        "old",
        now - Duration::minutes(20),
        now - Duration::minutes(10),
    )
    .await
    .unwrap();
    unit.remember_nonce("fresh", now, now + Duration::minutes(10))
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
        licensing_store::InboxLookup::default()
    );
    assert!(
        unit.record_outcome(
            first,
            &json!({"r": 1}),
            Some(("n1", now, now + Duration::minutes(10))),
            Some("k1")
        )
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
            .record_outcome(
                second,
                &json!({"r": 2}),
                Some(("n1", now, now + Duration::minutes(10))),
                None
            )
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
