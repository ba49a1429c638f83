//! The access schedule (D22, D23): takes the licenses whose instant has come, in batches
//! (`FOR UPDATE SKIP LOCKED`, so several projectors share the work), and sends each a `pass_time`
//! command for the processor, which records what the clock changed. A row is deleted once its
//! command is confirmed by the broker; the view follower writes the license's next instant when
//! the command's events arrive.

use std::time::Duration;

use licensing_bus::Bus;
use licensing_domain::NoticePolicy;
use licensing_messages::{CommandBody, CommandEnvelope};
use licensing_runtime::{CancellationToken, Clock};
use licensing_store::{GenericClient, Store, StoreError};
use time::OffsetDateTime;

/// How long the schedule waits when nothing is due.
const IDLE: Duration = Duration::from_millis(500);

/// The schedule's worker.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The store holding `access_schedule`.
    pub store: Store,
    /// The clock that says what is due.
    pub clock: Clock,
    /// The notice thresholds the commands carry.
    pub notices: NoticePolicy,
    /// Licenses taken at once.
    pub batch: u32,
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker.
    #[error(transparent)]
    Bus(#[from] licensing_bus::BusError),
}

impl Schedule {
    /// Runs until `cancel`: a round as soon as the last one found a full batch, else every 500 ms.
    pub(crate) async fn run(
        &self,
        bus: &Bus,
        cancel: &CancellationToken,
    ) -> Result<(), ScheduleError> {
        while !cancel.is_cancelled() {
            let sent = self.round(bus).await?;
            if sent < self.batch as usize {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(IDLE) => {}
                }
            }
        }
        Ok(())
    }

    /// Takes up to a batch of due licenses, sends their commands (published together, each
    /// confirmed), and deletes their rows, in one transaction: a failure leaves them due.
    pub async fn round(&self, bus: &Bus) -> Result<usize, ScheduleError> {
        let now = self.clock.now();
        let licenses = {
            let mut client = self.store.client().await?;
            let tx = client.transaction().await.map_err(StoreError::from)?;
            let licenses = take_due(&*tx, now, self.batch).await?;
            if licenses.is_empty() {
                return Ok(0);
            }
            let at_ms = koogallery::market_time::unix_millis(now);
            let envelopes: Vec<CommandEnvelope> = licenses
                .iter()
                .map(|license| self.command(license, at_ms))
                .collect();
            futures_util::future::try_join_all(
                envelopes
                    .iter()
                    .map(|e| crate::commands::send_command(bus, e)),
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            licenses
        };
        Ok(licenses.len())
    }

    fn command(&self, license: &str, at_ms: i64) -> CommandEnvelope {
        CommandEnvelope::new(
            "access-schedule",
            at_ms,
            CommandBody::PassTime {
                license: license.to_owned(),
                expiry_notice_days: self.notices.expiry_days.clone(),
                freeze_notice_days: self.notices.freeze_days.clone(),
            },
        )
    }
}

/// Deletes and returns up to `limit` licenses due at `now`, most overdue first, skipping rows
/// another transaction holds (one index range scan on `access_schedule_due`).
pub async fn take_due(
    client: &impl GenericClient,
    now: OffsetDateTime,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let rows = client.query(TAKE_DUE, &[&now, &i64::from(limit)]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The statement [`take_due`] runs (the benchmark shows its plan).
pub const TAKE_DUE: &str = "DELETE FROM access_schedule WHERE license IN (
    SELECT license FROM access_schedule WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED
) RETURNING license";
