//! `GET /v1/probe`: the probe watchdog's status and its recent runs.

use actix_web::{HttpRequest, web};
use licensing_domain as domain;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::api::{Answer, Authorized, QueryState, Refusal, decode_query, ok};
use crate::read_model::probe_log::ProbeStatus;
use crate::read_model::time::{date_of, rfc3339, zone_label};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeQuery {
    limit: Option<i64>,
}

/// `GET /v1/probe[?limit=N]`: the watchdog's settings, the freeze countdown, the last `N` runs
/// (default 10, at most 100) with each case, and the last marketplace probes seen.
pub(crate) async fn probe(_: Authorized, req: HttpRequest, state: web::Data<QueryState>) -> Answer {
    let limit = match decode_query::<ProbeQuery>(req.query_string())?.limit {
        None => 10,
        Some(n) if (1..=100).contains(&n) => n,
        Some(_) => return Err(Refusal::invalid_query("limit must be from 1 to 100")),
    };
    ok(&probe_body(&state, limit).await?)
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
