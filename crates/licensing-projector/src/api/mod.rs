//! The query API (bearer tokens): its shared state, its one error type, and one module per
//! resource.

pub(crate) mod dead_letters;
pub(crate) mod entitlements;
pub(crate) mod exchanges;
pub(crate) mod heartbeats;
pub(crate) mod licenses;
pub(crate) mod probe;

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use licensing_store::Store;
use serde_json::Value;
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

/// A query that cannot be answered: the API sends it as JSON (`{"code", "message"}`, the shape
/// every HTTP API of the backend uses), the console as a page. The handlers' one error type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// A field the JSON answer carries beside the code and the message.
    pub(crate) detail: Option<(&'static str, Value)>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// The same refusal with `value` under `name` in its JSON answer.
    pub(crate) fn with(mut self, name: &'static str, value: Value) -> Self {
        self.detail = Some((name, value));
        self
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

    /// 500 for a stored event this build cannot read.
    pub(crate) fn undecodable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "a stored event cannot be read");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "undecodable",
            cause.to_string(),
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
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        licensing_runtime::error_response(
            self.status,
            self.code,
            &self.message,
            self.detail.as_ref().map(|(name, value)| (*name, value)),
        )
    }
}

impl From<licensing_runtime::TokenRefused> for Refusal {
    fn from(refused: licensing_runtime::TokenRefused) -> Self {
        let (status, code, message) = refused.answer(licensing_runtime::Scope::Query);
        Self::new(status, code, message)
    }
}

/// What a query handler answers: 200 with its body, or the refusal.
pub(crate) type Answer = Result<HttpResponse, Refusal>;

/// 200 with `body` as JSON.
pub(crate) fn ok(body: &Value) -> Answer {
    Ok(HttpResponse::Ok().json(body))
}

/// A request to the query API carrying one of the API tokens that may use it: the name of that
/// token (the actor of a re-drive). Refused with 401 without a known token, 403 for a token
/// without the query scope, before the handler runs.
#[derive(Debug, Clone)]
pub(crate) struct Authorized {
    /// The token's name.
    pub(crate) actor: String,
}

impl FromRequest for Authorized {
    type Error = Refusal;
    type Future = std::future::Ready<Result<Self, Refusal>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let tokens = req
            .app_data::<web::Data<QueryState>>()
            .map_or(&[][..], |state| &state.tokens[..]);
        std::future::ready(
            licensing_runtime::authorized(req, tokens, licensing_runtime::Scope::Query)
                .map(|token| Self {
                    actor: token.name.clone(),
                })
                .map_err(Refusal::from),
        )
    }
}

/// A text filter: at most 256 characters, no control characters (a NUL would reach PostgreSQL).
pub(crate) fn text_filter(name: &str, raw: Option<String>) -> Result<Option<String>, Refusal> {
    match raw {
        Some(value) if value.chars().count() > 256 || value.chars().any(char::is_control) => {
            Err(Refusal::invalid_query(format!(
                "{name} must be at most 256 characters without control characters"
            )))
        }
        other => Ok(other),
    }
}

/// Query parameters decoded by serde; an error names the parameter when serde does.
pub(crate) fn decode_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, Refusal> {
    web::Query::<T>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|e| Refusal::invalid_query(e.to_string()))
}

/// An optional RFC 3339 query parameter; the error names it.
pub(crate) fn instant(name: &str, raw: Option<&String>) -> Result<Option<OffsetDateTime>, Refusal> {
    raw.map(|r| {
        OffsetDateTime::parse(r, &Rfc3339)
            .map_err(|_| Refusal::invalid_query(format!("{name} must be RFC 3339")))
    })
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
