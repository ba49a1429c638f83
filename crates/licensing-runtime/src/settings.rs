//! Settings: `LICENSING_*` variables, from an optional file, overridden by the environment.
//!
//! The file (path in `LICENSING_CONFIG`) holds `NAME=value` lines, the same names as the
//! environment, `#` comments and blank lines allowed; values may be quoted.

use koogallery::Secret;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

/// A setting that is missing or wrong, named.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct SettingsError {
    /// The variable.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

impl SettingsError {
    /// A setting with an unusable value.
    pub fn invalid(name: &str, reason: impl Display) -> Self {
        Self {
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The settings of one process.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

/// Refuses a placeholder or weak secret (an access key, API token or SK): shorter than 16
/// characters, or containing `CHANGE-ME`, `changeme`, `example` or `secret` in any case. The
/// error names the variable, never the value.
pub fn check_secret(name: &str, value: &str) -> Result<(), SettingsError> {
    if value.chars().count() < 16 {
        return Err(SettingsError::invalid(
            name,
            "is too short for a secret (16 characters at least)",
        ));
    }
    let lower = value.to_ascii_lowercase();
    if let Some(word) = ["change-me", "changeme", "example", "secret"]
        .into_iter()
        .find(|word| lower.contains(word))
    {
        return Err(SettingsError::invalid(
            name,
            format!("looks like a placeholder (it contains {word:?}): set the real value"),
        ));
    }
    Ok(())
}

impl Settings {
    /// The file named by `LICENSING_CONFIG` (if any), then the process environment on top.
    pub fn load() -> Result<Self, SettingsError> {
        let mut settings = Self::default();
        if let Ok(path) = std::env::var("LICENSING_CONFIG") {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                SettingsError::invalid("LICENSING_CONFIG", format!("cannot read {path}: {e}"))
            })?;
            settings = Self::parse_file(&text).map_err(|(line, reason)| {
                SettingsError::invalid("LICENSING_CONFIG", format!("{path}, line {line}: {reason}"))
            })?;
        }
        for (name, value) in std::env::vars() {
            // OpenTelemetry's standard names too (traces, ADR 0017).
            if name.starts_with("LICENSING_") || name.starts_with("OTEL_") {
                settings.values.insert(name, value);
            }
        }
        Ok(settings)
    }

    /// Settings from `NAME=value` pairs (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    fn parse_file(text: &str) -> Result<Self, (usize, String)> {
        let mut values = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .ok_or((i + 1, "expected NAME=value".to_owned()))?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            values.insert(name.trim().to_owned(), value.to_owned());
        }
        Ok(Self { values })
    }

    /// A setting that may be absent (an empty value counts as absent).
    pub fn optional(&self, name: &str) -> Result<Option<String>, SettingsError> {
        Ok(self
            .values
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .cloned())
    }

    /// A secret that must be present and strong (see [`check_secret`]).
    pub fn secret(&self, name: &str) -> Result<Secret, SettingsError> {
        let value = self.required(name)?;
        check_secret(name, &value)?;
        Ok(Secret::new(value))
    }

    /// A comma-separated list of secrets, each strong (see [`check_secret`]); empty when unset.
    pub fn secret_list(&self, name: &str) -> Result<Vec<Secret>, SettingsError> {
        let values = self.list(name)?;
        for value in &values {
            check_secret(name, value)?;
        }
        Ok(values.into_iter().map(Secret::new).collect())
    }

    /// Named API tokens (`name:token,…`, a bare token named `default`), each checked like any
    /// secret.
    pub fn api_tokens(&self, name: &str) -> Result<Vec<crate::ApiToken>, SettingsError> {
        let tokens: Vec<crate::ApiToken> = self
            .list(name)?
            .iter()
            .map(|item| crate::ApiToken::parse(item))
            .collect();
        for token in &tokens {
            check_secret(name, token.token.expose())?;
        }
        Ok(tokens)
    }

    /// The callback access keys (`LICENSING_CALLBACK_KEYS`, current first) as a verifier with the
    /// timestamp window (`LICENSING_CALLBACK_WINDOW_SECONDS`, default 60); none when no key is set.
    pub fn callback_verifier(
        &self,
    ) -> Result<Option<koogallery::signature::Verifier>, SettingsError> {
        let keys = self.secret_list("LICENSING_CALLBACK_KEYS")?;
        if keys.is_empty() {
            return Ok(None);
        }
        let window_seconds: u32 = self.parse_or("LICENSING_CALLBACK_WINDOW_SECONDS", 60)?;
        Ok(Some(koogallery::signature::Verifier::with_window(
            keys.into_iter()
                .map(koogallery::signature::AccessKey::new)
                .collect(),
            i64::from(window_seconds) * 1000,
        )))
    }

    /// `LICENSING_ENTITLEMENT_KEYS`: comma-separated PKCS#8 PEM files of Ed25519 keys, current
    /// first (D24); `None` when unset (the entitlement endpoints then answer 503).
    pub fn entitlement_keys(
        &self,
    ) -> Result<Option<licensing_entitlement::Keyring>, SettingsError> {
        let paths = self.list("LICENSING_ENTITLEMENT_KEYS")?;
        if paths.is_empty() {
            return Ok(None);
        }
        licensing_entitlement::Keyring::from_pem_files(&paths)
            .map(Some)
            .map_err(|e| SettingsError::invalid("LICENSING_ENTITLEMENT_KEYS", e))
    }

    /// `LICENSING_ENTITLEMENT_TTL_SECONDS`: an entitlement's lifetime (default 86400, 60 to
    /// 2592000 seconds).
    pub fn entitlement_ttl(&self) -> Result<i64, SettingsError> {
        match self.parse_or("LICENSING_ENTITLEMENT_TTL_SECONDS", 86_400_i64)? {
            ttl @ 60..=2_592_000 => Ok(ttl),
            _ => Err(SettingsError::invalid(
                "LICENSING_ENTITLEMENT_TTL_SECONDS",
                "must be 60 to 2592000 seconds (30 days)",
            )),
        }
    }

    /// A setting that must be present.
    pub fn required(&self, name: &str) -> Result<String, SettingsError> {
        self.optional(name)?
            .ok_or_else(|| SettingsError::invalid(name, "is required but not set"))
    }

    /// A parsed setting, with a default.
    pub fn parse_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, SettingsError>
    where
        T::Err: Display,
    {
        match self.optional(name)? {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| SettingsError::invalid(name, format!("{raw:?}: {e}"))),
        }
    }

    /// A lookup function over these settings, for libraries that read their own variables.
    pub fn lookup(&self) -> impl Fn(&'static str) -> Option<String> + '_ {
        |name| {
            self.values
                .get(name)
                .filter(|v| !v.trim().is_empty())
                .cloned()
        }
    }

    /// A UTC offset such as `+08:00`, `-05:30`, `Z` or `UTC`, with a default.
    pub fn offset_or(
        &self,
        name: &str,
        default: time::UtcOffset,
    ) -> Result<time::UtcOffset, SettingsError> {
        let Some(raw) = self.optional(name)? else {
            return Ok(default);
        };
        let raw = raw.trim();
        let bad =
            || SettingsError::invalid(name, format!("{raw:?} is not a UTC offset like +08:00"));
        if raw == "Z" || raw.eq_ignore_ascii_case("utc") {
            return Ok(time::UtcOffset::UTC);
        }
        let sign: i8 = match raw.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(bad()),
        };
        let (h, m) = raw[1..].split_once(':').ok_or_else(bad)?;
        let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        // Real zones lie between UTC-12:00 and UTC+14:00.
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        time::UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())
    }

    /// A comma-separated list (empty items dropped).
    pub fn list(&self, name: &str) -> Result<Vec<String>, SettingsError> {
        Ok(self
            .optional(name)?
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_hold_the_same_names_as_the_environment() {
        let settings = Settings::parse_file(
            "# comment\n\nLICENSING_A=1\nLICENSING_B = \"x, y\"\nLICENSING_C='z'\n",
        )
        .unwrap();
        assert_eq!(settings.required("LICENSING_A").unwrap(), "1");
        assert_eq!(settings.list("LICENSING_B").unwrap(), ["x", "y"]);
        assert_eq!(
            settings.optional("LICENSING_C").unwrap().as_deref(),
            Some("z")
        );
        assert_eq!(Settings::parse_file("oops").unwrap_err().0, 1);
    }

    #[test]
    fn offsets_are_read_or_refused_by_name() {
        let settings = Settings::from_pairs([
            ("A", "+08:00"),
            ("B", "-05:30"),
            ("C", "UTC"),
            ("D", "Asia/Shanghai"),
            ("E", "+25:00"),
        ]);
        assert_eq!(
            settings
                .offset_or("A", time::UtcOffset::UTC)
                .unwrap()
                .whole_minutes(),
            480
        );
        assert_eq!(
            settings
                .offset_or("B", time::UtcOffset::UTC)
                .unwrap()
                .whole_minutes(),
            -330
        );
        assert_eq!(
            settings.offset_or("C", time::UtcOffset::UTC).unwrap(),
            time::UtcOffset::UTC
        );
        assert_eq!(
            settings.offset_or("MISSING", time::UtcOffset::UTC).unwrap(),
            time::UtcOffset::UTC
        );
        assert_eq!(
            settings
                .offset_or("D", time::UtcOffset::UTC)
                .unwrap_err()
                .name,
            "D"
        );
        assert!(settings.offset_or("E", time::UtcOffset::UTC).is_err());
    }

    #[test]
    fn placeholder_and_short_secrets_are_refused_by_name_without_their_value() {
        for weak in [
            "k7Qp-2wLx",
            "CHANGE-ME-TO-A-LONG-RANDOM-TOKEN",
            "an-example-token-0000",
            "my-Secret-key-00000000",
            "changeme00000000000",
        ] {
            let error = check_secret("LICENSING_API_TOKENS", weak)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("LICENSING_API_TOKENS"), "{error}");
            assert!(!error.contains(weak), "{error}");
        }
        assert!(check_secret("LICENSING_API_TOKENS", "k7Qp-2wLx-9vRt-4mNz").is_ok());
    }

    #[test]
    fn errors_name_the_variable() {
        let settings =
            Settings::from_pairs([("LICENSING_PORT", "eighty"), ("LICENSING_EMPTY", " ")]);
        let e = settings.parse_or::<u16>("LICENSING_PORT", 1).unwrap_err();
        assert_eq!(e.name, "LICENSING_PORT");
        assert!(
            e.to_string().starts_with("LICENSING_PORT: \"eighty\""),
            "{e}"
        );
        assert_eq!(
            settings
                .required("LICENSING_EMPTY")
                .unwrap_err()
                .to_string(),
            "LICENSING_EMPTY: is required but not set"
        );
        assert_eq!(settings.parse_or("LICENSING_MISSING", 7u16).unwrap(), 7);
    }

    #[test]
    fn callback_keys_make_a_verifier_with_the_window() {
        use koogallery::signature::{AccessKey, SignatureParams, signed_query};
        assert!(
            Settings::from_pairs([])
                .callback_verifier()
                .unwrap()
                .is_none()
        );
        let settings = Settings::from_pairs([
            (
                "LICENSING_CALLBACK_KEYS",
                "currentAccessKey0123456789,previousAccessKey012345",
            ),
            ("LICENSING_CALLBACK_WINDOW_SECONDS", "30"),
        ]);
        let verifier = settings.callback_verifier().unwrap().unwrap();
        let query = signed_query(
            &AccessKey::new("previousAccessKey012345"),
            "nonce0123456789",
            "1700000000000",
            b"{}",
        );
        let params = SignatureParams::from_query(&query).unwrap();
        assert_eq!(
            verifier
                .verify(&params, b"{}", 1_700_000_029_000)
                .unwrap()
                .key_index,
            1
        );
        assert!(
            verifier.verify(&params, b"{}", 1_700_000_031_000).is_err(),
            "outside 30 s"
        );
        let negative = Settings::from_pairs([
            ("LICENSING_CALLBACK_KEYS", "currentAccessKey0123456789"),
            ("LICENSING_CALLBACK_WINDOW_SECONDS", "-5"),
        ]);
        let error = negative.callback_verifier().unwrap_err().to_string();
        assert!(
            error.contains("LICENSING_CALLBACK_WINDOW_SECONDS"),
            "{error}"
        );
    }

    #[test]
    fn secrets_read_from_settings_are_typed_and_print_redacted() {
        let settings = Settings::from_pairs([
            (
                "LICENSING_API_TOKENS",
                "k7Qp-2wLx-9vRt-4mNz,z9Xc-3vBn-7mLk-1jHg",
            ),
            ("LICENSING_KOOGALLERY_SK", "k7Qp-2wLx-9vRt-4mNz-SK"),
        ]);
        let tokens = settings.secret_list("LICENSING_API_TOKENS").unwrap();
        let sk = settings.secret("LICENSING_KOOGALLERY_SK").unwrap();
        assert_eq!(tokens[1].expose(), "z9Xc-3vBn-7mLk-1jHg");
        let shown = format!("{tokens:?} {sk:?}");
        assert!(
            !shown.contains("k7Qp") && !shown.contains("z9Xc"),
            "{shown}"
        );
    }
}
