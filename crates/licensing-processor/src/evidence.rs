//! The evidence records of inbound exchanges (D20): a callback handed over, stored with the
//! decision in the transaction of its events; a request answered without a decision (refused at
//! the ingress, or answered `000004` before the decision), stored as the ingress recorded it; an
//! open-API call's attempts, stored with the events of its outcome.

use koogallery::callback::CallbackResponse;
use licensing_messages::{
    CallbackCommand, CommandBody, CommandEnvelope, InboundRecord, OutboundAttemptV1, Reply,
    RequestSeen,
};
use licensing_store::{Direction, Exchange};
use serde_json::{Value, json};
use time::OffsetDateTime;

fn instant(millis: i64) -> OffsetDateTime {
    koogallery::market_time::from_unix_millis(millis).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The longest query string a record keeps, in bytes.
pub(crate) const QUERY_MAX_BYTES: usize = 2048;
/// The longest header or other text a record keeps, in bytes.
pub(crate) const TEXT_MAX_BYTES: usize = 512;

/// Text from outside as a record may keep it: without NUL (PostgreSQL's text and jsonb refuse
/// it), and at most `max` bytes, cut at a character boundary.
pub(crate) fn clipped(text: &str, max: usize) -> String {
    // Almost always: nothing to take out, nothing to cut.
    if text.len() <= max && !text.contains('\0') {
        return text.to_owned();
    }
    let mut out: String = text.chars().filter(|c| *c != '\0').collect();
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

fn request_meta(query: &str, seen: Option<&RequestSeen>, refusal: Option<&str>) -> Value {
    let mut meta = json!({ "query": clipped(query, QUERY_MAX_BYTES) });
    if let Some(seen) = seen
        && let (Value::Object(meta), Ok(Value::Object(seen))) =
            (&mut meta, serde_json::to_value(seen))
    {
        meta.extend(seen.into_iter().map(|(k, v)| match v {
            Value::String(text) => (k, Value::String(clipped(&text, TEXT_MAX_BYTES))),
            other => (k, other),
        }));
    }
    if let (Some(refusal), Value::Object(meta)) = (refusal, &mut meta) {
        meta.insert("refusal".to_owned(), clipped(refusal, 32).into());
    }
    meta
}

fn answer_meta(answer: &CallbackResponse) -> Value {
    json!({
        "status": 200,
        "result_code": answer.result_code.as_str(),
        "result_msg": clipped(&answer.result_msg, TEXT_MAX_BYTES),
    })
}

/// The record of a callback the processor decided: what the ingress passed on, and the decision
/// as the answer (the ingress sends exactly these bytes right after the commit; a `000004` sent
/// instead arrives later as an answer note and replaces the answer, not the decision).
pub(crate) fn decided(
    envelope: &CommandEnvelope,
    callback: &CallbackCommand,
    reply: &Reply,
    now: OffsetDateTime,
) -> Exchange {
    let answer = match reply {
        Reply::Callback(answer) => Some(answer),
        _ => None,
    };
    Exchange {
        id: envelope.message_id,
        at: instant(envelope.received_at_ms),
        direction: Direction::In,
        license: Some(callback.request.license().to_owned()),
        sandbox: callback.request.test_flag().is_test(),
        correlation_id: Some(envelope.correlation_id),
        message_id: Some(envelope.message_id),
        outcome: answer.map_or("none", |a| a.result_code.as_str()).to_owned(),
        request: callback.raw_body.as_bytes().to_vec(),
        request_size: callback.raw_body.len() as i64,
        request_meta: request_meta(&callback.raw_query, callback.seen.as_ref(), None),
        response: answer.map(|a| a.to_json().into_bytes()),
        response_meta: answer.map_or(Value::Null, answer_meta),
        answered_at: Some(now),
        decision: Some(reply.to_value()),
    }
}

/// The record of a replayed callback (its nonce or signature seen before): a refusal, kept apart
/// from the license's genuine exchanges like the ingress's refusals (no message id, the reason in
/// `refusal`), so that replays of a captured request never push real history out of a ledger.
pub(crate) fn replayed(
    envelope: &CommandEnvelope,
    callback: &CallbackCommand,
    reply: &Reply,
    now: OffsetDateTime,
) -> Exchange {
    let mut record = decided(envelope, callback, reply, now);
    record.message_id = None;
    record.decision = None;
    record.request_meta = request_meta(
        &callback.raw_query,
        callback.seen.as_ref(),
        Some("replayed_nonce"),
    );
    record
}

/// The record of a request answered without a decision, as the ingress saw it; the license and
/// sandbox flag are read from the body when it is JSON that names them, the license only when it
/// is a valid license code (else none: the body is kept as it came). Every text is clipped.
pub(crate) fn undecided(envelope: &CommandEnvelope, record: &InboundRecord) -> Exchange {
    let body: Option<Value> = serde_json::from_slice(&record.body).ok();
    let field = |name: &str| {
        body.as_ref()
            .and_then(|b| b.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Exchange {
        id: record.exchange_id,
        at: instant(record.received_at_ms),
        direction: Direction::In,
        license: field("license").filter(|l| licensing_domain::LicenseCode::parse(l).is_ok()),
        sandbox: field("testFlag").as_deref() == Some("1"),
        correlation_id: Some(envelope.correlation_id),
        message_id: Some(record.exchange_id).filter(|_| record.refusal == "not_decided"),
        outcome: record.answer.result_code.as_str().to_owned(),
        request: record.body.clone(),
        request_size: i64::try_from(record.body_size).unwrap_or(i64::MAX),
        request_meta: {
            let mut meta =
                request_meta(&record.raw_query, Some(&record.seen), Some(&record.refusal));
            if let (Some(hash), Value::Object(meta)) = (&record.body_sha256, &mut meta) {
                meta.insert("body_sha256".to_owned(), clipped(hash, 64).into());
            }
            meta
        },
        response: Some(record.answer.to_json().into_bytes()),
        response_meta: answer_meta(&record.answer),
        answered_at: Some(instant(record.answered_at_ms)),
        decision: None,
    }
}

fn headers(list: &[(String, String)]) -> Value {
    Value::Array(list.iter().map(|(n, v)| json!([n, v])).collect())
}

/// The record of one open-API attempt, carried by its outcome command.
pub(crate) fn outbound(envelope: &CommandEnvelope, attempt: &OutboundAttemptV1) -> Exchange {
    let (call, tries) = match &envelope.command {
        CommandBody::RecordActivation { attempt, .. } => ("activate", *attempt),
        CommandBody::RecordHeartbeat { attempt, .. } => ("heartbeat", *attempt),
        _ => ("unknown", 0),
    };
    let at = instant(attempt.sent_at_ms);
    let answered_at = at + time::Duration::milliseconds(attempt.latency_ms as i64);
    Exchange {
        id: attempt.exchange_id,
        at,
        direction: Direction::Out,
        license: Some(envelope.license().to_owned()),
        sandbox: false,
        correlation_id: Some(envelope.correlation_id),
        message_id: Some(envelope.message_id),
        outcome: attempt.outcome.clone(),
        request: attempt.request_body.clone(),
        request_size: attempt.request_body.len() as i64,
        request_meta: json!({
            "method": attempt.method,
            "url": attempt.url,
            "host": attempt.host,
            "headers": headers(&attempt.request_headers),
            "call": call,
            "attempt": tries,
        }),
        response: attempt.response_body.clone(),
        response_meta: json!({
            "status": attempt.status,
            "headers": headers(&attempt.response_headers),
            "error_kind": attempt.error_kind,
            "error": attempt.error,
            "latency_ms": attempt.latency_ms,
        }),
        answered_at: Some(answered_at),
        decision: None,
    }
}

#[cfg(test)]
mod tests {
    use super::clipped;

    #[test]
    fn clipped_text_has_no_nul_and_fits_at_a_character_boundary() {
        assert_eq!(clipped("plain", 8), "plain");
        assert_eq!(clipped("exactly8", 8), "exactly8");
        assert_eq!(clipped("a\0b\0c", 8), "abc");
        assert_eq!(clipped("too long here", 8), "too long");
        // 许 is three bytes: a cut inside it moves back to the boundary before it.
        assert_eq!(clipped("ab许可", 4), "ab");
        assert_eq!(clipped("\0\0\0\0\0\0\0\0\0x", 8), "x");
    }
}
