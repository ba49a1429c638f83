//! Commands and replies as they travel on the bus (JSON, versioned by the `v` field).

use koogallery::callback::{CallbackRequest, CallbackResponse, ResultCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope version written today.
pub const ENVELOPE_VERSION: u32 = 1;

/// A command for the processor, with what it needs to be traced and deduplicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    /// Envelope version.
    pub v: u32,
    /// Unique per command; a redelivery (or a retried internal request with the same
    /// `Idempotency-Key`) carries the same id and gets the stored reply.
    pub message_id: Uuid,
    /// Shared by everything that follows one outside request (HTTP request id).
    pub correlation_id: Uuid,
    /// When the ingress received the request, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// Who sent it: `koogallery` or `internal-api`.
    pub source: String,
    /// The name of the API token behind an internal request (`LICENSING_API_TOKENS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The SHA-256 of an internal request's body: a retry under the same `Idempotency-Key` with
    /// another body is refused (`idempotency_key_reused`) instead of answered with the first reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    /// The command.
    pub command: CommandBody,
    /// The W3C trace context this command continues (ADR 0017). Not part of the body: it travels
    /// in the message's `traceparent` header, set here by whoever received the message.
    #[serde(skip)]
    pub trace_parent: Option<String>,
}

/// What is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandBody {
    /// A verified, validated KooGallery callback.
    Callback(CallbackCommand),
    /// Activate a license code (D19).
    RequestActivation {
        /// License code.
        license: String,
        /// `real_effect_time` to send, UTC `yyyyMMddHHmmss`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        real_effect_time: Option<String>,
    },
    /// The outcome of one activate call made by the outbound worker.
    RecordActivation {
        /// License code.
        license: String,
        /// The worker's attempt number for this license (increasing).
        attempt: u32,
        /// What the marketplace answered.
        result: ActivationResultV1,
        /// Each HTTP attempt of the call, as evidence (D20); the last one's answer is `result`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attempts: Vec<OutboundAttemptV1>,
    },
    /// The outcome of one heartbeat call made by the outbound worker.
    RecordHeartbeat {
        /// License code.
        license: String,
        /// The calendar day the heartbeat was owed for (days since 1970-01-01 in the heartbeat zone).
        day: i64,
        /// The worker's attempt number for that day (increasing).
        attempt: u32,
        /// What the marketplace answered.
        result: HeartbeatResultV1,
        /// Each HTTP attempt of the call, as evidence (D20); the last one's answer is `result`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attempts: Vec<OutboundAttemptV1>,
    },
    /// The record of a callback request answered without the processor's decision (D20): one
    /// refused at the ingress, or one answered `000004`/`000005` before its command was decided.
    /// Stored as evidence; decides nothing.
    RecordInbound(InboundRecord),
    /// An operator settles a license's open drift (D20).
    ResolveDrift {
        /// License code.
        license: String,
        /// `marketplace` or `ours`: whose values are kept.
        accept: String,
        /// Why.
        note: String,
    },
    /// The clock reached an instant a license waits for (D22, D23): sent by the projector's
    /// schedule, stamped (`received_at_ms`) with the instant it judges.
    PassTime {
        /// License code.
        license: String,
        /// The `expiring_soon` thresholds, in days.
        expiry_notice_days: Vec<u32>,
        /// The `freeze_ending_soon` thresholds, in days.
        freeze_notice_days: Vec<u32>,
    },
    /// One run of the probe watchdog (D21): how each saved debug case went, recorded on the
    /// `probe` stream; `received_at_ms` is when the run started.
    RecordProbeRun {
        /// Each case, in the order sent.
        cases: Vec<ProbeCaseV1>,
    },
    /// The seller's software was used (D15).
    ReportUsage {
        /// License code.
        license: String,
        /// End-user account, sent as `thirdPartyAccount`.
        account: String,
        /// Client IP.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        /// When the software was used, in milliseconds since the Unix epoch.
        at_ms: i64,
    },
}

/// How one saved debug case went in a probe run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeCaseV1 {
    /// The case's name.
    pub case: String,
    /// The answer's HTTP status, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The answer's body, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Time to the answer, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Why the marketplace would count the case failed; absent when it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How the marketplace answered an activate call, as the outbound worker classified it (D16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ActivationResultV1 {
    /// `92020000`, with `license_code_info` exactly as received.
    Activated {
        /// The raw `license_code_info` string.
        license_code_info: String,
    },
    /// `92020003`.
    AlreadyActivated,
    /// `92020004`.
    AwaitingClaim {
        /// The marketplace's code.
        code: String,
        /// Its message.
        message: String,
    },
    /// Anything else, or no answer.
    Failed {
        /// `error_code`, `APIGW.*`, `HTTP <status>` or the transport error kind.
        code: String,
        /// What went wrong.
        message: String,
        /// Whether the worker tries again.
        retryable: bool,
    },
}

/// How the marketplace answered a heartbeat call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HeartbeatResultV1 {
    /// The marketplace's status of the code (`ALIVE`, `EXPIRED`, `RELEASED`), and its expiry.
    Acknowledged {
        /// `data.status`.
        status: String,
        /// `data.expire_time`, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expire_time: Option<String>,
    },
    /// The call failed.
    Failed {
        /// `error_code`, `APIGW.*`, `HTTP <status>` or the transport error kind.
        code: String,
        /// What went wrong.
        message: String,
        /// Whether the worker tries again.
        retryable: bool,
    },
}

/// The hot path's wire form: an envelope carrying a callback, read in one pass. The derived
/// reader of the internally tagged [`CommandBody`] first buffers the whole command (its raw body
/// and query included) and then reads it from the buffer, a tenth of the processor's instructions
/// per callback (docs/benchmarks.md). The same fields as [`CommandEnvelope`] and
/// [`CallbackCommand`], and no others: a field added there and not here only sends its envelopes
/// down the general path (`crates/licensing-messages/tests/envelope.rs` checks both agree).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackEnvelopeWire {
    v: u32,
    message_id: Uuid,
    correlation_id: Uuid,
    received_at_ms: i64,
    source: String,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    request_hash: Option<String>,
    command: CallbackWire,
}

/// [`CallbackCommand`] with its tag, as [`CallbackEnvelopeWire`] reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackWire {
    kind: CallbackTag,
    request: CallbackRequest,
    nonce: String,
    timestamp_ms: i64,
    #[serde(default)]
    signature: Option<String>,
    raw_query: String,
    raw_body: String,
    #[serde(default)]
    seen: Option<RequestSeen>,
}

/// The one tag [`CallbackWire`] takes.
#[derive(Deserialize)]
enum CallbackTag {
    #[serde(rename = "callback")]
    Callback,
}

impl From<CallbackEnvelopeWire> for CommandEnvelope {
    fn from(wire: CallbackEnvelopeWire) -> Self {
        let CallbackWire {
            kind: CallbackTag::Callback,
            request,
            nonce,
            timestamp_ms,
            signature,
            raw_query,
            raw_body,
            seen,
        } = wire.command;
        Self {
            v: wire.v,
            message_id: wire.message_id,
            correlation_id: wire.correlation_id,
            received_at_ms: wire.received_at_ms,
            source: wire.source,
            actor: wire.actor,
            request_hash: wire.request_hash,
            command: CommandBody::Callback(CallbackCommand {
                request,
                nonce,
                timestamp_ms,
                signature,
                raw_query,
                raw_body,
                seen,
            }),
            trace_parent: None,
        }
    }
}

/// A callback, with the raw request kept for audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackCommand {
    /// The parsed callback.
    pub request: CallbackRequest,
    /// Its nonce (D5).
    pub nonce: String,
    /// Its timestamp, in milliseconds.
    pub timestamp_ms: i64,
    /// Its signature, lower-case hex (D5: a replay key beside the nonce). Absent in messages
    /// queued before it was carried; those are checked by their nonce alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The query string as received.
    pub raw_query: String,
    /// The body as received (UTF-8 JSON).
    pub raw_body: String,
    /// What else the ingress saw of the request, kept as evidence (D20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<RequestSeen>,
}

/// What the ingress saw of a callback request besides its query and body (D20).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSeen {
    /// The HTTP method.
    pub method: String,
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `User-Agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// `X-Forwarded-For`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<String>,
    /// `X-Request-Id`, as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The peer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// `valid`, or why verification refused it (`mismatch`, `outside_window`, …); `none`
    /// when the request was refused before verification.
    pub verification: String,
    /// The index of the access key that verified it (0 = current), never the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_index: Option<usize>,
}

/// One HTTP attempt of an open-API call, as evidence (D20).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundAttemptV1 {
    /// The evidence record's id.
    pub exchange_id: Uuid,
    /// When the request was sent, in milliseconds since the Unix epoch.
    pub sent_at_ms: i64,
    /// `POST`.
    pub method: String,
    /// The URL called.
    pub url: String,
    /// `primary` or `fallback` (D17).
    pub host: String,
    /// The headers we set, `Authorization` included (a signature, never the SK).
    pub request_headers: Vec<(String, String)>,
    /// The request body (base64 on the bus).
    #[serde(with = "base64_bytes")]
    pub request_body: Vec<u8>,
    /// From sending to the answer or the error, in milliseconds.
    pub latency_ms: u64,
    /// The HTTP status, when an answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The answer's headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<(String, String)>,
    /// The answer's body, when one came (base64 on the bus).
    #[serde(
        default,
        with = "base64_bytes_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_body: Option<Vec<u8>>,
    /// The error, when no (complete) answer came: its kind (`timeout`, `connect`, `transport`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// What the error said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer's disposition (D16), or the error's kind.
    pub outcome: String,
}

/// A callback request answered without the processor's decision, as evidence (D20).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRecord {
    /// The exchange: the id of the command that carried the callback when it was handed over,
    /// else a fresh one.
    pub exchange_id: Uuid,
    /// When the request was received, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The query string as received.
    pub raw_query: String,
    /// The body as received, up to the body limit (base64 on the bus).
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// The body's real size.
    pub body_size: u64,
    /// The SHA-256 of the whole body as received (hex), for a refused request (whose body is
    /// kept clipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// The rest of the request.
    pub seen: RequestSeen,
    /// Why it was refused (`verification`, `invalid`), or `not_decided` for an answer sent before
    /// the decision.
    pub refusal: String,
    /// What we answered.
    pub answer: CallbackResponse,
    /// When the answer was sent, in milliseconds since the Unix epoch.
    pub answered_at_ms: i64,
}

mod base64_bytes_opt {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => serializer.serialize_some(&STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| STANDARD.decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

impl CommandEnvelope {
    /// Encodes for the bus.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|e| unreachable!("envelopes serialise: {e}"))
    }

    /// Decodes from the bus: a callback in one pass ([`CallbackEnvelopeWire`]), anything else (or
    /// a callback with a field that reader does not know) through the general decoder, which
    /// gives the same result more slowly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let envelope: Self = match serde_json::from_slice::<CallbackEnvelopeWire>(bytes) {
            Ok(wire) => wire.into(),
            Err(_) => serde_json::from_slice(bytes).map_err(|e| e.to_string())?,
        };
        if envelope.v != ENVELOPE_VERSION {
            return Err(format!("envelope version {} is not supported", envelope.v));
        }
        Ok(envelope)
    }

    /// The license code the command is about (empty for a [`CommandBody::RecordInbound`]: its
    /// body may name none).
    pub fn license(&self) -> &str {
        match &self.command {
            CommandBody::Callback(c) => c.request.license(),
            CommandBody::RecordInbound(_) | CommandBody::RecordProbeRun { .. } => "",
            CommandBody::RequestActivation { license, .. }
            | CommandBody::ResolveDrift { license, .. }
            | CommandBody::PassTime { license, .. }
            | CommandBody::ReportUsage { license, .. }
            | CommandBody::RecordActivation { license, .. }
            | CommandBody::RecordHeartbeat { license, .. } => license,
        }
    }
}

/// The processor's answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// The answer to a callback.
    Callback(CallbackResponse),
    /// An internal command was applied (or was already); the license as it stands.
    Applied {
        /// The license after the command.
        license: LicenseSummary,
    },
    /// An exchange was recorded as evidence.
    Recorded,
    /// An internal command was refused.
    Rejected {
        /// Stable code: `unknown_license`, `released`, `not_activated`, `frozen`, `no_drift`,
        /// `invalid`.
        code: String,
        /// What is wrong.
        message: String,
        /// The license as it stands, when it exists (a usage report refused for a frozen license
        /// still tells the software its access mode).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        license: Option<LicenseSummary>,
    },
}

impl Reply {
    /// A callback answer.
    pub fn callback(code: ResultCode, message: impl Into<String>) -> Self {
        Self::Callback(CallbackResponse::with_message(code, message))
    }

    /// Encodes for the inbox (which adds to it).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|e| unreachable!("replies serialise: {e}"))
    }

    /// Encodes for the bus, straight to JSON text.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|e| unreachable!("replies serialise: {e}"))
    }
}

/// A license as an internal caller sees it in a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseSummary {
    /// License code.
    pub license: String,
    /// Sandbox license.
    pub sandbox: bool,
    /// `registered`, `activation_pending`, `awaiting_claim`, `activation_failed`, `active`, `frozen`, `released`.
    pub status: String,
    /// Expiry as the marketplace wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
    /// Stream version.
    pub version: u64,
    /// The access mode (D22): `pending`, `active`, `expired`, `frozen`, `released`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<String>,
    /// While active: when access ends, in milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_until_ms: Option<i64>,
    /// While frozen: until when data is kept, in milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_kept_until_ms: Option<i64>,
}

impl CommandEnvelope {
    /// A command that starts here (no outside request behind it): a fresh id serving as both its
    /// message and correlation id, no actor, no request hash. Set the fields that differ.
    pub fn new(source: &str, received_at_ms: i64, command: CommandBody) -> Self {
        let id = Uuid::new_v4();
        Self {
            v: ENVELOPE_VERSION,
            message_id: id,
            correlation_id: id,
            received_at_ms,
            source: source.to_owned(),
            actor: None,
            request_hash: None,
            command,
            trace_parent: None,
        }
    }
}

impl CommandBody {
    /// An operator's drift resolution, checked: `accept` is `marketplace` or `ours`, the note 1 to
    /// 1000 characters once trimmed. The error says what is wrong (the internal API and the
    /// console send it as is).
    pub fn resolve_drift(license: &str, accept: &str, note: &str) -> Result<Self, String> {
        if !matches!(accept, "marketplace" | "ours") {
            return Err("accept must be marketplace or ours".to_owned());
        }
        let note = note.trim();
        if note.is_empty() || note.chars().count() > 1000 {
            return Err("note must be 1 to 1000 characters".to_owned());
        }
        Ok(Self::ResolveDrift {
            license: license.to_owned(),
            accept: accept.to_owned(),
            note: note.to_owned(),
        })
    }
}

#[cfg(test)]
mod callback_reader {
    use super::*;

    /// Every field a callback envelope is written with, set.
    fn full_callback() -> CommandEnvelope {
        let body = r#"{"activity":"refreshLicenseCode","expireTime":"20301231235959","license":"PL1","orderId":"CS1","orderLineId":"CS1-1","scene":"RENEWAL","testFlag":"0"}"#;
        CommandEnvelope {
            v: ENVELOPE_VERSION,
            message_id: Uuid::new_v4(),
            correlation_id: Uuid::new_v4(),
            received_at_ms: 1_795_000_000_000,
            source: "koogallery".into(),
            actor: Some("ops".into()),
            request_hash: Some("00".repeat(32)),
            command: CommandBody::Callback(CallbackCommand {
                request: CallbackRequest::parse(body.as_bytes()).unwrap(),
                nonce: "n0123456".into(),
                timestamp_ms: 1_795_000_000_000,
                signature: Some("ab".repeat(32)),
                raw_query: "nonce=n0123456".into(),
                raw_body: body.into(),
                seen: Some(RequestSeen {
                    method: "POST".into(),
                    verification: "valid".into(),
                    key_index: Some(0),
                    ..RequestSeen::default()
                }),
            }),
            trace_parent: None,
        }
    }

    #[test]
    fn reads_every_callback_envelope_the_ingress_writes() {
        // A field added to the envelope or the callback and not to the reader fails here, rather
        // than silently sending every callback down the slow path.
        let envelope = full_callback();
        let wire: CallbackEnvelopeWire = serde_json::from_slice(&envelope.to_bytes())
            .expect("the callback reader knows every field written");
        assert_eq!(CommandEnvelope::from(wire), envelope);
    }
}
