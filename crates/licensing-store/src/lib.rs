//! The event store on PostgreSQL: the only place where SQL meets events.
//!
//! - [`Store::append`] (or [`UnitOfWork::append`] inside a transaction) writes events to one or
//!   more streams atomically, at their expected versions, idempotently by event id.
//! - [`Store::load`] reads a stream; [`Store::read_all`] reads the global order, exposing only what
//!   can never be joined later by an event below it (gap-safe, ADR 0005).
//! - [`Subscription`] follows the global order with a checkpoint committed together with the
//!   follower's own work, woken by `LISTEN/NOTIFY`, polling as a fallback.
//! - [`UnitOfWork::inbox_lookup`] and [`UnitOfWork::record_outcomes`] read and write, in one round
//!   trip each for a whole batch of commands, the processed messages, the callback answers and the
//!   nonces; [`UnitOfWork::load_many_after`] loads a batch's streams (after the versions of the states kept of them) in one query.
//! - [`Exchange`]s are the evidence log (D20): every exchange with the marketplace byte for byte,
//!   in monthly partitions ([`Store::maintain_evidence`] creates and expires them).
//! - [`DeadLetter`]s are the commands parked in the dead-letter queue, kept to be read and
//!   re-driven ([`Store::redrive_dead_letters`]).
//! - Shard leases ([`Store::lease_tick`], ADR 0016) share the command queues between processors.
//! - [`Upcasters`] turn old payload versions into current ones on read.

mod append;
mod dead_letters;
mod error;
mod event;
mod evidence;
mod inbox;
mod leases;
mod read;
mod store;
mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod unit_of_work;

pub use append::AppendOutcome;
pub use dead_letters::{DeadLetter, DeadLetterState, RedriveError, StoredDeadLetter};
pub use error::StoreError;
pub use event::{EventMetadata, NewEvent, RecordedEvent, StreamAppend, Upcasters};
pub use evidence::{
    Direction, EvidenceVolume, Exchange, ExchangeCount, ExchangeFilter, Expired, StoredExchange,
};
pub use inbox::{InboxKeys, InboxLookup, InboxOutcome};
pub use leases::{LeaseError, LeaseTick, share_of};
pub use store::{Store, StoreConfig};
pub use subscription::{FollowError, Handler, Pipelined, Subscription};
pub use tokio_postgres::{GenericClient, IsolationLevel, Row, Transaction};
pub use unit_of_work::UnitOfWork;

/// Every committed event of a stream, read through `client` (a follower's transaction, say).
pub async fn load_stream(
    client: &impl GenericClient,
    stream_id: &str,
    upcasters: &Upcasters,
) -> Result<Vec<RecordedEvent>, StoreError> {
    read::load_in(client, stream_id, upcasters).await
}

/// The events of some streams at or below global position `until`, each stream's in order, in
/// one query: a follower folding a stream it has no state of reads it up to the end of the batch
/// it handles, never past it (later events are committed already while it catches up, and belong
/// to later batches).
pub async fn load_streams(
    client: &impl GenericClient,
    stream_ids: &[&str],
    until: i64,
    upcasters: &Upcasters,
) -> Result<std::collections::HashMap<String, Vec<RecordedEvent>>, StoreError> {
    read::load_until_in(client, stream_ids, until, upcasters).await
}

/// Every event at or below `until`, ordered by stream then version: one scan for rebuilding
/// derived state, each stream's events arriving together and in order.
pub async fn scan_by_stream<'a>(
    client: &'a impl GenericClient,
    until: i64,
    upcasters: &'a Upcasters,
) -> Result<impl futures_util::Stream<Item = Result<RecordedEvent, StoreError>> + 'a, StoreError> {
    read::scan_by_stream_in(client, until, upcasters).await
}

/// For each `streams[i]` and `versions[i]`, the latest `recorded_at` of that stream's events up
/// to that version (`None` for a stream without any), in one query: the instant from which a
/// state folded up to that version describes the stream (recorded times are the appends'
/// transaction starts, not strictly ordered along a stream).
pub async fn recorded_by(
    client: &impl GenericClient,
    streams: &[&str],
    versions: &[i64],
) -> Result<Vec<Option<time::OffsetDateTime>>, StoreError> {
    read::recorded_by_in(client, streams, versions).await
}

/// One stream's events after version `after` (0: from the start) recorded at or before `until`,
/// in stream order, as they arrive: a state as of an instant is folded, from a snapshot or from
/// nothing, while the rest is still on the wire.
pub async fn stream_until<'a>(
    client: &'a impl GenericClient,
    stream_id: &str,
    after: i64,
    until: time::OffsetDateTime,
    upcasters: &'a Upcasters,
) -> Result<impl futures_util::Stream<Item = Result<RecordedEvent, StoreError>> + 'a, StoreError> {
    read::stream_until_in(client, stream_id, after, until, upcasters).await
}

/// The ids of the streams with events after `position`.
pub async fn stream_ids_after(
    client: &impl GenericClient,
    position: i64,
) -> Result<Vec<String>, StoreError> {
    read::stream_ids_after_in(client, position).await
}

/// How many streams have events at or below `until`.
pub async fn stream_count(client: &impl GenericClient, until: i64) -> Result<u64, StoreError> {
    read::stream_count_in(client, until).await
}

/// The highest committed global position (0 for an empty store).
pub async fn last_position(client: &impl GenericClient) -> Result<i64, StoreError> {
    Ok(client
        .query_one("SELECT coalesce(max(global_position), 0) FROM events", &[])
        .await?
        .get(0))
}

/// Locks a follower's checkpoint row (creating it at 0) for the rest of `tx`, and returns its
/// position: a second instance of the same follower, or a rebuild, waits until `tx` ends.
pub async fn hold_checkpoint(tx: &Transaction<'_>, name: &str) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        &[&name],
    )
    .await?;
    Ok(tx
        .query_one(
            "SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?
        .get(0))
}

impl Store {
    /// How far each named follower is behind, in seconds: the age of the oldest event it has not
    /// handled yet (0 when it has handled everything). A follower without a checkpoint yet counts
    /// from the first event. One index lookup per follower (readiness checks run it every few
    /// seconds).
    pub async fn follower_lags(&self, names: &[&str]) -> Result<Vec<(String, f64)>, StoreError> {
        let client = self.client().await?;
        let names: Vec<&str> = names.to_vec();
        let rows = client
            .query(
                "SELECT n.name, coalesce(extract(epoch FROM now() - (
                        SELECT e.recorded_at FROM events e
                         WHERE e.global_position > coalesce(c.position, 0)
                         ORDER BY e.global_position LIMIT 1))::float8, 0)
                   FROM unnest($1::text[]) AS n(name)
                   LEFT JOIN checkpoints c ON c.name = n.name
                  ORDER BY n.name",
                &[&names],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, f64>(1).max(0.0)))
            .collect())
    }

    /// Appends events to one stream at `expected_version` (0 for a new stream), in its own transaction.
    pub async fn append(
        &self,
        stream_id: &str,
        expected_version: i64,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.append_many(&[StreamAppend {
            stream_id: stream_id.to_owned(),
            expected_version,
            events,
        }])
        .await
    }

    /// Appends to several streams atomically, in one transaction (all or nothing).
    pub async fn append_many(&self, appends: &[StreamAppend]) -> Result<AppendOutcome, StoreError> {
        let client = self.client().await?;
        // A single statement is its own transaction: one round trip.
        let statement = client.prepare_cached(append::APPEND).await?;
        let outcome = append::append_in(&**client, &statement, appends).await?;
        if matches!(outcome, AppendOutcome::Appended { .. }) {
            self.events_committed();
        }
        Ok(outcome)
    }

    /// Every committed event of a stream, in order.
    pub async fn load(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.load_with(stream_id, &Upcasters::new()).await
    }

    /// The newest `last` events of a stream recorded at or before `until` (any time with `None`),
    /// in order: a page of a long history.
    pub async fn load_tail(
        &self,
        stream_id: &str,
        last: i64,
        until: Option<time::OffsetDateTime>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        read::load_tail_in(&**client, stream_id, last, until, &Upcasters::new()).await
    }

    /// [`Store::load`], upcasting old payloads.
    pub async fn load_with(
        &self,
        stream_id: &str,
        upcasters: &Upcasters,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        read::load_in(&**client, stream_id, upcasters).await
    }

    /// Up to `limit` events after `after_position` in global order; never one that an event with a
    /// lower position could still precede.
    pub async fn read_all(
        &self,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        read::read_all_in(&**client, after_position, limit, &Upcasters::new()).await
    }

    /// Starts a transaction for the single writer.
    pub async fn begin(&self, upcasters: Upcasters) -> Result<UnitOfWork, StoreError> {
        UnitOfWork::begin(self.clone(), upcasters).await
    }
}
