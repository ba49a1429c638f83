//! Commands: what someone asks of one license. Callbacks from the marketplace, activation requests
//! from the seller, outcomes of the marketplace calls we made, and usage reports.

use crate::values::{Day, LicenseCode, MarketTime, Timestamp};

/// One request to change a license, with everything `decide` needs: no clock, no lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The license the command is about.
    pub license: LicenseCode,
    /// Test traffic (`testFlag=1`): goes to the sandbox stream, never to the real license (D11).
    pub sandbox: bool,
    /// When the command was received (the instant recorded on the resulting events).
    pub at: Timestamp,
    /// What is asked.
    pub action: Action,
}

/// What a command asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A verified, validated callback from KooGallery.
    Callback(Callback),
    /// The seller asks us to activate the code (D19).
    RequestActivation {
        /// Actual delivery time to send as `real_effect_time`, if the seller gave one.
        real_effect_time: Option<Timestamp>,
    },
    /// The outcome of one activate call made by the outbound worker.
    RecordActivation(ActivationOutcome),
    /// The seller's software was used (drives the daily heartbeat, D15).
    ReportUsage(Usage),
    /// The outcome of one heartbeat call made by the outbound worker.
    RecordHeartbeat(HeartbeatOutcome),
    /// The clock reached an instant the license was waiting for (`expireTime`, `data_kept_until`,
    /// a notice threshold): the access mode and the notices due then (D22, D23).
    PassTime(crate::access::NoticePolicy),
    /// An operator settles the open drift, keeping one side's values.
    ResolveDrift {
        /// The side kept.
        accept: DriftSide,
        /// Why.
        note: String,
        /// The name of the API token that asked.
        actor: String,
    },
}

/// A callback, and what to do when it names a license we have never seen (D10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The activity and its fields.
    pub kind: CallbackKind,
    /// Lenient (create the record) or strict (answer "license does not exist").
    pub on_unknown: UnknownLicensePolicy,
}

/// What to do with a callback for a license that has no history here (D10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownLicensePolicy {
    /// Create the license from what the callback says (the default).
    #[default]
    Register,
    /// Reject the callback; the marketplace is answered `000003`.
    Reject,
}

/// The three callback activities of License 2.0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackKind {
    /// `refreshLicenseCode` (更新授权码有效期): renewal or renewal cancellation.
    Refresh(Refresh),
    /// `updateLicenseCodeStatus` (变更授权码状态): freeze or unfreeze.
    ChangeStatus(StatusChange),
    /// `releaseLicenseCode` (释放授权码).
    Release(Release),
}

/// `refreshLicenseCode`: the new absolute expiry of the license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// The renewal (or renewal-cancellation) order, not the purchase order.
    pub order_id: String,
    /// Its order line.
    pub order_line_id: String,
    /// Why the expiry changes.
    pub scene: Scene,
    /// New product id when the period type changed (month to year).
    pub product_id: Option<String>,
    /// The new expiry, absolute; may be earlier than the current one (D12).
    pub expire: MarketTime,
}

/// The `scene` of a refresh. Unknown scenes are kept verbatim and still applied (D13).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scene {
    /// `RENEWAL` (续费).
    Renewal,
    /// `UNSUBSCRIBE_RENEWAL_PERIOD` (退续费): a renewal period refunded.
    UnsubscribeRenewalPeriod,
    /// Any other value, as sent.
    Other(String),
}

impl Scene {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Renewal => "RENEWAL",
            Self::UnsubscribeRenewalPeriod => "UNSUBSCRIBE_RENEWAL_PERIOD",
            Self::Other(raw) => raw,
        }
    }

    /// Reads a wire value; anything unknown becomes [`Scene::Other`].
    pub fn from_wire(raw: &str) -> Self {
        match raw {
            "RENEWAL" => Self::Renewal,
            "UNSUBSCRIBE_RENEWAL_PERIOD" => Self::UnsubscribeRenewalPeriod,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// `updateLicenseCodeStatus`: `FREEZE` or `UNFREEZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusChange {
    /// Expired past the grace period: freeze, keep the buyer's data.
    Freeze,
    /// Renewed during the freeze period: unfreeze.
    Unfreeze,
}

/// `releaseLicenseCode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The unsubscribe order, when the release follows an unsubscription.
    pub order_id: Option<String>,
    /// Its order line.
    pub order_line_id: Option<String>,
}

/// How the marketplace answered one activate call, as the outbound worker classified it (D16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationOutcome {
    /// The worker's attempt number for this license, increasing; a repeated report of an attempt
    /// already recorded changes nothing.
    pub attempt: u32,
    /// The classified answer.
    pub result: ActivationResult,
}

/// The classified answer to an activate call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivationResult {
    /// `92020000`, with the decoded `license_code_info`.
    Activated(LicenseCodeInfo),
    /// `92020003`: the code was already activated; confirm with a heartbeat.
    AlreadyActivated,
    /// `92020004`: the buyer has not claimed the code in 服务监管 yet; retry later.
    AwaitingClaim {
        /// The marketplace's code.
        code: String,
        /// The marketplace's message.
        message: String,
    },
    /// Any other answer, or no answer.
    Failed(CallFailure),
}

/// A failed marketplace call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// The marketplace's `error_code`, the gateway's `APIGW.*` code, `HTTP <status>`, or a transport error kind.
    pub code: String,
    /// What went wrong, without secrets.
    pub message: String,
    /// Whether the worker will try again.
    pub retryable: bool,
}

/// The decoded `license_code_info` of a successful activation. The raw string is kept beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseCodeInfo {
    /// The marketplace status, normally `ALIVE`.
    pub status: String,
    /// Estimated expiry; the heartbeat is authoritative.
    pub expire: Option<MarketTime>,
    /// Product id.
    pub product_id: Option<String>,
    /// Purchase order id.
    pub order_id: Option<String>,
    /// Quantity attribute of the purchase, when integral.
    pub amount: Option<u64>,
    /// The JSON document exactly as received inside the response string.
    pub raw: String,
}

/// One usage signal from the seller's software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The calendar day of the use in the configured zone (see [`Day::containing`]).
    pub day: Day,
    /// End-user identifier inside the seller's software; sent as `heartbeatInfo.thirdPartyAccount`.
    pub account: String,
    /// Client IP, if known.
    pub ip: Option<String>,
}

/// How the marketplace answered one heartbeat call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// The day the heartbeat was owed for.
    pub day: Day,
    /// The worker's attempt number for that day, increasing.
    pub attempt: u32,
    /// The classified answer.
    pub result: HeartbeatResult,
}

/// The classified answer to a heartbeat call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatResult {
    /// The marketplace answered with the license's status.
    Acknowledged {
        /// Its status for the code.
        status: MarketStatus,
        /// Its expiry for the code, when given.
        expire: Option<MarketTime>,
    },
    /// The call failed.
    Failed(CallFailure),
}

/// The marketplace's own status of a license code (heartbeat `data.status`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MarketStatus {
    /// `ALIVE`.
    Alive,
    /// `EXPIRED`.
    Expired,
    /// `RELEASED`.
    Released,
    /// A status this version does not know, kept verbatim.
    Other(String),
}

impl MarketStatus {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Alive => "ALIVE",
            Self::Expired => "EXPIRED",
            Self::Released => "RELEASED",
            Self::Other(raw) => raw,
        }
    }

    /// Reads a wire value; anything unknown becomes [`MarketStatus::Other`].
    pub fn from_wire(raw: &str) -> Self {
        match raw {
            "ALIVE" => Self::Alive,
            "EXPIRED" => Self::Expired,
            "RELEASED" => Self::Released,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Which side's values an operator kept when resolving a drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftSide {
    /// The marketplace's values replace ours.
    Marketplace,
    /// Ours stand; the marketplace's answer is noted as wrong or transient.
    Ours,
}

impl DriftSide {
    /// `marketplace` or `ours`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Marketplace => "marketplace",
            Self::Ours => "ours",
        }
    }
}
