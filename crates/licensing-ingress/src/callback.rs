//! The public callback endpoint: verify, validate, hand over, answer (always HTTP 200, D1).

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;
use koogallery::callback::{CallbackRequest, CallbackResponse, RESPONSE_CONTENT_TYPE, ResultCode};
use koogallery::signature::{SignatureParams, Verified};
use licensing_domain::LicenseCode;
use licensing_messages::{CallbackCommand, CommandBody, CommandEnvelope, ENVELOPE_VERSION, Reply};

use crate::dispatch::{Dispatched, dispatch};
use crate::{State, now_millis, request_id};

/// One callback's answer: its result code and message, and the activity it named (`unknown`
/// before the body was read). Always HTTP 200 (D1), as a success or as a refusal.
#[derive(Debug)]
pub(crate) struct Answer {
    activity: &'static str,
    response: CallbackResponse,
    /// Echoed as `X-Request-Id`.
    request: Option<uuid::Uuid>,
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

/// `POST {callback path}`: the checks in order, then the hand-over; every answer counted and
/// logged with the request id.
pub(crate) async fn callback(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, Refusal> {
    let request = request_id(&req);
    let mut outcome = handle(&req, payload, &state, request).await;
    let (Ok(answer) | Err(Refusal(answer))) = &mut outcome;
    answer.request = Some(request);
    let response = &answer.response;
    state
        .metrics
        .callbacks
        .get_or_create(&vec![
            ("activity", answer.activity.to_owned()),
            ("result_code", response.result_code.as_str().to_owned()),
        ])
        .inc();
    tracing::info!(request_id = %request, activity = answer.activity, result_code = response.result_code.as_str(), result_msg = %response.result_msg, "callback answered");
    outcome.map(|answer| json_answer(&answer))
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
    request: uuid::Uuid,
) -> Result<Answer, Refusal> {
    let received_at_ms = now_millis();
    let arrived = std::time::Instant::now();
    if req.method() != actix_web::http::Method::POST {
        return Err(Refusal::invalid(
            "unknown",
            format!("method {} is not allowed; use POST", req.method()),
        ));
    }
    let body = read_body(payload, state).await?;
    // Verify over the raw bytes before reading anything of the body (D2).
    let verified = verify(req, &body, state, received_at_ms, request)?;
    // D6: JSON, any charset.
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Refusal::invalid(
            "unknown",
            "Content-Type must be application/json",
        ));
    }
    let parsed =
        CallbackRequest::parse(&body).map_err(|e| Refusal::invalid("unknown", e.to_string()))?;
    let activity = parsed.activity();
    LicenseCode::parse(parsed.license())
        .map_err(|e| Refusal::invalid(activity, format!("field `license`: {e}")))?;
    let raw_body =
        String::from_utf8(body).map_err(|_| Refusal::invalid(activity, "body is not UTF-8"))?;
    let envelope = CommandEnvelope {
        v: ENVELOPE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        correlation_id: request,
        received_at_ms,
        source: "koogallery".to_owned(),
        request_hash: None,
        command: CommandBody::Callback(CallbackCommand {
            request: parsed,
            nonce: verified.nonce,
            timestamp_ms: verified.timestamp_ms,
            raw_query: req.query_string().to_owned(),
            raw_body,
        }),
    };
    // The deadline counts from the request's arrival, not from the hand-over.
    let deadline = state
        .config
        .reply_deadline
        .saturating_sub(arrived.elapsed());
    let response = hand_over(state, &envelope, deadline).await;
    Ok(Answer {
        activity,
        response,
        request: None,
    })
}

/// Reads the body within the body timeout and up to the size limit.
async fn read_body(mut payload: web::Payload, state: &State) -> Result<Vec<u8>, Refusal> {
    let limit = state.config.max_body_bytes;
    let reading = async {
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| Refusal::invalid("unknown", format!("cannot read the body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(Refusal::invalid(
                    "unknown",
                    format!("body is larger than {limit} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let timeout = state.config.body_timeout;
    tokio::time::timeout(timeout, reading).await.map_err(|_| {
        Refusal::invalid(
            "unknown",
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        )
    })?
}

/// Checks the signature, the timestamp window and the key (D2–D5). Every refusal gets the one
/// generic answer; the exact reason goes to the log and the metric, never to the caller.
fn verify(
    req: &HttpRequest,
    body: &[u8],
    state: &State,
    received_at_ms: i64,
    request: uuid::Uuid,
) -> Result<Verified, Refusal> {
    let verified = SignatureParams::from_query(req.query_string())
        .and_then(|params| state.verifier.verify(&params, body, received_at_ms))
        .map_err(|e| {
            state
                .metrics
                .verification_failures
                .get_or_create(&vec![("reason", e.reason().to_owned())])
                .inc();
            tracing::warn!(request_id = %request, reason = e.reason(), error = %e, "callback refused by verification");
            Refusal(Answer {
                activity: "unknown",
                response: CallbackResponse::new(ResultCode::AuthenticationFailed),
                request: None,
            })
        })?;
    if verified.key_index > 0 {
        tracing::warn!(
            key = verified.key_index + 1,
            "callback signed with a previous access key"
        );
    }
    Ok(verified)
}

/// Hands the command over and waits for the processor's answer up to `deadline`.
async fn hand_over(
    state: &State,
    envelope: &CommandEnvelope,
    deadline: std::time::Duration,
) -> CallbackResponse {
    match dispatch(&state.connection, &state.metrics, envelope, deadline).await {
        Dispatched::Replied(Reply::Callback(response)) => response,
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
    }
}
