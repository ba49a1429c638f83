//! `apply` against the real PostgreSQL: one command, one transaction, and every way a command can
//! come twice.

use koogallery::callback::{CallbackRequest, ResultCode};
use licensing_messages::{
    CallbackCommand, CommandBody, CommandEnvelope, ENVELOPE_VERSION, Interpretation, Reply,
};
use licensing_processor::apply;
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
        command: CommandBody::Callback(CallbackCommand {
            request: CallbackRequest::parse(body.as_bytes()).unwrap(),
            nonce: nonce.into(),
            timestamp_ms: 1_795_000_000_000,
            raw_query: String::new(),
            raw_body: body.into(),
        }),
    }
}

const RENEW: &str = r#"{"activity":"refreshLicenseCode","expireTime":"20271231235959","license":"PL1","orderId":"CS1","orderLineId":"CS1-1","scene":"RENEWAL"}"#;
const FREEZE: &str = r#"{"activity":"updateLicenseCodeStatus","license":"PL1","status":"FREEZE"}"#;

async fn run(store: &Store, envelope: &CommandEnvelope) -> licensing_processor::Applied {
    apply(
        store,
        &Interpretation::default(),
        Duration::minutes(10),
        envelope,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap()
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
    assert_eq!((first.outcome, first.events), ("applied", 2));
    // The processor died after the commit and before the ack: the broker delivers it again.
    let again = run(&store, &envelope).await;
    assert_eq!((again.outcome, again.events), ("redelivered", 0));
    assert_eq!(again.reply, first.reply);
    assert_eq!(count(&store).await, 2);
}

#[tokio::test]
async fn a_repeated_callback_gets_the_first_answer_and_a_replayed_nonce_is_refused() {
    let db = TestDatabase::create().await;
    let store = db.store();
    assert_eq!(run(&store, &callback(RENEW, "n1")).await.outcome, "applied");
    let repeat = run(&store, &callback(RENEW, "n2")).await;
    assert_eq!(repeat.outcome, "repeated");
    assert_eq!(
        repeat.reply,
        Reply::callback(ResultCode::Success, "success.")
    );
    let replay = run(&store, &callback(FREEZE, "n1")).await;
    assert_eq!(replay.outcome, "replayed_nonce");
    assert!(
        matches!(replay.reply, Reply::Callback(ref r) if r.result_code == ResultCode::AuthenticationFailed)
    );
    assert_eq!(
        count(&store).await,
        2,
        "neither the repeat nor the replay appended"
    );
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
            run(&store, &callback(body, nonce)).await.outcome,
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
