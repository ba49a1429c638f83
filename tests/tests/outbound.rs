//! Activation and heartbeats end to end: the internal API, the processor, the projector's outbound
//! worker, and the marketplace simulator checking every AK/SK signature.

mod support;

use serde_json::{Value, json};
use support::*;

fn calls(requests: &[Value], path_end: &str) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(path_end)))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_code_is_activated_after_the_buyer_claims_it_and_heartbeats_follow_daily_use() {
    let sim = Simulator::start();
    sim.put("PL700", "unclaimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);

    let (status, _) = stack
        .internal("/v1/licenses/PL700/activation", json!({}))
        .await;
    assert_eq!(status, 202);
    stack
        .wait_event("license-PL700", "activation_awaiting_claim")
        .await;

    sim.put("PL700", "claimed").await;
    stack.wait_event("license-PL700", "activated").await;
    let license = eventually("the view to show the license active", 30, || async {
        let v = stack.view("PL700").await;
        (v["status"] == "active").then_some(v)
    })
    .await;
    assert_eq!(
        license["order_id"], "CS7001",
        "taken from license_code_info"
    );
    assert_eq!(license["expire_time"], "20301231235959");

    let requests = sim.requests().await;
    let activations = calls(&requests, "/license/activate");
    assert!(activations.len() >= 2);
    assert!(
        activations.iter().all(|r| r["authorized"] == true),
        "every call was signed correctly"
    );

    // Daily use: two reports on one day make one heartbeat, with the account.
    for account in ["alice", "bob"] {
        let (status, body) = stack
            .internal("/v1/licenses/PL700/usage", json!({"account": account}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    stack
        .wait_event("license-PL700", "heartbeat_acknowledged")
        .await;
    stack.outbound_settled("PL700").await;
    let heartbeats = calls(&sim.requests().await, "/license/heartbeat");
    assert_eq!(
        heartbeats.len(),
        1,
        "one heartbeat for the day: {heartbeats:?}"
    );
    assert_eq!(
        heartbeats[0]["body"]["heartbeatInfo"]["thirdPartyAccount"],
        "alice"
    );
    let types = stack.event_types("license-PL700").await;
    assert_eq!(types.iter().filter(|t| *t == "usage_recorded").count(), 1);
    // A whole scenario later, no configured secret is in any service's logs.
    assert_eq!(
        code(&stack.callback(&support::status("PL700", "FREEZE")).await),
        "000000"
    );
    stack.assert_logs_hold_none_of(&[KEY, TOKEN, SIM_SK]);
}
#[tokio::test]
async fn a_released_code_at_the_marketplace_is_recorded_as_drift() {
    let sim = Simulator::start();
    sim.put("PL701", "claimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    stack
        .internal("/v1/licenses/PL701/activation", json!({}))
        .await;
    stack.wait_event("license-PL701", "activated").await;
    sim.put("PL701", "released").await;
    stack
        .internal("/v1/licenses/PL701/usage", json!({"account": "alice"}))
        .await;
    stack.wait_event("license-PL701", "drift_detected").await;
    let v = eventually("the view to show the drift", 30, || async {
        let v = stack.view("PL701").await;
        (v["drift"] == true).then_some(v)
    })
    .await;
    assert_eq!(v["market_status"], "RELEASED");
}

#[tokio::test]
async fn subscribers_receive_every_event_in_order_and_sandbox_events_apart() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    let mut config = licensing_bus::BusConfig::new(amqp_url());
    config.prefix = stack.prefix.clone();
    config.queue_type = licensing_bus::QueueType::Classic;
    let bus = licensing_bus::Bus::connect(config).await.unwrap();
    let mut real = bus.subscribe_events("license.#", 100).await.unwrap();
    let mut sandbox = bus.subscribe_events("test.license.#", 100).await.unwrap();

    for body in [
        status("PL702", "FREEZE"),
        renew("PL702", "CS1", "20301231235959", false),
        status("PL702", "UNFREEZE"),
        release("PL702"),
    ] {
        assert_eq!(code(&stack.callback(&body).await), "000000");
    }
    assert_eq!(
        code(
            &stack
                .callback(&renew("PL702", "CS9", "20991231235959", true))
                .await
        ),
        "000000"
    );
    stack.start_projector(&sim.url);

    let received = drain(&mut real, 8).await;
    let types: Vec<&str> = received
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "registered",
            "frozen",
            "access_changed",
            "renewed",
            "unfrozen",
            "access_changed",
            "released",
            "access_changed"
        ]
    );
    let versions: Vec<i64> = received
        .iter()
        .map(|e| e["stream_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8], "in order");
    let stored = stack.events("license-PL702").await;
    for (sent, stored) in received.iter().zip(&stored) {
        assert_eq!(sent["event_id"], stored.event_id.to_string());
        assert_eq!(sent["global_position"], stored.global_position);
        assert_eq!(sent["license"], "PL702");
        assert_eq!(sent["sandbox"], false);
        assert_eq!(sent["v"], 1);
        assert!(
            sent["occurred_at"].is_string()
                && sent["recorded_at"].is_string()
                && sent["correlation_id"].is_string()
        );
    }
    assert_eq!(received[3]["payload"]["expire"]["raw"], "20301231235959");

    let test_events = drain(&mut sandbox, 2).await;
    let types: Vec<&str> = test_events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["registered", "renewed"]);
    assert!(test_events.iter().all(|e| e["sandbox"] == true));
    bus.close().await;
}

#[tokio::test]
async fn server_errors_are_retried_and_the_fallback_host_is_used() {
    let sim = Simulator::start();
    sim.put("PL703", "claimed").await;
    sim.fault(json!({"status": 503, "count": 2})).await;
    // The first host is down: the fallback (the simulator) answers.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let mut stack = Stack::start(&[]).await;
    stack.start_projector_with(&down, &[("LICENSING_KOOGALLERY_FALLBACK_URL", &sim.url)]);
    stack
        .internal("/v1/licenses/PL703/activation", json!({}))
        .await;
    stack.wait_event("license-PL703", "activated").await;
    let types = stack.event_types("license-PL703").await;
    assert_eq!(
        types.iter().filter(|t| *t == "activation_failed").count(),
        1,
        "two identical failures, recorded once: {types:?}"
    );
    assert_eq!(
        calls(&sim.requests().await, "/license/activate").len(),
        3,
        "both failures were retried, through the fallback host"
    );
    let failed = &stack.events("license-PL703").await[2];
    assert_eq!(failed.payload["failure"]["code"], "APIGW.0201");
    assert_eq!(failed.payload["failure"]["retryable"], true);
}

#[tokio::test]
async fn refused_credentials_are_counted_for_alerting_and_retried_slowly() {
    let sim = Simulator::start();
    sim.put("PL704", "claimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector_with(
        &sim.url,
        &[("LICENSING_KOOGALLERY_SK", "not-the-right-sk-000000000")],
    );
    stack
        .internal("/v1/licenses/PL704/activation", json!({}))
        .await;
    stack.wait_event("license-PL704", "activation_failed").await;
    let metrics = stack
        .http
        .get(stack.query_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"licensing_outbound_calls_total{kind="activate",disposition="credentials"} 1"#
        ),
        "{metrics}"
    );
    // The job is rescheduled at the cap: nothing can call again before it is due.
    let client = stack.store.client().await.unwrap();
    let wait = eventually("the refused job rescheduled", 30, || async {
        let row = client
            .query_opt(
                "SELECT extract(epoch FROM due_at - now())::float8, tries FROM outbound_jobs
                  WHERE license = 'PL704' AND kind = 'activate'",
                &[],
            )
            .await
            .unwrap()?;
        (row.get::<_, i32>(1) == 1).then(|| row.get::<_, f64>(0))
    })
    .await;
    assert!(
        wait > 60.0,
        "no fast retry with refused credentials: due in {wait} s"
    );
    assert_eq!(
        calls(&sim.requests().await, "/license/activate").len(),
        1,
        "one call"
    );
    let failed = stack
        .events("license-PL704")
        .await
        .into_iter()
        .find(|e| e.event_type == "activation_failed")
        .unwrap();
    assert_eq!(failed.payload["failure"]["code"], "APIGW.0301");
}

async fn query(stack: &Stack, path: &str) -> (u16, Value) {
    let response = stack
        .http
        .get(stack.query_url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_query_api_lists_filters_pages_and_answers_as_of_a_past_instant() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    for body in [
        status("PL710", "FREEZE"),
        renew("PL711", "CS1", "20301231235959", false),
        status("PL712", "FREEZE"),
        status("PL713", "FREEZE"),
    ] {
        assert_eq!(code(&stack.callback(&body).await), "000000");
    }
    stack.callback(&status("PL713", "UNFREEZE")).await;
    stack.callback(&release("PL713")).await;
    eventually("four views", 30, || async {
        let (_, v) = query(&stack, "/v1/licenses/PL713").await;
        (v["status"] == "released").then_some(())
    })
    .await;

    let (status_code, frozen) = query(&stack, "/v1/licenses?status=frozen").await;
    assert_eq!(status_code, 200);
    let codes: Vec<&str> = frozen["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["license"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["PL710", "PL712"]);
    let (_, page) = query(&stack, "/v1/licenses?limit=3").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = query(&stack, &format!("/v1/licenses?limit=3&cursor={cursor}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    let (_, expiring) = query(
        &stack,
        "/v1/licenses?expire_after=2030-01-01T00:00:00Z&expire_before=2031-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(expiring["items"][0]["license"], "PL711");
    assert_eq!(query(&stack, "/v1/licenses?expire_after=soon").await.0, 400);
    assert_eq!(
        stack
            .http
            .get(stack.query_url("/v1/licenses"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // As of each recorded instant, the state then.
    let history = stack.events("license-PL713").await;
    let at = |i: usize| {
        history[i]
            .recorded_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // registered, frozen, access_changed, unfrozen, access_changed, released, access_changed
    for (i, expected) in [(2, "frozen"), (4, "registered"), (6, "released")] {
        let (_, v) = query(
            &stack,
            &format!("/v1/licenses/PL713?as_of={}", at(i).replace('+', "%2B")),
        )
        .await;
        assert_eq!(v["status"], expected, "as of event {i}: {v}");
    }
    assert_eq!(
        query(&stack, "/v1/licenses/PL713?as_of=2020-01-01T00:00:00Z")
            .await
            .0,
        404
    );
    let (_, history_json) = query(&stack, "/v1/licenses/PL713/events").await;
    assert_eq!(history_json.as_array().unwrap().len(), 7);
    assert!(history_json[0]["metadata"]["correlation_id"].is_string());
    for path in [
        "/v1/licenses/PL999/events",
        "/v1/licenses/PL713/events?sandbox=true",
        "/v1/licenses/PL999?as_of=2030-01-01T00:00:00Z",
    ] {
        let (status, v) = query(&stack, path).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (404, Some("unknown_license")),
            "{path}: {v}"
        );
    }
    assert_eq!(
        stack
            .http
            .get(stack.query_url("/v1/licenses/PL713/events"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let metrics = eventually("the gauges", 15, || async {
        let text = stack
            .http
            .get(stack.query_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("licensing_projection_lag_seconds{follower=\"license_views\"}")
            .then_some(text)
    })
    .await;
    assert!(
        metrics.contains("licensing_outbound_jobs{kind=\"activate\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("licensing_heartbeat_debt 0"), "{metrics}");
}

#[tokio::test]
async fn the_openapi_document_is_served_and_lists_every_route() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    let document: Value = stack
        .http
        .get(stack.query_url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.0.3");
    for route in [
        "/v1/licenses",
        "/v1/licenses/{code}",
        "/v1/licenses/{code}/events",
    ] {
        assert!(
            document["paths"][route]["get"].is_object(),
            "{route} documented"
        );
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        document, committed,
        "the served document is the committed one"
    );
}

#[tokio::test]
async fn a_projector_killed_mid_batch_recovers_to_a_full_rebuild_and_publishes_everything_in_order()
{
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    let mut config = licensing_bus::BusConfig::new(amqp_url());
    config.prefix = stack.prefix.clone();
    config.queue_type = licensing_bus::QueueType::Classic;
    let bus = licensing_bus::Bus::connect(config).await.unwrap();
    let mut subscriber = bus.subscribe_events("license.#", 1000).await.unwrap();
    stack.start_projector(&sim.url);

    let sending = async {
        for i in 0..60 {
            let license = format!("PL8{:02}", i % 10);
            let body = match i / 10 % 3 {
                0 => renew(&license, &format!("CS{i}"), "20301231235959", false),
                1 => status(&license, "FREEZE"),
                _ => status(&license, "UNFREEZE"),
            };
            assert_eq!(code(&stack.callback(&body).await), "000000");
        }
    };
    let kill = async {
        eventually("some views", 30, || async {
            (stack.views_snapshot().await.len() >= 3).then_some(())
        })
        .await;
        stack.projector.as_ref().unwrap().signal("KILL");
    };
    tokio::join!(sending, kill);
    stack.projector.as_mut().unwrap().wait_exit(10);
    stack.start_projector(&sim.url);
    eventually("both followers to catch up", 30, || async {
        stack.projector_caught_up().await.then_some(())
    })
    .await;

    let live = stack.views_snapshot().await;
    assert_eq!(live.len(), 10);
    let rebuilt = stack.rebuild_views();
    assert!(rebuilt.starts_with("rebuilt 10 licenses from"), "{rebuilt}");
    assert_eq!(
        stack.views_snapshot().await,
        live,
        "the views after the crash equal a full rebuild"
    );
    let indexes: Vec<String> = stack
        .store
        .client()
        .await
        .unwrap()
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'license_views' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        indexes.len() >= 7
            && indexes.iter().all(|i| i.starts_with("license_views_"))
            && !indexes.iter().any(|i| i.contains("next")),
        "the rebuilt view's indexes carry the live names: {indexes:?}"
    );

    let total = stack.event_count().await as usize;
    let mut seen = std::collections::HashMap::<String, Vec<i64>>::new();
    let mut unique = std::collections::HashSet::new();
    while unique.len() < total {
        let next =
            tokio::time::timeout(std::time::Duration::from_secs(20), subscriber.next()).await;
        let Ok(Some(Ok(message))) = next else {
            panic!("only {} of {total} events arrived", unique.len())
        };
        message.ack().await.unwrap();
        let event: Value = serde_json::from_slice(&message.body).unwrap();
        if unique.insert(event["event_id"].as_str().unwrap().to_owned()) {
            seen.entry(event["license"].as_str().unwrap().to_owned())
                .or_default()
                .push(event["stream_version"].as_i64().unwrap());
        }
    }
    for (license, versions) in seen {
        assert_eq!(
            versions,
            (1..=versions.len() as i64).collect::<Vec<_>>(),
            "{license}: first deliveries in order, none lost"
        );
    }
    bus.close().await;
}

#[tokio::test]
async fn already_activated_is_confirmed_by_a_heartbeat_and_each_day_of_use_gets_one() {
    let sim = Simulator::start();
    sim.put("PL720", "active").await; // activated before, elsewhere
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    stack
        .internal("/v1/licenses/PL720/activation", json!({}))
        .await;
    stack
        .wait_event("license-PL720", "heartbeat_acknowledged")
        .await;
    let events = stack.events("license-PL720").await;
    let activated = events.iter().find(|e| e.event_type == "activated").unwrap();
    assert_eq!(
        activated.payload["already_activated"], true,
        "92020003 is treated as activated"
    );
    let heartbeats = calls(&sim.requests().await, "/license/heartbeat");
    assert_eq!(heartbeats.len(), 1);
    assert_eq!(
        heartbeats[0]["body"]["heartbeatInfo"]["thirdPartyAccount"], "licensing-backend",
        "the configured default account"
    );

    // Each day of use gets one heartbeat: use 30 hours ago (always another day), then now.
    sim.put("PL721", "claimed").await;
    stack
        .internal("/v1/licenses/PL721/activation", json!({}))
        .await;
    stack.wait_event("license-PL721", "activated").await;
    let at = |hours: i64| {
        (time::OffsetDateTime::now_utc() - time::Duration::hours(hours))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    for (account, hours, heartbeats) in [("bob", 30, 2), ("carol", 0, 3)] {
        let (status, body) = stack
            .internal(
                "/v1/licenses/PL721/usage",
                json!({"account": account, "at": at(hours)}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        eventually("that day's heartbeat", 30, || async {
            let sent = calls(&sim.requests().await, "/license/heartbeat");
            (sent.len() == heartbeats).then_some(())
        })
        .await;
    }
    // Restarting the projector sends nothing again for a day already acknowledged.
    eventually("the acknowledgements", 30, || async {
        let n = stack
            .event_types("license-PL721")
            .await
            .iter()
            .filter(|t| *t == "heartbeat_acknowledged")
            .count();
        (n == 2).then_some(())
    })
    .await;
    stack.projector = None;
    stack.start_projector(&sim.url);
    // The restarted projector works (another license's heartbeat goes out and is acknowledged)
    // and owes PL721 nothing.
    sim.put("PL722", "claimed").await;
    stack
        .internal("/v1/licenses/PL722/activation", json!({}))
        .await;
    stack.wait_event("license-PL722", "activated").await;
    stack
        .internal("/v1/licenses/PL722/usage", json!({"account": "dave"}))
        .await;
    stack
        .wait_event("license-PL722", "heartbeat_acknowledged")
        .await;
    stack.outbound_settled("PL721").await;
    let heartbeats: Vec<Value> = calls(&sim.requests().await, "/license/heartbeat")
        .into_iter()
        .filter(|r| r["body"]["heartbeatInfo"]["thirdPartyAccount"] != "dave")
        .collect();
    assert_eq!(heartbeats.len(), 3, "one per day, across a restart");
    assert_eq!(
        heartbeats[1]["body"]["heartbeatInfo"]["thirdPartyAccount"],
        "bob"
    );
    assert_eq!(
        heartbeats[2]["body"]["heartbeatInfo"]["thirdPartyAccount"],
        "carol"
    );
}

#[tokio::test]
async fn a_call_that_times_out_is_retried() {
    let sim = Simulator::start();
    sim.put("PL705", "claimed").await;
    sim.fault(json!({"hang": true, "count": 1})).await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector_with(&sim.url, &[("LICENSING_KOOGALLERY_TIMEOUT_MS", "500")]);
    stack
        .internal("/v1/licenses/PL705/activation", json!({}))
        .await;
    stack.wait_event("license-PL705", "activated").await;
    let failed = stack
        .events("license-PL705")
        .await
        .into_iter()
        .find(|e| e.event_type == "activation_failed")
        .expect("the timeout is recorded");
    assert_eq!(
        (
            failed.payload["failure"]["code"].as_str(),
            failed.payload["failure"]["retryable"].as_bool()
        ),
        (Some("timeout"), Some(true))
    );
}

#[tokio::test]
async fn a_heartbeat_refused_for_good_ends_that_day_with_one_event_and_no_more_calls() {
    let sim = Simulator::start();
    sim.put("PL740", "claimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    stack
        .internal("/v1/licenses/PL740/activation", json!({}))
        .await;
    stack.wait_event("license-PL740", "activated").await;
    // The marketplace now says the code is not activated (92020011) to every heartbeat.
    sim.put("PL740", "claimed").await;
    let (status, body) = stack
        .internal(
            "/v1/licenses/PL740/usage",
            json!({"account": "dave", "ip": "203.0.113.7"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    stack.wait_event("license-PL740", "heartbeat_failed").await;
    // Activated, nothing else owed: the day's heartbeat job is the only one there was.
    eventually("the day's heartbeat job to end", 30, || async {
        (stack.outbound_jobs("PL740").await == 0).then_some(())
    })
    .await;
    let events = stack.events("license-PL740").await;
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "heartbeat_failed")
        .collect();
    assert_eq!(failed.len(), 1, "one terminal event");
    assert_eq!(failed[0].payload["failure"]["code"], "92020011");
    assert_eq!(failed[0].payload["failure"]["retryable"], false);
    let heartbeats = calls(&sim.requests().await, "/license/heartbeat");
    assert_eq!(heartbeats.len(), 1, "no further call that day");
    assert_eq!(
        heartbeats[0]["body"]["heartbeatInfo"]["ip"], "203.0.113.7",
        "the usage report's IP address is sent"
    );
}

#[tokio::test]
async fn a_lock_held_on_the_view_table_makes_the_projector_not_ready_and_never_hangs_a_query() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    stack.start_projector_with(&sim.url, &[("LICENSING_READY_MAX_LAG_SECONDS", "2")]);
    let ready = || async {
        let response = stack
            .http
            .get(stack.query_url("/readyz"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    eventually("the projector to be ready", 30, || async {
        (ready().await.0 == 200).then_some(())
    })
    .await;
    let mut locker = stack.store.client().await.unwrap();
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE license_views IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    assert_eq!(
        code(&stack.callback(&support::status("PL750", "FREEZE")).await),
        "000000"
    );
    let why = eventually("the projector to say it is not ready", 60, || async {
        let (status, text) = ready().await;
        (status == 503).then_some(text)
    })
    .await;
    assert!(why.contains("license_views"), "{why}");
    assert!(
        !why.to_lowercase().contains("lock"),
        "no database text: {why}"
    );
    let started = std::time::Instant::now();
    let answer = stack
        .http
        .get(stack.query_url("/v1/licenses/PL750"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "a query is answered, not held: {} after {:?}",
        answer.status(),
        started.elapsed()
    );
    lock.rollback().await.unwrap();
    eventually("the projector to be ready again", 60, || async {
        (ready().await.0 == 200).then_some(())
    })
    .await;
    let license = eventually("the view to catch up", 30, || async {
        let v = stack.view("PL750").await;
        (v["status"] == "frozen").then_some(v)
    })
    .await;
    assert_eq!(license["license"], "PL750");
}

#[tokio::test]
async fn the_query_api_answers_as_its_openapi_document_says() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    let keys = std::env::temp_dir().join(format!("keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&keys).unwrap();
    let key = openssl_key(&keys, "entitlement");
    stack.start_projector_with(
        &sim.url,
        &[("LICENSING_ENTITLEMENT_KEYS", &key.display().to_string())],
    );
    assert_eq!(
        code(
            &stack
                .callback(&support::renew("PL790", "CS790", "20270101000000", false))
                .await
        ),
        "000000"
    );
    stack.wait_event("license-PL790", "renewed").await;
    // The internal API's operations share the document but not the listener.
    schemathesis(
        &stack.query_url(""),
        &["--exclude-path-regex", "/(activation|usage|resolve)$"],
    );
}

#[tokio::test]
async fn an_activation_never_claimed_is_parked_after_the_claim_days() {
    let sim = Simulator::start();
    sim.put("PL795", "unclaimed").await;
    let mut stack = Stack::start(&[]).await;
    // Zero days: parked at the first retry after the first 92020004.
    stack.start_projector_with(&sim.url, &[("LICENSING_ACTIVATION_CLAIM_DAYS", "0")]);
    stack
        .internal("/v1/licenses/PL795/activation", json!({}))
        .await;
    stack.wait_event("license-PL795", "activation_failed").await;
    let failed = stack
        .events("license-PL795")
        .await
        .into_iter()
        .find(|e| e.event_type == "activation_failed")
        .unwrap();
    assert_eq!(failed.payload["failure"]["code"], "92020004");
    assert_eq!(failed.payload["failure"]["retryable"], false);
    let license = eventually("the view to show the activation parked", 30, || async {
        let v = stack.view("PL795").await;
        (v["status"] == "activation_failed").then_some(v)
    })
    .await;
    assert!(
        license["activation"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("parked")),
        "{license}"
    );
    eventually("the activate job to end", 30, || async {
        (stack.outbound_jobs("PL795").await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn one_correlation_id_follows_a_request_to_the_marketplace_and_back() {
    let sim = Simulator::start();
    sim.put("PL798", "claimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    let post = |path: &'static str, body: Value, request: uuid::Uuid| {
        let http = stack.http.clone();
        let url = stack.internal_url(path);
        async move {
            let response = http
                .post(url)
                .bearer_auth(TOKEN)
                .header("X-Request-Id", request.to_string())
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    let activation = uuid::Uuid::new_v4();
    post("/v1/licenses/PL798/activation", json!({}), activation).await;
    stack.wait_event("license-PL798", "activated").await;
    let usage = uuid::Uuid::new_v4();
    post(
        "/v1/licenses/PL798/usage",
        json!({"account": "alice"}),
        usage,
    )
    .await;
    stack
        .wait_event("license-PL798", "heartbeat_acknowledged")
        .await;
    let correlation = |event_type: &str, events: &[licensing_store::RecordedEvent]| {
        events
            .iter()
            .find(|e| e.event_type == event_type)
            .and_then(|e| e.metadata.correlation_id)
    };
    let events = stack.events("license-PL798").await;
    // The request, the call's outcome (a command from the outbound worker), and their events.
    assert_eq!(
        correlation("activation_requested", &events),
        Some(activation)
    );
    assert_eq!(correlation("activated", &events), Some(activation));
    assert_eq!(correlation("usage_recorded", &events), Some(usage));
    assert_eq!(correlation("heartbeat_acknowledged", &events), Some(usage));
}
