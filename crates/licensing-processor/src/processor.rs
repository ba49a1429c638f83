//! A running processor's shared parts, the commands it holds, and how they are routed to its
//! lanes (the run loop, `run.rs`, and the shards' readers, `shards.rs`, both use them).

use std::sync::Arc;

use licensing_bus::Incoming;
use licensing_messages::{CommandBody, CommandEnvelope};
use licensing_runtime::Health;
use licensing_store::Store;

use crate::config::ProcessorConfig;
use crate::metrics::Metrics;

/// A running processor's shared parts.
#[derive(Debug, Clone)]
pub struct Processor {
    pub(crate) config: ProcessorConfig,
    pub(crate) store: Store,
    pub(crate) metrics: Metrics,
    pub(crate) health: Health,
    /// This process's name among the processors sharing the shards (ADR 0016).
    pub(crate) member: Arc<str>,
    /// Batches committed by this process: a batch that keeps failing "unavailable" while this
    /// grows is not waiting for an outage (ADR 0009).
    pub(crate) commits: Arc<std::sync::atomic::AtomicU64>,
    /// Licenses' states as of their last committed batch here: a command folds only what came
    /// after ([`KeptStates`](crate::apply::KeptStates)).
    pub(crate) kept: Arc<crate::apply::KeptStates>,
}

/// Licenses whose state a processor keeps between batches, at most.
pub(crate) const KEPT_STATES: usize = 20_000;

/// The `kind` label of a command: a callback's activity, else the command's name.
pub(crate) fn kind(envelope: &CommandEnvelope) -> String {
    match &envelope.command {
        CommandBody::Callback(c) => c.request.activity().to_owned(),
        CommandBody::RequestActivation { .. } => "request_activation".to_owned(),
        CommandBody::ReportUsage { .. } => "report_usage".to_owned(),
        CommandBody::RecordActivation { .. } => "record_activation".to_owned(),
        CommandBody::RecordHeartbeat { .. } => "record_heartbeat".to_owned(),
        CommandBody::RecordInbound(_) => "record_inbound".to_owned(),
        CommandBody::ResolveDrift { .. } => "resolve_drift".to_owned(),
        CommandBody::PassTime { .. } => "pass_time".to_owned(),
        CommandBody::RecordProbeRun { .. } => "record_probe_run".to_owned(),
    }
}

/// The worker for a command: by its license, so that one license's commands stay in order.
pub(crate) fn lane_of(envelope: &CommandEnvelope, lanes: usize) -> usize {
    usize::from(licensing_bus::shard_of(
        envelope.license(),
        u16::try_from(lanes).unwrap_or(u16::MAX),
    ))
}

/// A decoded command with the message it came in.
pub(crate) struct Delivery {
    pub(crate) incoming: Incoming,
    pub(crate) envelope: CommandEnvelope,
    /// When this processor took it from the broker: a lane's age counts from its oldest.
    pub(crate) taken: std::time::Instant,
    /// Held until the command is settled: its shard drains by waiting for every permit.
    pub(crate) _in_flight: tokio::sync::OwnedSemaphorePermit,
    /// The command's span, from its receipt to its acknowledgement (ADR 0017).
    pub(crate) _span: licensing_runtime::trace::Span,
}
