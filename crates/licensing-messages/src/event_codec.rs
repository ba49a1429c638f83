//! The stored JSON of every domain event (schema version 1), and back.
//!
//! The domain's events have no serialisation of their own; these DTOs are the storage format.
//! Field names are part of the store's contract (and of the subscribers' envelope): never rename
//! one; add fields as optional, or add a schema version with an upcaster.

use licensing_domain as domain;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema version every event is written with today.
pub const SCHEMA_VERSION: i32 = 1;

/// Why a stored event could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode stored event `{event_type}` v{schema_version}: {reason}")]
pub struct DecodeError {
    /// The stored type.
    pub event_type: String,
    /// The stored schema version.
    pub schema_version: i32,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MarketTimeV1 {
    instant_ms: i64,
    raw: String,
}

impl From<&domain::MarketTime> for MarketTimeV1 {
    fn from(t: &domain::MarketTime) -> Self {
        Self {
            instant_ms: t.instant.as_millis(),
            raw: t.raw.clone(),
        }
    }
}

impl From<MarketTimeV1> for domain::MarketTime {
    fn from(t: MarketTimeV1) -> Self {
        Self {
            instant: domain::Timestamp::from_millis(t.instant_ms),
            raw: t.raw,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FailureV1 {
    code: String,
    message: String,
    retryable: bool,
}

impl From<&domain::CallFailure> for FailureV1 {
    fn from(f: &domain::CallFailure) -> Self {
        Self {
            code: f.code.clone(),
            message: f.message.clone(),
            retryable: f.retryable,
        }
    }
}

impl From<FailureV1> for domain::CallFailure {
    fn from(f: FailureV1) -> Self {
        Self {
            code: f.code,
            message: f.message,
            retryable: f.retryable,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LicenseCodeInfoV1 {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire: Option<MarketTimeV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    amount: Option<u64>,
    raw: String,
}

impl From<&domain::LicenseCodeInfo> for LicenseCodeInfoV1 {
    fn from(i: &domain::LicenseCodeInfo) -> Self {
        Self {
            status: i.status.clone(),
            expire: i.expire.as_ref().map(Into::into),
            product_id: i.product_id.clone(),
            order_id: i.order_id.clone(),
            amount: i.amount,
            raw: i.raw.clone(),
        }
    }
}

impl From<LicenseCodeInfoV1> for domain::LicenseCodeInfo {
    fn from(i: LicenseCodeInfoV1) -> Self {
        Self {
            status: i.status,
            expire: i.expire.map(Into::into),
            product_id: i.product_id,
            order_id: i.order_id,
            amount: i.amount,
            raw: i.raw,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "activity", rename_all = "snake_case")]
enum CallbackKeyV1 {
    Refresh {
        order_id: String,
        order_line_id: String,
        scene: String,
        expire_time: String,
    },
    Status {
        status: String,
    },
    Release {
        #[serde(default)]
        order_id: Option<String>,
        #[serde(default)]
        order_line_id: Option<String>,
    },
}

fn status_change_name(change: domain::StatusChange) -> &'static str {
    match change {
        domain::StatusChange::Freeze => "FREEZE",
        domain::StatusChange::Unfreeze => "UNFREEZE",
    }
}

impl From<&domain::CallbackKey> for CallbackKeyV1 {
    fn from(k: &domain::CallbackKey) -> Self {
        match k {
            domain::CallbackKey::Refresh {
                order_id,
                order_line_id,
                scene,
                expire_time,
            } => Self::Refresh {
                order_id: order_id.clone(),
                order_line_id: order_line_id.clone(),
                scene: scene.clone(),
                expire_time: expire_time.clone(),
            },
            domain::CallbackKey::Status(change) => Self::Status {
                status: status_change_name(*change).to_owned(),
            },
            domain::CallbackKey::Release {
                order_id,
                order_line_id,
            } => Self::Release {
                order_id: order_id.clone(),
                order_line_id: order_line_id.clone(),
            },
        }
    }
}

impl TryFrom<CallbackKeyV1> for domain::CallbackKey {
    type Error = String;
    fn try_from(k: CallbackKeyV1) -> Result<Self, String> {
        Ok(match k {
            CallbackKeyV1::Refresh {
                order_id,
                order_line_id,
                scene,
                expire_time,
            } => Self::Refresh {
                order_id,
                order_line_id,
                scene,
                expire_time,
            },
            CallbackKeyV1::Status { status } => Self::Status(match status.as_str() {
                "FREEZE" => domain::StatusChange::Freeze,
                "UNFREEZE" => domain::StatusChange::Unfreeze,
                other => return Err(format!("unknown status {other:?}")),
            }),
            CallbackKeyV1::Release {
                order_id,
                order_line_id,
            } => Self::Release {
                order_id,
                order_line_id,
            },
        })
    }
}

fn local_status_name(s: domain::LocalStatus) -> &'static str {
    match s {
        domain::LocalStatus::Active => "active",
        domain::LocalStatus::Frozen => "frozen",
        domain::LocalStatus::Released => "released",
    }
}

fn local_status(name: &str) -> Result<domain::LocalStatus, String> {
    match name {
        "active" => Ok(domain::LocalStatus::Active),
        "frozen" => Ok(domain::LocalStatus::Frozen),
        "released" => Ok(domain::LocalStatus::Released),
        other => Err(format!("unknown local status {other:?}")),
    }
}

/// Every event's payload, adjacently tagged so the tag becomes the stored `event_type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload", rename_all = "snake_case")]
enum EventV1 {
    Registered {
        license: String,
        sandbox: bool,
        origin: String,
        at_ms: i64,
    },
    ActivationRequested {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        real_effect_time_ms: Option<i64>,
        at_ms: i64,
    },
    Activated {
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        info: Option<LicenseCodeInfoV1>,
        already_activated: bool,
        at_ms: i64,
    },
    ActivationAwaitingClaim {
        attempt: u32,
        code: String,
        message: String,
        at_ms: i64,
    },
    ActivationFailed {
        attempt: u32,
        failure: FailureV1,
        at_ms: i64,
    },
    Renewed(RenewedV1),
    RenewalCancelled(RenewedV1),
    Frozen {
        at_ms: i64,
    },
    Unfrozen {
        at_ms: i64,
    },
    Released {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_line_id: Option<String>,
        at_ms: i64,
    },
    UsageRecorded {
        day: i64,
        account: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        at_ms: i64,
    },
    HeartbeatAcknowledged {
        day: i64,
        attempt: u32,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expire: Option<MarketTimeV1>,
        at_ms: i64,
    },
    HeartbeatFailed {
        day: i64,
        attempt: u32,
        failure: FailureV1,
        at_ms: i64,
    },
    CallbackIgnored {
        key: CallbackKeyV1,
        reason: String,
        at_ms: i64,
    },
    DriftDetected(DriftV1),
    DriftResolved {
        accepted: String,
        drift: DriftV1,
        note: String,
        actor: String,
        at_ms: i64,
    },
    AccessChanged {
        from: String,
        to: String,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access_until_ms: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_kept_until_ms: Option<i64>,
        at_ms: i64,
    },
    ExpiringSoon {
        expire: MarketTimeV1,
        days: u32,
        at_ms: i64,
    },
    FreezeEndingSoon {
        data_kept_until_ms: i64,
        days: u32,
        at_ms: i64,
    },
}

pub(crate) fn access_mode(name: &str) -> Result<domain::AccessMode, String> {
    domain::AccessMode::parse(name).ok_or_else(|| format!("unknown access mode {name:?}"))
}

/// A drift: the status as `ours`/`theirs` (the only fields of the first version), then the other
/// fields that disagree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DriftV1 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ours: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    theirs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire: Option<DriftTimeV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    product_id: Option<DriftTextV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order_id: Option<DriftTextV1>,
    at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DriftTimeV1 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ours: Option<MarketTimeV1>,
    theirs: MarketTimeV1,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DriftTextV1 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ours: Option<String>,
    theirs: String,
}

impl From<&domain::DriftDetected> for DriftV1 {
    fn from(d: &domain::DriftDetected) -> Self {
        let text = |pair: &Option<(Option<String>, String)>| {
            pair.as_ref().map(|(ours, theirs)| DriftTextV1 {
                ours: ours.clone(),
                theirs: theirs.clone(),
            })
        };
        Self {
            ours: d
                .status
                .as_ref()
                .map(|(o, _)| local_status_name(*o).to_owned()),
            theirs: d.status.as_ref().map(|(_, t)| t.as_str().to_owned()),
            expire: d.expire.as_ref().map(|(ours, theirs)| DriftTimeV1 {
                ours: ours.as_ref().map(Into::into),
                theirs: theirs.into(),
            }),
            product_id: text(&d.product_id),
            order_id: text(&d.order_id),
            at_ms: d.at.as_millis(),
        }
    }
}

impl TryFrom<DriftV1> for domain::DriftDetected {
    type Error = String;

    fn try_from(d: DriftV1) -> Result<Self, String> {
        let text = |pair: Option<DriftTextV1>| pair.map(|p| (p.ours, p.theirs));
        Ok(Self {
            status: match (d.ours, d.theirs) {
                (Some(ours), Some(theirs)) => Some((
                    local_status(&ours)?,
                    domain::MarketStatus::from_wire(&theirs),
                )),
                _ => None,
            },
            expire: d.expire.map(|e| (e.ours.map(Into::into), e.theirs.into())),
            product_id: text(d.product_id),
            order_id: text(d.order_id),
            at: domain::Timestamp::from_millis(d.at_ms),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RenewedV1 {
    order_id: String,
    order_line_id: String,
    scene: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    product_id: Option<String>,
    expire: MarketTimeV1,
    at_ms: i64,
}

impl From<&domain::Renewed> for RenewedV1 {
    fn from(r: &domain::Renewed) -> Self {
        Self {
            order_id: r.order_id.clone(),
            order_line_id: r.order_line_id.clone(),
            scene: r.scene.as_str().to_owned(),
            product_id: r.product_id.clone(),
            expire: (&r.expire).into(),
            at_ms: r.at.as_millis(),
        }
    }
}

impl From<RenewedV1> for domain::Renewed {
    fn from(r: RenewedV1) -> Self {
        Self {
            order_id: r.order_id,
            order_line_id: r.order_line_id,
            scene: domain::Scene::from_wire(&r.scene),
            product_id: r.product_id,
            expire: r.expire.into(),
            at: domain::Timestamp::from_millis(r.at_ms),
        }
    }
}

fn to_dto(event: &domain::Event) -> EventV1 {
    use domain::Event as E;
    match event {
        E::Registered(e) => EventV1::Registered {
            license: e.license.as_str().to_owned(),
            sandbox: e.sandbox,
            origin: match e.origin {
                domain::Origin::Callback => "callback",
                domain::Origin::ActivationRequest => "activation_request",
            }
            .to_owned(),
            at_ms: e.at.as_millis(),
        },
        E::ActivationRequested(e) => EventV1::ActivationRequested {
            real_effect_time_ms: e.real_effect_time.map(domain::Timestamp::as_millis),
            at_ms: e.at.as_millis(),
        },
        E::Activated(e) => EventV1::Activated {
            attempt: e.attempt,
            info: e.info.as_ref().map(Into::into),
            already_activated: e.already_activated,
            at_ms: e.at.as_millis(),
        },
        E::ActivationAwaitingClaim(e) => EventV1::ActivationAwaitingClaim {
            attempt: e.attempt,
            code: e.code.clone(),
            message: e.message.clone(),
            at_ms: e.at.as_millis(),
        },
        E::ActivationFailed(e) => EventV1::ActivationFailed {
            attempt: e.attempt,
            failure: (&e.failure).into(),
            at_ms: e.at.as_millis(),
        },
        E::Renewed(e) => EventV1::Renewed(e.into()),
        E::RenewalCancelled(e) => EventV1::RenewalCancelled(e.into()),
        E::Frozen(e) => EventV1::Frozen {
            at_ms: e.at.as_millis(),
        },
        E::Unfrozen(e) => EventV1::Unfrozen {
            at_ms: e.at.as_millis(),
        },
        E::Released(e) => EventV1::Released {
            order_id: e.order_id.clone(),
            order_line_id: e.order_line_id.clone(),
            at_ms: e.at.as_millis(),
        },
        E::UsageRecorded(e) => EventV1::UsageRecorded {
            day: e.day.number(),
            account: e.account.clone(),
            ip: e.ip.clone(),
            at_ms: e.at.as_millis(),
        },
        E::HeartbeatAcknowledged(e) => EventV1::HeartbeatAcknowledged {
            day: e.day.number(),
            attempt: e.attempt,
            status: e.status.as_str().to_owned(),
            expire: e.expire.as_ref().map(Into::into),
            at_ms: e.at.as_millis(),
        },
        E::HeartbeatFailed(e) => EventV1::HeartbeatFailed {
            day: e.day.number(),
            attempt: e.attempt,
            failure: (&e.failure).into(),
            at_ms: e.at.as_millis(),
        },
        E::CallbackIgnored(e) => EventV1::CallbackIgnored {
            key: (&e.key).into(),
            reason: match e.reason {
                domain::IgnoreReason::AlreadyReleased => "already_released",
            }
            .to_owned(),
            at_ms: e.at.as_millis(),
        },
        E::DriftDetected(e) => EventV1::DriftDetected(e.into()),
        E::DriftResolved(e) => EventV1::DriftResolved {
            accepted: e.accepted.as_str().to_owned(),
            drift: (&e.drift).into(),
            note: e.note.clone(),
            actor: e.actor.clone(),
            at_ms: e.at.as_millis(),
        },
        E::AccessChanged(e) => EventV1::AccessChanged {
            from: e.from.as_str().to_owned(),
            to: e.to.as_str().to_owned(),
            reason: e.reason.as_str().to_owned(),
            access_until_ms: e.access_until.map(domain::Timestamp::as_millis),
            data_kept_until_ms: e.data_kept_until.map(domain::Timestamp::as_millis),
            at_ms: e.at.as_millis(),
        },
        E::ExpiringSoon(e) => EventV1::ExpiringSoon {
            expire: (&e.expire).into(),
            days: e.days,
            at_ms: e.at.as_millis(),
        },
        E::FreezeEndingSoon(e) => EventV1::FreezeEndingSoon {
            data_kept_until_ms: e.data_kept_until.as_millis(),
            days: e.days,
            at_ms: e.at.as_millis(),
        },
    }
}

fn from_dto(dto: EventV1) -> Result<domain::Event, String> {
    use domain::Event as E;
    let ts = domain::Timestamp::from_millis;
    Ok(match dto {
        EventV1::Registered {
            license,
            sandbox,
            origin,
            at_ms,
        } => E::Registered(domain::Registered {
            license: domain::LicenseCode::parse(&license).map_err(|e| e.to_string())?,
            sandbox,
            origin: match origin.as_str() {
                "callback" => domain::Origin::Callback,
                "activation_request" => domain::Origin::ActivationRequest,
                other => return Err(format!("unknown origin {other:?}")),
            },
            at: ts(at_ms),
        }),
        EventV1::ActivationRequested {
            real_effect_time_ms,
            at_ms,
        } => E::ActivationRequested(domain::ActivationRequested {
            real_effect_time: real_effect_time_ms.map(ts),
            at: ts(at_ms),
        }),
        EventV1::Activated {
            attempt,
            info,
            already_activated,
            at_ms,
        } => E::Activated(domain::Activated {
            attempt,
            info: info.map(Into::into),
            already_activated,
            at: ts(at_ms),
        }),
        EventV1::ActivationAwaitingClaim {
            attempt,
            code,
            message,
            at_ms,
        } => E::ActivationAwaitingClaim(domain::ActivationAwaitingClaim {
            attempt,
            code,
            message,
            at: ts(at_ms),
        }),
        EventV1::ActivationFailed {
            attempt,
            failure,
            at_ms,
        } => E::ActivationFailed(domain::CallFailed {
            attempt,
            failure: failure.into(),
            at: ts(at_ms),
        }),
        EventV1::Renewed(r) => E::Renewed(r.into()),
        EventV1::RenewalCancelled(r) => E::RenewalCancelled(r.into()),
        EventV1::Frozen { at_ms } => E::Frozen(domain::StatusChanged { at: ts(at_ms) }),
        EventV1::Unfrozen { at_ms } => E::Unfrozen(domain::StatusChanged { at: ts(at_ms) }),
        EventV1::Released {
            order_id,
            order_line_id,
            at_ms,
        } => E::Released(domain::Released {
            order_id,
            order_line_id,
            at: ts(at_ms),
        }),
        EventV1::UsageRecorded {
            day,
            account,
            ip,
            at_ms,
        } => E::UsageRecorded(domain::UsageRecorded {
            day: domain::Day::from_number(day),
            account,
            ip,
            at: ts(at_ms),
        }),
        EventV1::HeartbeatAcknowledged {
            day,
            attempt,
            status,
            expire,
            at_ms,
        } => E::HeartbeatAcknowledged(domain::HeartbeatAcknowledged {
            day: domain::Day::from_number(day),
            attempt,
            status: domain::MarketStatus::from_wire(&status),
            expire: expire.map(Into::into),
            at: ts(at_ms),
        }),
        EventV1::HeartbeatFailed {
            day,
            attempt,
            failure,
            at_ms,
        } => E::HeartbeatFailed(domain::HeartbeatFailed {
            day: domain::Day::from_number(day),
            attempt,
            failure: failure.into(),
            at: ts(at_ms),
        }),
        EventV1::CallbackIgnored { key, reason, at_ms } => {
            E::CallbackIgnored(domain::CallbackIgnored {
                key: key.try_into()?,
                reason: match reason.as_str() {
                    "already_released" => domain::IgnoreReason::AlreadyReleased,
                    other => return Err(format!("unknown ignore reason {other:?}")),
                },
                at: ts(at_ms),
            })
        }
        EventV1::DriftDetected(drift) => E::DriftDetected(drift.try_into()?),
        EventV1::DriftResolved {
            accepted,
            drift,
            note,
            actor,
            at_ms,
        } => E::DriftResolved(domain::DriftResolved {
            accepted: match accepted.as_str() {
                "marketplace" => domain::DriftSide::Marketplace,
                "ours" => domain::DriftSide::Ours,
                other => return Err(format!("unknown drift side {other:?}")),
            },
            drift: drift.try_into()?,
            note,
            actor,
            at: ts(at_ms),
        }),
        EventV1::AccessChanged {
            from,
            to,
            reason,
            access_until_ms,
            data_kept_until_ms,
            at_ms,
        } => E::AccessChanged(domain::AccessChanged {
            from: access_mode(&from)?,
            to: access_mode(&to)?,
            reason: domain::AccessReason::parse(&reason)
                .ok_or_else(|| format!("unknown access reason {reason:?}"))?,
            access_until: access_until_ms.map(ts),
            data_kept_until: data_kept_until_ms.map(ts),
            at: ts(at_ms),
        }),
        EventV1::ExpiringSoon {
            expire,
            days,
            at_ms,
        } => E::ExpiringSoon(domain::ExpiringSoon {
            expire: expire.into(),
            days,
            at: ts(at_ms),
        }),
        EventV1::FreezeEndingSoon {
            data_kept_until_ms,
            days,
            at_ms,
        } => E::FreezeEndingSoon(domain::FreezeEndingSoon {
            data_kept_until: ts(data_kept_until_ms),
            days,
            at: ts(at_ms),
        }),
    })
}

/// A domain event as stored: its type name and its JSON payload (schema [`SCHEMA_VERSION`]).
pub fn encode(event: &domain::Event) -> (String, Value) {
    let tagged = serde_json::to_value(to_dto(event))
        .unwrap_or_else(|e| unreachable!("event DTOs serialise: {e}"));
    let Value::Object(mut map) = tagged else {
        unreachable!("an adjacently tagged enum serialises to an object")
    };
    let event_type = match map.remove("event_type") {
        Some(Value::String(t)) => t,
        _ => unreachable!("the tag is a string"),
    };
    debug_assert_eq!(event_type, event.event_type());
    (event_type, map.remove("payload").unwrap_or(Value::Null))
}

/// A stored event back into the domain. Only schema version 1 exists; later versions are upcast
/// to the current one by the store before they reach here.
pub fn decode(
    event_type: &str,
    schema_version: i32,
    payload: &Value,
) -> Result<domain::Event, DecodeError> {
    let dto: EventV1 = stored_dto(event_type, schema_version, payload)?;
    from_dto(dto).map_err(|reason| DecodeError {
        event_type: event_type.to_owned(),
        schema_version,
        reason,
    })
}

/// The DTO of a stored event of the current schema version.
fn stored_dto<'a, T: Deserialize<'a>>(
    event_type: &'a str,
    schema_version: i32,
    payload: &'a Value,
) -> Result<T, DecodeError> {
    let fail = |reason: String| DecodeError {
        event_type: event_type.to_owned(),
        schema_version,
        reason,
    };
    if schema_version != SCHEMA_VERSION {
        return Err(fail(format!(
            "this build reads schema version {SCHEMA_VERSION}"
        )));
    }
    T::deserialize(Tagged {
        event_type,
        payload,
    })
    .map_err(|e| fail(e.to_string()))
}

/// A stored event read as the adjacently tagged map `{"event_type": …, "payload": …}` without
/// building that map: the payload is deserialized where it lies (a copy of every payload cost
/// about as much as the rest of decoding).
struct Tagged<'a> {
    event_type: &'a str,
    payload: &'a Value,
}

impl<'de> serde::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_map(TaggedFields {
            tagged: self,
            next: 0,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// The two fields of [`Tagged`], the tag first (so the enum needs no buffering).
struct TaggedFields<'a> {
    tagged: Tagged<'a>,
    next: u8,
}

impl<'de> serde::de::MapAccess<'de> for TaggedFields<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.next {
            0 => "event_type",
            1 => "payload",
            _ => return Ok(None),
        };
        seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.next += 1;
        if self.next == 1 {
            seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(
                self.tagged.event_type,
            ))
        } else {
            seed.deserialize(self.tagged.payload)
        }
    }
}

/// One case of a watchdog run, as stored (`probe_run_passed`, `probe_run_failed`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CaseRunV1 {
    /// When the run started.
    at_ms: i64,
    case: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<&domain::CaseRun> for CaseRunV1 {
    fn from(r: &domain::CaseRun) -> Self {
        Self {
            at_ms: r.run_at.as_millis(),
            case: r.case.clone(),
            http_status: r.http_status,
            answer: r.answer.clone(),
            latency_ms: r.latency_ms,
            error: r.error.clone(),
        }
    }
}

impl From<CaseRunV1> for domain::CaseRun {
    fn from(r: CaseRunV1) -> Self {
        Self {
            run_at: domain::Timestamp::from_millis(r.at_ms),
            case: r.case,
            http_status: r.http_status,
            answer: r.answer,
            latency_ms: r.latency_ms,
            error: r.error,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload", rename_all = "snake_case")]
enum ProbeEventV1 {
    ProbeRunPassed(CaseRunV1),
    ProbeRunFailed(CaseRunV1),
    MarketplaceProbeSeen {
        at_ms: i64,
        license: String,
        activity: String,
    },
}

/// A probe log event as stored: its type name and its JSON payload (schema [`SCHEMA_VERSION`]).
pub fn encode_probe(event: &domain::ProbeEvent) -> (String, Value) {
    let dto = match event {
        domain::ProbeEvent::RunPassed(r) => ProbeEventV1::ProbeRunPassed(r.into()),
        domain::ProbeEvent::RunFailed(r) => ProbeEventV1::ProbeRunFailed(r.into()),
        domain::ProbeEvent::MarketplaceProbeSeen(s) => ProbeEventV1::MarketplaceProbeSeen {
            at_ms: s.at.as_millis(),
            license: s.license.clone(),
            activity: s.activity.clone(),
        },
    };
    let Ok(Value::Object(mut map)) = serde_json::to_value(dto) else {
        unreachable!("an adjacently tagged enum serialises to an object")
    };
    let payload = map.remove("payload").unwrap_or(Value::Null);
    (event.event_type().to_owned(), payload)
}

/// A stored probe log event back into the domain.
pub fn decode_probe(
    event_type: &str,
    schema_version: i32,
    payload: &Value,
) -> Result<domain::ProbeEvent, DecodeError> {
    let dto: ProbeEventV1 = stored_dto(event_type, schema_version, payload)?;
    Ok(match dto {
        ProbeEventV1::ProbeRunPassed(r) => domain::ProbeEvent::RunPassed(r.into()),
        ProbeEventV1::ProbeRunFailed(r) => domain::ProbeEvent::RunFailed(r.into()),
        ProbeEventV1::MarketplaceProbeSeen {
            at_ms,
            license,
            activity,
        } => domain::ProbeEvent::MarketplaceProbeSeen(domain::MarketplaceProbeSeen {
            at: domain::Timestamp::from_millis(at_ms),
            license,
            activity,
        }),
    })
}
