//! The evidence log on the query API (D20): one exchange byte for byte, exchanges listed and
//! filtered, one license's three-way ledger, and its dispute evidence pack.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use licensing_store::{Direction, ExchangeFilter, StoredExchange};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Answer, Authorized, QueryState, Refusal, decode_query, instant, text_filter};
use crate::evidence::ledger::{Entry, ledger};
use crate::evidence::pack::evidence_pack;
use crate::evidence::{Window, exchange_json, gather, refusal_json, summary_json};
use crate::read_model::time::rfc3339;

/// `GET /v1/exchanges/{id}`: one exchange, both payloads byte for byte.
pub(crate) async fn exchange(
    _: Authorized,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> Answer {
    let unknown = || {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "unknown_exchange",
            "no such exchange",
        )
    };
    let id = Uuid::parse_str(&path).map_err(|_| unknown())?;
    let stored = state
        .store
        .exchange(id)
        .await
        .map_err(|e| Refusal::unavailable(&e))?
        .ok_or_else(unknown)?;
    Ok(HttpResponse::Ok().json(exchange_json(&stored)))
}

/// Filters of `GET /v1/exchanges`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangesQuery {
    license: Option<String>,
    sandbox: Option<bool>,
    direction: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
    refused: Option<bool>,
}

/// The paging cursor: the last item's time (µs since the epoch) and id.
fn cursor_of(stored: &StoredExchange) -> String {
    let e = &stored.exchange;
    format!("{}_{}", e.at.unix_timestamp_nanos() / 1000, e.id)
}

fn parse_cursor(raw: &str) -> Option<(OffsetDateTime, Uuid)> {
    let (micros, id) = raw.split_once('_')?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(micros.parse::<i128>().ok()? * 1000).ok()?;
    Some((at, Uuid::parse_str(id).ok()?))
}

/// Reads the query string of `GET /v1/exchanges`; the error names the parameter.
fn exchanges_filter(query: &str) -> Result<ExchangeFilter, Refusal> {
    let raw: ExchangesQuery = decode_query(query)?;
    Ok(ExchangeFilter {
        license: text_filter("license", raw.license)?,
        sandbox: raw.sandbox,
        direction: raw
            .direction
            .map(|d| {
                Direction::parse(&d)
                    .ok_or_else(|| Refusal::invalid_query("direction must be in or out"))
            })
            .transpose()?,
        outcome: text_filter("outcome", raw.outcome)?,
        refusals: raw.refused,
        from: instant("from", raw.from.as_ref())?,
        to: instant("to", raw.to.as_ref())?,
        after: raw
            .cursor
            .map(|c| {
                parse_cursor(&c)
                    .ok_or_else(|| Refusal::invalid_query("cursor is not one this API returned"))
            })
            .transpose()?,
        limit: match raw.limit {
            None => 100,
            Some(limit @ 1..=1000) => limit,
            Some(_) => return Err(Refusal::invalid_query("limit must be between 1 and 1000")),
        },
        with_payloads: false,
    })
}

/// `GET /v1/exchanges`: exchanges oldest first, refused ones included, by the license their body
/// names when it can be read; paged with `next_cursor`.
pub(crate) async fn exchanges(
    _: Authorized,
    req: HttpRequest,
    state: web::Data<QueryState>,
) -> Answer {
    let mut filter = exchanges_filter(req.query_string())?;
    let limit = filter.limit;
    filter.limit += 1;
    let found = state
        .store
        .exchanges(&filter)
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let more = found.len() as i64 > limit;
    let page = &found[..found.len().min(limit as usize)];
    let next = more.then(|| page.last().map(cursor_of)).flatten();
    Ok(HttpResponse::Ok().json(json!({
        "items": page.iter().map(summary_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// Query parameters of the ledger and the evidence pack.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowQuery {
    #[serde(default)]
    sandbox: bool,
    from: Option<String>,
    to: Option<String>,
}

/// Reads the sandbox flag and the window of the ledger and the evidence pack; the error names
/// the parameter.
pub(crate) fn window(query: &str) -> Result<Window, Refusal> {
    let raw: WindowQuery = decode_query(query)?;
    Ok(Window {
        sandbox: raw.sandbox,
        from: instant("from", raw.from.as_ref())?,
        to: instant("to", raw.to.as_ref())?,
    })
}

/// `GET /v1/licenses/{code}/ledger[?sandbox=true][&from=&to=]`.
pub(crate) async fn license_ledger(
    _: Authorized,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> Answer {
    let code = path.into_inner();
    let window = window(req.query_string())?;
    let evidence = gather(&state.store, &code, &window)
        .await
        .map_err(|e| Refusal::of_gathering(&e))?;
    Ok(HttpResponse::Ok().json(json!({
        "license": code,
        "sandbox": window.sandbox,
        "from": rfc3339(window.from),
        "to": rfc3339(window.to),
        "entries": ledger(&evidence).iter().map(Entry::to_json).collect::<Vec<_>>(),
        "exchanges_truncated": evidence.exchanges_truncated(),
        "refusals": evidence.refusals.iter().map(refusal_json).collect::<Vec<_>>(),
        "refusals_truncated": evidence.refusals_truncated(),
    })))
}

/// `GET /v1/licenses/{code}/evidence[?sandbox=true][&from=&to=]`: the dispute evidence pack.
pub(crate) async fn license_evidence(
    _: Authorized,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> Answer {
    let window = window(req.query_string())?;
    pack_download(&state, &path, &window).await
}

/// The evidence pack as a download (the query API and the console).
pub(crate) async fn pack_download(state: &QueryState, code: &str, window: &Window) -> Answer {
    let zip = evidence_pack(&state.store, code, window, state.verifier.as_ref())
        .await
        .map_err(|e| Refusal::of_gathering(&e))?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"evidence-{code}.zip\""),
        ))
        .body(zip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let stored = StoredExchange {
            exchange: licensing_store::Exchange {
                id: Uuid::new_v4(),
                at: OffsetDateTime::from_unix_timestamp_nanos(1_790_000_000_123_456_000).unwrap(),
                direction: Direction::In,
                license: None,
                sandbox: false,
                correlation_id: None,
                message_id: None,
                outcome: "000001".into(),
                request: Vec::new(),
                request_size: 0,
                request_meta: json!({}),
                response: None,
                response_meta: json!({}),
                answered_at: None,
                decision: None,
            },
            request_sha256: Vec::new(),
            response_sha256: None,
        };
        let cursor = cursor_of(&stored);
        assert_eq!(
            parse_cursor(&cursor),
            Some((stored.exchange.at, stored.exchange.id))
        );
        let error = exchanges_filter("cursor=nope").unwrap_err();
        assert!(error.message.contains("cursor"), "{error}");
        let error = exchanges_filter("direction=sideways").unwrap_err();
        assert!(error.message.contains("direction"), "{error}");
        assert!(exchanges_filter("bogus=1").is_err());
        let ok = exchanges_filter("license=PL1&direction=in&outcome=000001&limit=5").unwrap();
        assert_eq!(
            (ok.license.as_deref(), ok.direction, ok.limit),
            (Some("PL1"), Some(Direction::In), 5)
        );
    }
}
