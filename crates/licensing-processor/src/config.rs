//! The processor's settings.

use std::time::Duration;

use licensing_bus::BusConfig;
use licensing_domain::UnknownLicensePolicy;
use licensing_messages::Interpretation;
use licensing_runtime::{Settings, SettingsError};
use licensing_store::StoreConfig;
use time::UtcOffset;

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
    /// `LICENSING_PROCESSOR_WORKERS`: licenses processed in parallel (default 8).
    pub workers: usize,
}

/// Parses `+08:00`, `-05:30`, `Z` or `UTC`.
pub fn parse_offset(name: &str, raw: &str) -> Result<UtcOffset, SettingsError> {
    let bad = || SettingsError::invalid(name, format!("{raw:?} is not a UTC offset like +08:00"));
    if raw == "Z" || raw.eq_ignore_ascii_case("utc") {
        return Ok(UtcOffset::UTC);
    }
    let sign = match raw.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(bad()),
    };
    let (h, m) = raw[1..].split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())
}

fn offset(settings: &Settings, name: &str) -> Result<UtcOffset, SettingsError> {
    match settings.optional(name)? {
        Some(raw) => parse_offset(name, raw.trim()),
        None => Ok(koogallery::market_time::CHINA_STANDARD_TIME),
    }
}

/// The bus settings (`LICENSING_AMQP_*`).
pub fn bus_config(settings: &Settings) -> Result<BusConfig, SettingsError> {
    BusConfig::from_lookup(settings.lookup())
        .map_err(|(name, reason)| SettingsError::invalid(name, reason))
}

impl ProcessorConfig {
    /// Reads and checks every setting.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
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
        Ok(Self {
            store: StoreConfig::new(settings.required("LICENSING_DATABASE_URL")?),
            bus: bus_config(settings)?,
            ops_addr: settings
                .optional("LICENSING_PROCESSOR_ADDR")?
                .unwrap_or_else(|| "127.0.0.1:8082".to_owned()),
            interpretation: Interpretation {
                market_zone: offset(settings, "LICENSING_MARKET_TIME_ZONE")?,
                day_zone: offset(settings, "LICENSING_HEARTBEAT_TIME_ZONE")?,
                on_unknown,
            },
            nonce_ttl: Duration::from_secs(nonce_ttl),
            prefetch: settings.parse_or("LICENSING_PREFETCH", 64)?,
            workers: settings.parse_or("LICENSING_PROCESSOR_WORKERS", 8)?,
        })
    }
}
