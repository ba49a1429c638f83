//! Connection, topology, confirmed publishing and consuming.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// The type of the command queue (ADR 0006).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    /// Replicated, with a delivery limit enforced by the broker (default).
    Quorum,
    /// A single-node classic queue (development, old brokers).
    Classic,
}

impl std::str::FromStr for QueueType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quorum" => Ok(Self::Quorum),
            "classic" => Ok(Self::Classic),
            other => Err(format!("expected `quorum` or `classic`, got {other:?}")),
        }
    }
}

/// How to reach RabbitMQ and how the topology is named.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `amqp://user:password@host:port/vhost` (`LICENSING_AMQP_URL`).
    pub url: String,
    /// Prefix of every exchange and queue name (`LICENSING_AMQP_PREFIX`), e.g. `staging.`.
    pub prefix: String,
    /// Command queue type.
    pub queue_type: QueueType,
    /// Deliveries of one message before the broker dead-letters it (quorum queues); 0, the
    /// default, sets no limit (ADR 0009).
    pub delivery_limit: u32,
    /// Longest wait for a connection or a publisher confirm.
    pub timeout: Duration,
}

impl BusConfig {
    /// Defaults for a URL: no prefix, quorum queue, no delivery limit, 2 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: String::new(),
            queue_type: QueueType::Quorum,
            delivery_limit: 0,
            timeout: Duration::from_secs(2),
        }
    }
}

impl BusConfig {
    /// Reads `LICENSING_AMQP_URL` (required), `LICENSING_AMQP_PREFIX`, `LICENSING_AMQP_QUEUE_TYPE`
    /// (`quorum` or `classic`), `LICENSING_AMQP_DELIVERY_LIMIT` and `LICENSING_AMQP_TIMEOUT_MS`
    /// through `get`. An error names the variable.
    pub fn from_lookup(
        get: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, (&'static str, String)> {
        fn parse<T: std::str::FromStr>(
            name: &'static str,
            raw: Option<String>,
            default: T,
        ) -> Result<T, (&'static str, String)>
        where
            T::Err: std::fmt::Display,
        {
            match raw {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse()
                    .map_err(|e| (name, format!("{raw:?}: {e}"))),
            }
        }
        let url = get("LICENSING_AMQP_URL")
            .ok_or(("LICENSING_AMQP_URL", "is required but not set".to_owned()))?;
        let mut config = Self::new(url);
        config.prefix = get("LICENSING_AMQP_PREFIX").unwrap_or_default();
        config.queue_type = parse(
            "LICENSING_AMQP_QUEUE_TYPE",
            get("LICENSING_AMQP_QUEUE_TYPE"),
            QueueType::Quorum,
        )?;
        config.delivery_limit = parse(
            "LICENSING_AMQP_DELIVERY_LIMIT",
            get("LICENSING_AMQP_DELIVERY_LIMIT"),
            0,
        )?;
        config.timeout = Duration::from_millis(parse(
            "LICENSING_AMQP_TIMEOUT_MS",
            get("LICENSING_AMQP_TIMEOUT_MS"),
            2000,
        )?);
        Ok(config)
    }
}

/// The names of the topology, all under the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Direct exchange the ingress publishes commands to.
    pub commands_exchange: String,
    /// Durable queue the processor consumes (single active consumer).
    pub commands_queue: String,
    /// Fanout exchange for messages that cannot be processed.
    pub dead_letter_exchange: String,
    /// Durable queue keeping them, with the failure reason in a header.
    pub dead_letter_queue: String,
    /// Topic exchange where every committed event is published for subscribers.
    pub events_exchange: String,
}

/// Routing key of commands on the commands exchange.
const COMMAND_KEY: &str = "command";
/// Header carrying why a message was dead-lettered.
pub const FAILURE_HEADER: &str = "x-licensing-failure";

impl Names {
    /// The names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            commands_exchange: format!("{prefix}licensing.commands"),
            commands_queue: format!("{prefix}licensing.commands"),
            dead_letter_exchange: format!("{prefix}licensing.dead-letter"),
            dead_letter_queue: format!("{prefix}licensing.dead-letter"),
            events_exchange: format!("{prefix}licensing.events"),
        }
    }
}

/// What went wrong with the broker.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// RabbitMQ cannot be reached, the connection or channel is closed, or it did not answer in time.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// The broker refused a message (nack) or could not route it (returned).
    #[error("the broker refused the message: {0}")]
    Refused(String),
}

impl From<lapin::Error> for BusError {
    fn from(error: lapin::Error) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// Exchange (`""` for the default exchange, used for replies).
    pub exchange: &'a str,
    /// Routing key.
    pub routing_key: &'a str,
    /// Body (JSON).
    pub body: &'a [u8],
    /// Message id.
    pub message_id: String,
    /// Correlation id (the request's, for replies).
    pub correlation_id: Option<String>,
    /// Where the answer should go.
    pub reply_to: Option<String>,
    /// Extra headers (string values).
    pub headers: Vec<(String, String)>,
}

/// A connection with its topology declared, and a confirm-mode channel for publishing.
#[derive(Debug)]
pub struct Bus {
    connection: Connection,
    publisher: Channel,
    config: BusConfig,
    names: Names,
}

async fn bounded<T>(
    timeout: Duration,
    what: &str,
    future: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BusError::Unavailable(format!(
            "no answer from the broker to {what} within {timeout:?}"
        ))),
    }
}

impl Bus {
    /// Connects, opens the publishing channel in confirm mode, and declares the topology.
    pub async fn connect(config: BusConfig) -> Result<Self, BusError> {
        let properties = ConnectionProperties::default().with_connection_name(LongString::from(
            format!("licensing-{}", std::process::id()),
        ));
        let connection = bounded(
            config.timeout,
            "connect",
            Connection::connect(&config.url, properties),
        )
        .await?;
        let publisher =
            bounded(config.timeout, "channel.open", connection.create_channel()).await?;
        bounded(
            config.timeout,
            "confirm.select",
            publisher.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        let names = Names::new(&config.prefix);
        let bus = Self {
            connection,
            publisher,
            config,
            names,
        };
        bus.declare_topology().await?;
        Ok(bus)
    }

    /// The prefix of every name (`LICENSING_AMQP_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// The topology's names.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Whether the connection and the publishing channel are open.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }

    /// Resolves when the connection or the publishing channel is no longer open (checked every
    /// 250 ms): a task holding the bus races its work against this to notice a silent loss.
    pub async fn closed(&self) {
        while self.is_connected() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

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

        let mut args = FieldTable::default();
        // Rejected (and, with a delivery limit, over-delivered) commands go to the dead-letter queue.
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(n.dead_letter_exchange.as_str().into()),
        );
        // One processor consumes at a time; a standby takes over when it goes away. This keeps
        // the commands of each license in order (ADR 0006).
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
        bounded(
            t,
            "queue.declare",
            ch.queue_declare(n.commands_queue.as_str().into(), queue_options, args),
        )
        .await?;
        bounded(
            t,
            "queue.bind",
            ch.queue_bind(
                n.commands_queue.as_str().into(),
                n.commands_exchange.as_str().into(),
                COMMAND_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok(())
    }

    /// Publishes a command for the processor, persistently, and waits for the broker's confirm.
    pub async fn publish_command(
        &self,
        body: &[u8],
        message_id: String,
        correlation_id: String,
        reply_to: Option<String>,
    ) -> Result<(), BusError> {
        self.publish(Outgoing {
            exchange: &self.names.commands_exchange.clone(),
            routing_key: COMMAND_KEY,
            body,
            message_id,
            correlation_id: Some(correlation_id),
            reply_to,
            headers: Vec::new(),
        })
        .await
    }

    /// Publishes persistently with `mandatory`, and waits (bounded) for the broker's confirm.
    /// A nack or a return (no queue bound) is [`BusError::Refused`]; no confirm in time (a blocked
    /// or dead connection) is [`BusError::Unavailable`].
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), BusError> {
        self.send(message, true).await
    }

    /// Publishes an event for subscribers on the events exchange, persistently, confirmed; not
    /// `mandatory`: an event nobody subscribes to is not an error.
    pub async fn publish_event(
        &self,
        routing_key: &str,
        body: &[u8],
        message_id: String,
    ) -> Result<(), BusError> {
        let exchange = self.names.events_exchange.clone();
        self.send(
            Outgoing {
                exchange: &exchange,
                routing_key,
                body,
                message_id,
                correlation_id: None,
                reply_to: None,
                headers: Vec::new(),
            },
            false,
        )
        .await
    }

    async fn send(&self, message: Outgoing<'_>, mandatory: bool) -> Result<(), BusError> {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(message.message_id.into());
        if let Some(id) = message.correlation_id {
            properties = properties.with_correlation_id(id.into());
        }
        if let Some(reply_to) = message.reply_to {
            properties = properties.with_reply_to(reply_to.into());
        }
        if !message.headers.is_empty() {
            let mut headers = FieldTable::default();
            for (k, v) in message.headers {
                headers.insert(k.into(), AMQPValue::LongString(v.into()));
            }
            properties = properties.with_headers(headers);
        }
        let options = BasicPublishOptions {
            mandatory,
            ..BasicPublishOptions::default()
        };
        let t = self.config.timeout;
        let confirm = bounded(
            t,
            "basic.publish",
            self.publisher.basic_publish(
                message.exchange.into(),
                message.routing_key.into(),
                options,
                message.body,
                properties,
            ),
        )
        .await?;
        match bounded(t, "the publisher confirm", confirm).await? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(BusError::Refused(format!(
                "returned as unroutable: {}",
                returned.reply_text
            ))),
            Confirmation::Nack(_) => Err(BusError::Refused("nacked by the broker".to_owned())),
        }
    }

    /// Consumes the command queue with manual acks and `prefetch` unacknowledged messages at most.
    pub async fn consume_commands(&self, prefetch: u16) -> Result<IncomingStream, BusError> {
        let queue = self.names.commands_queue.clone();
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
            _channel: channel,
        })
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
        bounded(
            self.config.timeout,
            "queue.bind",
            self.publisher.queue_bind(
                queue.as_str().into(),
                self.names.events_exchange.as_str().into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        self.consume(&queue, prefetch, false).await
    }

    /// Sends a message to the dead-letter exchange with the reason in a header, then acknowledges
    /// the original: it leaves the command queue only once it is safely parked.
    pub async fn dead_letter(&self, incoming: &Incoming, reason: &str) -> Result<(), BusError> {
        self.publish(Outgoing {
            exchange: &self.names.dead_letter_exchange.clone(),
            routing_key: "",
            body: &incoming.body,
            message_id: incoming.message_id.clone().unwrap_or_default(),
            correlation_id: incoming.correlation_id.clone(),
            reply_to: None,
            headers: vec![(FAILURE_HEADER.to_owned(), reason.to_owned())],
        })
        .await?;
        incoming.ack().await
    }

    /// Deletes every queue and exchange of this prefix (tests, decommissioning). Messages in them are lost.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let t = self.config.timeout;
        let n = &self.names;
        for queue in [&n.commands_queue, &n.dead_letter_queue] {
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

    /// Closes the connection cleanly.
    pub async fn close(&self) {
        let _ = self.connection.close(200, ShortString::from("bye")).await;
    }
}

/// A stream of incoming messages.
#[derive(Debug)]
pub struct IncomingStream {
    consumer: lapin::Consumer,
    _channel: Channel,
}

impl IncomingStream {
    /// The next message; `None` when the consumer or its connection ended.
    pub async fn next(&mut self) -> Option<Result<Incoming, BusError>> {
        let delivery = self.consumer.next().await?;
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
}

impl Incoming {
    /// Acknowledges: the message is done.
    pub async fn ack(&self) -> Result<(), BusError> {
        self.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Gives the message back to the queue, to be delivered again.
    pub async fn requeue(&self) -> Result<(), BusError> {
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await?;
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
