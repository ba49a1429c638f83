//! The licensing backend's own wire formats, shared by the ingress and the processor:
//!
//! - [`CommandEnvelope`] and [`Reply`]: commands and answers on the bus;
//! - [`CommandEnvelope::to_domain`]: a command as the domain reads it (zones, policy);
//! - [`event_codec`]: the stored JSON of every domain event;
//! - [`state_codec`]: the JSON of a license's folded state, for snapshots (ADR 0022).

mod convert;
mod envelope;
pub mod event_codec;
pub mod state_codec;

mod admit;
pub use admit::{Admitted, Refused, admit_callback};
pub use convert::{Interpretation, InvalidCommand};
pub use envelope::{
    ActivationResultV1, CallbackCommand, CommandBody, CommandEnvelope, ENVELOPE_VERSION,
    HeartbeatResultV1, InboundRecord, LicenseSummary, OutboundAttemptV1, ProbeCaseV1, Reply,
    RequestSeen,
};
