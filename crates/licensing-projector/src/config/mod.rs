//! The projector's settings.

pub(crate) mod network;
pub(crate) mod probe;

use std::time::Duration;

use koogallery::apig::Credentials;
use koogallery::client::{ClientConfig, FALLBACK_URL, PRIMARY_URL};
use koogallery::signature::Verifier;
use licensing_bus::BusConfig;
use licensing_domain::NoticePolicy;
use licensing_runtime::{Clock, Settings, SettingsError};
use licensing_store::StoreConfig;
use time::UtcOffset;
use url::Url;

/// Everything the projector needs, parsed before any socket opens.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// `LICENSING_DATABASE_URL`.
    pub store: StoreConfig,
    /// `LICENSING_AMQP_*`.
    pub bus: BusConfig,
    /// `LICENSING_QUERY_ADDR`: query API, health, readiness, metrics (default `127.0.0.1:8083`).
    pub query_addr: String,
    /// `LICENSING_API_TOKENS`.
    pub api_tokens: Vec<licensing_runtime::ApiToken>,
    /// `LICENSING_KOOGALLERY_URL` (default the production host), `LICENSING_KOOGALLERY_FALLBACK_URL`
    /// (default the production fallback host when the URL is the default, else none),
    /// `LICENSING_KOOGALLERY_AK`, `LICENSING_KOOGALLERY_SK`, `LICENSING_KOOGALLERY_CA`,
    /// `LICENSING_KOOGALLERY_TIMEOUT_MS` (one call, default 10000).
    pub marketplace: ClientConfig,
    /// `LICENSING_HEARTBEAT_TIME_ZONE` (default `+08:00`).
    pub day_zone: UtcOffset,
    /// `LICENSING_HEARTBEAT_ACCOUNT`: `thirdPartyAccount` when no usage named one (default `licensing-backend`).
    pub default_account: String,
    /// `LICENSING_OUTBOUND_RETRY_BASE_MS`: first retry delay, doubled per failure (default 2000).
    pub retry_base: Duration,
    /// `LICENSING_OUTBOUND_RETRY_CAP_SECONDS`: longest retry delay (default 600).
    pub retry_cap: Duration,
    /// `LICENSING_OUTBOUND_RATE`: marketplace calls per second at most (default 20).
    pub rate: u32,
    /// `LICENSING_READY_MAX_LAG_SECONDS`: a follower further behind makes `/readyz` answer not
    /// ready (default 60).
    pub ready_max_lag: Duration,
    /// `LICENSING_ACTIVATION_CLAIM_DAYS`: an activation still unclaimed by the buyer (`92020004`)
    /// after this many days is parked (default 14).
    pub claim_days: u32,
    /// `LICENSING_EVIDENCE_RETENTION_DAYS`: exchanges with the marketplace are kept this long,
    /// expired by whole months once a day (default 1095, D20).
    pub evidence_retention_days: u32,
    /// `LICENSING_EVIDENCE_REFUSED_RETENTION_DAYS`: records of refused callback requests are kept
    /// this long (default 30).
    pub evidence_refused_retention_days: u32,
    /// `LICENSING_CALLBACK_KEYS` (optional here) and `LICENSING_CALLBACK_WINDOW_SECONDS`: the
    /// callback access keys, to verify callbacks again in evidence packs.
    pub callback_verifier: Option<Verifier>,
    /// `LICENSING_EXPIRY_NOTICE_DAYS` (default `7,1`) and `LICENSING_FREEZE_NOTICE_DAYS` (default
    /// `3`): the notice thresholds (D23).
    pub notices: NoticePolicy,
    /// `LICENSING_SCHEDULE_BATCH`: due licenses taken at once by the access schedule (default 1000).
    pub schedule_batch: u32,
    /// `LICENSING_CLOCK_OFFSET_FILE`: the clock of time-driven work (drills and tests only).
    pub clock: Clock,
    /// `LICENSING_ENTITLEMENT_KEYS`: the entitlement signing keys (D24), if configured.
    pub entitlements: Option<licensing_entitlement::Keyring>,
    /// `LICENSING_ENTITLEMENT_TTL_SECONDS`: an entitlement's lifetime (default 86400, 60 to 2592000).
    pub entitlement_ttl: i64,
    /// `LICENSING_MARKET_TIME_ZONE` (default `+08:00`): the marketplace's zone (the probe's days).
    pub market_zone: UtcOffset,
    /// `LICENSING_PROBE_CASES`, `LICENSING_PROBE_URL` (and the current callback key): the probe
    /// watchdog's cases and target, when configured (D21).
    pub probe: Option<crate::ProbeSettings>,
    /// `LICENSING_PROBE_SCHEDULE` (default `09:30,15:30`, market zone): when the watchdog runs.
    pub probe_schedule: crate::ProbeSchedule,
    /// `LICENSING_CONSOLE_SESSION_HOURS`: how long a console session lasts (default 12, 1 to 720).
    pub console_session_hours: u32,
    /// `LICENSING_CONSOLE_SECRET`: the key that signs console sessions (strong, like the other
    /// secrets); without it the console is off.
    pub console_secret: Option<koogallery::Secret>,
    /// `LICENSING_TRUSTED_PROXIES`: addresses or networks (`10.0.0.0/8`) of the reverse proxies
    /// whose `X-Forwarded-For` and `X-Forwarded-Proto` the console believes (default none).
    pub trusted_proxies: Vec<crate::config::network::Network>,
    /// `LICENSING_CONSOLE_PEERS`: `name=url` of the other services' `/readyz`, which the console's
    /// overview shows (`ingress=http://127.0.0.1:8080/readyz,processor=http://127.0.0.1:8082/readyz`).
    pub console_peers: Vec<(String, url::Url)>,
}

/// A list of day thresholds, each 1 to 365, largest first; `default` when unset.
fn day_list(settings: &Settings, name: &str, default: &[u32]) -> Result<Vec<u32>, SettingsError> {
    let items = settings.list(name)?;
    if items.is_empty() {
        return Ok(default.to_vec());
    }
    let mut days = items
        .iter()
        .map(|item| match item.trim().parse::<u32>() {
            Ok(d) if (1..=365).contains(&d) => Ok(d),
            _ => Err(SettingsError::invalid(
                name,
                format!("{item:?} is not a number of days from 1 to 365"),
            )),
        })
        .collect::<Result<Vec<u32>, _>>()?;
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.dedup();
    Ok(days)
}

impl ProjectorConfig {
    /// Reads and checks every setting.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let api_tokens = settings.api_tokens("LICENSING_API_TOKENS")?;
        if api_tokens.is_empty() {
            return Err(SettingsError::invalid(
                "LICENSING_API_TOKENS",
                "is required: at least one bearer token for the query API",
            ));
        }
        let credentials = Credentials::new(
            settings.required("LICENSING_KOOGALLERY_AK")?,
            settings.secret("LICENSING_KOOGALLERY_SK")?,
        );
        let mut marketplace = ClientConfig::production(credentials);
        if let Some(url) = settings.optional("LICENSING_KOOGALLERY_URL")? {
            let parsed = Url::parse(url.trim())
                .map_err(|e| SettingsError::invalid("LICENSING_KOOGALLERY_URL", e))?;
            if parsed.as_str().trim_end_matches('/') != PRIMARY_URL {
                marketplace = marketplace.with_base_url(parsed);
            } else {
                marketplace.fallback_url = Url::parse(FALLBACK_URL).ok();
            }
        }
        if let Some(url) = settings.optional("LICENSING_KOOGALLERY_FALLBACK_URL")? {
            marketplace.fallback_url = Some(
                Url::parse(url.trim())
                    .map_err(|e| SettingsError::invalid("LICENSING_KOOGALLERY_FALLBACK_URL", e))?,
            );
        }
        marketplace.timeout = std::time::Duration::from_millis(
            settings.parse_or("LICENSING_KOOGALLERY_TIMEOUT_MS", 10_000)?,
        );
        if let Some(path) = settings.optional("LICENSING_KOOGALLERY_CA")? {
            let pem = std::fs::read(&path).map_err(|e| {
                SettingsError::invalid("LICENSING_KOOGALLERY_CA", format!("{path}: {e}"))
            })?;
            marketplace.extra_ca_pem = Some(pem);
        }
        marketplace.allow_http = settings.parse_or("LICENSING_KOOGALLERY_ALLOW_HTTP", false)?;
        if marketplace.allow_http {
            tracing::warn!(
                "LICENSING_KOOGALLERY_ALLOW_HTTP=true: plain http:// accepted for the marketplace URL; only for a simulator, never in production"
            );
        }
        koogallery::client::Client::new(marketplace.clone())
            .map_err(|e| SettingsError::invalid("LICENSING_KOOGALLERY_URL", e))?;
        let market_zone = settings.offset_or(
            "LICENSING_MARKET_TIME_ZONE",
            koogallery::market_time::CHINA_STANDARD_TIME,
        )?;
        let trusted_proxies = settings
            .list("LICENSING_TRUSTED_PROXIES")?
            .iter()
            .map(|item| crate::config::network::Network::parse(item.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SettingsError::invalid("LICENSING_TRUSTED_PROXIES", e))?;
        let console_peers = settings
            .list("LICENSING_CONSOLE_PEERS")?
            .iter()
            .map(|item| {
                let invalid = |why: String| SettingsError::invalid("LICENSING_CONSOLE_PEERS", why);
                let (name, url) = item
                    .split_once('=')
                    .ok_or_else(|| invalid(format!("{item:?} is not name=url")))?;
                let url =
                    url::Url::parse(url.trim()).map_err(|e| invalid(format!("{item:?}: {e}")))?;
                if url.scheme() != "http" || url.host_str().is_none() {
                    return Err(invalid(format!(
                        "{item:?}: an http:// URL of an operations address"
                    )));
                }
                Ok((name.trim().to_owned(), url))
            })
            .collect::<Result<Vec<_>, SettingsError>>()?;
        let console_session_hours =
            match settings.parse_or("LICENSING_CONSOLE_SESSION_HOURS", 12)? {
                hours @ 1..=720 => hours,
                _ => {
                    return Err(SettingsError::invalid(
                        "LICENSING_CONSOLE_SESSION_HOURS",
                        "must be 1 to 720",
                    ));
                }
            };
        let console_secret = match settings.optional("LICENSING_CONSOLE_SECRET")? {
            Some(_) => Some(settings.secret("LICENSING_CONSOLE_SECRET")?),
            None => None,
        };
        Ok(Self {
            console_secret,
            console_session_hours,
            trusted_proxies,
            console_peers,
            market_zone,
            probe: crate::ProbeSettings::from_settings(settings)?,
            probe_schedule: crate::ProbeSchedule::from_settings(settings, market_zone)?,
            store: StoreConfig {
                // Queries and the followers' writes never hang on a lock or a slow statement: they
                // fail (and are retried, or answered 503) instead.
                statement_timeout: Some(Duration::from_secs(30)),
                lock_timeout: Some(Duration::from_secs(5)),
                ..StoreConfig::from_lookup(settings.lookup())
                    .map_err(|(name, reason)| SettingsError::invalid(name, reason))?
            },
            bus: BusConfig::from_lookup(settings.lookup())
                .map_err(|(name, reason)| SettingsError::invalid(name, reason))?,
            query_addr: settings
                .optional("LICENSING_QUERY_ADDR")?
                .unwrap_or_else(|| "127.0.0.1:8083".to_owned()),
            api_tokens,
            marketplace,
            day_zone: settings.offset_or(
                "LICENSING_HEARTBEAT_TIME_ZONE",
                koogallery::market_time::CHINA_STANDARD_TIME,
            )?,
            default_account: settings
                .optional("LICENSING_HEARTBEAT_ACCOUNT")?
                .unwrap_or_else(|| "licensing-backend".to_owned()),
            retry_base: Duration::from_millis(
                settings.parse_or("LICENSING_OUTBOUND_RETRY_BASE_MS", 2000)?,
            ),
            retry_cap: Duration::from_secs(
                settings.parse_or("LICENSING_OUTBOUND_RETRY_CAP_SECONDS", 600)?,
            ),
            rate: settings.parse_or("LICENSING_OUTBOUND_RATE", 20)?,
            claim_days: settings.parse_or("LICENSING_ACTIVATION_CLAIM_DAYS", 14)?,
            evidence_retention_days: settings
                .parse_or("LICENSING_EVIDENCE_RETENTION_DAYS", 1095)?,
            evidence_refused_retention_days: settings
                .parse_or("LICENSING_EVIDENCE_REFUSED_RETENTION_DAYS", 30)?,
            callback_verifier: settings.callback_verifier()?,
            notices: NoticePolicy {
                expiry_days: day_list(settings, "LICENSING_EXPIRY_NOTICE_DAYS", &[7, 1])?,
                freeze_days: day_list(settings, "LICENSING_FREEZE_NOTICE_DAYS", &[3])?,
            },
            schedule_batch: match settings.parse_or("LICENSING_SCHEDULE_BATCH", 1000)? {
                0 => {
                    return Err(SettingsError::invalid(
                        "LICENSING_SCHEDULE_BATCH",
                        "must be at least 1",
                    ));
                }
                n => n,
            },
            clock: Clock::from_settings(settings)?,
            entitlements: settings.entitlement_keys()?,
            entitlement_ttl: settings.entitlement_ttl()?,
            ready_max_lag: Duration::from_secs(
                settings.parse_or("LICENSING_READY_MAX_LAG_SECONDS", 60)?,
            ),
        })
    }
}
