//! Shards (ADR 0016): which command queues this processor consumes. A lease tick every third of
//! the lease renews what it holds and takes its share; each held shard is read by a task of its
//! own that hands commands to the workers; giving a shard back drains it first, so that the next
//! holder starts exactly where this one stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use licensing_bus::{Bus, BusError};
use licensing_messages::CommandEnvelope;
use licensing_runtime::CancellationToken;
use licensing_runtime::trace::{Span, SpanKind};
use licensing_store::LeaseError;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::processor::{Delivery, Processor};

/// This process's name among the processors: host, process id and a random part, so that a
/// restarted process is a new member.
pub(crate) fn member_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "processor".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..6])
}

/// A shard being read.
struct Reader {
    /// Asks the reader to drain and give the shard back.
    stop: CancellationToken,
    task: JoinHandle<Result<(), BusError>>,
}

impl Drop for Reader {
    /// A reader dropped unfinished (its processor starts over after its leases lapsed) stops at
    /// once: what it was handed returns to the queue when the broker connection closes.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The workers' inboxes, by lane.
pub(crate) type Lanes = Arc<Vec<mpsc::Sender<Delivery>>>;

impl Processor {
    /// How long a lease lasts: half the takeover (ADR 0016).
    pub(crate) fn lease(&self) -> Duration {
        self.config.takeover / 2
    }

    /// Keeps this processor's share of the shards, reading each held one into `lanes`, until
    /// `cancel` (then drains every shard and leaves) or a broker failure (then returns it, leaving
    /// the leases to be resumed on reconnect or to expire). Each renewal of the leases is sent on
    /// `renewed`, for [`leases_lapse`] to watch.
    pub(crate) async fn keep_shards(
        &self,
        bus: &Arc<Bus>,
        lanes: &Lanes,
        cancel: &CancellationToken,
        renewed: &watch::Sender<Instant>,
    ) -> Result<(), BusError> {
        let shards = bus.shards();
        let lease = self.lease();
        let tick_limit = lease / 3;
        let mut ticks = tokio::time::interval(tick_limit);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut readers: BTreeMap<u16, Reader> = BTreeMap::new();
        let mut refused = false;
        let mut checks: u64 = 0;
        let result = loop {
            tokio::select! {
                () = cancel.cancelled() => break Ok(()),
                _ = ticks.tick() => {}
            }
            // A reader that ended without being asked to lost the broker: so has this processor.
            if let Err(e) = reap(&mut readers, &self.metrics).await {
                break Err(e);
            }
            // Another count of shards, among the processors (PostgreSQL) or any service (the
            // broker's queues): take nothing, and let the leases held go now. The broker's queues
            // are looked at on the first tick, every tenth after and every tick while refusing: the
            // look (a passive declare of a queue that should not exist) makes the broker close a
            // channel, which the AMQP client logs as an error.
            let look = checks % 10 == 0 || refused;
            checks += 1;
            let counted = if look {
                bus.check_shard_count().await
            } else {
                Ok(())
            };
            let tick = match counted {
                Err(refused @ BusError::Refused(_)) => Err(refused.to_string()),
                _ => match tokio::time::timeout(
                    tick_limit,
                    self.store
                        .lease_tick(&self.member, i32::from(shards), lease),
                )
                .await
                {
                    Ok(Ok(tick)) => Ok(tick),
                    Ok(Err(differs @ LeaseError::ShardCountDiffers { .. })) => {
                        Err(differs.to_string())
                    }
                    Ok(Err(LeaseError::Store(e))) => {
                        // Keep what is held while the leases last: its work waits on PostgreSQL
                        // anyway. Past them, `leases_lapse` starts this processor over (ADR 0016).
                        tracing::warn!(error = %e, "cannot renew the shard leases now");
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!(
                            limit = ?tick_limit,
                            "no answer from PostgreSQL to the lease renewal"
                        );
                        continue;
                    }
                },
            };
            let tick = match tick {
                Ok(tick) => {
                    renewed.send_replace(Instant::now());
                    self.health.up("shards");
                    refused = false;
                    tick
                }
                Err(reason) => {
                    if !refused {
                        tracing::error!(error = %reason, "taking no shards");
                        refused = true;
                    }
                    self.health
                        .down("shards", "LICENSING_SHARDS differs from another service's");
                    for reader in readers.values() {
                        reader.stop.cancel();
                    }
                    continue;
                }
            };
            let held: Vec<u16> = tick
                .held
                .iter()
                .filter_map(|&s| u16::try_from(s).ok())
                .collect();
            // Lost (another member took an expired lease): drain and stop at once.
            for (shard, reader) in &readers {
                if !held.contains(shard) && !reader.stop.is_cancelled() {
                    tracing::warn!(shard, "lease lost, draining the shard");
                    reader.stop.cancel();
                }
            }
            // More than the share (a member joined): give back the highest ones.
            let extra = held.len().saturating_sub(tick.share);
            for shard in held.iter().rev().take(extra) {
                if let Some(reader) = readers.get(shard)
                    && !reader.stop.is_cancelled()
                {
                    tracing::info!(
                        shard,
                        share = tick.share,
                        members = tick.members.len(),
                        "giving a shard back"
                    );
                    reader.stop.cancel();
                }
            }
            for &shard in held.iter().take(held.len() - extra) {
                if let std::collections::btree_map::Entry::Vacant(free) = readers.entry(shard) {
                    tracing::info!(shard, members = tick.members.len(), "taking a shard");
                    self.metrics.shards_held.inc();
                    free.insert(self.read_shard(bus, shard, lanes));
                }
            }
        };
        for reader in readers.values() {
            reader.stop.cancel();
        }
        for (shard, mut reader) in readers {
            self.metrics.shards_held.dec();
            if let Ok(Err(e)) = (&mut reader.task).await {
                tracing::warn!(shard, error = %e, "shard reader stopped on a broker error");
            }
        }
        if cancel.is_cancelled()
            && let Err(e) = self.store.leave_shards(&self.member).await
        {
            tracing::warn!(error = %e, "cannot give the shards back; they move when the leases expire");
        }
        result
    }

    /// Starts reading `shard`: each command goes to the worker of its license. When stopped, it
    /// waits until the workers have settled every command it handed them, closes its channel (what
    /// was delivered but not handed over returns to the queue, in order) and gives the lease back.
    fn read_shard(&self, bus: &Arc<Bus>, shard: u16, lanes: &Lanes) -> Reader {
        let stop = CancellationToken::new();
        let (processor, bus, lanes, token) =
            (self.clone(), bus.clone(), lanes.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let prefetch = processor.config.prefetch.max(1);
            let mut commands = bus.consume_commands(shard, prefetch).await?;
            // One permit per command handed over; all of them back = nothing in flight.
            let in_flight = Arc::new(Semaphore::new(usize::from(prefetch)));
            let result = loop {
                let incoming = tokio::select! {
                    biased;
                    () = token.cancelled() => break Ok(()),
                    next = commands.next() => match next {
                        Some(Ok(incoming)) => incoming,
                        Some(Err(e)) => break Err(e),
                        None => break Err(BusError::Unavailable("the consumer ended".into())),
                    },
                };
                let Some(mut envelope) = processor.decode(&bus, &incoming).await? else {
                    continue;
                };
                // The command's work continues the trace it came with; its events carry it on.
                let mut span = Span::start(
                    "apply command",
                    SpanKind::Consumer,
                    incoming.header(licensing_bus::TRACEPARENT),
                );
                span.set("command.kind", crate::processor::kind(&envelope));
                span.set("license", envelope.license());
                span.set("shard", shard);
                envelope.trace_parent = span.traceparent();
                let permit = in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed");
                let lane = &lanes[crate::processor::lane_of(&envelope, lanes.len())];
                let delivery = Delivery {
                    incoming,
                    envelope,
                    taken: std::time::Instant::now(),
                    _in_flight: permit,
                    _span: span,
                };
                if lane.send(delivery).await.is_err() {
                    break Err(BusError::Unavailable("a worker stopped".into()));
                }
            };
            if result.is_ok() {
                let _all = in_flight
                    .acquire_many(u32::from(prefetch))
                    .await
                    .expect("never closed");
                commands.close().await;
                if let Err(e) = processor
                    .store
                    .release_shard(&processor.member, i32::from(shard))
                    .await
                {
                    tracing::warn!(shard, error = %e, "cannot give the shard back; it moves when its lease expires");
                } else {
                    tracing::info!(shard, "shard drained and given back");
                }
            }
            result
        });
        Reader { stop, task }
    }

    /// The envelope of a command, or `None` when it was undecodable and is now dead-lettered.
    async fn decode(
        &self,
        bus: &Bus,
        incoming: &licensing_bus::Incoming,
    ) -> Result<Option<CommandEnvelope>, BusError> {
        match CommandEnvelope::from_bytes(&incoming.body) {
            Ok(envelope) => Ok(Some(envelope)),
            Err(reason) => {
                tracing::error!(message_id = ?incoming.message_id, %reason, "undecodable command, dead-lettering");
                self.metrics
                    .dead_letters
                    .get_or_create(&vec![("reason", "undecodable".to_owned())])
                    .inc();
                bus.dead_letter(incoming, &format!("undecodable: {reason}"))
                    .await?;
                Ok(None)
            }
        }
    }
}

/// Removes the readers that finished: those asked to stop are done; one that ended on its own
/// is the broker's failure, returned.
async fn reap(
    readers: &mut BTreeMap<u16, Reader>,
    metrics: &crate::metrics::Metrics,
) -> Result<(), BusError> {
    let finished: Vec<u16> = readers
        .iter()
        .filter(|(_, r)| r.task.is_finished())
        .map(|(&shard, _)| shard)
        .collect();
    for shard in finished {
        let mut reader = readers.remove(&shard).expect("listed above");
        metrics.shards_held.dec();
        match (&mut reader.task).await {
            Ok(Ok(())) if reader.stop.is_cancelled() => {}
            Ok(Ok(())) => {
                return Err(BusError::Unavailable(format!(
                    "shard {shard}'s consumer ended"
                )));
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(BusError::Unavailable(format!(
                    "shard {shard}'s reader failed: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// Returns once no renewal has come on `renewed` for `lease`: the leases this processor held have
/// expired, another may be reading its shards, and whatever it still does with them (a batch
/// waiting on a connection that went silent, a drain that cannot finish) must stop.
pub(crate) async fn leases_lapse(mut renewed: watch::Receiver<Instant>, lease: Duration) {
    loop {
        let deadline = *renewed.borrow_and_update() + lease;
        tokio::select! {
            changed = renewed.changed() => {
                if changed.is_err() {
                    // The keeper is gone: the caller's other branch ends.
                    std::future::pending::<()>().await;
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => return,
        }
    }
}
