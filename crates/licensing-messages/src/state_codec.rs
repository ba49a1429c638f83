//! The JSON of a license's folded state as reads see it, for the projector's snapshots (ADR
//! 0022): every field but the callbacks it decided, which only `decide` consults
//! (`License::without_decided_callbacks`). An internal format, never part of an event:
//! [`SNAPSHOT_FORMAT`] is stored with each snapshot and bumped whenever `License` or `evolve`
//! changes meaning, and a snapshot of another format is not used.

use licensing_domain as domain;
use serde::{Deserialize, Serialize};

use crate::event_codec::{DriftV1, FailureV1, MarketTimeV1, access_mode};

/// The format of the state's JSON. Bump it with any change to `License`'s fields or to what
/// `evolve` makes of an event: snapshots of an older format are then ignored.
pub const SNAPSHOT_FORMAT: i32 = 1;

/// Why a stored state could not be read.
#[derive(Debug, thiserror::Error)]
#[error("undecodable license state: {0}")]
pub struct StateError(String);

impl StateError {
    /// A state at another version than the one it is stored as.
    pub fn at_version(state: u64, stored: i64) -> Self {
        Self(format!(
            "the state is at version {state}, stored as {stored}"
        ))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ActivationV1 {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<FailureV1>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LicenseStateV1 {
    code: Option<String>,
    sandbox: bool,
    version: u64,
    activation: ActivationV1,
    activation_attempt: u32,
    real_effect_time_ms: Option<i64>,
    needs_confirmation: bool,
    expire: Option<MarketTimeV1>,
    expire_estimated: bool,
    product_id: Option<String>,
    order_id: Option<String>,
    frozen_since_ms: Option<i64>,
    released_at_ms: Option<i64>,
    last_usage: Option<(i64, String)>,
    last_heartbeat_day: Option<i64>,
    heartbeat_attempt: Option<(i64, u32)>,
    last_heartbeat_failure: Option<(i64, String)>,
    heartbeat_given_up: Option<i64>,
    last_usage_ip: Option<String>,
    last_activation_failure: Option<String>,
    awaiting_claim_since_ms: Option<i64>,
    market_status: Option<String>,
    drift: Option<DriftV1>,
    updated_at_ms: Option<i64>,
    latest_at_ms: Option<i64>,
    access_mode: String,
    data_kept_until_ms: Option<i64>,
    expiry_notices: Vec<(i64, u32)>,
    freeze_notices: Vec<(i64, u32)>,
}

fn ms(t: Option<domain::Timestamp>) -> Option<i64> {
    t.map(domain::Timestamp::as_millis)
}

fn at(ms: Option<i64>) -> Option<domain::Timestamp> {
    ms.map(domain::Timestamp::from_millis)
}

/// A state as JSON text, without its decided callbacks.
pub fn encode(state: &domain::License) -> String {
    use domain::ActivationStatus as A;
    let activation = match &state.activation {
        A::NotRequested => ("not_requested", None),
        A::Pending => ("pending", None),
        A::AwaitingClaim => ("awaiting_claim", None),
        A::Failed(failure) => ("failed", Some(failure.into())),
        A::Activated => ("activated", None),
    };
    let day = |d: domain::Day| d.number();
    let dto = LicenseStateV1 {
        code: state.code.as_ref().map(|c| c.as_str().to_owned()),
        sandbox: state.sandbox,
        version: state.version,
        activation: ActivationV1 {
            status: activation.0.to_owned(),
            failure: activation.1,
        },
        activation_attempt: state.activation_attempt,
        real_effect_time_ms: ms(state.real_effect_time),
        needs_confirmation: state.needs_confirmation,
        expire: state.expire.as_ref().map(Into::into),
        expire_estimated: state.expire_estimated,
        product_id: state.product_id.clone(),
        order_id: state.order_id.clone(),
        frozen_since_ms: ms(state.frozen_since),
        released_at_ms: ms(state.released_at),
        last_usage: state.last_usage.as_ref().map(|(d, a)| (day(*d), a.clone())),
        last_heartbeat_day: state.last_heartbeat_day.map(day),
        heartbeat_attempt: state.heartbeat_attempt.map(|(d, n)| (day(d), n)),
        last_heartbeat_failure: state
            .last_heartbeat_failure
            .as_ref()
            .map(|(d, c)| (day(*d), c.clone())),
        heartbeat_given_up: state.heartbeat_given_up.map(day),
        last_usage_ip: state.last_usage_ip.clone(),
        last_activation_failure: state.last_activation_failure.clone(),
        awaiting_claim_since_ms: ms(state.awaiting_claim_since),
        market_status: state.market_status.as_ref().map(|s| s.as_str().to_owned()),
        drift: state.drift.as_ref().map(Into::into),
        updated_at_ms: ms(state.updated_at),
        latest_at_ms: ms(state.latest_at),
        access_mode: state.access_mode.as_str().to_owned(),
        data_kept_until_ms: ms(state.data_kept_until),
        expiry_notices: state.expiry_notices.iter().copied().collect(),
        freeze_notices: state.freeze_notices.iter().copied().collect(),
    };
    serde_json::to_string(&dto).expect("a state serialises")
}

/// A state from its JSON text (it has no decided callbacks).
pub fn decode(json: &str) -> Result<domain::License, StateError> {
    use domain::ActivationStatus as A;
    let fail = |e: String| StateError(e);
    let dto: LicenseStateV1 = serde_json::from_str(json).map_err(|e| fail(e.to_string()))?;
    let activation = match (dto.activation.status.as_str(), dto.activation.failure) {
        ("not_requested", _) => A::NotRequested,
        ("pending", _) => A::Pending,
        ("awaiting_claim", _) => A::AwaitingClaim,
        ("failed", Some(failure)) => A::Failed(failure.into()),
        ("activated", _) => A::Activated,
        ("failed", None) => return Err(fail("a failed activation without its failure".into())),
        (other, _) => return Err(fail(format!("unknown activation status {other:?}"))),
    };
    let day = domain::Day::from_number;
    let mut state = domain::License::default();
    state.code = dto
        .code
        .map(|c| domain::LicenseCode::parse(&c))
        .transpose()
        .map_err(|e| fail(e.to_string()))?;
    state.sandbox = dto.sandbox;
    state.version = dto.version;
    state.activation = activation;
    state.activation_attempt = dto.activation_attempt;
    state.real_effect_time = at(dto.real_effect_time_ms);
    state.needs_confirmation = dto.needs_confirmation;
    state.expire = dto.expire.map(Into::into);
    state.expire_estimated = dto.expire_estimated;
    state.product_id = dto.product_id;
    state.order_id = dto.order_id;
    state.frozen_since = at(dto.frozen_since_ms);
    state.released_at = at(dto.released_at_ms);
    state.last_usage = dto.last_usage.map(|(d, a)| (day(d), a));
    state.last_heartbeat_day = dto.last_heartbeat_day.map(day);
    state.heartbeat_attempt = dto.heartbeat_attempt.map(|(d, n)| (day(d), n));
    state.last_heartbeat_failure = dto.last_heartbeat_failure.map(|(d, c)| (day(d), c));
    state.heartbeat_given_up = dto.heartbeat_given_up.map(day);
    state.last_usage_ip = dto.last_usage_ip;
    state.last_activation_failure = dto.last_activation_failure;
    state.awaiting_claim_since = at(dto.awaiting_claim_since_ms);
    state.market_status = dto
        .market_status
        .map(|s| domain::MarketStatus::from_wire(&s));
    state.drift = dto.drift.map(TryInto::try_into).transpose().map_err(fail)?;
    state.updated_at = at(dto.updated_at_ms);
    state.latest_at = at(dto.latest_at_ms);
    state.access_mode = access_mode(&dto.access_mode).map_err(fail)?;
    state.data_kept_until = at(dto.data_kept_until_ms);
    state.expiry_notices = dto.expiry_notices.into_iter().collect();
    state.freeze_notices = dto.freeze_notices.into_iter().collect();
    Ok(state)
}
