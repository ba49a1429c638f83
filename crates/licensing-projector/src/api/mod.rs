//! The query API (bearer tokens): its shared state, its one error type, and one module per
//! resource.

pub(crate) mod dead_letters;
pub(crate) mod entitlements;
pub(crate) mod exchanges;
pub(crate) mod heartbeats;
pub(crate) mod licenses;
pub(crate) mod probe;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use licensing_store::Store;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::evidence::GatherError;

/// Shared by the query handlers.
#[derive(Debug)]
pub(crate) struct QueryState {
    /// The store.
    pub(crate) store: Store,
    /// Accepted bearer tokens.
    pub(crate) tokens: Vec<licensing_runtime::ApiToken>,
    /// The callback keys, to verify callbacks again in evidence packs (none when not configured).
    pub(crate) verifier: Option<koogallery::signature::Verifier>,
    /// The entitlement signing keys (none when not configured).
    pub(crate) entitlements: Option<licensing_entitlement::Keyring>,
    /// An entitlement's lifetime in seconds.
    pub(crate) entitlement_ttl: i64,
    /// The clock.
    pub(crate) clock: licensing_runtime::Clock,
    /// Zone of the heartbeat's market day.
    pub(crate) day_zone: time::UtcOffset,
    /// The probe watchdog's settings, when configured.
    pub(crate) probe: Option<crate::config::probe::ProbeSettings>,
    /// When the watchdog runs, in the market zone.
    pub(crate) probe_schedule: crate::config::probe::ProbeSchedule,
    /// The broker, for re-drives.
    pub(crate) bus: licensing_bus::BusConfig,
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"code": code, "message": message.into()}))
}

/// 503 for a store that cannot answer: the cause goes to the log, never to the caller.
pub(crate) fn unavailable(cause: &dyn std::fmt::Display) -> HttpResponse {
    Refusal::unavailable(cause).answer()
}

/// A query that cannot be answered: the API sends it as JSON, the console as a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 for a wrong query parameter.
    pub(crate) fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// 404 for a license that does not exist (or cannot be a license code).
    pub(crate) fn unknown_license(code: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_license",
            format!("no license {code}"),
        )
    }

    /// 404 for a dead letter that does not exist (or cannot be an id).
    pub(crate) fn unknown_dead_letter(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_dead_letter",
            format!("no dead letter {id}"),
        )
    }

    /// 503 for a store that cannot answer: the cause goes to the log, never to the caller.
    pub(crate) fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "query failed in the store");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store cannot answer right now; retry",
        )
    }

    /// The API's JSON answer.
    pub(crate) fn answer(&self) -> HttpResponse {
        error(self.status, self.code, self.message.clone())
    }
}

/// The API's answer to a computed body: 200 with it, or the refusal.
pub(crate) fn respond(body: Result<Value, Refusal>) -> HttpResponse {
    match body {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(refusal) => refusal.answer(),
    }
}

/// A text filter: at most 256 characters, no control characters (a NUL would reach PostgreSQL).
pub(crate) fn text_filter(name: &str, raw: Option<String>) -> Result<Option<String>, String> {
    match raw {
        Some(value) if value.chars().count() > 256 || value.chars().any(char::is_control) => Err(
            format!("{name} must be at most 256 characters without control characters"),
        ),
        other => Ok(other),
    }
}

/// Query parameters decoded by serde; an error names the parameter when serde does.
pub(crate) fn decode_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, String> {
    web::Query::<T>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|e| e.to_string())
}

/// 401 unless the request carries one of the API tokens, 403 when that token may not use the
/// query API.
pub(crate) fn unauthorized(req: &HttpRequest, state: &QueryState) -> Option<HttpResponse> {
    authorized(req, state)
        .err()
        .map(|refusal| token_refused(&refusal))
}

/// The API token of a request to the query API, or why it is refused.
pub(crate) fn authorized<'a>(
    req: &HttpRequest,
    state: &'a QueryState,
) -> Result<&'a licensing_runtime::ApiToken, licensing_runtime::TokenRefused> {
    licensing_runtime::authorized(req, &state.tokens, licensing_runtime::Scope::Query)
}

/// The answer refusing a request's token on the query API.
pub(crate) fn token_refused(refusal: &licensing_runtime::TokenRefused) -> HttpResponse {
    let (status, code, message) = refusal.answer(licensing_runtime::Scope::Query);
    error(status, code, message)
}

/// An optional RFC 3339 query parameter; the error names it.
pub(crate) fn instant(name: &str, raw: Option<&String>) -> Result<Option<OffsetDateTime>, String> {
    raw.map(|r| OffsetDateTime::parse(r, &Rfc3339).map_err(|_| format!("{name} must be RFC 3339")))
        .transpose()
}

impl Refusal {
    /// What to answer when a license's evidence cannot be gathered: 404 for an unknown license,
    /// 503 for a store that cannot answer.
    pub(crate) fn of_gathering(error: &GatherError) -> Self {
        match error {
            GatherError::UnknownLicense(code) => Self::unknown_license(code),
            GatherError::Unavailable(e) => Self::unavailable(e),
        }
    }
}
