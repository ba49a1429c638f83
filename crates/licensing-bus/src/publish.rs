//! Publishing: persistent, confirmed, bounded in time; commands, replies, events, dead letters.

use lapin::BasicProperties;
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};

use crate::bus::{Bus, BusError, FAILURE_HEADER, Names, PARKED_ID_HEADER, bounded, shard_of};
use crate::consume::Incoming;

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

/// One event for [`Bus::publish_events`].
#[derive(Debug, Clone)]
pub struct EventMessage<'a> {
    /// `license.<event_type>` and the like.
    pub routing_key: &'a str,
    /// The subscriber envelope (JSON).
    pub body: &'a [u8],
    /// The event's id.
    pub message_id: String,
    /// A W3C `traceparent`, carried in the header of that name.
    pub trace: Option<&'a str>,
}

/// The header carrying a W3C trace context, when there is one.
fn trace_header(trace: Option<&str>) -> Vec<(String, String)> {
    trace
        .map(|t| vec![(TRACEPARENT.to_owned(), t.to_owned())])
        .unwrap_or_default()
}

/// What a confirm says: a nack or a return (no queue bound) is [`BusError::Refused`].
fn settle(confirmation: Confirmation) -> Result<(), BusError> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(BusError::Refused(format!(
            "returned as unroutable: {}",
            returned.reply_text
        ))),
        Confirmation::Nack(_) => Err(BusError::Refused("nacked by the broker".to_owned())),
    }
}

/// The broker's confirms still to come for events handed over by [`Bus::send_events`].
#[derive(Debug)]
#[must_use = "events are delivered only once their confirms are settled"]
pub struct PendingConfirms {
    confirms: Vec<lapin::PublisherConfirm>,
    timeout: std::time::Duration,
}

impl PendingConfirms {
    /// Waits for every confirm, each bounded in time; returns the first failure (events before it
    /// may have been delivered: the caller hands them over again, at least once).
    pub async fn settled(self) -> Result<(), BusError> {
        for confirm in self.confirms {
            settle(bounded(self.timeout, "the publisher confirm", confirm).await?)?;
        }
        Ok(())
    }
}

/// The AMQP header of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

impl Bus {
    /// Publishes a command for the processor to the shard of `license` (its code; any stable key
    /// for a body that names none), persistently, and waits for the broker's confirm. `trace` (a
    /// W3C `traceparent`) travels in the header of that name.
    pub async fn publish_command(
        &self,
        license: &str,
        body: &[u8],
        message_id: String,
        correlation_id: String,
        reply_to: Option<String>,
        trace: Option<&str>,
    ) -> Result<(), BusError> {
        self.publish(Outgoing {
            exchange: &self.names.commands_exchange.clone(),
            routing_key: &Names::command_key(shard_of(license, self.config.shards)),
            body,
            message_id,
            correlation_id: Some(correlation_id),
            reply_to,
            headers: trace_header(trace),
        })
        .await
    }

    /// Publishes the record of a refused callback request to the refusals queue, apart from every
    /// command lane (confirmed; the queue drops its oldest record when full).
    pub async fn publish_refusal(&self, body: &[u8], message_id: String) -> Result<(), BusError> {
        self.publish(Outgoing {
            exchange: &self.names.commands_exchange.clone(),
            routing_key: crate::bus::REFUSAL_KEY,
            body,
            message_id,
            correlation_id: None,
            reply_to: None,
            headers: Vec::new(),
        })
        .await
    }

    /// Publishes a reply to a requester's private queue: transient, not `mandatory`, not confirmed,
    /// on a channel of its own. A reply only spares the requester a wait: the processor stores
    /// every reply and answers a retry from it (D8), so a lost reply costs a `000004`, never a
    /// result; confirming replies cost the broker and the processor CPU for nothing. An error
    /// means the channel is gone.
    pub async fn publish_reply(
        &self,
        queue: &str,
        correlation_id: &str,
        body: &[u8],
    ) -> Result<(), BusError> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_correlation_id(correlation_id.into());
        bounded(
            self.config.timeout,
            "basic.publish",
            self.replier.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            ),
        )
        .await?;
        Ok(())
    }

    /// Publishes persistently with `mandatory`, and waits (bounded) for the broker's confirm.
    /// A nack or a return (no queue bound) is [`BusError::Refused`]; no confirm in time (a blocked
    /// or dead connection) is [`BusError::Unavailable`].
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), BusError> {
        self.send(message, true).await
    }

    /// Hands events for subscribers to the events exchange, persistently, in order, without
    /// waiting for their confirms: the caller awaits [`PendingConfirms::settled`], and may hand
    /// over more batches meanwhile (all on the one publisher channel, so they stay in order). Not
    /// `mandatory`: an event nobody subscribes to is not an error.
    pub async fn send_events(
        &self,
        events: &[EventMessage<'_>],
    ) -> Result<PendingConfirms, BusError> {
        use std::task::Poll;
        let exchange = self.names.events_exchange.clone();
        let mut confirms = Vec::with_capacity(events.len());
        let mut handing = Vec::with_capacity(events.len());
        for event in events {
            let message = Outgoing {
                exchange: &exchange,
                routing_key: event.routing_key,
                body: event.body,
                message_id: event.message_id.clone(),
                correlation_id: None,
                reply_to: None,
                headers: trace_header(event.trace),
            };
            // A publish queues its frames for the connection's I/O thread when first polled, then
            // waits for that thread to write them. Polling each once here, in order, queues the
            // whole batch in order and lets the I/O thread write it in a few wake-ups, instead of
            // one round trip between the threads per event.
            let mut publish = Box::pin(self.start(message, false));
            match std::future::poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await {
                Poll::Ready(confirm) => confirms.push(confirm?),
                Poll::Pending => handing.push(publish),
            }
        }
        for publish in handing {
            confirms.push(publish.await?);
        }
        Ok(PendingConfirms {
            confirms,
            timeout: self.config.timeout,
        })
    }

    async fn send(&self, message: Outgoing<'_>, mandatory: bool) -> Result<(), BusError> {
        let confirm = self.start(message, mandatory).await?;
        settle(bounded(self.config.timeout, "the publisher confirm", confirm).await?)
    }

    /// Hands a message to the publisher channel; the confirm is awaited by the caller.
    async fn start(
        &self,
        message: Outgoing<'_>,
        mandatory: bool,
    ) -> Result<lapin::PublisherConfirm, BusError> {
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
        bounded(
            self.config.timeout,
            "basic.publish",
            self.publisher.basic_publish(
                message.exchange.into(),
                message.routing_key.into(),
                options,
                message.body,
                properties,
            ),
        )
        .await
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
            headers: vec![
                (FAILURE_HEADER.to_owned(), reason.to_owned()),
                (
                    PARKED_ID_HEADER.to_owned(),
                    uuid::Uuid::new_v4().to_string(),
                ),
            ],
        })
        .await?;
        incoming.ack().await
    }
}
