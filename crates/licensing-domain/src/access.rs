//! Access modes (D22) and notices (D23), the vocabulary: what the seller's software may do with a
//! license at a given instant, why, and when the warnings before an expiry or the end of a freeze
//! fall due. The rules that compute them from a license's state are in `access_rules.rs`.

use crate::values::Timestamp;

/// The freeze period KooGallery asks sellers to configure: 15 days, during which data is kept.
pub const DEFAULT_FREEZE_PERIOD_MS: i64 = 15 * 86_400_000;

/// One day, in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// What the seller's software may do with a license (D22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum AccessMode {
    /// Not activated here (yet).
    #[default]
    Pending,
    /// Activated, before `expireTime`, neither frozen nor released.
    Active,
    /// Past `expireTime` without a FREEZE yet: the marketplace's grace period.
    Expired,
    /// Frozen by the marketplace: no use, but the buyer's data is kept until `data_kept_until`.
    Frozen,
    /// Released, or frozen past `data_kept_until`: the data may go.
    Released,
}

impl AccessMode {
    /// Every mode.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Active,
        Self::Expired,
        Self::Frozen,
        Self::Released,
    ];

    /// Stable lower-case name (views, APIs, entitlement claims).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Frozen => "frozen",
            Self::Released => "released",
        }
    }

    /// Reads [`Self::as_str`]'s names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// Why the access mode changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessReason {
    /// The marketplace confirmed the activation.
    Activated,
    /// A renewal, a cancelled renewal or a heartbeat moved `expireTime`.
    ExpiryChanged,
    /// The clock passed `expireTime`.
    ExpireTimePassed,
    /// `updateLicenseCodeStatus FREEZE`.
    Frozen,
    /// `updateLicenseCodeStatus UNFREEZE`.
    Unfrozen,
    /// `releaseLicenseCode`.
    Released,
    /// The clock passed `data_kept_until` while frozen.
    DataKeptUntilPassed,
    /// An operator resolved a drift in the marketplace's favour.
    DriftResolved,
    /// The stream predates access modes: its mode is recorded for the first time.
    Recomputed,
}

impl AccessReason {
    /// Every reason.
    pub const ALL: [Self; 9] = [
        Self::Activated,
        Self::ExpiryChanged,
        Self::ExpireTimePassed,
        Self::Frozen,
        Self::Unfrozen,
        Self::Released,
        Self::DataKeptUntilPassed,
        Self::DriftResolved,
        Self::Recomputed,
    ];

    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activated => "activated",
            Self::ExpiryChanged => "expiry_changed",
            Self::ExpireTimePassed => "expire_time_passed",
            Self::Frozen => "frozen",
            Self::Unfrozen => "unfrozen",
            Self::Released => "released",
            Self::DataKeptUntilPassed => "data_kept_until_passed",
            Self::DriftResolved => "drift_resolved",
            Self::Recomputed => "recomputed",
        }
    }

    /// Reads [`Self::as_str`]'s names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A license's access at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The mode.
    pub mode: AccessMode,
    /// While active: the instant access ends (`expireTime`), when known.
    pub until: Option<Timestamp>,
    /// While frozen (or released by the clock): until when the buyer's data is kept.
    pub data_kept_until: Option<Timestamp>,
}

/// The settings `decide` needs beyond the state and the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long data is kept after a FREEZE (`data_kept_until` = freeze + this).
    pub freeze_period_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            freeze_period_ms: DEFAULT_FREEZE_PERIOD_MS,
        }
    }
}

/// The notice thresholds (D23), carried by the `pass_time` command so that the process that
/// schedules it and the one that decides it read the same ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticePolicy {
    /// Days before `expireTime` at which `expiring_soon` is due (default 7 and 1).
    pub expiry_days: Vec<u32>,
    /// Days before `data_kept_until` at which `freeze_ending_soon` is due (default 3).
    pub freeze_days: Vec<u32>,
}

impl Default for NoticePolicy {
    fn default() -> Self {
        Self {
            expiry_days: vec![7, 1],
            freeze_days: vec![3],
        }
    }
}
