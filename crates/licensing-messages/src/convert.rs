//! From a command envelope to a domain command, and the callback content keys of the inbox (D9).

use koogallery::callback::{CallbackRequest, LicenseStatusChange, Scene as WireScene};
use koogallery::market_time::{parse_market_time, unix_millis};
use licensing_domain as domain;
use time::UtcOffset;

use crate::envelope::{
    ActivationResultV1, CallbackCommand, CommandBody, CommandEnvelope, HeartbeatResultV1,
};

/// The decoded `license_code_info`, raw string kept; fields that do not parse are left out.
fn license_code_info_of(raw: &str, zone: UtcOffset) -> domain::LicenseCodeInfo {
    let parsed = koogallery::openapi::EmbeddedLicenseCodeInfo::from_raw(raw)
        .parsed
        .unwrap_or_default();
    domain::LicenseCodeInfo {
        status: parsed.status.unwrap_or_default(),
        expire: parsed
            .expire_time
            .as_deref()
            .and_then(|t| market_time(t, zone, "expire_time").ok()),
        product_id: parsed.product_id,
        order_id: parsed.order_id,
        amount: parsed.amount.as_ref().and_then(serde_json::Number::as_u64),
        raw: raw.to_owned(),
    }
}

/// How commands are read: the marketplace's zone (D14), the heartbeat day's zone (D15) and the
/// unknown-license policy (D10).
#[derive(Debug, Clone, Copy)]
pub struct Interpretation {
    /// Zone of `expireTime` and friends.
    pub market_zone: UtcOffset,
    /// Zone of the heartbeat's calendar day.
    pub day_zone: UtcOffset,
    /// What a callback for an unknown license does.
    pub on_unknown: domain::UnknownLicensePolicy,
    /// The rest of what a decision depends on (the freeze period).
    pub policy: domain::Policy,
}

impl Default for Interpretation {
    fn default() -> Self {
        Self {
            market_zone: koogallery::market_time::CHINA_STANDARD_TIME,
            day_zone: koogallery::market_time::CHINA_STANDARD_TIME,
            on_unknown: domain::UnknownLicensePolicy::Register,
            policy: domain::Policy::default(),
        }
    }
}

/// Why an envelope is not a valid domain command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidCommand {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl ToString) -> InvalidCommand {
    InvalidCommand {
        field,
        reason: reason.to_string(),
    }
}

fn market_time(
    raw: &str,
    zone: UtcOffset,
    field: &'static str,
) -> Result<domain::MarketTime, InvalidCommand> {
    let at = parse_market_time(raw, zone).map_err(|e| invalid(field, e))?;
    Ok(domain::MarketTime {
        instant: domain::Timestamp::from_millis(unix_millis(at)),
        raw: raw.to_owned(),
    })
}

fn scene(wire: &WireScene) -> domain::Scene {
    domain::Scene::from_wire(wire.as_str())
}

fn callback_kind(
    request: &CallbackRequest,
    zone: UtcOffset,
) -> Result<domain::CallbackKind, InvalidCommand> {
    Ok(match request {
        CallbackRequest::Refresh(r) => domain::CallbackKind::Refresh(domain::Refresh {
            order_id: r.order_id.clone(),
            order_line_id: r.order_line_id.clone(),
            scene: scene(&r.scene),
            product_id: r.product_id.clone(),
            expire: market_time(&r.expire_time, zone, "expireTime")?,
        }),
        CallbackRequest::UpdateStatus(u) => domain::CallbackKind::ChangeStatus(match u.status {
            LicenseStatusChange::Freeze => domain::StatusChange::Freeze,
            LicenseStatusChange::Unfreeze => domain::StatusChange::Unfreeze,
        }),
        CallbackRequest::Release(r) => domain::CallbackKind::Release(domain::Release {
            order_id: r.order_id.clone(),
            order_line_id: r.order_line_id.clone(),
        }),
    })
}

impl CommandEnvelope {
    /// Whether the command is test traffic (`testFlag=1`, D11).
    pub fn sandbox(&self) -> bool {
        matches!(&self.command, CommandBody::Callback(c) if c.request.test_flag().is_test())
    }

    /// The domain command, read with `how`.
    pub fn to_domain(&self, how: &Interpretation) -> Result<domain::Command, InvalidCommand> {
        match self.command {
            CommandBody::RecordInbound(_) => {
                return Err(invalid("kind", "an evidence record decides nothing"));
            }
            CommandBody::RecordProbeRun { .. } => {
                return Err(invalid("kind", "a probe run is not about a license"));
            }
            _ => {}
        }
        let license =
            domain::LicenseCode::parse(self.license()).map_err(|e| invalid("license", e))?;
        let at = domain::Timestamp::from_millis(self.received_at_ms);
        let action = match &self.command {
            CommandBody::RecordInbound(_) | CommandBody::RecordProbeRun { .. } => {
                return Err(invalid("kind", "not a license command"));
            }
            CommandBody::Callback(c) => domain::Action::Callback(domain::Callback {
                kind: callback_kind(&c.request, how.market_zone)?,
                // Strict mode is for real licenses only: the marketplace's probes and debug
                // calls (testFlag=1) use made-up codes and must keep answering 000000.
                on_unknown: if c.request.test_flag().is_test() {
                    domain::UnknownLicensePolicy::Register
                } else {
                    how.on_unknown
                },
            }),
            CommandBody::RequestActivation {
                real_effect_time, ..
            } => domain::Action::RequestActivation {
                real_effect_time: real_effect_time
                    .as_deref()
                    .map(|raw| {
                        market_time(raw, UtcOffset::UTC, "real_effect_time").map(|t| t.instant)
                    })
                    .transpose()?,
            },
            CommandBody::RecordActivation {
                attempt, result, ..
            } => domain::Action::RecordActivation(domain::ActivationOutcome {
                attempt: *attempt,
                result: match result {
                    ActivationResultV1::Activated { license_code_info } => {
                        domain::ActivationResult::Activated(license_code_info_of(
                            license_code_info,
                            how.market_zone,
                        ))
                    }
                    ActivationResultV1::AlreadyActivated => {
                        domain::ActivationResult::AlreadyActivated
                    }
                    ActivationResultV1::AwaitingClaim { code, message } => {
                        domain::ActivationResult::AwaitingClaim {
                            code: code.clone(),
                            message: message.clone(),
                        }
                    }
                    ActivationResultV1::Failed {
                        code,
                        message,
                        retryable,
                    } => domain::ActivationResult::Failed(domain::CallFailure {
                        code: code.clone(),
                        message: message.clone(),
                        retryable: *retryable,
                    }),
                },
            }),
            CommandBody::RecordHeartbeat {
                day,
                attempt,
                result,
                ..
            } => domain::Action::RecordHeartbeat(domain::HeartbeatOutcome {
                day: domain::Day::from_number(*day),
                attempt: *attempt,
                result: match result {
                    HeartbeatResultV1::Acknowledged {
                        status,
                        expire_time,
                    } => domain::HeartbeatResult::Acknowledged {
                        status: domain::MarketStatus::from_wire(status),
                        expire: expire_time
                            .as_deref()
                            .and_then(|raw| market_time(raw, how.market_zone, "expire_time").ok()),
                    },
                    HeartbeatResultV1::Failed {
                        code,
                        message,
                        retryable,
                    } => domain::HeartbeatResult::Failed(domain::CallFailure {
                        code: code.clone(),
                        message: message.clone(),
                        retryable: *retryable,
                    }),
                },
            }),
            CommandBody::ResolveDrift { accept, note, .. } => domain::Action::ResolveDrift {
                accept: match accept.as_str() {
                    "marketplace" => domain::DriftSide::Marketplace,
                    "ours" => domain::DriftSide::Ours,
                    _ => return Err(invalid("accept", "must be marketplace or ours")),
                },
                note: note.clone(),
                actor: self.actor.clone().unwrap_or_else(|| "default".to_owned()),
            },
            CommandBody::PassTime {
                expiry_notice_days,
                freeze_notice_days,
                ..
            } => domain::Action::PassTime(domain::NoticePolicy {
                expiry_days: expiry_notice_days.clone(),
                freeze_days: freeze_notice_days.clone(),
            }),
            CommandBody::ReportUsage {
                account, ip, at_ms, ..
            } => {
                if account.is_empty() || account.chars().count() > 256 {
                    return Err(invalid("account", "must be 1 to 256 characters"));
                }
                let used_at = domain::Timestamp::from_millis(*at_ms);
                domain::Action::ReportUsage(domain::Usage {
                    day: domain::Day::containing(used_at, how.day_zone.whole_minutes().into()),
                    account: account.clone(),
                    ip: ip.clone(),
                })
            }
        };
        Ok(domain::Command {
            license,
            sandbox: self.sandbox(),
            at,
            action,
        })
    }

    /// The event stream of the command's license (`license-…` or `test-license-…`).
    pub fn stream_name(&self) -> Result<String, InvalidCommand> {
        let license =
            domain::LicenseCode::parse(self.license()).map_err(|e| invalid("license", e))?;
        Ok(license.stream_name(self.sandbox()))
    }
}

impl CallbackCommand {
    /// The inbox's replay key of this callback's signature (D5), beside its nonce in the same
    /// table: `sig:` cannot begin a nonce, whose alphabet has no colon.
    pub fn signature_key(&self) -> Option<String> {
        self.signature.as_ref().map(|s| format!("sig:{s}"))
    }

    /// The inbox key identifying this callback by content (D9), or `None` for status changes,
    /// which are idempotent by state instead (ADR 0003).
    pub fn content_key(&self) -> Option<String> {
        let sandbox = if self.request.test_flag().is_test() {
            "test"
        } else {
            "real"
        };
        let fields: Vec<&str> = match &self.request {
            CallbackRequest::Refresh(r) => vec![
                "refreshLicenseCode",
                sandbox,
                &r.license,
                &r.order_id,
                &r.order_line_id,
                r.scene.as_str(),
                &r.expire_time,
            ],
            CallbackRequest::Release(r) => vec![
                "releaseLicenseCode",
                sandbox,
                &r.license,
                r.order_id.as_deref().unwrap_or(""),
                r.order_line_id.as_deref().unwrap_or(""),
            ],
            CallbackRequest::UpdateStatus(_) => return None,
        };
        Some(fields.join("\u{1f}"))
    }
}
