//! The evidence log (D20, ADR 0010): every exchange with the marketplace as it was on the wire, in
//! monthly partitions that expiry drops whole. Payloads are stored as bytes, never re-serialised;
//! PostgreSQL computes their SHA-256 (generated columns), so the hash is always that of what is
//! stored.

use serde_json::Value;
use time::{Date, Month, OffsetDateTime};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::StoreError;
use crate::store::{MIGRATION_LOCK, Store};
use crate::unit_of_work::UnitOfWork;

/// Which way an exchange went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A callback from the marketplace, and our answer.
    In,
    /// An open-API call of ours, and the marketplace's answer.
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }

    /// The inverse of [`Direction::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "in" => Some(Self::In),
            "out" => Some(Self::Out),
            _ => None,
        }
    }
}

/// One HTTP exchange with the marketplace.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// Its id (an inbound callback's is the id of the command that carried it).
    pub id: Uuid,
    /// Inbound: when the request was received. Outbound: when it was sent.
    pub at: OffsetDateTime,
    /// Which way.
    pub direction: Direction,
    /// The license the body names, when it can be read.
    pub license: Option<String>,
    /// Whether the body names a sandbox (test traffic) license.
    pub sandbox: bool,
    /// The id shared by everything that followed one outside request.
    pub correlation_id: Option<Uuid>,
    /// Inbound: the command that carried the callback. Outbound: the outcome command.
    pub message_id: Option<Uuid>,
    /// Inbound: the result code answered. Outbound: the answer's disposition or the error's kind.
    pub outcome: String,
    /// The request body, byte for byte (at most the body limit).
    pub request: Vec<u8>,
    /// The request body's real size (more than `request.len()` when stored truncated).
    pub request_size: i64,
    /// Everything else about the request: query, headers, peer, URL, verification.
    pub request_meta: Value,
    /// The answer's body, byte for byte (none when no answer came).
    pub response: Option<Vec<u8>>,
    /// Everything else about the answer: status, headers, result code, error, latency.
    pub response_meta: Value,
    /// Inbound: when our answer was sent. Outbound: when the answer or the error came.
    pub answered_at: Option<OffsetDateTime>,
    /// Inbound callbacks handed over: the processor's reply, committed with its events. An
    /// exchange written without one is an answer note: it replaces the answer of the same
    /// exchange already stored (a `000004` sent before the decision); one written with a decision
    /// keeps an answer noted before it.
    pub decision: Option<Value>,
}

/// An exchange as stored, with the hashes PostgreSQL computed of its payloads.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredExchange {
    /// The exchange (payloads empty when listed without them).
    pub exchange: Exchange,
    /// SHA-256 of the stored request body.
    pub request_sha256: Vec<u8>,
    /// SHA-256 of the stored answer body.
    pub response_sha256: Option<Vec<u8>>,
}

/// Exchanges of one direction, hour and outcome ([`Store::exchange_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeCount {
    /// In (callbacks) or out (calls to the open API).
    pub direction: Direction,
    /// The hour (UTC) they began in.
    pub hour: OffsetDateTime,
    /// The result code answered, or the call's disposition.
    pub outcome: String,
    /// How many.
    pub count: i64,
}

/// Which exchanges to list, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeFilter {
    /// Only those whose body names this license.
    pub license: Option<String>,
    /// Only sandbox (or only production) ones.
    pub sandbox: Option<bool>,
    /// Only one direction.
    pub direction: Option<Direction>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only refusals (`Some(true)`: inbound requests refused before they became commands) or
    /// only genuine exchanges (`Some(false)`: everything else).
    pub refusals: Option<bool>,
    /// At or after.
    pub from: Option<OffsetDateTime>,
    /// Before.
    pub to: Option<OffsetDateTime>,
    /// After this (at, id), for paging.
    pub after: Option<(OffsetDateTime, Uuid)>,
    /// At most this many (capped at 1,000).
    pub limit: i64,
    /// Whether to read the payloads too.
    pub with_payloads: bool,
}

/// What `licensing-store status` shows of the evidence log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvidenceVolume {
    /// Exchanges stored.
    pub exchanges: i64,
    /// Bytes on disk, indexes included.
    pub bytes: i64,
    /// Each month's partition, oldest first: (`YYYY-MM`, exchanges).
    pub months: Vec<(String, i64)>,
    /// Exchanges in the default partition (a month without its partition yet).
    pub unpartitioned: i64,
}

/// What one expiry removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expired {
    /// The months dropped, `YYYY-MM`.
    pub months: Vec<String>,
    /// Rows deleted from the default partition.
    pub unpartitioned_rows: u64,
}

const COLUMNS: &str = "id, at, direction, license, sandbox, correlation_id, message_id, outcome, \
     request, request_size, request_meta, response, response_meta, answered_at, decision";

const INSERT: &str = "INSERT INTO evidence_exchanges AS e (id, at, direction, license, sandbox,
        correlation_id, message_id, outcome, request, request_size, request_meta, response,
        response_meta, answered_at, decision)
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::bool[],
        $6::uuid[], $7::uuid[], $8::text[], $9::bytea[], $10::int8[], $11::jsonb[], $12::bytea[],
        $13::jsonb[], $14::timestamptz[], $15::jsonb[])
    ON CONFLICT (id, at) DO UPDATE SET
        decision = coalesce(EXCLUDED.decision, e.decision),
        license = coalesce(e.license, EXCLUDED.license),
        message_id = coalesce(e.message_id, EXCLUDED.message_id),
        outcome = CASE WHEN EXCLUDED.decision IS NULL THEN EXCLUDED.outcome ELSE e.outcome END,
        response = CASE WHEN EXCLUDED.decision IS NULL THEN EXCLUDED.response ELSE e.response END,
        response_meta = CASE WHEN EXCLUDED.decision IS NULL
                             THEN EXCLUDED.response_meta ELSE e.response_meta END,
        answered_at = CASE WHEN EXCLUDED.decision IS NULL
                           THEN EXCLUDED.answered_at ELSE e.answered_at END";

/// The statement's parameters for some exchanges, column by column.
struct Columns<'a> {
    ids: Vec<Uuid>,
    ats: Vec<OffsetDateTime>,
    directions: Vec<&'static str>,
    licenses: Vec<Option<&'a str>>,
    sandboxes: Vec<bool>,
    correlations: Vec<Option<Uuid>>,
    messages: Vec<Option<Uuid>>,
    outcomes: Vec<&'a str>,
    requests: Vec<&'a [u8]>,
    sizes: Vec<i64>,
    request_metas: Vec<&'a Value>,
    responses: Vec<Option<&'a [u8]>>,
    response_metas: Vec<&'a Value>,
    answered: Vec<Option<OffsetDateTime>>,
    decisions: Vec<Option<&'a Value>>,
}

impl<'a> Columns<'a> {
    fn of(exchanges: &'a [Exchange]) -> Self {
        Self {
            ids: exchanges.iter().map(|e| e.id).collect(),
            ats: exchanges.iter().map(|e| e.at).collect(),
            directions: exchanges.iter().map(|e| e.direction.as_str()).collect(),
            licenses: exchanges.iter().map(|e| e.license.as_deref()).collect(),
            sandboxes: exchanges.iter().map(|e| e.sandbox).collect(),
            correlations: exchanges.iter().map(|e| e.correlation_id).collect(),
            messages: exchanges.iter().map(|e| e.message_id).collect(),
            outcomes: exchanges.iter().map(|e| e.outcome.as_str()).collect(),
            requests: exchanges.iter().map(|e| e.request.as_slice()).collect(),
            sizes: exchanges.iter().map(|e| e.request_size).collect(),
            request_metas: exchanges.iter().map(|e| &e.request_meta).collect(),
            responses: exchanges.iter().map(|e| e.response.as_deref()).collect(),
            response_metas: exchanges.iter().map(|e| &e.response_meta).collect(),
            answered: exchanges.iter().map(|e| e.answered_at).collect(),
            decisions: exchanges.iter().map(|e| e.decision.as_ref()).collect(),
        }
    }

    async fn insert(
        &self,
        client: &impl tokio_postgres::GenericClient,
        statement: &tokio_postgres::Statement,
    ) -> Result<u64, StoreError> {
        Ok(client
            .execute(
                statement,
                &[
                    &self.ids,
                    &self.ats,
                    &self.directions,
                    &self.licenses,
                    &self.sandboxes,
                    &self.correlations,
                    &self.messages,
                    &self.outcomes,
                    &self.requests,
                    &self.sizes,
                    &self.request_metas,
                    &self.responses,
                    &self.response_metas,
                    &self.answered,
                    &self.decisions,
                ],
            )
            .await?)
    }
}

/// Folds the records of one exchange given twice into one, as the insert's conflict rule would
/// (one statement cannot touch a row twice): a decision keeps the answer of a note without one.
fn merged(exchanges: &[Exchange]) -> std::borrow::Cow<'_, [Exchange]> {
    let mut seen = std::collections::HashSet::new();
    if exchanges.iter().all(|e| seen.insert((e.id, e.at))) {
        return std::borrow::Cow::Borrowed(exchanges);
    }
    let mut out: Vec<Exchange> = Vec::with_capacity(exchanges.len());
    for exchange in exchanges {
        let Some(first) = out
            .iter_mut()
            .find(|e| e.id == exchange.id && e.at == exchange.at)
        else {
            out.push(exchange.clone());
            continue;
        };
        let (decided, note) = match (&first.decision, &exchange.decision) {
            (Some(_), None) => (first.clone(), exchange),
            (None, Some(_)) => (exchange.clone(), &*first),
            // Two notes: the later answer; two decisions: the first.
            (None, None) => {
                *first = exchange.clone();
                continue;
            }
            (Some(_), Some(_)) => continue,
        };
        *first = Exchange {
            outcome: note.outcome.clone(),
            response: note.response.clone(),
            response_meta: note.response_meta.clone(),
            answered_at: note.answered_at,
            ..decided
        };
    }
    std::borrow::Cow::Owned(out)
}

impl UnitOfWork {
    /// Stores exchanges in this transaction, in one statement (the processor: a callback's record
    /// commits with its events, so the two can never disagree).
    pub async fn record_exchanges(&self, exchanges: &[Exchange]) -> Result<(), StoreError> {
        if exchanges.is_empty() {
            return Ok(());
        }
        let exchanges = merged(exchanges);
        let columns = Columns::of(&exchanges);
        self.in_transaction(async {
            let statement = self.prepared(INSERT).await?;
            columns.insert(&***self.client()?, &statement).await
        })
        .await?;
        Ok(())
    }
}

fn from_row(row: &Row) -> Result<StoredExchange, StoreError> {
    let direction: String = row.get("direction");
    Ok(StoredExchange {
        exchange: Exchange {
            id: row.get("id"),
            at: row.get("at"),
            direction: Direction::parse(&direction)
                .ok_or_else(|| StoreError::Decode(format!("exchange direction {direction:?}")))?,
            license: row.get("license"),
            sandbox: row.get("sandbox"),
            correlation_id: row.get("correlation_id"),
            message_id: row.get("message_id"),
            outcome: row.get("outcome"),
            request: row.get::<_, Option<Vec<u8>>>("request").unwrap_or_default(),
            request_size: row.get("request_size"),
            request_meta: row.get("request_meta"),
            response: row.get("response"),
            response_meta: row.get("response_meta"),
            answered_at: row.get("answered_at"),
            decision: row.get("decision"),
        },
        request_sha256: row.get("request_sha256"),
        response_sha256: row.get("response_sha256"),
    })
}

/// The first instant of `t`'s month, UTC.
fn month_of(t: OffsetDateTime) -> Date {
    let t = t.to_offset(time::UtcOffset::UTC);
    Date::from_calendar_date(t.year(), t.month(), 1)
        .unwrap_or_else(|e| unreachable!("the first of a month exists: {e}"))
}

fn next_month(month: Date) -> Date {
    let (year, next) = match month.month() {
        Month::December => (month.year() + 1, Month::January),
        m => (month.year(), m.next()),
    };
    Date::from_calendar_date(year, next, 1)
        .unwrap_or_else(|e| unreachable!("the first of a month exists: {e}"))
}

fn partition_name(month: Date) -> String {
    format!(
        "evidence_exchanges_y{:04}m{:02}",
        month.year(),
        u8::from(month.month())
    )
}

/// `evidence_exchanges_y2026m11` → 2026-11-01.
fn partition_month(name: &str) -> Option<Date> {
    let rest = name.strip_prefix("evidence_exchanges_y")?;
    let (year, month) = rest.split_once('m')?;
    let month = Month::try_from(month.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(year.parse().ok()?, month, 1).ok()
}

fn month_label(month: Date) -> String {
    format!("{:04}-{:02}", month.year(), u8::from(month.month()))
}

fn literal(day: Date) -> String {
    format!("'{day} 00:00:00+00'")
}

/// The month partitions, oldest first.
async fn partitions(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Vec<(String, Date)>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_class p ON p.oid = i.inhparent
              WHERE p.relname = 'evidence_exchanges'",
            &[],
        )
        .await?;
    let mut months: Vec<(String, Date)> = rows
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            partition_month(&name).map(|m| (name, m))
        })
        .collect();
    months.sort_by_key(|(_, m)| *m);
    Ok(months)
}

impl Store {
    /// Stores exchanges in their own transaction (the outbound worker, after each call).
    pub async fn record_exchanges(&self, exchanges: &[Exchange]) -> Result<(), StoreError> {
        if exchanges.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        let statement = client.prepare_cached(INSERT).await?;
        Columns::of(&merged(exchanges))
            .insert(&**client, &statement)
            .await
            .map(drop)
    }

    /// One exchange, with its payloads.
    pub async fn exchange(&self, id: Uuid) -> Result<Option<StoredExchange>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS}, request_sha256, response_sha256 FROM evidence_exchanges WHERE id = $1"
                ),
                &[&id],
            )
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Exchanges matching `filter`, oldest first.
    pub async fn exchanges(
        &self,
        filter: &ExchangeFilter,
    ) -> Result<Vec<StoredExchange>, StoreError> {
        let client = self.client().await?;
        let (after_at, after_id) = filter.after.unzip();
        let rows = client
            .query(
                "SELECT id, at, direction, license, sandbox, correlation_id, message_id, outcome,
                        CASE WHEN $9 THEN request END AS request, request_size, request_meta,
                        CASE WHEN $9 THEN response END AS response, response_meta, answered_at,
                        decision, request_sha256, response_sha256
                   FROM evidence_exchanges
                  WHERE ($1::text IS NULL OR license = $1)
                    AND ($2::bool IS NULL OR sandbox = $2)
                    AND ($3::text IS NULL OR direction = $3)
                    AND ($4::text IS NULL OR outcome = $4)
                    AND ($5::timestamptz IS NULL OR at >= $5)
                    AND ($6::timestamptz IS NULL OR at < $6)
                    AND ($7::timestamptz IS NULL OR (at, id) > ($7, $8::uuid))
                    AND ($11::bool IS NULL
                         OR (direction = 'in' AND message_id IS NULL) = $11)
                  ORDER BY at, id
                  LIMIT $10",
                &[
                    &filter.license,
                    &filter.sandbox,
                    &filter.direction.map(Direction::as_str),
                    &filter.outcome,
                    &filter.from,
                    &filter.to,
                    &after_at,
                    &after_id,
                    &filter.with_payloads,
                    &filter.limit.clamp(1, 1000),
                    &filter.refusals,
                ],
            )
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Exchanges since `since`, counted by direction, hour (truncated, UTC) and outcome: the
    /// callbacks' result codes and the outbound calls' dispositions over time.
    pub async fn exchange_counts(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<ExchangeCount>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT direction, date_trunc('hour', at), outcome, count(*)
                   FROM evidence_exchanges WHERE at >= $1
                  GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                &[&since],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(ExchangeCount {
                    direction: Direction::parse(r.get(0))?,
                    hour: r.get(1),
                    outcome: r.get(2),
                    count: r.get(3),
                })
            })
            .collect())
    }

    /// Makes sure the months of `now` and the next one have their partitions, moving into a new
    /// partition the rows the default partition caught for its month. Returns the months created.
    pub async fn ensure_evidence_partitions(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let this = month_of(now);
        self.ensure_evidence_months(&[this, next_month(this)]).await
    }

    /// Makes sure each of `months` (first days) has its partition.
    pub async fn ensure_evidence_months(&self, months: &[Date]) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let existing: Vec<Date> = partitions(&*tx)
            .await?
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let mut created = Vec::new();
        for &month in months {
            if existing.contains(&month) {
                continue;
            }
            let (from, to) = (literal(month), literal(next_month(month)));
            let name = partition_name(month);
            let columns = COLUMNS;
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE evidence_moving ON COMMIT DROP AS
                   WITH moved AS (DELETE FROM evidence_exchanges_default
                                   WHERE at >= {from} AND at < {to} RETURNING {columns})
                   SELECT * FROM moved;
                 CREATE TABLE {name} PARTITION OF evidence_exchanges FOR VALUES FROM ({from}) TO ({to});
                 INSERT INTO evidence_exchanges ({columns}) SELECT {columns} FROM evidence_moving;
                 DROP TABLE evidence_moving;"
            ))
            .await?;
            created.push(month_label(month));
        }
        tx.commit().await?;
        if !created.is_empty() {
            tracing::info!(?created, "evidence partitions created");
        }
        Ok(created)
    }

    /// Drops every month that ended at or before `cutoff`, and deletes the default partition's
    /// rows older than it.
    pub async fn expire_evidence(&self, cutoff: OffsetDateTime) -> Result<Expired, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let cutoff_day = cutoff.to_offset(time::UtcOffset::UTC).date();
        let mut expired = Expired::default();
        for (name, month) in partitions(&*tx).await? {
            if next_month(month) <= cutoff_day {
                tx.batch_execute(&format!("DROP TABLE {name}")).await?;
                expired.months.push(month_label(month));
            }
        }
        expired.unpartitioned_rows = tx
            .execute(
                "DELETE FROM evidence_exchanges_default WHERE at < $1",
                &[&cutoff],
            )
            .await?;
        tx.commit().await?;
        if !expired.months.is_empty() || expired.unpartitioned_rows > 0 {
            tracing::info!(months = ?expired.months, unpartitioned = expired.unpartitioned_rows, "evidence expired");
        }
        Ok(expired)
    }

    /// How much evidence is kept, month by month.
    pub async fn evidence_volume(&self) -> Result<EvidenceVolume, StoreError> {
        let client = self.client().await?;
        let mut volume = EvidenceVolume::default();
        for (name, month) in partitions(&**client).await? {
            let row = client
                .query_one(
                    &format!("SELECT count(*), pg_total_relation_size('{name}') FROM {name}"),
                    &[],
                )
                .await?;
            let (count, bytes): (i64, i64) = (row.get(0), row.get(1));
            volume.exchanges += count;
            volume.bytes += bytes;
            volume.months.push((month_label(month), count));
        }
        let row = client
            .query_one(
                "SELECT count(*), pg_total_relation_size('evidence_exchanges_default')
                   FROM evidence_exchanges_default",
                &[],
            )
            .await?;
        volume.unpartitioned = row.get(0);
        volume.exchanges += volume.unpartitioned;
        volume.bytes += row.get::<_, i64>(1);
        Ok(volume)
    }

    /// Stores the record of a refused request (an inbound exchange without a command) in its
    /// own transaction, unless the bytes stored for refusals on its UTC day would pass
    /// `max_bytes_per_day` (counted as dropped instead). True when stored.
    pub async fn record_refusal(
        &self,
        exchange: &Exchange,
        max_bytes_per_day: i64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let day = exchange.at.to_offset(time::UtcOffset::UTC).date();
        let size = refusal_bytes(exchange);
        let room = tx
            .query_opt(
                "INSERT INTO evidence_refusal_days AS d (day, bytes) SELECT $1::date, $2::bigint WHERE $2::bigint <= $3::bigint
                 ON CONFLICT (day) DO UPDATE SET bytes = d.bytes + EXCLUDED.bytes
                  WHERE d.bytes + EXCLUDED.bytes <= $3
                 RETURNING bytes",
                &[&day, &size, &max_bytes_per_day],
            )
            .await?;
        // No row back: the record would pass the ceiling (alone, or with the day's others).
        let stored = room.is_some();
        if stored {
            let statement = tx.prepare_cached(INSERT).await?;
            Columns::of(std::slice::from_ref(exchange))
                .insert(&*tx, &statement)
                .await?;
        } else {
            tx.execute(
                "INSERT INTO evidence_refusal_days AS d (day, dropped) VALUES ($1, 1)
                 ON CONFLICT (day) DO UPDATE SET dropped = d.dropped + 1",
                &[&day],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// The bytes stored for refusals on `day` (UTC) and the records dropped past the ceiling.
    pub async fn refusal_day(&self, day: Date) -> Result<(i64, i64), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT bytes, dropped FROM evidence_refusal_days WHERE day = $1",
                &[&day],
            )
            .await?;
        Ok(row.map_or((0, 0), |r| (r.get(0), r.get(1))))
    }

    /// Deletes the records of refused requests older than `cutoff`, and the daily counts older
    /// than it.
    pub async fn expire_refusals(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM evidence_exchanges
                  WHERE direction = 'in' AND message_id IS NULL AND at < $1",
                &[&cutoff],
            )
            .await?;
        client
            .execute(
                "DELETE FROM evidence_refusal_days WHERE day < $1",
                &[&cutoff.to_offset(time::UtcOffset::UTC).date()],
            )
            .await?;
        if deleted > 0 {
            tracing::info!(deleted, "records of refused requests expired");
        }
        Ok(deleted)
    }

    /// The daily upkeep: this month's and the next month's partitions, then expiry of what is
    /// older than `retention` before `now`, and of refusals older than `refused_retention`.
    pub async fn maintain_evidence(
        &self,
        now: OffsetDateTime,
        retention: time::Duration,
        refused_retention: time::Duration,
    ) -> Result<Expired, StoreError> {
        self.ensure_evidence_partitions(now).await?;
        let expired = self.expire_evidence(now - retention).await?;
        self.expire_refusals(now - refused_retention).await?;
        Ok(expired)
    }
}

/// What a refusal's record costs against the daily ceiling: its body, query and metadata.
fn refusal_bytes(exchange: &Exchange) -> i64 {
    let meta = exchange.request_meta.to_string().len() + exchange.response_meta.to_string().len();
    let body = exchange.request.len() + exchange.response.as_ref().map_or(0, Vec::len);
    i64::try_from(meta + body).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_their_partition_names() {
        let t = OffsetDateTime::from_unix_timestamp(1_798_761_599).unwrap(); // 2026-12-31 23:59:59Z
        let month = month_of(t);
        assert_eq!(partition_name(month), "evidence_exchanges_y2026m12");
        assert_eq!(month_label(next_month(month)), "2027-01");
        assert_eq!(partition_month(&partition_name(month)), Some(month));
        assert_eq!(partition_month("evidence_exchanges_default"), None);
        // Another offset still names the UTC month.
        let east = OffsetDateTime::from_unix_timestamp(1_798_758_000)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap()); // 2027-01-01 07:00 +08:00
        assert_eq!(month_label(month_of(east)), "2026-12");
    }
}
