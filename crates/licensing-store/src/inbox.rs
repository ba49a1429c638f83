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

/// What the inbox knows about each of a batch's commands, in their order. One row per processed
/// message (its reply, and a decided callback's content key) and one per accepted callback (its
/// nonce and signature key) (ADR 0021).
const LOOKUP: &str =
    "SELECT (SELECT reply FROM inbox_messages m WHERE m.message_id = q.message_id),
          EXISTS (SELECT 1 FROM inbox_nonces n WHERE n.nonce = q.nonce AND n.expires_at > $5)
          OR EXISTS (SELECT 1 FROM inbox_nonces n
                      WHERE n.signature_key = q.signature_key AND n.expires_at > $5),
          (SELECT reply FROM inbox_messages c WHERE c.content_key = q.content_key)
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
          WITH ORDINALITY AS q(message_id, nonce, signature_key, content_key, ord)
    ORDER BY q.ord";

/// Everything the inbox remembers of a batch, in one statement; returns the nonces refused (taken
/// meanwhile and not expired). A signature key names one signed request, hence one nonce (the
/// signature covers it): the nonce's uniqueness guards both.
const RECORD: &str = "WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::jsonb[], $3::text[], $4::timestamptz[], $5::text[],
                             $6::text[])
            AS i(message_id, reply, nonce, expires_at, content_key, signature_key)
    ), nonce AS (
        INSERT INTO inbox_nonces AS n (nonce, signature_key, expires_at)
        SELECT nonce, signature_key, expires_at FROM input WHERE nonce IS NOT NULL
        ON CONFLICT (nonce) DO UPDATE
            SET expires_at = EXCLUDED.expires_at, signature_key = EXCLUDED.signature_key
            WHERE n.expires_at <= $7
        RETURNING n.nonce
    ), processed AS (
        INSERT INTO inbox_messages (message_id, reply, content_key)
        SELECT message_id, reply, content_key FROM input
    )
    SELECT nonce FROM input WHERE nonce IS NOT NULL
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
    /// A decided callback's content key, remembered with this reply: the first answer to its
    /// content (a repeat's outcome carries none).
    pub content_key: Option<&'a str>,
}

/// The index that keeps one first answer per callback content (D9).
const CONTENT_KEY_INDEX: &str = "inbox_messages_content_key";

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

    /// Remembers some commands' outcomes in one statement, one row per command and one per
    /// accepted callback: each message id with its reply and, for a decided callback, its content
    /// key; each nonce with its signature key until the nonce's expiry (an entry expired at `now`
    /// is taken over). Returns what is remembered already and so races these commands (roll back
    /// and decide again, where the lookup sees it): the nonces taken and not expired
    /// (`nonce …`), or the content key answered meanwhile (`content key …`). Message ids, nonces
    /// and content keys must be distinct within one call; a message id recorded before is an
    /// error.
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
        self.in_transaction(async {
            let statement = self.prepared(RECORD).await?;
            let recorded = self
                .client()?
                .query(
                    &statement,
                    &[&ids, &replies, &nonces, &expiries, &keys, &signatures, &now],
                )
                .await;
            match recorded {
                Ok(rows) => Ok(rows
                    .iter()
                    .map(|r| format!("nonce {}", r.get::<_, &str>(0)))
                    .collect()),
                Err(error) => match error.as_db_error() {
                    Some(db) if db.constraint() == Some(CONTENT_KEY_INDEX) => Ok(vec![format!(
                        "content key {}",
                        db.detail().unwrap_or_default()
                    )]),
                    _ => Err(error.into()),
                },
            }
        })
        .await
    }
}
