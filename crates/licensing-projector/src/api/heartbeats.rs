//! The heartbeat ledger on the query API (D15): `GET /v1/licenses/{code}/heartbeats`, per market
//! day of use: owed, sent, acknowledged, failed or missed, with its attempts.

use actix_web::{HttpRequest, web};
use licensing_domain::{Day, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use time::Date;

use crate::api::{Answer, Authorized, QueryState, Refusal, decode_query, ok};
use crate::read_model::time::{UNIX_EPOCH_JULIAN_DAY, date_of, rfc3339, zone_label};

/// The day number of `YYYY-MM-DD`; the error names the parameter.
fn day_of(name: &str, text: &str) -> Result<i64, Refusal> {
    const DATE: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, DATE)
        .map(|d| i64::from(d.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
        .map_err(|_| Refusal::invalid_query(format!("{name} must be a date, YYYY-MM-DD")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A day's state: acknowledged, failed (refused for good), missed (ended unpaid), sent (calls made,
/// none acknowledged yet) or owed (no call recorded yet).
fn day_state(
    day: i64,
    today: i64,
    acknowledged: bool,
    given_up: bool,
    attempts: i32,
) -> &'static str {
    if acknowledged {
        "acknowledged"
    } else if given_up {
        "failed"
    } else if day < today {
        "missed"
    } else if attempts > 0 {
        "sent"
    } else {
        "owed"
    }
}

/// The days asked for, as day numbers `(from, to)`: the last 30 days to `today` by default, at
/// most 367 (an older `from` is moved up and the answer names the range it covers); `from` after
/// `to` is an empty range.
fn day_range(query: &str, today: i64) -> Result<(i64, i64), Refusal> {
    let q: LedgerQuery = decode_query(query)?;
    let to =
        q.to.as_deref()
            .map(|t| day_of("to", t))
            .transpose()?
            .unwrap_or(today);
    let from = q
        .from
        .as_deref()
        .map(|f| day_of("from", f))
        .transpose()?
        .unwrap_or(to - 29);
    Ok((from.max(to - 366), to))
}

/// `GET /v1/licenses/{code}/heartbeats[?from=YYYY-MM-DD&to=YYYY-MM-DD]`: the last 30 days by
/// default, at most 367.
pub(crate) async fn heartbeats(
    _: Authorized,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> Answer {
    let today = Day::containing(
        Timestamp::from_millis(state.clock.now_millis()),
        state.day_zone.whole_minutes().into(),
    )
    .number();
    let (from, to) = day_range(req.query_string(), today)?;
    let body = ledger_body(&state, &path, today, (from, to)).await?;
    ok(&body)
}

/// The heartbeat ledger of `code` over the days `from..=to`.
async fn ledger_body(
    state: &QueryState,
    code: &str,
    today: i64,
    (from, to): (i64, i64),
) -> Result<Value, Refusal> {
    let client = state
        .store
        .client()
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    client
        .query_opt(
            "SELECT 1 FROM license_views WHERE license = $1 AND NOT sandbox",
            &[&code],
        )
        .await
        .map_err(|e| Refusal::unavailable(&e))?
        .ok_or_else(|| Refusal::unknown_license(code))?;
    let rows = client
        .query(
            "SELECT day, used_at, account, attempts, acknowledged_at, market_status, last_error, given_up
               FROM heartbeat_days WHERE license = $1 AND day BETWEEN $2 AND $3 ORDER BY day",
            &[&code, &from, &to],
        )
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let days: Vec<Value> = rows
        .iter()
        .map(|r| {
            let day: i64 = r.get(0);
            let acknowledged: Option<time::OffsetDateTime> = r.get(4);
            let attempts: i32 = r.get(3);
            json!({
                "date": date_of(day),
                "day": day,
                "state": day_state(day, today, acknowledged.is_some(), r.get(7), attempts),
                "reported_at": rfc3339(r.get(1)),
                "account": r.get::<_, Option<String>>(2),
                "attempts": attempts,
                "acknowledged_at": rfc3339(acknowledged),
                "market_status": r.get::<_, Option<String>>(5),
                "last_error": r.get::<_, Option<String>>(6),
            })
        })
        .collect();
    let debt = rows
        .iter()
        .filter(|r| {
            let day: i64 = r.get(0);
            day > today - 7 && day <= today && r.get::<_, Option<time::OffsetDateTime>>(4).is_none()
        })
        .count();
    Ok(json!({
        "license": code,
        "time_zone": zone_label(state.day_zone),
        "today": date_of(today),
        "from": date_of(from),
        "to": date_of(to),
        "days": days,
        "debt_days": debt,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_and_dates_agree() {
        assert_eq!(date_of(0).as_deref(), Some("1970-01-01"));
        assert_eq!(day_of("to", "2026-11-29"), Ok(20_786));
        assert_eq!(date_of(20_786).as_deref(), Some("2026-11-29"));
        assert!(
            day_of("from", "2026-13-01")
                .unwrap_err()
                .message
                .contains("from")
        );
    }

    #[test]
    fn a_day_is_missed_only_once_it_has_ended_unpaid() {
        assert_eq!(day_state(10, 10, false, false, 0), "owed");
        assert_eq!(day_state(10, 10, false, false, 2), "sent");
        assert_eq!(day_state(9, 10, false, false, 2), "missed");
        assert_eq!(day_state(9, 10, true, false, 2), "acknowledged");
        assert_eq!(day_state(10, 10, false, true, 1), "failed");
    }
}
