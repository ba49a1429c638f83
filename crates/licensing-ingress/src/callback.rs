//! The public callback endpoint: verify, validate, hand over, answer (always HTTP 200, D1).

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;
use koogallery::callback::{CallbackResponse, RESPONSE_CONTENT_TYPE, ResultCode};
use licensing_messages::{
    CallbackCommand, CommandBody, CommandEnvelope, ENVELOPE_VERSION, InboundRecord, Reply,
    RequestSeen, admit_callback,
};

use licensing_runtime::trace::{Span, SpanKind};
use sha2::{Digest, Sha256};

use crate::dispatch::{Dispatched, dispatch, traceparent};
use crate::{State, now_millis, request_id};

/// One callback's answer: its result code and message, and the activity it named (`unknown`
/// before the body was read). Always HTTP 200 (D1), as a success or as a refusal.
#[derive(Debug)]
pub(crate) struct Answer {
    activity: &'static str,
    response: CallbackResponse,
    /// Echoed as `X-Request-Id`.
    request: Option<uuid::Uuid>,
    /// Whether this is the processor's committed decision (its record is stored with it).
    decided: bool,
}

/// A callback refused before it was handed over: `000001` (verification) or `000002` (anything
/// else wrong with the request). The handlers' one error type; actix answers it with
/// [`ResponseError::error_response`].
#[derive(Debug)]
pub(crate) struct Refusal(Answer);

impl Refusal {
    fn invalid(activity: &'static str, message: impl Into<String>) -> Self {
        Self(Answer {
            activity,
            response: CallbackResponse::with_message(ResultCode::InvalidParameters, message.into()),
            request: None,
            decided: false,
        })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let response = &self.0.response;
        write!(
            f,
            "{} {}",
            response.result_code.as_str(),
            response.result_msg
        )
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        StatusCode::OK
    }

    fn error_response(&self) -> HttpResponse {
        json_answer(&self.0)
    }
}

fn json_answer(answer: &Answer) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.content_type(RESPONSE_CONTENT_TYPE);
    if let Some(request) = answer.request {
        response.insert_header(("X-Request-Id", request.to_string()));
    }
    response.body(answer.response.to_json())
}

/// What the evidence record of one request needs (D20), filled in as the checks go.
#[derive(Debug)]
struct Seen {
    received_at_ms: i64,
    /// The body, up to the body limit.
    body: Vec<u8>,
    /// The body's real size.
    body_size: u64,
    /// The SHA-256 of the whole body, as it arrives.
    body_hash: Sha256,
    /// `none` before verification, then `valid` or the refusal's reason.
    verification: &'static str,
    key_index: Option<usize>,
    /// The command's id, once handed over.
    handed_over: Option<uuid::Uuid>,
}

/// The headers and peer of a request, as its evidence record keeps them.
fn request_seen(req: &HttpRequest, seen: &Seen) -> RequestSeen {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    RequestSeen {
        method: req.method().to_string(),
        content_type: header("content-type"),
        user_agent: header("user-agent"),
        forwarded_for: header("x-forwarded-for"),
        request_id: header("x-request-id"),
        peer: req.peer_addr().map(|a| a.to_string()),
        verification: seen.verification.to_owned(),
        key_index: seen.key_index,
    }
}

/// Hands the record of a request answered without the processor's decision to the processor,
/// without waiting: a failure never delays or changes the answer. A refusal's record goes to the
/// refusals queue, apart from every command lane, rate-limited (D20) and with at most
/// `LICENSING_EVIDENCE_REFUSED_MAX_BODY_BYTES` of its body (its real size and SHA-256 kept); an
/// answer sent before the decision (`000004`) is always recorded, linked to its command.
fn keep_evidence(req: &HttpRequest, state: &web::Data<State>, mut seen: Seen, answer: &Answer) {
    if answer.decided {
        return;
    }
    let refusal = match (seen.handed_over, answer.response.result_code) {
        (Some(_), _) => "not_decided",
        (None, ResultCode::AuthenticationFailed) => "verification",
        (None, _) => "invalid",
    };
    let refused = seen.handed_over.is_none();
    if refused && !state.evidence_budget.take(now_millis()) {
        state
            .metrics
            .evidence_dropped
            .get_or_create(&vec![("reason", "rate_limited".to_owned())])
            .inc();
        return;
    }
    let body_sha256 = refused.then(|| hex::encode(std::mem::take(&mut seen.body_hash).finalize()));
    if refused {
        seen.body
            .truncate(state.config.evidence_refused_max_body_bytes);
    }
    let request = answer.request.unwrap_or_else(uuid::Uuid::new_v4);
    let envelope = CommandEnvelope {
        v: ENVELOPE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        correlation_id: request,
        received_at_ms: seen.received_at_ms,
        source: "koogallery".to_owned(),
        request_hash: None,
        actor: None,
        command: CommandBody::RecordInbound(InboundRecord {
            exchange_id: seen.handed_over.unwrap_or_else(uuid::Uuid::new_v4),
            received_at_ms: seen.received_at_ms,
            raw_query: req.query_string().to_owned(),
            seen: request_seen(req, &seen),
            body_size: seen.body_size,
            body: seen.body,
            body_sha256,
            refusal: refusal.to_owned(),
            answer: answer.response.clone(),
            answered_at_ms: now_millis(),
        }),
        trace_parent: None,
    };
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let body = envelope.to_bytes();
        let message_id = envelope.message_id.to_string();
        let published = match state.connection.get() {
            Some(link) if refused => link
                .bus
                .publish_refusal(&body, message_id)
                .await
                .map_err(|e| e.to_string()),
            Some(link) => link
                .bus
                .publish_command(
                    envelope.license(),
                    &body,
                    message_id,
                    envelope.correlation_id.to_string(),
                    None,
                    None,
                )
                .await
                .map_err(|e| e.to_string()),
            None => Err("not connected to the broker".to_owned()),
        };
        let (family, label) = match &published {
            Ok(()) => (&state.metrics.evidence_handed_over, refusal),
            Err(_) => (&state.metrics.evidence_dropped, "hand_over_failed"),
        };
        family
            .get_or_create(&vec![("reason", label.to_owned())])
            .inc();
        if let Err(error) = published {
            tracing::warn!(request_id = %request, %error, "cannot hand over the record of a callback request");
        }
    });
}

/// At most `rate` refusal records per second, in bursts of up to `rate`: a token bucket.
#[derive(Debug)]
pub(crate) struct EvidenceBudget {
    rate: f64,
    /// (tokens left, when last refilled in ms).
    bucket: std::sync::Mutex<(f64, i64)>,
}

impl EvidenceBudget {
    pub(crate) fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        Self {
            rate,
            bucket: std::sync::Mutex::new((rate, now_millis())),
        }
    }

    /// Takes one token at `now_ms`, if there is one.
    fn take(&self, now_ms: i64) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = *bucket;
        let refilled = (tokens + (now_ms - last).max(0) as f64 * self.rate / 1000.0).min(self.rate);
        let taken = refilled >= 1.0;
        *bucket = (if taken { refilled - 1.0 } else { refilled }, now_ms);
        taken
    }
}

/// `POST {callback path}`: the checks in order, then the hand-over; every answer counted and
/// logged with the request id, and every request kept as evidence (D20).
pub(crate) async fn callback(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, Refusal> {
    let request = request_id(&req);
    let mut seen = Seen {
        received_at_ms: now_millis(),
        body: Vec::new(),
        body_size: 0,
        body_hash: Sha256::new(),
        verification: "none",
        key_index: None,
        handed_over: None,
    };
    // One trace per callback, unless the caller sent a context to continue (ADR 0017).
    let mut span = Span::start("callback", SpanKind::Server, traceparent(&req));
    let mut outcome = handle(
        &req,
        payload,
        &state,
        request,
        &mut seen,
        span.traceparent(),
    )
    .await;
    let (Ok(answer) | Err(Refusal(answer))) = &mut outcome;
    answer.request = Some(request);
    let response = &answer.response;
    span.set("koogallery.activity", answer.activity);
    span.set("koogallery.result_code", response.result_code.as_str());
    span.set("request_id", request);
    state
        .metrics
        .callbacks
        .get_or_create(&vec![
            ("activity", answer.activity.to_owned()),
            ("result_code", response.result_code.as_str().to_owned()),
        ])
        .inc();
    tracing::info!(request_id = %request, activity = answer.activity, result_code = response.result_code.as_str(), result_msg = %response.result_msg, "callback answered");
    keep_evidence(&req, &state, seen, answer);
    outcome.map(|answer| json_answer(&answer))
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    request: uuid::Uuid,
    seen: &mut Seen,
    trace: Option<String>,
) -> Result<Answer, Refusal> {
    let received_at_ms = seen.received_at_ms;
    let arrived = std::time::Instant::now();
    if req.method() != actix_web::http::Method::POST {
        return Err(Refusal::invalid(
            "unknown",
            format!("method {} is not allowed; use POST", req.method()),
        ));
    }
    read_body(payload, state, seen).await?;
    // Verify over the raw bytes before reading anything of the body (D2), then the rest.
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let admitted = admit_callback(
        req.query_string(),
        content_type,
        &seen.body,
        &state.verifier,
        received_at_ms,
    );
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(refused) => {
            if let Some((reason, error)) = &refused.verification {
                seen.verification = reason;
                state
                    .metrics
                    .verification_failures
                    .get_or_create(&vec![("reason", (*reason).to_owned())])
                    .inc();
                tracing::warn!(request_id = %request, reason, error, "callback refused by verification");
            } else {
                seen.verification = "valid";
            }
            return Err(Refusal(Answer {
                activity: refused.activity,
                response: refused.response,
                request: None,
                decided: false,
            }));
        }
    };
    let verified = admitted.verified;
    seen.verification = "valid";
    seen.key_index = Some(verified.key_index);
    if verified.key_index > 0 {
        tracing::warn!(
            key = verified.key_index + 1,
            "callback signed with a previous access key"
        );
    }
    let activity = admitted.request.activity();
    let envelope = CommandEnvelope {
        v: ENVELOPE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        correlation_id: request,
        received_at_ms,
        source: "koogallery".to_owned(),
        request_hash: None,
        actor: None,
        command: CommandBody::Callback(CallbackCommand {
            request: admitted.request,
            nonce: verified.nonce,
            timestamp_ms: verified.timestamp_ms,
            signature: Some(verified.signature),
            raw_query: req.query_string().to_owned(),
            raw_body: admitted.raw_body,
            seen: Some(request_seen(req, seen)),
        }),
        trace_parent: trace,
    };
    // The deadline counts from the request's arrival, not from the hand-over.
    let deadline = state
        .config
        .reply_deadline
        .saturating_sub(arrived.elapsed());
    seen.handed_over = Some(envelope.message_id);
    let (response, decided) = hand_over(state, &envelope, deadline).await;
    Ok(Answer {
        activity,
        response,
        request: None,
        decided,
    })
}

/// Reads the body within the body timeout into `seen`: up to the size limit kept, the rest only
/// counted (the record keeps a too large body truncated, with its real size).
async fn read_body(
    mut payload: web::Payload,
    state: &State,
    seen: &mut Seen,
) -> Result<(), Refusal> {
    let limit = state.config.max_body_bytes;
    let reading = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| Refusal::invalid("unknown", format!("cannot read the body: {e}")))?;
            seen.body_size += chunk.len() as u64;
            seen.body_hash.update(&chunk);
            let room = limit.saturating_sub(seen.body.len()).min(chunk.len());
            seen.body.extend_from_slice(&chunk[..room]);
        }
        Ok(())
    };
    let timeout = state.config.body_timeout;
    tokio::time::timeout(timeout, reading).await.map_err(|_| {
        Refusal::invalid(
            "unknown",
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        )
    })??;
    if seen.body_size > limit as u64 {
        return Err(Refusal::invalid(
            "unknown",
            format!("body is larger than {limit} bytes"),
        ));
    }
    Ok(())
}

/// Hands the command over and waits for the processor's answer up to `deadline`; true with the
/// processor's decision.
async fn hand_over(
    state: &State,
    envelope: &CommandEnvelope,
    deadline: std::time::Duration,
) -> (CallbackResponse, bool) {
    let response = match dispatch(&state.connection, &state.metrics, envelope, deadline).await {
        Dispatched::Replied(Reply::Callback(response)) => return (response, true),
        Dispatched::Replied(other) => {
            tracing::error!(
                ?other,
                "the processor answered a callback with a non-callback reply"
            );
            CallbackResponse::with_message(ResultCode::InternalError, "unexpected reply".to_owned())
        }
        // D8: durably queued, not yet committed: the marketplace's retry will get the stored result.
        Dispatched::Pending => {
            state
                .metrics
                .reply_timeouts
                .get_or_create(&vec![("source", "koogallery".to_owned())])
                .inc();
            CallbackResponse::new(ResultCode::Processing)
        }
        Dispatched::Unavailable(reason) => {
            tracing::error!(%reason, "cannot hand the callback over");
            CallbackResponse::with_message(
                ResultCode::InternalError,
                "service temporarily unavailable".to_owned(),
            )
        }
    };
    (response, false)
}
