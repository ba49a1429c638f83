//! Followers: catch up from a checkpoint, then follow live. A [`Handler`]'s checkpoint moves in
//! the same transaction as its own work, so a crash never skips nor half-applies a batch. A
//! [`Pipelined`] handler's work ends outside the database (a broker's confirms): several of its
//! batches are in flight at once, and the checkpoint moves past a batch once its work has ended.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
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

/// What a follower does with a batch when its work ends outside the database (a broker's confirms):
/// [`Pipelined::start`] hands the batch over, [`Pipelined::finish`] waits for it to be taken.
/// Batches are started in global order and finished in the order they were started.
pub trait Pipelined {
    /// The handler's own failure.
    type Error: std::fmt::Display;
    /// A started batch, still to be finished.
    type Started: Send;

    /// Starts the work of a batch, in global order, without waiting for it to end.
    fn start(
        &mut self,
        events: &[RecordedEvent],
    ) -> impl Future<Output = Result<Self::Started, Self::Error>> + Send;

    /// Waits for a started batch's work to end; the checkpoint moves past it only if this succeeds.
    fn finish(
        &mut self,
        started: Self::Started,
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
        let (events, pending) = self
            .read_after(&*tx, position)
            .await
            .map_err(FollowError::Store)?;
        let Some(last) = events.last().map(|e| e.global_position) else {
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

    /// The next batch after `position`; when it is empty, whether committed events wait beyond
    /// `position` behind a transaction still running.
    async fn read_after(
        &self,
        client: &impl tokio_postgres::GenericClient,
        position: i64,
    ) -> Result<(Vec<RecordedEvent>, bool), StoreError> {
        let events = read_all_in(client, position, self.batch_size, &self.upcasters).await?;
        if !events.is_empty() {
            return Ok((events, false));
        }
        let pending = client
            .query_opt(
                "SELECT 1 FROM events WHERE global_position > $1 LIMIT 1",
                &[&position],
            )
            .await?
            .is_some();
        Ok((events, pending))
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
        let listener = self
            .listener(wake.clone(), None)
            .await
            .map_err(FollowError::Store)?;
        let mut listener = std::pin::pin!(listener);
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
                reason = &mut listener => return Err(FollowError::Store(lost(&reason))),
            }
        }
    }
}

impl Subscription {
    /// Like [`Subscription::run`] for a [`Pipelined`] handler: up to `depth` batches are started
    /// before the oldest is finished, and the checkpoint moves past each batch once it is
    /// finished (at least once: a batch started but not finished when the run ends is handed over
    /// again by the next run). Instances of one follower take turns: a run holds the follower's
    /// session lock on its notification connection, and another waits for it.
    pub async fn run_pipelined<P: Pipelined>(
        &self,
        handler: &mut P,
        depth: usize,
        cancel: CancellationToken,
        progress: impl Fn(),
    ) -> Result<(), FollowError<P::Error>> {
        let gone = |reason: String| FollowError::Store(lost(&reason));
        let depth = depth.max(1);
        let wake = Arc::new(Notify::new());
        let (held, is_held) = oneshot::channel();
        let hold = Some((self.name.clone(), held));
        let listener = self
            .listener(wake.clone(), hold)
            .await
            .map_err(FollowError::Store)?;
        let mut listener = std::pin::pin!(listener);
        tokio::select! {
            held = is_held => match held {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(gone(e)),
                Err(_) => return Err(gone("the lock was not taken".to_owned())),
            },
            () = cancel.cancelled() => return Ok(()),
            reason = &mut listener => return Err(gone(reason)),
        }
        let mut sent = self.position().await.map_err(FollowError::Store)?;
        let mut in_flight: VecDeque<(i64, P::Started)> = VecDeque::with_capacity(depth);
        loop {
            // Once cancelled, nothing more is read, and what was handed over is finished, so that
            // a clean stop repeats nothing.
            let stopping = cancel.is_cancelled();
            let mut pause = self.poll_interval;
            if !stopping && in_flight.len() < depth {
                let client = self.store.client().await.map_err(FollowError::Store)?;
                let (events, pending) = self
                    .read_after(&**client, sent)
                    .await
                    .map_err(FollowError::Store)?;
                drop(client);
                progress();
                if let Some(last) = events.last().map(|e| e.global_position) {
                    let started = handler.start(&events).await.map_err(FollowError::Handler)?;
                    in_flight.push_back((last, started));
                    sent = last;
                    continue;
                }
                if pending {
                    pause = PENDING_RETRY;
                }
            }
            if let Some((last, started)) = in_flight.pop_front() {
                handler
                    .finish(started)
                    .await
                    .map_err(FollowError::Handler)?;
                self.move_to(last).await.map_err(FollowError::Store)?;
                continue;
            }
            if stopping {
                return Ok(());
            }
            tokio::select! {
                () = cancel.cancelled() => {}
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                reason = &mut listener => return Err(gone(reason)),
            }
        }
    }

    /// The follower's own connection, listening for appends (after taking `hold`'s lock, if
    /// any): the future ends with why the connection was lost.
    async fn listener(
        &self,
        wake: Arc<Notify>,
        hold: Option<(String, oneshot::Sender<Result<(), String>>)>,
    ) -> Result<impl Future<Output = String> + use<>, StoreError> {
        let (client, connection) = self.store.pg_config.connect(self.store.tls.clone()).await?;
        Ok(listen(client, connection, wake, hold))
    }

    /// Moves the checkpoint forward to `position` (never back).
    async fn move_to(&self, position: i64) -> Result<(), StoreError> {
        let client = self.store.client().await?;
        client
            .execute(
                "INSERT INTO checkpoints (name, position) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE
                 SET position = greatest(checkpoints.position, EXCLUDED.position), updated_at = now()",
                &[&self.name, &position],
            )
            .await?;
        Ok(())
    }
}

/// A follower's run ends when its notification connection is lost.
fn lost(reason: &str) -> StoreError {
    StoreError::Unavailable(format!("the notification connection was lost: {reason}"))
}

/// LISTENs on the append channel and wakes the follower on each notification; returns why the
/// connection ended. With `hold`, it first takes the follower's session lock (waiting while
/// another instance holds it) and says so: the lock lasts as long as the connection.
async fn listen<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    wake: Arc<Notify>,
    hold: Option<(String, oneshot::Sender<Result<(), String>>)>,
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
        if let Some((name, held)) = hold {
            let taken = client
                .execute(
                    "SELECT pg_advisory_lock(hashtextextended($1, 0))",
                    &[&format!("licensing follower {name}")],
                )
                .await
                .map(drop)
                .map_err(|e| chain(&e));
            let _ = held.send(taken);
        }
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
