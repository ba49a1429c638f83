//! The probe watchdog's settings (D21, ADR 0013): the saved debug cases, the public callback
//! URL and the key that signs them, and the times of day the watchdog runs.

use koogallery::probe::{self, CaseOutcome, ProbeCase};
use koogallery::signature::AccessKey;
use licensing_runtime::{Settings, SettingsError};
use time::{OffsetDateTime, Time, UtcOffset};
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

/// When the watchdog runs: times of day in the market zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSchedule {
    /// Times of day, ascending.
    pub times: Vec<Time>,
    /// The market zone (`LICENSING_MARKET_TIME_ZONE`).
    pub zone: UtcOffset,
}

impl ProbeSchedule {
    /// `LICENSING_PROBE_SCHEDULE`: comma-separated `HH:MM` (default `09:30,15:30`).
    pub fn from_settings(settings: &Settings, zone: UtcOffset) -> Result<Self, SettingsError> {
        const NAME: &str = "LICENSING_PROBE_SCHEDULE";
        let items = settings.list(NAME)?;
        let items = if items.is_empty() {
            vec!["09:30".to_owned(), "15:30".to_owned()]
        } else {
            items
        };
        let format = time::format_description::parse("[hour]:[minute]")
            .map_err(|e| SettingsError::invalid(NAME, e))?;
        let mut times = items
            .iter()
            .map(|item| {
                Time::parse(item, &format).map_err(|_| {
                    SettingsError::invalid(
                        NAME,
                        format!("{item:?} is not a time of day like 09:30"),
                    )
                })
            })
            .collect::<Result<Vec<Time>, _>>()?;
        times.sort_unstable();
        times.dedup();
        Ok(Self { times, zone })
    }

    /// The times as `HH:MM`.
    pub fn labels(&self) -> Vec<String> {
        self.times
            .iter()
            .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
            .collect()
    }

    /// The scheduled instants of the market days around `now`, ascending.
    fn around(&self, now: OffsetDateTime) -> Vec<OffsetDateTime> {
        let date = now.to_offset(self.zone).date();
        [date.previous_day(), Some(date), date.next_day()]
            .into_iter()
            .flatten()
            .flat_map(|d| {
                self.times
                    .iter()
                    .map(move |t| d.with_time(*t).assume_offset(self.zone))
            })
            .collect()
    }

    /// The latest scheduled instant at or before `now`.
    pub fn latest(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.around(now).into_iter().rfind(|at| *at <= now)
    }

    /// The first scheduled instant after `now`.
    pub fn next(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.around(now).into_iter().find(|at| *at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u8, hour: u8, minute: u8, offset_hours: i8) -> OffsetDateTime {
        time::Date::from_calendar_date(2026, time::Month::November, day)
            .unwrap()
            .with_hms(hour, minute, 0)
            .unwrap()
            .assume_offset(UtcOffset::from_hms(offset_hours, 0, 0).unwrap())
    }

    fn schedule() -> ProbeSchedule {
        ProbeSchedule {
            times: vec![
                Time::from_hms(9, 30, 0).unwrap(),
                Time::from_hms(15, 30, 0).unwrap(),
            ],
            zone: UtcOffset::from_hms(8, 0, 0).unwrap(),
        }
    }

    #[test]
    fn the_latest_and_next_slots_are_in_the_market_zone() {
        let s = schedule();
        // 08:00 +08:00 on the 30th: the latest slot was 15:30 the day before.
        let early = at(30, 0, 0, 0);
        assert_eq!(s.latest(early), Some(at(29, 15, 30, 8)));
        assert_eq!(s.next(early), Some(at(30, 9, 30, 8)));
        let slot = at(30, 9, 30, 8);
        assert_eq!(s.latest(slot), Some(slot));
        assert_eq!(s.next(slot), Some(at(30, 15, 30, 8)));
        let late = at(29, 23, 59, 8);
        assert_eq!(s.next(late), Some(at(30, 9, 30, 8)));
        assert_eq!(s.labels(), ["09:30", "15:30"]);
    }
}
