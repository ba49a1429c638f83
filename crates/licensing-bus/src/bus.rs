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
    /// Durable queue of shard 0, the only one with one shard (single active consumer); shard
    /// `i > 0` is this name followed by `.i` ([`Names::command_queue`]).
    pub commands_queue: String,
    /// Fanout exchange for messages that cannot be processed.
    pub dead_letter_exchange: String,
    /// Durable queue keeping them, with the failure reason in a header.
    pub dead_letter_queue: String,
    /// Topic exchange where every committed event is published for subscribers.
    pub events_exchange: String,
    /// Queue of the records of refused callback requests: apart from every command lane, bounded
    /// in length (the oldest dropped first), written best effort by the processors.
    pub refusals_queue: String,
}

/// Routing key of refusal records on the commands exchange.
pub(crate) const REFUSAL_KEY: &str = "refusal";
/// The most refusal records the broker holds; past it the oldest are dropped.
pub(crate) const REFUSALS_QUEUE_MAX: i64 = 10_000;

/// Routing key of shard 0's commands on the commands exchange (`command.i` for shard `i > 0`).
const COMMAND_KEY: &str = "command";
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
            refusals_queue: format!("{prefix}licensing.refusals"),
        }
    }
}

impl Names {
    /// The command queue of `shard` (ADR 0016): shard 0 keeps the name of the single queue.
    pub fn command_queue(&self, shard: u16) -> String {
        match shard {
            0 => self.commands_queue.clone(),
            i => format!("{}.{i}", self.commands_queue),
        }
    }

    /// The routing key of `shard` on the commands exchange.
    pub(crate) fn command_key(shard: u16) -> String {
        match shard {
            0 => COMMAND_KEY.to_owned(),
            i => format!("{COMMAND_KEY}.{i}"),
        }
    }
}

/// The shard of a license among `shards`: FNV-1a of its code, stable across processes, machines
/// and releases (ADR 0016). The processor spreads licenses over its workers with it too.
pub fn shard_of(key: &str, shards: u16) -> u16 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(shards.max(1))) as u16
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
    /// A channel without confirms, for replies only ([`Bus::publish_reply`]).
    pub(crate) replier: Channel,
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
        let replier = bounded(config.timeout, "channel.open", connection.create_channel()).await?;
        let names = Names::new(&config.prefix);
        let bus = Self {
            connection,
            publisher,
            replier,
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

    /// The number of command queues (`LICENSING_SHARDS`).
    pub fn shards(&self) -> u16 {
        self.config.shards
    }

    /// Every command queue, by shard.
    pub fn command_queues(&self) -> Vec<String> {
        (0..self.config.shards)
            .map(|s| self.names.command_queue(s))
            .collect()
    }

    /// Whether the connection and the publishing channels are open.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
            && self.publisher.status().connected()
            && self.replier.status().connected()
    }

    /// Resolves when the connection or the publishing channel is no longer open (checked every
    /// 250 ms): a task holding the bus races its work against this to notice a silent loss.
    pub async fn closed(&self) {
        while self.is_connected() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Closes the connection cleanly, waiting at most the broker timeout for the broker's answer.
    pub async fn close(&self) {
        let closing = self.connection.close(200, ShortString::from("bye"));
        let _ = bounded(self.config.timeout, "connection.close", closing).await;
    }
}
