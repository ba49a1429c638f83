//! The view follower: after each batch of events, the affected licenses' rows are brought up to
//! date, and the calls they owe the marketplace are (re)scheduled, in the same transaction as the
//! checkpoint. A license's state is kept in memory after each batch, so the next batch folds only
//! its new events; when the kept state is not exactly one event behind (a restart, a rolled-back
//! batch, an evicted entry), the license is replayed from its stream instead.

use std::collections::{BTreeMap, HashMap};

use licensing_domain::{self as domain, ActivationStatus, Day, License, NoticePolicy, Timestamp};
use licensing_messages::event_codec;
use licensing_runtime::Clock;
use licensing_runtime::trace::{Span, SpanKind};
use licensing_store::{
    GenericClient, Handler, RecordedEvent, StoreError, Transaction, Upcasters, load_streams,
};
use time::{OffsetDateTime, UtcOffset};

use crate::read_model::ReadModelError;
use crate::read_model::fold::{fold, replay};
use crate::read_model::snapshots;
use crate::read_model::time::ts;

/// Licenses whose state is kept between batches, at most.
const KEPT_STATES: usize = 100_000;

/// Keeps license views and outbound jobs.
#[derive(Debug, Clone)]
pub struct Views {
    /// Zone of the heartbeat's calendar day.
    day_zone: UtcOffset,
    /// `thirdPartyAccount` when no usage named one.
    default_account: String,
    /// The state of each recently changed license, by stream, as of the last batch handled.
    kept: HashMap<String, License>,
    /// The notice thresholds, for the access schedule (D23).
    notices: NoticePolicy,
    /// The clock of time-driven work.
    clock: Clock,
    /// The market zone (the probe log's days).
    market_zone: UtcOffset,
}

impl Views {
    /// A view follower's handler.
    pub fn new(
        day_zone: UtcOffset,
        market_zone: UtcOffset,
        default_account: String,
        notices: NoticePolicy,
        clock: Clock,
    ) -> Self {
        Self {
            day_zone,
            market_zone,
            default_account,
            kept: HashMap::new(),
            notices,
            clock,
        }
    }
}

/// When the clock must next judge a license: now when the mode the clock gives differs from the
/// recorded one (a stream from before access modes), else what the license waits for.
pub(crate) fn access_due(
    state: &License,
    notices: &NoticePolicy,
    now: Timestamp,
) -> Option<Timestamp> {
    if state.access_at(now, &domain::Policy::default()).mode != state.access().mode {
        return Some(now);
    }
    state.next_due(notices)
}

/// Keeps the access schedule equal to `due`: each license's row set to its instant, or deleted.
async fn write_schedule(
    tx: &Transaction<'_>,
    due: &[(String, Option<OffsetDateTime>)],
) -> Result<(), ReadModelError> {
    let (set, clear): (Vec<_>, Vec<_>) = due.iter().partition(|(_, at)| at.is_some());
    if !set.is_empty() {
        let licenses: Vec<&str> = set.iter().map(|(l, _)| l.as_str()).collect();
        let at: Vec<OffsetDateTime> = set.iter().filter_map(|(_, at)| *at).collect();
        tx.execute(
            "INSERT INTO access_schedule (license, due_at) SELECT * FROM unnest($1::text[], $2::timestamptz[])
             ON CONFLICT (license) DO UPDATE SET due_at = EXCLUDED.due_at",
            &[&licenses, &at],
        )
        .await
        .map_err(StoreError::from)?;
    }
    if !clear.is_empty() {
        let licenses: Vec<&str> = clear.iter().map(|(l, _)| l.as_str()).collect();
        tx.execute(
            "DELETE FROM access_schedule WHERE license = ANY($1)",
            &[&licenses],
        )
        .await
        .map_err(StoreError::from)?;
    }
    Ok(())
}

fn activation_name(a: &ActivationStatus) -> (&'static str, Option<String>) {
    match a {
        ActivationStatus::NotRequested => ("not_requested", None),
        ActivationStatus::Pending => ("pending", None),
        ActivationStatus::AwaitingClaim => ("awaiting_claim", None),
        ActivationStatus::Failed(f) => ("failed", Some(format!("{}: {}", f.code, f.message))),
        ActivationStatus::Activated => ("activated", None),
    }
}

/// Writes (inserts or replaces) one license's row in `table`.
pub(crate) async fn write_view(
    client: &impl GenericClient,
    table: &str,
    state: &License,
) -> Result<(), ReadModelError> {
    write_views(client, table, std::slice::from_ref(state)).await
}

/// Writes (inserts or replaces) many licenses' rows in `table`, in one statement.
pub(crate) async fn write_views(
    client: &impl GenericClient,
    table: &str,
    states: &[License],
) -> Result<(), ReadModelError> {
    let states: Vec<&License> = states.iter().collect();
    write_view_refs(client, table, &states).await
}

/// [`write_views`] of borrowed states.
async fn write_view_refs(
    client: &impl GenericClient,
    table: &str,
    states: &[&License],
) -> Result<(), ReadModelError> {
    let states: Vec<&License> = states
        .iter()
        .copied()
        .filter(|s| s.code.is_some())
        .collect();
    if states.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&License) -> Option<String>| {
        states.iter().map(|s| f(s)).collect::<Vec<Option<String>>>()
    };
    let license = col(&|s| s.code.as_ref().map(|c| c.as_str().to_owned()));
    let sandbox: Vec<bool> = states.iter().map(|s| s.sandbox).collect();
    let status = col(&|s| Some(s.status().as_str().to_owned()));
    let product = col(&|s| s.product_id.clone());
    let order = col(&|s| s.order_id.clone());
    let expire_at: Vec<Option<OffsetDateTime>> = states
        .iter()
        .map(|s| s.expire.as_ref().map(|e| ts(e.instant)))
        .collect();
    let expire_raw = col(&|s| s.expire.as_ref().map(|e| e.raw.clone()));
    let frozen: Vec<Option<OffsetDateTime>> =
        states.iter().map(|s| s.frozen_since.map(ts)).collect();
    let release: Vec<Option<OffsetDateTime>> = states
        .iter()
        .map(|s| s.expected_release(domain::DEFAULT_FREEZE_PERIOD_MS).map(ts))
        .collect();
    let activation = col(&|s| Some(activation_name(&s.activation).0.to_owned()));
    let activation_error = col(&|s| activation_name(&s.activation).1);
    let usage: Vec<Option<i64>> = states
        .iter()
        .map(|s| s.last_usage.as_ref().map(|(d, _)| d.number()))
        .collect();
    let heartbeat: Vec<Option<i64>> = states
        .iter()
        .map(|s| s.last_heartbeat_day.map(Day::number))
        .collect();
    let market = col(&|s| s.market_status.as_ref().map(|m| m.as_str().to_owned()));
    let drift: Vec<bool> = states.iter().map(|s| s.drift.is_some()).collect();
    let access: Vec<domain::Access> = states.iter().map(|s| s.access()).collect();
    let access_mode: Vec<&str> = access.iter().map(|a| a.mode.as_str()).collect();
    let access_until: Vec<Option<OffsetDateTime>> =
        access.iter().map(|a| a.until.map(ts)).collect();
    let data_kept_until: Vec<Option<OffsetDateTime>> =
        access.iter().map(|a| a.data_kept_until.map(ts)).collect();
    let version: Vec<i64> = states.iter().map(|s| s.version as i64).collect();
    let updated: Vec<OffsetDateTime> = states
        .iter()
        .map(|s| s.updated_at.map(ts).unwrap_or(OffsetDateTime::UNIX_EPOCH))
        .collect();
    let sql = format!(
        "INSERT INTO {table} (license, sandbox, status, product_id, order_id, expire_at, expire_raw, frozen_since,
             expected_release, activation_status, activation_error, last_usage_day, last_heartbeat_day, market_status,
             drift, version, updated_at, access_mode, access_until, data_kept_until)
         SELECT * FROM unnest($1::text[], $2::bool[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[],
             $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::text[],
             $15::bool[], $16::bigint[], $17::timestamptz[], $18::text[], $19::timestamptz[], $20::timestamptz[])
         ON CONFLICT (license, sandbox) DO UPDATE SET status = EXCLUDED.status, product_id = EXCLUDED.product_id,
             order_id = EXCLUDED.order_id, expire_at = EXCLUDED.expire_at, expire_raw = EXCLUDED.expire_raw,
             frozen_since = EXCLUDED.frozen_since, expected_release = EXCLUDED.expected_release,
             activation_status = EXCLUDED.activation_status, activation_error = EXCLUDED.activation_error,
             last_usage_day = EXCLUDED.last_usage_day, last_heartbeat_day = EXCLUDED.last_heartbeat_day,
             market_status = EXCLUDED.market_status, drift = EXCLUDED.drift, version = EXCLUDED.version,
             updated_at = EXCLUDED.updated_at, access_mode = EXCLUDED.access_mode,
             access_until = EXCLUDED.access_until, data_kept_until = EXCLUDED.data_kept_until"
    );
    client
        .execute(
            &sql,
            &[
                &license,
                &sandbox,
                &status,
                &product,
                &order,
                &expire_at,
                &expire_raw,
                &frozen,
                &release,
                &activation,
                &activation_error,
                &usage,
                &heartbeat,
                &market,
                &drift,
                &version,
                &updated,
                &access_mode,
                &access_until,
                &data_kept_until,
            ],
        )
        .await
        .map_err(StoreError::from)?;
    Ok(())
}

/// What a batch owes the outbound worker, one entry per real license it touched, by column.
#[derive(Debug, Default)]
struct Jobs {
    /// Activation due: each license, attempt, real effect time, claim since, correlation id and
    /// trace context.
    activate: Vec<String>,
    activate_attempt: Vec<i32>,
    activate_real_effect: Vec<Option<String>>,
    activate_claim_since: Vec<Option<OffsetDateTime>>,
    activate_correlation: Vec<Option<uuid::Uuid>>,
    activate_trace: Vec<Option<String>>,
    /// Licenses that owe no activation.
    no_activate: Vec<String>,
    /// A heartbeat owed: each license, day, attempt, account, ip, correlation id and trace.
    heartbeat: Vec<String>,
    heartbeat_day: Vec<i64>,
    heartbeat_attempt: Vec<i32>,
    heartbeat_account: Vec<String>,
    heartbeat_ip: Vec<Option<String>>,
    heartbeat_correlation: Vec<Option<uuid::Uuid>>,
    heartbeat_trace: Vec<Option<String>>,
    /// Licenses that owe no heartbeat.
    no_heartbeat: Vec<String>,
}

impl Jobs {
    /// Keeps the outbound jobs equal to what the states owe, one statement per kind of change
    /// whatever the batch's size. A job keeps the correlation id and the trace context of the
    /// request that made it owed (a heartbeat's are replaced for a new day).
    async fn write(self, tx: &Transaction<'_>) -> Result<(), ReadModelError> {
        if !self.activate.is_empty() {
            tx.execute(
                "INSERT INTO outbound_jobs (license, kind, attempt, real_effect_time, claim_since, correlation_id, trace_parent)
                 SELECT l, 'activate', a, r, c, k, t
                   FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::uuid[], $6::text[])
                        AS j(l, a, r, c, k, t)
                 ON CONFLICT (license, kind) DO UPDATE SET attempt = EXCLUDED.attempt, real_effect_time = EXCLUDED.real_effect_time,
                     claim_since = EXCLUDED.claim_since,
                     correlation_id = coalesce(outbound_jobs.correlation_id, EXCLUDED.correlation_id),
                     trace_parent = coalesce(outbound_jobs.trace_parent, EXCLUDED.trace_parent)",
                &[
                    &self.activate,
                    &self.activate_attempt,
                    &self.activate_real_effect,
                    &self.activate_claim_since,
                    &self.activate_correlation,
                    &self.activate_trace,
                ],
            )
            .await
            .map_err(StoreError::from)?;
        }
        if !self.heartbeat.is_empty() {
            tx.execute(
                "INSERT INTO outbound_jobs (license, kind, day, attempt, account, ip, correlation_id, trace_parent)
                 SELECT l, 'heartbeat', d, a, acc, i, k, t
                   FROM unnest($1::text[], $2::bigint[], $3::int[], $4::text[], $5::text[], $6::uuid[], $7::text[])
                        AS j(l, d, a, acc, i, k, t)
                 ON CONFLICT (license, kind) DO UPDATE SET
                     tries = CASE WHEN outbound_jobs.day = EXCLUDED.day THEN outbound_jobs.tries ELSE 0 END,
                     due_at = CASE WHEN outbound_jobs.day = EXCLUDED.day THEN outbound_jobs.due_at ELSE now() END,
                     correlation_id = CASE WHEN outbound_jobs.day = EXCLUDED.day
                         THEN coalesce(outbound_jobs.correlation_id, EXCLUDED.correlation_id)
                         ELSE EXCLUDED.correlation_id END,
                     trace_parent = CASE WHEN outbound_jobs.day = EXCLUDED.day
                         THEN coalesce(outbound_jobs.trace_parent, EXCLUDED.trace_parent)
                         ELSE EXCLUDED.trace_parent END,
                     day = EXCLUDED.day, attempt = EXCLUDED.attempt, account = EXCLUDED.account, ip = EXCLUDED.ip",
                &[
                    &self.heartbeat,
                    &self.heartbeat_day,
                    &self.heartbeat_attempt,
                    &self.heartbeat_account,
                    &self.heartbeat_ip,
                    &self.heartbeat_correlation,
                    &self.heartbeat_trace,
                ],
            )
            .await
            .map_err(StoreError::from)?;
        }
        for (kind, licenses) in [
            ("activate", &self.no_activate),
            ("heartbeat", &self.no_heartbeat),
        ] {
            if !licenses.is_empty() {
                tx.execute(
                    "DELETE FROM outbound_jobs WHERE license = ANY($1) AND kind = $2",
                    &[licenses, &kind],
                )
                .await
                .map_err(StoreError::from)?;
            }
        }
        Ok(())
    }
}

impl Views {
    /// What `state` owes the outbound worker: an activate call while activation is due, a
    /// heartbeat for the day owed; none otherwise.
    fn owed(
        &self,
        jobs: &mut Jobs,
        today: Day,
        state: &License,
        code: &str,
        correlation: Option<uuid::Uuid>,
        trace: Option<&str>,
    ) {
        if state.activation_due() {
            let real_effect = state
                .real_effect_time
                .map(|t| koogallery::market_time::format_market_time(ts(t), UtcOffset::UTC));
            jobs.activate.push(code.to_owned());
            jobs.activate_attempt
                .push((state.activation_attempt + 1) as i32);
            jobs.activate_real_effect.push(real_effect);
            jobs.activate_claim_since
                .push(state.awaiting_claim_since.map(ts));
            jobs.activate_correlation.push(correlation);
            jobs.activate_trace.push(trace.map(str::to_owned));
        } else {
            jobs.no_activate.push(code.to_owned());
        }
        match state.heartbeat_due(today) {
            Some(day) => {
                let attempt = state
                    .heartbeat_attempt
                    .filter(|(d, _)| *d == day)
                    .map_or(1, |(_, a)| a + 1);
                let account = state
                    .last_usage
                    .as_ref()
                    .map_or(self.default_account.clone(), |(_, a)| a.clone());
                jobs.heartbeat.push(code.to_owned());
                jobs.heartbeat_day.push(day.number());
                jobs.heartbeat_attempt.push(attempt as i32);
                jobs.heartbeat_account.push(account);
                jobs.heartbeat_ip.push(state.last_usage_ip.clone());
                jobs.heartbeat_correlation.push(correlation);
                jobs.heartbeat_trace.push(trace.map(str::to_owned));
            }
            None => jobs.no_heartbeat.push(code.to_owned()),
        }
    }
}

/// The heartbeat ledger's changes of one batch (D15), merged per license and day in event order:
/// a day of use is owed; an answer acknowledges it; a failure counts, and a permanent one ends
/// that day's calls. Written with one upsert.
#[derive(Debug, Default)]
struct HeartbeatDays(BTreeMap<(String, i64), DayChange>);

/// What a batch's events say of one day of the heartbeat ledger.
#[derive(Debug, Default)]
struct DayChange {
    used_at: Option<OffsetDateTime>,
    account: Option<String>,
    attempts: i32,
    acknowledged_at: Option<OffsetDateTime>,
    market_status: Option<String>,
    last_error: Option<String>,
    given_up: bool,
}

impl HeartbeatDays {
    /// Adds a real license's new events.
    fn add(&mut self, license: &str, new: &[&RecordedEvent]) -> Result<(), ReadModelError> {
        for recorded in new {
            if !matches!(
                recorded.event_type.as_str(),
                "usage_recorded" | "heartbeat_acknowledged" | "heartbeat_failed"
            ) {
                continue;
            }
            let event = event_codec::decode(
                &recorded.event_type,
                recorded.schema_version,
                &recorded.payload,
            )
            .map_err(|source| ReadModelError::Undecodable {
                stream: recorded.stream_id.clone(),
                source,
            })?;
            match &event {
                domain::Event::UsageRecorded(e) => {
                    let change = self
                        .0
                        .entry((license.to_owned(), e.day.number()))
                        .or_default();
                    change.used_at = change.used_at.or(Some(ts(e.at)));
                    change.account = change.account.take().or_else(|| Some(e.account.clone()));
                }
                domain::Event::HeartbeatAcknowledged(e) => {
                    let change = self
                        .0
                        .entry((license.to_owned(), e.day.number()))
                        .or_default();
                    change.attempts = change.attempts.max(e.attempt as i32);
                    change.acknowledged_at = Some(ts(e.at));
                    change.market_status = Some(e.status.as_str().to_owned());
                }
                domain::Event::HeartbeatFailed(e) => {
                    let change = self
                        .0
                        .entry((license.to_owned(), e.day.number()))
                        .or_default();
                    change.attempts = change.attempts.max(e.attempt as i32);
                    change.last_error = Some(format!("{}: {}", e.failure.code, e.failure.message));
                    change.given_up |= !e.failure.retryable;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn write(self, tx: &Transaction<'_>) -> Result<(), ReadModelError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let n = self.0.len();
        let (mut license, mut day, mut used_at, mut account, mut attempts) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut acknowledged_at, mut market_status, mut last_error, mut given_up) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((l, d), c) in self.0 {
            license.push(l);
            day.push(d);
            used_at.push(c.used_at);
            account.push(c.account);
            attempts.push(c.attempts);
            acknowledged_at.push(c.acknowledged_at);
            market_status.push(c.market_status);
            last_error.push(c.last_error);
            given_up.push(c.given_up);
        }
        tx.execute(
            "INSERT INTO heartbeat_days AS h (license, day, used_at, account, attempts, acknowledged_at,
                 market_status, last_error, given_up)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::int[],
                 $6::timestamptz[], $7::text[], $8::text[], $9::bool[])
             ON CONFLICT (license, day) DO UPDATE SET
                 used_at = coalesce(h.used_at, EXCLUDED.used_at),
                 account = coalesce(h.account, EXCLUDED.account),
                 attempts = greatest(h.attempts, EXCLUDED.attempts),
                 acknowledged_at = coalesce(EXCLUDED.acknowledged_at, h.acknowledged_at),
                 market_status = coalesce(EXCLUDED.market_status, h.market_status),
                 last_error = coalesce(EXCLUDED.last_error, h.last_error),
                 given_up = h.given_up OR EXCLUDED.given_up",
            &[
                &license,
                &day,
                &used_at,
                &account,
                &attempts,
                &acknowledged_at,
                &market_status,
                &last_error,
                &given_up,
            ],
        )
        .await
        .map_err(StoreError::from)?;
        Ok(())
    }
}

impl Handler for Views {
    type Error = ReadModelError;

    /// A batch in a fixed number of statements whatever its size: the licenses whose kept state
    /// is not exactly one event behind are loaded in one read, then one upsert of the views, the
    /// heartbeat ledger, the outbound jobs and the access schedule each.
    async fn handle(
        &mut self,
        tx: &Transaction<'_>,
        events: &[RecordedEvent],
    ) -> Result<(), ReadModelError> {
        let mut streams: BTreeMap<&str, Vec<&RecordedEvent>> = BTreeMap::new();
        for event in events {
            streams.entry(&event.stream_id).or_default().push(event);
        }
        if let Some(probe) = streams.remove(domain::PROBE_STREAM) {
            crate::read_model::probe_log::write(tx, self.market_zone, &probe).await?;
        }
        let cold: Vec<&str> = streams
            .iter()
            .filter(|(stream, new)| {
                self.kept.get(**stream).is_none_or(|state| {
                    state.version as i64 + 1 != new.first().map_or(0, |e| e.stream_version)
                })
            })
            .map(|(stream, _)| *stream)
            .collect();
        let mut loaded = if cold.is_empty() {
            HashMap::new()
        } else {
            // Up to this batch's end: a state folded past it would be ahead of the next batch's
            // events, and every later batch would load its streams in full again.
            let until = events.last().map_or(0, |e| e.global_position);
            load_streams(tx, &cold, until, &Upcasters::new()).await?
        };
        let now = Timestamp::from_millis(self.clock.now_millis());
        let today = Day::containing(now, self.day_zone.whole_minutes().into());
        let (mut states, mut due, mut jobs, mut days, mut spans) = (
            Vec::with_capacity(streams.len()),
            Vec::new(),
            Jobs::default(),
            HeartbeatDays::default(),
            Vec::new(),
        );
        let mut snapshot = Vec::new();
        for (stream, new) in &streams {
            let before = new.first().map_or(0, |e| e.stream_version - 1) as u64;
            // A stream not loaded has a kept state exactly one event behind.
            let state = match loaded.remove(*stream) {
                Some(events) => replay(stream, &events)?,
                None => fold(
                    self.kept.remove(*stream).unwrap_or_default(),
                    stream,
                    new.iter().copied(),
                )?,
            };
            if let (Some(code), false) = (&state.code, state.sandbox) {
                // The newest request behind these events: a call they make owed carries its
                // id, and continues its trace (ADR 0017).
                let correlation = new.iter().rev().find_map(|e| e.metadata.correlation_id);
                let span = new
                    .iter()
                    .rev()
                    .find_map(|e| e.metadata.trace_parent.as_deref())
                    .map(|parent| {
                        let mut span =
                            Span::start("project events", SpanKind::Consumer, Some(parent));
                        span.set("stream", *stream);
                        span.set("events", new.len());
                        span
                    });
                let trace = span.as_ref().and_then(Span::traceparent);
                days.add(code.as_str(), new)?;
                self.owed(
                    &mut jobs,
                    today,
                    &state,
                    code.as_str(),
                    correlation,
                    trace.as_deref(),
                );
                due.push((
                    code.as_str().to_owned(),
                    access_due(&state, &self.notices, now).map(ts),
                ));
                spans.push(span);
            }
            if snapshots::due(before, state.version) {
                snapshot.push(states.len());
            }
            states.push(((*stream).to_owned(), state));
        }
        let views: Vec<&License> = states.iter().map(|(_, state)| state).collect();
        write_view_refs(tx, "license_views", &views).await?;
        let passed: Vec<(&str, &License)> = snapshot
            .iter()
            .map(|&i| (states[i].0.as_str(), &states[i].1))
            .collect();
        snapshots::write(tx, &passed).await?;
        days.write(tx).await?;
        jobs.write(tx).await?;
        write_schedule(tx, &due).await?;
        drop(spans);
        if self.kept.len() + states.len() > KEPT_STATES {
            self.kept.clear();
        }
        self.kept.extend(states);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{CallFailure, Event, MarketStatus};

    #[tokio::test]
    async fn the_view_follower_writes_a_snapshot_at_the_end_of_each_batch_passing_a_thousand_events()
     {
        use crate::read_model::snapshots::tests::{STREAM, long_license, snapshot_versions};
        use licensing_store::Subscription;
        use licensing_store::testing::TestDatabase;
        let db = TestDatabase::create().await;
        let store = db.store();
        crate::read_model::schema::ensure(&store).await.unwrap();
        let events = long_license(&store).await;
        let views = Subscription::new(store.clone(), "license_views").with_batch_size(300);
        let mut handler = Views::new(
            UtcOffset::UTC,
            UtcOffset::UTC,
            "seller".into(),
            NoticePolicy::default(),
            Clock::system(),
        );
        while views.step(&mut handler).await.unwrap() > 0 {}
        let client = store.client().await.unwrap();
        // Batches end at 300, 600, …: those that passed 1,000 and 2,000 end at 1,200 and 2,100.
        assert_eq!(snapshot_versions(&**client).await, [1_200, 2_100]);
        let (state, valid_from): (String, OffsetDateTime) = client
            .query_one(
                "SELECT state, valid_from FROM license_snapshots WHERE stream_id = $1 AND version = 1200",
                &[&STREAM],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!(
            licensing_messages::state_codec::decode(&state).unwrap(),
            replay(STREAM, &events[..1_200])
                .unwrap()
                .without_decided_callbacks()
        );
        assert_eq!(valid_from, events[1_199].recorded_at);
    }

    fn recorded(version: i64, event: &Event) -> RecordedEvent {
        let (event_type, payload) = event_codec::encode(event);
        RecordedEvent {
            global_position: version,
            stream_id: "license-HB".to_owned(),
            stream_version: version,
            event_id: uuid::Uuid::new_v4(),
            event_type,
            schema_version: 1,
            payload,
            metadata: Default::default(),
            recorded_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn failed(day: Day, attempt: u32, message: &str, retryable: bool, at: i64) -> Event {
        Event::HeartbeatFailed(domain::HeartbeatFailed {
            day,
            attempt,
            failure: CallFailure {
                code: "HTTP 503".to_owned(),
                message: message.to_owned(),
                retryable,
            },
            at: Timestamp::from_millis(at),
        })
    }

    fn used(day: Day, account: &str, at: i64) -> Event {
        Event::UsageRecorded(domain::UsageRecorded {
            day,
            account: account.to_owned(),
            ip: None,
            at: Timestamp::from_millis(at),
        })
    }

    #[test]
    fn several_heartbeat_events_of_one_day_in_one_batch_merge_into_one_row_as_if_one_by_one() {
        let (day, next) = (Day::from_number(20_000), Day::from_number(20_001));
        let events = [
            used(day, "first", 1_000),
            failed(day, 1, "busy", true, 2_000),
            used(day, "second", 3_000),
            failed(day, 2, "still busy", true, 4_000),
            Event::HeartbeatAcknowledged(domain::HeartbeatAcknowledged {
                day,
                attempt: 3,
                status: MarketStatus::Alive,
                expire: None,
                at: Timestamp::from_millis(5_000),
            }),
            used(next, "third", 90_000_000),
            failed(next, 1, "refused", false, 90_001_000),
        ];
        let stored: Vec<RecordedEvent> = events
            .iter()
            .enumerate()
            .map(|(i, e)| recorded(i as i64 + 1, e))
            .collect();
        let mut days = HeartbeatDays::default();
        days.add("HB", &stored.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(days.0.len(), 2, "one row per license and day: {days:?}");

        let first = &days.0[&("HB".to_owned(), day.number())];
        // The first use of the day and its account stay; attempts are the most made; the
        // acknowledgement and the last error are the latest of the day.
        assert_eq!(first.used_at, Some(ts(Timestamp::from_millis(1_000))));
        assert_eq!(first.account.as_deref(), Some("first"));
        assert_eq!(first.attempts, 3);
        assert_eq!(
            first.acknowledged_at,
            Some(ts(Timestamp::from_millis(5_000)))
        );
        assert_eq!(first.market_status.as_deref(), Some("ALIVE"));
        assert_eq!(first.last_error.as_deref(), Some("HTTP 503: still busy"));
        assert!(!first.given_up);

        let second = &days.0[&("HB".to_owned(), next.number())];
        assert_eq!(second.account.as_deref(), Some("third"));
        assert_eq!(second.attempts, 1);
        assert_eq!(second.acknowledged_at, None);
        assert!(
            second.given_up,
            "a failure that is not retried gives the day up"
        );

        // The same events one per batch, each batch's change laid over the last as the upsert
        // does, end in the same row.
        let mut one_by_one: BTreeMap<(String, i64), DayChange> = BTreeMap::new();
        for event in &stored {
            let mut single = HeartbeatDays::default();
            single.add("HB", &[event]).unwrap();
            for (key, change) in single.0 {
                let row = one_by_one.entry(key).or_default();
                row.used_at = row.used_at.or(change.used_at);
                row.account = row.account.take().or(change.account);
                row.attempts = row.attempts.max(change.attempts);
                row.acknowledged_at = change.acknowledged_at.or(row.acknowledged_at);
                row.market_status = change.market_status.or(row.market_status.take());
                row.last_error = change.last_error.or(row.last_error.take());
                row.given_up |= change.given_up;
            }
        }
        assert_eq!(format!("{one_by_one:?}"), format!("{:?}", days.0));
    }
}
