//! The processor's loop: consume, apply, reply, then ack; reconnect when the broker goes away.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use licensing_bus::Bus;
use licensing_messages::CommandEnvelope;
use licensing_runtime::{Backoff, CancellationToken, Health, panic_message, supervise, until_done};
use licensing_store::Store;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::apply::{Applied, ApplyError, apply_batch};
use crate::config::ProcessorConfig;
use crate::metrics::Metrics;
use crate::processor::{Delivery, Processor, kind};

/// Attempts at a batch failing "unavailable" while other batches commit, before it is halved
/// (or, alone, parked).
const UNAVAILABLE_WHILE_OTHERS_COMMIT: u32 = 8;

/// How a batch ended.
enum Settled {
    /// Replied to and acknowledged, requeued or dead-lettered.
    Done,
    /// Failed as a whole in a way retrying will not fix: apply it in halves, so that only the bad
    /// command ends up dead-lettered.
    Split(Vec<Delivery>),
}

impl Processor {
    /// Connects to the store (the pool connects lazily) and registers the metrics.
    pub fn new(config: ProcessorConfig, registry: &Arc<Mutex<Registry>>) -> anyhow::Result<Self> {
        let store = Store::connect(&config.store)?;
        Ok(Self {
            config,
            store,
            metrics: Metrics::register(registry),
            health: Health::register(registry),
            member: crate::shards::member_name().into(),
            commits: Arc::default(),
            kept: Arc::new(crate::apply::KeptStates::new(crate::processor::KEPT_STATES)),
        })
    }

    /// The store (for readiness checks).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the processor works: every task up (the store migrated, the broker consumed) and
    /// the store reachable. The reason names tasks, never a database's error text.
    pub async fn ready(&self) -> Result<(), String> {
        self.health.check()?;
        self.store
            .ready()
            .await
            .map_err(|_| "event store (unavailable)".to_owned())
    }

    /// Migrates the store, then consumes commands until `cancel` fires. Waits out PostgreSQL and
    /// RabbitMQ outages; every task is supervised (restarted with backoff, shown by `/readyz`);
    /// returns when cancelled, after the commands in hand are finished.
    pub async fn run(&self, cancel: CancellationToken) -> anyhow::Result<()> {
        let migrated = until_done(
            &self.health,
            "migrations",
            &cancel,
            || self.store.migrate(),
            licensing_store::StoreError::is_unavailable,
        )
        .await?;
        if migrated.is_none() {
            return Ok(());
        }
        let retention = supervise(&self.health, "nonce_retention", cancel.clone(), {
            let store = self.store.clone();
            move |task| {
                let store = store.clone();
                async move {
                    task.up();
                    store
                        .run_nonce_retention(Duration::from_secs(60), task.cancel.clone())
                        .await;
                    Ok::<(), String>(())
                }
            }
        });
        let consumer = supervise(&self.health, "consumer", cancel.clone(), {
            let processor = self.clone();
            move |task| {
                let processor = processor.clone();
                async move {
                    let bus = Arc::new(Bus::connect(processor.config.bus.clone()).await?);
                    task.up();
                    tracing::info!(shards = bus.shards(), member = %processor.member, workers = processor.config.workers, "sharing the command queues");
                    let result = processor.consume(bus.clone(), &task.cancel).await;
                    bus.close().await;
                    result
                }
            }
        });
        let keeper = self.bus_task(
            "dead_letter_keeper",
            &cancel,
            |processor, bus, cancel| async move {
                crate::dead_letters::keep(&processor.store, &bus, &cancel).await
            },
        );
        let refusals = self.bus_task(
            "refusal_writer",
            &cancel,
            |processor, bus, cancel| async move {
                let max = processor.config.refused_max_bytes_per_day;
                crate::refusals::write(&processor.store, &bus, &processor.metrics, max, &cancel)
                    .await
            },
        );
        let _ = tokio::join!(retention, consumer, keeper, refusals);
        tracing::info!("processor stopped");
        Ok(())
    }

    /// A supervised task with a broker connection of its own: `work` runs until it ends or the
    /// connection is lost, whichever comes first; the connection is closed either way.
    fn bus_task<F, Fut>(
        &self,
        name: &'static str,
        cancel: &CancellationToken,
        work: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Self, Arc<Bus>, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let processor = self.clone();
        let work = Arc::new(work);
        supervise(&self.health, name, cancel.clone(), move |task| {
            let (processor, work) = (processor.clone(), work.clone());
            async move {
                let bus = Arc::new(
                    Bus::connect(processor.config.bus.clone())
                        .await
                        .map_err(|e| e.to_string())?,
                );
                task.up();
                let result = tokio::select! {
                    r = work(processor, bus.clone(), task.cancel.clone()) => r,
                    () = bus.closed() => Err("the broker connection was lost".to_owned()),
                };
                bus.close().await;
                result
            }
        })
    }

    /// Keeps this processor's share of the shards (ADR 0016) and hands each command to a worker
    /// chosen by its license: one license always goes to the same worker, which applies its
    /// commands in queue order, in batches of whatever waits for it, while different licenses
    /// proceed in parallel (ADR 0006, ADR 0008).
    async fn consume(
        &self,
        bus: Arc<Bus>,
        cancel: &CancellationToken,
    ) -> Result<(), licensing_bus::BusError> {
        // Dropped (the leases lapsed, below), the set aborts every worker.
        let mut workers = tokio::task::JoinSet::new();
        let mut lanes = Vec::new();
        let batch_size = self.config.batch_size.max(1);
        let ages = self.metrics.lane_ages.clone();
        ages.reset(self.config.workers.max(1));
        for index in 0..self.config.workers.max(1) {
            let (lane, mut inbox) =
                tokio::sync::mpsc::channel::<Delivery>(usize::from(self.config.prefetch).max(1));
            let (processor, bus, cancel) = (self.clone(), bus.clone(), cancel.clone());
            let ages = ages.clone();
            workers.spawn(async move {
                while let Some(first) = inbox.recv().await {
                    // Whatever else waits for this worker joins the batch, up to the limit.
                    let mut batch = vec![first];
                    while batch.len() < batch_size {
                        match inbox.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    if let Some(oldest) = batch.iter().map(|d| d.taken).min() {
                        ages.hold(index, oldest);
                    }
                    // A batch that fails as a whole is halved until the bad command is alone.
                    let mut pending = VecDeque::from([batch]);
                    while let Some(batch) = pending.pop_front() {
                        if let Settled::Split(mut first) =
                            processor.settle(&bus, batch, &cancel).await?
                        {
                            let second = first.split_off(first.len() / 2);
                            pending.push_front(second);
                            pending.push_front(first);
                        }
                    }
                    ages.idle(index);
                }
                Ok::<(), licensing_bus::BusError>(())
            });
            lanes.push(lane);
        }
        let lanes = Arc::new(lanes);
        let (renewed, renewals) = tokio::sync::watch::channel(std::time::Instant::now());
        let work = async {
            let result = self.keep_shards(&bus, &lanes, cancel, &renewed).await;
            // Let the workers finish what they hold; unacknowledged messages return to the queue
            // when the channel closes.
            drop(lanes);
            let stopping = std::time::Instant::now();
            while let Some(worker) = workers.join_next().await {
                match worker {
                    Ok(Err(e)) => tracing::warn!(error = %e, "worker stopped on a broker error"),
                    Err(e) => tracing::error!(error = %e, "worker panicked"),
                    Ok(Ok(())) => {}
                }
            }
            if stopping.elapsed() > std::time::Duration::from_secs(1) {
                tracing::warn!(took = ?stopping.elapsed(), "the workers took long to stop");
            }
            result
        };
        // Whatever holds this up past the leases (a connection gone silent, a drain that cannot
        // finish) ends here: every reader and worker is aborted, the caller closes the broker
        // connection, and what was in hand returns to the queues for the shards' next holders.
        let lease = self.lease();
        let result = tokio::select! {
            result = work => result,
            () = crate::shards::leases_lapse(renewals, lease) => {
                self.health.down("shards", "the shard leases lapsed");
                tracing::error!(lease = ?lease, "the shard leases were not renewed in time; starting over");
                Err(licensing_bus::BusError::Unavailable(format!(
                    "the shard leases were not renewed for {lease:?}"
                )))
            }
        };
        // The workers are gone, aborted or finished, and what they held is back in the queues:
        // no lane holds anything until the next consumer starts.
        ages.reset(self.config.workers.max(1));
        result
    }

    /// Decides ack, reply, requeue or dead letter for a batch of commands: the one place that
    /// does. Applies the batch in one transaction, retrying what can be retried; then replies to
    /// each command and acknowledges it.
    async fn settle(
        &self,
        bus: &Bus,
        batch: Vec<Delivery>,
        cancel: &CancellationToken,
    ) -> Result<Settled, licensing_bus::BusError> {
        let ttl =
            time::Duration::try_from(self.config.nonce_ttl).unwrap_or(time::Duration::minutes(10));
        let span = tracing::info_span!("batch", commands = batch.len());
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut failures = 0u32;
        // Failures counted once other batches have committed since this one began: failures
        // during an outage (nothing commits) never count.
        let mut unavailable = 0u32;
        let commits_before = self.commits.load(std::sync::atomic::Ordering::SeqCst);
        loop {
            let envelopes: Vec<&CommandEnvelope> = batch.iter().map(|d| &d.envelope).collect();
            // Boxed: the batch's future is kilobytes of state, and each wrapper below would
            // otherwise copy it (a profile's largest memcpy, docs/benchmarks.md).
            let applying = Box::pin(apply_batch(
                &self.store,
                &self.kept,
                &self.config.interpretation,
                ttl,
                &envelopes,
                OffsetDateTime::now_utc(),
            ))
            .instrument(span.clone());
            // A panic while deciding is a bug in this build: the command is poison, not a reason
            // to crash and have the broker deliver it again and again.
            let applied = match std::panic::AssertUnwindSafe(applying).catch_unwind().await {
                Ok(applied) => applied,
                Err(panic) => Err(ApplyError::Poison {
                    reason: "panic",
                    detail: panic_message(panic.as_ref()),
                }),
            };
            let retry = match applied {
                Ok(applied) => {
                    self.commits
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    self.metrics.batch_size.observe(batch.len() as f64);
                    self.answer(bus, &batch, &applied).await?;
                    for delivery in &batch {
                        delivery.incoming.ack().await?;
                    }
                    return Ok(Settled::Done);
                }
                // Another writer moved a stream, or took a nonce: apply again, at once the first
                // times, then with backoff; never a dead letter, however many.
                Err(ApplyError::Conflict(what)) => {
                    self.metrics.conflicts.inc();
                    tracing::debug!(parent: &span, %what, "concurrent change, applying again");
                    failures += 1;
                    failures > 3
                }
                // Anything that may succeed later (connection lost, read-only after a failover,
                // a statement timeout, an I/O error…): keep the commands and try again.
                // …unless this batch alone keeps failing while others commit: that is no outage
                // but something in these commands (ADR 0009): halve it down to the command, and
                // park that one with its reason. A real outage (nothing commits) waits for ever.
                Err(ApplyError::Unavailable(e)) => {
                    self.metrics.store_unavailable.inc();
                    if self.commits.load(std::sync::atomic::Ordering::SeqCst) > commits_before {
                        unavailable += 1;
                    }
                    if unavailable >= UNAVAILABLE_WHILE_OTHERS_COMMIT {
                        if batch.len() > 1 {
                            tracing::warn!(parent: &span, error = %e, "batch keeps failing while others commit, applying it in halves");
                            return Ok(Settled::Split(batch));
                        }
                        let delivery = &batch[0];
                        self.span_of(&delivery.envelope).in_scope(|| {
                            tracing::error!(error = %e, attempts = unavailable, "command keeps failing while others commit, dead-lettering");
                        });
                        self.metrics
                            .dead_letters
                            .get_or_create(&vec![("reason", "unavailable_alone".to_owned())])
                            .inc();
                        bus.dead_letter(&delivery.incoming, &format!("unavailable_alone: {e}"))
                            .await?;
                        return Ok(Settled::Done);
                    }
                    tracing::warn!(parent: &span, error = %e, "event store cannot apply the batch now, keeping the commands");
                    true
                }
                Err(e) if batch.len() > 1 => {
                    tracing::warn!(parent: &span, error = %e, "batch failed, applying it in halves");
                    return Ok(Settled::Split(batch));
                }
                Err(e) => {
                    let reason = match &e {
                        ApplyError::Poison { reason, .. } => *reason,
                        _ => "poison",
                    };
                    let delivery = &batch[0];
                    self.span_of(&delivery.envelope).in_scope(|| {
                        tracing::error!(error = %e, "command cannot be applied, dead-lettering");
                    });
                    self.metrics
                        .dead_letters
                        .get_or_create(&vec![("reason", reason.to_owned())])
                        .inc();
                    bus.dead_letter(&delivery.incoming, &e.to_string()).await?;
                    return Ok(Settled::Done);
                }
            };
            if retry && !backoff.wait(cancel).await {
                tracing::warn!(parent: &span, "shutting down, returning the commands to the queue");
                for delivery in &batch {
                    delivery.incoming.requeue().await?;
                }
                return Ok(Settled::Done);
            }
        }
    }

    /// One command's span: its correlation id, from the HTTP request to the appended events.
    fn span_of(&self, envelope: &CommandEnvelope) -> tracing::Span {
        tracing::info_span!("command", correlation_id = %envelope.correlation_id, message_id = %envelope.message_id, license = %envelope.license(), kind = %kind(envelope))
    }

    /// Counts, logs and replies to each command of a committed batch (unconfirmed: ADR 0008). A
    /// lost reply is not an error: the requester may be gone (it answered `000004` already), and
    /// the stored reply answers its retry; a closed channel is, so that the bus reconnects.
    async fn answer(
        &self,
        bus: &Bus,
        batch: &[Delivery],
        applied: &[Applied],
    ) -> Result<(), licensing_bus::BusError> {
        let now_ms = koogallery::market_time::unix_millis(OffsetDateTime::now_utc());
        let mut bodies = Vec::with_capacity(batch.len());
        for (delivery, applied) in batch.iter().zip(applied) {
            let envelope = &delivery.envelope;
            let kind = kind(envelope);
            self.metrics
                .latency
                .get_or_create(&vec![("kind", kind.clone())])
                .observe((now_ms - envelope.received_at_ms).max(0) as f64 / 1000.0);
            self.metrics
                .commands
                .get_or_create(&vec![
                    ("kind", kind),
                    ("outcome", applied.outcome.as_str().to_owned()),
                ])
                .inc();
            self.span_of(envelope).in_scope(|| {
                tracing::info!(
                    outcome = applied.outcome.as_str(),
                    events = applied.events,
                    batch = batch.len(),
                    "command applied"
                );
            });
            bodies.push(applied.reply.to_bytes());
        }
        for (delivery, body) in batch.iter().zip(&bodies) {
            let incoming = &delivery.incoming;
            let (Some(reply_to), Some(correlation_id)) =
                (&incoming.reply_to, &incoming.correlation_id)
            else {
                continue;
            };
            if let Err(e) = bus.publish_reply(reply_to, correlation_id, body).await {
                tracing::debug!(error = %e, "reply not delivered");
                // A reply channel that is gone would make every later callback wait for nothing,
                // and each later reply of the batch wait out the broker timeout: reconnect now.
                if !bus.is_connected() {
                    return Err(licensing_bus::BusError::Unavailable(
                        "the reply channel is closed".to_owned(),
                    ));
                }
            }
        }
        Ok(())
    }
}
