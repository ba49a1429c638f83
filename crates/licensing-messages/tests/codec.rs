//! Every domain event survives the trip to stored JSON and back; the JSON is pinned by snapshots.

use licensing_domain::*;
use licensing_messages::event_codec::{self, SCHEMA_VERSION, decode, encode};

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn market(raw: &str) -> MarketTime {
    MarketTime {
        instant: t(1_700_000_000_000),
        raw: raw.into(),
    }
}

fn failure() -> CallFailure {
    CallFailure {
        code: "92020001".into(),
        message: "internal error".into(),
        retryable: true,
    }
}

fn every_event() -> Vec<Event> {
    let renewed = Renewed {
        order_id: "CS2".into(),
        order_line_id: "CS2-000001".into(),
        scene: Scene::Other("TRIAL_TO_FORMAL".into()),
        product_id: Some("OFFI2".into()),
        expire: market("20271231235959"),
        at: t(3),
    };
    vec![
        Event::Registered(Registered {
            license: LicenseCode::parse("PL1").unwrap(),
            sandbox: true,
            origin: Origin::Callback,
            at: t(1),
        }),
        Event::ActivationRequested(ActivationRequested {
            real_effect_time: Some(t(5)),
            at: t(2),
        }),
        Event::Activated(Activated {
            attempt: 1,
            info: Some(LicenseCodeInfo {
                status: "ALIVE".into(),
                expire: Some(market("20230726121646")),
                product_id: Some("12345".into()),
                order_id: Some("CS123".into()),
                amount: Some(2),
                raw: r#"{"status":"ALIVE"}"#.into(),
            }),
            already_activated: false,
            at: t(3),
        }),
        Event::Activated(Activated {
            attempt: 2,
            info: None,
            already_activated: true,
            at: t(3),
        }),
        Event::ActivationAwaitingClaim(ActivationAwaitingClaim {
            attempt: 1,
            code: "92020004".into(),
            message: "not received".into(),
            at: t(3),
        }),
        Event::ActivationFailed(CallFailed {
            attempt: 3,
            failure: failure(),
            at: t(3),
        }),
        Event::Renewed(renewed.clone()),
        Event::RenewalCancelled(Renewed {
            scene: Scene::UnsubscribeRenewalPeriod,
            product_id: None,
            ..renewed
        }),
        Event::Frozen(StatusChanged { at: t(4) }),
        Event::Unfrozen(StatusChanged { at: t(5) }),
        Event::Released(Released {
            order_id: Some("CS9".into()),
            order_line_id: None,
            at: t(6),
        }),
        Event::UsageRecorded(UsageRecorded {
            day: Day::from_number(19_700),
            account: "alice".into(),
            ip: Some("10.0.0.1".into()),
            at: t(7),
        }),
        Event::HeartbeatAcknowledged(HeartbeatAcknowledged {
            day: Day::from_number(19_700),
            attempt: 1,
            status: MarketStatus::Other("SUSPENDED".into()),
            expire: Some(market("20280101000000")),
            at: t(8),
        }),
        Event::HeartbeatFailed(HeartbeatFailed {
            day: Day::from_number(19_700),
            attempt: 2,
            failure: failure(),
            at: t(9),
        }),
        Event::CallbackIgnored(CallbackIgnored {
            key: CallbackKey::Refresh {
                order_id: "a".into(),
                order_line_id: "b".into(),
                scene: "RENEWAL".into(),
                expire_time: "20250101000000".into(),
            },
            reason: IgnoreReason::AlreadyReleased,
            at: t(10),
        }),
        Event::CallbackIgnored(CallbackIgnored {
            key: CallbackKey::Status(StatusChange::Unfreeze),
            reason: IgnoreReason::AlreadyReleased,
            at: t(10),
        }),
        Event::CallbackIgnored(CallbackIgnored {
            key: CallbackKey::Release {
                order_id: None,
                order_line_id: Some("x".into()),
            },
            reason: IgnoreReason::AlreadyReleased,
            at: t(10),
        }),
        Event::DriftDetected(DriftDetected {
            status: Some((LocalStatus::Active, MarketStatus::Released)),
            expire: None,
            product_id: None,
            order_id: None,
            at: t(11),
        }),
        Event::DriftDetected(full_drift()),
        Event::DriftResolved(DriftResolved {
            accepted: DriftSide::Marketplace,
            drift: full_drift(),
            note: "checked in the seller console".into(),
            actor: "ops".into(),
            at: t(13),
        }),
        Event::AccessChanged(AccessChanged {
            from: AccessMode::Active,
            to: AccessMode::Frozen,
            reason: AccessReason::Frozen,
            access_until: None,
            data_kept_until: Some(t(1_300_000)),
            at: t(14),
        }),
        Event::AccessChanged(AccessChanged {
            from: AccessMode::Pending,
            to: AccessMode::Active,
            reason: AccessReason::Activated,
            access_until: Some(t(1_700_000_000_000)),
            data_kept_until: None,
            at: t(15),
        }),
        Event::ExpiringSoon(ExpiringSoon {
            expire: market("20271231235959"),
            days: 7,
            at: t(16),
        }),
        Event::FreezeEndingSoon(FreezeEndingSoon {
            data_kept_until: t(1_300_000),
            days: 3,
            at: t(17),
        }),
    ]
}

fn full_drift() -> DriftDetected {
    DriftDetected {
        status: Some((LocalStatus::Frozen, MarketStatus::Alive)),
        expire: Some((
            Some(MarketTime {
                instant: t(1),
                raw: "20300101000000".into(),
            }),
            MarketTime {
                instant: t(2),
                raw: "20310101000000".into(),
            },
        )),
        product_id: Some((Some("P1".into()), "P2".into())),
        order_id: Some((None, "CS9".into())),
        at: t(12),
    }
}

#[test]
fn a_drift_stored_before_it_named_fields_still_loads() {
    let payload = serde_json::json!({"at_ms": 11, "ours": "active", "theirs": "RELEASED"});
    let event = decode("drift_detected", 1, &payload).unwrap();
    assert!(matches!(
        event,
        Event::DriftDetected(DriftDetected {
            status: Some((LocalStatus::Active, MarketStatus::Released)),
            expire: None,
            ..
        })
    ));
}

#[test]
fn every_event_round_trips() {
    for event in every_event() {
        let (event_type, payload) = encode(&event);
        assert_eq!(event_type, event.event_type());
        assert_eq!(
            decode(&event_type, SCHEMA_VERSION, &payload).unwrap(),
            event,
            "{event_type}"
        );
    }
}

#[test]
fn the_stored_json_is_pinned() {
    let lines: Vec<String> = every_event()
        .iter()
        .map(|e| {
            let (event_type, payload) = encode(e);
            format!("{event_type} {payload}")
        })
        .collect();
    insta::assert_snapshot!("stored_events_v1", lines.join("\n"));
}

#[test]
fn an_event_stored_long_ago_still_loads() {
    // Written by the first release; must load forever (add an upcaster when the shape changes).
    let payload = serde_json::json!({"order_id":"CS2","order_line_id":"CS2-1","scene":"RENEWAL","expire":{"instant_ms":1,"raw":"20250101000000"},"at_ms":5});
    let event = decode("renewed", 1, &payload).unwrap();
    assert!(
        matches!(event, Event::Renewed(r) if r.expire.raw == "20250101000000" && r.product_id.is_none())
    );
}

#[test]
fn unknown_types_versions_and_shapes_are_refused_with_a_reason() {
    assert!(decode("teleported", 1, &serde_json::json!({})).is_err());
    assert!(
        decode("frozen", 2, &serde_json::json!({"at_ms": 1}))
            .unwrap_err()
            .to_string()
            .contains("schema version")
    );
    assert!(decode("frozen", 1, &serde_json::json!({"at": 1})).is_err());
    assert!(
        decode(
            "registered",
            1,
            &serde_json::json!({"license":"P L","sandbox":false,"origin":"callback","at_ms":1})
        )
        .is_err()
    );
}

/// The published JSON Schemas (docs/event-schemas.json) describe exactly what is stored: a schema
/// for every type, every required key present, no key the schema does not know.
#[test]
fn the_documented_schemas_match_the_stored_payloads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/event-schemas.json"
    ))
    .unwrap();
    let schemas: serde_json::Value = serde_json::from_str(&text).unwrap();
    fn check(
        schema: &serde_json::Value,
        value: &serde_json::Value,
        defs: &serde_json::Value,
        path: &str,
    ) {
        let schema = match schema["$ref"].as_str() {
            Some(r) => &defs[r.trim_start_matches("#/$defs/")],
            None => schema,
        };
        let Some(object) = value.as_object() else {
            return;
        };
        if schema["type"] != "object"
            && !schema["type"]
                .as_array()
                .is_some_and(|t| t.contains(&"object".into()))
        {
            return;
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            assert!(
                object.contains_key(required.as_str().unwrap()),
                "{path}: missing required {required}"
            );
        }
        for (key, inner) in object {
            let property = &schema["properties"][key];
            assert!(
                !property.is_null(),
                "{path}: key {key} is not in the schema"
            );
            check(property, inner, defs, &format!("{path}.{key}"));
        }
    }
    let defs = &schemas["$defs"];
    let stored: Vec<_> = every_event()
        .iter()
        .map(encode)
        .chain(every_probe_event().iter().map(event_codec::encode_probe))
        .collect();
    for (event_type, payload) in stored {
        let schema = &defs[&event_type];
        assert!(schema.is_object(), "no schema for {event_type}");
        check(schema, &payload, defs, &event_type);
    }
}

fn every_probe_event() -> Vec<ProbeEvent> {
    let run = |error: Option<&str>| CaseRun {
        run_at: t(9),
        case: "refresh".into(),
        http_status: Some(200),
        answer: Some(r#"{"resultCode":"000000"}"#.into()),
        latency_ms: Some(31),
        error: error.map(Into::into),
    };
    vec![
        ProbeEvent::RunPassed(run(None)),
        ProbeEvent::RunFailed(run(Some("HTTP 502"))),
        ProbeEvent::RunFailed(CaseRun {
            http_status: None,
            answer: None,
            latency_ms: None,
            ..run(Some("connect: refused"))
        }),
        ProbeEvent::MarketplaceProbeSeen(MarketplaceProbeSeen {
            at: t(10),
            license: "LIC-1".into(),
            activity: "updateLicenseCodeStatus".into(),
        }),
    ]
}

#[test]
fn every_probe_event_round_trips() {
    for event in every_probe_event() {
        let (event_type, payload) = event_codec::encode_probe(&event);
        assert_eq!(event_type, event.event_type());
        assert_eq!(
            event_codec::decode_probe(&event_type, SCHEMA_VERSION, &payload).unwrap(),
            event,
            "{event_type}"
        );
    }
}

#[test]
fn every_state_along_every_event_round_trips_through_the_snapshot_json_but_its_decided_callbacks() {
    use licensing_messages::state_codec;
    let mut state = License::default();
    let mut states = vec![state.clone()];
    // Ending with a drift, so that the last state has one.
    for event in every_event()
        .iter()
        .chain([&Event::DriftDetected(full_drift())])
    {
        state = evolve(state, event);
        states.push(state.clone());
    }
    for state in &states {
        let json = state_codec::encode(state);
        assert_eq!(
            state_codec::decode(&json).unwrap(),
            state.clone().without_decided_callbacks(),
            "{json}"
        );
    }
    assert!(state.drift.is_some() && state.released_at.is_some());
    insta::assert_snapshot!("license_state_v1", state_codec::encode(&state));
    assert!(
        state_codec::decode(r#"{"version":1}"#)
            .unwrap_err()
            .to_string()
            .contains("missing field")
    );
}

/// A field added to the state changes this line: the snapshot JSON must carry it (every field but
/// `seen_callbacks`), and `state_codec::SNAPSHOT_FORMAT` must be bumped (ADR 0022).
#[test]
fn the_states_fields_are_the_ones_the_snapshot_json_knows() {
    insta::assert_snapshot!(format!("{:?}", License::default()), @"License { code: None, sandbox: false, version: 0, activation: NotRequested, activation_attempt: 0, real_effect_time: None, needs_confirmation: false, expire: None, expire_estimated: false, product_id: None, order_id: None, frozen_since: None, released_at: None, last_usage: None, last_heartbeat_day: None, heartbeat_attempt: None, last_heartbeat_failure: None, heartbeat_given_up: None, last_usage_ip: None, last_activation_failure: None, awaiting_claim_since: None, market_status: None, drift: None, updated_at: None, latest_at: None, access_mode: Pending, data_kept_until: None, expiry_notices: {}, freeze_notices: {}, seen_callbacks: {} }");
    assert_eq!(licensing_messages::state_codec::SNAPSHOT_FORMAT, 1);
}
