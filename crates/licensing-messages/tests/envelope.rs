//! Command envelopes: round trip on the bus, conversion into domain commands, content keys.

use koogallery::callback::{CallbackRequest, ResultCode};
use licensing_domain as domain;
use licensing_messages::*;
use uuid::Uuid;

fn envelope(body: &str) -> CommandEnvelope {
    CommandEnvelope {
        v: ENVELOPE_VERSION,
        message_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        received_at_ms: 1_700_000_000_000,
        source: "koogallery".into(),
        request_hash: None,
        actor: None,
        command: CommandBody::Callback(CallbackCommand {
            request: CallbackRequest::parse(body.as_bytes()).unwrap(),
            nonce: "n".into(),
            timestamp_ms: 1_700_000_000_000,
            signature: Some("ab".repeat(32)),
            raw_query: "signature=x&timestamp=1&nonce=n".into(),
            raw_body: body.into(),
            seen: None,
        }),
        trace_parent: None,
    }
}

const RENEW: &str = r#"{"activity":"refreshLicenseCode","expireTime":"20230523201932","license":"PL1","orderId":"CS1","orderLineId":"CS1-1","scene":"RENEWAL","testFlag":"1"}"#;

#[test]
fn envelopes_round_trip_and_refuse_other_versions() {
    let e = envelope(RENEW);
    assert_eq!(CommandEnvelope::from_bytes(&e.to_bytes()).unwrap(), e);
    let mut other = e.clone();
    other.v = 2;
    assert!(CommandEnvelope::from_bytes(&other.to_bytes()).is_err());
    assert!(CommandEnvelope::from_bytes(b"{}").is_err());
}

#[test]
fn a_callback_becomes_a_domain_command_in_the_configured_zone() {
    let e = envelope(RENEW);
    assert!(e.sandbox());
    assert_eq!(e.stream_name().unwrap(), "test-license-PL1");
    let command = e.to_domain(&Interpretation::default()).unwrap();
    assert!(command.sandbox);
    let domain::Action::Callback(callback) = command.action else {
        panic!()
    };
    let domain::CallbackKind::Refresh(refresh) = callback.kind else {
        panic!()
    };
    assert_eq!(refresh.expire.raw, "20230523201932");
    assert_eq!(
        refresh.expire.instant.as_millis(),
        1_684_844_372_000,
        "UTC+08:00 by default"
    );
    let utc = Interpretation {
        market_zone: time::UtcOffset::UTC,
        ..Interpretation::default()
    };
    let command = e.to_domain(&utc).unwrap();
    let domain::Action::Callback(domain::Callback {
        kind: domain::CallbackKind::Refresh(refresh),
        ..
    }) = command.action
    else {
        panic!()
    };
    assert_eq!(
        refresh.expire.instant.as_millis(),
        1_684_844_372_000 + 8 * 3_600_000
    );
}

#[test]
fn usage_lands_on_the_day_of_the_configured_zone() {
    let mut e = envelope(RENEW);
    // 2024-01-01T16:30:00Z is already 2024-01-02 in UTC+08:00.
    e.command = CommandBody::ReportUsage {
        license: "PL1".into(),
        account: "alice".into(),
        ip: None,
        at_ms: 1_704_126_600_000,
    };
    let command = e.to_domain(&Interpretation::default()).unwrap();
    let domain::Action::ReportUsage(usage) = command.action else {
        panic!()
    };
    assert_eq!(usage.day, domain::Day::from_number(19_724));
    e.command = CommandBody::ReportUsage {
        license: "PL1".into(),
        account: String::new(),
        ip: None,
        at_ms: 0,
    };
    assert_eq!(
        e.to_domain(&Interpretation::default()).unwrap_err().field,
        "account"
    );
}

#[test]
fn content_keys_identify_renewals_and_releases_but_not_status_changes() {
    let key = |body: &str| match envelope(body).command {
        CommandBody::Callback(c) => c.content_key(),
        _ => unreachable!(),
    };
    assert_eq!(key(RENEW), key(RENEW));
    assert_ne!(key(RENEW), key(&RENEW.replace("CS1-1", "CS1-2")));
    assert_ne!(
        key(RENEW),
        key(&RENEW.replace(r#""testFlag":"1""#, r#""testFlag":"0""#)),
        "sandbox and real differ"
    );
    assert!(key(r#"{"activity":"releaseLicenseCode","license":"PL1"}"#).is_some());
    assert_eq!(
        key(r#"{"activity":"updateLicenseCodeStatus","license":"PL1","status":"FREEZE"}"#),
        None
    );
}

#[test]
fn replies_are_tagged_json() {
    let reply = Reply::callback(ResultCode::Success, "success.");
    insta::assert_snapshot!(reply.to_value().to_string(), @r#"{"kind":"callback","resultCode":"000000","resultMsg":"success."}"#);
}

/// The general decoder, as the envelope's derived reader alone decodes.
fn general(bytes: &[u8]) -> Option<CommandEnvelope> {
    serde_json::from_slice(bytes).ok()
}

#[test]
fn the_callback_reader_and_the_general_decoder_agree() {
    let bare = envelope(RENEW);
    let mut full = envelope(RENEW);
    full.actor = Some("seller-ops".into());
    full.request_hash = Some("ff".repeat(32));
    if let CommandBody::Callback(callback) = &mut full.command {
        callback.signature = None;
        callback.seen = Some(RequestSeen {
            method: "POST".into(),
            content_type: Some("application/json".into()),
            user_agent: Some("KooGallery".into()),
            forwarded_for: Some("203.0.113.7".into()),
            request_id: Some("r-1".into()),
            peer: Some("10.0.0.1:5000".into()),
            verification: "valid".into(),
            key_index: Some(1),
        });
    }
    for e in [bare, full] {
        let bytes = e.to_bytes();
        assert_eq!(CommandEnvelope::from_bytes(&bytes).unwrap(), e);
        assert_eq!(general(&bytes), Some(e.clone()));
        // A field the callback reader does not know takes the general path, with its result.
        for (at, extra) in [("", "later_field"), ("command", "later_field")] {
            let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let object = if at.is_empty() {
                &mut value
            } else {
                &mut value[at]
            };
            object[extra] = serde_json::json!("from a later release");
            let bytes = serde_json::to_vec(&value).unwrap();
            assert_eq!(CommandEnvelope::from_bytes(&bytes).ok(), general(&bytes));
            assert_eq!(CommandEnvelope::from_bytes(&bytes).unwrap(), e);
        }
    }
    // Another command is not a callback: the general path reads it.
    let mut other = envelope(RENEW);
    other.command = CommandBody::RequestActivation {
        license: "PL1".into(),
        real_effect_time: None,
    };
    assert_eq!(
        CommandEnvelope::from_bytes(&other.to_bytes()).unwrap(),
        other
    );
}
