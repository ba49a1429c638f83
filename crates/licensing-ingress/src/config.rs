//! The ingress's settings.

use std::time::Duration;

use koogallery::signature::Verifier;
use licensing_bus::BusConfig;
use licensing_runtime::{Settings, SettingsError};

/// Everything the ingress needs, parsed before any socket opens.
#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// `LICENSING_INGRESS_ADDR`: the public callback listener (default `0.0.0.0:8080`).
    pub public_addr: String,
    /// `LICENSING_INTERNAL_ADDR`: internal API, health, readiness, metrics (default `127.0.0.1:8081`).
    pub internal_addr: String,
    /// `LICENSING_CALLBACK_PATH` (default `/koogallery/license`).
    pub callback_path: String,
    /// `LICENSING_CALLBACK_KEYS` (access keys, current first, D7) and
    /// `LICENSING_CALLBACK_WINDOW_SECONDS` (default 60, D4).
    pub verifier: Verifier,
    /// `LICENSING_REPLY_DEADLINE_MS`: how long a callback waits for its commit (default 3000, D8).
    pub reply_deadline: Duration,
    /// `LICENSING_INTERNAL_WAIT_MS`: how long an internal request waits (default 2000).
    pub internal_wait: Duration,
    /// `LICENSING_API_TOKENS`: bearer tokens of the internal API.
    pub api_tokens: Vec<licensing_runtime::ApiToken>,
    /// `LICENSING_MAX_BODY_BYTES` (default 65536).
    pub max_body_bytes: usize,
    /// `LICENSING_AMQP_*`.
    pub bus: BusConfig,
    /// `LICENSING_BODY_TIMEOUT_MS`: the longest a callback's body may take to arrive, from the
    /// end of its headers (default 2000); a slower one is answered `000002`.
    pub body_timeout: Duration,
    /// `LICENSING_HEADER_TIMEOUT_MS`: the longest a request's headers may take (default 2000).
    pub header_timeout: Duration,
    /// `LICENSING_KEEP_ALIVE_SECONDS`: how long an idle connection is kept (default 15).
    pub keep_alive: Duration,
    /// `LICENSING_MAX_CONNECTIONS`: open connections per worker thread at most (default 4096).
    pub max_connections: usize,
    /// Records of refused callback requests handed over per second at most, beyond which they
    /// are only counted (`LICENSING_EVIDENCE_REFUSED_PER_SECOND`, default 20, D20).
    pub evidence_refused_per_second: u32,
    /// The most bytes of a refused request's body its record keeps
    /// (`LICENSING_EVIDENCE_REFUSED_MAX_BODY_BYTES`, default 4096); its real size and the SHA-256
    /// of the whole body are kept beside.
    pub evidence_refused_max_body_bytes: usize,
    /// `LICENSING_ENTITLEMENT_KEYS`, `LICENSING_ENTITLEMENT_TTL_SECONDS`: a usage report's answer
    /// carries a signed entitlement when keys are configured (D24).
    pub entitlements: Option<(licensing_entitlement::Keyring, i64)>,
}

impl IngressConfig {
    /// Reads and checks every setting.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let Some(verifier) = settings.callback_verifier()? else {
            return Err(SettingsError::invalid(
                "LICENSING_CALLBACK_KEYS",
                "is required: the access key(s) from 密钥管理, comma-separated, current first",
            ));
        };
        let api_tokens = settings.api_tokens("LICENSING_API_TOKENS")?;
        if api_tokens.is_empty() {
            return Err(SettingsError::invalid(
                "LICENSING_API_TOKENS",
                "is required: at least one bearer token for the internal API",
            ));
        }
        let callback_path = settings
            .optional("LICENSING_CALLBACK_PATH")?
            .unwrap_or_else(|| "/koogallery/license".to_owned());
        if !callback_path.starts_with('/') {
            return Err(SettingsError::invalid(
                "LICENSING_CALLBACK_PATH",
                "must start with /",
            ));
        }
        let deadline_ms: u64 = settings.parse_or("LICENSING_REPLY_DEADLINE_MS", 3000)?;
        if !(100..=4500).contains(&deadline_ms) {
            return Err(SettingsError::invalid(
                "LICENSING_REPLY_DEADLINE_MS",
                "must be between 100 and 4500 (KooGallery waits 5 s)",
            ));
        }
        let mut bus = BusConfig::from_lookup(settings.lookup())
            .map_err(|(name, reason)| SettingsError::invalid(name, reason))?;
        // A callback must be answered within 5 s: a broker that does not confirm within 1 s is down.
        if settings.optional("LICENSING_AMQP_TIMEOUT_MS")?.is_none() {
            bus.timeout = Duration::from_secs(1);
        }
        Ok(Self {
            public_addr: settings
                .optional("LICENSING_INGRESS_ADDR")?
                .unwrap_or_else(|| "0.0.0.0:8080".to_owned()),
            internal_addr: settings
                .optional("LICENSING_INTERNAL_ADDR")?
                .unwrap_or_else(|| "127.0.0.1:8081".to_owned()),
            callback_path,
            verifier,
            reply_deadline: Duration::from_millis(deadline_ms),
            internal_wait: Duration::from_millis(
                settings.parse_or("LICENSING_INTERNAL_WAIT_MS", 2000)?,
            ),
            api_tokens,
            max_body_bytes: settings.parse_or("LICENSING_MAX_BODY_BYTES", 65_536)?,
            bus,
            body_timeout: Duration::from_millis(
                settings.parse_or("LICENSING_BODY_TIMEOUT_MS", 2000)?,
            ),
            header_timeout: Duration::from_millis(
                settings.parse_or("LICENSING_HEADER_TIMEOUT_MS", 2000)?,
            ),
            keep_alive: Duration::from_secs(settings.parse_or("LICENSING_KEEP_ALIVE_SECONDS", 15)?),
            max_connections: settings.parse_or("LICENSING_MAX_CONNECTIONS", 4096)?,
            entitlements: settings
                .entitlement_keys()?
                .map(|keys| settings.entitlement_ttl().map(|ttl| (keys, ttl)))
                .transpose()?,
            evidence_refused_per_second: settings
                .parse_or("LICENSING_EVIDENCE_REFUSED_PER_SECOND", 20)?,
            evidence_refused_max_body_bytes: settings
                .parse_or("LICENSING_EVIDENCE_REFUSED_MAX_BODY_BYTES", 4096)?,
        })
    }
}
