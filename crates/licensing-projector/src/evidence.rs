//! The evidence log on the query API (D20): one exchange byte for byte, exchanges listed and
//! filtered, and one license's three-way ledger — what the marketplace said, what we concluded,
//! what we told it — in one time-ordered list.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use licensing_store::{Direction, ExchangeFilter, RecordedEvent, Store, StoredExchange};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::query::{
    QueryState, Refusal, decode_query, error, instant, rfc3339, text_filter, unauthorized,
    unavailable,
};

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
fn summary_json(stored: &StoredExchange) -> Value {
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

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The `activity` a callback body names, when it can be read.
fn activity(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.get("activity").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unreadable body".to_owned())
}

/// A short line saying what an exchange was.
fn describe(stored: &StoredExchange) -> String {
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

/// `GET /v1/exchanges/{id}`: one exchange, both payloads byte for byte.
pub(crate) async fn exchange(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &state) {
        return refused;
    }
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "unknown_exchange",
            "no such exchange",
        )
    };
    let Ok(id) = Uuid::parse_str(&path.into_inner()) else {
        return unknown();
    };
    match state.store.exchange(id).await {
        Ok(Some(stored)) => HttpResponse::Ok().json(exchange_json(&stored)),
        Ok(None) => unknown(),
        Err(e) => unavailable(&e),
    }
}

/// Filters of `GET /v1/exchanges`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangesQuery {
    license: Option<String>,
    sandbox: Option<bool>,
    direction: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
    refused: Option<bool>,
}

/// The paging cursor: the last item's time (µs since the epoch) and id.
fn cursor_of(stored: &StoredExchange) -> String {
    let e = &stored.exchange;
    format!("{}_{}", e.at.unix_timestamp_nanos() / 1000, e.id)
}

fn parse_cursor(raw: &str) -> Option<(OffsetDateTime, Uuid)> {
    let (micros, id) = raw.split_once('_')?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(micros.parse::<i128>().ok()? * 1000).ok()?;
    Some((at, Uuid::parse_str(id).ok()?))
}

/// Reads the query string of `GET /v1/exchanges`; the error names the parameter.
fn exchanges_filter(query: &str) -> Result<ExchangeFilter, String> {
    let raw: ExchangesQuery = decode_query(query)?;
    Ok(ExchangeFilter {
        license: text_filter("license", raw.license)?,
        sandbox: raw.sandbox,
        direction: raw
            .direction
            .map(|d| Direction::parse(&d).ok_or("direction must be in or out"))
            .transpose()?,
        outcome: text_filter("outcome", raw.outcome)?,
        refusals: raw.refused,
        from: instant("from", raw.from.as_ref())?,
        to: instant("to", raw.to.as_ref())?,
        after: raw
            .cursor
            .map(|c| parse_cursor(&c).ok_or("cursor is not one this API returned"))
            .transpose()?,
        limit: match raw.limit {
            None => 100,
            Some(limit @ 1..=1000) => limit,
            Some(_) => return Err("limit must be between 1 and 1000".to_owned()),
        },
        with_payloads: false,
    })
}

/// `GET /v1/exchanges`: exchanges oldest first, refused ones included, by the license their body
/// names when it can be read; paged with `next_cursor`.
pub(crate) async fn exchanges(req: HttpRequest, state: web::Data<QueryState>) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &state) {
        return refused;
    }
    let mut filter = match exchanges_filter(req.query_string()) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_query", message),
    };
    let limit = filter.limit;
    filter.limit += 1;
    match state.store.exchanges(&filter).await {
        Ok(found) => {
            let more = found.len() as i64 > limit;
            let page = &found[..found.len().min(limit as usize)];
            let next = more.then(|| page.last().map(cursor_of)).flatten();
            HttpResponse::Ok().json(json!({
                "items": page.iter().map(summary_json).collect::<Vec<_>>(),
                "next_cursor": next,
            }))
        }
        Err(e) => unavailable(&e),
    }
}

/// Query parameters of the ledger and the evidence pack.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowQuery {
    #[serde(default)]
    sandbox: bool,
    from: Option<String>,
    to: Option<String>,
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
    pub(crate) fn parse(query: &str) -> Result<Self, String> {
        let raw: WindowQuery = decode_query(query)?;
        Ok(Self {
            sandbox: raw.sandbox,
            from: instant("from", raw.from.as_ref())?,
            to: instant("to", raw.to.as_ref())?,
        })
    }

    fn contains(&self, at: OffsetDateTime) -> bool {
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

impl GatherError {
    /// What to answer: 404 for an unknown license, 503 for a store that cannot answer.
    pub(crate) fn refusal(&self) -> Refusal {
        match self {
            Self::UnknownLicense(code) => Refusal::unknown_license(code),
            Self::Unavailable(e) => Refusal::unavailable(e),
        }
    }

    fn answer(&self) -> HttpResponse {
        self.refusal().answer()
    }
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

/// Which column of the ledger an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    MarketplaceSaid,
    WeConcluded,
    WeTold,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Self::MarketplaceSaid => "marketplace_said",
            Self::WeConcluded => "we_concluded",
            Self::WeTold => "we_told",
        }
    }
}

/// One line of the ledger.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) at: OffsetDateTime,
    side: Side,
    pub(crate) kind: String,
    pub(crate) summary: String,
    pub(crate) exchange_id: Option<Uuid>,
    pub(crate) event_id: Option<Uuid>,
}

impl Entry {
    /// `marketplace_said`, `we_concluded` or `we_told`.
    pub(crate) fn side(&self) -> &'static str {
        self.side.as_str()
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "at": rfc3339(Some(self.at)),
            "side": self.side.as_str(),
            "kind": self.kind,
            "summary": self.summary,
            "exchange_id": self.exchange_id,
            "event_id": self.event_id,
        })
    }
}

/// The three columns merged in time order. A callback's answer is placed after the events it
/// caused (they commit together, just before the answer is sent).
pub(crate) fn ledger(evidence: &Evidence) -> Vec<Entry> {
    let mut entries = Vec::new();
    for event in &evidence.events {
        entries.push(Entry {
            at: event.recorded_at,
            side: Side::WeConcluded,
            kind: event.event_type.clone(),
            summary: event_summary(event),
            exchange_id: event.metadata.exchange_id,
            event_id: Some(event.event_id),
        });
    }
    for stored in &evidence.exchanges {
        let e = &stored.exchange;
        let answered = e.answered_at.unwrap_or(e.at);
        match e.direction {
            Direction::In => {
                let caused = evidence
                    .events
                    .iter()
                    .filter(|ev| ev.metadata.exchange_id == Some(e.id))
                    .map(|ev| ev.recorded_at)
                    .max();
                let activity = activity(&e.request);
                entries.push(Entry {
                    at: e.at,
                    side: Side::MarketplaceSaid,
                    kind: "callback".to_owned(),
                    summary: format!(
                        "{activity} (verification: {})",
                        text(&e.request_meta, "verification")
                    ),
                    exchange_id: Some(e.id),
                    event_id: None,
                });
                entries.push(Entry {
                    at: caused.map_or(answered, |c| c.max(answered)),
                    side: Side::WeTold,
                    kind: "callback_answer".to_owned(),
                    summary: format!(
                        "{} {}",
                        text(&e.response_meta, "result_code"),
                        text(&e.response_meta, "result_msg")
                    ),
                    exchange_id: Some(e.id),
                    event_id: None,
                });
            }
            Direction::Out => {
                let call = text(&e.request_meta, "call");
                entries.push(Entry {
                    at: e.at,
                    side: Side::WeTold,
                    kind: format!("{call}_request"),
                    summary: format!(
                        "POST {} ({} host)",
                        text(&e.request_meta, "url"),
                        text(&e.request_meta, "host")
                    ),
                    exchange_id: Some(e.id),
                    event_id: None,
                });
                entries.push(Entry {
                    at: answered,
                    side: Side::MarketplaceSaid,
                    kind: format!("{call}_answer"),
                    summary: describe(stored),
                    exchange_id: Some(e.id),
                    event_id: None,
                });
            }
        }
    }
    entries.sort_by_key(|e| (e.at, e.side));
    entries
}

/// A short line for an event: its type and the payload fields that say the most.
pub(crate) fn event_summary(event: &RecordedEvent) -> String {
    let p = &event.payload;
    let fields: Vec<String> = [
        "scene",
        "expire",
        "expire_time",
        "status",
        "ours",
        "theirs",
        "day",
        "code",
        "message",
        "order_id",
    ]
    .iter()
    .filter_map(|k| {
        p.get(*k).filter(|v| !v.is_null()).map(|v| {
            format!(
                "{k}={}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            )
        })
    })
    .collect();
    if fields.is_empty() {
        event.event_type.clone()
    } else {
        format!("{} {}", event.event_type, fields.join(" "))
    }
}

/// `GET /v1/licenses/{code}/ledger[?sandbox=true][&from=&to=]`.
pub(crate) async fn license_ledger(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &state) {
        return refused;
    }
    let code = path.into_inner();
    let window = match Window::parse(req.query_string()) {
        Ok(window) => window,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_query", message),
    };
    let evidence = match gather(&state.store, &code, &window).await {
        Ok(evidence) => evidence,
        Err(e) => return e.answer(),
    };
    HttpResponse::Ok().json(json!({
        "license": code,
        "sandbox": window.sandbox,
        "from": rfc3339(window.from),
        "to": rfc3339(window.to),
        "entries": ledger(&evidence).iter().map(Entry::to_json).collect::<Vec<_>>(),
        "exchanges_truncated": evidence.exchanges_truncated(),
        "refusals": evidence.refusals.iter().map(refusal_json).collect::<Vec<_>>(),
        "refusals_truncated": evidence.refusals_truncated(),
    }))
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

/// `GET /v1/licenses/{code}/evidence[?sandbox=true][&from=&to=]`: the dispute evidence pack.
pub(crate) async fn license_evidence(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    if let Some(refused) = unauthorized(&req, &state) {
        return refused;
    }
    let code = path.into_inner();
    let window = match Window::parse(req.query_string()) {
        Ok(window) => window,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_query", message),
    };
    pack_download(&state, &code, &window).await
}

/// The evidence pack as a download (the query API and the console).
pub(crate) async fn pack_download(state: &QueryState, code: &str, window: &Window) -> HttpResponse {
    match evidence_pack(&state.store, code, window, state.verifier.as_ref()).await {
        Ok(zip) => HttpResponse::Ok()
            .content_type("application/zip")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"evidence-{code}.zip\""),
            ))
            .body(zip),
        Err(e) => e.answer(),
    }
}

/// The evidence pack of `code` over `window` as `.zip` bytes (the query API and
/// `licensing-projector evidence`).
pub async fn evidence_pack(
    store: &Store,
    code: &str,
    window: &Window,
    verifier: Option<&koogallery::signature::Verifier>,
) -> Result<Vec<u8>, GatherError> {
    let evidence = gather(store, code, window).await?;
    Ok(crate::pack::build(
        code,
        window,
        &evidence,
        verifier,
        OffsetDateTime::now_utc(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let stored = StoredExchange {
            exchange: licensing_store::Exchange {
                id: Uuid::new_v4(),
                at: OffsetDateTime::from_unix_timestamp_nanos(1_790_000_000_123_456_000).unwrap(),
                direction: Direction::In,
                license: None,
                sandbox: false,
                correlation_id: None,
                message_id: None,
                outcome: "000001".into(),
                request: Vec::new(),
                request_size: 0,
                request_meta: json!({}),
                response: None,
                response_meta: json!({}),
                answered_at: None,
                decision: None,
            },
            request_sha256: Vec::new(),
            response_sha256: None,
        };
        let cursor = cursor_of(&stored);
        assert_eq!(
            parse_cursor(&cursor),
            Some((stored.exchange.at, stored.exchange.id))
        );
        let error = exchanges_filter("cursor=nope").unwrap_err();
        assert!(error.contains("cursor"), "{error}");
        let error = exchanges_filter("direction=sideways").unwrap_err();
        assert!(error.contains("direction"), "{error}");
        assert!(exchanges_filter("bogus=1").is_err());
        let ok = exchanges_filter("license=PL1&direction=in&outcome=000001&limit=5").unwrap();
        assert_eq!(
            (ok.license.as_deref(), ok.direction, ok.limit),
            (Some("PL1"), Some(Direction::In), 5)
        );
    }
}
