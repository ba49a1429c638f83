//! Value types of the domain: instants, calendar days, marketplace times, license codes and stream names.
//!
//! They are parsed once at the boundary and then trusted; none of them reads a clock.

use std::fmt;

/// Milliseconds since the Unix epoch, UTC. The domain never reads a clock: every instant is an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant moved by `millis` (negative moves back), saturating at the ends of the range.
    pub const fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }
}

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A calendar day in the seller's configured time zone, counted in days since 1970-01-01 of that zone.
///
/// Heartbeats are owed per calendar day (D15); the boundary between two days depends on the zone,
/// so a day is always computed from an instant *and* a UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i64);

impl Day {
    /// The day that contains `at` in a zone `offset_minutes` east of UTC (UTC+08:00 is `480`).
    pub const fn containing(at: Timestamp, offset_minutes: i32) -> Self {
        let local = at.0.saturating_add(offset_minutes as i64 * 60_000);
        Self(local.div_euclid(MILLIS_PER_DAY))
    }

    /// Builds a day from its number (days since the zone's 1970-01-01).
    pub const fn from_number(days: i64) -> Self {
        Self(days)
    }

    /// Days since the zone's 1970-01-01.
    pub const fn number(self) -> i64 {
        self.0
    }

    /// The following calendar day.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

/// An instant as the marketplace wrote it: the parsed instant beside the raw `yyyyMMddHHmmss` text (D14).
///
/// The raw text is kept because the marketplace does not state its time zone; if the configured zone
/// turns out to be wrong, the original value is still there to reinterpret.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MarketTime {
    /// The instant, interpreted in the configured marketplace zone.
    pub instant: Timestamp,
    /// The text exactly as the marketplace sent it.
    pub raw: String,
}

/// Longest license code the marketplace issues (spec §2.3–2.5: `license`, String(64)).
pub const LICENSE_CODE_MAX_LEN: usize = 64;

/// A license code (授权码) as issued by KooGallery: 1 to 64 visible ASCII characters.
///
/// Visible ASCII only, so the code can be embedded in a stream name, a URL path and a routing key
/// without escaping ambiguities.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LicenseCode(String);

/// Why a text is not a license code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidLicenseCode {
    /// The code is empty.
    Empty,
    /// The code is longer than [`LICENSE_CODE_MAX_LEN`].
    TooLong,
    /// The code contains a character outside visible ASCII (space, control, non-ASCII).
    BadCharacter,
}

impl fmt::Display for InvalidLicenseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "license code is empty",
            Self::TooLong => "license code is longer than 64 characters",
            Self::BadCharacter => "license code contains a character outside visible ASCII",
        })
    }
}

impl std::error::Error for InvalidLicenseCode {}

impl LicenseCode {
    /// Parses a license code.
    pub fn parse(text: &str) -> Result<Self, InvalidLicenseCode> {
        if text.is_empty() {
            return Err(InvalidLicenseCode::Empty);
        }
        if text.len() > LICENSE_CODE_MAX_LEN {
            return Err(InvalidLicenseCode::TooLong);
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidLicenseCode::BadCharacter);
        }
        Ok(Self(text.to_owned()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The event stream holding this license's history: `license-{code}`, or `test-license-{code}`
    /// for test traffic (`testFlag=1`), which never touches the real license (D11).
    pub fn stream_name(&self, sandbox: bool) -> String {
        if sandbox {
            format!("test-license-{}", self.0)
        } else {
            format!("license-{}", self.0)
        }
    }
}

impl fmt::Display for LicenseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_boundary_follows_the_offset() {
        // 2024-01-01T15:59:59.999Z is still 2024-01-01 in UTC+08:00; one millisecond later it is the 2nd.
        let before = Timestamp::from_millis(1_704_124_799_999);
        let after = before.plus_millis(1);
        assert_eq!(
            Day::containing(before, 480).next(),
            Day::containing(after, 480)
        );
        assert_eq!(Day::containing(before, 0), Day::containing(after, 0));
        assert_eq!(
            Day::containing(Timestamp::from_millis(-1), 0),
            Day::from_number(-1)
        );
    }

    #[test]
    fn license_codes_are_visible_ascii_up_to_64() {
        assert!(LicenseCode::parse("PL0000000001").is_ok());
        assert_eq!(LicenseCode::parse(""), Err(InvalidLicenseCode::Empty));
        assert_eq!(
            LicenseCode::parse(&"A".repeat(65)),
            Err(InvalidLicenseCode::TooLong)
        );
        assert!(LicenseCode::parse(&"A".repeat(64)).is_ok());
        assert_eq!(
            LicenseCode::parse("PL 1"),
            Err(InvalidLicenseCode::BadCharacter)
        );
        assert_eq!(
            LicenseCode::parse("PL授权"),
            Err(InvalidLicenseCode::BadCharacter)
        );
    }

    #[test]
    fn sandbox_streams_are_separate() {
        let code = LicenseCode::parse("PL1").unwrap();
        assert_eq!(code.stream_name(false), "license-PL1");
        assert_eq!(code.stream_name(true), "test-license-PL1");
    }
}
