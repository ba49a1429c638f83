//! The processor's inbox: what was processed and what it answered, in the same transaction as the
//! append. A redelivered message gets the stored reply; a repeated callback the first answer (D9);
//! a replayed nonce is refused (D5).

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::StoreError;
use crate::store::Store;
use crate::unit_of_work::UnitOfWork;

impl Store {
    /// Deletes nonces expired at `now`; returns how many. Run it periodically (the retention job).
    pub async fn purge_expired_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute("DELETE FROM inbox_nonces WHERE expires_at <= $1", &[&now])
            .await?)
    }
}

impl Store {
    /// The retention job: purges expired nonces every `every` until `cancel` fires. Failures are
    /// logged and retried at the next tick (an unpurged nonce only costs a little space).
    pub async fn run_nonce_retention(
        &self,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        loop {
            match self.purge_expired_nonces(OffsetDateTime::now_utc()).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "expired nonces purged"),
                Err(error) => tracing::warn!(%error, "cannot purge expired nonces"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// What the inbox knows about a command, read in one round trip.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InboxLookup {
    /// The stored reply, if this message was processed before.
    pub processed_reply: Option<Value>,
    /// Whether the nonce was seen and has not expired.
    pub nonce_seen: bool,
    /// The first answer to a callback with this content key.
    pub callback_reply: Option<Value>,
}

impl UnitOfWork {
    /// Everything the inbox knows about a command, in one query: the stored reply of its message
    /// id, whether its nonce was seen and has not expired at `now`, and the first answer given to a
    /// callback with its content key.
    pub async fn inbox_lookup(
        &self,
        message_id: Uuid,
        nonce: Option<&str>,
        content_key: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<InboxLookup, StoreError> {
        let row = self
            .client()?
            .query_one(
                "SELECT (SELECT reply FROM inbox_messages WHERE message_id = $1),
                        EXISTS (SELECT 1 FROM inbox_nonces WHERE nonce = $2 AND expires_at > $3),
                        (SELECT reply FROM inbox_callbacks WHERE content_key = $4)",
                &[&message_id, &nonce, &now, &content_key],
            )
            .await?;
        Ok(InboxLookup {
            processed_reply: row.get(0),
            nonce_seen: row.get(1),
            callback_reply: row.get(2),
        })
    }

    /// Remembers, in one statement: the message id with its reply; the nonce until its expiry
    /// (`(nonce, now, expires_at)`; an expired entry is taken over); the callback's content key with
    /// its answer, keeping the first answer if there is one. Returns `false` when the nonce is
    /// remembered already and not expired: a replay racing this command (roll back). A message id
    /// recorded twice is an error.
    pub async fn record_outcome(
        &self,
        message_id: Uuid,
        reply: &Value,
        nonce: Option<(&str, OffsetDateTime, OffsetDateTime)>,
        content_key: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (nonce_text, now, expires_at) = match nonce {
            Some((n, now, expires)) => (Some(n), Some(now), Some(expires)),
            None => (None, None, None),
        };
        let row = self
            .client()?
            .query_one(
                "WITH nonce AS (
                     INSERT INTO inbox_nonces AS n (nonce, expires_at)
                     SELECT $3, $5 WHERE $3::text IS NOT NULL
                     ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE n.expires_at <= $4
                     RETURNING 1
                 ), callback AS (
                     INSERT INTO inbox_callbacks (content_key, message_id, reply)
                     SELECT $6, $1, $2 WHERE $6::text IS NOT NULL
                     ON CONFLICT (content_key) DO NOTHING
                 ), processed AS (
                     INSERT INTO inbox_messages (message_id, reply) VALUES ($1, $2)
                 )
                 SELECT $3::text IS NULL OR EXISTS (SELECT 1 FROM nonce)",
                &[&message_id, reply, &nonce_text, &now, &expires_at, &content_key],
            )
            .await?;
        Ok(row.get(0))
    }
}
