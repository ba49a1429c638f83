//! The probe log's view (D21): each case of each watchdog run and each marketplace probe seen, kept
//! by the view follower from the `probe` stream; the countdown to the marketplace's freeze read
//! from it, for `GET /v1/probe` and the gauges alike.

use licensing_domain::{self as domain, Day, ProbeEvent};
use licensing_messages::event_codec;
use licensing_store::{GenericClient, RecordedEvent, Store, StoreError, Transaction};
use time::{OffsetDateTime, UtcOffset};

use crate::read_model::ReadModelError;
use crate::read_model::time::ts;

/// Writes the rows of the probe stream's new events; `zone` is the market zone (market days).
pub(crate) async fn write(
    tx: &Transaction<'_>,
    zone: UtcOffset,
    new: &[&RecordedEvent],
) -> Result<(), ReadModelError> {
    for recorded in new {
        let event = event_codec::decode_probe(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.payload,
        )
        .map_err(|source| ReadModelError::Undecodable {
            stream: domain::PROBE_STREAM.to_owned(),
            source,
        })?;
        let result = match &event {
            ProbeEvent::RunPassed(run) | ProbeEvent::RunFailed(run) => {
                let day = Day::containing(run.run_at, zone.whole_minutes().into()).number();
                tx.execute(
                    "INSERT INTO probe_runs (position, run_at, market_day, case_name, passed, http_status, answer, latency_ms, error)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (position) DO NOTHING",
                    &[
                        &recorded.stream_version,
                        &ts(run.run_at),
                        &day,
                        &run.case,
                        &run.error.is_none(),
                        &run.http_status.map(i32::from),
                        &run.answer,
                        &run.latency_ms.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
                        &run.error,
                    ],
                )
                .await
            }
            ProbeEvent::MarketplaceProbeSeen(seen) => {
                tx.execute(
                    "INSERT INTO marketplace_probes (position, seen_at, license, activity) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (position) DO NOTHING",
                    &[&recorded.stream_version, &ts(seen.at), &seen.license, &seen.activity],
                )
                .await
            }
        };
        result.map_err(StoreError::from)?;
    }
    Ok(())
}

/// The start of the newest recorded run.
pub(crate) async fn last_run_at(store: &Store) -> Result<Option<OffsetDateTime>, StoreError> {
    let client = store.client().await?;
    Ok(client
        .query_one("SELECT max(run_at) FROM probe_runs", &[])
        .await?
        .get(0))
}

/// Where the marketplace's freeze countdown stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProbeStatus {
    /// Consecutive market days with a failed run (D21).
    pub(crate) failed_days: u32,
    /// The start of the newest run.
    pub(crate) last_run_at: Option<OffsetDateTime>,
    /// The start of the newest run whose every case passed.
    pub(crate) last_success_at: Option<OffsetDateTime>,
    /// The newest marketplace probe seen.
    pub(crate) marketplace_last_seen_at: Option<OffsetDateTime>,
}

impl ProbeStatus {
    /// Reads it in one statement, so that every field comes from the same snapshot: the newest
    /// run is either counted in `failed_days` and `last_success_at` or in neither.
    pub(crate) async fn read(client: &impl GenericClient) -> Result<Self, StoreError> {
        // Enough days to count past the freeze threshold.
        let row = client
            .query_one(
                "WITH days AS (
                     SELECT market_day, bool_or(NOT passed) AS failed FROM probe_runs
                      GROUP BY market_day ORDER BY market_day DESC LIMIT 31)
                 SELECT (SELECT max(run_at) FROM probe_runs),
                        (SELECT max(run_at) FROM (SELECT run_at FROM probe_runs GROUP BY run_at HAVING bool_and(passed)) ok),
                        (SELECT max(seen_at) FROM marketplace_probes),
                        ARRAY(SELECT market_day FROM days ORDER BY market_day DESC),
                        ARRAY(SELECT failed FROM days ORDER BY market_day DESC)",
                &[],
            )
            .await?;
        let (days, failed): (Vec<i64>, Vec<bool>) = (row.get(3), row.get(4));
        Ok(Self {
            failed_days: domain::failed_streak(days.into_iter().map(Day::from_number).zip(failed)),
            last_run_at: row.get(0),
            last_success_at: row.get(1),
            marketplace_last_seen_at: row.get(2),
        })
    }
}
