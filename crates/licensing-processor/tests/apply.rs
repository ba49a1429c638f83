//! `apply_batch` against the real PostgreSQL: one transaction per batch, a batch equal to its
//! commands applied one by one, and every way a command can come twice, across batches or within one.

use koogallery::callback::{CallbackRequest, ResultCode};
use licensing_messages::{
    CallbackCommand, CommandBody, CommandEnvelope, ENVELOPE_VERSION, Interpretation, Reply,
};
use licensing_processor::{Applied, ApplyError, KeptStates, Outcome, apply_batch};
use licensing_store::Store;
use licensing_store::testing::TestDatabase;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn callback(body: &str, nonce: &str) -> CommandEnvelope {
    CommandEnvelope {
        v: ENVELOPE_VERSION,
        message_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        received_at_ms: 1_795_000_000_000,
        source: "koogallery".into(),
        request_hash: None,
        actor: None,
        command: CommandBody::Callback(CallbackCommand {
            request: CallbackRequest::parse(body.as_bytes()).unwrap(),
            nonce: nonce.into(),
            timestamp_ms: 1_795_000_000_000,
            signature: Some(format!("{nonce:0>64}")),
            raw_query: String::new(),
            raw_body: body.into(),
            seen: None,
        }),
        trace_parent: None,
    }
}

const RENEW: &str = r#"{"activity":"refreshLicenseCode","expireTime":"20271231235959","license":"PL1","orderId":"CS1","orderLineId":"CS1-1","scene":"RENEWAL"}"#;
const FREEZE: &str = r#"{"activity":"updateLicenseCodeStatus","license":"PL1","status":"FREEZE"}"#;

async fn run(store: &Store, envelope: &CommandEnvelope) -> Applied {
    let mut applied = batch(store, &[envelope]).await.unwrap();
    assert_eq!(applied.len(), 1);
    applied.remove(0)
}

/// A batch applied with nothing kept: every stream folded in full.
async fn batch(store: &Store, envelopes: &[&CommandEnvelope]) -> Result<Vec<Applied>, ApplyError> {
    batch_kept(store, &KeptStates::new(0), envelopes).await
}

async fn batch_kept(
    store: &Store,
    kept: &KeptStates,
    envelopes: &[&CommandEnvelope],
) -> Result<Vec<Applied>, ApplyError> {
    apply_batch(
        store,
        kept,
        &Interpretation::default(),
        Duration::minutes(10),
        envelopes,
        OffsetDateTime::now_utc(),
    )
    .await
}

/// Every event in global order: (stream, version, type).
async fn history(store: &Store) -> Vec<(String, i64, String)> {
    store
        .client()
        .await
        .unwrap()
        .query(
            "SELECT stream_id, stream_version, event_type FROM events ORDER BY global_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn count(store: &Store) -> i64 {
    store
        .client()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_redelivered_message_gets_its_stored_reply_and_appends_nothing() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let envelope = callback(RENEW, "n1");
    let first = run(&store, &envelope).await;
    assert_eq!((first.outcome, first.events), (Outcome::Applied, 2));
    // The processor died after the commit and before the ack: the broker delivers it again.
    let again = run(&store, &envelope).await;
    assert_eq!((again.outcome, again.events), (Outcome::Redelivered, 0));
    assert_eq!(again.reply, first.reply);
    assert_eq!(count(&store).await, 2);
}

#[tokio::test]
async fn a_repeated_callback_gets_the_first_answer_and_a_replayed_nonce_is_refused() {
    let db = TestDatabase::create().await;
    let store = db.store();
    assert_eq!(
        run(&store, &callback(RENEW, "n1")).await.outcome,
        Outcome::Applied
    );
    let repeat = run(&store, &callback(RENEW, "n2")).await;
    assert_eq!(repeat.outcome, Outcome::Repeated);
    assert_eq!(
        repeat.reply,
        Reply::callback(ResultCode::Success, "success.")
    );
    let replay = run(&store, &callback(FREEZE, "n1")).await;
    assert_eq!(replay.outcome, Outcome::ReplayedNonce);
    assert!(
        matches!(replay.reply, Reply::Callback(ref r) if r.result_code == ResultCode::AuthenticationFailed)
    );
    assert_eq!(
        count(&store).await,
        2,
        "neither the repeat nor the replay appended"
    );
}

/// The same callback with another signature.
fn signed(mut envelope: CommandEnvelope, signature: &str) -> CommandEnvelope {
    if let CommandBody::Callback(c) = &mut envelope.command {
        c.signature = Some(signature.to_owned());
    }
    envelope
}

#[tokio::test]
async fn a_seen_signature_is_a_replay_whatever_nonce_comes_with_it() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let freeze = signed(callback(FREEZE, "nonce-one"), &"a".repeat(64));
    assert_eq!(run(&store, &freeze).await.outcome, Outcome::Applied);
    let after_the_freeze = count(&store).await;
    // The captured signature under a rewritten nonce: refused across batches…
    let rewritten = signed(callback(FREEZE, "nonce-two"), &"a".repeat(64));
    let replay = run(&store, &rewritten).await;
    assert_eq!(replay.outcome, Outcome::ReplayedNonce);
    assert!(
        matches!(replay.reply, Reply::Callback(ref r) if r.result_code == ResultCode::AuthenticationFailed)
    );
    // …and within one.
    let fresh = signed(callback(FREEZE, "nonce-three"), &"b".repeat(64));
    let twin = signed(callback(FREEZE, "nonce-four"), &"b".repeat(64));
    let outcomes: Vec<_> = batch(&store, &[&fresh, &twin])
        .await
        .unwrap()
        .iter()
        .map(|a| a.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["unchanged", "replayed_nonce"]);
    // A message queued before signatures were carried is checked by its nonce alone.
    let mut unsigned = callback(FREEZE, "nonce-five");
    if let CommandBody::Callback(c) = &mut unsigned.command {
        c.signature = None;
    }
    assert_eq!(run(&store, &unsigned).await.outcome, Outcome::Unchanged);
    assert_eq!(
        count(&store).await,
        after_the_freeze,
        "one freeze, nothing more"
    );
    // Each replay is evidence, but a refusal: kept apart from the license's genuine exchanges.
    let client = store.client().await.unwrap();
    let rows = client
        .query(
            "SELECT message_id IS NULL, request_meta->>'refusal' FROM evidence_exchanges
              WHERE license = 'PL1' ORDER BY at, id",
            &[],
        )
        .await
        .unwrap();
    let kinds: Vec<(bool, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let refused = kinds.iter().filter(|(apart, _)| *apart).count();
    assert_eq!(refused, 2, "the two replays, apart: {kinds:?}");
    assert!(
        kinds
            .iter()
            .filter(|(apart, _)| *apart)
            .all(|(_, reason)| reason.as_deref() == Some("replayed_nonce")),
        "{kinds:?}"
    );
    assert_eq!(kinds.len() - refused, 3, "the genuine ones: {kinds:?}");
}

#[tokio::test]
async fn status_changes_are_idempotent_by_state_not_by_content() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let unfreeze = FREEZE.replace("\"FREEZE\"", "\"UNFREEZE\"");
    for (body, nonce, outcome) in [
        (FREEZE, "a", "applied"),
        (FREEZE, "b", "unchanged"),
        (unfreeze.as_str(), "c", "applied"),
        (FREEZE, "d", "applied"),
    ] {
        assert_eq!(
            run(&store, &callback(body, nonce)).await.outcome.as_str(),
            outcome,
            "{body} ({nonce})"
        );
    }
    let types: Vec<String> = store
        .load("license-PL1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .filter(|t| t != "access_changed")
        .collect();
    assert_eq!(
        types,
        ["registered", "frozen", "unfrozen", "frozen"],
        "a second genuine freeze is applied (ADR 0003)"
    );
}

#[tokio::test]
async fn events_carry_the_command_metadata() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let envelope = callback(RENEW, "n1");
    run(&store, &envelope).await;
    for event in store.load("license-PL1").await.unwrap() {
        assert_eq!(event.metadata.message_id, Some(envelope.message_id));
        assert_eq!(event.metadata.causation_id, Some(envelope.message_id));
        assert_eq!(event.metadata.correlation_id, Some(envelope.correlation_id));
        assert_eq!(event.metadata.received_at_ms, Some(envelope.received_at_ms));
        assert_eq!(event.metadata.source.as_deref(), Some("koogallery"));
    }
}

fn renew(license: &str, order: &str, expire: &str) -> String {
    format!(
        r#"{{"activity":"refreshLicenseCode","expireTime":"{expire}","license":"{license}","orderId":"{order}","orderLineId":"{order}-1","scene":"RENEWAL"}}"#
    )
}

fn status(license: &str, status: &str) -> String {
    format!(r#"{{"activity":"updateLicenseCodeStatus","license":"{license}","status":"{status}"}}"#)
}

#[tokio::test]
async fn a_batch_decides_like_its_commands_one_by_one() {
    let bodies = [
        renew("PL1", "CS1", "20271231235959"),
        status("PL2", "FREEZE"),
        status("PL1", "FREEZE"),
        status("PL1", "FREEZE"),
        status("PL1", "UNFREEZE"),
        renew("PL2", "CS2", "20281231235959"),
        r#"{"activity":"releaseLicenseCode","license":"PL3"}"#.to_owned(),
        status("PL3", "UNFREEZE"),
    ];
    let mut envelopes: Vec<CommandEnvelope> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| callback(body, &format!("n{i}")))
        .collect();
    let mut unreadable = callback(RENEW, "unused");
    unreadable.command = CommandBody::RequestActivation {
        license: "PL1".into(),
        real_effect_time: Some("not a time".into()),
    };
    envelopes.push(unreadable);

    let one_by_one = TestDatabase::create().await;
    let mut expected = Vec::new();
    for envelope in &envelopes {
        let applied = run(&one_by_one.store(), envelope).await;
        expected.push((applied.outcome, applied.events, applied.reply));
    }
    let together = TestDatabase::create().await;
    let refs: Vec<&CommandEnvelope> = envelopes.iter().collect();
    let applied: Vec<_> = batch(&together.store(), &refs)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.outcome, a.events, a.reply))
        .collect();
    assert_eq!(applied, expected);
    assert_eq!(
        history(&together.store()).await,
        history(&one_by_one.store()).await,
        "the same events, in the same global order"
    );
    let outcomes: Vec<_> = applied.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "applied",
            "applied",
            "applied",
            "unchanged",
            "applied",
            "applied",
            "applied",
            "applied",
            "invalid"
        ]
    );
}

#[tokio::test]
async fn repeats_within_a_batch_are_found_like_repeats_across_batches() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let first = callback(RENEW, "n1");
    let same_content = callback(RENEW, "n2");
    let same_nonce = callback(FREEZE, "n1");
    let applied = batch(&store, &[&first, &same_content, &first, &same_nonce])
        .await
        .unwrap();
    let outcomes: Vec<_> = applied
        .iter()
        .map(|a| (a.outcome.as_str(), a.events))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("applied", 2),
            ("repeated", 0),
            ("redelivered", 0),
            ("replayed_nonce", 0)
        ]
    );
    assert_eq!(applied[1].reply, applied[0].reply);
    assert_eq!(applied[2].reply, applied[0].reply);
    assert_eq!(count(&store).await, 2);

    // And what the batch recorded answers later batches.
    let later = batch(
        &store,
        &[
            &same_content,
            &callback(RENEW, "n3"),
            &callback(FREEZE, "n2"),
        ],
    )
    .await
    .unwrap();
    let outcomes: Vec<_> = later.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["redelivered", "repeated", "replayed_nonce"]);
    assert_eq!(count(&store).await, 2);
}

#[tokio::test]
async fn a_stream_the_processor_cannot_read_fails_the_batch_and_writes_nothing() {
    let db = TestDatabase::create().await;
    let store = db.store();
    store
        .append(
            "license-PLBAD",
            0,
            vec![licensing_store::NewEvent {
                event_id: Uuid::new_v4(),
                event_type: "written_by_a_later_release".into(),
                schema_version: 1,
                payload: serde_json::json!({}),
                metadata: licensing_store::EventMetadata::default(),
            }],
        )
        .await
        .unwrap();
    let good = callback(RENEW, "n1");
    let bad = callback(&status("PLBAD", "FREEZE"), "n2");
    let error = batch(&store, &[&good, &bad]).await.unwrap_err();
    assert!(
        matches!(&error, ApplyError::Poison { reason: "unreadable_stream", detail } if detail.contains("license-PLBAD")),
        "{error}"
    );
    assert_eq!(
        count(&store).await,
        1,
        "the good command was rolled back too"
    );
    // Alone, the good command goes through (the worker splits a failed batch).
    assert_eq!(run(&store, &good).await.outcome, Outcome::Applied);
    assert!(matches!(
        batch(&store, &[&bad]).await,
        Err(ApplyError::Poison { .. })
    ));
}

#[tokio::test]
async fn concurrent_writers_on_one_license_see_conflicts_never_failures() {
    // What a second processor would do (single active consumer prevents it, the store does not):
    // both load the same version, one append wins, the other must learn it is a conflict, even
    // though its inbox write travelled in the same round trip and failed with it.
    let db = TestDatabase::create().await;
    let store = db.store();
    let writers = 8;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let envelope = callback(
                &renew("PL1", &format!("CS{w}"), "20271231235959"),
                &format!("n{w}"),
            );
            let mut conflicts = 0;
            loop {
                match batch(&store, &[&envelope]).await {
                    Ok(applied) => return (applied[0].outcome, conflicts),
                    Err(ApplyError::Conflict(_)) => conflicts += 1,
                    Err(other) => panic!("writer {w}: {other}"),
                }
            }
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        let (outcome, seen) = task.await.unwrap();
        assert_eq!(outcome, Outcome::Applied);
        conflicts += seen;
    }
    assert!(conflicts > 0, "the writers overlapped");
    let versions: Vec<i64> = store
        .load("license-PL1")
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(versions, (1..=(writers + 1) as i64).collect::<Vec<_>>());
}

/// A license's state folded from every stored event of its stream.
async fn folded(store: &Store, stream: &str) -> licensing_domain::License {
    store
        .load(stream)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            licensing_messages::event_codec::decode(&e.event_type, e.schema_version, &e.payload)
                .unwrap()
        })
        .fold(licensing_domain::License::default(), |state, event| {
            licensing_domain::evolve(state, &event)
        })
}

/// The commands of a busy license: renewals, a freeze and an unfreeze, repeats among them.
fn busy_license(round: usize) -> Vec<CommandEnvelope> {
    let renew = |i: usize| {
        format!(
            r#"{{"activity":"refreshLicenseCode","expireTime":"{}1231235959","license":"PL1","orderId":"CS{i}","orderLineId":"CS{i}-1","scene":"RENEWAL"}}"#,
            2027 + i
        )
    };
    let status = |s: &str| {
        format!(r#"{{"activity":"updateLicenseCodeStatus","license":"PL1","status":"{s}"}}"#)
    };
    let nonce = |k: usize| format!("r{round}k{k}");
    vec![
        callback(&renew(round), &nonce(0)),
        callback(&status("FREEZE"), &nonce(1)),
        callback(&renew(round), &nonce(2)),
        callback(&status("UNFREEZE"), &nonce(3)),
    ]
}

#[tokio::test]
async fn a_kept_state_decides_like_the_full_fold_also_when_another_processor_wrote_meanwhile() {
    // The same commands on two stores: one folded in full for every batch, the other by two
    // processors, each with its kept states, taking turns (a shard moving between them).
    let (full_db, kept_db) = (TestDatabase::create().await, TestDatabase::create().await);
    let (full, kept) = (full_db.store(), kept_db.store());
    let processors = [KeptStates::new(100), KeptStates::new(100)];
    for round in 0..12 {
        let commands = busy_license(round);
        for (i, command) in commands.iter().enumerate() {
            let by = &processors[(round + i / 2) % 2];
            let (a, b) = (
                batch(&full, &[command]).await.unwrap(),
                batch_kept(&kept, by, &[command]).await.unwrap(),
            );
            assert_eq!(
                (a[0].outcome, a[0].events, &a[0].reply),
                (b[0].outcome, b[0].events, &b[0].reply),
                "round {round}, command {i}"
            );
        }
    }
    assert_eq!(history(&full).await, history(&kept).await);
    // Each processor's kept state is the full fold of what it last saw; brought up to date by
    // one more command, both equal the stream's full fold.
    let last = callback(FREEZE, "last");
    for (n, by) in processors.iter().enumerate() {
        let again = signed(last.clone(), &format!("{n:0>64}"));
        batch_kept(&kept, by, &[&again]).await.unwrap();
        assert_eq!(
            by.state("license-PL1"),
            Some(folded(&kept, "license-PL1").await),
            "processor {n}"
        );
    }
    assert!(folded(&kept, "license-PL1").await.version > 40);
}

#[tokio::test]
async fn a_kept_state_ahead_of_a_repaired_stream_fails_one_attempt_and_is_then_forgotten() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let kept = KeptStates::new(100);
    batch_kept(&store, &kept, &[&callback(RENEW, "n1")])
        .await
        .unwrap();
    assert_eq!(kept.state("license-PL1").map(|s| s.version), Some(2));
    // An operator removes the stream's events (as a repair before a re-drive does).
    store
        .client()
        .await
        .unwrap()
        .batch_execute(
            "ALTER TABLE events DISABLE TRIGGER events_append_only;
             DELETE FROM events WHERE stream_id = 'license-PL1';
             ALTER TABLE events ENABLE TRIGGER events_append_only;",
        )
        .await
        .unwrap();
    let freeze = callback(FREEZE, "n2");
    // The kept state says version 2; the stream is empty: the append conflicts once…
    assert!(matches!(
        batch_kept(&store, &kept, &[&freeze]).await,
        Err(ApplyError::Conflict(_))
    ));
    assert_eq!(
        kept.state("license-PL1"),
        None,
        "forgotten after the failure"
    );
    // …and the retry, folding the stream in full, decides against what is stored.
    let again = batch_kept(&store, &kept, &[&freeze]).await.unwrap();
    assert_eq!(again[0].outcome, Outcome::Applied);
    assert_eq!(
        kept.state("license-PL1"),
        Some(folded(&store, "license-PL1").await)
    );
}
