//! A batch of commands, one transaction: deduplicate, decide, append, remember the replies.

use std::collections::{HashMap, HashSet};

use futures_util::future::join;
use koogallery::callback::ResultCode;
use licensing_domain::{self as domain, License, Rejection};
use licensing_messages::event_codec;
use licensing_messages::{
    CallbackCommand, CommandBody, CommandEnvelope, Interpretation, LicenseSummary, Reply,
};
use licensing_store::{
    AppendOutcome, EventMetadata, Exchange, InboxKeys, InboxLookup, InboxOutcome, NewEvent, Store,
    StoreError, StreamAppend, UnitOfWork, Upcasters,
};

use crate::evidence;
use time::OffsetDateTime;
use uuid::Uuid;

/// Why a command could not be applied now.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// PostgreSQL is unavailable: try again later, keep the message.
    #[error(transparent)]
    Unavailable(StoreError),
    /// The stream moved under us (another writer): apply again at once.
    #[error("the stream {0} moved during the command; retrying")]
    Conflict(String),
    /// Something that retrying will not fix: the message goes to the dead-letter queue, with
    /// `reason` (`unreadable_stream`, `sql_bug`, `stored_reply`, `store_invariant`, `panic`) first
    /// in its failure header.
    #[error("{reason}: {detail}")]
    Poison {
        /// The kind of failure, also the dead-letter metric's label.
        reason: &'static str,
        /// What exactly.
        detail: String,
    },
}

impl ApplyError {
    fn poison(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::Poison {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for ApplyError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Unavailable(error),
            StoreError::Database(detail) => Self::poison("sql_bug", detail),
            StoreError::Decode(detail) => Self::poison("unreadable_stream", detail),
        }
    }
}

/// How a command ended: the `outcome` label of the metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Decided, with events appended.
    Applied,
    /// Decided, nothing to change.
    Unchanged,
    /// A callback with the content of one already answered: its first answer.
    Repeated,
    /// The same message again (a broker redelivery, an `Idempotency-Key` repeat): its reply.
    Redelivered,
    /// A callback nonce seen before: refused (`000001`).
    ReplayedNonce,
    /// Refused by the license's rules.
    Rejected,
    /// Not a valid command.
    Invalid,
    /// An `Idempotency-Key` reused with another body.
    IdempotencyKeyReused,
    /// An evidence record stored (D20).
    Recorded,
}

impl Outcome {
    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Repeated => "repeated",
            Self::Redelivered => "redelivered",
            Self::ReplayedNonce => "replayed_nonce",
            Self::Rejected => "rejected",
            Self::Invalid => "invalid",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Recorded => "recorded",
        }
    }
}

/// How a command ended, for the reply and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The reply (stored; a redelivery or a repeat gets the same).
    pub reply: Reply,
    /// How it ended.
    pub outcome: Outcome,
    /// Events appended.
    pub events: usize,
}

fn summary(state: &License) -> LicenseSummary {
    LicenseSummary {
        license: state
            .code
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        sandbox: state.sandbox,
        status: state.status().as_str().to_owned(),
        expire_time: state.expire.as_ref().map(|e| e.raw.clone()),
        version: state.version,
        access_mode: state
            .code
            .is_some()
            .then(|| state.access().mode.as_str().to_owned()),
        access_until_ms: state.access().until.map(domain::Timestamp::as_millis),
        data_kept_until_ms: state
            .access()
            .data_kept_until
            .map(domain::Timestamp::as_millis),
    }
}

fn rejection_code(rejection: &Rejection) -> &'static str {
    match rejection {
        Rejection::UnknownLicense => "unknown_license",
        Rejection::Released => "released",
        Rejection::NotActivated => "not_activated",
        Rejection::Frozen => "frozen",
        Rejection::NoDrift => "no_drift",
        Rejection::SandboxMismatch | Rejection::WrongLicense => "invalid",
    }
}

/// Licenses' states as of their last committed batch in this process, so that a command on a
/// license with a long history loads only the events after the kept version (normally none)
/// instead of folding the whole stream: a command's work does not grow with the license's
/// history. A kept state is only a starting point: the events after its version are always
/// loaded and folded, so another processor's appends (a shard taken over and given back) are
/// seen; a state is kept only once its batch has committed. At most `capacity` are kept (all are
/// dropped when that is passed, and the next batches fold their streams in full).
#[derive(Debug)]
pub struct KeptStates {
    states: std::sync::Mutex<HashMap<String, License>>,
    capacity: usize,
}

impl KeptStates {
    /// Keeps at most `capacity` states (0: none, every batch folds its streams in full).
    pub fn new(capacity: usize) -> Self {
        Self {
            states: std::sync::Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, License>> {
        // A panic elsewhere while holding it leaves whole states behind: they stay usable.
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The kept state of each of `streams` that has one.
    fn get(&self, streams: &[String]) -> HashMap<String, License> {
        let kept = self.lock();
        streams
            .iter()
            .filter_map(|s| kept.get(s).map(|state| (s.clone(), state.clone())))
            .collect()
    }

    /// Keeps the states a batch committed.
    fn keep(&self, states: HashMap<String, License>) {
        if self.capacity == 0 {
            return;
        }
        let mut kept = self.lock();
        if kept.len() + states.len() > self.capacity {
            kept.clear();
        }
        kept.extend(states);
    }

    /// Drops the kept states of `streams`.
    fn forget(&self, streams: &[String]) {
        let mut kept = self.lock();
        for stream in streams {
            kept.remove(stream);
        }
    }

    /// The kept state of `stream`, if any (tests compare it with a full fold).
    pub fn state(&self, stream: &str) -> Option<License> {
        self.get(&[stream.to_owned()]).remove(stream)
    }
}

/// Applies a batch of commands, in their order, in one transaction of three round trips: the inbox
/// lookup and the load of their streams after the states `kept` of them (`lookup`); the decisions
/// in memory, each command seeing the ones before it (`decide`); the append and the inbox write,
/// then the commit (`write`), after which the batch's states are kept. `now` is the processing
/// time (nonce expiry). Any error rolls the whole batch back; the caller retries it, or applies it
/// in halves to isolate a poison command.
pub async fn apply_batch(
    store: &Store,
    kept: &KeptStates,
    how: &Interpretation,
    nonce_ttl: time::Duration,
    envelopes: &[&CommandEnvelope],
    now: OffsetDateTime,
) -> Result<Vec<Applied>, ApplyError> {
    let unit = store.begin(Upcasters::new()).await?;
    let (read, commands) = Read::of(envelopes, how);
    let applying = async {
        let (known, states, probe) = lookup(&unit, kept, envelopes, &read, now).await?;
        let loaded = Loaded {
            known,
            states,
            probe,
        };
        let batch = decide(envelopes, &read, commands, loaded, nonce_ttl, now)?;
        write(unit, envelopes, batch, now).await
    };
    match applying.await {
        Ok((applied, states)) => {
            kept.keep(states);
            Ok(applied)
        }
        // Whatever failed, the next attempt folds these streams in full: a kept state can never
        // be the reason a batch keeps failing (say, a stream an operator repaired under it).
        Err(e) => {
            kept.forget(&read.stream_ids);
            Err(e)
        }
    }
}

/// What a batch's envelopes say, read once: their callbacks, content keys and the streams their
/// domain commands touch.
struct Read<'a> {
    callbacks: Vec<Option<&'a CallbackCommand>>,
    content_keys: Vec<Option<String>>,
    /// Each callback's signature key, a replay key beside its nonce (D5).
    signature_keys: Vec<Option<String>>,
    stream_ids: Vec<String>,
    /// The freeze period the decisions use.
    policy: domain::Policy,
    /// The market zone's offset in minutes (half-days of the marketplace's probes).
    market_offset_minutes: i32,
}

/// Each envelope's domain command, or why it is not one.
type Commands = Vec<Result<domain::Command, String>>;

impl<'a> Read<'a> {
    fn of(envelopes: &[&'a CommandEnvelope], how: &Interpretation) -> (Self, Commands) {
        let callbacks: Vec<Option<&CallbackCommand>> = envelopes
            .iter()
            .map(|e| match &e.command {
                CommandBody::Callback(c) => Some(c),
                _ => None,
            })
            .collect();
        let content_keys = callbacks
            .iter()
            .map(|c| c.and_then(CallbackCommand::content_key))
            .collect();
        let signature_keys = callbacks
            .iter()
            .map(|c| c.and_then(CallbackCommand::signature_key))
            .collect();
        let commands: Commands = envelopes
            .iter()
            .map(|e| e.to_domain(how).map_err(|invalid| invalid.to_string()))
            .collect();
        let mut stream_ids: Vec<String> = commands
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|c| c.license.stream_name(c.sandbox))
            .collect();
        // The probe log takes the watchdog's runs and the marketplace's own probes (D21).
        let probe_log = envelopes.iter().zip(&callbacks).any(|(e, c)| {
            matches!(e.command, CommandBody::RecordProbeRun { .. })
                || c.is_some_and(is_marketplace_probe)
        });
        if probe_log {
            stream_ids.push(domain::PROBE_STREAM.to_owned());
        }
        stream_ids.sort_unstable();
        stream_ids.dedup();
        let read = Self {
            callbacks,
            content_keys,
            signature_keys,
            stream_ids,
            policy: how.policy,
            market_offset_minutes: how.market_zone.whole_minutes().into(),
        };
        (read, commands)
    }
}

/// Whether a callback is a probe of the marketplace's own: test traffic (`testFlag = 1`) not sent
/// by the probe watchdog or `koogallery probe` (their `User-Agent`).
fn is_marketplace_probe(callback: &CallbackCommand) -> bool {
    callback.request.test_flag().is_test()
        && !callback
            .seen
            .as_ref()
            .and_then(|s| s.user_agent.as_deref())
            .is_some_and(|ua| ua.starts_with(koogallery::probe::PROBE_USER_AGENT))
}

/// The first round trip (with the BEGIN): everything the inbox knows of the commands, and the
/// state of every stream they touch.
async fn lookup(
    unit: &UnitOfWork,
    kept: &KeptStates,
    envelopes: &[&CommandEnvelope],
    read: &Read<'_>,
    now: OffsetDateTime,
) -> Result<(Vec<InboxLookup>, HashMap<String, License>, domain::ProbeLog), ApplyError> {
    let keys: Vec<InboxKeys<'_>> = envelopes
        .iter()
        .zip(&read.callbacks)
        .zip(&read.content_keys)
        .zip(&read.signature_keys)
        .map(|(((envelope, callback), key), signature)| InboxKeys {
            message_id: envelope.message_id,
            nonce: callback.map(|c| c.nonce.as_str()),
            signature_key: signature.as_deref(),
            content_key: key.as_deref(),
        })
        .collect();
    let mut states = kept.get(&read.stream_ids);
    let after: Vec<(&str, i64)> = read
        .stream_ids
        .iter()
        .map(|s| {
            let version = states.get(s).map_or(0, |state| state.version);
            (s.as_str(), i64::try_from(version).unwrap_or(0))
        })
        .collect();
    let (known, loaded) = join(unit.inbox_lookup(&keys, now), unit.load_many_after(&after)).await;
    let (known, mut loaded) = (known?, loaded?);
    // A kept state that is not exactly the stream's prefix would be a bug: fold that stream in
    // full instead (one more round trip, never expected).
    let broken: Vec<String> = loaded
        .iter()
        .filter(|(stream, events)| {
            let version = states.get(*stream).map_or(0, |state| state.version);
            events
                .first()
                .is_some_and(|e| u64::try_from(e.stream_version).ok() != Some(version + 1))
        })
        .map(|(stream, _)| stream.clone())
        .collect();
    if !broken.is_empty() {
        tracing::error!(streams = ?broken, "a kept state is not its stream's prefix; folding in full");
        let whole: Vec<(&str, i64)> = broken.iter().map(|s| (s.as_str(), 0)).collect();
        loaded.extend(unit.load_many_after(&whole).await?);
        for stream in &broken {
            states.remove(stream);
        }
    }
    let mut probe = domain::ProbeLog::default();
    for (stream, events) in loaded {
        if stream == domain::PROBE_STREAM {
            for event in &events {
                let decoded = event_codec::decode_probe(
                    &event.event_type,
                    event.schema_version,
                    &event.payload,
                )
                .map_err(|e| {
                    ApplyError::poison("unreadable_stream", format!("stream {stream}: {e}"))
                })?;
                probe = probe.evolve(&decoded);
            }
            continue;
        }
        let mut state = states.remove(&stream).unwrap_or_default();
        for event in &events {
            let decoded =
                event_codec::decode(&event.event_type, event.schema_version, &event.payload)
                    .map_err(|e| {
                        ApplyError::poison("unreadable_stream", format!("stream {stream}: {e}"))
                    })?;
            state = domain::evolve(state, &decoded);
        }
        states.insert(stream, state);
    }
    Ok((known, states, probe))
}

/// Decides each command in order, against the state the ones before it left: the stored reply of
/// a redelivery, a refusal for a replayed nonce, the first answer of a repeated callback, else the
/// domain's decision with its events queued.
fn decide<'a>(
    envelopes: &[&CommandEnvelope],
    read: &'a Read<'a>,
    commands: Commands,
    loaded: Loaded,
    nonce_ttl: time::Duration,
    now: OffsetDateTime,
) -> Result<Batch<'a>, ApplyError> {
    let (callbacks, content_keys) = (&read.callbacks, &read.content_keys);
    let Loaded {
        known,
        states,
        probe,
    } = loaded;
    let mut batch = Batch {
        results: Vec::with_capacity(envelopes.len()),
        messages: HashMap::new(),
        nonces: HashSet::new(),
        answered: HashMap::new(),
        states,
        appends: Vec::new(),
        record: Vec::new(),
        exchanges: Vec::new(),
        policy: read.policy,
        probe,
    };
    for (i, (envelope, command)) in envelopes.iter().zip(commands).enumerate() {
        let (callback, key) = (callbacks[i], content_keys[i].as_deref());
        if let Some(stored) = known[i].processed_reply.clone() {
            let first_hash = stored.get(REQUEST_HASH).and_then(|h| h.as_str());
            let applied = if reused_key(envelope, first_hash) {
                key_reused()
            } else {
                finish(stored_reply(stored)?, Outcome::Redelivered, 0)
            };
            batch.results.push(applied);
            continue;
        }
        // The same message twice in one batch: the second is a redelivery of the first.
        if let Some(&first) = batch.messages.get(&envelope.message_id) {
            let applied = if reused_key(envelope, envelopes[first].request_hash.as_deref()) {
                key_reused()
            } else {
                finish(batch.results[first].reply.clone(), Outcome::Redelivered, 0)
            };
            batch.results.push(applied);
            continue;
        }
        batch.messages.insert(envelope.message_id, i);
        let nonce = callback.map(|c| c.nonce.as_str());
        let signature = read.signature_keys[i].as_deref();
        let replayed = nonce.is_some_and(|n| {
            known[i].nonce_seen
                || batch.nonces.contains(n)
                || signature.is_some_and(|s| batch.nonces.contains(s))
        });
        let applied = if replayed {
            // The same generic answer as every other verification refusal; the outcome
            // `replayed_nonce` names the reason in the log and the metrics.
            finish(
                Reply::Callback(koogallery::callback::CallbackResponse::new(
                    ResultCode::AuthenticationFailed,
                )),
                Outcome::ReplayedNonce,
                0,
            )
        } else if let (Some(_), Some(stored)) = (callback, known[i].callback_reply.clone()) {
            finish(stored_reply(stored)?, Outcome::Repeated, 0)
        } else if let Some(&first) = key.and_then(|k| batch.answered.get(k)) {
            finish(batch.results[first].reply.clone(), Outcome::Repeated, 0)
        } else if matches!(envelope.command, CommandBody::RecordInbound(_)) {
            finish(Reply::Recorded, Outcome::Recorded, 0)
        } else if let CommandBody::RecordProbeRun { cases } = &envelope.command {
            batch.record_probe_run(envelope, cases)
        } else {
            batch.decide(envelope, command)?
        };
        if let Some(callback) = callback.filter(|c| !replayed && is_marketplace_probe(c))
            && matches!(&applied.reply, Reply::Callback(a) if a.result_code == ResultCode::Success)
        {
            batch.see_marketplace(envelope, callback, read.market_offset_minutes);
        }
        // Only a success is final for a callback's content; a refusal (strict mode's 000003) is
        // decided again on retry.
        let final_answer = matches!(applied.outcome, Outcome::Applied | Outcome::Unchanged);
        let key = key.filter(|_| final_answer);
        if let Some(key) = key {
            batch.answered.insert(key, i);
        }
        let nonce = nonce.filter(|_| !replayed);
        let signature = signature.filter(|_| nonce.is_some());
        batch.nonces.extend(nonce.into_iter().chain(signature));
        batch.record.push(RecordEntry {
            index: i,
            nonce: nonce.map(|n| (n, now + nonce_ttl)),
            signature_key: signature,
            content_key: key,
        });
        // Every HTTP request is evidence, a repeat or a replay too (a redelivered message is
        // stored already).
        match &envelope.command {
            CommandBody::Callback(c) if replayed => {
                batch
                    .exchanges
                    .push(evidence::replayed(envelope, c, &applied.reply, now));
            }
            CommandBody::Callback(c) => {
                batch
                    .exchanges
                    .push(evidence::decided(envelope, c, &applied.reply, now));
            }
            CommandBody::RecordInbound(r) => batch.exchanges.push(evidence::undecided(envelope, r)),
            CommandBody::RecordActivation { attempts, .. }
            | CommandBody::RecordHeartbeat { attempts, .. } => batch
                .exchanges
                .extend(attempts.iter().map(|a| evidence::outbound(envelope, a))),
            _ => {}
        }
        batch.results.push(applied);
    }

    Ok(batch)
}

/// The second round trip, the append and everything the inbox must remember, then the commit.
async fn write(
    unit: UnitOfWork,
    envelopes: &[&CommandEnvelope],
    batch: Batch<'_>,
    now: OffsetDateTime,
) -> Result<(Vec<Applied>, HashMap<String, License>), ApplyError> {
    // One round trip for the append and everything the inbox must remember.
    let replies: Vec<serde_json::Value> = batch
        .record
        .iter()
        .map(|entry| {
            let mut reply = batch.results[entry.index].reply.to_value();
            if let (Some(hash), Some(object)) =
                (&envelopes[entry.index].request_hash, reply.as_object_mut())
            {
                object.insert(REQUEST_HASH.to_owned(), hash.clone().into());
            }
            reply
        })
        .collect();
    let outcomes: Vec<InboxOutcome<'_>> = batch
        .record
        .iter()
        .zip(&replies)
        .map(|(entry, reply)| InboxOutcome {
            message_id: envelopes[entry.index].message_id,
            reply,
            nonce: entry.nonce,
            signature_key: entry.signature_key,
            content_key: entry.content_key,
        })
        .collect();
    let appending = async {
        if batch.appends.is_empty() {
            Ok(AppendOutcome::Appended {
                positions: Vec::new(),
            })
        } else {
            unit.append(&batch.appends).await
        }
    };
    let (appended, refused, recorded) = futures_util::future::join3(
        appending,
        unit.record_outcomes(&outcomes, now),
        unit.record_exchanges(&batch.exchanges),
    )
    .await;
    // A conflict aborts the transaction, failing the inbox write sent with it: look at it first.
    match appended? {
        AppendOutcome::Appended { .. } => {}
        AppendOutcome::Conflict { stream_id } => {
            unit.rollback().await?;
            return Err(ApplyError::Conflict(stream_id));
        }
        AppendOutcome::Duplicate => {
            return Err(ApplyError::poison(
                "store_invariant",
                "fresh event ids reported as duplicates",
            ));
        }
    }
    let refused = refused?;
    recorded?;
    if !refused.is_empty() {
        // Another processor took a nonce (or answered a content) meanwhile: start over, it will
        // be seen.
        unit.rollback().await?;
        return Err(ApplyError::Conflict(refused.join(", ")));
    }
    unit.commit().await?;
    Ok((batch.results, batch.states))
}

/// Where a stored reply keeps the hash of the request that produced it.
const REQUEST_HASH: &str = "request_hash";

/// Whether `envelope` repeats an `Idempotency-Key` (same message id) with another body than the
/// request that first used it.
fn reused_key(envelope: &CommandEnvelope, first_hash: Option<&str>) -> bool {
    matches!((envelope.request_hash.as_deref(), first_hash), (Some(ours), Some(first)) if ours != first)
}

fn key_reused() -> Applied {
    finish(
        Reply::Rejected {
            code: "idempotency_key_reused".into(),
            message: "this Idempotency-Key was used with another request body".into(),
            license: None,
        },
        Outcome::IdempotencyKeyReused,
        0,
    )
}

fn stored_reply(value: serde_json::Value) -> Result<Reply, ApplyError> {
    serde_json::from_value::<Reply>(value)
        .map_err(|e| ApplyError::poison("stored_reply", e.to_string()))
}

fn finish(reply: Reply, outcome: Outcome, events: usize) -> Applied {
    Applied {
        reply,
        outcome,
        events,
    }
}

/// A batch being decided: the results so far and what they will write.
struct Batch<'a> {
    results: Vec<Applied>,
    /// Message id → the index of its first occurrence.
    messages: HashMap<Uuid, usize>,
    /// Replay keys (nonces and signature keys) used by earlier commands of the batch.
    nonces: HashSet<&'a str>,
    /// Content key → the index of the command whose answer is final for it.
    answered: HashMap<&'a str, usize>,
    /// Each loaded stream's state, including the batch's own decisions so far.
    states: HashMap<String, License>,
    /// The batch's appends, one per command that produced events, in command order.
    appends: Vec<StreamAppend>,
    /// What the inbox remembers, per command.
    record: Vec<RecordEntry<'a>>,
    /// The evidence records of the batch's callbacks (D20).
    exchanges: Vec<Exchange>,
    /// The freeze period (D22).
    policy: domain::Policy,
    /// The probe log, with the batch's own events so far (D21).
    probe: domain::ProbeLog,
}

/// What the first round trip found.
struct Loaded {
    /// What the inbox knows of each command.
    known: Vec<InboxLookup>,
    /// The state of each license stream the commands touch.
    states: HashMap<String, License>,
    /// The probe log, when a command needs it (else empty).
    probe: domain::ProbeLog,
}

/// What the inbox remembers of one command of a batch.
struct RecordEntry<'a> {
    /// The command's index in the batch.
    index: usize,
    /// A callback's nonce with its expiry.
    nonce: Option<(&'a str, OffsetDateTime)>,
    /// A callback's signature key, kept as long as the nonce.
    signature_key: Option<&'a str>,
    /// A callback's content key, when its answer is final.
    content_key: Option<&'a str>,
}

impl Batch<'_> {
    /// Records a watchdog run on the probe log: one event per case (none when the run is
    /// recorded already).
    fn record_probe_run(
        &mut self,
        envelope: &CommandEnvelope,
        cases: &[licensing_messages::ProbeCaseV1],
    ) -> Applied {
        let run_at = domain::Timestamp::from_millis(envelope.received_at_ms);
        let runs = cases
            .iter()
            .map(|c| domain::CaseRun {
                run_at,
                case: c.case.clone(),
                http_status: c.http_status,
                answer: c.answer.clone(),
                latency_ms: c.latency_ms,
                error: c.error.clone(),
            })
            .collect();
        let events = self.probe.record_run(run_at, runs);
        let count = events.len();
        self.append_probe(envelope, events);
        let outcome = if count == 0 {
            Outcome::Unchanged
        } else {
            Outcome::Applied
        };
        finish(Reply::Recorded, outcome, count)
    }

    /// Records a probe of the marketplace's own, at most once per half-day of the market zone.
    fn see_marketplace(
        &mut self,
        envelope: &CommandEnvelope,
        callback: &CallbackCommand,
        offset_minutes: i32,
    ) {
        let seen = domain::MarketplaceProbeSeen {
            at: domain::Timestamp::from_millis(envelope.received_at_ms),
            license: callback.request.license().to_owned(),
            activity: callback.request.activity().to_owned(),
        };
        if let Some(event) = self.probe.see_marketplace(seen, offset_minutes) {
            self.append_probe(envelope, vec![event]);
        }
    }

    fn append_probe(&mut self, envelope: &CommandEnvelope, events: Vec<domain::ProbeEvent>) {
        if events.is_empty() {
            return;
        }
        let expected_version = self.probe.version as i64;
        for event in &events {
            self.probe = std::mem::take(&mut self.probe).evolve(event);
        }
        self.appends.push(StreamAppend {
            stream_id: domain::PROBE_STREAM.to_owned(),
            expected_version,
            events: new_events(envelope, events.iter().map(event_codec::encode_probe)),
        });
    }

    /// Decides one command against its stream's state so far and queues its events.
    fn decide(
        &mut self,
        envelope: &CommandEnvelope,
        command: Result<domain::Command, String>,
    ) -> Result<Applied, ApplyError> {
        let is_callback = matches!(envelope.command, CommandBody::Callback(_));
        let stream = command
            .as_ref()
            .ok()
            .map(|c| c.license.stream_name(c.sandbox));
        let Some(stream) = stream else {
            let (reply, outcome, _) =
                decision(&mut License::default(), is_callback, command, &self.policy);
            return Ok(finish(reply, outcome, 0));
        };
        let state = self.states.entry(stream.clone()).or_default();
        let expected_version = state.version as i64;
        let (reply, outcome, events) = decision(state, is_callback, command, &self.policy);
        if !events.is_empty() {
            self.appends.push(StreamAppend {
                stream_id: stream,
                expected_version,
                events: new_events(envelope, events.iter().map(event_codec::encode)),
            });
        }
        Ok(finish(reply, outcome, events.len()))
    }
}

/// The events to append for a command: each encoded event with the command's metadata.
fn new_events(
    envelope: &CommandEnvelope,
    encoded: impl Iterator<Item = (String, serde_json::Value)>,
) -> Vec<NewEvent> {
    let metadata = metadata(envelope);
    encoded
        .map(|(event_type, payload)| NewEvent {
            event_id: Uuid::new_v4(),
            event_type,
            schema_version: event_codec::SCHEMA_VERSION,
            payload,
            metadata: metadata.clone(),
        })
        .collect()
}

/// The metadata of the events a command produces.
fn metadata(envelope: &CommandEnvelope) -> EventMetadata {
    EventMetadata {
        causation_id: Some(envelope.message_id),
        correlation_id: Some(envelope.correlation_id),
        message_id: Some(envelope.message_id),
        source: Some(envelope.source.clone()),
        actor: envelope.actor.clone(),
        received_at_ms: Some(envelope.received_at_ms),
        exchange_id: match &envelope.command {
            CommandBody::Callback(_) => Some(envelope.message_id),
            CommandBody::RecordActivation { attempts, .. }
            | CommandBody::RecordHeartbeat { attempts, .. } => {
                attempts.last().map(|a| a.exchange_id)
            }
            _ => None,
        },
        trace_parent: envelope.trace_parent.clone(),
    }
}

/// What one command means on `state`: the reply, how it ended, and the events it produces, which
/// are already folded into `state`. The processor and the replay decide alike.
pub(crate) fn decision(
    state: &mut License,
    is_callback: bool,
    command: Result<domain::Command, String>,
    policy: &domain::Policy,
) -> (Reply, Outcome, Vec<domain::Event>) {
    let command = match command {
        Ok(command) => command,
        Err(invalid) => {
            let reply = if is_callback {
                Reply::callback(ResultCode::InvalidParameters, invalid)
            } else {
                Reply::Rejected {
                    code: "invalid".into(),
                    message: invalid,
                    license: None,
                }
            };
            return (reply, Outcome::Invalid, Vec::new());
        }
    };
    match domain::decide_with(state, command, policy) {
        Ok(events) => {
            for event in &events {
                *state = domain::evolve(std::mem::take(state), event);
            }
            let reply = if is_callback {
                Reply::callback(ResultCode::Success, "success.")
            } else {
                Reply::Applied {
                    license: summary(state),
                }
            };
            let outcome = if events.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::Applied
            };
            (reply, outcome, events)
        }
        Err(rejection) => {
            let reply = match (is_callback, &rejection) {
                (true, Rejection::UnknownLicense) => {
                    Reply::callback(ResultCode::LicenseNotFound, rejection.to_string())
                }
                (true, _) => Reply::callback(ResultCode::InvalidParameters, rejection.to_string()),
                (false, _) => Reply::Rejected {
                    code: rejection_code(&rejection).into(),
                    message: rejection.to_string(),
                    license: state.code.is_some().then(|| summary(state)),
                },
            };
            (reply, Outcome::Rejected, Vec::new())
        }
    }
}
