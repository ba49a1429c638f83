//! Admitting a callback request, in the ingress and in a replay alike: the signature and timestamp
//! over the raw bytes first (D2–D5), then the content type (D6), the JSON, the license code.

use koogallery::callback::{CallbackRequest, CallbackResponse, ResultCode};
use koogallery::signature::{SignatureParams, Verified, Verifier};

/// A callback request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The parsed callback.
    pub request: CallbackRequest,
    /// The verified signature's nonce, timestamp and key index.
    pub verified: Verified,
    /// The body, as UTF-8 text.
    pub raw_body: String,
}

/// Why a callback request was refused, and the answer it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The answer: `000001` (verification, one generic message) or `000002` (anything else).
    pub response: CallbackResponse,
    /// The activity the body named, `unknown` before it was read.
    pub activity: &'static str,
    /// For a verification refusal, its reason (`mismatch`, `outside_window`, …): for the log and
    /// the metrics, never for the caller.
    pub verification: Option<(&'static str, String)>,
}

impl Refused {
    fn invalid(activity: &'static str, message: impl Into<String>) -> Self {
        Self {
            response: CallbackResponse::with_message(ResultCode::InvalidParameters, message.into()),
            activity,
            verification: None,
        }
    }
}

/// Checks a callback request received at `received_at_ms`: `query` and `body` exactly as they
/// arrived, `content_type` the header's value.
pub fn admit_callback(
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
    verifier: &Verifier,
    received_at_ms: i64,
) -> Result<Admitted, Refused> {
    let verified = SignatureParams::from_query(query)
        .and_then(|params| verifier.verify(&params, body, received_at_ms))
        .map_err(|e| Refused {
            response: CallbackResponse::new(ResultCode::AuthenticationFailed),
            activity: "unknown",
            verification: Some((e.reason(), e.to_string())),
        })?;
    // D6: JSON, any charset.
    let json = content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Refused::invalid(
            "unknown",
            "Content-Type must be application/json",
        ));
    }
    let request =
        CallbackRequest::parse(body).map_err(|e| Refused::invalid("unknown", e.to_string()))?;
    let activity = request.activity();
    licensing_domain::LicenseCode::parse(request.license())
        .map_err(|e| Refused::invalid(activity, format!("field `license`: {e}")))?;
    let raw_body = std::str::from_utf8(body)
        .map_err(|_| Refused::invalid(activity, "body is not UTF-8"))?
        .to_owned();
    Ok(Admitted {
        request,
        verified,
        raw_body,
    })
}
