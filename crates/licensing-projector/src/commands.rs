//! Commands the projector sends the processor (outcomes of outbound calls, access changes,
//! probe runs, operators' actions in the console), confirmed by the broker.

use licensing_bus::Bus;

/// Sends a command to the processor, confirmed by the broker, continuing the envelope's trace.
pub(crate) async fn send_command(
    bus: &Bus,
    envelope: &licensing_messages::CommandEnvelope,
) -> Result<(), licensing_bus::BusError> {
    bus.publish_command(
        envelope.license(),
        &envelope.to_bytes(),
        envelope.message_id.to_string(),
        envelope.correlation_id.to_string(),
        None,
        envelope.trace_parent.as_deref(),
    )
    .await
}
