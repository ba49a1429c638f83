//! Dead letters on the query API (ADR 0014): `GET /v1/dead-letters`, `GET /v1/dead-letters/{id}`,
//! and the re-drive, `POST /v1/dead-letters/{id}/redrive` (one) and `POST /v1/dead-letters/redrive`
//! (every waiting one), recorded with the API token's name as who re-drove it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use base64::Engine as _;
use licensing_bus::Bus;
use licensing_store::{DeadLetterState, RedriveError, StoredDeadLetter};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{Answer, Authorized, QueryState, Refusal, decode_query, instant, ok};
use crate::read_model::time::rfc3339;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
    before: Option<String>,
}

/// A dead letter without its body.
pub(crate) fn summary_json(l: &StoredDeadLetter) -> Value {
    json!({
        "id": l.letter.id,
        "message_id": l.letter.message_id,
        "correlation_id": l.letter.correlation_id,
        "reason": l.letter.reason,
        "license": l.letter.license,
        "kind": l.letter.kind,
        "parked_at": rfc3339(Some(l.parked_at)),
        "redriven_at": rfc3339(l.redriven_at),
        "redriven_by": l.redriven_by,
    })
}

/// A dead letter with its body: as JSON when it is JSON, as text when it is UTF-8, and always as
/// base64 (the exact bytes).
pub(crate) fn letter_json(l: &StoredDeadLetter) -> Value {
    let mut value = summary_json(l);
    if let Value::Object(map) = &mut value {
        map.insert(
            "body_json".to_owned(),
            serde_json::from_slice::<Value>(&l.letter.body).unwrap_or(Value::Null),
        );
        map.insert(
            "body_text".to_owned(),
            std::str::from_utf8(&l.letter.body).map_or(Value::Null, |t| t.into()),
        );
        map.insert(
            "body_base64".to_owned(),
            base64::engine::general_purpose::STANDARD
                .encode(&l.letter.body)
                .into(),
        );
    }
    value
}

/// `GET /v1/dead-letters[?state=waiting|redriven|all&limit=&before=]`: newest first (default
/// waiting ones, 50; at most 500), `before` an RFC 3339 instant for the next page.
pub(crate) async fn list(_: Authorized, req: HttpRequest, state: web::Data<QueryState>) -> Answer {
    let q = decode_query::<ListQuery>(req.query_string())?;
    let which = match q.state.as_deref() {
        None | Some("waiting") => DeadLetterState::Waiting,
        Some("redriven") => DeadLetterState::Redriven,
        Some("all") => DeadLetterState::All,
        Some(_) => {
            return Err(Refusal::invalid_query(
                "state must be waiting, redriven or all",
            ));
        }
    };
    let limit = match q.limit {
        None => 50,
        Some(n) if (1..=500).contains(&n) => n,
        Some(_) => return Err(Refusal::invalid_query("limit must be from 1 to 500")),
    };
    let before = instant("before", q.before.as_ref())?;
    ok(&list_body(&state, which, limit, before).await?)
}

/// `GET /v1/dead-letters`' body: newest first, and where the next page starts.
pub(crate) async fn list_body(
    state: &QueryState,
    which: DeadLetterState,
    limit: i64,
    before: Option<time::OffsetDateTime>,
) -> Result<Value, Refusal> {
    let letters = state
        .store
        .dead_letters(which, before, limit)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    Ok(json!({
        "dead_letters": letters.iter().map(summary_json).collect::<Vec<_>>(),
        "next_before": (letters.len() as i64 == limit)
            .then(|| letters.last().map(|l| rfc3339(Some(l.parked_at))))
            .flatten(),
    }))
}

/// The id in a dead letter's path, or 404.
fn letter_id(path: &str) -> Result<Uuid, Refusal> {
    Uuid::parse_str(path).map_err(|_| Refusal::unknown_dead_letter(path))
}

/// The dead letter `id`, or 404.
async fn stored_letter(state: &QueryState, id: Uuid) -> Result<StoredDeadLetter, Refusal> {
    state
        .store
        .dead_letter(id)
        .await
        .map_err(|e| Refusal::unavailable(&e))?
        .ok_or_else(|| Refusal::unknown_dead_letter(&id.to_string()))
}

/// `GET /v1/dead-letters/{id}`.
pub(crate) async fn one(
    _: Authorized,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> Answer {
    let letter = stored_letter(&state, letter_id(&path)?).await?;
    ok(&letter_json(&letter))
}

/// Re-drives `id` (every waiting one with `None`) as the request's token: what was re-driven.
pub(crate) async fn redrive_as(
    state: &QueryState,
    id: Option<Uuid>,
    actor: &str,
) -> Result<Vec<StoredDeadLetter>, Refusal> {
    let bus = Bus::connect(state.bus.clone()).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot reach the broker to re-drive");
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the broker cannot take the command right now; retry",
        )
    })?;
    let result = state
        .store
        .redrive_dead_letters(id, actor, |letter| {
            let bus = &bus;
            async move {
                let l = letter.letter;
                bus.publish_command(
                    l.license.as_deref().unwrap_or_default(),
                    &l.body,
                    l.message_id,
                    l.correlation_id.unwrap_or_default(),
                    None,
                    None,
                )
                .await
            }
        })
        .await;
    bus.close().await;
    match result {
        Ok(letters) => {
            for l in &letters {
                tracing::info!(id = %l.letter.id, message_id = %l.letter.message_id, actor, "dead letter re-driven");
            }
            Ok(letters)
        }
        Err(RedriveError::Store(e)) => Err(Refusal::unavailable(&e)),
        Err(RedriveError::Publish(e)) => Err(Refusal::unavailable(&e)),
    }
}

/// `POST /v1/dead-letters/{id}/redrive`: 200 with the letter; 404 unknown; 409 re-driven already.
pub(crate) async fn redrive(
    token: Authorized,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> Answer {
    let id = letter_id(&path)?;
    let letters = redrive_as(&state, Some(id), &token.actor).await?;
    if !letters.is_empty() {
        return ok(&redriven_json(&letters));
    }
    let letter = stored_letter(&state, id).await?;
    Err(Refusal::new(
        StatusCode::CONFLICT,
        "redriven_already",
        format!("dead letter {id} was re-driven already"),
    )
    .with("dead_letter", summary_json(&letter)))
}

/// `POST /v1/dead-letters/redrive`: every waiting dead letter, oldest first.
pub(crate) async fn redrive_all(token: Authorized, state: web::Data<QueryState>) -> Answer {
    ok(&redriven_json(
        &redrive_as(&state, None, &token.actor).await?,
    ))
}

/// A re-drive's answer: the letters it re-drove.
fn redriven_json(letters: &[StoredDeadLetter]) -> Value {
    json!({ "redriven": letters.iter().map(summary_json).collect::<Vec<_>>() })
}
