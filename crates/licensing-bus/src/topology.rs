//! The topology: exchanges and queues declared idempotently, private queues, deletion.

use lapin::ExchangeKind;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::bus::{Bus, BusError, Names, bounded};
use crate::config::QueueType;

impl Bus {
    /// Declares the exchanges and queues (idempotent; arguments must match existing ones).
    pub async fn declare_topology(&self) -> Result<(), BusError> {
        let ch = &self.publisher;
        let t = self.config.timeout;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let n = &self.names;
        for (exchange, kind) in [
            (&n.commands_exchange, ExchangeKind::Direct),
            (&n.dead_letter_exchange, ExchangeKind::Fanout),
            (&n.events_exchange, ExchangeKind::Topic),
        ] {
            bounded(
                t,
                "exchange.declare",
                ch.exchange_declare(
                    exchange.as_str().into(),
                    kind,
                    durable,
                    FieldTable::default(),
                ),
            )
            .await?;
        }

        let queue_options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let mut dead_args = FieldTable::default();
        if self.config.queue_type == QueueType::Quorum {
            dead_args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        bounded(
            t,
            "queue.declare",
            ch.queue_declare(
                n.dead_letter_queue.as_str().into(),
                queue_options,
                dead_args,
            ),
        )
        .await?;
        bounded(
            t,
            "queue.bind",
            ch.queue_bind(
                n.dead_letter_queue.as_str().into(),
                n.dead_letter_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;

        // Refusal records: classic, bounded, the oldest dropped when full; never dead-lettered.
        let mut refusal_args = FieldTable::default();
        refusal_args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(crate::bus::REFUSALS_QUEUE_MAX),
        );
        refusal_args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
        bounded(
            t,
            "queue.declare",
            ch.queue_declare(
                n.refusals_queue.as_str().into(),
                queue_options,
                refusal_args,
            ),
        )
        .await?;
        bounded(
            t,
            "queue.bind",
            ch.queue_bind(
                n.refusals_queue.as_str().into(),
                n.commands_exchange.as_str().into(),
                crate::bus::REFUSAL_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;

        let mut args = FieldTable::default();
        // Rejected (and, with a delivery limit, over-delivered) commands go to the dead-letter queue.
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(n.dead_letter_exchange.as_str().into()),
        );
        // One processor consumes a shard at a time, even if two believe they hold its lease; the
        // next one takes over when the first one's channel closes. This keeps the commands of
        // each license in order (ADR 0006, ADR 0016).
        args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        if self.config.queue_type == QueueType::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            // No broker delivery limit by default: the broker counts every return, including
            // those of a reconnect, a shutdown or an outage, so a limit would dead-letter valid
            // commands. The processor alone decides what is poison (ADR 0009).
            if self.config.delivery_limit > 0 {
                args.insert(
                    "x-delivery-limit".into(),
                    AMQPValue::LongInt(self.config.delivery_limit as i32),
                );
            }
        }
        for shard in 0..self.config.shards {
            let queue = n.command_queue(shard);
            bounded(
                t,
                "queue.declare",
                ch.queue_declare(queue.as_str().into(), queue_options, args.clone()),
            )
            .await?;
            bounded(
                t,
                "queue.bind",
                ch.queue_bind(
                    queue.as_str().into(),
                    n.commands_exchange.as_str().into(),
                    Names::command_key(shard).as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
        }
        self.check_shard_count().await
    }

    /// Refuses a shard count below what the broker holds: when the queue of shard
    /// `LICENSING_SHARDS` exists, another service runs with more shards (its commands would wait
    /// in queues nobody here reads) or a former count's queues remain. Each service checks at
    /// connect; the processors again at every lease tick (ADR 0016).
    pub async fn check_shard_count(&self) -> Result<(), BusError> {
        let beyond = self.names.command_queue(self.config.shards);
        // A passive declare succeeds only for a queue that exists.
        if self.queue_stats(&beyond).await.is_ok() {
            return Err(BusError::Refused(format!(
                "the command queue {beyond} exists, beyond LICENSING_SHARDS={}: another service runs with more shards, or a former count's queues remain (docs/operations.md, changing the shard count)",
                self.config.shards
            )));
        }
        Ok(())
    }

    /// Declares an exclusive, auto-deleted queue for this process (e.g. for replies); returns its name.
    pub async fn declare_private_queue(&self, name: &str) -> Result<String, BusError> {
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = bounded(
            self.config.timeout,
            "queue.declare",
            self.publisher
                .queue_declare(name.into(), options, FieldTable::default()),
        )
        .await?;
        Ok(queue.name().as_str().to_owned())
    }

    /// Deletes every queue and exchange of this prefix (tests, decommissioning). Messages in them are lost.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let t = self.config.timeout;
        let n = &self.names;
        let mut queues = self.command_queues();
        queues.push(n.dead_letter_queue.clone());
        queues.push(n.refusals_queue.clone());
        for queue in &queues {
            bounded(
                t,
                "queue.delete",
                self.publisher
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default()),
            )
            .await?;
        }
        for exchange in [
            &n.commands_exchange,
            &n.dead_letter_exchange,
            &n.events_exchange,
        ] {
            bounded(
                t,
                "exchange.delete",
                self.publisher
                    .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()),
            )
            .await?;
        }
        Ok(())
    }
}
