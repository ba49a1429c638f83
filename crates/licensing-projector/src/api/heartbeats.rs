//! The heartbeat ledger on the query API (D15): `GET /v1/licenses/{code}/heartbeats`, per market
//! day of use: owed, sent, acknowledged, failed or missed, with its attempts.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use licensing_domain::{Day, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use time::Date;

use crate::api::{QueryState, decode_query, error, unauthorized, unavailable};
use crate::read_model::time::{UNIX_EPOCH_JULIAN_DAY, date_of, rfc3339, zone_label};

/// The day number of `YYYY-MM-DD`; the error names the parameter.
fn day_of(name: &str, text: &str) -> Result<i64, String> {
    let format =
        time::format_description::parse("[year]-[month]-[day]").map_err(|e| e.to_string())?;
    Date::parse(text, &format)
        .map(|d| i64::from(d.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
        .map_err(|_| format!("{name} must be a date, YYYY-MM-DD"))
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

/// `GET /v1/licenses/{code}/heartbeats[?from=YYYY-MM-DD&to=YYYY-MM-DD]`: the last 30 days by
/// default, at most 367.
pub(crate) async fn heartbeats(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &state) {
        return refused;
    }
    let code = path.into_inner();
    let today = Day::containing(
        Timestamp::from_millis(state.clock.now_millis()),
        state.day_zone.whole_minutes().into(),
    )
    .number();
    let range = decode_query::<LedgerQuery>(req.query_string()).and_then(|q| {
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
        // At most 367 days: an older `from` is moved up (the answer names the range it covers);
        // `from` after `to` is an empty range.
        Ok((from.max(to - 366), to))
    });
    let (from, to) = match range {
        Ok(range) => range,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_query", message),
    };
    let client = match state.store.client().await {
        Ok(client) => client,
        Err(e) => return unavailable(&e),
    };
    let known = client
        .query_opt(
            "SELECT 1 FROM license_views WHERE license = $1 AND NOT sandbox",
            &[&code],
        )
        .await;
    match known {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_license",
                format!("no license {code}"),
            );
        }
        Err(e) => return unavailable(&e),
    }
    let rows = client
        .query(
            "SELECT day, used_at, account, attempts, acknowledged_at, market_status, last_error, given_up
               FROM heartbeat_days WHERE license = $1 AND day BETWEEN $2 AND $3 ORDER BY day",
            &[&code, &from, &to],
        )
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return unavailable(&e),
    };
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
    HttpResponse::Ok().json(json!({
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
        assert!(day_of("from", "2026-13-01").unwrap_err().contains("from"));
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
