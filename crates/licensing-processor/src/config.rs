//! The processor's settings.

use std::time::Duration;

use koogallery::market_time::CHINA_STANDARD_TIME;
use licensing_bus::BusConfig;
use licensing_domain::{DAY_MS, Policy, UnknownLicensePolicy};
use licensing_messages::Interpretation;
use licensing_runtime::{Settings, SettingsError};
use licensing_store::StoreConfig;

/// Everything the processor needs, parsed before any socket opens.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// `LICENSING_DATABASE_URL`.
    pub store: StoreConfig,
    /// `LICENSING_AMQP_URL`, `LICENSING_AMQP_PREFIX`, `LICENSING_AMQP_QUEUE_TYPE`, `LICENSING_AMQP_DELIVERY_LIMIT`.
    pub bus: BusConfig,
    /// `LICENSING_PROCESSOR_ADDR`: health, readiness and metrics (default `127.0.0.1:8082`).
    pub ops_addr: String,
    /// `LICENSING_MARKET_TIME_ZONE`, `LICENSING_HEARTBEAT_TIME_ZONE` (default `+08:00`),
    /// `LICENSING_UNKNOWN_LICENSE` (`lenient` or `strict`).
    pub interpretation: Interpretation,
    /// `LICENSING_NONCE_TTL_SECONDS`: how long a nonce is remembered (default 600, D5).
    pub nonce_ttl: Duration,
    /// `LICENSING_PREFETCH`: unacknowledged commands held at once (default 64).
    pub prefetch: u16,
    /// `LICENSING_PROCESSOR_WORKERS`: batches applied in parallel, each license always by the same
    /// worker (default 2: fewer workers make larger batches, ADR 0008).
    pub workers: usize,
    /// `LICENSING_PROCESSOR_BATCH`: at most this many waiting commands are applied together in one
    /// transaction by a worker (default 32; 1 applies each command alone).
    pub batch_size: usize,
    /// `LICENSING_TAKEOVER_SECONDS`: longest time a dead processor's shards wait for another
    /// (default 10, 2 to 600); leases last half of it (ADR 0016).
    pub takeover: Duration,
    /// `LICENSING_EVIDENCE_REFUSED_MAX_BYTES_PER_DAY`: the bytes of refused requests' records
    /// stored per UTC day by all processors together (default 256 MiB); the rest are counted
    /// and dropped.
    pub refused_max_bytes_per_day: i64,
}

/// The bus settings (`LICENSING_AMQP_*`).
pub fn bus_config(settings: &Settings) -> Result<BusConfig, SettingsError> {
    BusConfig::from_lookup(settings.lookup())
        .map_err(|(name, reason)| SettingsError::invalid(name, reason))
}

/// How commands are read (`LICENSING_UNKNOWN_LICENSE`, `LICENSING_MARKET_TIME_ZONE`,
/// `LICENSING_HEARTBEAT_TIME_ZONE`, `LICENSING_FREEZE_PERIOD_DAYS`), and how long a nonce is remembered
/// (`LICENSING_NONCE_TTL_SECONDS`): the settings a decision depends on.
pub fn interpretation(settings: &Settings) -> Result<(Interpretation, Duration), SettingsError> {
    let on_unknown = match settings.optional("LICENSING_UNKNOWN_LICENSE")?.as_deref() {
        None | Some("lenient") => UnknownLicensePolicy::Register,
        Some("strict") => UnknownLicensePolicy::Reject,
        Some(other) => {
            return Err(SettingsError::invalid(
                "LICENSING_UNKNOWN_LICENSE",
                format!("expected lenient or strict, got {other:?}"),
            ));
        }
    };
    let nonce_ttl: u64 = settings.parse_or("LICENSING_NONCE_TTL_SECONDS", 600)?;
    if nonce_ttl < 120 {
        return Err(SettingsError::invalid(
            "LICENSING_NONCE_TTL_SECONDS",
            "must be at least 120 (twice the timestamp window)",
        ));
    }
    let freeze_days: u32 = settings.parse_or("LICENSING_FREEZE_PERIOD_DAYS", 15)?;
    if !(1..=365).contains(&freeze_days) {
        return Err(SettingsError::invalid(
            "LICENSING_FREEZE_PERIOD_DAYS",
            "must be 1 to 365 days",
        ));
    }
    let how = Interpretation {
        market_zone: settings.offset_or("LICENSING_MARKET_TIME_ZONE", CHINA_STANDARD_TIME)?,
        day_zone: settings.offset_or("LICENSING_HEARTBEAT_TIME_ZONE", CHINA_STANDARD_TIME)?,
        on_unknown,
        policy: Policy {
            freeze_period_ms: i64::from(freeze_days) * DAY_MS,
        },
    };
    Ok((how, Duration::from_secs(nonce_ttl)))
}

impl ProcessorConfig {
    /// Reads and checks every setting.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let (interpretation, nonce_ttl) = interpretation(settings)?;
        let takeover = match settings.parse_or("LICENSING_TAKEOVER_SECONDS", 10)? {
            seconds @ 2..=600 => Duration::from_secs(seconds),
            _ => {
                return Err(SettingsError::invalid(
                    "LICENSING_TAKEOVER_SECONDS",
                    "must be 2 to 600 seconds",
                ));
            }
        };
        Ok(Self {
            store: StoreConfig {
                // A processor cut off from PostgreSQL mid-batch leaves its transaction open on the
                // server; ended after the takeover, its locks never hold up the shard's next
                // holder for long (ADR 0016).
                idle_in_transaction_timeout: Some(takeover),
                ..StoreConfig::from_lookup(settings.lookup())
                    .map_err(|(name, reason)| SettingsError::invalid(name, reason))?
            },
            bus: bus_config(settings)?,
            ops_addr: settings
                .optional("LICENSING_PROCESSOR_ADDR")?
                .unwrap_or_else(|| "127.0.0.1:8082".to_owned()),
            interpretation,
            nonce_ttl,
            prefetch: settings.parse_or("LICENSING_PREFETCH", 64)?,
            workers: settings.parse_or("LICENSING_PROCESSOR_WORKERS", 2)?,
            batch_size: match settings.parse_or("LICENSING_PROCESSOR_BATCH", 32)? {
                0 => {
                    return Err(SettingsError::invalid(
                        "LICENSING_PROCESSOR_BATCH",
                        "must be at least 1",
                    ));
                }
                n => n,
            },
            takeover,
            refused_max_bytes_per_day: settings.parse_or(
                "LICENSING_EVIDENCE_REFUSED_MAX_BYTES_PER_DAY",
                256 * 1024 * 1024,
            )?,
        })
    }
}
