//! The query API (bearer tokens): one license's view, its full history, its state at a past instant.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use licensing_store::{RecordedEvent, Store};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::views::replay;

/// Shared by the query handlers.
#[derive(Debug)]
pub(crate) struct QueryState {
    /// The store.
    pub(crate) store: Store,
    /// Accepted bearer tokens.
    pub(crate) tokens: Vec<String>,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"code": code, "message": message.into()}))
}

/// 401 unless the request carries one of the API tokens.
fn unauthorized(req: &HttpRequest, state: &QueryState) -> Option<HttpResponse> {
    (!licensing_runtime::bearer_authorized(req, &state.tokens)).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    })
}

/// The events of license `code` (of its sandbox twin with `sandbox`), or the error to answer: 404
/// when there are none, or when `code` cannot be a license code at all.
async fn license_events(
    store: &Store,
    code: &str,
    sandbox: bool,
) -> Result<Vec<RecordedEvent>, HttpResponse> {
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "unknown_license",
            format!("no license {code}"),
        )
    };
    let Ok(license) = licensing_domain::LicenseCode::parse(code) else {
        return Err(unknown());
    };
    match store.load(&license.stream_name(sandbox)).await {
        Ok(events) if events.is_empty() => Err(unknown()),
        Ok(events) => Ok(events),
        Err(e) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
    }
}

fn rfc3339(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

const VIEW_COLUMNS: &str = "license, sandbox, status, product_id, order_id, expire_at, expire_raw, frozen_since, \
    expected_release, activation_status, activation_error, last_usage_day, last_heartbeat_day, market_status, drift, version, updated_at";

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
    })
}

/// Filters of `GET /v1/licenses`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
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

/// An optional RFC 3339 query parameter; the error names it.
fn instant(name: &str, raw: Option<&String>) -> Result<Option<OffsetDateTime>, String> {
    raw.map(|r| OffsetDateTime::parse(r, &Rfc3339).map_err(|_| format!("{name} must be RFC 3339")))
        .transpose()
}

/// `GET /v1/licenses`: filtered, ordered by license code, paged with an opaque cursor.
pub(crate) async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &state) {
        return refused;
    }
    let (after, before) = match (
        instant("expire_after", query.expire_after.as_ref()),
        instant("expire_before", query.expire_before.as_ref()),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(message), _) | (_, Err(message)) => {
            return error(StatusCode::BAD_REQUEST, "invalid_query", message);
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let client = match state.store.client().await {
        Ok(client) => client,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            );
        }
    };
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM license_views
          WHERE sandbox = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR product_id = $3)
            AND ($4::text IS NULL OR order_id = $4) AND ($5::timestamptz IS NULL OR expire_at >= $5)
            AND ($6::timestamptz IS NULL OR expire_at < $6)
            AND ($7::bigint IS NULL OR last_heartbeat_day IS NULL OR last_heartbeat_day < $7)
            AND ($8::text IS NULL OR license > $8)
          ORDER BY license LIMIT $9"
    );
    let rows = client
        .query(
            &sql,
            &[
                &query.sandbox,
                &query.status,
                &query.product,
                &query.order,
                &after,
                &before,
                &query.heartbeat_before_day,
                &query.cursor,
                &(limit + 1),
            ],
        )
        .await;
    match rows {
        Ok(rows) => {
            let more = rows.len() as i64 > limit;
            let items: Vec<Value> = rows.iter().take(limit as usize).map(view_json).collect();
            let next = if more {
                items
                    .last()
                    .and_then(|i| i["license"].as_str())
                    .map(str::to_owned)
            } else {
                None
            };
            HttpResponse::Ok().json(json!({"items": items, "next_cursor": next}))
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    }
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

/// `GET /v1/licenses/{code}`.
pub(crate) async fn license(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<LicenseQuery>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &state) {
        return refused;
    }
    let code = path.into_inner();
    if let Some(raw) = &query.as_of {
        let Ok(at) = OffsetDateTime::parse(raw, &Rfc3339) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_as_of",
                "as_of must be an RFC 3339 instant",
            );
        };
        return as_of(&state.store, &code, query.sandbox, at).await;
    }
    let client = match state.store.client().await {
        Ok(client) => client,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            );
        }
    };
    let row = client
        .query_opt(
            &format!(
                "SELECT {VIEW_COLUMNS} FROM license_views WHERE license = $1 AND sandbox = $2"
            ),
            &[&code, &query.sandbox],
        )
        .await;
    match row {
        Ok(Some(r)) => HttpResponse::Ok().json(view_json(&r)),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown_license",
            format!("no license {code}"),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    }
}

async fn as_of(store: &Store, code: &str, sandbox: bool, at: OffsetDateTime) -> HttpResponse {
    let events = match license_events(store, code, sandbox).await {
        Ok(events) => events,
        Err(answer) => return answer,
    };
    let stream = events[0].stream_id.clone();
    let until: Vec<_> = events.into_iter().filter(|e| e.recorded_at <= at).collect();
    if until.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_license",
            format!("no license {code} at that time"),
        );
    }
    match replay(&stream, &until) {
        Ok(state) => HttpResponse::Ok().json(json!({
            "license": code,
            "sandbox": sandbox,
            "as_of": at.format(&Rfc3339).ok(),
            "status": state.status().as_str(),
            "expire_time": state.expire.as_ref().map(|e| e.raw.clone()),
            "version": state.version,
        })),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "undecodable", e),
    }
}

/// `GET /v1/licenses/{code}/events`: the full history with metadata.
pub(crate) async fn events(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<LicenseQuery>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &state) {
        return refused;
    }
    let code = path.into_inner();
    match license_events(&state.store, &code, query.sandbox).await {
        Err(answer) => answer,
        Ok(events) => HttpResponse::Ok().json(
            events
                .iter()
                .map(|e| {
                    json!({
                        "event_id": e.event_id,
                        "event_type": e.event_type,
                        "stream_version": e.stream_version,
                        "global_position": e.global_position,
                        "schema_version": e.schema_version,
                        "recorded_at": rfc3339(Some(e.recorded_at)),
                        "metadata": e.metadata,
                        "payload": e.payload,
                    })
                })
                .collect::<Vec<_>>(),
        ),
    }
}
