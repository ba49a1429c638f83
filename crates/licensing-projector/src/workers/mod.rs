//! The projector's background workers: the event publisher, the outbound activation and
//! heartbeat calls, the access schedule and the probe watchdog. Each sends what it learns to the
//! processor as commands; none writes the event store.

pub(crate) mod outbound;
pub(crate) mod publisher;
pub(crate) mod schedule;
pub(crate) mod upkeep;
pub(crate) mod watchdog;
