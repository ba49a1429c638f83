//! The store's errors: unavailable (retry later) or a bug (do not retry blindly).

use deadpool_postgres::PoolError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL cannot be reached, or the connection broke: try again later.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL refused the statement: a bug or a schema mismatch, not worth retrying blindly.
    #[error("the event store refused the operation: {0}")]
    Database(String),
    /// A stored row could not be decoded.
    #[error("a stored row could not be decoded: {0}")]
    Decode(String),
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// SQLSTATE classes and codes that mean "the server or the connection is gone", not "your SQL is wrong".
fn is_unavailable_state(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections, out of memory, disk full)
        || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03")
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        let text = chain(&error);
        match error.code() {
            Some(code) if is_unavailable_state(code.code()) => Self::Unavailable(text),
            Some(_) => Self::Database(text),
            // No SQLSTATE: the connection itself failed (closed, IO error, timeout).
            None => Self::Unavailable(text),
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Backend(e) => e.into(),
            other => Self::Unavailable(chain(&other)),
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
