//! RabbitMQ for the licensing backend: the only crate that names lapin.
//!
//! - [`Bus::connect`] opens a connection and declares the topology ([`Names`]), idempotently;
//! - [`Bus::publish`] publishes persistently with publisher confirms and `mandatory`, and turns a
//!   nack, a return, a blocked connection or silence into an error within a bounded time;
//! - [`Bus::publish_command`] routes a command to its license's shard ([`shard_of`], ADR 0016);
//! - [`Bus::consume`] yields [`Incoming`] messages with manual acks and a prefetch;
//! - [`Replies`] waits for answers to requests (`reply_to` and `correlation_id`).

mod bus;
mod config;
mod consume;
mod publish;
mod replies;
mod topology;

pub use bus::{Bus, BusError, FAILURE_HEADER, Names, PARKED_ID_HEADER, shard_of};
pub use config::{BusConfig, QueueType};
pub use consume::{Incoming, IncomingStream};
pub use publish::{EventMessage, Outgoing, PendingConfirms, TRACEPARENT};
pub use replies::{Replies, Waiting};
