//! The internal API for the seller's own services (bearer tokens): activate a code, report usage.
//! Errors are JSON `{"code", "message"}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use licensing_domain::LicenseCode;
use licensing_messages::{CommandBody, CommandEnvelope, ENVELOPE_VERSION, LicenseSummary, Reply};
use licensing_runtime::trace::{Span, SpanKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;

use crate::dispatch::{Dispatched, dispatch, traceparent};
use crate::{State, now_millis, request_id};

/// An internal API error, answered as `{"code", "message"}` with its status: the handlers' one
/// error type.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    /// A usage report refused for a license that exists still gets its signed entitlement.
    entitlement: Option<serde_json::Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            entitlement: None,
        }
    }

    fn invalid_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }
}

impl std::fmt::Display for ApiError {
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

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        licensing_runtime::error_response(
            self.status,
            &self.code,
            &self.message,
            self.entitlement.as_ref().map(|e| ("entitlement", e)),
        )
    }
}

/// The message id of a request: derived from its `Idempotency-Key` under the token that sent it
/// (so a repeat is recognised by the processor and gets the first answer, while the same key from
/// another token is another request, never answered with the first token's reply), else random;
/// `None` for an unusable key.
fn message_id(req: &HttpRequest, actor: &str, route: &str, license: &str) -> Option<uuid::Uuid> {
    match req.headers().get("Idempotency-Key") {
        None => Some(uuid::Uuid::new_v4()),
        Some(key) => {
            let key = key
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)?;
            let digest = Sha256::digest(
                format!("{actor}\u{1f}{route}\u{1f}{license}\u{1f}{key}").as_bytes(),
            );
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            Some(uuid::Uuid::new_v8(bytes))
        }
    }
}

/// The name of the API token a request was authorised by: the actor of what it asks.
#[derive(Debug, Clone)]
struct Actor(String);

/// Refuses a request without a valid bearer token before its body is read (the routes'
/// middleware); an accepted request carries its token's name to the handler.
pub(crate) async fn require_token(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let scope = licensing_runtime::Scope::Internal;
    let actor = match req.app_data::<web::Data<State>>() {
        Some(state) => {
            licensing_runtime::authorized(req.request(), &state.config.api_tokens, scope)
                .map(|token| token.name.clone())
        }
        None => Err(licensing_runtime::TokenRefused::Unknown),
    };
    match actor {
        Ok(actor) => {
            actix_web::HttpMessage::extensions_mut(&req).insert(Actor(actor));
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refusal) => {
            let (status, code, message) = refusal.answer(scope);
            let refused = ApiError::new(status, code, message).error_response();
            Ok(req.into_response(refused).map_into_right_body())
        }
    }
}

/// The request body's SHA-256: an `Idempotency-Key` reused with another body is refused.
fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn license_url(license: &str) -> String {
    format!("/v1/licenses/{license}")
}

async fn submit(
    req: &HttpRequest,
    state: &State,
    route: &'static str,
    license: String,
    command: CommandBody,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let mut span = Span::start("internal request", SpanKind::Server, traceparent(req));
    span.set("http.route", route);
    span.set("license", &license);
    let response = submit_inner(
        req,
        state,
        route,
        &license,
        command,
        body_hash(body),
        span.traceparent(),
    )
    .await;
    let status = match &response {
        Ok(response) => response.status(),
        Err(e) => e.status,
    };
    span.set("http.status_code", status.as_u16());
    state
        .metrics
        .internal_requests
        .get_or_create(&vec![
            ("route", route.to_owned()),
            ("status", status.as_u16().to_string()),
        ])
        .inc();
    response
}

async fn submit_inner(
    req: &HttpRequest,
    state: &State,
    route: &'static str,
    license: &str,
    command: CommandBody,
    request_hash: String,
    trace: Option<String>,
) -> Result<HttpResponse, ApiError> {
    LicenseCode::parse(license)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_license", e.to_string()))?;
    let actor = actix_web::HttpMessage::extensions(req)
        .get::<Actor>()
        .map(|a| a.0.clone());
    let message_id =
        message_id(req, actor.as_deref().unwrap_or(""), route, license).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible characters",
            )
        })?;
    let envelope = CommandEnvelope {
        v: ENVELOPE_VERSION,
        message_id,
        correlation_id: request_id(req),
        received_at_ms: now_millis(),
        source: "internal-api".to_owned(),
        actor,
        request_hash: Some(request_hash),
        command,
        trace_parent: trace,
    };
    match dispatch(
        &state.connection,
        &state.metrics,
        &envelope,
        state.config.internal_wait,
    )
    .await
    {
        Dispatched::Replied(Reply::Applied { license: summary }) => {
            let entitlement = entitlement(state, route, Some(&summary));
            Ok(applied(route, summary, entitlement))
        }
        Dispatched::Replied(Reply::Rejected {
            code,
            message,
            license: summary,
        }) => {
            let status = match code.as_str() {
                "unknown_license" => StatusCode::NOT_FOUND,
                "released" | "not_activated" | "frozen" | "no_drift" => StatusCode::CONFLICT,
                "idempotency_key_reused" => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            let mut refused = ApiError::new(status, &code, message);
            refused.entitlement = entitlement(state, route, summary.as_ref());
            Err(refused)
        }
        Dispatched::Replied(Reply::Callback(_) | Reply::Recorded) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected reply",
        )),
        Dispatched::Pending => {
            state
                .metrics
                .reply_timeouts
                .get_or_create(&vec![("source", "internal-api".to_owned())])
                .inc();
            Ok(HttpResponse::Accepted()
                .insert_header(("Location", license_url(license)))
                .json(serde_json::json!({ "status": "processing", "license": license, "location": license_url(license) })))
        }
        Dispatched::Unavailable(reason) => {
            tracing::error!(%reason, "cannot hand the request over");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service cannot take commands right now; retry",
            ))
        }
    }
}

/// The signed entitlement a usage report's answer carries (D24): when keys are configured and the
/// license exists.
fn entitlement(
    state: &State,
    route: &str,
    summary: Option<&LicenseSummary>,
) -> Option<serde_json::Value> {
    let (keys, ttl) = state.config.entitlements.as_ref()?;
    let summary = summary.filter(|_| route == "usage")?;
    let seconds = |ms: Option<i64>| ms.map(|ms| ms.div_euclid(1000));
    let verdict = licensing_runtime::Verdict {
        mode: summary
            .access_mode
            .clone()
            .unwrap_or_else(|| "pending".to_owned()),
        until: seconds(summary.access_until_ms),
        data_kept_until: seconds(summary.data_kept_until_ms),
    };
    Some(licensing_runtime::entitlement_json(
        keys,
        &summary.license,
        &verdict,
        time::OffsetDateTime::now_utc(),
        *ttl,
    ))
}

/// 200 when the activation is settled (active, frozen), 202 while the marketplace is still to be
/// called; usage is always 200, with the signed entitlement when keys are configured.
fn applied(
    route: &str,
    summary: LicenseSummary,
    entitlement: Option<serde_json::Value>,
) -> HttpResponse {
    let settled = matches!(
        summary.status.as_str(),
        "active" | "frozen" | "released" | "activation_failed"
    );
    if route == "activation" && !settled {
        let location = license_url(&summary.license);
        return HttpResponse::Accepted()
            .insert_header(("Location", location.clone()))
            .json(serde_json::json!({ "license": summary, "location": location }));
    }
    let mut body = serde_json::json!({ "license": summary });
    if let Some(entitlement) = entitlement {
        body["entitlement"] = entitlement;
    }
    HttpResponse::Ok().json(body)
}

/// Body of an activation request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivationBody {
    /// Actual delivery time, UTC `yyyyMMddHHmmss`.
    #[serde(default)]
    pub(crate) real_effect_time: Option<String>,
}

/// `POST /v1/licenses/{code}/activation`.
pub(crate) async fn activation(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let license = path.into_inner();
    let parsed: ActivationBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActivationBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_body(e.to_string()))?
    };
    if let Some(raw) = &parsed.real_effect_time {
        koogallery::market_time::parse_market_time(raw, time::UtcOffset::UTC)
            .map_err(|e| ApiError::invalid_body(format!("real_effect_time: {e}")))?;
    }
    let command = CommandBody::RequestActivation {
        license: license.clone(),
        real_effect_time: parsed.real_effect_time,
    };
    submit(&req, &state, "activation", license, command, &body).await
}

/// How far ahead of the clock a usage report's `at` may be.
const USAGE_AHEAD_MS: i64 = 5 * 60 * 1000;
/// How far behind the clock a usage report's `at` may be.
const USAGE_BEHIND_MS: i64 = 36 * 3600 * 1000;

/// Body of a usage report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageBody {
    /// End-user account inside the seller's software (sent as `thirdPartyAccount`).
    pub(crate) account: String,
    /// Client IP.
    #[serde(default)]
    pub(crate) ip: Option<String>,
    /// When the software was used (RFC 3339); now when absent.
    #[serde(default)]
    pub(crate) at: Option<String>,
}

/// `POST /v1/licenses/{code}/usage`.
pub(crate) async fn usage(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let license = path.into_inner();
    let parsed: UsageBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    if parsed.account.is_empty() || parsed.account.chars().count() > 256 {
        return Err(ApiError::invalid_body(
            "account must be 1 to 256 characters",
        ));
    }
    if parsed.ip.as_ref().is_some_and(|ip| ip.chars().count() > 32) {
        return Err(ApiError::invalid_body("ip must be at most 32 characters"));
    }
    let at_ms = match &parsed.at {
        None => now_millis(),
        Some(raw) => time::OffsetDateTime::parse(raw, &Rfc3339)
            .map(koogallery::market_time::unix_millis)
            .map_err(|e| ApiError::invalid_body(format!("at: {e} (RFC 3339 expected)")))?,
    };
    // Use is reported as it happens: a little clock skew is fine, a day is not (a heartbeat is
    // owed per day of use, and the marketplace counts days).
    let now = now_millis();
    if at_ms > now + USAGE_AHEAD_MS || at_ms < now - USAGE_BEHIND_MS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_usage_time",
            "at must be within the last 36 hours and at most 5 minutes ahead",
        ));
    }
    let command = CommandBody::ReportUsage {
        license: license.clone(),
        account: parsed.account,
        ip: parsed.ip,
        at_ms,
    };
    submit(&req, &state, "usage", license, command, &body).await
}

/// Body of a drift resolution.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveBody {
    /// `marketplace` or `ours`.
    pub(crate) accept: String,
    /// Why (1 to 1000 characters).
    pub(crate) note: String,
}

/// `POST /v1/licenses/{code}/drift/resolve`: keep the marketplace's values or ours; recorded as a
/// `drift_resolved` event with the token's name as actor.
pub(crate) async fn resolve_drift(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let license = path.into_inner();
    let parsed: ResolveBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    let command = CommandBody::resolve_drift(&license, &parsed.accept, &parsed.note)
        .map_err(ApiError::invalid_body)?;
    submit(&req, &state, "drift_resolve", license, command, &body).await
}
