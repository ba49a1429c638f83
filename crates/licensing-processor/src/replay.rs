//! `licensing-processor replay`: the stored raw callbacks through today's code and settings —
//! verification with the configured keys at the recorded receive time, parsing, the decision —
//! against a shadow copy of each license's state, compared with what was recorded. Nothing is
//! written. The upgrade check a seller runs before deploying a new version against last month's
//! real traffic.

use std::collections::{BTreeMap, HashMap, HashSet};

use koogallery::callback::ResultCode;
use koogallery::market_time::unix_millis;
use koogallery::signature::Verifier;
use licensing_domain::{self as domain, License};
use licensing_messages::{
    CallbackCommand, CommandBody, CommandEnvelope, ENVELOPE_VERSION, Interpretation, Reply,
    admit_callback, event_codec,
};
use licensing_store::{
    Direction, ExchangeFilter, RecordedEvent, Store, StoreError, StoredExchange,
};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::apply::decision;

/// What to replay, and with what.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Callbacks received at or after.
    pub from: Option<OffsetDateTime>,
    /// Callbacks received before.
    pub to: Option<OffsetDateTime>,
    /// Only this license's callbacks.
    pub license: Option<String>,
    /// The configured callback keys and window.
    pub verifier: Verifier,
    /// The configured interpretation (zones, unknown-license policy).
    pub how: Interpretation,
    /// How long a nonce is remembered.
    pub nonce_ttl: time::Duration,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Callbacks replayed.
    pub replayed: usize,
    /// Records skipped: answered before a decision that never came.
    pub skipped: usize,
    /// One line per difference.
    pub differences: Vec<String>,
}

/// Every stored inbound exchange in the window, oldest first.
async fn inbound(
    store: &Store,
    options: &ReplayOptions,
) -> Result<Vec<StoredExchange>, StoreError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .exchanges(&ExchangeFilter {
                license: options.license.clone(),
                direction: Some(Direction::In),
                from: options.from,
                to: options.to,
                after,
                limit: 1000,
                with_payloads: true,
                ..ExchangeFilter::default()
            })
            .await?;
        let done = page.len() < 1000;
        after = page.last().map(|s| (s.exchange.at, s.exchange.id));
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// What the record says we decided: the processor's decision, else the answer sent.
fn recorded_code(stored: &StoredExchange) -> String {
    stored
        .exchange
        .decision
        .as_ref()
        .and_then(|d| d.get("resultCode"))
        .and_then(Value::as_str)
        .unwrap_or(&stored.exchange.outcome)
        .to_owned()
}

/// The events as `type payload` lines, to compare and to print.
fn lines(events: impl IntoIterator<Item = (String, Value)>) -> Vec<String> {
    events
        .into_iter()
        .map(|(event_type, payload)| format!("{event_type} {payload}"))
        .collect()
}

/// A license's shadow: its state as the replay goes, and its recorded events not caused by a
/// replayed callback (activation and heartbeat outcomes, usage, callbacks outside the window),
/// applied in their recorded order as the replay passes their time.
struct Shadow {
    state: License,
    background: std::vec::IntoIter<RecordedEvent>,
    next: Option<RecordedEvent>,
}

impl Shadow {
    fn new(events: &[RecordedEvent], replayed: &HashSet<Uuid>) -> Self {
        let background: Vec<RecordedEvent> = events
            .iter()
            .filter(|e| {
                !e.metadata
                    .exchange_id
                    .is_some_and(|id| replayed.contains(&id))
            })
            .cloned()
            .collect();
        let mut background = background.into_iter();
        let next = background.next();
        Self {
            state: License::default(),
            background,
            next,
        }
    }

    /// Applies the background events recorded before `at`.
    fn advance(&mut self, at: OffsetDateTime) -> Result<(), String> {
        while let Some(event) = self.next.take_if(|e| e.recorded_at < at) {
            let decoded =
                event_codec::decode(&event.event_type, event.schema_version, &event.payload)
                    .map_err(|e| e.to_string())?;
            self.state = domain::evolve(std::mem::take(&mut self.state), &decoded);
            self.next = self.background.next();
        }
        Ok(())
    }
}

/// A stream's recorded events, read once.
async fn recorded<'c>(
    store: &Store,
    cache: &'c mut HashMap<String, Vec<RecordedEvent>>,
    stream: &str,
) -> Result<&'c [RecordedEvent], StoreError> {
    if !cache.contains_key(stream) {
        let events = store.load(stream).await?;
        cache.insert(stream.to_owned(), events);
    }
    Ok(&cache[stream])
}

/// The replay's memory: each license's shadow, the nonces seen, the streams read.
struct Replayer<'a> {
    store: &'a Store,
    options: &'a ReplayOptions,
    /// The exchanges being replayed: the events they caused are not background.
    replayed: HashSet<Uuid>,
    shadows: BTreeMap<String, Shadow>,
    nonces: HashMap<String, OffsetDateTime>,
    streams: HashMap<String, Vec<RecordedEvent>>,
}

/// An answer's result code, and the events as stored (`type`, payload).
type Rerun = (String, Vec<(String, Value)>);

fn refused(code: ResultCode) -> Rerun {
    (code.as_str().to_owned(), Vec::new())
}

impl Replayer<'_> {
    /// One stored callback through today's admission and decision.
    async fn rerun(&mut self, e: &licensing_store::Exchange) -> Result<Rerun, StoreError> {
        // A body kept truncated was refused for its size; that refusal stands as it is.
        if e.request_size > e.request.len() as i64 {
            return Ok(refused(ResultCode::InvalidParameters));
        }
        let query = e.request_meta["query"].as_str().unwrap_or("");
        let content_type = e.request_meta["content_type"].as_str();
        let received_at_ms = unix_millis(e.at);
        let admitted = match admit_callback(
            query,
            content_type,
            &e.request,
            &self.options.verifier,
            received_at_ms,
        ) {
            Ok(admitted) => admitted,
            Err(refusal) => return Ok(refused(refusal.response.result_code)),
        };
        // Replay keys as the processor's inbox has them (D5): the nonce and the signature.
        let keys = [
            admitted.verified.nonce.clone(),
            format!("sig:{}", admitted.verified.signature),
        ];
        if keys
            .iter()
            .any(|key| self.nonces.get(key).is_some_and(|expires| *expires > e.at))
        {
            return Ok(refused(ResultCode::AuthenticationFailed));
        }
        for key in keys {
            self.nonces.insert(key, e.at + self.options.nonce_ttl);
        }
        let envelope = CommandEnvelope {
            v: ENVELOPE_VERSION,
            message_id: e.id,
            correlation_id: e.correlation_id.unwrap_or(e.id),
            received_at_ms,
            source: "koogallery".to_owned(),
            actor: None,
            request_hash: None,
            command: CommandBody::Callback(CallbackCommand {
                nonce: admitted.verified.nonce,
                timestamp_ms: admitted.verified.timestamp_ms,
                signature: Some(admitted.verified.signature),
                raw_query: query.to_owned(),
                raw_body: admitted.raw_body,
                seen: None,
                request: admitted.request,
            }),
            trace_parent: None,
        };
        let command = envelope
            .to_domain(&self.options.how)
            .map_err(|invalid| invalid.to_string());
        let mut scratch = License::default();
        let state = match command
            .as_ref()
            .ok()
            .map(|c| c.license.stream_name(c.sandbox))
        {
            Some(stream) => {
                let events = recorded(self.store, &mut self.streams, &stream).await?;
                let shadow = self
                    .shadows
                    .entry(stream)
                    .or_insert_with(|| Shadow::new(events, &self.replayed));
                shadow.advance(e.at).map_err(StoreError::Decode)?;
                &mut shadow.state
            }
            None => &mut scratch,
        };
        let (reply, _, events) = decision(state, true, command, &self.options.how.policy);
        let code = match reply {
            Reply::Callback(answer) => answer.result_code.as_str().to_owned(),
            other => format!("{other:?}"),
        };
        Ok((code, events.iter().map(event_codec::encode).collect()))
    }
}

/// Replays the stored callbacks of `options`' window.
pub async fn replay(store: &Store, options: &ReplayOptions) -> Result<ReplayReport, StoreError> {
    let exchanges = inbound(store, options).await?;
    let mut replayer = Replayer {
        store,
        options,
        replayed: exchanges.iter().map(|s| s.exchange.id).collect(),
        shadows: BTreeMap::new(),
        nonces: HashMap::new(),
        streams: HashMap::new(),
    };
    let mut report = ReplayReport::default();
    for stored in &exchanges {
        let e = &stored.exchange;
        // Answered before a decision that never came (the broker refused the hand-over).
        if e.decision.is_none()
            && e.request_meta.get("refusal").and_then(Value::as_str) == Some("not_decided")
        {
            report.skipped += 1;
            continue;
        }
        report.replayed += 1;
        let (answer, events) = replayer.rerun(e).await?;
        let recorded_answer = recorded_code(stored);
        let license = e.license.as_deref().unwrap_or("(no license)");
        let at =
            e.at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
        if answer != recorded_answer {
            report.differences.push(format!(
                "DIFF {at} {license} exchange {}: answer {recorded_answer} recorded, {answer} now",
                e.id
            ));
        }
        let stream = e
            .license
            .as_deref()
            .filter(|_| e.decision.is_some())
            .and_then(|code| domain::LicenseCode::parse(code).ok())
            .map(|code| code.stream_name(e.sandbox));
        let recorded_events = match stream {
            Some(stream) => lines(
                recorded(store, &mut replayer.streams, &stream)
                    .await?
                    .iter()
                    .filter(|ev| ev.metadata.exchange_id == Some(e.id))
                    .map(|ev| (ev.event_type.clone(), ev.payload.clone())),
            ),
            None => Vec::new(),
        };
        let now_events = lines(events);
        if recorded_events != now_events {
            report.differences.push(format!(
                "DIFF {at} {license} exchange {}: events [{}] recorded, [{}] now",
                e.id,
                recorded_events.join("; "),
                now_events.join("; ")
            ));
        }
    }
    Ok(report)
}
