//! The connection: the topology's names, errors, connecting and closing.

use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{LongString, ShortString};
use lapin::{Channel, Connection, ConnectionBuilder, ConnectionProperties};

use crate::config::BusConfig;

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
pub(crate) const COMMAND_KEY: &str = "command";
/// Header carrying why a message was dead-lettered.
pub const FAILURE_HEADER: &str = "x-licensing-failure";
/// Header carrying the id of one parking of a message in the dead-letter queue (a message parked
/// twice has two), so that the dead-letter keeper records each parking once.
pub const PARKED_ID_HEADER: &str = "x-licensing-parked-id";

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

/// A connection with its topology declared, and a confirm-mode channel for publishing.
#[derive(Debug)]
pub struct Bus {
    pub(crate) connection: Connection,
    pub(crate) publisher: Channel,
    pub(crate) config: BusConfig,
    pub(crate) names: Names,
}

pub(crate) async fn bounded<T>(
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
        // `amqps://` verifies the broker's certificate against the system's roots and `ca_pem`.
        let tls = OwnedTLSConfig {
            identity: None,
            cert_chain: config.ca_pem.clone(),
        };
        let connect = async {
            ConnectionBuilder::new()?
                .with_uri_str(config.url.clone())
                .with_properties(properties)
                .with_tls_config(tls)
                .connect()
                .await
        };
        let connection = bounded(config.timeout, "connect", connect).await?;
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

    /// Closes the connection cleanly.
    pub async fn close(&self) {
        let _ = self.connection.close(200, ShortString::from("bye")).await;
    }
}
