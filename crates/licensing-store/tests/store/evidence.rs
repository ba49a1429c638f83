//! The evidence log: byte-exact payloads with their SHA-256, answer notes and decisions in either
//! order, listing filters, monthly partitions and their expiry.

use licensing_store::testing::TestDatabase;
use licensing_store::{Direction, Exchange, ExchangeFilter, Upcasters};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn exchange(at: OffsetDateTime, license: &str, body: &[u8]) -> Exchange {
    Exchange {
        id: Uuid::new_v4(),
        at,
        direction: Direction::In,
        license: Some(license.to_owned()),
        sandbox: false,
        correlation_id: Some(Uuid::new_v4()),
        message_id: None,
        outcome: "000000".to_owned(),
        request: body.to_vec(),
        request_size: body.len() as i64,
        request_meta: json!({"query": "signature=x"}),
        response: Some(br#"{"resultCode":"000000"}"#.to_vec()),
        response_meta: json!({"result_code": "000000"}),
        answered_at: Some(at + Duration::milliseconds(12)),
        decision: None,
    }
}

fn micros(t: OffsetDateTime) -> OffsetDateTime {
    // PostgreSQL keeps microseconds.
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap()
}

#[tokio::test]
async fn payloads_are_stored_byte_for_byte_with_their_hash() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = micros(OffsetDateTime::now_utc());
    // Not UTF-8, with a NUL: bytes, never text.
    let body = b"{\"license\":\"PL1\"}\x00\xff\xfe".to_vec();
    let mut sent = exchange(now, "PL1", &body);
    sent.request_size = 70_000;
    store
        .record_exchanges(std::slice::from_ref(&sent))
        .await
        .unwrap();
    let stored = store.exchange(sent.id).await.unwrap().expect("stored");
    assert_eq!(stored.exchange, sent);
    assert_eq!(stored.request_sha256, Sha256::digest(&body).to_vec());
    assert_eq!(
        stored.response_sha256,
        Some(Sha256::digest(br#"{"resultCode":"000000"}"#).to_vec())
    );
    assert_eq!(store.exchange(Uuid::new_v4()).await.unwrap(), None);
}

#[tokio::test]
async fn an_answer_note_and_a_decision_meet_in_one_row_whatever_their_order() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = micros(OffsetDateTime::now_utc());
    let decided = |e: &Exchange| Exchange {
        decision: Some(json!({"kind": "callback", "resultCode": "000000"})),
        ..e.clone()
    };
    let noted = |e: &Exchange| Exchange {
        outcome: "000004".to_owned(),
        response: Some(br#"{"resultCode":"000004"}"#.to_vec()),
        response_meta: json!({"result_code": "000004"}),
        answered_at: Some(e.at + Duration::seconds(5)),
        ..e.clone()
    };
    // In one statement too (a note and its decision in the same batch).
    let base = exchange(now, "PL2", b"{}");
    let unit = store.begin(Upcasters::new()).await.unwrap();
    unit.record_exchanges(&[noted(&base), decided(&base)])
        .await
        .unwrap();
    unit.commit().await.unwrap();
    let stored = store.exchange(base.id).await.unwrap().unwrap().exchange;
    assert_eq!(
        (stored.outcome.as_str(), stored.decision),
        ("000004", decided(&base).decision)
    );
    for note_first in [true, false] {
        let base = exchange(now, "PL2", b"{}");
        let (first, second) = if note_first {
            (noted(&base), decided(&base))
        } else {
            (decided(&base), noted(&base))
        };
        let unit = store.begin(Upcasters::new()).await.unwrap();
        unit.record_exchanges(&[first]).await.unwrap();
        unit.commit().await.unwrap();
        let unit = store.begin(Upcasters::new()).await.unwrap();
        unit.record_exchanges(&[second]).await.unwrap();
        unit.commit().await.unwrap();
        let stored = store.exchange(base.id).await.unwrap().unwrap().exchange;
        assert_eq!(stored.outcome, "000004", "note first: {note_first}");
        assert_eq!(stored.answered_at, noted(&base).answered_at);
        assert_eq!(stored.decision, decided(&base).decision);
    }
}

#[tokio::test]
async fn exchanges_are_listed_by_license_direction_outcome_and_time() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = micros(OffsetDateTime::now_utc());
    let mut all = Vec::new();
    for i in 0..6 {
        let mut e = exchange(
            now + Duration::seconds(i),
            if i % 2 == 0 { "PLA" } else { "PLB" },
            b"{}",
        );
        if i == 4 {
            e.direction = Direction::Out;
            e.outcome = "retry".to_owned();
        }
        all.push(e);
    }
    store.record_exchanges(&all).await.unwrap();
    let list = |filter: ExchangeFilter| {
        let store = store.clone();
        async move {
            store
                .exchanges(&ExchangeFilter {
                    limit: 100,
                    ..filter
                })
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.exchange.id)
                .collect::<Vec<_>>()
        }
    };
    let ids = |idx: &[usize]| idx.iter().map(|&i| all[i].id).collect::<Vec<_>>();
    assert_eq!(
        list(ExchangeFilter {
            license: Some("PLA".into()),
            ..Default::default()
        })
        .await,
        ids(&[0, 2, 4])
    );
    assert_eq!(
        list(ExchangeFilter {
            direction: Some(Direction::Out),
            ..Default::default()
        })
        .await,
        ids(&[4])
    );
    assert_eq!(
        list(ExchangeFilter {
            outcome: Some("000000".into()),
            from: Some(now + Duration::seconds(1)),
            to: Some(now + Duration::seconds(4)),
            ..Default::default()
        })
        .await,
        ids(&[1, 2, 3])
    );
    assert_eq!(
        list(ExchangeFilter {
            after: Some((all[3].at, all[3].id)),
            ..Default::default()
        })
        .await,
        ids(&[4, 5])
    );
    // Without payloads, the hashes still come.
    let light = store
        .exchanges(&ExchangeFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(light[0].exchange.request.is_empty() && light[0].exchange.response.is_none());
    assert_eq!(light[0].request_sha256, Sha256::digest(b"{}").to_vec());
}

#[tokio::test]
async fn expiry_drops_whole_months_and_keeps_the_newer_ones() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let now = micros(OffsetDateTime::now_utc());
    let old = now - Duration::days(200);
    let older = now - Duration::days(400);
    // A row whose month has no partition yet lands in the default partition…
    let stray = exchange(older, "PLOLD", b"old");
    store
        .record_exchanges(std::slice::from_ref(&stray))
        .await
        .unwrap();
    assert_eq!(store.evidence_volume().await.unwrap().unpartitioned, 1);
    // …and moves into its month when the month is created.
    store.ensure_evidence_partitions(old).await.unwrap();
    store.ensure_evidence_partitions(older).await.unwrap();
    let volume = store.evidence_volume().await.unwrap();
    assert_eq!(volume.unpartitioned, 0, "{volume:?}");
    let kept = exchange(old, "PLKEPT", b"kept");
    let recent = exchange(now, "PLNEW", b"new");
    store
        .record_exchanges(&[kept.clone(), recent.clone()])
        .await
        .unwrap();
    assert_eq!(store.evidence_volume().await.unwrap().exchanges, 3);

    let expired = store
        .maintain_evidence(now, Duration::days(300), Duration::days(300))
        .await
        .unwrap();
    assert!(!expired.months.is_empty(), "{expired:?}");
    assert_eq!(store.exchange(stray.id).await.unwrap(), None);
    assert!(store.exchange(kept.id).await.unwrap().is_some());
    assert!(store.exchange(recent.id).await.unwrap().is_some());
    let volume = store.evidence_volume().await.unwrap();
    assert_eq!(volume.exchanges, 2, "{volume:?}");
    // Expiry works by month: nothing newer than the cutoff's month is touched.
    assert!(
        volume
            .months
            .iter()
            .all(|(m, _)| !expired.months.contains(m))
    );
}

#[tokio::test]
async fn refusals_are_stored_within_the_daily_ceiling_and_a_record_larger_than_it_never_counts() {
    let db = TestDatabase::create().await;
    let store = db.store();
    store.migrate().await.unwrap();
    let now = micros(OffsetDateTime::now_utc());
    let today = now.date();
    let small = exchange(now, "PLR1", &[b'a'; 1000]);
    let huge = exchange(now, "PLR2", &[b'b'; 5000]);
    // Alone larger than the ceiling: dropped, and the day's bytes are not charged for it.
    assert!(!store.record_refusal(&huge, 3000).await.unwrap());
    assert_eq!(store.refusal_day(today).await.unwrap(), (0, 1));
    assert!(store.record_refusal(&small, 3000).await.unwrap());
    assert!(
        store
            .record_refusal(&exchange(now, "PLR3", &[b'c'; 1000]), 3000)
            .await
            .unwrap()
    );
    // A third would pass the ceiling.
    assert!(
        !store
            .record_refusal(&exchange(now, "PLR4", &[b'd'; 1000]), 3000)
            .await
            .unwrap()
    );
    let (bytes, dropped) = store.refusal_day(today).await.unwrap();
    assert!(bytes <= 3000 && bytes > 2000, "{bytes}");
    assert_eq!(dropped, 2);
}
