//! The evidence log (D20) as the API, the console and the dispute pack read it: one exchange in
//! full, what it was in one line, and everything kept about one license in a window.

pub(crate) mod ledger;
pub(crate) mod pack;
mod report;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use licensing_store::{Direction, ExchangeFilter, RecordedEvent, Store, StoredExchange};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::read_model::time::rfc3339;

/// A payload as served: its size, hash, bytes (base64) and, when it is JSON, the decoded value.
fn payload(
    bytes: Option<&[u8]>,
    sha256: Option<&[u8]>,
    real_size: Option<i64>,
    meta: &Value,
) -> Value {
    let Some(bytes) = bytes else {
        return json!({ "meta": meta, "bytes": null });
    };
    let size = real_size.unwrap_or(bytes.len() as i64);
    json!({
        "meta": meta,
        "size": size,
        "stored_bytes": bytes.len(),
        "truncated": size > bytes.len() as i64,
        "sha256": sha256.map(hex::encode),
        "base64": STANDARD.encode(bytes),
        "json": serde_json::from_slice::<Value>(bytes).ok(),
    })
}

/// An exchange's summary fields (no payloads).
pub(crate) fn summary_json(stored: &StoredExchange) -> Value {
    let e = &stored.exchange;
    json!({
        "exchange_id": e.id,
        "direction": e.direction.as_str(),
        "at": rfc3339(Some(e.at)),
        "answered_at": rfc3339(e.answered_at),
        "license": e.license,
        "sandbox": e.sandbox,
        "correlation_id": e.correlation_id,
        "message_id": e.message_id,
        "outcome": e.outcome,
        "summary": describe(stored),
        "request_sha256": hex::encode(&stored.request_sha256),
        "response_sha256": stored.response_sha256.as_deref().map(hex::encode),
        "request_size": e.request_size,
        "refused": is_refusal(stored),
    })
}

/// Whether an exchange is a refusal: an inbound request refused before it became a command
/// (ADR 0018). Refusals are shown apart from the genuine exchanges and never fill their window.
pub(crate) fn is_refusal(stored: &StoredExchange) -> bool {
    stored.exchange.direction == Direction::In && stored.exchange.message_id.is_none()
}

/// One exchange in full, as `GET /v1/exchanges/{id}` serves it (and the evidence pack keeps it).
pub(crate) fn exchange_json(stored: &StoredExchange) -> Value {
    let e = &stored.exchange;
    let mut value = summary_json(stored);
    value["request"] = payload(
        Some(&e.request),
        Some(&stored.request_sha256),
        Some(e.request_size),
        &e.request_meta,
    );
    value["response"] = payload(
        e.response.as_deref(),
        stored.response_sha256.as_deref(),
        None,
        &e.response_meta,
    );
    value["decision"] = e.decision.clone().unwrap_or(Value::Null);
    value
}

pub(crate) fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The `activity` a callback body names, when it can be read.
pub(crate) fn activity(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.get("activity").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unreadable body".to_owned())
}

/// A short line saying what an exchange was.
pub(crate) fn describe(stored: &StoredExchange) -> String {
    let e = &stored.exchange;
    let (req, resp) = (&e.request_meta, &e.response_meta);
    match e.direction {
        Direction::In => {
            let activity = activity(&e.request);
            let verification = text(req, "verification");
            format!(
                "callback {activity} (verification: {verification}) answered {} {}",
                text(resp, "result_code"),
                text(resp, "result_msg")
            )
        }
        Direction::Out => {
            let answer = match (
                resp.get("status").and_then(Value::as_u64),
                text(resp, "error"),
            ) {
                (Some(status), _) => format!("HTTP {status}"),
                (None, error) => format!("no answer: {error}"),
            };
            format!(
                "{} call to the {} host: {answer} ({}, {} ms)",
                text(req, "call"),
                text(req, "host"),
                e.outcome,
                resp.get("latency_ms").and_then(Value::as_u64).unwrap_or(0)
            )
        }
    }
}

/// A sandbox flag and a time window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// The sandbox twin of the license.
    pub sandbox: bool,
    /// At or after.
    pub from: Option<OffsetDateTime>,
    /// Before.
    pub to: Option<OffsetDateTime>,
}

impl Window {
    pub(crate) fn contains(&self, at: OffsetDateTime) -> bool {
        self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at < to)
    }
}

/// Everything kept about one license in a window: its events, its genuine exchanges and, apart,
/// the requests refused that named it (all with payloads).
#[derive(Debug)]
pub(crate) struct Evidence {
    pub(crate) events: Vec<RecordedEvent>,
    pub(crate) exchanges: Vec<StoredExchange>,
    pub(crate) refusals: Vec<StoredExchange>,
}

impl Evidence {
    /// Whether the window holds more genuine exchanges than were read.
    pub(crate) fn exchanges_truncated(&self) -> bool {
        self.exchanges.len() as i64 >= MAX_EXCHANGES
    }

    /// Whether the window holds more refusals than were read.
    pub(crate) fn refusals_truncated(&self) -> bool {
        self.refusals.len() as i64 >= MAX_REFUSALS
    }
}

/// The most exchanges one ledger or pack holds; narrow the window for more.
pub(crate) const MAX_EXCHANGES: i64 = 1000;

/// The most refusals one ledger or pack holds beside its exchanges (the earliest in the window):
/// anyone can send refusals naming a license, so they have a window of their own.
pub(crate) const MAX_REFUSALS: i64 = 100;

/// A license's genuine exchanges and its refusals in one window, each under its own limit.
async fn exchanges_of(
    store: &Store,
    code: &str,
    sandbox: bool,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
) -> Result<(Vec<StoredExchange>, Vec<StoredExchange>), GatherError> {
    let filter = |refusals, limit| ExchangeFilter {
        license: Some(code.to_owned()),
        sandbox: Some(sandbox),
        refusals: Some(refusals),
        from,
        to,
        limit,
        with_payloads: true,
        ..ExchangeFilter::default()
    };
    let (genuine, refused) = (filter(false, MAX_EXCHANGES), filter(true, MAX_REFUSALS));
    let (genuine, refused) =
        futures_util::future::join(store.exchanges(&genuine), store.exchanges(&refused)).await;
    Ok((genuine?, refused?))
}

/// Why a license's evidence cannot be gathered.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// No events for that code (or it cannot be a code).
    #[error("no license {0}")]
    UnknownLicense(String),
    /// The store cannot answer.
    #[error(transparent)]
    Unavailable(#[from] licensing_store::StoreError),
}

/// Reads one license's events and exchanges in `window`.
pub(crate) async fn gather(
    store: &Store,
    code: &str,
    window: &Window,
) -> Result<Evidence, GatherError> {
    let unknown = || GatherError::UnknownLicense(code.to_owned());
    let license = licensing_domain::LicenseCode::parse(code).map_err(|_| unknown())?;
    let events = store.load(&license.stream_name(window.sandbox)).await?;
    if events.is_empty() {
        return Err(unknown());
    }
    let (exchanges, refusals) =
        exchanges_of(store, code, window.sandbox, window.from, window.to).await?;
    Ok(Evidence {
        events: events
            .into_iter()
            .filter(|e| window.contains(e.recorded_at))
            .collect(),
        exchanges,
        refusals,
    })
}

/// The newest `last` events of one license up to the window's end, and its exchanges since the
/// oldest of them (a page of a long history: the console's license page).
pub(crate) async fn gather_recent(
    store: &Store,
    code: &str,
    window: &Window,
    last: i64,
) -> Result<Evidence, GatherError> {
    let unknown = || GatherError::UnknownLicense(code.to_owned());
    let license = licensing_domain::LicenseCode::parse(code).map_err(|_| unknown())?;
    let until = window.to.map(|to| to - time::Duration::microseconds(1));
    let events = store
        .load_tail(&license.stream_name(window.sandbox), last, until)
        .await?;
    let Some(first) = events.first() else {
        return Err(unknown());
    };
    let from = if first.stream_version == 1 {
        None
    } else {
        Some(first.recorded_at)
    };
    let (exchanges, refusals) = exchanges_of(store, code, window.sandbox, from, window.to).await?;
    Ok(Evidence {
        events,
        exchanges,
        refusals,
    })
}

/// A refusal as the ledger lists it, apart from the three columns: when, what was refused and why.
pub(crate) fn refusal_json(stored: &StoredExchange) -> Value {
    let e = &stored.exchange;
    json!({
        "at": rfc3339(Some(e.at)),
        "exchange_id": e.id,
        "outcome": e.outcome,
        "summary": refusal_summary(stored),
    })
}

/// One line for a refusal: the activity its body names, if any, and why it was refused.
pub(crate) fn refusal_summary(stored: &StoredExchange) -> String {
    let e = &stored.exchange;
    // The activity is whatever an unverified caller wrote: a short prefix of it.
    let activity: String = activity(&e.request).chars().take(64).collect();
    format!(
        "{activity} (verification: {}, result {})",
        text(&e.request_meta, "verification"),
        text(&e.response_meta, "result_code")
    )
}
