//! The public callback endpoint: verify, validate, hand over, answer (always HTTP 200, D1).

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use koogallery::callback::{CallbackRequest, CallbackResponse, RESPONSE_CONTENT_TYPE, ResultCode};
use koogallery::signature::SignatureParams;
use licensing_domain::LicenseCode;
use licensing_messages::{CallbackCommand, CommandBody, CommandEnvelope, ENVELOPE_VERSION, Reply};

use crate::dispatch::{Dispatched, dispatch};
use crate::{State, now_millis, request_id};

fn answer(
    state: &State,
    activity: &str,
    response: CallbackResponse,
    request: &uuid::Uuid,
) -> HttpResponse {
    state
        .metrics
        .callbacks
        .get_or_create(&vec![
            ("activity", activity.to_owned()),
            ("result_code", response.result_code.as_str().to_owned()),
        ])
        .inc();
    tracing::info!(request_id = %request, activity, result_code = response.result_code.as_str(), result_msg = %response.result_msg, "callback answered");
    HttpResponse::Ok()
        .content_type(RESPONSE_CONTENT_TYPE)
        .insert_header(("X-Request-Id", request.to_string()))
        .body(response.to_json())
}

/// Reads the body up to the limit; `None` when it is larger.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// `POST {callback path}`.
pub(crate) async fn callback(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let received_at_ms = now_millis();
    let arrived = std::time::Instant::now();
    let request = request_id(&req);
    let reply = |code, message: String| CallbackResponse::with_message(code, message);
    if req.method() != actix_web::http::Method::POST {
        return answer(
            &state,
            "unknown",
            reply(
                ResultCode::InvalidParameters,
                format!("method {} is not allowed; use POST", req.method()),
            ),
            &request,
        );
    }
    let reading = read_body(payload, state.config.max_body_bytes);
    let body = match tokio::time::timeout(state.config.body_timeout, reading).await {
        Err(_) => {
            return answer(
                &state,
                "unknown",
                reply(
                    ResultCode::InvalidParameters,
                    format!(
                        "the body did not arrive within {} ms",
                        state.config.body_timeout.as_millis()
                    ),
                ),
                &request,
            );
        }
        Ok(Ok(Some(body))) => body,
        Ok(Ok(None)) => {
            return answer(
                &state,
                "unknown",
                reply(
                    ResultCode::InvalidParameters,
                    format!("body is larger than {} bytes", state.config.max_body_bytes),
                ),
                &request,
            );
        }
        Ok(Err(e)) => {
            return answer(
                &state,
                "unknown",
                reply(
                    ResultCode::InvalidParameters,
                    format!("cannot read the body: {e}"),
                ),
                &request,
            );
        }
    };

    // Verify over the raw bytes before reading anything of the body (D2).
    let verified = SignatureParams::from_query(req.query_string())
        .and_then(|params| state.verifier.verify(&params, &body, received_at_ms));
    let verified = match verified {
        Ok(ok) => ok,
        Err(e) => {
            state
                .metrics
                .verification_failures
                .get_or_create(&vec![("reason", e.reason().to_owned())])
                .inc();
            // One answer for every refusal (signature, window, parameters): the exact reason
            // goes to the log and the metric, never to the caller.
            tracing::warn!(request_id = %request, reason = e.reason(), error = %e, "callback refused by verification");
            return answer(
                &state,
                "unknown",
                CallbackResponse::new(ResultCode::AuthenticationFailed),
                &request,
            );
        }
    };
    if verified.key_index > 0 {
        tracing::warn!(
            key = verified.key_index + 1,
            "callback signed with a previous access key"
        );
    }

    // D6: JSON, any charset.
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return answer(
            &state,
            "unknown",
            reply(
                ResultCode::InvalidParameters,
                "Content-Type must be application/json".to_owned(),
            ),
            &request,
        );
    }
    let parsed = match CallbackRequest::parse(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            return answer(
                &state,
                "unknown",
                reply(ResultCode::InvalidParameters, e.to_string()),
                &request,
            );
        }
    };
    let activity = parsed.activity();
    if let Err(e) = LicenseCode::parse(parsed.license()) {
        return answer(
            &state,
            activity,
            reply(
                ResultCode::InvalidParameters,
                format!("field `license`: {e}"),
            ),
            &request,
        );
    }
    let raw_body = match String::from_utf8(body) {
        Ok(text) => text,
        Err(_) => {
            return answer(
                &state,
                activity,
                reply(
                    ResultCode::InvalidParameters,
                    "body is not UTF-8".to_owned(),
                ),
                &request,
            );
        }
    };

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
    let response = match dispatch(
        &state.connection,
        &state.metrics,
        &envelope,
        // The deadline counts from the request's arrival, not from the hand-over.
        state
            .config
            .reply_deadline
            .saturating_sub(arrived.elapsed()),
    )
    .await
    {
        Dispatched::Replied(Reply::Callback(response)) => response,
        Dispatched::Replied(other) => {
            tracing::error!(
                ?other,
                "the processor answered a callback with a non-callback reply"
            );
            reply(ResultCode::InternalError, "unexpected reply".to_owned())
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
            reply(
                ResultCode::InternalError,
                "service temporarily unavailable".to_owned(),
            )
        }
    };
    answer(&state, activity, response, &request)
}
