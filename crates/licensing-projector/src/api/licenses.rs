//! The query API (bearer tokens): one license's view, its full history, its state at a past instant.

use actix_web::{HttpRequest, HttpResponse, web};
use licensing_store::{RecordedEvent, Store};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::{Answer, Authorized, QueryState, Refusal, decode_query, instant, ok, text_filter};
use crate::read_model::time::rfc3339;
use crate::read_model::{ReadModelError, event_json};

/// The events of license `code` (of its sandbox twin with `sandbox`): 404 when there are none,
/// or when `code` cannot be a license code at all.
pub(crate) async fn license_events(
    store: &Store,
    code: &str,
    sandbox: bool,
) -> Result<Vec<RecordedEvent>, Refusal> {
    let Ok(license) = licensing_domain::LicenseCode::parse(code) else {
        return Err(Refusal::unknown_license(code));
    };
    match store.load(&license.stream_name(sandbox)).await {
        Ok(events) if events.is_empty() => Err(Refusal::unknown_license(code)),
        Ok(events) => Ok(events),
        Err(e) => Err(Refusal::unavailable(&e)),
    }
}

const VIEW_COLUMNS: &str = "license, sandbox, status, product_id, order_id, expire_at, expire_raw, frozen_since, \
    expected_release, activation_status, activation_error, last_usage_day, last_heartbeat_day, market_status, drift, version, updated_at, \
    coalesce(access_mode, 'pending'), access_until, data_kept_until";

fn view_json(r: &licensing_store::Row) -> Value {
    json!({
        "license": r.get::<_, String>(0),
        "sandbox": r.get::<_, bool>(1),
        "status": r.get::<_, String>(2),
        "product_id": r.get::<_, Option<String>>(3),
        "order_id": r.get::<_, Option<String>>(4),
        "expire_at": rfc3339(r.get(5)),
        "expire_time": r.get::<_, Option<String>>(6),
        "frozen_since": rfc3339(r.get(7)),
        "expected_release": rfc3339(r.get(8)),
        "activation": {"status": r.get::<_, String>(9), "last_error": r.get::<_, Option<String>>(10)},
        "last_usage_day": r.get::<_, Option<i64>>(11),
        "last_heartbeat_day": r.get::<_, Option<i64>>(12),
        "market_status": r.get::<_, Option<String>>(13),
        "drift": r.get::<_, bool>(14),
        "version": r.get::<_, i64>(15),
        "updated_at": rfc3339(r.get(16)),
        "access_mode": r.get::<_, String>(17),
        "access_until": rfc3339(r.get(18)),
        "data_kept_until": rfc3339(r.get(19)),
    })
}

/// Filters of `GET /v1/licenses`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// A code prefix, an order id or a product id.
    q: Option<String>,
    status: Option<String>,
    access_mode: Option<String>,
    product: Option<String>,
    order: Option<String>,
    #[serde(default)]
    sandbox: bool,
    expire_after: Option<String>,
    expire_before: Option<String>,
    /// Licenses whose last acknowledged heartbeat is before this day (or that have none).
    heartbeat_before_day: Option<i64>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The order of a license list: the API's is by code; the console also sorts by expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Sort {
    /// By license code (the default).
    #[default]
    License,
    /// By expiry, soonest first, licenses without one last; then by code.
    ExpireAt,
}

/// Where the next page of `GET /v1/licenses` starts: after this row of the chosen order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cursor {
    License(String),
    /// The last row's expiry (µs since the epoch; `None`: it had none) and code.
    Expiry(Option<i64>, String),
}

impl Cursor {
    /// Reads a `next_cursor` of a list in `sort` order; the error says it is not one.
    pub(crate) fn parse(sort: Sort, raw: &str) -> Result<Self, Refusal> {
        text_filter("cursor", Some(raw.to_owned()))?;
        match sort {
            Sort::License => Ok(Self::License(raw.to_owned())),
            Sort::ExpireAt => {
                let bad = || Refusal::invalid_query("cursor is not one this list returned");
                let (at, license) = raw.split_once('_').ok_or_else(bad)?;
                let at = match at {
                    "none" => None,
                    micros => Some(micros.parse::<i64>().map_err(|_| bad())?),
                };
                Ok(Self::Expiry(at, license.to_owned()))
            }
        }
    }

    fn of(sort: Sort, item: &Value) -> Option<String> {
        let license = item["license"].as_str()?;
        Some(match sort {
            Sort::License => license.to_owned(),
            Sort::ExpireAt => {
                let at = item["expire_at"]
                    .as_str()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                    .map_or_else(
                        || "none".to_owned(),
                        |t| (t.unix_timestamp_nanos() / 1000).to_string(),
                    );
                format!("{at}_{license}")
            }
        })
    }
}

/// The checked filters of `GET /v1/licenses`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListFilter {
    pub(crate) q: Option<String>,
    pub(crate) sandbox: bool,
    pub(crate) status: Option<String>,
    pub(crate) access_mode: Option<String>,
    pub(crate) product: Option<String>,
    pub(crate) order: Option<String>,
    pub(crate) expire_after: Option<OffsetDateTime>,
    pub(crate) expire_before: Option<OffsetDateTime>,
    pub(crate) heartbeat_before_day: Option<i64>,
    pub(crate) sort: Sort,
    /// 1 to 1000.
    pub(crate) limit: i64,
    pub(crate) cursor: Option<Cursor>,
}

/// Reads the query string of `GET /v1/licenses`; the error says which parameter is wrong.
pub(crate) fn list_filter(query: &str) -> Result<ListFilter, Refusal> {
    let raw: ListQuery = decode_query(query)?;
    Ok(ListFilter {
        q: text_filter("q", raw.q)?
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty()),
        sandbox: raw.sandbox,
        status: text_filter("status", raw.status)?,
        access_mode: match raw.access_mode {
            Some(mode) if licensing_domain::AccessMode::parse(&mode).is_none() => {
                return Err(Refusal::invalid_query(
                    "access_mode must be pending, active, expired, frozen or released",
                ));
            }
            mode => mode,
        },
        product: text_filter("product", raw.product)?,
        order: text_filter("order", raw.order)?,
        expire_after: instant("expire_after", raw.expire_after.as_ref())?,
        expire_before: instant("expire_before", raw.expire_before.as_ref())?,
        heartbeat_before_day: match raw.heartbeat_before_day {
            Some(day) if !(0..=1_000_000).contains(&day) => {
                return Err(Refusal::invalid_query(
                    "heartbeat_before_day must be a day number from 0 to 1000000",
                ));
            }
            day => day,
        },
        sort: Sort::License,
        limit: match raw.limit {
            None => 100,
            Some(limit @ 1..=1000) => limit,
            Some(_) => {
                return Err(Refusal::invalid_query("limit must be between 1 and 1000"));
            }
        },
        cursor: text_filter("cursor", raw.cursor)?.map(Cursor::License),
    })
}

/// `LIKE` pattern for values starting with `prefix`.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// One page of licenses matching `filter`: `{"items": [...], "next_cursor": ...}` (the query
/// API's body, which the console renders).
pub(crate) async fn list_page(store: &Store, filter: &ListFilter) -> Result<Value, Refusal> {
    let limit = filter.limit;
    let client = store.client().await.map_err(|e| Refusal::unavailable(&e))?;
    let (after, order) = match filter.sort {
        // $12 (the expiry of a cursor) is always null here, but every parameter must appear.
        Sort::License => (
            "($8::text IS NULL OR license > $8) AND $12::timestamptz IS NULL",
            "license",
        ),
        Sort::ExpireAt => (
            "($8::text IS NULL OR CASE WHEN $12::timestamptz IS NULL
                  THEN expire_at IS NULL AND license > $8
                  ELSE expire_at > $12 OR (expire_at = $12 AND license > $8) OR expire_at IS NULL END)",
            "expire_at NULLS LAST, license",
        ),
    };
    let filters = format!(
        "sandbox = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR product_id = $3)
            AND ($4::text IS NULL OR order_id = $4) AND ($5::timestamptz IS NULL OR expire_at >= $5)
            AND ($6::timestamptz IS NULL OR expire_at < $6)
            AND ($7::bigint IS NULL OR last_heartbeat_day IS NULL OR last_heartbeat_day < $7)
            AND {after}
            AND ($10::text IS NULL OR coalesce(access_mode, 'pending') = $10)"
    );
    // A search is three searches, each along its own index in the list's order (a code prefix, an
    // order id, a product), merged: one query with an OR would read the whole view when few rows
    // match the other filters.
    let sql = if filter.q.is_some() {
        let branch = |matches: &str| {
            format!(
                "(SELECT {VIEW_COLUMNS} FROM license_views WHERE {filters} AND {matches} ORDER BY {order} LIMIT $9)"
            )
        };
        format!(
            "SELECT * FROM ({} UNION {} UNION {}) hits ORDER BY {order} LIMIT $9",
            branch("license LIKE $13"),
            branch("order_id = $11"),
            branch("product_id = $11 AND $13::text IS NOT NULL"),
        )
    } else {
        format!(
            "SELECT {VIEW_COLUMNS} FROM license_views WHERE {filters}
                AND $11::text IS NULL AND $13::text IS NULL ORDER BY {order} LIMIT $9"
        )
    };
    let (cursor_license, cursor_at) = match &filter.cursor {
        None => (None, None),
        Some(Cursor::License(license)) => (Some(license.clone()), None),
        Some(Cursor::Expiry(at, license)) => (
            Some(license.clone()),
            at.and_then(|micros| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok()
            }),
        ),
    };
    let pattern = filter.q.as_deref().map(prefix_pattern);
    let rows = client
        .query(
            &sql,
            &[
                &filter.sandbox,
                &filter.status,
                &filter.product,
                &filter.order,
                &filter.expire_after,
                &filter.expire_before,
                &filter.heartbeat_before_day,
                &cursor_license,
                &(limit + 1),
                &filter.access_mode,
                &filter.q,
                &cursor_at,
                &pattern,
            ],
        )
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    let more = rows.len() as i64 > limit;
    let items: Vec<Value> = rows.iter().take(limit as usize).map(view_json).collect();
    let next = if more {
        items.last().and_then(|i| Cursor::of(filter.sort, i))
    } else {
        None
    };
    Ok(json!({"items": items, "next_cursor": next}))
}

/// `GET /v1/licenses`: filtered, ordered by license code, paged with an opaque cursor.
pub(crate) async fn list(_: Authorized, req: HttpRequest, state: web::Data<QueryState>) -> Answer {
    let filter = list_filter(req.query_string())?;
    ok(&list_page(&state.store, &filter).await?)
}

/// Query parameters of `GET /v1/licenses/{code}`.
#[derive(Debug, Deserialize)]
pub(crate) struct LicenseQuery {
    /// Test traffic's sandbox license instead of the real one.
    #[serde(default)]
    sandbox: bool,
    /// The state at this instant (RFC 3339), from the events recorded until then.
    #[serde(default)]
    as_of: Option<String>,
}

/// Reads the query string of `GET /v1/licenses/{code}` and `…/events`: the sandbox flag and the
/// optional instant.
pub(crate) fn license_query(query: &str) -> Result<(bool, Option<OffsetDateTime>), Refusal> {
    let raw: LicenseQuery = decode_query(query)?;
    let at = instant("as_of", raw.as_of.as_ref())?;
    Ok((raw.sandbox, at))
}

/// One license's view (`GET /v1/licenses/{code}`'s body), or its state at `at`.
pub(crate) async fn license_body(
    store: &Store,
    code: &str,
    sandbox: bool,
    at: Option<OffsetDateTime>,
) -> Result<Value, Refusal> {
    if licensing_domain::LicenseCode::parse(code).is_err() {
        return Err(Refusal::unknown_license(code));
    }
    if let Some(at) = at {
        return as_of(store, code, sandbox, at).await;
    }
    let client = store.client().await.map_err(|e| Refusal::unavailable(&e))?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {VIEW_COLUMNS} FROM license_views WHERE license = $1 AND sandbox = $2"
            ),
            &[&code, &sandbox],
        )
        .await
        .map_err(|e| Refusal::unavailable(&e))?;
    row.map(|r| view_json(&r))
        .ok_or_else(|| Refusal::unknown_license(code))
}

/// `GET /v1/licenses/{code}`.
pub(crate) async fn license(
    _: Authorized,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> Answer {
    let (sandbox, at) = license_query(req.query_string())?;
    ok(&license_body(&state.store, &path, sandbox, at).await?)
}

async fn as_of(
    store: &Store,
    code: &str,
    sandbox: bool,
    at: OffsetDateTime,
) -> Result<Value, Refusal> {
    let Ok(license) = licensing_domain::LicenseCode::parse(code) else {
        return Err(Refusal::unknown_license(code));
    };
    let stream = license.stream_name(sandbox);
    // The newest snapshot usable then, and only the events after it up to the instant, folded as
    // they arrive (ADR 0022).
    let client = store.client().await.map_err(|e| Refusal::unavailable(&e))?;
    let state = crate::read_model::snapshots::state_as_of(&**client, &stream, at)
        .await
        .map_err(|e| match e {
            ReadModelError::Store(e) => Refusal::unavailable(&e),
            e @ ReadModelError::Undecodable { .. } => Refusal::undecodable(&e),
        })?;
    if state.version == 0 {
        return Err(Refusal::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "unknown_license",
            format!("no license {code} at that time"),
        ));
    }
    Ok(json!({
        "license": code,
        "sandbox": sandbox,
        "as_of": at.format(&Rfc3339).ok(),
        "status": state.status().as_str(),
        "expire_time": state.expire.as_ref().map(|e| e.raw.clone()),
        "access_mode": state.access().mode.as_str(),
        "version": state.version,
    }))
}

/// `GET /v1/licenses/{code}/events`: the full history with metadata.
pub(crate) async fn events(
    _: Authorized,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> Answer {
    let (sandbox, _) = license_query(req.query_string())?;
    let events = license_events(&state.store, &path, sandbox).await?;
    Ok(HttpResponse::Ok().json(events.iter().map(event_json).collect::<Vec<_>>()))
}

#[cfg(test)]
mod fuzz {
    //! The query parameters under arbitrary input: never a panic; either a clear error or filters
    //! that are safe to send to PostgreSQL. `LICENSING_FUZZ_CASES` sets the number of cases
    //! (`scripts/fuzz` runs a million).

    use super::*;
    use proptest::prelude::*;

    fn cases() -> u32 {
        std::env::var("LICENSING_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2000)
    }

    /// Query strings made of the real parameter names, their kinds of values, and noise.
    fn query_string() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("status"),
            Just("access_mode"),
            Just("product"),
            Just("order"),
            Just("sandbox"),
            Just("expire_after"),
            Just("expire_before"),
            Just("heartbeat_before_day"),
            Just("limit"),
            Just("cursor"),
            Just("q"),
            Just("as_of"),
            Just("bogus"),
        ];
        let value = prop_oneof![
            "[a-zA-Z0-9_-]{0,12}",
            Just("true".to_owned()),
            Just("2026-01-01T00:00:00Z".to_owned()),
            "-?[0-9]{1,20}",
            "(%[0-9A-Fa-f]{2}|[^&=#]){0,16}",
            ".{0,300}",
        ];
        proptest::collection::vec((name, value), 0..6).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        })
    }

    fn safe(text: &Option<String>) -> bool {
        text.as_ref()
            .is_none_or(|t| t.chars().count() <= 256 && !t.chars().any(char::is_control))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn list_filters_are_checked_or_refused(query in query_string()) {
            if let Ok(filter) = list_filter(&query) {
                prop_assert!((1..=1000).contains(&filter.limit));
                prop_assert!(safe(&filter.status) && safe(&filter.product) && safe(&filter.order) && safe(&filter.q));
            }
        }

        #[test]
        fn raw_bytes_never_panic(query in ".{0,200}") {
            let _ = list_filter(&query);
            let _ = license_query(&query);
        }
    }

    #[test]
    fn a_nul_byte_in_a_filter_is_a_clear_error() {
        let error = list_filter("product=a%00b").unwrap_err();
        assert_eq!(error.code, "invalid_query");
        assert!(error.message.contains("product"), "{error}");
    }
}
