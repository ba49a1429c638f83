//! `decide`: what a command means for a license, as events, or why it is refused.
//!
//! Pure: the state and the command are all it reads. Every rule of `decisions.md` that concerns a
//! single license lives here: idempotency by content (D9), unknown licenses (D10), sandboxes (D11),
//! order tolerance and the terminal release (D12), activation outcomes (D16), daily heartbeats (D15).

use std::fmt;

use crate::access::Policy;
use crate::command::{
    Action, ActivationOutcome, ActivationResult, Callback, CallbackKind, Command, HeartbeatOutcome,
    HeartbeatResult, MarketStatus, Release, Scene, StatusChange, UnknownLicensePolicy, Usage,
};
use crate::event::{
    Activated, ActivationAwaitingClaim, ActivationRequested, CallFailed, CallbackIgnored,
    CallbackKey, DriftDetected, DriftResolved, Event, HeartbeatAcknowledged, HeartbeatFailed,
    IgnoreReason, LocalStatus, Origin, Registered, Released, Renewed, StatusChanged, UsageRecorded,
};
use crate::state::{ActivationStatus, License, Status, evolve, refresh_key, status_key};
use crate::values::{MarketTime, Timestamp};

/// Why a command was refused. Refusals append nothing; the caller turns them into an answer
/// (a callback result code, an HTTP status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The license has no history here: a strict-mode callback (`000003`), or usage or an
    /// outcome for a code never registered.
    UnknownLicense,
    /// The command is for the sandbox and the stream is real, or the reverse.
    SandboxMismatch,
    /// The license was released; nothing can be asked of it any more.
    Released,
    /// Usage reported for a license that is not activated.
    NotActivated,
    /// Usage reported while the marketplace has the license frozen.
    Frozen,
    /// The command names another license than the stream it was sent to.
    WrongLicense,
    /// A drift resolution for a license without an open drift.
    NoDrift,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownLicense => "the license code is not known",
            Self::SandboxMismatch => "test traffic cannot touch a real license, nor the reverse",
            Self::Released => "the license code was released",
            Self::NotActivated => "the license code is not activated",
            Self::Frozen => "the license code is frozen",
            Self::WrongLicense => "the command is for another license code",
            Self::NoDrift => "the license code has no open drift to resolve",
        })
    }
}

impl std::error::Error for Rejection {}

/// The events a command produces on `state`, or why it is refused, with the default [`Policy`].
///
/// An empty list means "already done": a repeated command never produces new events.
pub fn decide(state: &License, command: Command) -> Result<Vec<Event>, Rejection> {
    decide_with(state, command, &Policy::default())
}

/// The events a command produces on `state` under `policy`, or why it is refused.
///
/// After the command's own events, the access mode is judged at the command's instant (never
/// earlier than the license's latest event): when it differs from the recorded one, an
/// `access_changed` follows (D22). A `pass_time` command then adds the notices due (D23).
pub fn decide_with(
    state: &License,
    command: Command,
    policy: &Policy,
) -> Result<Vec<Event>, Rejection> {
    let now = state
        .latest_at
        .map_or(command.at, |latest| latest.max(command.at));
    let notices = match &command.action {
        Action::PassTime(notices) => Some(notices.clone()),
        _ => None,
    };
    let mut events = decide_action(state, command)?;
    // The state after the command's events: borrowed when there are none (most repeats and most
    // clock ticks), so only a command that changes something pays for a copy.
    let mut after = if events.is_empty() {
        std::borrow::Cow::Borrowed(state)
    } else {
        std::borrow::Cow::Owned(events.iter().fold(state.clone(), evolve))
    };
    if let Some(change) = after.access_change(&events, now, policy) {
        after = std::borrow::Cow::Owned(evolve(after.into_owned(), &change));
        events.push(change);
    }
    if let Some(notices) = notices {
        events.extend(after.notices_due(&notices, now));
    }
    Ok(events)
}

fn decide_action(state: &License, command: Command) -> Result<Vec<Event>, Rejection> {
    if let Some(code) = &state.code {
        if *code != command.license {
            return Err(Rejection::WrongLicense);
        }
        if state.sandbox != command.sandbox {
            return Err(Rejection::SandboxMismatch);
        }
    }
    let Command {
        license,
        sandbox,
        at,
        action,
    } = command;
    let registration = |origin| {
        Event::Registered(Registered {
            license: license.clone(),
            sandbox,
            origin,
            at,
        })
    };
    match action {
        Action::Callback(callback) => on_callback(state, callback, at, registration),
        Action::RequestActivation { real_effect_time } => {
            on_activation_request(state, real_effect_time, at, registration)
        }
        Action::RecordActivation(outcome) => on_activation_outcome(state, outcome, at),
        Action::ReportUsage(usage) => on_usage(state, usage, at),
        Action::RecordHeartbeat(outcome) => on_heartbeat_outcome(state, outcome, at),
        // The clock alone: what it changes is judged by `decide_with` for every command.
        Action::PassTime(_) => {
            if state.code.is_none() {
                return Err(Rejection::UnknownLicense);
            }
            Ok(Vec::new())
        }
        Action::ResolveDrift {
            accept,
            note,
            actor,
        } => {
            if state.code.is_none() {
                return Err(Rejection::UnknownLicense);
            }
            let drift = state.drift.clone().ok_or(Rejection::NoDrift)?;
            Ok(vec![Event::DriftResolved(DriftResolved {
                accepted: accept,
                drift,
                note,
                actor,
                at,
            })])
        }
    }
}

/// The fields on which the marketplace's answer disagrees with `state`: the status (as
/// [`disagrees`] reads it), the expiry, the product and the order, each compared only when the
/// marketplace gave it.
fn drift_of(
    state: &License,
    ours: Option<LocalStatus>,
    theirs: Option<&MarketStatus>,
    expire: Option<&MarketTime>,
    product_id: Option<&str>,
    order_id: Option<&str>,
    at: Timestamp,
) -> Option<Event> {
    let differs = |ours: Option<&str>, theirs: Option<&str>| match theirs {
        Some(theirs) if ours != Some(theirs) => Some((ours.map(str::to_owned), theirs.to_owned())),
        _ => None,
    };
    let drift = DriftDetected {
        status: ours
            .zip(theirs)
            .filter(|(ours, theirs)| disagrees(*ours, theirs))
            .map(|(ours, theirs)| (ours, theirs.clone())),
        // An expiry we only estimated cannot disagree.
        expire: expire
            .filter(|theirs| {
                !state.expire_estimated
                    && state
                        .expire
                        .as_ref()
                        .is_some_and(|ours| ours.instant != theirs.instant)
            })
            .map(|theirs| (state.expire.clone(), theirs.clone())),
        // A product or order we never learnt cannot disagree.
        product_id: differs(state.product_id.as_deref(), product_id)
            .filter(|(ours, _)| ours.is_some()),
        order_id: differs(state.order_id.as_deref(), order_id).filter(|(ours, _)| ours.is_some()),
        at,
    };
    drift.any().then_some(Event::DriftDetected(drift))
}

fn on_callback(
    state: &License,
    callback: Callback,
    at: Timestamp,
    registration: impl Fn(Origin) -> Event,
) -> Result<Vec<Event>, Rejection> {
    let key = match &callback.kind {
        CallbackKind::Refresh(r) => refresh_key(&r.order_id, &r.order_line_id, &r.scene, &r.expire),
        CallbackKind::ChangeStatus(change) => status_key(*change),
        CallbackKind::Release(r) => CallbackKey::Release {
            order_id: r.order_id.clone(),
            order_line_id: r.order_line_id.clone(),
        },
    };
    if state.has_seen(&key) {
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    match state.status() {
        Status::Released => {
            return Ok(vec![Event::CallbackIgnored(CallbackIgnored {
                key,
                reason: IgnoreReason::AlreadyReleased,
                at,
            })]);
        }
        Status::Unregistered => match callback.on_unknown {
            UnknownLicensePolicy::Reject => return Err(Rejection::UnknownLicense),
            UnknownLicensePolicy::Register => events.push(registration(Origin::Callback)),
        },
        _ => {}
    }
    match callback.kind {
        CallbackKind::Refresh(r) => {
            let renewed = Renewed {
                order_id: r.order_id,
                order_line_id: r.order_line_id,
                product_id: r.product_id,
                expire: r.expire,
                at,
                scene: r.scene.clone(),
            };
            // D12: the expiry is set to the absolute value sent, also when it is earlier.
            events.push(match r.scene {
                Scene::UnsubscribeRenewalPeriod => Event::RenewalCancelled(renewed),
                Scene::Renewal | Scene::Other(_) => Event::Renewed(renewed),
            });
        }
        CallbackKind::ChangeStatus(StatusChange::Freeze) => {
            if state.frozen_since.is_none() {
                events.push(Event::Frozen(StatusChanged { at }));
            }
        }
        CallbackKind::ChangeStatus(StatusChange::Unfreeze) => {
            if state.frozen_since.is_some() {
                events.push(Event::Unfrozen(StatusChanged { at }));
            }
        }
        CallbackKind::Release(Release {
            order_id,
            order_line_id,
        }) => events.push(Event::Released(Released {
            order_id,
            order_line_id,
            at,
        })),
    }
    Ok(events)
}

fn on_activation_request(
    state: &License,
    real_effect_time: Option<Timestamp>,
    at: Timestamp,
    registration: impl Fn(Origin) -> Event,
) -> Result<Vec<Event>, Rejection> {
    let requested = Event::ActivationRequested(ActivationRequested {
        real_effect_time,
        at,
    });
    match state.status() {
        Status::Released => Err(Rejection::Released),
        Status::Unregistered => Ok(vec![registration(Origin::ActivationRequest), requested]),
        _ => match state.activation {
            // Already on its way, or done: asking again changes nothing.
            ActivationStatus::Pending | ActivationStatus::Activated => Ok(Vec::new()),
            // Asked again after the buyer was told to claim the code, or after a refusal: try again.
            ActivationStatus::NotRequested
            | ActivationStatus::AwaitingClaim
            | ActivationStatus::Failed(_) => Ok(vec![requested]),
        },
    }
}

fn on_activation_outcome(
    state: &License,
    outcome: ActivationOutcome,
    at: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if state.code.is_none() {
        return Err(Rejection::UnknownLicense);
    }
    // A stale or repeated outcome (an attempt already recorded, or no activation owed any more,
    // e.g. the license was released meanwhile) changes nothing.
    if outcome.attempt <= state.activation_attempt || !state.activation_due() {
        return Ok(Vec::new());
    }
    // The same answer again (the buyer still has not claimed the code, the same retryable
    // failure): the call is counted in the job, not recorded again, so a stream grows by a
    // bounded number of events whatever the marketplace answers.
    let repeated = match &outcome.result {
        ActivationResult::AwaitingClaim { .. } => {
            state.activation == ActivationStatus::AwaitingClaim
        }
        ActivationResult::Failed(failure) => {
            failure.retryable && state.last_activation_failure.as_deref() == Some(&failure.code)
        }
        _ => false,
    };
    if repeated {
        return Ok(Vec::new());
    }
    let attempt = outcome.attempt;
    // The activation's `license_code_info` against what callbacks told us (D20).
    let drift = match &outcome.result {
        ActivationResult::Activated(info) => {
            let ours = if state.frozen_since.is_some() {
                LocalStatus::Frozen
            } else {
                LocalStatus::Active
            };
            let theirs =
                Some(MarketStatus::from_wire(&info.status)).filter(|_| !info.status.is_empty());
            drift_of(
                state,
                Some(ours),
                theirs.as_ref(),
                info.expire.as_ref(),
                info.product_id.as_deref(),
                info.order_id.as_deref(),
                at,
            )
        }
        _ => None,
    };
    let outcome_event = match outcome.result {
        ActivationResult::Activated(info) => Event::Activated(Activated {
            attempt,
            info: Some(info),
            already_activated: false,
            at,
        }),
        ActivationResult::AlreadyActivated => Event::Activated(Activated {
            attempt,
            info: None,
            already_activated: true,
            at,
        }),
        ActivationResult::AwaitingClaim { code, message } => {
            Event::ActivationAwaitingClaim(ActivationAwaitingClaim {
                attempt,
                code,
                message,
                at,
            })
        }
        ActivationResult::Failed(failure) => Event::ActivationFailed(CallFailed {
            attempt,
            failure,
            at,
        }),
    };
    Ok(std::iter::once(outcome_event).chain(drift).collect())
}

fn on_usage(state: &License, usage: Usage, at: Timestamp) -> Result<Vec<Event>, Rejection> {
    match state.status() {
        Status::Unregistered => return Err(Rejection::UnknownLicense),
        Status::Released => return Err(Rejection::Released),
        Status::Frozen => return Err(Rejection::Frozen),
        Status::Active => {}
        Status::Registered
        | Status::ActivationPending
        | Status::AwaitingClaim
        | Status::ActivationFailed => return Err(Rejection::NotActivated),
    }
    // D15: only the first use of a calendar day is recorded; it makes a heartbeat owed.
    if state
        .last_usage
        .as_ref()
        .is_some_and(|(day, _)| *day >= usage.day)
    {
        return Ok(Vec::new());
    }
    Ok(vec![Event::UsageRecorded(UsageRecorded {
        day: usage.day,
        account: usage.account,
        ip: usage.ip,
        at,
    })])
}

fn on_heartbeat_outcome(
    state: &License,
    outcome: HeartbeatOutcome,
    at: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if state.code.is_none() {
        return Err(Rejection::UnknownLicense);
    }
    let (day, attempt) = (outcome.day, outcome.attempt);
    let stale = state.heartbeat_attempt >= Some((day, attempt))
        || state.last_heartbeat_day >= Some(day)
        || state.heartbeat_given_up >= Some(day);
    if stale {
        return Ok(Vec::new());
    }
    match outcome.result {
        // The same retryable failure as the last one recorded for this day adds nothing.
        HeartbeatResult::Failed(failure)
            if failure.retryable
                && state.last_heartbeat_failure.as_ref() == Some(&(day, failure.code.clone())) =>
        {
            Ok(Vec::new())
        }
        HeartbeatResult::Failed(failure) => Ok(vec![Event::HeartbeatFailed(HeartbeatFailed {
            day,
            attempt,
            failure,
            at,
        })]),
        HeartbeatResult::Acknowledged { status, expire } => {
            let drift = drift_of(
                state,
                state.local_status(),
                Some(&status),
                expire.as_ref(),
                None,
                None,
                at,
            );
            let ack = Event::HeartbeatAcknowledged(HeartbeatAcknowledged {
                day,
                attempt,
                status,
                expire,
                at,
            });
            Ok(std::iter::once(ack).chain(drift).collect())
        }
    }
}

/// Whether the marketplace's status contradicts ours. `EXPIRED` is how the marketplace reports a
/// frozen code, so it agrees with a frozen license only; unknown statuses prove nothing.
fn disagrees(ours: LocalStatus, theirs: &MarketStatus) -> bool {
    match theirs {
        MarketStatus::Alive => ours != LocalStatus::Active,
        MarketStatus::Expired => ours != LocalStatus::Frozen,
        MarketStatus::Released => ours != LocalStatus::Released,
        MarketStatus::Other(_) => false,
    }
}
