//! The freeze guard end to end: access modes on the clock (D22) and notices (D23), with the real
//! services, PostgreSQL, RabbitMQ and the simulator. The projector's clock is moved through a
//! `LICENSING_CLOCK_OFFSET_FILE`, never by waiting.

mod support;

use koogallery::market_time::{CHINA_STANDARD_TIME, format_market_time};
use serde_json::{Value, json};
use support::*;

const DAY: i64 = 86_400;

/// `expireTime` (market time, +08:00) `seconds` from now.
fn expire_in(seconds: i64) -> String {
    format_market_time(
        time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds),
        CHINA_STANDARD_TIME,
    )
}

async fn wait_mode(stack: &Stack, license: &str, mode: &str) -> Value {
    eventually(&format!("{license} to be {mode}"), 30, || async {
        let v = stack.view(license).await;
        (v["access_mode"] == mode).then_some(v)
    })
    .await
}

/// The payloads of a stream's events of one type.
async fn payloads(stack: &Stack, stream: &str, event_type: &str) -> Vec<Value> {
    stack
        .events(stream)
        .await
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .map(|e| e.payload)
        .collect()
}

async fn subscriber(stack: &Stack) -> (licensing_bus::Bus, licensing_bus::IncomingStream) {
    let mut config = licensing_bus::BusConfig::new(amqp_url());
    config.prefix = stack.prefix.clone();
    config.queue_type = licensing_bus::QueueType::Classic;
    let bus = licensing_bus::Bus::connect(config).await.unwrap();
    let stream = bus
        .subscribe_events("license.access_changed", 100)
        .await
        .unwrap();
    (bus, stream)
}

#[tokio::test]
async fn a_code_never_activated_is_expired_once_the_clock_passes_its_expire_time() {
    let clock = TestClock::new();
    let mut stack = Stack::start(&[]).await;
    stack.start_projector_with(
        "http://127.0.0.1:9",
        &[("LICENSING_CLOCK_OFFSET_FILE", &clock.setting())],
    );
    // Renewed, never activated: pending while within expireTime (D22).
    let expire = expire_in(2 * DAY);
    assert_eq!(
        code(
            &stack
                .callback(&renew("PL905", "CS905", &expire, false))
                .await
        ),
        "000000"
    );
    let v = wait_mode(&stack, "PL905", "pending").await;
    assert_eq!(v["status"], "registered");
    // Three days later, with no callback: expired, not a code the seller could still activate.
    clock.set(3 * DAY);
    let v = wait_mode(&stack, "PL905", "expired").await;
    assert_eq!(v["access_until"], Value::Null);
    let changes = payloads(&stack, "license-PL905", "access_changed").await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (
            &changes[0]["from"],
            &changes[0]["to"],
            &changes[0]["reason"]
        ),
        (
            &json!("pending"),
            &json!("expired"),
            &json!("expire_time_passed")
        )
    );
}

#[tokio::test]
async fn the_clock_expires_a_license_without_a_callback_then_freeze_and_release_each_change_the_mode_once()
 {
    let sim = Simulator::start();
    sim.put("PL900", "claimed").await;
    let clock = TestClock::new();
    let mut stack = Stack::start(&[]).await;
    let (_bus, mut changes) = subscriber(&stack).await;
    stack.start_projector_with(
        &sim.url,
        &[("LICENSING_CLOCK_OFFSET_FILE", &clock.setting())],
    );

    // Activated: pending → active, until the expiry a renewal sets (10 days away).
    assert_eq!(stack.request_activation("PL900").await, 202);
    wait_mode(&stack, "PL900", "active").await;
    let expire = expire_in(10 * DAY);
    assert_eq!(
        code(&stack.callback(&renew("PL900", "CS1", &expire, false)).await),
        "000000"
    );
    let v = eventually("the renewal in the view", 30, || async {
        let v = stack.view("PL900").await;
        (v["expire_time"] == expire.as_str()).then_some(v)
    })
    .await;
    assert_eq!(v["access_mode"], "active");
    let until = time::OffsetDateTime::parse(
        v["access_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expected_until =
        koogallery::market_time::parse_market_time(&expire, CHINA_STANDARD_TIME).unwrap();
    assert_eq!(until, expected_until);

    // Eleven days later, with no callback at all: expired.
    clock.set(11 * DAY);
    let v = wait_mode(&stack, "PL900", "expired").await;
    assert_eq!(
        v["status"], "active",
        "the marketplace has not frozen it yet"
    );
    assert_eq!(v["access_until"], Value::Null);

    // FREEZE: frozen, data kept 15 days from when the marketplace froze it.
    assert_eq!(
        code(&stack.callback(&status("PL900", "FREEZE")).await),
        "000000"
    );
    let v = wait_mode(&stack, "PL900", "frozen").await;
    let kept = time::OffsetDateTime::parse(
        v["data_kept_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expected = time::OffsetDateTime::now_utc() + time::Duration::days(15);
    assert!(
        (kept - expected).abs() < time::Duration::minutes(5),
        "{kept} is 15 days after the freeze"
    );

    // Released by the marketplace.
    assert_eq!(code(&stack.callback(&release("PL900")).await), "000000");
    wait_mode(&stack, "PL900", "released").await;

    let changes_stored = payloads(&stack, "license-PL900", "access_changed").await;
    let path: Vec<(String, String, String)> = changes_stored
        .iter()
        .map(|p| {
            (
                p["from"].as_str().unwrap().to_owned(),
                p["to"].as_str().unwrap().to_owned(),
                p["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected_path = [
        ("pending", "active", "activated"),
        ("active", "expired", "expire_time_passed"),
        ("expired", "frozen", "frozen"),
        ("frozen", "released", "released"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(path, expected_path, "each change is one event");

    // Subscribers get each change once.
    let received = drain(&mut changes, 4).await;
    let received_path: Vec<(&str, &str)> = received
        .iter()
        .map(|e| {
            (
                e["payload"]["from"].as_str().unwrap(),
                e["payload"]["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        received_path,
        [
            ("pending", "active"),
            ("active", "expired"),
            ("expired", "frozen"),
            ("frozen", "released")
        ]
    );
    assert!(
        drain(&mut changes, 1).await.is_empty(),
        "nothing more, and nothing twice"
    );
    let v = stack.view("PL900").await;
    assert_eq!(v["status"], "released");
    // A list filtered by access mode finds it.
    let listed: Value = stack
        .http
        .get(stack.query_url("/v1/licenses?access_mode=released"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["license"], "PL900");
}

#[tokio::test]
async fn notices_fire_once_per_threshold_re_arm_after_a_renewal_survive_a_restart_and_skip_sandboxes()
 {
    let sim = Simulator::start();
    sim.put("PL910", "claimed").await;
    let clock = TestClock::new();
    let mut stack = Stack::start(&[]).await;
    let projector_env = [("LICENSING_CLOCK_OFFSET_FILE", clock.setting())];
    let projector_env: Vec<(&str, &str)> = projector_env
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    stack.start_projector_with(&sim.url, &projector_env);

    // An activated license is noticed; a sandbox license never is.
    assert_eq!(stack.request_activation("PL910").await, 202);
    wait_mode(&stack, "PL910", "active").await;
    let expire = expire_in(10 * DAY);
    for body in [
        renew("PL910", "CS1", &expire, false),
        renew("PL911", "CS1", &expire, true),
    ] {
        assert_eq!(code(&stack.callback(&body).await), "000000");
    }
    eventually("the renewal in the view", 30, || async {
        (stack.view("PL910").await["expire_time"] == expire.as_str()).then_some(())
    })
    .await;

    // Four days on: the 7-day threshold is reached, once.
    clock.set(4 * DAY);
    stack.wait_event("license-PL910", "expiring_soon").await;
    let notices = payloads(&stack, "license-PL910", "expiring_soon").await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0]["days"], 7);
    assert_eq!(notices[0]["expire"]["raw"], expire.as_str());

    // A restart does not repeat it; nine and a half days on, the 1-day one comes.
    stack.projector.take();
    stack.start_projector_with(&sim.url, &projector_env);
    clock.set(9 * DAY + DAY / 2);
    eventually("the 1-day notice", 30, || async {
        let n = payloads(&stack, "license-PL910", "expiring_soon").await;
        (n.len() == 2).then_some(())
    })
    .await;
    let notices = payloads(&stack, "license-PL910", "expiring_soon").await;
    assert_eq!(notices[1]["days"], 1);

    // A renewal moves the expiry: the notices are armed again for the new one.
    let renewed = expire_in(20 * DAY);
    assert_eq!(
        code(
            &stack
                .callback(&renew("PL910", "CS2", &renewed, false))
                .await
        ),
        "000000"
    );
    eventually("the renewal in the view", 30, || async {
        (stack.view("PL910").await["expire_time"] == renewed.as_str()).then_some(())
    })
    .await;
    clock.set(14 * DAY);
    eventually("the 7-day notice for the new expiry", 30, || async {
        let n = payloads(&stack, "license-PL910", "expiring_soon").await;
        (n.len() == 3).then_some(n)
    })
    .await;
    let notices = payloads(&stack, "license-PL910", "expiring_soon").await;
    assert_eq!(notices[2]["days"], 7);
    assert_eq!(notices[2]["expire"]["raw"], renewed.as_str());

    // Nothing else is due before the 1-day threshold of the new expiry: the schedule says so.
    let renewed_at =
        koogallery::market_time::parse_market_time(&renewed, CHINA_STANDARD_TIME).unwrap();
    let expected = vec![("PL910".to_owned(), renewed_at - time::Duration::days(1))];
    eventually(
        "only the real activated license to wait for the clock, for its next threshold",
        30,
        || async {
            let client = stack.store.client().await.unwrap();
            let due: Vec<(String, time::OffsetDateTime)> = client
                .query(
                    "SELECT license, due_at FROM access_schedule ORDER BY license",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            (due == expected).then_some(())
        },
    )
    .await;
    assert!(
        payloads(&stack, "test-license-PL911", "expiring_soon")
            .await
            .is_empty()
    );
    assert!(
        payloads(&stack, "license-PL910", "expiring_soon")
            .await
            .len()
            == 3,
        "no repeat"
    );
}

/// A usage report sent straight to the processor, as the ingress would, for an instant further back
/// than the internal API accepts (it takes the last 36 hours).
async fn report_usage(bus: &licensing_bus::Bus, license: &str, at_ms: i64) {
    let envelope = licensing_messages::CommandEnvelope {
        v: licensing_messages::ENVELOPE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        correlation_id: uuid::Uuid::new_v4(),
        received_at_ms: now_ms(),
        source: "internal-api".to_owned(),
        actor: None,
        request_hash: None,
        command: licensing_messages::CommandBody::ReportUsage {
            license: license.to_owned(),
            account: "alice".to_owned(),
            ip: None,
            at_ms,
        },
        trace_parent: None,
    };
    bus.publish_command(
        envelope.license(),
        &envelope.to_bytes(),
        envelope.message_id.to_string(),
        envelope.correlation_id.to_string(),
        None,
        None,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_heartbeat_ledger_shows_each_day_of_use_and_the_debt_metric_agrees() {
    let sim = Simulator::start();
    sim.put("PL920", "claimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    let (bus, _changes) = subscriber(&stack).await;
    assert_eq!(stack.request_activation("PL920").await, 202);
    wait_mode(&stack, "PL920", "active").await;
    let acknowledged = |n: usize| {
        let stack = &stack;
        async move {
            eventually(&format!("{n} acknowledged heartbeats"), 30, || async {
                (payloads(stack, "license-PL920", "heartbeat_acknowledged")
                    .await
                    .len()
                    == n)
                    .then_some(())
            })
            .await
        }
    };

    // Three days ago: used and acknowledged.
    report_usage(&bus, "PL920", now_ms() - 3 * DAY * 1000).await;
    acknowledged(1).await;
    // Two days ago: used, but the marketplace fails every call that day.
    sim.fault(json!({"status": 503})).await;
    report_usage(&bus, "PL920", now_ms() - 2 * DAY * 1000).await;
    stack.wait_event("license-PL920", "heartbeat_failed").await;
    // Today: the marketplace is back; today's heartbeat is paid, the day before stays unpaid.
    let response = reqwest::Client::new()
        .delete(format!("{}/admin/faults", sim.url))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    report_usage(&bus, "PL920", now_ms()).await;
    acknowledged(2).await;

    let ledger = eventually("the ledger of three days", 30, || async {
        let v: Value = stack
            .http
            .get(stack.query_url("/v1/licenses/PL920/heartbeats"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let states: Vec<String> = v["days"]
            .as_array()?
            .iter()
            .map(|d| d["state"].as_str().unwrap().to_owned())
            .collect();
        (states == ["acknowledged", "missed", "acknowledged"]).then_some(v)
    })
    .await;
    let days = ledger["days"].as_array().unwrap();
    assert_eq!(days[0]["account"], "alice");
    assert!(days[1]["attempts"].as_i64().unwrap() >= 1, "{ledger}");
    assert!(days[1]["last_error"].is_string(), "{ledger}");
    assert_eq!(ledger["time_zone"], "+08:00");
    assert_eq!(days[2]["market_status"], "ALIVE");
    assert_eq!(ledger["debt_days"], 1);
    let today = days[2]["date"].as_str().unwrap();
    assert_eq!(ledger["today"], today);
    // A range: only the days asked for; a bad range is refused.
    let one: Value = stack
        .http
        .get(stack.query_url(&format!(
            "/v1/licenses/PL920/heartbeats?from={today}&to={today}"
        )))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["days"].as_array().unwrap().len(), 1);
    let bad = stack
        .http
        .get(stack.query_url("/v1/licenses/PL920/heartbeats?from=yesterday"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // The debt metric counts the unpaid day of the last seven.
    eventually("the debt gauge", 30, || async {
        (stack.projector_gauge("licensing_heartbeat_debt").await == Some(1.0)).then_some(())
    })
    .await;
}

/// A callback URL that answers, but only after `seconds`.
fn slow_url(seconds: u64) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::{Read as _, Write as _};
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                std::thread::sleep(std::time::Duration::from_secs(seconds));
                let body = r#"{"resultCode":"000000","resultMsg":"success."}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    format!("http://{address}/koogallery/license")
}

#[tokio::test]
async fn probe_now_passes_against_a_healthy_ingress_and_names_why_each_failure_failed() {
    let stack = Stack::start(&[]).await;
    let cases = std::env::temp_dir().join(format!("cases-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &cases,
        r#"[
            {"name": "renewal", "body": {"activity":"refreshLicenseCode","expireTime":"20301231235959","license":"PLPROBE","orderId":"CSP1","orderLineId":"CSP1-1","scene":"RENEWAL","testFlag":"1"}},
            {"name": "freeze", "body": {"activity":"updateLicenseCodeStatus","license":"PLPROBE","status":"FREEZE","testFlag":"1"}}
        ]"#,
    )
    .unwrap();
    let cases = cases.display().to_string();
    let url = stack.callback_url();
    let probe = |url: &str, key: &str| {
        stack.tool(
            "licensing-projector",
            &["probe-now"],
            &[
                ("LICENSING_PROBE_CASES", &cases),
                ("LICENSING_PROBE_URL", url),
                ("LICENSING_CALLBACK_KEYS", key),
            ],
        )
    };
    // Healthy, twice: the saved cases must pass again and again.
    for round in 0..2 {
        let (code, out) = probe(&url, KEY);
        assert_eq!(code, 0, "round {round}: {out}");
        assert!(
            out.contains("PASS renewal (") && out.contains("PASS freeze ("),
            "{out}"
        );
    }
    // The key in the seller console differs from ours.
    let (code, out) = probe(&url, "misconfiguredKey0123");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL renewal: resultCode 000001"), "{out}");
    // Nothing listens (a stopped ingress).
    let closed = format!("http://127.0.0.1:{}/koogallery/license", free_port());
    let (code, out) = probe(&closed, KEY);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL renewal: ") && out.contains("connect"),
        "{out}"
    );
    // An answer after more than the marketplace's 5 s.
    let (code, out) = probe(&slow_url(7), KEY);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL freeze: ") && out.contains("timeout"),
        "{out}"
    );
    // Not configured: it cannot run.
    let (code, out) = stack.tool("licensing-projector", &["probe-now"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("LICENSING_PROBE_CASES"), "{out}");
    assert!(
        stack.events("license-PLPROBE").await.is_empty(),
        "the cases touch only the sandbox"
    );
    std::fs::remove_file(&cases).ok();
}

async fn probe_status(stack: &Stack) -> Value {
    let response = stack
        .http
        .get(stack.query_url("/v1/probe?limit=20"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Waits until `GET /v1/probe` lists `runs` runs; the status then.
async fn wait_runs(stack: &Stack, runs: usize) -> Value {
    eventually(&format!("{runs} probe runs"), 40, || async {
        let status = probe_status(stack).await;
        (status["runs"].as_array().map(Vec::len) == Some(runs)).then_some(status)
    })
    .await
}

/// Seconds to add to the system clock to be at `hour:minute` (+08:00) `days` market days after
/// today.
fn market_clock(days: i64, hour: u8, minute: u8) -> i64 {
    let now = time::OffsetDateTime::now_utc();
    let today = now.to_offset(CHINA_STANDARD_TIME).date();
    let target = (today + time::Duration::days(days))
        .with_hms(hour, minute, 0)
        .unwrap()
        .assume_offset(CHINA_STANDARD_TIME);
    (target - now).whole_seconds()
}

#[tokio::test]
async fn the_probe_watchdog_runs_on_schedule_counts_failed_days_toward_the_freeze_and_sees_the_marketplace()
 {
    let sim = Simulator::start();
    let clock = TestClock::new();
    let port = free_port().to_string();
    let public = format!("127.0.0.1:{port}");
    let mut stack = Stack::start(&[("LICENSING_INGRESS_ADDR", &public)]).await;
    let cases = std::env::temp_dir().join(format!("cases-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &cases,
        r#"[
            {"name": "renewal", "body": {"activity":"refreshLicenseCode","expireTime":"20301231235959","license":"PLWATCH","orderId":"CSW1","orderLineId":"CSW1-1","scene":"RENEWAL","testFlag":"1"}},
            {"name": "freeze", "body": {"activity":"updateLicenseCodeStatus","license":"PLWATCH","status":"FREEZE","testFlag":"1"}}
        ]"#,
    )
    .unwrap();
    let (cases_setting, url, clock_setting) = (
        cases.display().to_string(),
        stack.callback_url(),
        clock.setting(),
    );
    let settings = [
        ("LICENSING_PROBE_CASES", cases_setting.as_str()),
        ("LICENSING_PROBE_URL", url.as_str()),
        ("LICENSING_CLOCK_OFFSET_FILE", clock_setting.as_str()),
    ];

    // Day 1, 10:00 market time: the 09:30 run was missed (nothing ran yet), so it runs at start.
    clock.set(market_clock(1, 10, 0));
    stack.start_projector_with(&sim.url, &settings);
    let status = wait_runs(&stack, 1).await;
    assert_eq!(status["watchdog"]["configured"], true);
    assert_eq!(status["watchdog"]["schedule"], json!(["09:30", "15:30"]));
    assert_eq!(status["watchdog"]["time_zone"], "+08:00");
    assert_eq!(status["watchdog"]["cases"], json!(["renewal", "freeze"]));
    let run = &status["runs"][0];
    assert_eq!(run["passed"], true, "{status}");
    assert_eq!(run["cases"].as_array().unwrap().len(), 2);
    assert_eq!(run["cases"][0]["case"], "renewal");
    assert_eq!(run["cases"][0]["http_status"], 200);
    assert!(
        run["cases"][0]["answer"]
            .as_str()
            .unwrap()
            .contains("000000")
    );
    assert!(run["cases"][0]["latency_ms"].as_i64().is_some());
    assert_eq!(status["failed_days"], 0);
    assert_eq!(status["days_until_freeze"], 5);
    assert_eq!(status["last_success_at"], run["run_at"]);
    assert_eq!(
        status["marketplace_last_seen_at"],
        Value::Null,
        "the watchdog's own requests are not the marketplace's"
    );

    // Day 1, 16:00: the afternoon run.
    clock.set(market_clock(1, 16, 0));
    let status = wait_runs(&stack, 2).await;
    assert_eq!(status["runs"][0]["passed"], true);

    // The ingress stops: day 2 fails, and day 3.
    stack.ingress = None;
    clock.set(market_clock(2, 10, 0));
    let status = wait_runs(&stack, 3).await;
    let failed = &status["runs"][0];
    assert_eq!(failed["passed"], false);
    assert!(
        failed["cases"][0]["error"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{failed}"
    );
    assert_eq!(failed["cases"][0]["http_status"], Value::Null);
    assert_eq!(status["failed_days"], 1);
    assert_eq!(status["days_until_freeze"], 4);
    clock.set(market_clock(3, 10, 0));
    let status = wait_runs(&stack, 4).await;
    assert_eq!(status["failed_days"], 2);
    assert_eq!(status["days_until_freeze"], 3);
    eventually("the failed-days gauge", 30, || async {
        (stack.projector_gauge("licensing_probe_failed_days").await == Some(2.0)).then_some(())
    })
    .await;

    // A restart does not run the slot it ran already; the afternoon run still comes, and the day
    // stays one failed day.
    stack.projector = None;
    stack.start_projector_with(&sim.url, &settings);
    assert_eq!(
        probe_status(&stack).await["runs"].as_array().unwrap().len(),
        4
    );
    clock.set(market_clock(3, 16, 0));
    let status = wait_runs(&stack, 5).await;
    assert_eq!(status["failed_days"], 2);

    // The ingress is back: day 4 passes and the countdown is reset.
    stack.start_ingress();
    stack.wait_ingress_ready().await;
    clock.set(market_clock(4, 10, 0));
    let status = wait_runs(&stack, 6).await;
    assert_eq!(status["runs"][0]["passed"], true);
    assert_eq!(status["failed_days"], 0);
    assert_eq!(status["days_until_freeze"], 5);
    assert_eq!(status["last_success_at"], status["runs"][0]["run_at"]);
    let last_success = stack
        .projector_gauge("licensing_probe_last_success_timestamp_seconds")
        .await;
    assert!(last_success.is_some_and(|s| s > 0.0), "{last_success:?}");
    // Each case of each run is one event on the probe stream; none was a marketplace probe.
    let types = stack.event_types("probe").await;
    assert_eq!(types.len(), 12, "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "probe_run_failed").count(), 6);
    assert_eq!(
        probe_status(&stack).await["marketplace_last_seen_at"],
        Value::Null
    );

    // The marketplace's own probe: recorded once per half-day, however many cases it sends.
    let half_day = || (now_ms() + 8 * 3_600_000).div_euclid(12 * 3_600_000);
    let before = half_day();
    for order in ["CSM1", "CSM2"] {
        let body = renew("PLMARKET", order, "20301231235959", true);
        assert_eq!(code(&stack.callback(&body).await), "000000");
    }
    let crossed = half_day() != before;
    let status = eventually("the marketplace's probe seen", 30, || async {
        let status = probe_status(&stack).await;
        status["marketplace_last_seen_at"]
            .is_string()
            .then_some(status)
    })
    .await;
    assert_eq!(status["marketplace_probes"][0]["license"], "PLMARKET");
    assert_eq!(
        status["marketplace_probes"][0]["activity"],
        "refreshLicenseCode"
    );
    let seen = payloads(&stack, "probe", "marketplace_probe_seen").await;
    assert!(seen.len() == 1 || crossed, "{seen:?}");
    eventually("the marketplace gauge", 30, || async {
        stack
            .projector_gauge("licensing_marketplace_probe_last_seen_timestamp_seconds")
            .await
            .is_some_and(|s| s > 0.0)
            .then_some(())
    })
    .await;
    std::fs::remove_file(&cases).ok();
}

#[tokio::test]
async fn the_watchdog_records_why_a_run_failed_a_wrong_key_and_a_slow_answer() {
    let sim = Simulator::start();
    let clock = TestClock::new();
    let mut stack = Stack::start(&[]).await;
    let cases = std::env::temp_dir().join(format!("cases-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &cases,
        r#"[{"name": "freeze", "body": {"activity":"updateLicenseCodeStatus","license":"PLWKEY","status":"FREEZE","testFlag":"1"}}]"#,
    )
    .unwrap();
    let (cases_setting, url, clock_setting) = (
        cases.display().to_string(),
        stack.callback_url(),
        clock.setting(),
    );

    // The key in the seller console is not ours: the ingress refuses the signature.
    clock.set(market_clock(1, 10, 0));
    stack.start_projector_with(
        &sim.url,
        &[
            ("LICENSING_PROBE_CASES", &cases_setting),
            ("LICENSING_PROBE_URL", &url),
            ("LICENSING_CALLBACK_KEYS", "misconfiguredKey0123"),
            ("LICENSING_CLOCK_OFFSET_FILE", &clock_setting),
        ],
    );
    let status = wait_runs(&stack, 1).await;
    let case = &status["runs"][0]["cases"][0];
    assert_eq!(status["runs"][0]["passed"], false);
    assert_eq!(case["http_status"], 200);
    assert!(
        case["error"]
            .as_str()
            .unwrap()
            .contains("resultCode 000001"),
        "{case}"
    );
    assert!(
        case["answer"].as_str().unwrap().contains("000001"),
        "{case}"
    );
    assert_eq!(status["failed_days"], 1);

    // An endpoint that answers after more than the marketplace's 5 s.
    stack.projector = None;
    clock.set(market_clock(1, 16, 0));
    stack.start_projector_with(
        &sim.url,
        &[
            ("LICENSING_PROBE_CASES", &cases_setting),
            ("LICENSING_PROBE_URL", &slow_url(7)),
            ("LICENSING_CLOCK_OFFSET_FILE", &clock_setting),
        ],
    );
    let status = wait_runs(&stack, 2).await;
    let case = &status["runs"][0]["cases"][0];
    assert_eq!(status["runs"][0]["passed"], false);
    assert!(
        case["error"].as_str().unwrap().contains("timeout"),
        "{case}"
    );
    assert_eq!(status["failed_days"], 1, "both runs failed on the same day");
    assert_eq!(status["days_until_freeze"], 4);
    let failed = payloads(&stack, "probe", "probe_run_failed").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    std::fs::remove_file(&cases).ok();
}
