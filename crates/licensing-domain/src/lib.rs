//! The license aggregate: every rule about one KooGallery license code, as two pure functions.
//!
//! - [`decide`] takes the current [`License`] and a [`Command`] and returns the [`Event`]s that
//!   command produces, or a [`Rejection`].
//! - [`evolve`] takes a [`License`] and an [`Event`] and returns the next [`License`].
//!
//! This crate never does IO, never reads a clock, never draws random numbers and knows no wire
//! format: time and identity come in as arguments, and serialisation belongs to the crates at the
//! boundary. That is what makes a stream replayable forever.

mod access;
mod access_rules;
mod command;
mod decide;
mod event;
mod probe;
mod state;
mod values;

pub use access::{
    Access, AccessMode, AccessReason, DAY_MS, DEFAULT_FREEZE_PERIOD_MS, NoticePolicy, Policy,
};
pub use command::{
    Action, ActivationOutcome, ActivationResult, CallFailure, Callback, CallbackKind, Command,
    DriftSide, HeartbeatOutcome, HeartbeatResult, LicenseCodeInfo, MarketStatus, Refresh, Release,
    Scene, StatusChange, UnknownLicensePolicy, Usage,
};
pub use decide::{Rejection, decide, decide_with};
pub use event::{
    AccessChanged, Activated, ActivationAwaitingClaim, ActivationRequested, CallFailed,
    CallbackIgnored, CallbackKey, DriftDetected, DriftResolved, Event, ExpiringSoon,
    FreezeEndingSoon, HeartbeatAcknowledged, HeartbeatFailed, IgnoreReason, LocalStatus, Origin,
    Registered, Released, Renewed, StatusChanged, UsageRecorded,
};
pub use probe::{
    ANSWER_MAX_CHARS, CaseRun, FREEZE_AFTER_FAILED_DAYS, MarketplaceProbeSeen, PROBE_STREAM,
    ProbeEvent, ProbeLog, days_until_freeze, failed_streak, half_day,
};
pub use state::{ActivationStatus, License, Status, evolve};
pub use values::{
    Day, InvalidLicenseCode, LICENSE_CODE_MAX_LEN, LicenseCode, MarketTime, Timestamp,
};
