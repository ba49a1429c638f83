//! Secrets (callback access keys, the open-API SK) that never show in `Debug`, logs or errors.

use std::fmt;

/// A secret string. Its `Debug` prints `Secret([redacted])`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: call this only where the bytes are fed to a MAC.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&Secret> for Secret {
    fn from(value: &Secret) -> Self {
        value.clone()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::new("testAccessKey0123456789");
        let shown = format!("{secret:?} {:#?}", Some(&secret));
        assert!(!shown.contains("testAccessKey"), "{shown}");
        assert_eq!(secret.expose(), "testAccessKey0123456789");
    }
}
