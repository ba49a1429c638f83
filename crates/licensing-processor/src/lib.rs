//! The processor: the only writer of the event store.
//!
//! It consumes commands from the bus (one active consumer at a time, so each license's commands
//! stay in order, ADR 0006) and, for each, in one transaction: returns the stored reply of a
//! redelivered message; refuses a replayed nonce (`000001`); answers a repeated callback with its
//! first answer; otherwise loads the license, runs the domain's `decide`, appends the events at the
//! expected version, and records the nonce, the callback's content key and the reply. Then it
//! replies, then it acknowledges.

mod apply;
mod config;
mod metrics;
mod run;

pub use apply::{Applied, ApplyError, apply};
pub use config::{ProcessorConfig, bus_config};
pub use metrics::Metrics;
pub use run::Processor;
