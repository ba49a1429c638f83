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

/// What the inbox knows about each of a batch's commands, in their order.
const LOOKUP: &str =
    "SELECT (SELECT reply FROM inbox_messages m WHERE m.message_id = q.message_id),
          EXISTS (SELECT 1 FROM inbox_nonces n
                   WHERE n.nonce IN (q.nonce, q.signature_key) AND n.expires_at > $5),
          (SELECT reply FROM inbox_callbacks c WHERE c.content_key = q.content_key)
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
          WITH ORDINALITY AS q(message_id, nonce, signature_key, content_key, ord)
    ORDER BY q.ord";

/// Everything the inbox remembers of a batch, in one statement; returns the replay keys (nonces
/// and signature keys) refused.
const RECORD: &str = "WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::jsonb[], $3::text[], $4::timestamptz[], $5::text[],
                             $6::text[])
            AS i(message_id, reply, nonce, expires_at, content_key, signature_key)
    ), replay_key AS (
        SELECT nonce AS key, expires_at FROM input WHERE nonce IS NOT NULL
        UNION ALL
        SELECT signature_key, expires_at FROM input WHERE signature_key IS NOT NULL
    ), nonce AS (
        INSERT INTO inbox_nonces AS n (nonce, expires_at)
        SELECT key, expires_at FROM replay_key
        ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at
            WHERE n.expires_at <= $7
        RETURNING n.nonce
    ), callback AS (
        INSERT INTO inbox_callbacks (content_key, message_id, reply)
        SELECT content_key, message_id, reply FROM input WHERE content_key IS NOT NULL
        ON CONFLICT (content_key) DO NOTHING
    ), processed AS (
        INSERT INTO inbox_messages (message_id, reply)
        SELECT message_id, reply FROM input
    )
    SELECT key FROM replay_key
    EXCEPT SELECT nonce FROM nonce";

/// The inbox keys of one command, for [`UnitOfWork::inbox_lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxKeys<'a> {
    /// The queue message's id.
    pub message_id: Uuid,
    /// A callback's nonce.
    pub nonce: Option<&'a str>,
    /// A callback's signature key (`sig:` and the signature), a replay key beside the nonce.
    pub signature_key: Option<&'a str>,
    /// A callback's content key (D9).
    pub content_key: Option<&'a str>,
}

/// What the inbox knows about a command.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InboxLookup {
    /// The stored reply, if this message was processed before.
    pub processed_reply: Option<Value>,
    /// Whether the nonce or the signature key was seen and has not expired.
    pub nonce_seen: bool,
    /// The first answer to a callback with this content key.
    pub callback_reply: Option<Value>,
}

/// What the inbox must remember of one processed command, for [`UnitOfWork::record_outcomes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InboxOutcome<'a> {
    /// The queue message's id: remembered with its reply.
    pub message_id: Uuid,
    /// The reply it got.
    pub reply: &'a Value,
    /// A callback's nonce and when it expires.
    pub nonce: Option<(&'a str, OffsetDateTime)>,
    /// A callback's signature key, remembered until the nonce expires.
    pub signature_key: Option<&'a str>,
    /// A callback's content key, remembered with this reply unless one is remembered already.
    pub content_key: Option<&'a str>,
}

impl UnitOfWork {
    /// Everything the inbox knows about some commands, in one query, in their order: the stored
    /// reply of each message id, whether each nonce was seen and has not expired at `now`, and the
    /// first answer given to a callback with each content key. Only what is committed (or written
    /// earlier in this transaction) is seen: commands of the same batch do not see each other here.
    pub async fn inbox_lookup(
        &self,
        commands: &[InboxKeys<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<InboxLookup>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = commands.iter().map(|c| c.message_id).collect();
        let nonces: Vec<Option<&str>> = commands.iter().map(|c| c.nonce).collect();
        let signatures: Vec<Option<&str>> = commands.iter().map(|c| c.signature_key).collect();
        let keys: Vec<Option<&str>> = commands.iter().map(|c| c.content_key).collect();
        let rows = self
            .in_transaction(async {
                let statement = self.prepared(LOOKUP).await?;
                Ok(self
                    .client()?
                    .query(&statement, &[&ids, &nonces, &signatures, &keys, &now])
                    .await?)
            })
            .await?;
        Ok(rows
            .iter()
            .map(|row| InboxLookup {
                processed_reply: row.get(0),
                nonce_seen: row.get(1),
                callback_reply: row.get(2),
            })
            .collect())
    }

    /// Remembers some commands' outcomes in one statement: each message id with its reply; each
    /// nonce, and its signature key, until the nonce's expiry (an entry expired at `now` is taken
    /// over); each content key with its answer, keeping the first answer if there is one. Returns
    /// the replay keys that are remembered already and not expired: replays racing these commands
    /// (roll back). Message ids and replay keys must be distinct within one call; a message id
    /// recorded before is an error.
    pub async fn record_outcomes(
        &self,
        outcomes: &[InboxOutcome<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = outcomes.iter().map(|o| o.message_id).collect();
        let replies: Vec<&Value> = outcomes.iter().map(|o| o.reply).collect();
        let nonces: Vec<Option<&str>> = outcomes.iter().map(|o| o.nonce.map(|n| n.0)).collect();
        let expiries: Vec<Option<OffsetDateTime>> =
            outcomes.iter().map(|o| o.nonce.map(|n| n.1)).collect();
        let keys: Vec<Option<&str>> = outcomes.iter().map(|o| o.content_key).collect();
        let signatures: Vec<Option<&str>> = outcomes
            .iter()
            .map(|o| o.signature_key.filter(|_| o.nonce.is_some()))
            .collect();
        let rows = self
            .in_transaction(async {
                let statement = self.prepared(RECORD).await?;
                Ok(self
                    .client()?
                    .query(
                        &statement,
                        &[&ids, &replies, &nonces, &expiries, &keys, &signatures, &now],
                    )
                    .await?)
            })
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
