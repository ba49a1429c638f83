//! The inbox: stored replies for redelivered messages and repeated callbacks, and nonces with expiry.

use licensing_store::testing::TestDatabase;
use licensing_store::{InboxKeys, InboxLookup, InboxOutcome, UnitOfWork, Upcasters};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// A nonce to remember from `now` for `minutes`.
fn remember(nonce: &str, now: OffsetDateTime, minutes: i64) -> Option<(&str, OffsetDateTime)> {
    Some((nonce, now + Duration::minutes(minutes)))
}

/// The inbox keys of one command.
fn keys<'a>(
    message_id: Uuid,
    nonce: Option<&'a str>,
    content_key: Option<&'a str>,
) -> InboxKeys<'a> {
    InboxKeys {
        message_id,
        nonce,
        signature_key: None,
        content_key,
    }
}

/// Records a fresh message that used `nonce` at `now`, kept for `minutes`; true when it was free.
async fn use_nonce(unit: &UnitOfWork, nonce: &str, now: OffsetDateTime, minutes: i64) -> bool {
    record(
        unit,
        Uuid::new_v4(),
        &json!({}),
        remember(nonce, now, minutes),
        None,
        now,
    )
    .await
    .unwrap()
}

/// Looks one command up.
async fn lookup(
    unit: &UnitOfWork,
    id: Uuid,
    nonce: Option<&str>,
    key: Option<&str>,
    now: OffsetDateTime,
) -> InboxLookup {
    let mut found = unit
        .inbox_lookup(&[keys(id, nonce, key)], now)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    found.remove(0)
}

/// Records one outcome at `now`; true when its nonce was free.
async fn record(
    unit: &UnitOfWork,
    id: Uuid,
    reply: &serde_json::Value,
    nonce: Option<(&str, OffsetDateTime)>,
    key: Option<&str>,
    now: OffsetDateTime,
) -> Result<bool, licensing_store::StoreError> {
    let outcome = InboxOutcome {
        message_id: id,
        reply,
        nonce,
        signature_key: None,
        content_key: key,
    };
    Ok(unit.record_outcomes(&[outcome], now).await?.is_empty())
}

#[tokio::test]
async fn a_processed_message_keeps_its_reply() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let id = Uuid::new_v4();
    let now = OffsetDateTime::now_utc();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert_eq!(
        lookup(&unit, id, None, None, now).await,
        InboxLookup::default()
    );
    assert!(
        record(&unit, id, &json!({"resultCode": "000000"}), None, None, now)
            .await
            .unwrap()
    );
    unit.commit().await.unwrap();

    let unit = store.begin(Upcasters::new()).await.unwrap();
    let known = lookup(&unit, id, None, None, now).await;
    assert_eq!(known.processed_reply, Some(json!({"resultCode": "000000"})));
    assert!(
        record(&unit, id, &json!({}), None, None, now)
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
    assert!(
        record(
            &unit,
            Uuid::new_v4(),
            &json!({"first": true}),
            None,
            Some(key),
            now,
        )
        .await
        .unwrap()
    );
    unit.commit().await.unwrap();
    // Answering the same content again is a race the caller lost: refused, it rolls back.
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let again = InboxOutcome {
        message_id: Uuid::new_v4(),
        reply: &json!({"first": false}),
        nonce: None,
        signature_key: None,
        content_key: Some(key),
    };
    let refused = unit.record_outcomes(&[again], now).await.unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("content key") && refused[0].contains("PL1|CS1"),
        "{refused:?}"
    );
    unit.rollback().await.unwrap();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let id = Uuid::new_v4();
    assert_eq!(
        lookup(&unit, id, None, Some(key), now).await.callback_reply,
        Some(json!({"first": true}))
    );
    assert_eq!(
        lookup(&unit, id, None, Some("other"), now)
            .await
            .callback_reply,
        None
    );
}

#[tokio::test]
async fn a_signature_seen_with_an_unexpired_nonce_is_a_replay_whatever_the_nonce() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = OffsetDateTime::now_utc();
    let reply = json!({});
    let signature = "sig:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let first = InboxOutcome {
        message_id: Uuid::new_v4(),
        reply: &reply,
        nonce: remember("n1", now, 10),
        signature_key: Some(signature),
        content_key: None,
    };
    assert!(
        unit.record_outcomes(&[first], now)
            .await
            .unwrap()
            .is_empty()
    );
    unit.commit().await.unwrap();
    let seen = |nonce: &'static str, signature: &'static str, at: OffsetDateTime| {
        let store = store.clone();
        async move {
            let unit = store.begin(Upcasters::new()).await.unwrap();
            let keys = InboxKeys {
                message_id: Uuid::new_v4(),
                nonce: Some(nonce),
                signature_key: Some(signature),
                content_key: None,
            };
            unit.inbox_lookup(&[keys], at).await.unwrap()[0].nonce_seen
        }
    };
    assert!(seen("n2", signature, now).await, "the signature again");
    assert!(seen("n1", "sig:00", now).await, "the nonce again");
    assert!(!seen("n2", "sig:00", now).await);
    let later = now + Duration::minutes(11);
    assert!(
        !seen("n2", signature, later).await,
        "expired with its nonce"
    );
    // Expired and not purged yet, the key is free: a row with another nonce may take it.
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let again = InboxOutcome {
        message_id: Uuid::new_v4(),
        reply: &reply,
        nonce: remember("n2", later, 10),
        signature_key: Some(signature),
        content_key: None,
    };
    assert!(
        unit.record_outcomes(&[again], later)
            .await
            .unwrap()
            .is_empty()
    );
    unit.rollback().await.unwrap();
    assert_eq!(
        store.purge_expired_nonces(later).await.unwrap(),
        1,
        "one row"
    );
}

#[tokio::test]
async fn migration_7_moves_content_keys_and_keeps_signature_keys_recorded_before_it() {
    let db = TestDatabase::create_at(6).await;
    let store = db.store();
    let now = OffsetDateTime::now_utc();
    let (decided, repeat, plain) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let signature = "sig:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    {
        let client = store.client().await.unwrap();
        // Rows as the earlier schema held them: the content key in a table of its own, the
        // signature key in a nonce row.
        client
            .execute(
                "INSERT INTO inbox_messages (message_id, reply) \
                 VALUES ($1, '{\"r\": 1}'), ($2, '{\"r\": 1}'), ($3, '{\"r\": 3}')",
                &[&decided, &repeat, &plain],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO inbox_callbacks (content_key, message_id, reply) \
                 VALUES ('k1', $1, '{\"r\": 1}')",
                &[&decided],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO inbox_nonces (nonce, expires_at) VALUES ('n1', $1), ($2, $1)",
                &[&(now + Duration::minutes(10)), &signature],
            )
            .await
            .unwrap();
    }
    assert_eq!(store.migrate().await.unwrap(), [7]);

    let unit = store.begin(Upcasters::new()).await.unwrap();
    let asked = [
        InboxKeys {
            message_id: Uuid::new_v4(),
            nonce: Some("n9"),
            signature_key: Some(signature),
            content_key: Some("k1"),
        },
        keys(plain, Some("n1"), None),
        keys(decided, None, Some("k2")),
    ];
    let found = unit.inbox_lookup(&asked, now).await.unwrap();
    assert!(
        found[0].nonce_seen,
        "a signature key recorded before is still seen"
    );
    assert_eq!(
        found[0].callback_reply,
        Some(json!({"r": 1})),
        "the first answer moved"
    );
    assert_eq!(found[1].processed_reply, Some(json!({"r": 3})));
    assert!(found[1].nonce_seen);
    assert_eq!(found[2].processed_reply, Some(json!({"r": 1})));
    assert_eq!(found[2].callback_reply, None);
    let client = store.client().await.unwrap();
    let keyed: i64 = client
        .query_one(
            "SELECT count(*) FROM inbox_messages WHERE content_key IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(keyed, 1, "only the decided callback's row carries its key");
    let table: Option<String> = client
        .query_one("SELECT to_regclass('inbox_callbacks')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(table, None, "the separate table is gone");
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
            lookup(&unit, Uuid::new_v4(), Some(nonce), None, now)
                .await
                .nonce_seen
        }
    };

    assert!(!seen("n1", t0).await);
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert!(use_nonce(&unit, "n1", t0, 10).await);
    assert!(use_nonce(&unit, "n2", t0, 1).await);
    unit.commit().await.unwrap();

    let later = t0 + Duration::minutes(5);
    assert!(seen("n1", later).await, "a replay within ten minutes");
    assert!(!seen("n2", later).await, "n2 expired after a minute");
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert!(!use_nonce(&unit, "n1", later, 10).await);
    unit.rollback().await.unwrap();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert!(
        use_nonce(&unit, "n2", later, 10).await,
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
    assert!(use_nonce(&unit, "old", old, 10).await);
    assert!(use_nonce(&unit, "fresh", now, 10).await);
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
        lookup(&unit, first, Some("n1"), Some("k1"), now).await,
        InboxLookup::default()
    );
    assert!(
        record(
            &unit,
            first,
            &json!({"r": 1}),
            remember("n1", now, 10),
            Some("k1"),
            now
        )
        .await
        .unwrap()
    );
    unit.commit().await.unwrap();

    let unit = store.begin(Upcasters::new()).await.unwrap();
    let known = lookup(&unit, first, Some("n1"), Some("k1"), now).await;
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
        !record(
            &unit,
            second,
            &json!({"r": 2}),
            remember("n1", now, 10),
            None,
            now
        )
        .await
        .unwrap()
    );
    unit.rollback().await.unwrap();
    // Without a nonce or a key, only the message is remembered.
    let unit = store.begin(Upcasters::new()).await.unwrap();
    assert!(
        record(&unit, second, &json!({"r": 2}), None, None, now)
            .await
            .unwrap()
    );
    unit.commit().await.unwrap();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let known = lookup(&unit, second, None, None, now).await;
    assert_eq!(
        (
            known.processed_reply,
            known.nonce_seen,
            known.callback_reply
        ),
        (Some(json!({"r": 2})), false, None)
    );
}

#[tokio::test]
async fn a_batch_is_looked_up_and_recorded_in_one_statement_each() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = OffsetDateTime::now_utc();
    let expires = now + Duration::minutes(10);
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let (r0, r1, r2, r3) = (
        json!({"r": 0}),
        json!({"r": 1}),
        json!({"r": 2}),
        json!({"r": 3}),
    );
    let unit = store.begin(Upcasters::new()).await.unwrap();
    record(&unit, ids[0], &r0, Some(("held", expires)), Some("k0"), now)
        .await
        .unwrap();
    unit.commit().await.unwrap();

    let unit = store.begin(Upcasters::new()).await.unwrap();
    let found = unit
        .inbox_lookup(
            &[
                keys(ids[1], Some("fresh"), Some("k1")),
                keys(ids[0], None, None),
                keys(ids[2], Some("held"), None),
                keys(ids[3], None, Some("k0")),
            ],
            now,
        )
        .await
        .unwrap();
    let seen: Vec<_> = found
        .iter()
        .map(|f| {
            (
                f.processed_reply.clone(),
                f.nonce_seen,
                f.callback_reply.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (None, false, None),
            (Some(r0.clone()), false, None),
            (None, true, None),
            (None, false, Some(r0.clone())),
        ],
        "in the order asked"
    );

    // Several outcomes at once: a held nonce is reported (and the caller rolls back).
    let outcome = |id, reply, nonce: Option<&'static str>, key| InboxOutcome {
        message_id: id,
        reply,
        nonce: nonce.map(|n| (n, expires)),
        signature_key: None,
        content_key: key,
    };
    let refused = unit
        .record_outcomes(
            &[
                outcome(ids[1], &r1, Some("fresh"), Some("k1")),
                outcome(ids[2], &r2, Some("held"), None),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(refused, ["nonce held"]);
    unit.rollback().await.unwrap();

    // Without the replay: everything is remembered.
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let refused = unit
        .record_outcomes(
            &[
                outcome(ids[1], &r1, Some("fresh"), Some("k1")),
                outcome(ids[2], &r2, Some("other"), None),
                outcome(ids[3], &r3, None, None),
            ],
            now,
        )
        .await
        .unwrap();
    assert!(refused.is_empty());
    unit.commit().await.unwrap();
    let unit = store.begin(Upcasters::new()).await.unwrap();
    let found = unit
        .inbox_lookup(
            &[
                keys(ids[3], Some("other"), Some("k1")),
                keys(ids[2], Some("fresh"), None),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(found[0].processed_reply, Some(r3));
    assert!(found[0].nonce_seen && found[1].nonce_seen);
    assert_eq!(found[0].callback_reply, Some(r1));
    assert_eq!(found[1].processed_reply, Some(r2));
    assert!(unit.inbox_lookup(&[], now).await.unwrap().is_empty());
    assert!(unit.record_outcomes(&[], now).await.unwrap().is_empty());
}
