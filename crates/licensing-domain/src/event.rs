//! Events: the facts recorded in a license's stream. Each one is final once appended; the current
//! state is nothing but all of them folded with [`crate::evolve`].

use crate::access::{AccessMode, AccessReason};
use crate::command::{CallFailure, DriftSide, LicenseCodeInfo, MarketStatus, Scene, StatusChange};
use crate::values::{Day, LicenseCode, MarketTime, Timestamp};

/// Something that happened to a license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The license became known here. Always the first event of a stream.
    Registered(Registered),
    /// The seller asked for activation; the outbound worker owes an activate call.
    ActivationRequested(ActivationRequested),
    /// The marketplace confirmed the activation.
    Activated(Activated),
    /// The marketplace refused the activation until the buyer claims the code (`92020004`).
    ActivationAwaitingClaim(ActivationAwaitingClaim),
    /// One activate call failed.
    ActivationFailed(CallFailed),
    /// `refreshLicenseCode` with scene `RENEWAL` (or an unknown scene): new expiry.
    Renewed(Renewed),
    /// `refreshLicenseCode` with scene `UNSUBSCRIBE_RENEWAL_PERIOD`: a renewal refunded, new expiry.
    RenewalCancelled(Renewed),
    /// `updateLicenseCodeStatus FREEZE`.
    Frozen(StatusChanged),
    /// `updateLicenseCodeStatus UNFREEZE`.
    Unfrozen(StatusChanged),
    /// `releaseLicenseCode`. Terminal.
    Released(Released),
    /// The first use of the software on a calendar day: a heartbeat is owed for that day.
    UsageRecorded(UsageRecorded),
    /// The marketplace answered a heartbeat.
    HeartbeatAcknowledged(HeartbeatAcknowledged),
    /// One heartbeat call failed.
    HeartbeatFailed(HeartbeatFailed),
    /// A callback that changed nothing, and why (kept for audit, D12).
    CallbackIgnored(CallbackIgnored),
    /// The marketplace's view of the license disagrees with ours.
    DriftDetected(DriftDetected),
    /// An operator settled a drift: one side's values are kept.
    DriftResolved(DriftResolved),
    /// The access mode changed (D22), by a command or by the clock alone.
    AccessChanged(AccessChanged),
    /// `expireTime` is near (D23).
    ExpiringSoon(ExpiringSoon),
    /// The end of the freeze period, when the data may go, is near (D23).
    FreezeEndingSoon(FreezeEndingSoon),
}

impl Event {
    /// Stable name of the event type, used as the stored type and in routing keys
    /// (`license.<event_type>`). Never rename one: stored events and subscribers depend on it.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Registered(_) => "registered",
            Self::ActivationRequested(_) => "activation_requested",
            Self::Activated(_) => "activated",
            Self::ActivationAwaitingClaim(_) => "activation_awaiting_claim",
            Self::ActivationFailed(_) => "activation_failed",
            Self::Renewed(_) => "renewed",
            Self::RenewalCancelled(_) => "renewal_cancelled",
            Self::Frozen(_) => "frozen",
            Self::Unfrozen(_) => "unfrozen",
            Self::Released(_) => "released",
            Self::UsageRecorded(_) => "usage_recorded",
            Self::HeartbeatAcknowledged(_) => "heartbeat_acknowledged",
            Self::HeartbeatFailed(_) => "heartbeat_failed",
            Self::CallbackIgnored(_) => "callback_ignored",
            Self::DriftDetected(_) => "drift_detected",
            Self::DriftResolved(_) => "drift_resolved",
            Self::AccessChanged(_) => "access_changed",
            Self::ExpiringSoon(_) => "expiring_soon",
            Self::FreezeEndingSoon(_) => "freeze_ending_soon",
        }
    }

    /// When it happened (the instant of the command that caused it).
    pub fn at(&self) -> Timestamp {
        match self {
            Self::Registered(e) => e.at,
            Self::ActivationRequested(e) => e.at,
            Self::Activated(e) => e.at,
            Self::ActivationAwaitingClaim(e) => e.at,
            Self::ActivationFailed(e) => e.at,
            Self::Renewed(e) | Self::RenewalCancelled(e) => e.at,
            Self::Frozen(e) | Self::Unfrozen(e) => e.at,
            Self::Released(e) => e.at,
            Self::UsageRecorded(e) => e.at,
            Self::HeartbeatAcknowledged(e) => e.at,
            Self::HeartbeatFailed(e) => e.at,
            Self::CallbackIgnored(e) => e.at,
            Self::DriftDetected(e) => e.at,
            Self::DriftResolved(e) => e.at,
            Self::AccessChanged(e) => e.at,
            Self::ExpiringSoon(e) => e.at,
            Self::FreezeEndingSoon(e) => e.at,
        }
    }
}

/// How a license first became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A callback named it before the seller asked for activation (D10, lenient).
    Callback,
    /// The seller asked for its activation (D19).
    ActivationRequest,
}

/// Payload of [`Event::Registered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The license code.
    pub license: LicenseCode,
    /// Whether this is a sandbox (test traffic) license.
    pub sandbox: bool,
    /// What made it known.
    pub origin: Origin,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::ActivationRequested`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationRequested {
    /// `real_effect_time` to send, if any.
    pub real_effect_time: Option<Timestamp>,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::Activated`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activated {
    /// The worker's attempt that succeeded.
    pub attempt: u32,
    /// The decoded `license_code_info`; absent when the marketplace said "already activated".
    pub info: Option<LicenseCodeInfo>,
    /// `92020003`: activated before; a heartbeat must confirm it.
    pub already_activated: bool,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::ActivationAwaitingClaim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationAwaitingClaim {
    /// The worker's attempt.
    pub attempt: u32,
    /// The marketplace's code (`92020004`).
    pub code: String,
    /// The marketplace's message.
    pub message: String,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::ActivationFailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailed {
    /// The worker's attempt.
    pub attempt: u32,
    /// What failed.
    pub failure: CallFailure,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::Renewed`] and [`Event::RenewalCancelled`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    /// The renewal (or cancellation) order.
    pub order_id: String,
    /// Its order line.
    pub order_line_id: String,
    /// The scene as received.
    pub scene: Scene,
    /// New product id, if the period type changed.
    pub product_id: Option<String>,
    /// The new absolute expiry.
    pub expire: MarketTime,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::Frozen`] and [`Event::Unfrozen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChanged {
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::Released`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The unsubscribe order, if the release follows an unsubscription.
    pub order_id: Option<String>,
    /// Its order line.
    pub order_line_id: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::UsageRecorded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecorded {
    /// The calendar day of the use.
    pub day: Day,
    /// End-user identifier, sent as `thirdPartyAccount`.
    pub account: String,
    /// Client IP, if known.
    pub ip: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::HeartbeatAcknowledged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAcknowledged {
    /// The day the heartbeat was owed for.
    pub day: Day,
    /// The worker's attempt.
    pub attempt: u32,
    /// The marketplace's status of the code.
    pub status: MarketStatus,
    /// The marketplace's expiry of the code, if given (authoritative).
    pub expire: Option<MarketTime>,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::HeartbeatFailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatFailed {
    /// The day the heartbeat was owed for.
    pub day: Day,
    /// The worker's attempt.
    pub attempt: u32,
    /// What failed.
    pub failure: CallFailure,
    /// When.
    pub at: Timestamp,
}

/// Identity of a callback by its content (D9), within one license's stream.
///
/// `updateLicenseCodeStatus` carries no order id or time, so its key cannot tell a retry from a
/// later, genuine second freeze; status changes are therefore made idempotent by state, not by key
/// (ADR 0003).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallbackKey {
    /// `refreshLicenseCode`.
    Refresh {
        /// `orderId`.
        order_id: String,
        /// `orderLineId`.
        order_line_id: String,
        /// `scene`, as sent.
        scene: String,
        /// `expireTime`, as sent.
        expire_time: String,
    },
    /// `updateLicenseCodeStatus`.
    Status(StatusChange),
    /// `releaseLicenseCode`.
    Release {
        /// `orderId`.
        order_id: Option<String>,
        /// `orderLineId`.
        order_line_id: Option<String>,
    },
}

/// Why a callback changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The license was released before; released is terminal (D12).
    AlreadyReleased,
}

/// Payload of [`Event::CallbackIgnored`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackIgnored {
    /// Which callback.
    pub key: CallbackKey,
    /// Why it changed nothing.
    pub reason: IgnoreReason,
    /// When.
    pub at: Timestamp,
}

/// Our state of a license, as far as the marketplace can see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalStatus {
    /// Activated and neither frozen nor released.
    Active,
    /// Frozen.
    Frozen,
    /// Released.
    Released,
}

/// Payload of [`Event::DriftDetected`]: each field on which an open-API answer disagrees with
/// our state, ours and theirs (a field that agrees is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftDetected {
    /// The status: what we believed and what the marketplace said.
    pub status: Option<(LocalStatus, MarketStatus)>,
    /// The expiry: ours (if we knew one) and the marketplace's.
    pub expire: Option<(Option<MarketTime>, MarketTime)>,
    /// The product id: ours (if known) and the marketplace's.
    pub product_id: Option<(Option<String>, String)>,
    /// The order id: ours (if known) and the marketplace's.
    pub order_id: Option<(Option<String>, String)>,
    /// When.
    pub at: Timestamp,
}

impl DriftDetected {
    /// Whether any field disagrees.
    pub fn any(&self) -> bool {
        self.status.is_some()
            || self.expire.is_some()
            || self.product_id.is_some()
            || self.order_id.is_some()
    }
}

/// Payload of [`Event::DriftResolved`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftResolved {
    /// The side kept.
    pub accepted: DriftSide,
    /// The drift settled.
    pub drift: DriftDetected,
    /// The operator's note.
    pub note: String,
    /// The name of the API token that asked.
    pub actor: String,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::AccessChanged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessChanged {
    /// The mode before.
    pub from: AccessMode,
    /// The mode now.
    pub to: AccessMode,
    /// Why.
    pub reason: AccessReason,
    /// When the new mode is `active`: until when (`expireTime`), if known.
    pub access_until: Option<Timestamp>,
    /// When the new mode is `frozen` (or `released` by the clock): until when data is kept.
    pub data_kept_until: Option<Timestamp>,
    /// When (the command's instant, or the instant the clock passed).
    pub at: Timestamp,
}

/// Payload of [`Event::ExpiringSoon`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringSoon {
    /// The expiry this notice is about.
    pub expire: MarketTime,
    /// The threshold reached, in days before the expiry.
    pub days: u32,
    /// When.
    pub at: Timestamp,
}

/// Payload of [`Event::FreezeEndingSoon`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeEndingSoon {
    /// Until when the buyer's data is kept.
    pub data_kept_until: Timestamp,
    /// The threshold reached, in days before it.
    pub days: u32,
    /// When.
    pub at: Timestamp,
}
