//! Given a license in some state, when a command arrives, then these events (or this rejection).
//!
//! The matrix at the top covers every command in every state; the tests below it pin the rules of
//! `decisions.md` one by one.

mod support;

use licensing_domain::*;
use support::*;

/// The states a license can be in, each built from the commands that lead there.
fn states() -> Vec<(&'static str, Vec<Command>)> {
    let pending = vec![request_activation()];
    let active = vec![
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
    ];
    let with = |base: &Vec<Command>, more: Command| {
        let mut all = base.clone();
        all.push(more);
        all
    };
    vec![
        ("unregistered", vec![]),
        ("registered", vec![unfreeze()]),
        ("pending", pending.clone()),
        (
            "awaiting",
            with(
                &pending,
                activation(
                    1,
                    ActivationResult::AwaitingClaim {
                        code: "92020004".into(),
                        message: "can not active before user received.".into(),
                    },
                ),
            ),
        ),
        (
            "failed",
            with(
                &pending,
                activation(1, ActivationResult::Failed(failure(false))),
            ),
        ),
        ("active", active.clone()),
        ("frozen", with(&active, freeze())),
        ("released", with(&active, release(None))),
    ]
}

/// One row per command: the expected outcome in each state, in the order of [`states`].
type Row = (&'static str, fn() -> Command, [&'static str; 8]);

fn matrix() -> Vec<Row> {
    const IGN: &str = "callback_ignored";
    vec![
        (
            "renew",
            || renew("CS2", "20250101000000"),
            [
                "registered renewed",
                "renewed",
                "renewed",
                "renewed",
                "renewed",
                "renewed",
                "renewed",
                IGN,
            ],
        ),
        (
            "cancel renewal",
            || {
                callback(refresh(
                    "CS3",
                    Scene::UnsubscribeRenewalPeriod,
                    "20240101000000",
                ))
            },
            [
                "registered renewal_cancelled",
                "renewal_cancelled",
                "renewal_cancelled",
                "renewal_cancelled",
                "renewal_cancelled",
                "renewal_cancelled",
                "renewal_cancelled",
                IGN,
            ],
        ),
        (
            "unknown scene",
            || {
                callback(refresh(
                    "CS4",
                    Scene::Other("TRIAL_TO_FORMAL".into()),
                    "20250101000000",
                ))
            },
            [
                "registered renewed",
                "renewed",
                "renewed",
                "renewed",
                "renewed",
                "renewed",
                "renewed",
                IGN,
            ],
        ),
        (
            "freeze",
            freeze,
            [
                "registered frozen access_changed",
                "frozen access_changed",
                "frozen access_changed",
                "frozen access_changed",
                "frozen access_changed",
                "frozen access_changed",
                "",
                IGN,
            ],
        ),
        (
            "unfreeze",
            unfreeze,
            [
                "registered",
                "",
                "",
                "",
                "",
                "",
                "unfrozen access_changed",
                IGN,
            ],
        ),
        (
            "release",
            || release(Some("CS9")),
            [
                "registered released access_changed",
                "released access_changed",
                "released access_changed",
                "released access_changed",
                "released access_changed",
                "released access_changed",
                "released access_changed",
                IGN,
            ],
        ),
        (
            "request activation",
            request_activation,
            [
                "registered activation_requested",
                "activation_requested",
                "",
                "activation_requested",
                "activation_requested",
                "",
                "",
                "!Released",
            ],
        ),
        (
            "activated",
            || activation(2, ActivationResult::Activated(info())),
            [
                "!UnknownLicense",
                "",
                "activated access_changed",
                "activated access_changed",
                "",
                "",
                "",
                "",
            ],
        ),
        (
            "already activated",
            || activation(2, ActivationResult::AlreadyActivated),
            [
                "!UnknownLicense",
                "",
                "activated access_changed",
                "activated access_changed",
                "",
                "",
                "",
                "",
            ],
        ),
        (
            "awaiting claim",
            || {
                activation(
                    2,
                    ActivationResult::AwaitingClaim {
                        code: "92020004".into(),
                        message: "x".into(),
                    },
                )
            },
            [
                "!UnknownLicense",
                "",
                "activation_awaiting_claim",
                // Still not claimed: counted in the job, not recorded again.
                "",
                "",
                "",
                "",
                "",
            ],
        ),
        (
            "activation failed",
            || activation(2, ActivationResult::Failed(failure(true))),
            [
                "!UnknownLicense",
                "",
                "activation_failed",
                "activation_failed",
                "",
                "",
                "",
                "",
            ],
        ),
        (
            "usage",
            || usage(0),
            [
                "!UnknownLicense",
                "!NotActivated",
                "!NotActivated",
                "!NotActivated",
                "!NotActivated",
                "usage_recorded",
                "!Frozen",
                "!Released",
            ],
        ),
        (
            "heartbeat ALIVE",
            || heartbeat(0, 1, ack(MarketStatus::Alive)),
            [
                "!UnknownLicense",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged drift_detected",
                "heartbeat_acknowledged drift_detected",
            ],
        ),
        (
            "heartbeat EXPIRED",
            || heartbeat(0, 1, ack(MarketStatus::Expired)),
            [
                "!UnknownLicense",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged drift_detected",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged drift_detected",
            ],
        ),
        (
            "heartbeat RELEASED",
            || heartbeat(0, 1, ack(MarketStatus::Released)),
            [
                "!UnknownLicense",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged drift_detected",
                "heartbeat_acknowledged drift_detected",
                "heartbeat_acknowledged",
            ],
        ),
        (
            "heartbeat unknown status",
            || heartbeat(0, 1, ack(MarketStatus::Other("SUSPENDED".into()))),
            [
                "!UnknownLicense",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
                "heartbeat_acknowledged",
            ],
        ),
        (
            "heartbeat failed",
            || heartbeat(0, 1, HeartbeatResult::Failed(failure(true))),
            [
                "!UnknownLicense",
                "heartbeat_failed",
                "heartbeat_failed",
                "heartbeat_failed",
                "heartbeat_failed",
                "heartbeat_failed",
                "heartbeat_failed",
                "heartbeat_failed",
            ],
        ),
    ]
}

fn render(outcome: Result<Vec<&'static str>, Rejection>) -> String {
    match outcome {
        Ok(types) => types.join(" "),
        Err(rejection) => format!("!{rejection:?}"),
    }
}

#[test]
fn every_command_in_every_state() {
    let states = states();
    let mut mismatches = Vec::new();
    for (command_name, make, expected) in matrix() {
        for ((state_name, setup), expected) in states.iter().zip(expected) {
            let (state, _) = given(setup.clone());
            let actual = render(when(&state, make()));
            if actual != expected {
                mismatches.push(format!(
                    "given {state_name}, when {command_name}: expected [{expected}], got [{actual}]"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

#[test]
fn the_states_are_what_their_names_say() {
    let expected = [
        Status::Unregistered,
        Status::Registered,
        Status::ActivationPending,
        Status::AwaitingClaim,
        Status::ActivationFailed,
        Status::Active,
        Status::Frozen,
        Status::Released,
    ];
    for ((name, setup), status) in states().into_iter().zip(expected) {
        assert_eq!(given(setup).0.status(), status, "state {name}");
    }
}

#[test]
fn strict_mode_rejects_callbacks_for_unknown_licenses() {
    let state = License::default();
    for kind in [
        refresh("CS2", Scene::Renewal, "20250101000000"),
        CallbackKind::ChangeStatus(StatusChange::Freeze),
        CallbackKind::Release(Release {
            order_id: None,
            order_line_id: None,
        }),
    ] {
        assert_eq!(
            when(&state, strict(kind.clone())),
            Err(Rejection::UnknownLicense)
        );
        // Known licenses are served the same in both modes.
        let (known, _) = given([request_activation()]);
        assert!(when(&known, strict(kind)).is_ok());
    }
}

#[test]
fn refresh_sets_the_absolute_expiry_even_when_earlier() {
    let (state, _) = given([request_activation(), renew("CS2", "20260101000000")]);
    assert_eq!(
        state.expire.as_ref().map(|e| e.raw.as_str()),
        Some("20260101000000")
    );
    let (state, _) = given([
        request_activation(),
        renew("CS2", "20260101000000"),
        callback(refresh(
            "CS3",
            Scene::UnsubscribeRenewalPeriod,
            "20250101000000",
        )),
    ]);
    assert_eq!(
        state.expire.as_ref().map(|e| e.raw.as_str()),
        Some("20250101000000")
    );
}

#[test]
fn a_late_retry_of_an_older_renewal_changes_nothing() {
    let (state, _) = given([
        request_activation(),
        renew("CS2", "20260101000000"),
        renew("CS3", "20270101000000"),
    ]);
    assert_eq!(when(&state, renew("CS2", "20260101000000")), Ok(vec![]));
    assert_eq!(
        state.expire.as_ref().map(|e| e.raw.as_str()),
        Some("20270101000000")
    );
}

#[test]
fn a_genuine_second_freeze_after_an_unfreeze_freezes_again() {
    let (state, _) = given([request_activation(), freeze(), unfreeze()]);
    assert_eq!(when(&state, freeze()), Ok(vec!["frozen", "access_changed"]));
}

#[test]
fn released_ignores_each_later_callback_once() {
    let (state, _) = given([request_activation(), release(None), freeze()]);
    assert_eq!(state.status(), Status::Released);
    assert_eq!(when(&state, freeze()), Ok(vec![]));
    assert_eq!(when(&state, unfreeze()), Ok(vec!["callback_ignored"]));
}

#[test]
fn activation_takes_expiry_order_and_product_from_license_code_info() {
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
    ]);
    assert_eq!(state.status(), Status::Active);
    assert_eq!(state.order_id.as_deref(), Some("CS123"));
    assert_eq!(state.product_id.as_deref(), Some("OFFI01"));
    assert_eq!(
        state.expire.as_ref().map(|e| e.raw.as_str()),
        Some("20240726121646")
    );
    assert_eq!(state.heartbeat_due(day(0)), None);
}

#[test]
fn awaiting_claim_then_success_after_the_buyer_claims() {
    let (state, _) = given([
        request_activation(),
        activation(
            1,
            ActivationResult::AwaitingClaim {
                code: "92020004".into(),
                message: "x".into(),
            },
        ),
    ]);
    assert!(state.activation_due());
    let (state, _) = given([
        request_activation(),
        activation(
            1,
            ActivationResult::AwaitingClaim {
                code: "92020004".into(),
                message: "x".into(),
            },
        ),
        activation(2, ActivationResult::Activated(info())),
    ]);
    assert_eq!(state.status(), Status::Active);
    assert!(!state.activation_due());
}

#[test]
fn retryable_failures_keep_the_activation_owed_and_permanent_ones_end_it() {
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Failed(failure(true))),
    ]);
    assert_eq!(state.status(), Status::ActivationPending);
    assert!(state.activation_due());
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Failed(failure(false))),
    ]);
    assert_eq!(state.status(), Status::ActivationFailed);
    assert!(!state.activation_due());
}

#[test]
fn a_repeated_or_older_attempt_is_not_recorded_twice() {
    let (state, _) = given([
        request_activation(),
        activation(2, ActivationResult::Failed(failure(true))),
    ]);
    assert_eq!(
        when(
            &state,
            activation(2, ActivationResult::Failed(failure(true)))
        ),
        Ok(vec![])
    );
    assert_eq!(
        when(&state, activation(1, ActivationResult::Activated(info()))),
        Ok(vec![])
    );
    assert_eq!(
        when(&state, activation(3, ActivationResult::Activated(info()))),
        Ok(vec!["activated", "access_changed"])
    );
}

#[test]
fn already_activated_is_confirmed_by_a_heartbeat() {
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::AlreadyActivated),
    ]);
    assert_eq!(state.status(), Status::Active);
    assert_eq!(state.heartbeat_due(day(3)), Some(day(3)));
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::AlreadyActivated),
        heartbeat(3, 1, ack(MarketStatus::Alive)),
    ]);
    assert!(!state.needs_confirmation);
    assert_eq!(state.heartbeat_due(day(3)), None);
}

#[test]
fn one_heartbeat_per_day_of_use() {
    let active = [
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
    ];
    let (state, _) = given(active.clone().into_iter().chain([usage(0)]));
    assert_eq!(state.heartbeat_due(day(0)), Some(day(0)));
    assert_eq!(
        when(&state, usage(0)),
        Ok(vec![]),
        "second use the same day"
    );

    let (state, _) = given(
        active
            .clone()
            .into_iter()
            .chain([usage(0), heartbeat(0, 1, ack(MarketStatus::Alive))]),
    );
    assert_eq!(state.heartbeat_due(day(0)), None);
    assert_eq!(
        when(&state, usage(0)),
        Ok(vec![]),
        "use after the day's heartbeat"
    );
    assert_eq!(
        when(&state, usage(1)),
        Ok(vec!["usage_recorded"]),
        "the next day"
    );
    assert_eq!(
        when(&state, heartbeat(0, 2, ack(MarketStatus::Alive))),
        Ok(vec![]),
        "day already acknowledged"
    );

    let (state, _) = given(active.into_iter().chain([
        usage(0),
        heartbeat(0, 1, ack(MarketStatus::Alive)),
        usage(1),
    ]));
    assert_eq!(state.heartbeat_due(day(1)), Some(day(1)));
}

#[test]
fn a_heartbeat_failure_keeps_the_heartbeat_owed() {
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
        usage(0),
        heartbeat(0, 1, HeartbeatResult::Failed(failure(true))),
    ]);
    assert_eq!(state.heartbeat_due(day(0)), Some(day(0)));
    assert_eq!(
        when(
            &state,
            heartbeat(0, 1, HeartbeatResult::Failed(failure(true)))
        ),
        Ok(vec![])
    );
}

#[test]
fn heartbeat_expiry_is_authoritative_and_consistent_status_clears_drift() {
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
        usage(0),
        heartbeat(0, 1, ack(MarketStatus::Released)),
    ]);
    let drift = state.drift.clone().expect("drift recorded");
    assert_eq!(
        drift.status,
        Some((LocalStatus::Active, MarketStatus::Released))
    );

    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
        usage(0),
        heartbeat(0, 1, ack(MarketStatus::Released)),
        usage(1),
        heartbeat(
            1,
            1,
            HeartbeatResult::Acknowledged {
                status: MarketStatus::Alive,
                expire: Some(market("20300101000000", 1_893_427_200_000)),
            },
        ),
    ]);
    assert_eq!(state.drift, None);
    assert_eq!(state.market_status, Some(MarketStatus::Alive));
    assert_eq!(
        state.expire.as_ref().map(|e| e.raw.as_str()),
        Some("20300101000000")
    );
}

#[test]
fn frozen_keeps_its_first_instant_and_unfreeze_clears_it() {
    let (state, _) = given([request_activation(), freeze()]);
    assert_eq!(state.frozen_since, Some(at(1)));
    assert_eq!(
        state.expected_release(DEFAULT_FREEZE_PERIOD_MS),
        Some(at(1).plus_millis(15 * 86_400_000))
    );
    let (state, _) = given([request_activation(), freeze(), unfreeze()]);
    assert_eq!(state.frozen_since, None);
    assert_eq!(state.expected_release(DEFAULT_FREEZE_PERIOD_MS), None);
    assert_eq!(state.status(), Status::ActivationPending);
}

#[test]
fn test_traffic_never_touches_a_real_license() {
    let (real, _) = given([request_activation()]);
    let mut sandboxed = freeze();
    sandboxed.sandbox = true;
    assert_eq!(
        when(&real, sandboxed.clone()),
        Err(Rejection::SandboxMismatch)
    );

    let (sandbox, events) = given([sandboxed]);
    assert!(sandbox.sandbox);
    assert!(matches!(&events[0], Event::Registered(r) if r.sandbox));
    assert_eq!(when(&sandbox, freeze()), Err(Rejection::SandboxMismatch));
}

#[test]
fn a_command_for_another_license_is_refused() {
    let (state, _) = given([request_activation()]);
    let mut other = freeze();
    other.license = LicenseCode::parse("PL0000000002").unwrap();
    assert_eq!(when(&state, other), Err(Rejection::WrongLicense));
}

#[test]
fn events_carry_the_command_instant_and_the_version_counts_them() {
    let (state, events) = given([request_activation(), freeze()]);
    assert_eq!(
        state.version, 4,
        "registered, requested, frozen, access_changed"
    );
    assert!(events.iter().all(|e| e.at() == at(1)));
    assert_eq!(state.updated_at, Some(at(1)));
}

fn failure_with(code: &str, retryable: bool) -> licensing_domain::CallFailure {
    licensing_domain::CallFailure {
        code: code.into(),
        ..failure(retryable)
    }
}

#[test]
fn a_permanent_heartbeat_failure_ends_that_day_and_the_next_day_is_owed_again() {
    let (state, events) = given([
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
        usage(0),
        heartbeat(
            0,
            1,
            HeartbeatResult::Failed(failure_with("92020011", false)),
        ),
    ]);
    assert_eq!(events.last().unwrap().event_type(), "heartbeat_failed");
    assert_eq!(state.heartbeat_due(day(0)), None, "no more calls that day");
    assert_eq!(
        when(
            &state,
            heartbeat(
                0,
                2,
                HeartbeatResult::Failed(failure_with("92020011", false))
            )
        ),
        Ok(vec![]),
        "a late outcome of the same day adds nothing"
    );
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
        usage(0),
        heartbeat(
            0,
            1,
            HeartbeatResult::Failed(failure_with("92020011", false)),
        ),
        usage(1),
    ]);
    assert_eq!(state.heartbeat_due(day(1)), Some(day(1)));
}

#[test]
fn repeated_identical_failures_add_no_event_a_different_one_does() {
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
        usage(0),
        heartbeat(
            0,
            1,
            HeartbeatResult::Failed(failure_with("92020001", true)),
        ),
    ]);
    assert_eq!(
        when(
            &state,
            heartbeat(
                0,
                2,
                HeartbeatResult::Failed(failure_with("92020001", true))
            )
        ),
        Ok(vec![]),
        "the same failure again"
    );
    assert_eq!(
        when(
            &state,
            heartbeat(0, 2, HeartbeatResult::Failed(failure_with("timeout", true)))
        ),
        Ok(vec!["heartbeat_failed"]),
        "a different failure"
    );
    assert_eq!(
        when(&state, heartbeat(0, 2, ack(MarketStatus::Alive))),
        Ok(vec!["heartbeat_acknowledged"]),
    );
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Failed(failure_with("92020001", true))),
    ]);
    assert_eq!(
        when(
            &state,
            activation(2, ActivationResult::Failed(failure_with("92020001", true)))
        ),
        Ok(vec![])
    );
}

fn resolve(accept: DriftSide) -> Command {
    command(Action::ResolveDrift {
        accept,
        note: "checked in the seller console".to_owned(),
        actor: "ops".to_owned(),
    })
}

#[test]
fn an_activation_answer_that_disagrees_with_a_renewal_is_drift_and_an_operator_settles_it() {
    // A renewal told us the expiry; the activation's license_code_info says another one.
    let history = [
        renew("CS9", "20300101000000"),
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
    ];
    let (state, events) = given(history.clone());
    let types: Vec<&str> = events.iter().map(Event::event_type).collect();
    assert_eq!(
        types,
        [
            "registered",
            "renewed",
            "activation_requested",
            "activated",
            "drift_detected",
            "access_changed"
        ]
    );
    let drift = state.drift.clone().expect("drift open");
    let (ours, theirs) = drift.expire.clone().expect("the expiry disagrees");
    assert_eq!(ours.map(|t| t.raw), Some("20300101000000".to_owned()));
    assert_eq!(theirs.raw, "20240726121646");
    assert_eq!(drift.status, None, "ALIVE agrees with a fresh activation");

    // Keeping ours restores the renewal's expiry; keeping the marketplace's keeps theirs.
    let kept_ours = evolve(
        state.clone(),
        &decide(&state, resolve(DriftSide::Ours)).unwrap()[0],
    );
    assert_eq!(kept_ours.drift, None);
    assert_eq!(kept_ours.expire.unwrap().raw, "20300101000000");
    let events = decide(&state, resolve(DriftSide::Marketplace)).unwrap();
    let Event::DriftResolved(resolved) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (resolved.actor.as_str(), resolved.accepted),
        ("ops", DriftSide::Marketplace)
    );
    let kept_theirs = evolve(state, &events[0]);
    assert_eq!(kept_theirs.expire.as_ref().unwrap().raw, "20240726121646");
    // Nothing left to resolve.
    assert_eq!(
        when(&kept_theirs, resolve(DriftSide::Ours)),
        Err(Rejection::NoDrift)
    );
}

#[test]
fn an_estimated_expiry_corrected_by_a_heartbeat_is_no_drift_but_a_released_status_is_settled_by_accepting_it()
 {
    let (state, _) = given([
        request_activation(),
        activation(1, ActivationResult::Activated(info())),
        usage(0),
        heartbeat(0, 1, ack(MarketStatus::Released)),
    ]);
    let drift = state.drift.clone().unwrap();
    assert_eq!(drift.expire, None, "{drift:?}");
    let events = decide(&state, resolve(DriftSide::Marketplace)).unwrap();
    let settled = evolve(state, &events[0]);
    assert_eq!(settled.status(), Status::Released);
}
