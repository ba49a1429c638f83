//! Time as the read model stores and shows it: event timestamps as instants, market days as
//! dates, instants as RFC 3339, zones as `+08:00`.

use licensing_domain::Timestamp;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

pub(crate) fn ts(t: Timestamp) -> OffsetDateTime {
    koogallery::market_time::from_unix_millis(t.as_millis()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The Julian day number of 1970-01-01: day numbers count from there.
pub(crate) const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// `YYYY-MM-DD` of a day number.
pub(crate) fn date_of(day: i64) -> Option<String> {
    let julian = i32::try_from(UNIX_EPOCH_JULIAN_DAY + day).ok()?;
    Date::from_julian_day(julian).ok().map(|d| d.to_string())
}

pub(crate) fn rfc3339(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

/// A UTC offset as `+08:00`.
pub(crate) fn zone_label(zone: time::UtcOffset) -> String {
    format!(
        "{:+03}:{:02}",
        zone.whole_hours(),
        zone.minutes_past_hour().abs()
    )
}

/// The number of the market day (in `zone`) that the clock is in.
pub(crate) fn today(clock: &licensing_runtime::Clock, zone: time::UtcOffset) -> i64 {
    licensing_domain::Day::containing(
        licensing_domain::Timestamp::from_millis(koogallery::market_time::unix_millis(clock.now())),
        zone.whole_minutes().into(),
    )
    .number()
}
