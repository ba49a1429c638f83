//! RabbitMQ for the licensing backend: the only crate that names lapin.
//!
//! - [`Bus::connect`] opens a connection and declares the topology ([`Names`]), idempotently;
//! - [`Bus::publish`] publishes persistently with publisher confirms and `mandatory`, and turns a
//!   nack, a return, a blocked connection or silence into an error within a bounded time;
//! - [`Bus::consume`] yields [`Incoming`] messages with manual acks and a prefetch;
//! - [`Replies`] waits for answers to requests (`reply_to` and `correlation_id`).

mod bus;
mod replies;

pub use bus::{
    Bus, BusConfig, BusError, FAILURE_HEADER, Incoming, IncomingStream, Names, Outgoing, QueueType,
};
pub use replies::{Replies, Waiting};
