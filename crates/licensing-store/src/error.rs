//! The store's errors: unavailable (retry later) or a bug (do not retry blindly).

use deadpool_postgres::PoolError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL cannot do it now (unreachable, connection lost, read-only, timed out, a
    /// serialization failure…): try again later.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL refused the statement itself (SQLSTATE class `21`, `22` or `42`): a bug or a schema
    /// mismatch, which retrying will not fix.
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

/// SQLSTATE classes that mean the statement itself is wrong (a bug, or a schema this build does
/// not match): `21` cardinality violation (a statement touching one row twice), `22` data
/// exception, `42` syntax error or access rule violation, `54` program limit exceeded (a value
/// too large for an index row, too many columns: the same statement fails the same way every
/// time), and the store's own
/// `LS` codes that are not a conflict. Everything else (a lost connection, `25006` read-only after
/// a failover, `57014` statement timeout, `58` I/O, `40` serialization failures, lock timeouts,
/// `53` resources) can succeed when tried again, and is [`StoreError::Unavailable`].
fn is_bug_state(code: &str) -> bool {
    code.starts_with("21")
        || code.starts_with("22")
        || code.starts_with("42")
        || code.starts_with("54")
        || code.starts_with("LS")
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        let text = chain(&error);
        match error.code() {
            Some(code) if is_bug_state(code.code()) => {
                Self::Database(format!("SQLSTATE {}: {text}", code.code()))
            }
            Some(_) => Self::Unavailable(text),
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
