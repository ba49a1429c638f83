//! Dead letters (ADR 0014): the keeper records every message of the dead-letter queue as a row
//! (acknowledged once committed), and a re-drive publishes parked commands again, marking who did
//! it. `licensing-processor redrive` and the query API's `POST /v1/dead-letters/{id}/redrive` both
//! go through [`redrive`].

use licensing_bus::{Bus, BusError, FAILURE_HEADER, Incoming, PARKED_ID_HEADER};
use licensing_messages::CommandEnvelope;
use licensing_runtime::CancellationToken;
use licensing_store::{DeadLetter, RedriveError, Store, StoredDeadLetter};
use uuid::Uuid;

/// The broker's own reason, on a message it dead-lettered itself (a quorum queue's delivery
/// limit).
const BROKER_REASON_HEADER: &str = "x-first-death-reason";

/// What a parked message is, read from its headers and, when it is an envelope, its body.
pub(crate) fn letter(incoming: &Incoming) -> DeadLetter {
    let envelope = CommandEnvelope::from_bytes(&incoming.body).ok();
    let reason = match (
        incoming.header(FAILURE_HEADER),
        incoming.header(BROKER_REASON_HEADER),
    ) {
        (Some(reason), _) => reason.to_owned(),
        (None, Some(broker)) => format!("broker: {broker}"),
        (None, None) => "unknown".to_owned(),
    };
    DeadLetter {
        id: incoming
            .header(PARKED_ID_HEADER)
            .and_then(|id| Uuid::parse_str(id).ok())
            .unwrap_or_else(Uuid::new_v4),
        message_id: incoming.message_id.clone().unwrap_or_default(),
        correlation_id: incoming.correlation_id.clone(),
        reason,
        license: envelope
            .as_ref()
            .map(|e| e.license().to_owned())
            .filter(|l| !l.is_empty()),
        kind: envelope.as_ref().map(crate::processor::kind),
        body: incoming.body.clone(),
    }
}

/// Records the dead-letter queue's messages until `cancel`; a message is acknowledged once its
/// row is committed.
pub(crate) async fn keep(
    store: &Store,
    bus: &Bus,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let queue = bus.names().dead_letter_queue.clone();
    let mut parked = bus
        .consume(&queue, 16, false)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            next = parked.next() => next,
        };
        let incoming = next
            .ok_or("the dead-letter consumer ended")?
            .map_err(|e| e.to_string())?;
        let letter = letter(&incoming);
        store
            .record_dead_letter(&letter)
            .await
            .map_err(|e| e.to_string())?;
        tracing::warn!(id = %letter.id, message_id = %letter.message_id, reason = %letter.reason, license = ?letter.license, "dead letter recorded");
        incoming.ack().await.map_err(|e| e.to_string())?;
    }
}

/// Re-drives the waiting dead letter `id` (all waiting ones with `None`) as `actor`: each is
/// published to the command queue again, with its message id, and marked re-driven.
pub async fn redrive(
    store: &Store,
    bus: &Bus,
    id: Option<Uuid>,
    actor: &str,
) -> Result<Vec<StoredDeadLetter>, RedriveError<BusError>> {
    let letters = store
        .redrive_dead_letters(id, actor, |letter| async move {
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
        })
        .await?;
    for l in &letters {
        tracing::info!(id = %l.letter.id, message_id = %l.letter.message_id, actor, "dead letter re-driven");
    }
    Ok(letters)
}
