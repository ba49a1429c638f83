//! The processor: the only writer of the event store.
//!
//! It consumes its share of the command queues' shards, kept by leases in PostgreSQL (one active
//! consumer per shard, so each license's commands stay in order, ADR 0006 and ADR 0016), and hands
//! each command to a worker by license. A worker applies the commands
//! waiting for it as one batch in one transaction (ADR 0008), each in order: returns the stored
//! reply of a redelivered message; refuses a replayed nonce (`000001`); answers a repeated callback
//! with its first answer; otherwise runs the domain's `decide` on the license's state and queues
//! its events at the expected version; then appends them all and records the nonces, the
//! callbacks' content keys and the replies. Then it replies, then it acknowledges.

mod apply;
mod config;
mod dead_letters;
mod evidence;
mod metrics;
mod processor;
mod refusals;
mod replay;
mod run;
mod shards;

pub use apply::{Applied, ApplyError, KeptStates, Outcome, apply_batch};
pub use config::{ProcessorConfig, bus_config, interpretation};
pub use dead_letters::redrive;
pub use metrics::Metrics;
pub use processor::Processor;
pub use replay::{ReplayOptions, ReplayReport, replay};
