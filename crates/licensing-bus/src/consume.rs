//! Consuming: manual acks, prefetch, event subscriptions, and the received message.

use futures_util::StreamExt;
use lapin::Channel;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueBindOptions,
};
use lapin::types::{AMQPValue, FieldTable};

use crate::bus::{Bus, BusError, bounded};

impl Bus {
    /// Consumes the command queue of `shard` with manual acks and `prefetch` unacknowledged
    /// messages at most, on a channel of its own (closing it returns what is not acknowledged).
    pub async fn consume_commands(
        &self,
        shard: u16,
        prefetch: u16,
    ) -> Result<IncomingStream, BusError> {
        let queue = self.names.command_queue(shard);
        self.consume(&queue, prefetch, false).await
    }

    /// Consumes the refusals queue with manual acks, `prefetch` at most in hand.
    pub async fn consume_refusals(&self, prefetch: u16) -> Result<IncomingStream, BusError> {
        let queue = self.names.refusals_queue.clone();
        self.consume(&queue, prefetch, false).await
    }

    /// Consumes a queue. With `auto_ack`, messages are acknowledged on delivery.
    pub async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
        auto_ack: bool,
    ) -> Result<IncomingStream, BusError> {
        let t = self.config.timeout;
        let channel = bounded(t, "channel.open", self.connection.create_channel()).await?;
        bounded(
            t,
            "basic.qos",
            channel.basic_qos(prefetch, BasicQosOptions::default()),
        )
        .await?;
        let options = BasicConsumeOptions {
            no_ack: auto_ack,
            ..BasicConsumeOptions::default()
        };
        let consumer = bounded(
            t,
            "basic.consume",
            channel.basic_consume(queue.into(), "".into(), options, FieldTable::default()),
        )
        .await?;
        Ok(IncomingStream {
            consumer,
            channel,
            timeout: t,
        })
    }

    /// Subscribes to events under a durable queue `licensing.subscriber.<name>` bound with
    /// `pattern`: events published while the subscriber is away wait for it there, so a
    /// subscriber that reconnects with the same name misses nothing. Delete the queue (RabbitMQ's
    /// tools) when the subscriber is retired.
    pub async fn subscribe_events_durable(
        &self,
        name: &str,
        pattern: &str,
        prefetch: u16,
    ) -> Result<IncomingStream, BusError> {
        let queue = format!("{}licensing.subscriber.{name}", self.config.prefix);
        bounded(
            self.config.timeout,
            "queue.declare",
            self.publisher.queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        self.consume_events(&queue, pattern, prefetch).await
    }

    /// Binds `queue` to the events exchange with `pattern` and consumes it with manual acks.
    async fn consume_events(
        &self,
        queue: &str,
        pattern: &str,
        prefetch: u16,
    ) -> Result<IncomingStream, BusError> {
        bounded(
            self.config.timeout,
            "queue.bind",
            self.publisher.queue_bind(
                queue.into(),
                self.names.events_exchange.as_str().into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        self.consume(queue, prefetch, false).await
    }

    /// Deletes a queue and the messages in it (a retired durable subscriber).
    pub async fn delete_queue(&self, queue: &str) -> Result<(), BusError> {
        bounded(
            self.config.timeout,
            "queue.delete",
            self.publisher
                .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default()),
        )
        .await?;
        Ok(())
    }

    /// Messages ready in a queue (not counting those delivered and not yet acknowledged).
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, BusError> {
        Ok(self.queue_stats(queue).await?.0)
    }

    /// A queue's ready messages and its consumers. Asks on a channel of its own: a missing queue
    /// closes the channel that asked.
    pub async fn queue_stats(&self, queue: &str) -> Result<(u32, u32), BusError> {
        let t = self.config.timeout;
        let channel = bounded(t, "channel.open", self.connection.create_channel()).await?;
        let declared = bounded(
            t,
            "queue.declare",
            channel.queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await;
        let _ = channel.close(200, "OK".into()).await;
        let declared = declared?;
        Ok((declared.message_count(), declared.consumer_count()))
    }

    /// The command queues' ready messages and consumers, summed over the shards.
    pub async fn command_queue_stats(&self) -> Result<(u32, u32), BusError> {
        let mut total = (0, 0);
        for queue in self.command_queues() {
            let (ready, consumers) = self.queue_stats(&queue).await?;
            total = (total.0 + ready, total.1 + consumers);
        }
        Ok(total)
    }

    /// Subscribes to events: a private queue bound to the events exchange with `pattern`
    /// (`license.#`, `license.frozen`, `test.license.#`), consumed with manual acks.
    pub async fn subscribe_events(
        &self,
        pattern: &str,
        prefetch: u16,
    ) -> Result<IncomingStream, BusError> {
        let name = format!(
            "{}licensing.subscriber.{}",
            self.config.prefix,
            uuid::Uuid::new_v4().simple()
        );
        let queue = self.declare_private_queue(&name).await?;
        self.consume_events(&queue, pattern, prefetch).await
    }
}

/// A stream of incoming messages.
#[derive(Debug)]
pub struct IncomingStream {
    consumer: lapin::Consumer,
    channel: Channel,
    /// How long the broker may take to answer (`LICENSING_AMQP_TIMEOUT_MS`).
    timeout: std::time::Duration,
}

impl IncomingStream {
    /// Closes the consumer's channel: every message delivered and not acknowledged returns to the
    /// head of its queue, in order, for the next consumer.
    pub async fn close(self) {
        let closing = self.channel.close(200, "OK".into());
        let _ = bounded(self.timeout, "channel.close", closing).await;
    }

    /// The next message; `None` when the consumer or its connection ended, an error when its
    /// channel is no longer open (checked every 250 ms while waiting), so that a consumer whose
    /// channel or connection was lost without its stream ending is never left waiting forever.
    pub async fn next(&mut self) -> Option<Result<Incoming, BusError>> {
        let channel = &self.channel;
        let closed = async {
            while channel.status().connected() {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        };
        let delivery = tokio::select! {
            biased;
            delivery = self.consumer.next() => delivery?,
            () = closed => {
                return Some(Err(BusError::Unavailable(
                    "the consumer's channel is closed".to_owned(),
                )));
            }
        };
        Some(delivery.map_err(BusError::from).map(|d| {
            let headers = d
                .properties
                .headers()
                .as_ref()
                .map(|h| {
                    h.inner()
                        .iter()
                        .filter_map(|(k, v)| match v {
                            AMQPValue::LongString(s) => Some((
                                k.as_str().to_owned(),
                                String::from_utf8_lossy(s.as_bytes()).into_owned(),
                            )),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Incoming {
                message_id: d
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().to_owned()),
                correlation_id: d
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|s| s.as_str().to_owned()),
                reply_to: d
                    .properties
                    .reply_to()
                    .as_ref()
                    .map(|s| s.as_str().to_owned()),
                redelivered: d.redelivered,
                headers,
                body: d.data,
                acker: d.acker,
                timeout: self.timeout,
            }
        }))
    }
}

/// A received message. Exactly one of [`Incoming::ack`], [`Incoming::requeue`] or
/// [`Bus::dead_letter`] should be called, once its outcome is durable.
#[derive(Debug)]
pub struct Incoming {
    /// `message_id` property.
    pub message_id: Option<String>,
    /// `correlation_id` property.
    pub correlation_id: Option<String>,
    /// `reply_to` property.
    pub reply_to: Option<String>,
    /// Whether the broker delivered it before.
    pub redelivered: bool,
    /// String headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    acker: lapin::Acker,
    timeout: std::time::Duration,
}

impl Incoming {
    /// Acknowledges: the message is done.
    /// Bounded by the broker timeout, like every call to the broker: an acknowledgement on a
    /// connection that went away fails instead of waiting for ever.
    pub async fn ack(&self) -> Result<(), BusError> {
        let acking = self.acker.ack(BasicAckOptions::default());
        bounded(self.timeout, "basic.ack", acking).await?;
        Ok(())
    }

    /// Gives the message back to the queue, to be delivered again.
    pub async fn requeue(&self) -> Result<(), BusError> {
        let nacking = self.acker.nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        });
        bounded(self.timeout, "basic.nack", nacking).await?;
        Ok(())
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
