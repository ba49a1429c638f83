//! How to reach RabbitMQ: the `LICENSING_AMQP_*` settings and the command queue's type.

use std::time::Duration;

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
#[derive(Clone)]
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
    /// Command queues (`LICENSING_SHARDS`, ADR 0016): a license's commands always go to shard
    /// `shard_of(license, shards)`.
    pub shards: u16,
    /// PEM certificates trusted besides the system's roots for `amqps://` (read from the file
    /// named by `LICENSING_AMQP_CA`).
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL holds the broker's password.
        f.debug_struct("BusConfig")
            .field("url", &"[redacted]")
            .field("prefix", &self.prefix)
            .field("queue_type", &self.queue_type)
            .field("delivery_limit", &self.delivery_limit)
            .field("timeout", &self.timeout)
            .field("shards", &self.shards)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "[set]"))
            .finish()
    }
}

impl BusConfig {
    /// Defaults for a URL: no prefix, quorum queue, no delivery limit, 2 s timeout, one shard.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: String::new(),
            queue_type: QueueType::Quorum,
            delivery_limit: 0,
            timeout: Duration::from_secs(2),
            shards: 1,
            ca_pem: None,
        }
    }
}

impl BusConfig {
    /// Reads `LICENSING_AMQP_URL` (required), `LICENSING_AMQP_PREFIX`, `LICENSING_AMQP_QUEUE_TYPE`
    /// (`quorum` or `classic`), `LICENSING_AMQP_DELIVERY_LIMIT`, `LICENSING_AMQP_TIMEOUT_MS`,
    /// `LICENSING_SHARDS` (1 to 256) and `LICENSING_AMQP_CA` (a PEM file, read now) through `get`.
    /// An error names the variable.
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
        config.shards = parse("LICENSING_SHARDS", get("LICENSING_SHARDS"), 1)?;
        if !(1..=256).contains(&config.shards) {
            return Err((
                "LICENSING_SHARDS",
                format!("{}: expected 1 to 256", config.shards),
            ));
        }
        if let Some(path) = get("LICENSING_AMQP_CA") {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| ("LICENSING_AMQP_CA", format!("{path}: {e}")))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err((
                    "LICENSING_AMQP_CA",
                    format!("{path}: holds no PEM certificate"),
                ));
            }
            config.ca_pem = Some(pem);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ca: &str) -> Result<BusConfig, (&'static str, String)> {
        let ca = ca.to_owned();
        BusConfig::from_lookup(move |name| match name {
            "LICENSING_AMQP_URL" => Some("amqps://u:hunter2-hunter2@mq:5671/%2f".to_owned()),
            "LICENSING_AMQP_CA" => Some(ca.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_refused_by_name() {
        let (name, reason) = config("/nonexistent/ca.pem").unwrap_err();
        assert_eq!(name, "LICENSING_AMQP_CA");
        assert!(reason.contains("/nonexistent/ca.pem"), "{reason}");
        let (name, reason) = config("Cargo.toml").unwrap_err();
        assert_eq!(name, "LICENSING_AMQP_CA");
        assert!(reason.contains("no PEM certificate"), "{reason}");
    }

    #[test]
    fn the_shard_count_is_one_by_default_and_bounded() {
        let with = |shards: &'static str| {
            BusConfig::from_lookup(move |name| match name {
                "LICENSING_AMQP_URL" => Some("amqp://mq".to_owned()),
                "LICENSING_SHARDS" => Some(shards.to_owned()),
                _ => None,
            })
        };
        let default = BusConfig::from_lookup(|name| {
            (name == "LICENSING_AMQP_URL").then(|| "amqp://mq".to_owned())
        });
        assert_eq!(default.unwrap().shards, 1);
        assert_eq!(with("4").unwrap().shards, 4);
        for bad in ["0", "257", "four"] {
            assert_eq!(with(bad).unwrap_err().0, "LICENSING_SHARDS", "{bad}");
        }
    }

    #[test]
    fn the_config_never_shows_the_broker_password() {
        let shown = format!(
            "{:?}",
            BusConfig::new("amqps://u:hunter2-hunter2@mq:5671/%2f")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
