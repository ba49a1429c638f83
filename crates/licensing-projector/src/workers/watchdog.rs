//! The probe watchdog (D21, ADR 0013): the saved debug cases of `LICENSING_PROBE_CASES` sent to
//! `LICENSING_PROBE_URL`, the public callback URL as registered in the seller console (so DNS, TLS
//! and proxies are exercised too), signed with the current callback access key, each answer judged
//! as the marketplace judges it; at the times of `LICENSING_PROBE_SCHEDULE` in the market zone, on
//! the projector's clock. Each run goes to the processor as a `record_probe_run` command, which
//! records it on the `probe` stream.

use std::time::Duration;

use koogallery::probe::CaseOutcome;
use licensing_bus::Bus;
use licensing_messages::{CommandBody, CommandEnvelope, ProbeCaseV1};
use licensing_runtime::{CancellationToken, Clock};
use licensing_store::{Store, StoreError};
use time::OffsetDateTime;

use crate::config::probe::{ProbeSchedule, ProbeSettings};

/// How often the watchdog looks at the clock (it may be moved in drills and tests).
const TICK: Duration = Duration::from_secs(1);

/// The watchdog task.
#[derive(Debug, Clone)]
pub(crate) struct Watchdog {
    pub(crate) settings: ProbeSettings,
    pub(crate) schedule: ProbeSchedule,
    pub(crate) clock: Clock,
    pub(crate) store: Store,
}

/// Why the watchdog stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WatchdogError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker.
    #[error(transparent)]
    Bus(#[from] licensing_bus::BusError),
}

impl Watchdog {
    /// Runs until `cancel`: whenever the latest scheduled instant is later than the last recorded
    /// run (a slot missed while the projector was down included), the cases are sent once and the
    /// run is handed to the processor.
    pub(crate) async fn run(
        &self,
        bus: &Bus,
        cancel: &CancellationToken,
    ) -> Result<(), WatchdogError> {
        let mut last = crate::read_model::probe_log::last_run_at(&self.store).await?;
        while !cancel.is_cancelled() {
            let now = self.clock.now();
            if let Some(slot) = self.schedule.latest(now)
                && last.is_none_or(|l| l < slot)
            {
                let outcomes = self.settings.run_once().await;
                let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
                if failed > 0 {
                    tracing::warn!(
                        failed,
                        cases = outcomes.len(),
                        "the probe watchdog's run failed: the marketplace's probe would fail too"
                    );
                } else {
                    tracing::info!(cases = outcomes.len(), "the probe watchdog's run passed");
                }
                crate::commands::send_command(bus, &run_command(now, &outcomes)).await?;
                last = Some(now);
            }
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
        Ok(())
    }
}

/// The `record_probe_run` command of a run that started at `started`.
fn run_command(started: OffsetDateTime, outcomes: &[CaseOutcome]) -> CommandEnvelope {
    CommandEnvelope::new(
        "probe-watchdog",
        koogallery::market_time::unix_millis(started),
        CommandBody::RecordProbeRun {
            cases: outcomes
                .iter()
                .map(|o| ProbeCaseV1 {
                    case: o.case.name.clone(),
                    http_status: o.answer.as_ref().map(|a| a.http_status),
                    answer: o.answer.as_ref().map(|a| a.body.clone()),
                    latency_ms: o
                        .answer
                        .as_ref()
                        .map(|a| u64::try_from(a.elapsed.as_millis()).unwrap_or(u64::MAX)),
                    error: o.failure.clone(),
                })
                .collect(),
        },
    )
}
