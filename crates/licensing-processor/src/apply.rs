//! One command, one transaction: deduplicate, decide, append, remember the reply.

use koogallery::callback::ResultCode;
use licensing_domain::{self as domain, License, Rejection};
use licensing_messages::event_codec;
use licensing_messages::{CommandBody, CommandEnvelope, Interpretation, LicenseSummary, Reply};
use licensing_store::{
    AppendOutcome, EventMetadata, NewEvent, Store, StoreError, StreamAppend, Upcasters,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Why a command could not be applied now.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// PostgreSQL is unavailable: try again later, keep the message.
    #[error(transparent)]
    Unavailable(StoreError),
    /// The stream moved under us (another writer): apply again at once.
    #[error("the stream {0} moved during the command; retrying")]
    Conflict(String),
    /// Something that retrying will not fix: the message goes to the dead-letter queue.
    #[error("{0}")]
    Poison(String),
}

impl From<StoreError> for ApplyError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            Self::Unavailable(error)
        } else {
            Self::Poison(error.to_string())
        }
    }
}

/// How a command ended, for the reply and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The reply (stored; a redelivery or a repeat gets the same).
    pub reply: Reply,
    /// `applied`, `unchanged`, `repeated`, `redelivered`, `replayed_nonce`, `rejected`, `invalid`.
    pub outcome: &'static str,
    /// Events appended.
    pub events: usize,
}

fn summary(state: &License) -> LicenseSummary {
    LicenseSummary {
        license: state
            .code
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        sandbox: state.sandbox,
        status: state.status().as_str().to_owned(),
        expire_time: state.expire.as_ref().map(|e| e.raw.clone()),
        version: state.version,
    }
}

fn rejection_code(rejection: &Rejection) -> &'static str {
    match rejection {
        Rejection::UnknownLicense => "unknown_license",
        Rejection::Released => "released",
        Rejection::NotActivated => "not_activated",
        Rejection::Frozen => "frozen",
        Rejection::SandboxMismatch | Rejection::WrongLicense => "invalid",
    }
}

/// Applies one command in one transaction; `now` is the processing time (nonce expiry).
pub async fn apply(
    store: &Store,
    how: &Interpretation,
    nonce_ttl: time::Duration,
    envelope: &CommandEnvelope,
    now: OffsetDateTime,
) -> Result<Applied, ApplyError> {
    let mut unit = store.begin(Upcasters::new()).await?;
    let callback = match &envelope.command {
        CommandBody::Callback(c) => Some(c),
        _ => None,
    };
    let content_key = callback.and_then(|c| c.content_key());
    let stored_reply = |value: serde_json::Value| {
        serde_json::from_value::<Reply>(value)
            .map_err(|e| ApplyError::Poison(format!("stored reply: {e}")))
    };
    let finish = |reply: Reply, outcome: &'static str, events: usize| Applied {
        reply,
        outcome,
        events,
    };
    // One round trip for everything the inbox knows about this command.
    let known = unit
        .inbox_lookup(
            envelope.message_id,
            callback.map(|c| c.nonce.as_str()),
            content_key.as_deref(),
            now,
        )
        .await?;
    if let Some(stored) = known.processed_reply {
        unit.rollback().await?;
        return Ok(finish(stored_reply(stored)?, "redelivered", 0));
    }
    let applied = match (callback, known.nonce_seen, known.callback_reply) {
        (Some(_), true, _) => finish(
            Reply::callback(ResultCode::AuthenticationFailed, "nonce was used before"),
            "replayed_nonce",
            0,
        ),
        (Some(_), false, Some(stored)) => finish(stored_reply(stored)?, "repeated", 0),
        _ => decide_and_append(&mut unit, how, envelope).await?,
    };

    // One statement for everything the inbox must remember. Only a success is final for a
    // callback's content; a refusal (strict mode's 000003) is decided again on retry.
    let nonce = callback
        .filter(|_| applied.outcome != "replayed_nonce")
        .map(|c| (c.nonce.as_str(), now, now + nonce_ttl));
    let key = content_key
        .as_deref()
        .filter(|_| matches!(applied.outcome, "applied" | "unchanged"));
    if !unit
        .record_outcome(envelope.message_id, &applied.reply.to_value(), nonce, key)
        .await?
    {
        // Another processor took this nonce meanwhile: start over, it will be seen.
        unit.rollback().await?;
        return Err(ApplyError::Conflict(format!(
            "nonce {}",
            callback.map_or("", |c| c.nonce.as_str())
        )));
    }
    unit.commit().await?;
    Ok(applied)
}

async fn decide_and_append(
    unit: &mut licensing_store::UnitOfWork,
    how: &Interpretation,
    envelope: &CommandEnvelope,
) -> Result<Applied, ApplyError> {
    let is_callback = matches!(envelope.command, CommandBody::Callback(_));
    let command = match envelope.to_domain(how) {
        Ok(command) => command,
        Err(invalid) => {
            let reply = if is_callback {
                Reply::callback(ResultCode::InvalidParameters, invalid.to_string())
            } else {
                Reply::Rejected {
                    code: "invalid".into(),
                    message: invalid.to_string(),
                }
            };
            return Ok(Applied {
                reply,
                outcome: "invalid",
                events: 0,
            });
        }
    };
    let stream = command.license.stream_name(command.sandbox);
    let stored = unit.load(&stream).await?;
    let mut state = License::default();
    for event in &stored {
        let decoded = event_codec::decode(&event.event_type, event.schema_version, &event.payload)
            .map_err(|e| ApplyError::Poison(format!("stream {stream}: {e}")))?;
        state = domain::evolve(state, &decoded);
    }
    match domain::decide(&state, command) {
        Ok(events) => {
            let count = events.len();
            if count > 0 {
                let metadata = EventMetadata {
                    causation_id: Some(envelope.message_id),
                    correlation_id: Some(envelope.correlation_id),
                    message_id: Some(envelope.message_id),
                    source: Some(envelope.source.clone()),
                    received_at_ms: Some(envelope.received_at_ms),
                };
                let new_events = events
                    .iter()
                    .map(|event| {
                        let (event_type, payload) = event_codec::encode(event);
                        NewEvent {
                            event_id: Uuid::new_v4(),
                            event_type,
                            schema_version: event_codec::SCHEMA_VERSION,
                            payload,
                            metadata: metadata.clone(),
                        }
                    })
                    .collect();
                let append = StreamAppend {
                    stream_id: stream.clone(),
                    expected_version: state.version as i64,
                    events: new_events,
                };
                match unit.append(&[append]).await? {
                    AppendOutcome::Appended { .. } => {}
                    AppendOutcome::Conflict { .. } => return Err(ApplyError::Conflict(stream)),
                    AppendOutcome::Duplicate => {
                        return Err(ApplyError::Poison(
                            "fresh event ids reported as duplicates".into(),
                        ));
                    }
                }
                for event in &events {
                    state = domain::evolve(state, event);
                }
            }
            let reply = if is_callback {
                Reply::callback(ResultCode::Success, "success.")
            } else {
                Reply::Applied {
                    license: summary(&state),
                }
            };
            Ok(Applied {
                reply,
                outcome: if count > 0 { "applied" } else { "unchanged" },
                events: count,
            })
        }
        Err(rejection) => {
            let reply = match (is_callback, &rejection) {
                (true, Rejection::UnknownLicense) => {
                    Reply::callback(ResultCode::LicenseNotFound, rejection.to_string())
                }
                (true, _) => Reply::callback(ResultCode::InvalidParameters, rejection.to_string()),
                (false, _) => Reply::Rejected {
                    code: rejection_code(&rejection).into(),
                    message: rejection.to_string(),
                },
            };
            Ok(Applied {
                reply,
                outcome: "rejected",
                events: 0,
            })
        }
    }
}
