//! Dead letters (ADR 0014): commands parked in the dead-letter queue, kept as rows so that they can
//! be listed, read and re-driven. The processor's keeper records them from the queue; a re-drive
//! marks a row with who and when in the transaction that publishes it again.

use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::StoreError;
use crate::store::Store;

/// A parked command, as the keeper received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The parking's id (a command parked twice has two).
    pub id: Uuid,
    /// The command's `message_id`.
    pub message_id: String,
    /// Its `correlation_id`.
    pub correlation_id: Option<String>,
    /// Why it was parked.
    pub reason: String,
    /// The license its envelope names, when it is one.
    pub license: Option<String>,
    /// Its kind (`refreshLicenseCode`, `request_activation`, …), when it is an envelope.
    pub kind: Option<String>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

/// A kept dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// What was parked.
    pub letter: DeadLetter,
    /// When the keeper recorded it.
    pub parked_at: OffsetDateTime,
    /// When it was re-driven, if it was.
    pub redriven_at: Option<OffsetDateTime>,
    /// Who re-drove it (an API token's name, or `cli`).
    pub redriven_by: Option<String>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadLetterState {
    /// Not re-driven yet.
    #[default]
    Waiting,
    /// Re-driven.
    Redriven,
    /// Both.
    All,
}

const COLUMNS: &str = "id, message_id, correlation_id, reason, license, kind, body, parked_at, redriven_at, redriven_by";

fn stored(row: &Row) -> StoredDeadLetter {
    StoredDeadLetter {
        letter: DeadLetter {
            id: row.get(0),
            message_id: row.get(1),
            correlation_id: row.get(2),
            reason: row.get(3),
            license: row.get(4),
            kind: row.get(5),
            body: row.get(6),
        },
        parked_at: row.get(7),
        redriven_at: row.get(8),
        redriven_by: row.get(9),
    }
}

/// Why a re-drive did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError<E> {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Publishing a letter again failed; nothing was marked.
    #[error("cannot publish the command again: {0}")]
    Publish(E),
}

impl Store {
    /// Records a parked command; a letter recorded already (the queue delivered it twice) is
    /// left as it is.
    pub async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO dead_letters (id, message_id, correlation_id, reason, license, kind, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                &[
                    &letter.id,
                    &letter.message_id,
                    &letter.correlation_id,
                    &letter.reason,
                    &letter.license,
                    &letter.kind,
                    &letter.body,
                ],
            )
            .await?;
        Ok(())
    }

    /// The dead letters in `state`, newest first, at most `limit`, parked before `before` when
    /// given (paging).
    pub async fn dead_letters(
        &self,
        state: DeadLetterState,
        before: Option<OffsetDateTime>,
        limit: i64,
    ) -> Result<Vec<StoredDeadLetter>, StoreError> {
        let client = self.client().await?;
        let filter = match state {
            DeadLetterState::Waiting => "redriven_at IS NULL",
            DeadLetterState::Redriven => "redriven_at IS NOT NULL",
            DeadLetterState::All => "true",
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM dead_letters WHERE {filter}
                       AND ($1::timestamptz IS NULL OR parked_at < $1)
                     ORDER BY parked_at DESC LIMIT $2"
                ),
                &[&before, &limit],
            )
            .await?;
        Ok(rows.iter().map(stored).collect())
    }

    /// One dead letter.
    pub async fn dead_letter(&self, id: Uuid) -> Result<Option<StoredDeadLetter>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(stored))
    }

    /// The number of dead letters not re-driven yet.
    pub async fn dead_letters_waiting(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                "SELECT count(*) FROM dead_letters WHERE redriven_at IS NULL",
                &[],
            )
            .await?
            .get(0))
    }

    /// Re-drives the waiting dead letter `id` (every waiting one with `None`): in one
    /// transaction, marks each as re-driven by `actor`, hands each to `publish` (which sends the
    /// command again, confirmed), and commits. A failed publish leaves them all waiting; a letter
    /// published by an attempt that did not commit is applied once all the same, since the
    /// processor's inbox knows its message id.
    pub async fn redrive_dead_letters<E, F, Fut>(
        &self,
        id: Option<Uuid>,
        actor: &str,
        mut publish: F,
    ) -> Result<Vec<StoredDeadLetter>, RedriveError<E>>
    where
        F: FnMut(StoredDeadLetter) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let rows = tx
            .query(
                &format!(
                    "UPDATE dead_letters SET redriven_at = now(), redriven_by = $2
                      WHERE redriven_at IS NULL AND ($1::uuid IS NULL OR id = $1)
                     RETURNING {COLUMNS}"
                ),
                &[&id, &actor],
            )
            .await
            .map_err(StoreError::from)?;
        let mut letters: Vec<StoredDeadLetter> = rows.iter().map(stored).collect();
        letters.sort_by_key(|l| l.parked_at);
        for letter in &letters {
            publish(letter.clone())
                .await
                .map_err(RedriveError::Publish)?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(letters)
    }
}
