//! The state of one license, and `evolve`: how each event changes it.
//!
//! The state holds only what `decide` and the read side need; everything in it is derived from the
//! events, so replaying a stream always rebuilds the same state.

use std::collections::BTreeSet;

use crate::access::AccessMode;
use crate::command::DriftSide;
use crate::command::{CallFailure, MarketStatus, Scene, StatusChange};
use crate::event::{CallbackKey, DriftDetected, Event, LocalStatus};
use crate::values::{Day, LicenseCode, MarketTime, Timestamp};

/// Where the license stands with the marketplace's activation API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ActivationStatus {
    /// Nobody asked to activate it (it is known from a callback only).
    #[default]
    NotRequested,
    /// Requested; the outbound worker owes an activate call (perhaps after retryable failures).
    Pending,
    /// The marketplace waits for the buyer to claim the code (`92020004`); the worker retries later.
    AwaitingClaim,
    /// The marketplace refused for good; a new request may try again.
    Failed(CallFailure),
    /// Activated.
    Activated,
}

/// The overall status of a license, derived from the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No event yet: the license is unknown here.
    Unregistered,
    /// Known from a callback; nobody asked to activate it.
    Registered,
    /// Activation requested, not yet confirmed.
    ActivationPending,
    /// Waiting for the buyer to claim the code.
    AwaitingClaim,
    /// Activation failed permanently.
    ActivationFailed,
    /// Activated, not frozen.
    Active,
    /// Frozen by the marketplace (expired past the grace period); data must be kept.
    Frozen,
    /// Released: terminal.
    Released,
}

impl Status {
    /// Stable lower-case name, for views and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unregistered => "unregistered",
            Self::Registered => "registered",
            Self::ActivationPending => "activation_pending",
            Self::AwaitingClaim => "awaiting_claim",
            Self::ActivationFailed => "activation_failed",
            Self::Active => "active",
            Self::Frozen => "frozen",
            Self::Released => "released",
        }
    }
}

/// Everything known about one license, folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct License {
    /// The license code; `None` until registered.
    pub code: Option<LicenseCode>,
    /// Sandbox (test traffic) license.
    pub sandbox: bool,
    /// Number of events applied: the stream version.
    pub version: u64,
    /// Activation with the marketplace.
    pub activation: ActivationStatus,
    /// The highest activate-call attempt recorded.
    pub activation_attempt: u32,
    /// `real_effect_time` requested with the current activation, if any.
    pub real_effect_time: Option<Timestamp>,
    /// Activated with `92020003`: a heartbeat must confirm it.
    pub needs_confirmation: bool,
    /// Current expiry (latest fact: activation estimate, refresh callback, or heartbeat).
    pub expire: Option<MarketTime>,
    /// Whether `expire` is only the activation's estimate (the heartbeat is authoritative, so a
    /// heartbeat that corrects an estimate is no drift).
    pub expire_estimated: bool,
    /// Product id.
    pub product_id: Option<String>,
    /// Purchase order id.
    pub order_id: Option<String>,
    /// When the marketplace froze it, while frozen.
    pub frozen_since: Option<Timestamp>,
    /// When it was released.
    pub released_at: Option<Timestamp>,
    /// The last calendar day with recorded usage, and the account reported that day.
    pub last_usage: Option<(Day, String)>,
    /// The last day whose heartbeat the marketplace acknowledged.
    pub last_heartbeat_day: Option<Day>,
    /// The highest heartbeat attempt recorded, with its day.
    pub heartbeat_attempt: Option<(Day, u32)>,
    /// The last heartbeat failure recorded: its day and code (a repeat of it adds no event).
    pub last_heartbeat_failure: Option<(Day, String)>,
    /// The last day whose heartbeat ended in a permanent failure: no more calls for it.
    pub heartbeat_given_up: Option<Day>,
    /// The IP address reported with the last day's usage, sent with its heartbeat.
    pub last_usage_ip: Option<String>,
    /// The code of the last retryable activation failure (a repeat of it adds no event).
    pub last_activation_failure: Option<String>,
    /// Since when the current activation waits for the buyer to claim the code (`92020004`).
    pub awaiting_claim_since: Option<Timestamp>,
    /// The marketplace's status from the last heartbeat.
    pub market_status: Option<MarketStatus>,
    /// The open disagreement with the marketplace, if any.
    pub drift: Option<DriftDetected>,
    /// When the last event happened.
    pub updated_at: Option<Timestamp>,
    /// The latest instant of any event: the license's clock never runs backwards, so a command
    /// stamped earlier (another process's clock) is judged at this instant.
    pub latest_at: Option<Timestamp>,
    /// The access mode last recorded (D22).
    pub access_mode: AccessMode,
    /// Until when data is kept, recorded with the change to `frozen`.
    pub data_kept_until: Option<Timestamp>,
    /// `expiring_soon` notices given: (expiry in ms, days) (D23).
    pub expiry_notices: BTreeSet<(i64, u32)>,
    /// `freeze_ending_soon` notices given: (`data_kept_until` in ms, days).
    pub freeze_notices: BTreeSet<(i64, u32)>,
    /// Callbacks already decided, by content (D9).
    seen_callbacks: BTreeSet<CallbackKey>,
}

impl License {
    /// The state after `events`, from nothing.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        events.into_iter().fold(Self::default(), evolve)
    }

    /// The overall status.
    pub fn status(&self) -> Status {
        if self.code.is_none() {
            Status::Unregistered
        } else if self.released_at.is_some() {
            Status::Released
        } else if self.frozen_since.is_some() {
            Status::Frozen
        } else {
            match self.activation {
                ActivationStatus::NotRequested => Status::Registered,
                ActivationStatus::Pending => Status::ActivationPending,
                ActivationStatus::AwaitingClaim => Status::AwaitingClaim,
                ActivationStatus::Failed(_) => Status::ActivationFailed,
                ActivationStatus::Activated => Status::Active,
            }
        }
    }

    /// Whether this callback was decided before (D9).
    pub fn has_seen(&self, key: &CallbackKey) -> bool {
        self.seen_callbacks.contains(key)
    }

    /// The state without the callbacks it decided (D9): only `decide` consults them, and `evolve`
    /// only records them, so every read of a state (a view, a state as of an instant) is the same
    /// without them. A snapshot for reads keeps no more (ADR 0022): a license renewed ten
    /// thousand times has ten thousand of them.
    pub fn without_decided_callbacks(mut self) -> Self {
        self.seen_callbacks.clear();
        self
    }

    /// Whether an activate call is owed (pending or awaiting the buyer's claim).
    pub fn activation_due(&self) -> bool {
        self.released_at.is_none()
            && matches!(
                self.activation,
                ActivationStatus::Pending | ActivationStatus::AwaitingClaim
            )
    }

    /// The day a heartbeat is owed for, if any: the last day with usage not yet acknowledged, or,
    /// after a `92020003` activation, `today` (the heartbeat confirms the activation, D16).
    pub fn heartbeat_due(&self, today: Day) -> Option<Day> {
        if self.released_at.is_some() || self.activation != ActivationStatus::Activated {
            return None;
        }
        let usage_day = self.last_usage.as_ref().map(|(day, _)| *day);
        let due = usage_day
            .filter(|day| self.last_heartbeat_day < Some(*day))
            .or(self.needs_confirmation.then_some(today));
        // A day whose heartbeat the marketplace refused for good is not called again.
        due.filter(|day| self.heartbeat_given_up < Some(*day))
    }

    /// When the marketplace is expected to release a frozen license: the freeze instant plus the
    /// product's freeze period (15 days by default, [`crate::DEFAULT_FREEZE_PERIOD_MS`]). `None` unless frozen.
    pub fn expected_release(&self, freeze_period_ms: i64) -> Option<Timestamp> {
        self.frozen_since
            .filter(|_| self.released_at.is_none())
            .map(|since| since.plus_millis(freeze_period_ms))
    }

    /// Our status as the marketplace would see it, once activated or frozen or released.
    pub fn local_status(&self) -> Option<LocalStatus> {
        match self.status() {
            Status::Released => Some(LocalStatus::Released),
            Status::Frozen => Some(LocalStatus::Frozen),
            Status::Active => Some(LocalStatus::Active),
            _ => None,
        }
    }
}

/// The state after one more event. Total: every event applies to every state without panicking
/// (`decide` only emits sensible sequences, but an old stream must always load).
pub fn evolve(mut state: License, event: &Event) -> License {
    state.version += 1;
    state.updated_at = Some(event.at());
    state.latest_at = state.latest_at.max(Some(event.at()));
    match event {
        Event::Registered(e) => {
            state.code = Some(e.license.clone());
            state.sandbox = e.sandbox;
        }
        Event::ActivationRequested(e) => {
            state.activation = ActivationStatus::Pending;
            state.real_effect_time = e.real_effect_time;
            state.awaiting_claim_since = None;
            state.last_activation_failure = None;
        }
        Event::Activated(e) => {
            state.activation = ActivationStatus::Activated;
            state.activation_attempt = state.activation_attempt.max(e.attempt);
            state.needs_confirmation = e.already_activated;
            if let Some(info) = &e.info {
                if info.expire.is_some() {
                    state.expire = info.expire.clone();
                    state.expire_estimated = true;
                }
                if info.product_id.is_some() {
                    state.product_id = info.product_id.clone();
                }
                if info.order_id.is_some() {
                    state.order_id = info.order_id.clone();
                }
            }
        }
        Event::ActivationAwaitingClaim(e) => {
            state.activation = ActivationStatus::AwaitingClaim;
            state.activation_attempt = state.activation_attempt.max(e.attempt);
            state.awaiting_claim_since.get_or_insert(e.at);
        }
        Event::ActivationFailed(e) => {
            state.activation_attempt = state.activation_attempt.max(e.attempt);
            if e.failure.retryable {
                state.last_activation_failure = Some(e.failure.code.clone());
            } else {
                state.activation = ActivationStatus::Failed(e.failure.clone());
            }
        }
        Event::Renewed(e) | Event::RenewalCancelled(e) => {
            state.expire = Some(e.expire.clone());
            state.expire_estimated = false;
            if e.product_id.is_some() {
                state.product_id = e.product_id.clone();
            }
            state.seen_callbacks.insert(refresh_key(
                &e.order_id,
                &e.order_line_id,
                &e.scene,
                &e.expire,
            ));
        }
        Event::Frozen(e) => {
            state.frozen_since.get_or_insert(e.at);
        }
        Event::Unfrozen(_) => state.frozen_since = None,
        Event::Released(e) => {
            state.released_at.get_or_insert(e.at);
            state.seen_callbacks.insert(CallbackKey::Release {
                order_id: e.order_id.clone(),
                order_line_id: e.order_line_id.clone(),
            });
        }
        Event::UsageRecorded(e) => {
            state.last_usage = Some((e.day, e.account.clone()));
            state.last_usage_ip = e.ip.clone();
        }
        Event::HeartbeatAcknowledged(e) => {
            state.last_heartbeat_day = state.last_heartbeat_day.max(Some(e.day));
            state.heartbeat_attempt = state.heartbeat_attempt.max(Some((e.day, e.attempt)));
            state.market_status = Some(e.status.clone());
            state.needs_confirmation = false;
            state.drift = None;
            if e.expire.is_some() {
                state.expire = e.expire.clone();
                state.expire_estimated = false;
            }
        }
        Event::HeartbeatFailed(e) => {
            state.heartbeat_attempt = state.heartbeat_attempt.max(Some((e.day, e.attempt)));
            state.last_heartbeat_failure = Some((e.day, e.failure.code.clone()));
            if !e.failure.retryable {
                state.heartbeat_given_up = state.heartbeat_given_up.max(Some(e.day));
            }
        }
        Event::CallbackIgnored(e) => {
            state.seen_callbacks.insert(e.key.clone());
        }
        Event::DriftDetected(e) => state.drift = Some(e.clone()),
        Event::AccessChanged(e) => {
            state.access_mode = e.to;
            state.data_kept_until = e.data_kept_until;
        }
        Event::ExpiringSoon(e) => {
            state
                .expiry_notices
                .insert((e.expire.instant.as_millis(), e.days));
        }
        Event::FreezeEndingSoon(e) => {
            state
                .freeze_notices
                .insert((e.data_kept_until.as_millis(), e.days));
        }
        Event::DriftResolved(e) => {
            // The answer that showed the drift already applied the marketplace's expiry, product
            // and order (the marketplace is authoritative for them); its status never is.
            state.drift = None;
            let drift = &e.drift;
            let marketplace = e.accepted == DriftSide::Marketplace;
            if let Some((ours, theirs)) = &drift.expire {
                state.expire = if marketplace {
                    Some(theirs.clone())
                } else {
                    ours.clone()
                };
                state.expire_estimated = false;
            }
            if let Some((ours, theirs)) = &drift.product_id {
                state.product_id = if marketplace {
                    Some(theirs.clone())
                } else {
                    ours.clone()
                };
            }
            if let Some((ours, theirs)) = &drift.order_id {
                state.order_id = if marketplace {
                    Some(theirs.clone())
                } else {
                    ours.clone()
                };
            }
            match drift
                .status
                .as_ref()
                .map(|(_, theirs)| theirs)
                .filter(|_| marketplace)
            {
                Some(MarketStatus::Released) => {
                    state.released_at.get_or_insert(e.at);
                }
                Some(MarketStatus::Expired) => {
                    state.frozen_since.get_or_insert(e.at);
                }
                Some(MarketStatus::Alive) => state.frozen_since = None,
                Some(MarketStatus::Other(_)) | None => {}
            }
        }
    }
    state
}

/// The content key of a refresh callback, from its fields (shared by `decide` and `evolve`).
pub(crate) fn refresh_key(
    order_id: &str,
    order_line_id: &str,
    scene: &Scene,
    expire: &MarketTime,
) -> CallbackKey {
    CallbackKey::Refresh {
        order_id: order_id.to_owned(),
        order_line_id: order_line_id.to_owned(),
        scene: scene.as_str().to_owned(),
        expire_time: expire.raw.clone(),
    }
}

/// The content key of a status change.
pub(crate) fn status_key(change: StatusChange) -> CallbackKey {
    CallbackKey::Status(change)
}
