//! The clock of time-driven work (access modes, notices, the probe watchdog, the heartbeat day):
//! the system's, or the system's moved by a number of seconds read from a file, so that a drill or
//! a test can move a running service through days without waiting for them.

use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::{Settings, SettingsError};

/// Reads the current instant.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `LICENSING_CLOCK_OFFSET_FILE`: a file holding a signed number of seconds to add to the
    /// system time, read at each reading (absent or empty: 0).
    offset_file: Option<Arc<PathBuf>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system clock, moved by the seconds in `path` whenever it is read.
    pub fn offset_by_file(path: impl Into<PathBuf>) -> Self {
        Self {
            offset_file: Some(Arc::new(path.into())),
        }
    }

    /// `LICENSING_CLOCK_OFFSET_FILE` if set (drills and tests), else the system clock.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        Ok(settings
            .optional("LICENSING_CLOCK_OFFSET_FILE")?
            .map_or_else(Self::system, Self::offset_by_file))
    }

    /// The seconds the clock is moved by (0 for the system clock, or when the file is absent,
    /// empty or unreadable as a number, which is logged).
    pub fn offset_seconds(&self) -> i64 {
        let Some(path) = &self.offset_file else {
            return 0;
        };
        match std::fs::read_to_string(path.as_ref()) {
            Ok(text) if text.trim().is_empty() => 0,
            Ok(text) => text.trim().parse().unwrap_or_else(|_| {
                tracing::warn!(path = %path.display(), "LICENSING_CLOCK_OFFSET_FILE does not hold a number of seconds; using 0");
                0
            }),
            Err(_) => 0,
        }
    }

    /// Now.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_seconds())
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> i64 {
        koogallery::market_time::unix_millis(self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_file_moves_the_clock_while_it_runs() {
        let path = std::env::temp_dir().join(format!("clock-{}", std::process::id()));
        let clock = Clock::offset_by_file(&path);
        assert_eq!(clock.offset_seconds(), 0, "absent file");
        std::fs::write(&path, "86400\n").unwrap();
        let moved = clock.now() - OffsetDateTime::now_utc();
        assert!((moved.whole_seconds() - 86_400).abs() <= 1, "{moved}");
        std::fs::write(&path, "-60").unwrap();
        assert_eq!(clock.offset_seconds(), -60);
        std::fs::write(&path, "tomorrow").unwrap();
        assert_eq!(clock.offset_seconds(), 0, "unreadable");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(Clock::system().offset_seconds(), 0);
    }
}
