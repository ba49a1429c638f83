//! A transaction on the store for the single writer: inbox reads and writes, one append, commit.

use deadpool_postgres::Object;

use crate::append::{AppendOutcome, append_in};
use crate::error::StoreError;
use crate::event::{RecordedEvent, StreamAppend, Upcasters};
use crate::read::load_in;

/// One transaction. Dropped without [`UnitOfWork::commit`], it is rolled back (its connection is
/// closed rather than returned to the pool in an unknown state).
#[derive(Debug)]
pub struct UnitOfWork {
    client: Option<Object>,
    upcasters: Upcasters,
    appended: bool,
}

impl UnitOfWork {
    pub(crate) async fn begin(client: Object, upcasters: Upcasters) -> Result<Self, StoreError> {
        let unit = Self {
            client: Some(client),
            upcasters,
            appended: false,
        };
        unit.client()?.batch_execute("BEGIN").await?;
        Ok(unit)
    }

    pub(crate) fn client(&self) -> Result<&Object, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Database("the transaction is finished".to_owned()))
    }

    /// Every committed event of a stream (and this transaction's own), in order.
    pub async fn load(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        load_in(&***self.client()?, stream_id, &self.upcasters).await
    }

    /// Appends to one or more streams. At most once per transaction: batch the streams into one call.
    pub async fn append(&mut self, appends: &[StreamAppend]) -> Result<AppendOutcome, StoreError> {
        if self.appended {
            return Err(StoreError::Database(
                "one append per transaction: batch the streams into one call".to_owned(),
            ));
        }
        self.appended = true;
        append_in(&***self.client()?, appends).await
    }

    /// Commits. Nothing is durable before this returns `Ok`.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let client = self.client.take();
        match client {
            Some(client) => Ok(client.batch_execute("COMMIT").await?),
            None => Err(StoreError::Database(
                "the transaction is finished".to_owned(),
            )),
        }
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<(), StoreError> {
        if let Some(client) = self.client.take() {
            client.batch_execute("ROLLBACK").await?;
        }
        Ok(())
    }
}

impl Drop for UnitOfWork {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Closing the connection makes PostgreSQL roll the transaction back.
            drop(Object::take(client));
        }
    }
}
