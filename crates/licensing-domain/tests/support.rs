//! Builders shared by the domain tests: a fixed license, fixed instants, and one constructor per command.

#![allow(dead_code, unreachable_pub)]

use licensing_domain::*;

pub const T0: i64 = 1_700_000_000_000;
pub const OFFSET: i32 = 480;

pub fn code() -> LicenseCode {
    LicenseCode::parse("PL0000000001").expect("valid code")
}

pub fn at(minutes: i64) -> Timestamp {
    Timestamp::from_millis(T0 + minutes * 60_000)
}

pub fn day(n: i64) -> Day {
    Day::from_number(19_676 + n)
}

pub fn market(raw: &str, millis: i64) -> MarketTime {
    MarketTime {
        instant: Timestamp::from_millis(millis),
        raw: raw.to_owned(),
    }
}

pub fn command(action: Action) -> Command {
    Command {
        license: code(),
        sandbox: false,
        at: at(1),
        action,
    }
}

pub fn callback(kind: CallbackKind) -> Command {
    command(Action::Callback(Callback {
        kind,
        on_unknown: UnknownLicensePolicy::Register,
    }))
}

pub fn strict(kind: CallbackKind) -> Command {
    command(Action::Callback(Callback {
        kind,
        on_unknown: UnknownLicensePolicy::Reject,
    }))
}

pub fn refresh(order: &str, scene: Scene, expire: &str) -> CallbackKind {
    CallbackKind::Refresh(Refresh {
        order_id: order.to_owned(),
        order_line_id: format!("{order}-000001"),
        scene,
        product_id: None,
        expire: market(expire, expire.parse::<i64>().unwrap_or(0)),
    })
}

pub fn renew(order: &str, expire: &str) -> Command {
    callback(refresh(order, Scene::Renewal, expire))
}

pub fn freeze() -> Command {
    callback(CallbackKind::ChangeStatus(StatusChange::Freeze))
}

pub fn unfreeze() -> Command {
    callback(CallbackKind::ChangeStatus(StatusChange::Unfreeze))
}

pub fn release(order: Option<&str>) -> Command {
    callback(CallbackKind::Release(Release {
        order_id: order.map(str::to_owned),
        order_line_id: None,
    }))
}

pub fn request_activation() -> Command {
    command(Action::RequestActivation {
        real_effect_time: None,
    })
}

pub fn info() -> LicenseCodeInfo {
    LicenseCodeInfo {
        status: "ALIVE".to_owned(),
        expire: Some(market("20240726121646", 1_721_967_406_000)),
        product_id: Some("OFFI01".to_owned()),
        order_id: Some("CS123".to_owned()),
        amount: Some(2),
        raw: r#"{"status":"ALIVE","expire_time":"20240726121646","product_id":"OFFI01","amount":2,"order_id":"CS123"}"#.to_owned(),
    }
}

pub fn activation(attempt: u32, result: ActivationResult) -> Command {
    command(Action::RecordActivation(ActivationOutcome {
        attempt,
        result,
    }))
}

pub fn failure(retryable: bool) -> CallFailure {
    CallFailure {
        code: if retryable { "92020001" } else { "92020005" }.to_owned(),
        message: "refused".to_owned(),
        retryable,
    }
}

pub fn usage(d: i64) -> Command {
    command(Action::ReportUsage(Usage {
        day: day(d),
        account: "alice".to_owned(),
        ip: Some("10.0.0.1".to_owned()),
    }))
}

pub fn heartbeat(d: i64, attempt: u32, result: HeartbeatResult) -> Command {
    command(Action::RecordHeartbeat(HeartbeatOutcome {
        day: day(d),
        attempt,
        result,
    }))
}

pub fn ack(status: MarketStatus) -> HeartbeatResult {
    HeartbeatResult::Acknowledged {
        status,
        expire: None,
    }
}

/// Applies commands in order, failing the test on a rejection, and returns the state and all events.
pub fn given(commands: impl IntoIterator<Item = Command>) -> (License, Vec<Event>) {
    let mut state = License::default();
    let mut all = Vec::new();
    for command in commands {
        let events = decide(&state, command.clone())
            .unwrap_or_else(|e| panic!("given {command:?} was rejected: {e}"));
        for event in &events {
            state = evolve(state, event);
        }
        all.extend(events);
    }
    (state, all)
}

/// The event types a command produces on a state.
pub fn when(state: &License, command: Command) -> Result<Vec<&'static str>, Rejection> {
    decide(state, command).map(|events| events.iter().map(Event::event_type).collect())
}
