//! The outbound worker: takes due jobs (`FOR UPDATE SKIP LOCKED`), calls the marketplace, and
//! sends each outcome to the processor as a command, so that it lands in the event store through
//! the one writer. The job is then due again after a backoff; the view follower deletes it or
//! moves it on once the outcome is applied.

use std::time::Duration;

use koogallery::classify::{Disposition, classify};
use koogallery::client::{Attempt, Client, Reply};
use koogallery::openapi::{
    ActivateData, ActivateRequest, HeartbeatData, HeartbeatInfo, HeartbeatRequest,
};
use licensing_bus::Bus;
use licensing_messages::{
    ActivationResultV1, CommandBody, CommandEnvelope, HeartbeatResultV1, OutboundAttemptV1,
};
use licensing_runtime::CancellationToken;
use licensing_runtime::trace::{Span, SpanKind};
use licensing_store::Store;

use crate::metrics::Metrics;

/// What a job calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    /// The activate API.
    Activate,
    /// The heartbeat API.
    Heartbeat,
}

impl JobKind {
    /// The `kind` column's value, also the metrics' label.
    fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Heartbeat => "heartbeat",
        }
    }

    fn from_column(kind: &str) -> Option<Self> {
        match kind {
            "activate" => Some(Self::Activate),
            "heartbeat" => Some(Self::Heartbeat),
            _ => None,
        }
    }
}

/// One due job.
#[derive(Debug, Clone)]
struct Job {
    license: String,
    kind: JobKind,
    day: i64,
    attempt: i32,
    account: Option<String>,
    real_effect_time: Option<String>,
    tries: i32,
    ip: Option<String>,
    claim_since: Option<time::OffsetDateTime>,
    correlation_id: Option<uuid::Uuid>,
    trace_parent: Option<String>,
}

/// The longest wait between activate calls while the buyer has not claimed the code.
const AWAITING_CLAIM_CAP: Duration = Duration::from_secs(3600);

/// The worker.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// The store holding the jobs.
    pub(crate) store: Store,
    /// The marketplace client.
    pub(crate) client: Client,
    /// `thirdPartyAccount` when the job names none.
    pub(crate) default_account: String,
    /// First retry delay.
    pub(crate) retry_base: Duration,
    /// Longest retry delay.
    pub(crate) retry_cap: Duration,
    /// Calls per second at most.
    pub(crate) rate: u32,
    /// How long an activation may wait for the buyer's claim before it is parked.
    pub(crate) claim_days: u32,
    /// Metrics.
    pub(crate) metrics: Metrics,
}

/// The delay before a job is tried again: exponential from `base` with jitter, capped at `cap`
/// (at an hour while the buyer has not claimed the code); the cap itself for refused credentials
/// and for outcomes that need nothing more (in case the outcome command is lost).
fn backoff(
    base: Duration,
    cap: Duration,
    tries: i32,
    disposition: Option<Disposition>,
) -> Duration {
    let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0; // 0..1
    let exponential = |cap: Duration| {
        base.saturating_mul(1u32 << tries.clamp(0, 16) as u32)
            .min(cap)
            .mul_f64(0.5 + jitter / 2.0)
    };
    match disposition {
        Some(Disposition::Credentials) => cap,
        Some(Disposition::AwaitingClaim) => exponential(AWAITING_CLAIM_CAP),
        Some(
            Disposition::Success
            | Disposition::AlreadyActivated
            | Disposition::Permanent
            | Disposition::Rejected,
        ) => cap.max(base),
        _ => exponential(cap),
    }
}

fn failure_code<T>(reply: &Reply<T>) -> (String, String, bool) {
    (
        reply.code(),
        reply.message(),
        reply.disposition.is_retryable(),
    )
}

impl Outbound {
    /// Runs until `cancel`: takes due jobs, one call at a time, at most `rate` per second.
    pub(crate) async fn run(
        &self,
        bus: &Bus,
        cancel: &CancellationToken,
    ) -> Result<(), licensing_bus::BusError> {
        let pause = Duration::from_secs_f64(1.0 / f64::from(self.rate.max(1)));
        while !cancel.is_cancelled() {
            let job = match self.take().await {
                Ok(job) => job,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read outbound jobs");
                    None
                }
            };
            let Some(job) = job else {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                continue;
            };
            self.perform(bus, job).await?;
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// Claims the most overdue job: it is not due again for a minute, whoever holds it.
    async fn take(&self) -> Result<Option<Job>, licensing_store::StoreError> {
        let mut client = self.store.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT license, kind, day, attempt, account, real_effect_time, tries, ip, claim_since, correlation_id, trace_parent FROM outbound_jobs
                  WHERE due_at <= now() ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let job = Job {
            license: row.get(0),
            kind: JobKind::from_column(row.get(1)).ok_or_else(|| {
                licensing_store::StoreError::Decode(format!(
                    "outbound job of unknown kind {:?}",
                    row.get::<_, String>(1)
                ))
            })?,
            day: row.get(2),
            attempt: row.get(3),
            account: row.get(4),
            real_effect_time: row.get(5),
            tries: row.get(6),
            ip: row.get(7),
            claim_since: row.get(8),
            correlation_id: row.get(9),
            trace_parent: row.get(10),
        };
        tx.execute(
            "UPDATE outbound_jobs SET due_at = now() + interval '60 seconds' WHERE license = $1 AND kind = $2",
            &[&job.license, &job.kind.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    async fn perform(&self, bus: &Bus, job: Job) -> Result<(), licensing_bus::BusError> {
        // The call continues the trace of the work that made it owed; its outcome, that of the call.
        // The marketplace is not sent our trace context: it is ours alone (ADR 0017).
        let mut span = Span::start(
            "call marketplace",
            SpanKind::Client,
            job.trace_parent.as_deref(),
        );
        span.set("koogallery.api", job.kind.as_str());
        span.set("license", &job.license);
        let attempts;
        let (mut command, disposition) = if job.kind == JobKind::Activate {
            let request = ActivateRequest {
                license: job.license.clone(),
                real_effect_time: job.real_effect_time.clone(),
            };
            let call = self.client.activate_recorded(&request).await;
            attempts = evidence_of(&call.attempts);
            let outcome = call.outcome;
            let disposition = outcome
                .as_ref()
                .map_or(Disposition::Retry, |r| r.disposition);
            let mut result = activation_result(outcome);
            // Not claimed for too long: parked until the seller asks again (no more calls).
            let claim_limit = time::Duration::days(i64::from(self.claim_days));
            if let ActivationResultV1::AwaitingClaim { code, message } = &result {
                if job
                    .claim_since
                    .is_some_and(|since| time::OffsetDateTime::now_utc() - since > claim_limit)
                {
                    result = ActivationResultV1::Failed {
                        code: code.clone(),
                        message: format!(
                            "not claimed by the buyer within {} days ({message}): parked until activation is requested again",
                            self.claim_days
                        ),
                        retryable: false,
                    };
                }
            }
            (
                CommandBody::RecordActivation {
                    license: job.license.clone(),
                    attempt: job.attempt as u32,
                    result,
                    attempts: Vec::new(),
                },
                disposition,
            )
        } else {
            let account = job
                .account
                .clone()
                .unwrap_or_else(|| self.default_account.clone());
            let request = HeartbeatRequest {
                license: job.license.clone(),
                heartbeat_info: HeartbeatInfo {
                    third_party_account: account,
                    ip: job.ip.clone(),
                },
            };
            let call = self.client.heartbeat_recorded(&request).await;
            attempts = evidence_of(&call.attempts);
            let outcome = call.outcome;
            let disposition = outcome
                .as_ref()
                .map_or(Disposition::Retry, |r| r.disposition);
            (
                CommandBody::RecordHeartbeat {
                    license: job.license.clone(),
                    day: job.day,
                    attempt: job.attempt as u32,
                    result: heartbeat_result(outcome),
                    attempts: Vec::new(),
                },
                disposition,
            )
        };
        // The attempts travel with the outcome and are stored with its events (D20).
        if let CommandBody::RecordActivation { attempts: a, .. }
        | CommandBody::RecordHeartbeat { attempts: a, .. } = &mut command
        {
            *a = attempts;
        }
        self.metrics
            .calls
            .get_or_create(&vec![
                ("kind", job.kind.as_str().to_owned()),
                ("disposition", disposition.as_str().to_owned()),
            ])
            .inc();
        let failed_code = match &command {
            CommandBody::RecordActivation {
                result: ActivationResultV1::Failed { code, .. },
                ..
            }
            | CommandBody::RecordActivation {
                result: ActivationResultV1::AwaitingClaim { code, .. },
                ..
            }
            | CommandBody::RecordHeartbeat {
                result: HeartbeatResultV1::Failed { code, .. },
                ..
            } => Some(code.clone()),
            _ => None,
        };
        if let Some(code) = failed_code {
            self.metrics
                .failures
                .get_or_create(&vec![
                    ("kind", job.kind.as_str().to_owned()),
                    ("code", code),
                ])
                .inc();
        }
        if disposition == Disposition::Credentials {
            tracing::error!(license = %job.license, "the marketplace refused our AK/SK: check LICENSING_KOOGALLERY_AK and LICENSING_KOOGALLERY_SK");
        }
        let mut envelope = CommandEnvelope::new(
            "outbound-worker",
            koogallery::market_time::unix_millis(time::OffsetDateTime::now_utc()),
            command,
        );
        if let Some(correlation_id) = job.correlation_id {
            envelope.correlation_id = correlation_id;
        }
        span.set("koogallery.disposition", disposition.as_str());
        envelope.trace_parent = span.traceparent();
        crate::commands::send_command(bus, &envelope).await?;
        let delay = backoff(
            self.retry_base,
            self.retry_cap,
            job.tries,
            Some(disposition),
        );
        let updated = async {
            let client = self.store.client().await?;
            client
                .execute(
                    "UPDATE outbound_jobs SET tries = tries + 1, due_at = now() + make_interval(secs => $3), last_error = $4
                      WHERE license = $1 AND kind = $2",
                    &[&job.license, &job.kind.as_str(), &delay.as_secs_f64(), &Some(disposition.as_str())],
                )
                .await?;
            Ok::<_, licensing_store::StoreError>(())
        };
        if let Err(e) = updated.await {
            tracing::warn!(error = %e, "cannot reschedule an outbound job; it comes back after its lease");
        }
        tracing::info!(license = %job.license, kind = job.kind.as_str(), attempt = job.attempt, disposition = disposition.as_str(), "marketplace called");
        Ok(())
    }
}

/// Each attempt of a call as evidence, with what its own answer meant.
fn evidence_of(attempts: &[Attempt]) -> Vec<OutboundAttemptV1> {
    attempts
        .iter()
        .map(|a| {
            let outcome = match (&a.error, a.status) {
                (Some(error), _) => error.kind.to_owned(),
                (None, Some(status)) => {
                    let code = a
                        .response_body
                        .as_deref()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                        .and_then(|v| v.get("error_code")?.as_str().map(str::to_owned));
                    classify(status, code.as_deref()).as_str().to_owned()
                }
                (None, None) => "transport".to_owned(),
            };
            OutboundAttemptV1 {
                exchange_id: uuid::Uuid::new_v4(),
                sent_at_ms: koogallery::market_time::unix_millis(a.sent_at),
                method: a.method.to_owned(),
                url: a.url.clone(),
                host: if a.host_index == 0 {
                    "primary"
                } else {
                    "fallback"
                }
                .to_owned(),
                request_headers: a.request_headers.clone(),
                request_body: a.request_body.clone(),
                latency_ms: u64::try_from(a.latency.as_millis()).unwrap_or(u64::MAX),
                status: a.status,
                response_headers: a.response_headers.clone(),
                response_body: a.response_body.clone(),
                error_kind: a.error.as_ref().map(|e| e.kind.to_owned()),
                error: a.error.as_ref().map(|e| e.message.clone()),
                outcome,
            }
        })
        .collect()
}

fn activation_result(
    outcome: Result<Reply<ActivateData>, koogallery::client::CallError>,
) -> ActivationResultV1 {
    match outcome {
        Err(e) => ActivationResultV1::Failed {
            code: e.kind.to_owned(),
            message: e.message,
            retryable: true,
        },
        Ok(reply) => match reply.disposition {
            Disposition::Success => match reply.body.as_ref().and_then(|b| b.data.as_ref()) {
                Some(data) => ActivationResultV1::Activated {
                    license_code_info: data.license_code_info.raw.clone(),
                },
                None => ActivationResultV1::Activated {
                    license_code_info: String::new(),
                },
            },
            Disposition::AlreadyActivated => ActivationResultV1::AlreadyActivated,
            Disposition::AwaitingClaim => ActivationResultV1::AwaitingClaim {
                code: reply.code(),
                message: reply.message(),
            },
            _ => {
                let (code, message, retryable) = failure_code(&reply);
                ActivationResultV1::Failed {
                    code,
                    message,
                    retryable,
                }
            }
        },
    }
}

fn heartbeat_result(
    outcome: Result<Reply<HeartbeatData>, koogallery::client::CallError>,
) -> HeartbeatResultV1 {
    match outcome {
        Err(e) => HeartbeatResultV1::Failed {
            code: e.kind.to_owned(),
            message: e.message,
            retryable: true,
        },
        Ok(reply) => match (
            reply.disposition,
            reply.body.as_ref().and_then(|b| b.data.as_ref()),
        ) {
            (Disposition::Success, Some(data)) => HeartbeatResultV1::Acknowledged {
                status: data.status.clone().unwrap_or_default(),
                expire_time: data.expire_time.clone(),
            },
            // `92020000` is a success even without (or with an unreadable) `data`: the raw answer
            // is kept by the client; there is just no status or expiry to compare.
            (Disposition::Success, None) => HeartbeatResultV1::Acknowledged {
                status: String::new(),
                expire_time: None,
            },
            _ => {
                let (code, message, retryable) = failure_code(&reply);
                HeartbeatResultV1::Failed {
                    code,
                    message,
                    retryable,
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unclaimed_code_backs_off_to_hourly_other_failures_to_the_cap() {
        let (base, cap) = (Duration::from_secs(2), Duration::from_secs(600));
        let waiting = backoff(base, cap, 16, Some(Disposition::AwaitingClaim));
        assert!(
            waiting > cap && waiting <= AWAITING_CLAIM_CAP,
            "{waiting:?}"
        );
        let retry = backoff(base, cap, 16, Some(Disposition::Retry));
        assert!(retry <= cap && retry >= cap / 2, "{retry:?}");
        let first = backoff(base, cap, 0, Some(Disposition::AwaitingClaim));
        assert!(first <= base, "{first:?}");
    }

    #[test]
    fn a_heartbeat_success_without_data_is_acknowledged() {
        let base = url::Url::parse("https://mkt.example.test").unwrap();
        for raw in [
            r#"{"error_code":"92020000","error_msg":"success"}"#,
            r#"{"error_code":"92020000","error_msg":"success","data":"unexpected"}"#,
        ] {
            let reply = Reply::<HeartbeatData>::decode(base.clone(), 200, raw.to_owned());
            assert_eq!(
                heartbeat_result(Ok(reply)),
                HeartbeatResultV1::Acknowledged {
                    status: String::new(),
                    expire_time: None,
                },
                "{raw}"
            );
        }
    }
}
