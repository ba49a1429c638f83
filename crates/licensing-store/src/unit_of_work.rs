//! A transaction on the store for the single writer: inbox reads and writes, stream loads, one
//! append, commit. `BEGIN` travels with the first statement, and statements issued together (say
//! with `futures_util::future::join`) share one round trip to PostgreSQL.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::Object;
use tokio_postgres::Statement;

use crate::append::{APPEND, AppendOutcome, append_in};
use crate::error::StoreError;
use crate::event::{RecordedEvent, StreamAppend, Upcasters};
use crate::read::{LOAD_AFTER, load_after_in, load_in};
use crate::store::Store;

/// One transaction. Dropped without [`UnitOfWork::commit`], it is rolled back (its connection is
/// closed rather than returned to the pool in an unknown state).
#[derive(Debug)]
pub struct UnitOfWork {
    store: Store,
    client: Option<Object>,
    upcasters: Upcasters,
    /// Whether `BEGIN` was sent.
    begun: AtomicBool,
    appended: AtomicBool,
}

impl UnitOfWork {
    pub(crate) async fn begin(store: Store, upcasters: Upcasters) -> Result<Self, StoreError> {
        let client = store.client().await?;
        Ok(Self {
            store,
            client: Some(client),
            upcasters,
            begun: AtomicBool::new(false),
            appended: AtomicBool::new(false),
        })
    }

    /// Runs `statement` inside the transaction. The first one is preceded by `BEGIN`, queued on
    /// the connection just before it so that both go in one flight: statements are sent in the
    /// order they are first polled, and `statement` is polled only after `BEGIN`.
    pub(crate) async fn in_transaction<T>(
        &self,
        statement: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.begun.swap(true, Ordering::SeqCst) {
            return statement.await;
        }
        let begin = self.client()?.batch_execute("BEGIN");
        let (begun, result) = futures_util::future::join(begin, statement).await;
        begun?;
        result
    }

    pub(crate) fn client(&self) -> Result<&Object, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Database("the transaction is finished".to_owned()))
    }

    /// `sql`, prepared once per connection (the processor runs the same few statements all day).
    pub(crate) async fn prepared(&self, sql: &str) -> Result<Statement, StoreError> {
        Ok(self.client()?.prepare_cached(sql).await?)
    }

    /// Every committed event of a stream (and this transaction's own), in order.
    pub async fn load(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.in_transaction(async { load_in(&***self.client()?, stream_id, &self.upcasters).await })
            .await
    }

    /// The events of each stream after the version given with it (committed, and this
    /// transaction's own), each stream's in order, in one query: a state kept at that version
    /// needs only these to be current; 0 loads the whole stream. A stream without such events maps
    /// to an empty list.
    pub async fn load_many_after(
        &self,
        streams: &[(&str, i64)],
    ) -> Result<std::collections::HashMap<String, Vec<RecordedEvent>>, StoreError> {
        self.in_transaction(async {
            let statement = self.prepared(LOAD_AFTER).await?;
            load_after_in(&***self.client()?, &statement, streams, &self.upcasters).await
        })
        .await
    }

    /// Appends to one or more streams. At most once per transaction: batch the streams into one call.
    pub async fn append(&self, appends: &[StreamAppend]) -> Result<AppendOutcome, StoreError> {
        if self.appended.swap(true, Ordering::SeqCst) {
            return Err(StoreError::Database(
                "one append per transaction: batch the streams into one call".to_owned(),
            ));
        }
        self.in_transaction(async {
            let statement = self.prepared(APPEND).await?;
            append_in(&***self.client()?, &statement, appends).await
        })
        .await
    }

    /// Commits. Nothing is durable before this returns `Ok`.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let client = self.client.take();
        match client {
            // Nothing was sent: nothing to commit.
            Some(_) if !*self.begun.get_mut() => Ok(()),
            Some(client) => {
                client.batch_execute("COMMIT").await?;
                if *self.appended.get_mut() {
                    self.store.events_committed();
                }
                Ok(())
            }
            None => Err(StoreError::Database(
                "the transaction is finished".to_owned(),
            )),
        }
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<(), StoreError> {
        if let Some(client) = self.client.take()
            && *self.begun.get_mut()
        {
            client.batch_execute("ROLLBACK").await?;
        }
        Ok(())
    }
}

impl Drop for UnitOfWork {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && *self.begun.get_mut()
        {
            // Closing the connection makes PostgreSQL roll the transaction back.
            drop(Object::take(client));
        }
    }
}
