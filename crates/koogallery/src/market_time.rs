//! The marketplace's time formats: `yyyyMMddHHmmss` instants (zone configurable, D14) and the
//! APIG `X-Sdk-Date` (`yyyyMMdd'T'HHmmss'Z'`, UTC).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The zone KooGallery's China site writes its times in by default (UTC+08:00, D14).
pub const CHINA_STANDARD_TIME: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(offset) => offset,
    Err(_) => panic!("UTC+08:00 is a valid offset"),
};

/// Why a text is not a `yyyyMMddHHmmss` time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTime {
    /// Not exactly 14 ASCII digits.
    #[error("expected 14 digits in the form yyyyMMddHHmmss")]
    Format,
    /// Digits that name no real date or time (month 13, February 30th, 25 o'clock).
    #[error("not a valid calendar date and time")]
    OutOfRange,
}

fn digits(text: &str) -> Result<Vec<u8>, InvalidTime> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidTime::Format);
    }
    Ok(text.bytes().map(|b| b - b'0').collect())
}

fn number(d: &[u8]) -> u32 {
    d.iter().fold(0, |n, digit| n * 10 + u32::from(*digit))
}

/// Parses `yyyyMMddHHmmss` as a local time in `zone`.
pub fn parse_market_time(text: &str, zone: UtcOffset) -> Result<OffsetDateTime, InvalidTime> {
    if text.len() != 14 {
        return Err(InvalidTime::Format);
    }
    let d = digits(text)?;
    let year = i32::try_from(number(&d[0..4])).map_err(|_| InvalidTime::OutOfRange)?;
    let month = Month::try_from(number(&d[4..6]) as u8).map_err(|_| InvalidTime::OutOfRange)?;
    let date = Date::from_calendar_date(year, month, number(&d[6..8]) as u8)
        .map_err(|_| InvalidTime::OutOfRange)?;
    let time = Time::from_hms(
        number(&d[8..10]) as u8,
        number(&d[10..12]) as u8,
        number(&d[12..14]) as u8,
    )
    .map_err(|_| InvalidTime::OutOfRange)?;
    Ok(PrimitiveDateTime::new(date, time).assume_offset(zone))
}

/// Formats an instant as `yyyyMMddHHmmss` in `zone` (UTC for `real_effect_time`).
pub fn format_market_time(at: OffsetDateTime, zone: UtcOffset) -> String {
    let local = at.to_offset(zone);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    )
}

/// Formats an instant as an `X-Sdk-Date` header value: `yyyyMMdd'T'HHmmss'Z'` in UTC.
pub fn format_sdk_date(at: OffsetDateTime) -> String {
    let utc = format_market_time(at, UtcOffset::UTC);
    format!("{}T{}Z", &utc[..8], &utc[8..])
}

/// Parses an `X-Sdk-Date` header value.
pub fn parse_sdk_date(text: &str) -> Result<OffsetDateTime, InvalidTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return Err(InvalidTime::Format);
    }
    parse_market_time(&format!("{}{}", &text[..8], &text[9..15]), UtcOffset::UTC)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The instant `millis` milliseconds after the Unix epoch (the inverse of [`unix_millis`]); `None`
/// outside the years −9999 to 9999.
pub fn from_unix_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_and_out_of_range_is_none() {
        let at = from_unix_millis(1_795_943_142_103).unwrap();
        assert_eq!(unix_millis(at), 1_795_943_142_103);
        assert_eq!(from_unix_millis(-1).map(unix_millis), Some(-1));
        assert_eq!(from_unix_millis(i64::MAX), None);
    }

    #[test]
    fn parses_in_the_given_zone() {
        let at = parse_market_time("20230523201932", CHINA_STANDARD_TIME).unwrap();
        assert_eq!(unix_millis(at), 1_684_844_372_000); // 2023-05-23T12:19:32Z
        let utc = parse_market_time("20230523201932", UtcOffset::UTC).unwrap();
        assert_eq!(unix_millis(utc) - unix_millis(at), 8 * 3_600_000);
        assert_eq!(
            format_market_time(at, CHINA_STANDARD_TIME),
            "20230523201932"
        );
        assert_eq!(format_market_time(at, UtcOffset::UTC), "20230523121932");
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "",
            "2023052320193",
            "202305232019320",
            "2023-05-23T20:1",
            "2023052320193a",
            "２０２３０５２３２０１９３",
        ] {
            assert_eq!(
                parse_market_time(bad, UtcOffset::UTC),
                Err(InvalidTime::Format),
                "{bad}"
            );
        }
        for bad in [
            "20231323201932",
            "20230230000000",
            "20230523250000",
            "20230523206000",
        ] {
            assert_eq!(
                parse_market_time(bad, UtcOffset::UTC),
                Err(InvalidTime::OutOfRange),
                "{bad}"
            );
        }
    }

    #[test]
    fn sdk_dates_round_trip() {
        let at = parse_sdk_date("20240101T000000Z").unwrap();
        assert_eq!(format_sdk_date(at), "20240101T000000Z");
        assert_eq!(parse_sdk_date("20240101 000000Z"), Err(InvalidTime::Format));
    }
}
