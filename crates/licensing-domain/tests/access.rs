//! Access modes on the clock (D22) and notices (D23).

mod support;

use licensing_domain::*;
use support::*;

/// Expiry of the license in these tests: 30 days after T0.
const EXPIRE: i64 = T0 + 30 * DAY_MS;

fn expire_at(millis: i64) -> MarketTime {
    market(&millis.to_string(), millis)
}

fn active_until(expire: i64) -> License {
    let (state, _) = given([
        request_activation(),
        activation(
            1,
            ActivationResult::Activated(LicenseCodeInfo {
                expire: Some(expire_at(expire)),
                ..info()
            }),
        ),
    ]);
    state
}

fn at_ms(millis: i64, mut command: Command) -> Command {
    command.at = Timestamp::from_millis(millis);
    command
}

fn pass_time(millis: i64) -> Command {
    at_ms(millis, command(Action::PassTime(NoticePolicy::default())))
}

/// Decides and folds, returning the events.
fn step(state: &mut License, command: Command) -> Vec<Event> {
    let events = decide(state, command).expect("accepted");
    for event in &events {
        *state = evolve(state.clone(), event);
    }
    events
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::event_type).collect()
}

#[test]
fn the_clock_takes_a_license_through_its_notices_expiry_freeze_and_release() {
    let mut state = active_until(EXPIRE);
    assert_eq!(state.access().mode, AccessMode::Active);
    assert_eq!(state.access().until, Some(Timestamp::from_millis(EXPIRE)));
    // The first thing the clock changes is the 7-day notice.
    let seven = EXPIRE - 7 * DAY_MS;
    assert_eq!(
        state.next_due(&NoticePolicy::default()),
        Some(Timestamp::from_millis(seven))
    );
    assert!(step(&mut state, pass_time(seven - 60_000)).is_empty());
    let events = step(&mut state, pass_time(seven));
    assert!(matches!(&events[..], [Event::ExpiringSoon(n)] if n.days == 7));
    assert!(
        step(&mut state, pass_time(seven + 60_000)).is_empty(),
        "once"
    );
    let one = EXPIRE - DAY_MS;
    assert_eq!(
        state.next_due(&NoticePolicy::default()),
        Some(Timestamp::from_millis(one))
    );
    let events = step(&mut state, pass_time(one + 1));
    assert!(matches!(&events[..], [Event::ExpiringSoon(n)] if n.days == 1));
    // At expireTime: expired, by the clock alone.
    assert_eq!(
        state.next_due(&NoticePolicy::default()),
        Some(Timestamp::from_millis(EXPIRE))
    );
    let events = step(&mut state, pass_time(EXPIRE));
    let [Event::AccessChanged(change)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (change.from, change.to, change.reason),
        (
            AccessMode::Active,
            AccessMode::Expired,
            AccessReason::ExpireTimePassed
        )
    );
    assert_eq!(state.next_due(&NoticePolicy::default()), None);
    // FREEZE: frozen, data kept 15 days.
    let frozen_at = EXPIRE + 3 * DAY_MS;
    let events = step(&mut state, at_ms(frozen_at, freeze()));
    assert_eq!(types(&events), ["frozen", "access_changed"]);
    let kept = Timestamp::from_millis(frozen_at + 15 * DAY_MS);
    assert_eq!(state.access().mode, AccessMode::Frozen);
    assert_eq!(state.access().data_kept_until, Some(kept));
    let three = kept.plus_millis(-3 * DAY_MS);
    assert_eq!(state.next_due(&NoticePolicy::default()), Some(three));
    let events = step(&mut state, pass_time(three.as_millis()));
    assert!(
        matches!(&events[..], [Event::FreezeEndingSoon(n)] if n.days == 3 && n.data_kept_until == kept)
    );
    assert_eq!(state.next_due(&NoticePolicy::default()), Some(kept));
    // The data period ends without a release: released by the clock.
    let events = step(&mut state, pass_time(kept.as_millis()));
    assert!(matches!(&events[..], [Event::AccessChanged(c)]
        if c.to == AccessMode::Released && c.reason == AccessReason::DataKeptUntilPassed));
    // The marketplace's release then changes the status, not the mode.
    let events = step(&mut state, at_ms(kept.as_millis() + 1, release(None)));
    assert_eq!(types(&events), ["released"]);
    assert_eq!(state.next_due(&NoticePolicy::default()), None);
}

#[test]
fn several_thresholds_reached_at_once_give_the_most_urgent_notice_only() {
    let mut state = active_until(EXPIRE);
    let events = step(&mut state, pass_time(EXPIRE - DAY_MS / 2));
    assert!(matches!(&events[..], [Event::ExpiringSoon(n)] if n.days == 1));
    assert_eq!(
        state.next_due(&NoticePolicy::default()),
        Some(Timestamp::from_millis(EXPIRE)),
        "the 7-day notice is not owed any more"
    );
}

#[test]
fn a_renewal_re_arms_the_notices_and_brings_an_expired_license_back() {
    let mut state = active_until(EXPIRE);
    step(&mut state, pass_time(EXPIRE - 7 * DAY_MS));
    step(&mut state, pass_time(EXPIRE));
    assert_eq!(state.access().mode, AccessMode::Expired);
    let renewed = EXPIRE + 30 * DAY_MS;
    let events = step(
        &mut state,
        at_ms(
            EXPIRE + 1,
            callback(CallbackKind::Refresh(Refresh {
                order_id: "CS7".into(),
                order_line_id: "CS7-1".into(),
                scene: Scene::Renewal,
                product_id: None,
                expire: expire_at(renewed),
            })),
        ),
    );
    assert!(
        matches!(&events[..], [Event::Renewed(_), Event::AccessChanged(c)]
        if c.to == AccessMode::Active && c.reason == AccessReason::ExpiryChanged
            && c.access_until == Some(Timestamp::from_millis(renewed)))
    );
    let events = step(&mut state, pass_time(renewed - 7 * DAY_MS));
    assert!(
        matches!(&events[..], [Event::ExpiringSoon(n)] if n.days == 7 && n.expire.instant.as_millis() == renewed)
    );
}

#[test]
fn a_sandbox_license_changes_mode_but_is_never_noticed() {
    let mut refresh = callback(CallbackKind::Refresh(Refresh {
        order_id: "CS1".into(),
        order_line_id: "CS1-1".into(),
        scene: Scene::Renewal,
        product_id: None,
        expire: expire_at(EXPIRE),
    }));
    refresh.sandbox = true;
    let mut frozen = freeze();
    frozen.sandbox = true;
    let (mut state, events) = given([refresh, frozen]);
    assert_eq!(
        types(&events),
        ["registered", "renewed", "frozen", "access_changed"]
    );
    let kept = state.access().data_kept_until.expect("frozen");
    assert_eq!(
        state.next_due(&NoticePolicy::default()),
        Some(kept),
        "no notice is scheduled"
    );
    let mut tick = pass_time(kept.as_millis() - DAY_MS);
    tick.sandbox = true;
    assert!(step(&mut state, tick).is_empty());
}

#[test]
fn the_clock_of_a_license_never_runs_backwards() {
    let mut state = active_until(EXPIRE);
    step(&mut state, pass_time(EXPIRE + 1));
    assert_eq!(state.access().mode, AccessMode::Expired);
    // A command stamped earlier (another process's clock) does not bring it back.
    let events = step(&mut state, at_ms(EXPIRE - DAY_MS, usage(40)));
    assert_eq!(types(&events), ["usage_recorded"]);
    assert_eq!(state.access().mode, AccessMode::Expired);
}

#[test]
fn the_freeze_period_is_a_policy() {
    let state = active_until(EXPIRE);
    let policy = Policy {
        freeze_period_ms: 5 * DAY_MS,
    };
    let events = decide_with(&state, at_ms(EXPIRE + 1, freeze()), &policy).unwrap();
    assert!(
        matches!(&events[..], [Event::Frozen(_), Event::AccessChanged(c)]
        if c.data_kept_until == Some(Timestamp::from_millis(EXPIRE + 1 + 5 * DAY_MS)))
    );
}

#[test]
fn pass_time_for_an_unknown_license_is_refused() {
    assert_eq!(
        decide(&License::default(), pass_time(T0)),
        Err(Rejection::UnknownLicense)
    );
}

#[test]
fn a_code_never_activated_expires_at_its_expire_time_all_the_same() {
    let (mut state, _) = given([renew("CS1", &EXPIRE.to_string())]);
    assert_eq!(state.access().mode, AccessMode::Pending);
    assert_eq!(
        state.next_due(&NoticePolicy::default()),
        Some(Timestamp::from_millis(EXPIRE)),
        "the clock has something to change at expireTime"
    );
    assert!(step(&mut state, pass_time(EXPIRE - 1)).is_empty());
    let events = step(&mut state, pass_time(EXPIRE));
    assert_eq!(types(&events), ["access_changed"]);
    assert_eq!(state.access().mode, AccessMode::Expired);
    assert_eq!(state.next_due(&NoticePolicy::default()), None);
    // A first renewal whose expireTime has passed already: expired at once, never pending.
    let (past, _) = given([at_ms(EXPIRE + DAY_MS, renew("CS2", &EXPIRE.to_string()))]);
    assert_eq!(past.access().mode, AccessMode::Expired);
}
