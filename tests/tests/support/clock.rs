//! The settable clock of time-driven tests (`LICENSING_CLOCK_OFFSET_FILE`).

use super::*;

/// A port free right now.
/// The projector's clock: the system's moved by the seconds in a file.
pub struct TestClock(PathBuf);

impl TestClock {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("clock-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, "0").unwrap();
        Self(path)
    }

    pub fn set(&self, seconds: i64) {
        std::fs::write(&self.0, seconds.to_string()).unwrap();
    }

    pub fn setting(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TestClock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
