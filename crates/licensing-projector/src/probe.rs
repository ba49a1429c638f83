//! The probe watchdog's settings and one run of the saved debug cases (D21): the cases of
//! `LICENSING_PROBE_CASES` sent to `LICENSING_PROBE_URL`, the public callback URL as registered in
//! the seller console (so DNS, TLS and proxies are exercised too), signed with the current callback
//! access key, each answer judged as the marketplace judges it.

use koogallery::probe::{self, CaseOutcome, ProbeCase};
use koogallery::signature::AccessKey;
use licensing_runtime::{Settings, SettingsError};
use url::Url;

/// What the watchdog sends, where, and with which key.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// The saved debug cases.
    pub cases: Vec<ProbeCase>,
    /// The public callback URL.
    pub url: Url,
    /// The current callback access key (the first of `LICENSING_CALLBACK_KEYS`).
    pub key: AccessKey,
}

impl ProbeSettings {
    /// `LICENSING_PROBE_CASES` (the JSON file `koogallery probe --cases` reads),
    /// `LICENSING_PROBE_URL` and `LICENSING_CALLBACK_KEYS`; `None` when neither probe setting is
    /// set, an error naming the setting when only one is, or when it is unusable.
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, SettingsError> {
        let (cases, url) = (
            settings.optional("LICENSING_PROBE_CASES")?,
            settings.optional("LICENSING_PROBE_URL")?,
        );
        let (cases, url) = match (cases, url) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(SettingsError::invalid(
                    "LICENSING_PROBE_URL",
                    "must be set with LICENSING_PROBE_CASES: the callback URL registered in the seller console",
                ));
            }
            (None, Some(_)) => {
                return Err(SettingsError::invalid(
                    "LICENSING_PROBE_CASES",
                    "must be set with LICENSING_PROBE_URL: the saved debug cases (a JSON file)",
                ));
            }
            (Some(cases), Some(url)) => (cases, url),
        };
        let text = std::fs::read_to_string(&cases).map_err(|e| {
            SettingsError::invalid("LICENSING_PROBE_CASES", format!("{cases}: {e}"))
        })?;
        let cases = probe::cases(&text).map_err(|e| {
            SettingsError::invalid("LICENSING_PROBE_CASES", format!("{cases}: {e}"))
        })?;
        let url =
            Url::parse(url.trim()).map_err(|e| SettingsError::invalid("LICENSING_PROBE_URL", e))?;
        let key = settings
            .secret_list("LICENSING_CALLBACK_KEYS")?
            .into_iter()
            .next()
            .map(AccessKey::new)
            .ok_or_else(|| {
                SettingsError::invalid(
                    "LICENSING_CALLBACK_KEYS",
                    "must hold a key to sign the probe's cases (the current key first)",
                )
            })?;
        Ok(Some(Self { cases, url, key }))
    }

    /// Sends every case once.
    pub async fn run_once(&self) -> Vec<CaseOutcome> {
        probe::run(&self.url, &self.key, &self.cases).await
    }
}
