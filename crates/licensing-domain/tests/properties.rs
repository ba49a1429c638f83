//! Properties over random command sequences: nothing panics, replay reproduces the state,
//! a repeated command adds nothing, released stays released.

mod support;

use licensing_domain::*;
use proptest::prelude::*;
use support::*;

fn arb_market_status() -> impl Strategy<Value = MarketStatus> {
    prop_oneof![
        Just(MarketStatus::Alive),
        Just(MarketStatus::Expired),
        Just(MarketStatus::Released),
        Just(MarketStatus::Other("SUSPENDED".into())),
    ]
}

fn arb_scene() -> impl Strategy<Value = Scene> {
    prop_oneof![
        Just(Scene::Renewal),
        Just(Scene::UnsubscribeRenewalPeriod),
        Just(Scene::Other("TRIAL_TO_FORMAL".into())),
    ]
}

/// A small alphabet so that sequences revisit the same orders, days and attempts often.
fn arb_command() -> impl Strategy<Value = Command> {
    let orders = prop_oneof![Just("CS1"), Just("CS2"), Just("CS3")];
    let expiries = prop_oneof![Just("20250101000000"), Just("20260101000000")];
    let action = prop_oneof![
        (orders.clone(), arb_scene(), expiries).prop_map(|(o, s, e)| CallbackKind::Refresh(
            match refresh(o, s, e) {
                CallbackKind::Refresh(r) => r,
                _ => unreachable!(),
            }
        )),
        Just(CallbackKind::ChangeStatus(StatusChange::Freeze)),
        Just(CallbackKind::ChangeStatus(StatusChange::Unfreeze)),
        proptest::option::of(orders).prop_map(|o| CallbackKind::Release(Release {
            order_id: o.map(str::to_owned),
            order_line_id: None,
        })),
    ];
    let callbacks = (action, any::<bool>()).prop_map(|(kind, strict_mode)| {
        Action::Callback(Callback {
            kind,
            on_unknown: if strict_mode {
                UnknownLicensePolicy::Reject
            } else {
                UnknownLicensePolicy::Register
            },
        })
    });
    let activation_result = prop_oneof![
        Just(ActivationResult::Activated(info())),
        Just(ActivationResult::AlreadyActivated),
        Just(ActivationResult::AwaitingClaim {
            code: "92020004".into(),
            message: "x".into()
        }),
        any::<bool>().prop_map(|r| ActivationResult::Failed(failure(r))),
    ];
    let heartbeat_result = prop_oneof![
        arb_market_status().prop_map(ack),
        any::<bool>().prop_map(|r| HeartbeatResult::Failed(failure(r))),
    ];
    let action = prop_oneof![
        3 => callbacks,
        1 => Just(Action::RequestActivation { real_effect_time: None }),
        2 => (1u32..5, activation_result)
            .prop_map(|(attempt, result)| Action::RecordActivation(ActivationOutcome { attempt, result })),
        2 => (0i64..3).prop_map(|d| usage(d).action),
        2 => (0i64..3, 1u32..4, heartbeat_result).prop_map(|(d, attempt, result)| heartbeat(d, attempt, result).action),
        1 => Just(Action::PassTime(NoticePolicy::default())),
    ];
    (action, 0i64..10_000, prop::bool::weighted(0.05)).prop_map(|(action, minute, sandbox)| {
        Command {
            license: code(),
            sandbox,
            at: at(minute),
            action,
        }
    })
}

/// Runs a sequence, skipping rejected commands; returns the state and every event.
fn run(commands: &[Command]) -> (License, Vec<Event>) {
    let mut state = License::default();
    let mut all = Vec::new();
    for command in commands {
        if let Ok(events) = decide(&state, command.clone()) {
            for event in &events {
                state = evolve(state, event);
            }
            all.extend(events);
        }
    }
    (state, all)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn replaying_the_events_reproduces_the_state(commands in prop::collection::vec(arb_command(), 0..40)) {
        let (state, events) = run(&commands);
        prop_assert_eq!(&License::replay(&events), &state);
        prop_assert_eq!(state.version, events.len() as u64);
    }

    #[test]
    fn a_repeated_command_yields_no_new_events(
        commands in prop::collection::vec(arb_command(), 0..40),
        last in arb_command(),
    ) {
        let (mut state, _) = run(&commands);
        if let Ok(events) = decide(&state, last.clone()) {
            for event in &events {
                state = evolve(state, event);
            }
            if let Ok(again) = decide(&state, last.clone()) {
                prop_assert!(again.is_empty(), "{:?} repeated gave {:?}", last, again);
            }
        }
    }

    #[test]
    fn the_recorded_access_mode_is_the_one_the_clock_gives(commands in prop::collection::vec(arb_command(), 0..40)) {
        let (state, _) = run(&commands);
        if let Some(latest) = state.latest_at {
            prop_assert_eq!(state.access_at(latest, &Policy::default()).mode, state.access().mode);
        }
    }

    #[test]
    fn the_clock_changes_something_when_the_license_says_it_will(
        commands in prop::collection::vec(arb_command(), 0..40),
        policy_days in prop::collection::vec(1u32..40, 0..3),
    ) {
        let (state, _) = run(&commands);
        let notices = NoticePolicy { expiry_days: policy_days.clone(), freeze_days: policy_days };
        if let (Some(due), Some(code)) = (state.next_due(&notices), state.code.clone()) {
            let tick = Command { license: code, sandbox: state.sandbox, at: due, action: Action::PassTime(notices) };
            let events = decide(&state, tick).expect("a known license accepts the clock");
            prop_assert!(!events.is_empty(), "nothing happened at {:?}", due);
        }
    }

    #[test]
    fn released_stays_released(
        before in prop::collection::vec(arb_command(), 0..20),
        after in prop::collection::vec(arb_command(), 0..20),
    ) {
        let mut commands = before;
        commands.push(release(None));
        let (released, _) = run(&commands);
        prop_assume!(released.status() == Status::Released);
        commands.extend(after);
        let (state, _) = run(&commands);
        prop_assert_eq!(state.status(), Status::Released);
        prop_assert_eq!(state.released_at, released.released_at);
    }

    #[test]
    fn the_first_event_registers_and_no_other_does(commands in prop::collection::vec(arb_command(), 1..40)) {
        let (_, events) = run(&commands);
        for (i, event) in events.iter().enumerate() {
            prop_assert_eq!(matches!(event, Event::Registered(_)), i == 0, "event {} is {:?}", i, event);
        }
    }
}
