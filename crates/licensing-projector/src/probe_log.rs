//! The probe log's view (D21): each case of each watchdog run and each marketplace probe seen, kept
//! by the view follower from the `probe` stream; the countdown to the marketplace's freeze read
//! from it, for `GET /v1/probe` and the gauges alike.

use actix_web::{HttpRequest, HttpResponse, web};
use licensing_domain::{self as domain, Day, ProbeEvent};
use licensing_messages::event_codec;
use licensing_store::{GenericClient, RecordedEvent, Store, StoreError, Transaction};
use serde::Deserialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset};

use crate::heartbeats::date_of;
use crate::query::{QueryState, Refusal, decode_query, respond, rfc3339, unauthorized, zone_label};

fn ts(t: domain::Timestamp) -> OffsetDateTime {
    koogallery::market_time::from_unix_millis(t.as_millis()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Writes the rows of the probe stream's new events; `zone` is the market zone (market days).
pub(crate) async fn write(
    tx: &Transaction<'_>,
    zone: UtcOffset,
    new: &[&RecordedEvent],
) -> Result<(), String> {
    for recorded in new {
        let event = event_codec::decode_probe(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.payload,
        )
        .map_err(|e| format!("{}: {e}", domain::PROBE_STREAM))?;
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
        result.map_err(|e| e.to_string())?;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeQuery {
    limit: Option<i64>,
}

/// `GET /v1/probe[?limit=N]`: the watchdog's settings, the freeze countdown, the last `N` runs
/// (default 10, at most 100) with each case, and the last marketplace probes seen.
pub(crate) async fn probe(req: HttpRequest, state: web::Data<QueryState>) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &state) {
        return refused;
    }
    let limit = match decode_query::<ProbeQuery>(req.query_string()).and_then(|q| match q.limit {
        None => Ok(10),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err("limit must be from 1 to 100".to_owned()),
    }) {
        Ok(limit) => limit,
        Err(message) => return Refusal::invalid_query(message).answer(),
    };
    respond(probe_body(&state, limit).await)
}

/// `GET /v1/probe`'s body: the watchdog's settings, the last `limit` runs with each case, the
/// failed days and the marketplace's own probes seen (the console renders it).
pub(crate) async fn probe_body(state: &QueryState, limit: i64) -> Result<Value, Refusal> {
    let mut client = state
        .store
        .client()
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    // One snapshot for the countdown and the runs listed with it: a run committed between two
    // reads would otherwise be listed but not counted.
    let snapshot = client
        .build_transaction()
        .isolation_level(licensing_store::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let status = ProbeStatus::read(&*snapshot)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let rows = snapshot
        .query(
            "SELECT run_at, market_day, case_name, passed, http_status, answer, latency_ms, error FROM probe_runs
              WHERE run_at IN (SELECT DISTINCT run_at FROM probe_runs ORDER BY run_at DESC LIMIT $1)
              ORDER BY run_at DESC, position",
            &[&limit],
        )
        .await;
    let seen = snapshot
        .query(
            "SELECT seen_at, license, activity FROM marketplace_probes ORDER BY seen_at DESC LIMIT 10",
            &[],
        )
        .await;
    let (rows, seen) = match (rows, seen) {
        (Ok(rows), Ok(seen)) => (rows, seen),
        (Err(e), _) | (_, Err(e)) => return Err(Refusal::unavailable(&e)),
    };
    let mut runs: Vec<Value> = Vec::new();
    let mut current: Option<(OffsetDateTime, i64, bool, Vec<Value>)> = None;
    for r in &rows {
        let run_at: OffsetDateTime = r.get(0);
        if current.as_ref().is_some_and(|(at, ..)| *at != run_at) {
            runs.extend(current.take().map(run_json));
        }
        let passed: bool = r.get(3);
        let entry = current.get_or_insert_with(|| (run_at, r.get(1), true, Vec::new()));
        entry.2 &= passed;
        entry.3.push(json!({
            "case": r.get::<_, String>(2),
            "passed": passed,
            "http_status": r.get::<_, Option<i32>>(4),
            "latency_ms": r.get::<_, Option<i64>>(6),
            "answer": r.get::<_, Option<String>>(5),
            "error": r.get::<_, Option<String>>(7),
        }));
    }
    runs.extend(current.take().map(run_json));
    let schedule = &state.probe_schedule;
    let watchdog = match &state.probe {
        Some(settings) => json!({
            "configured": true,
            "url": settings.url.as_str(),
            "cases": settings.cases.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            "schedule": schedule.labels(),
            "time_zone": zone_label(schedule.zone),
            "next_run_at": rfc3339(schedule.next(state.clock.now())),
        }),
        None => json!({
            "configured": false,
            "schedule": schedule.labels(),
            "time_zone": zone_label(schedule.zone),
        }),
    };
    Ok(json!({
        "watchdog": watchdog,
        "failed_days": status.failed_days,
        "days_until_freeze": domain::days_until_freeze(status.failed_days),
        "freeze_after_failed_days": domain::FREEZE_AFTER_FAILED_DAYS,
        "last_run_at": rfc3339(status.last_run_at),
        "last_success_at": rfc3339(status.last_success_at),
        "marketplace_last_seen_at": rfc3339(status.marketplace_last_seen_at),
        "runs": runs,
        "marketplace_probes": seen.iter().map(|r| json!({
            "seen_at": rfc3339(r.get(0)),
            "license": r.get::<_, String>(1),
            "activity": r.get::<_, String>(2),
        })).collect::<Vec<_>>(),
    }))
}

fn run_json((run_at, day, passed, cases): (OffsetDateTime, i64, bool, Vec<Value>)) -> Value {
    json!({
        "run_at": rfc3339(Some(run_at)),
        "market_day": date_of(day),
        "passed": passed,
        "cases": cases,
    })
}
