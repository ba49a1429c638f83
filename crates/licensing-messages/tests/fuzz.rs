//! The backend's own decoders under arbitrary input: command envelopes from the bus and stored
//! event payloads. Never a panic: a clear error, or a value that encodes back to what was read.
//! `LICENSING_FUZZ_CASES` sets the number of cases per property (`scripts/fuzz` runs a million).

use licensing_messages::{CommandEnvelope, event_codec};
use proptest::prelude::*;
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("LICENSING_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        Just(json!("20270101000000")),
        Just(json!("PL0001")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("license".to_owned()),
                    Just("kind".to_owned()),
                    Just("day".to_owned()),
                    Just("attempt".to_owned()),
                    Just("at".to_owned()),
                    Just("expire".to_owned()),
                    Just("failure".to_owned()),
                    Just("order_id".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const EVENT_TYPES: [&str; 17] = [
    "registered",
    "activation_requested",
    "activated",
    "activation_awaiting_claim",
    "activation_failed",
    "renewed",
    "renewal_cancelled",
    "frozen",
    "unfrozen",
    "released",
    "usage_recorded",
    "heartbeat_acknowledged",
    "heartbeat_failed",
    "callback_ignored",
    "drift_detected",
    "drift_resolved",
    "written_by_a_later_release",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn envelopes_decode_or_say_why(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Err(reason) = CommandEnvelope::from_bytes(&bytes) {
            prop_assert!(!reason.is_empty());
        }
    }

    #[test]
    fn envelope_shaped_json_decodes_or_says_why(value in json_value(), kind in prop_oneof![
        Just("callback"), Just("request_activation"), Just("report_usage"),
        Just("record_activation"), Just("record_heartbeat"), Just("nonsense"),
    ]) {
        let envelope = json!({
            "v": 1,
            "message_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "correlation_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "received_at_ms": 1_795_000_000_000i64,
            "source": "fuzz",
            "command": {"kind": kind, "license": "PL1", "payload": value},
        });
        let bytes = serde_json::to_vec(&envelope).unwrap();
        if let Ok(decoded) = CommandEnvelope::from_bytes(&bytes) {
            prop_assert_eq!(CommandEnvelope::from_bytes(&decoded.to_bytes()), Ok(decoded));
        }
    }

    #[test]
    fn callback_shaped_json_decodes_as_the_general_decoder_does(
        nonce in prop_oneof![Just(json!("n0123456")), json_value()],
        timestamp in prop_oneof![Just(json!(1_795_000_000_000i64)), json_value()],
        signature in prop_oneof![Just(json!(null)), Just(json!("ab")), json_value()],
        seen in prop_oneof![Just(json!(null)), Just(json!({"method": "POST", "verification": "valid"})), json_value()],
        extra in prop_oneof![Just(None), Just(Some("later_field"))],
        activity in prop_oneof![Just("refreshLicenseCode"), Just("updateLicenseCodeStatus"), Just("nonsense")],
    ) {
        let mut envelope = json!({
            "v": 1,
            "message_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "correlation_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "received_at_ms": 1_795_000_000_000i64,
            "source": "koogallery",
            "command": {
                "kind": "callback",
                "request": {"activity": activity, "license": "PL1", "expireTime": "20301231235959",
                            "orderId": "CS1", "orderLineId": "CS1-1", "scene": "RENEWAL",
                            "testFlag": "0", "status": "FREEZE"},
                "nonce": nonce,
                "timestamp_ms": timestamp,
                "signature": signature,
                "raw_query": "q",
                "raw_body": "{}",
                "seen": seen,
            },
        });
        if let Some(extra) = extra {
            envelope["command"][extra] = json!(1);
        }
        let bytes = serde_json::to_vec(&envelope).unwrap();
        let general: Option<CommandEnvelope> = serde_json::from_slice(&bytes).ok();
        prop_assert_eq!(CommandEnvelope::from_bytes(&bytes).ok(), general);
    }

    #[test]
    fn stored_events_decode_or_say_why(
        event_type in prop::sample::select(EVENT_TYPES.to_vec()),
        schema_version in prop_oneof![Just(1), any::<i32>()],
        payload in json_value(),
    ) {
        match event_codec::decode(event_type, schema_version, &payload) {
            Ok(event) => {
                // What decodes encodes back to the same type, and decodes again to the same event.
                let (again_type, again_payload) = event_codec::encode(&event);
                prop_assert_eq!(again_type.as_str(), event_type);
                prop_assert_eq!(
                    event_codec::decode(&again_type, event_codec::SCHEMA_VERSION, &again_payload).ok(),
                    Some(event)
                );
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
