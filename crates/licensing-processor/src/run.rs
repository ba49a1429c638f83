//! The processor's loop: consume, apply, reply, then ack; reconnect when the broker goes away.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use licensing_bus::{Bus, Incoming, Outgoing};
use licensing_messages::{CommandBody, CommandEnvelope};
use licensing_runtime::CancellationToken;
use licensing_store::Store;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::apply::{ApplyError, apply};
use crate::config::ProcessorConfig;
use crate::metrics::Metrics;

/// A running processor's shared parts.
#[derive(Debug, Clone)]
pub struct Processor {
    config: ProcessorConfig,
    store: Store,
    metrics: Metrics,
}

fn kind(envelope: &CommandEnvelope) -> String {
    match &envelope.command {
        CommandBody::Callback(c) => c.request.activity().to_owned(),
        CommandBody::RequestActivation { .. } => "request_activation".to_owned(),
        CommandBody::ReportUsage { .. } => "report_usage".to_owned(),
        CommandBody::RecordActivation { .. } => "record_activation".to_owned(),
        CommandBody::RecordHeartbeat { .. } => "record_heartbeat".to_owned(),
    }
}

/// The worker for a message: by its license, so that one license's commands stay in order.
/// Undecodable messages all go to the first worker (which dead-letters them).
fn lane_of(body: &[u8], lanes: usize) -> usize {
    let Ok(envelope) = CommandEnvelope::from_bytes(body) else {
        return 0;
    };
    // FNV-1a: stable across processes and releases.
    let hash = envelope
        .license()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    (hash % lanes as u64) as usize
}

async fn sleep_or_cancel(cancel: &CancellationToken, duration: Duration) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(duration) => {}
    }
}

impl Processor {
    /// Connects to the store (the pool connects lazily) and registers the metrics.
    pub fn new(config: ProcessorConfig, registry: &Arc<Mutex<Registry>>) -> anyhow::Result<Self> {
        let store = Store::connect(&config.store)?;
        Ok(Self {
            config,
            store,
            metrics: Metrics::register(registry),
        })
    }

    /// The store (for readiness checks).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Migrates the store, then consumes commands until `cancel` fires. Waits out PostgreSQL and
    /// RabbitMQ outages; returns when cancelled, after the command in hand is finished.
    pub async fn run(&self, cancel: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.store.migrate().await {
                Ok(_) => break,
                Err(e) if e.is_unavailable() && !cancel.is_cancelled() => {
                    tracing::warn!(error = %e, "event store unavailable at start, retrying");
                    sleep_or_cancel(&cancel, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
        tokio::spawn({
            let store = self.store.clone();
            let cancel = cancel.clone();
            async move {
                store
                    .run_nonce_retention(Duration::from_secs(60), cancel)
                    .await
            }
        });
        let mut backoff = Duration::from_millis(200);
        while !cancel.is_cancelled() {
            match Bus::connect(self.config.bus.clone()).await {
                Ok(bus) => {
                    backoff = Duration::from_millis(200);
                    tracing::info!(queue = %bus.names().commands_queue, workers = self.config.workers, "consuming commands");
                    let bus = Arc::new(bus);
                    if let Err(e) = self.consume(bus.clone(), &cancel).await {
                        tracing::warn!(error = %e, "lost the broker, reconnecting");
                    }
                    bus.close().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "broker unavailable, retrying");
                    sleep_or_cancel(&cancel, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!("processor stopped");
        Ok(())
    }

    /// Consumes commands and hands each to a worker chosen by its license: one license always goes
    /// to the same worker, which applies its commands one after another in queue order, while
    /// different licenses proceed in parallel (ADR 0006).
    async fn consume(
        &self,
        bus: Arc<Bus>,
        cancel: &CancellationToken,
    ) -> Result<(), licensing_bus::BusError> {
        let mut commands = bus.consume_commands(self.config.prefetch).await?;
        let mut workers = Vec::new();
        let mut lanes = Vec::new();
        for _ in 0..self.config.workers.max(1) {
            let (lane, mut inbox) =
                tokio::sync::mpsc::channel::<Incoming>(usize::from(self.config.prefetch).max(1));
            let (processor, bus, cancel) = (self.clone(), bus.clone(), cancel.clone());
            workers.push(tokio::spawn(async move {
                while let Some(incoming) = inbox.recv().await {
                    processor.handle(&bus, incoming, &cancel).await?;
                }
                Ok::<(), licensing_bus::BusError>(())
            }));
            lanes.push(lane);
        }
        let result = loop {
            let incoming = tokio::select! {
                () = cancel.cancelled() => break Ok(()),
                next = commands.next() => match next {
                    Some(Ok(incoming)) => incoming,
                    Some(Err(e)) => break Err(e),
                    None => break Err(licensing_bus::BusError::Unavailable("the consumer ended".into())),
                },
            };
            let lane = &lanes[lane_of(&incoming.body, lanes.len())];
            if lane.send(incoming).await.is_err() {
                break Err(licensing_bus::BusError::Unavailable(
                    "a worker stopped".into(),
                ));
            }
        };
        // Let the workers finish what they hold; unacknowledged messages return to the queue
        // when the channel closes.
        drop(lanes);
        for worker in workers {
            match worker.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "worker stopped on a broker error"),
                Err(e) => tracing::error!(error = %e, "worker panicked"),
                Ok(Ok(())) => {}
            }
        }
        result
    }

    /// Decides ack, reply, requeue or dead letter for one message: the one place that does.
    async fn handle(
        &self,
        bus: &Bus,
        incoming: Incoming,
        cancel: &CancellationToken,
    ) -> Result<(), licensing_bus::BusError> {
        let envelope = match CommandEnvelope::from_bytes(&incoming.body) {
            Ok(envelope) => envelope,
            Err(reason) => {
                tracing::error!(message_id = ?incoming.message_id, %reason, "undecodable command, dead-lettering");
                self.metrics
                    .dead_letters
                    .get_or_create(&vec![("reason", "undecodable".to_owned())])
                    .inc();
                return bus
                    .dead_letter(&incoming, &format!("undecodable: {reason}"))
                    .await;
            }
        };
        // The span follows the future across threads (an entered guard held over an await would not).
        let span = tracing::info_span!("command", correlation_id = %envelope.correlation_id, message_id = %envelope.message_id, license = %envelope.license(), kind = %kind(&envelope));
        self.apply_and_settle(bus, incoming, envelope, cancel)
            .instrument(span)
            .await
    }

    /// Applies a decoded command, retrying what can be retried, then replies and acks (or parks it).
    async fn apply_and_settle(
        &self,
        bus: &Bus,
        incoming: Incoming,
        envelope: CommandEnvelope,
        cancel: &CancellationToken,
    ) -> Result<(), licensing_bus::BusError> {
        let ttl =
            time::Duration::try_from(self.config.nonce_ttl).unwrap_or(time::Duration::minutes(10));
        let mut backoff = Duration::from_millis(100);
        let mut conflicts = 0;
        loop {
            match apply(
                &self.store,
                &self.config.interpretation,
                ttl,
                &envelope,
                OffsetDateTime::now_utc(),
            )
            .await
            {
                Ok(applied) => {
                    let labels = vec![
                        ("kind", kind(&envelope)),
                        ("outcome", applied.outcome.to_owned()),
                    ];
                    self.metrics.commands.get_or_create(&labels).inc();
                    let elapsed = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
                        as i64
                        - envelope.received_at_ms;
                    self.metrics
                        .latency
                        .get_or_create(&vec![("kind", kind(&envelope))])
                        .observe(elapsed.max(0) as f64 / 1000.0);
                    tracing::info!(
                        outcome = applied.outcome,
                        events = applied.events,
                        "command applied"
                    );
                    if let (Some(reply_to), Some(correlation_id)) =
                        (&incoming.reply_to, &incoming.correlation_id)
                    {
                        let body = applied.reply.to_value().to_string();
                        let sent = bus
                            .publish(Outgoing {
                                exchange: "",
                                routing_key: reply_to,
                                body: body.as_bytes(),
                                message_id: uuid::Uuid::new_v4().to_string(),
                                correlation_id: Some(correlation_id.clone()),
                                reply_to: None,
                                headers: Vec::new(),
                            })
                            .await;
                        // The requester may be gone (it answered 000004 already); the stored reply
                        // answers its retry.
                        if let Err(e) = sent {
                            tracing::debug!(error = %e, "reply not delivered");
                        }
                    }
                    return incoming.ack().await;
                }
                Err(ApplyError::Conflict(what)) if conflicts < 10 => {
                    conflicts += 1;
                    tracing::debug!(%what, "concurrent change, applying again");
                }
                Err(ApplyError::Unavailable(e)) => {
                    self.metrics.store_unavailable.inc();
                    if cancel.is_cancelled() {
                        tracing::warn!(error = %e, "event store unavailable at shutdown, returning the command to the queue");
                        return incoming.requeue().await;
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "event store unavailable, keeping the command");
                    sleep_or_cancel(cancel, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, "command cannot be applied, dead-lettering");
                    self.metrics
                        .dead_letters
                        .get_or_create(&vec![("reason", "poison".to_owned())])
                        .inc();
                    return bus.dead_letter(&incoming, &e.to_string()).await;
                }
            }
        }
    }
}
