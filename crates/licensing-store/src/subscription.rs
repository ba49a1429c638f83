//! Followers: catch up from a checkpoint, then follow live. The checkpoint moves in the same
//! transaction as the follower's own work, so a crash never skips nor half-applies a batch.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Transaction};
use tokio_util::sync::CancellationToken;

use crate::error::{StoreError, chain};
use crate::event::{RecordedEvent, Upcasters};
use crate::read::read_all_in;
use crate::store::Store;

/// The channel the store notifies after appends commit.
const CHANNEL: &str = "licensing_events";

/// How soon to look again when committed events wait for an older transaction to end.
const PENDING_RETRY: Duration = Duration::from_millis(20);

/// The result of one read.
struct Batch {
    /// Events handled.
    handled: usize,
    /// Nothing was readable, but committed events wait behind a transaction still running.
    pending: bool,
}

/// What a follower does with a batch of events, inside the transaction that moves its checkpoint.
pub trait Handler {
    /// The handler's own failure.
    type Error: std::fmt::Display;

    /// Handles events in global order. Writes made through `tx` commit together with the checkpoint.
    fn handle(
        &mut self,
        tx: &Transaction<'_>,
        events: &[RecordedEvent],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError<E> {
    /// The store failed in a way retrying will not fix.
    #[error(transparent)]
    Store(StoreError),
    /// The handler failed; the batch was rolled back and the checkpoint did not move.
    #[error("the handler failed: {0}")]
    Handler(E),
}

/// A named follower of the global order.
#[derive(Debug, Clone)]
pub struct Subscription {
    store: Store,
    name: String,
    batch_size: i64,
    poll_interval: Duration,
    upcasters: Upcasters,
}

impl Subscription {
    /// A follower called `name` (its checkpoint's key), reading 500 events at a time and polling
    /// every 500 ms when no notification arrives.
    pub fn new(store: Store, name: impl Into<String>) -> Self {
        Self {
            store,
            name: name.into(),
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            upcasters: Upcasters::new(),
        }
    }

    /// Events per batch.
    pub fn with_batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Longest wait between two reads when idle.
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// Upcasters applied to every event read.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// The follower's checkpoint: the last global position it handled (0 before any).
    pub async fn position(&self) -> Result<i64, StoreError> {
        let client = self.store.client().await?;
        let row = client
            .query_opt(
                "SELECT position FROM checkpoints WHERE name = $1",
                &[&self.name],
            )
            .await?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    /// Handles the next batch, if any; returns how many events it handled.
    pub async fn step<H: Handler>(&self, handler: &mut H) -> Result<usize, FollowError<H::Error>> {
        self.next_batch(handler).await.map(|batch| batch.handled)
    }

    async fn next_batch<H: Handler>(
        &self,
        handler: &mut H,
    ) -> Result<Batch, FollowError<H::Error>> {
        let mut client = self.store.client().await.map_err(FollowError::Store)?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| FollowError::Store(e.into()))?;
        // Locking the checkpoint makes a second instance of the same follower wait, not duplicate.
        let position = crate::hold_checkpoint(&tx, &self.name)
            .await
            .map_err(FollowError::Store)?;
        let events = read_all_in(&*tx, position, self.batch_size, &self.upcasters)
            .await
            .map_err(FollowError::Store)?;
        let Some(last) = events.last().map(|e| e.global_position) else {
            let pending = tx
                .query_opt(
                    "SELECT 1 FROM events WHERE global_position > $1 LIMIT 1",
                    &[&position],
                )
                .await
                .map_err(|e| FollowError::Store(e.into()))?
                .is_some();
            tx.rollback()
                .await
                .map_err(|e| FollowError::Store(e.into()))?;
            return Ok(Batch {
                handled: 0,
                pending,
            });
        };
        handler
            .handle(&tx, &events)
            .await
            .map_err(FollowError::Handler)?;
        tx.execute(
            "UPDATE checkpoints SET position = $2, updated_at = now() WHERE name = $1",
            &[&self.name, &last],
        )
        .await
        .map_err(|e| FollowError::Store(e.into()))?;
        tx.commit()
            .await
            .map_err(|e| FollowError::Store(e.into()))?;
        Ok(Batch {
            handled: events.len(),
            pending: false,
        })
    }

    /// Catches up, then follows until `cancel` fires. Wakes on the append notification, and polls
    /// in any case; calls `progress` after every read that succeeded (the caller's sign of life).
    /// Any failure ends the run, the loss of the notification connection included: the caller
    /// restarts it with backoff (`licensing_runtime::supervise`), from the checkpoint.
    pub async fn run<H: Handler>(
        &self,
        handler: &mut H,
        cancel: CancellationToken,
        progress: impl Fn(),
    ) -> Result<(), FollowError<H::Error>> {
        let wake = Arc::new(Notify::new());
        let (client, connection) = self
            .store
            .pg_config
            .connect(self.store.tls.clone())
            .await
            .map_err(|e| FollowError::Store(e.into()))?;
        let mut listener = std::pin::pin!(listen(client, connection, wake.clone()));
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let batch = self.next_batch(handler).await?;
            progress();
            let pause = match batch {
                // Committed events exist beyond the checkpoint, but an older transaction is still
                // running: they become readable as soon as it ends, so look again soon.
                Batch {
                    handled: 0,
                    pending: true,
                } => PENDING_RETRY,
                Batch { handled: 0, .. } => self.poll_interval,
                _ => continue,
            };
            tokio::select! {
                () = cancel.cancelled() => {}
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                lost = &mut listener => {
                    return Err(FollowError::Store(StoreError::Unavailable(format!(
                        "the notification connection was lost: {lost}"
                    ))));
                }
            }
        }
    }
}

/// LISTENs on the append channel and wakes the follower on each notification; returns why the
/// connection ended.
async fn listen<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    wake: Arc<Notify>,
) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let messages = async {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                Ok(_) => {}
                Err(e) => return chain(&e),
            }
        }
        "connection closed".to_owned()
    };
    let subscribe = async {
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            tracing::warn!(error = %chain(&e), "cannot LISTEN; polling only");
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        reason = messages => reason,
        () = subscribe => unreachable!("pending never completes"),
    }
}
