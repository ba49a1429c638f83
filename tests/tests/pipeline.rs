//! The callback pipeline end to end: the real ingress and processor binaries, PostgreSQL, RabbitMQ.

mod support;

use support::*;

#[tokio::test]
async fn a_renewal_is_applied_once_and_a_repeat_gets_the_same_answer() {
    let stack = Stack::start(&[]).await;
    let body = renew("PL100", "CS1", "20271231235959", false);
    let first = stack.callback(&body).await;
    assert_eq!(code(&first), "000000", "{first}");
    assert_eq!(
        stack.event_types("license-PL100").await,
        ["registered", "renewed"]
    );

    // The marketplace retries with a fresh nonce and signature: same answer, nothing appended.
    let again = stack.callback(&body).await;
    assert_eq!(code(&again), "000000");
    assert_eq!(stack.event_count().await, 2);

    let events = stack.events("license-PL100").await;
    let renewed = &events[1];
    assert_eq!(renewed.payload["expire"]["raw"], "20271231235959");
    assert_eq!(renewed.metadata.source.as_deref(), Some("koogallery"));
    assert!(renewed.metadata.correlation_id.is_some());
}

#[tokio::test]
async fn the_correlation_id_follows_the_request_into_the_events() {
    let stack = Stack::start(&[]).await;
    let body = status("PL101", "FREEZE");
    let request_id = uuid::Uuid::new_v4();
    let response = stack
        .http
        .post(format!(
            "{}?{}",
            stack.callback_url(),
            fresh_query(KEY, &body)
        ))
        .header("Content-Type", "application/json")
        .header("X-Request-Id", request_id.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-request-id"],
        request_id.to_string().as_str()
    );
    let events = stack.events("license-PL101").await;
    assert_eq!(events.len(), 3, "registered, frozen, access_changed");
    assert!(
        events
            .iter()
            .all(|e| e.metadata.correlation_id == Some(request_id))
    );
}

#[tokio::test]
async fn each_activity_in_each_state() {
    let stack = Stack::start(&[]).await;
    let l = "PL102";
    let steps: &[(String, &[&str])] = &[
        (status(l, "FREEZE"), &["registered", "frozen"]),
        (status(l, "FREEZE"), &["registered", "frozen"]),
        (
            renew(l, "CS2", "20280101000000", false),
            &["registered", "frozen", "renewed"],
        ),
        (
            status(l, "UNFREEZE"),
            &["registered", "frozen", "renewed", "unfrozen"],
        ),
        (
            status(l, "UNFREEZE"),
            &["registered", "frozen", "renewed", "unfrozen"],
        ),
        (
            renew(l, "CS3", "20270101000000", false)
                .replace("RENEWAL", "UNSUBSCRIBE_RENEWAL_PERIOD"),
            &[
                "registered",
                "frozen",
                "renewed",
                "unfrozen",
                "renewal_cancelled",
            ],
        ),
        (
            release(l),
            &[
                "registered",
                "frozen",
                "renewed",
                "unfrozen",
                "renewal_cancelled",
                "released",
            ],
        ),
        (
            release(l),
            &[
                "registered",
                "frozen",
                "renewed",
                "unfrozen",
                "renewal_cancelled",
                "released",
            ],
        ),
        (
            status(l, "FREEZE"),
            &[
                "registered",
                "frozen",
                "renewed",
                "unfrozen",
                "renewal_cancelled",
                "released",
                "callback_ignored",
            ],
        ),
    ];
    for (i, (body, expected)) in steps.iter().enumerate() {
        let answer = stack.callback(body).await;
        assert_eq!(code(&answer), "000000", "step {i}: {answer}");
        // The callbacks' own events; the access modes they cause are checked below.
        let types: Vec<String> = stack
            .event_types(&format!("license-{l}"))
            .await
            .into_iter()
            .filter(|t| t != "access_changed")
            .collect();
        assert_eq!(types, *expected, "after step {i}: {body}");
    }
    let events = stack.events(&format!("license-{l}")).await;
    let cancelled = events
        .iter()
        .find(|e| e.event_type == "renewal_cancelled")
        .unwrap();
    assert_eq!(
        cancelled.payload["expire"]["raw"], "20270101000000",
        "an earlier expiry is applied as sent (D12)"
    );
    // Never activated here: pending, frozen, pending again on UNFREEZE, released.
    let modes: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.event_type == "access_changed")
        .map(|e| {
            (
                e.payload["from"].as_str().unwrap(),
                e.payload["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [
            ("pending", "frozen"),
            ("frozen", "pending"),
            ("pending", "released")
        ]
    );
    let versions: Vec<i64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn test_traffic_goes_to_the_sandbox_only() {
    let stack = Stack::start(&[]).await;
    assert_eq!(
        code(
            &stack
                .callback(&renew("PL103", "CS1", "20270101000000", false))
                .await
        ),
        "000000"
    );
    let probe = renew("PL103", "CS9", "20990101000000", true);
    for _ in 0..3 {
        // The daily probe replays the same saved case: the same answer every time.
        assert_eq!(code(&stack.callback(&probe).await), "000000");
    }
    assert_eq!(
        stack.event_types("license-PL103").await,
        ["registered", "renewed"],
        "the real license is untouched"
    );
    assert_eq!(
        stack.event_types("test-license-PL103").await,
        ["registered", "renewed"]
    );
    assert_eq!(
        stack.events("license-PL103").await[1].payload["expire"]["raw"],
        "20270101000000"
    );
}

#[tokio::test]
async fn strict_mode_answers_000003_for_unknown_licenses() {
    let stack = Stack::start(&[("LICENSING_UNKNOWN_LICENSE", "strict")]).await;
    let answer = stack.callback(&status("PL104", "FREEZE")).await;
    assert_eq!(code(&answer), "000003", "{answer}");
    assert_eq!(stack.event_count().await, 0);
    // The marketplace's probes use made-up codes with testFlag=1: always answered 000000.
    let probe = renew("PLPROBE104", "CSPROBE", "20270101000000", true);
    for _ in 0..2 {
        let answer = stack.callback(&probe).await;
        assert_eq!(code(&answer), "000000", "{answer}");
    }
    assert_eq!(
        stack.event_types("test-license-PLPROBE104").await,
        ["registered", "renewed"]
    );
}

#[tokio::test]
async fn a_callback_with_a_repeated_key_is_refused_and_refusals_by_verification_say_nothing_more() {
    let stack = Stack::start(&[]).await;
    let body = r#"{"activity":"updateLicenseCodeStatus","license":"PL106","status":"FREEZE","status":"UNFREEZE","testFlag":"0"}"#;
    let answer = stack.callback(body).await;
    assert_eq!(code(&answer), "000002", "{answer}");
    assert_eq!(stack.event_count().await, 0);

    let good = status("PL106", "FREEZE");
    let stale = query_at(KEY, &good, now_ms() - 600_000);
    let wrong_key = fresh_query("anotherKey000000", &good);
    let mut messages = Vec::new();
    for query in [stale, wrong_key] {
        let answer = stack
            .callback_signed(&good, &query, "application/json")
            .await;
        assert_eq!(code(&answer), "000001", "{answer}");
        messages.push(answer["resultMsg"].as_str().unwrap().to_owned());
    }
    // A replayed nonce, correctly signed over another body: refused by the processor.
    let (key, nonce, now) = (
        koogallery::signature::AccessKey::new(KEY),
        uuid::Uuid::new_v4().simple().to_string(),
        now_ms().to_string(),
    );
    let query = koogallery::signature::signed_query(&key, &nonce, &now, good.as_bytes());
    assert_eq!(
        code(
            &stack
                .callback_signed(&good, &query, "application/json")
                .await
        ),
        "000000"
    );
    let other = status("PL106", "UNFREEZE");
    let query = koogallery::signature::signed_query(&key, &nonce, &now, other.as_bytes());
    let replay = stack
        .callback_signed(&other, &query, "application/json")
        .await;
    assert_eq!(code(&replay), "000001", "{replay}");
    messages.push(replay["resultMsg"].as_str().unwrap().to_owned());
    assert!(
        messages.iter().all(|m| m == &messages[0]),
        "one generic message: {messages:?}"
    );
}

#[tokio::test]
async fn every_bad_input_gets_its_code_and_appends_nothing() {
    let stack = Stack::start(&[("LICENSING_MAX_BODY_BYTES", "2048")]).await;
    let good = renew("PL105", "CS1", "20270101000000", false);
    let q = fresh_query(KEY, &good);
    let cases: Vec<(&str, String, String, &str, &str)> = vec![
        (
            "no signature",
            good.clone(),
            q.split('&').skip(1).collect::<Vec<_>>().join("&"),
            "application/json",
            "000001",
        ),
        (
            "wrong key",
            good.clone(),
            fresh_query("anotherKey", &good),
            "application/json",
            "000001",
        ),
        (
            "body changed after signing",
            good.replace("2027", "2028"),
            q.clone(),
            "application/json",
            "000001",
        ),
        (
            "stale timestamp",
            good.clone(),
            query_at(KEY, &good, now_ms() - 120_000),
            "application/json",
            "000001",
        ),
        (
            "future timestamp",
            good.clone(),
            query_at(KEY, &good, now_ms() + 120_000),
            "application/json",
            "000001",
        ),
        (
            "malformed timestamp",
            good.clone(),
            q.replace("timestamp=", "timestamp=x"),
            "application/json",
            "000001",
        ),
        (
            "wrong content type",
            good.clone(),
            fresh_query(KEY, &good),
            "text/plain",
            "000002",
        ),
        (
            "malformed JSON",
            "{\"activity\":".to_owned(),
            fresh_query(KEY, "{\"activity\":"),
            "application/json",
            "000002",
        ),
        (
            "missing field",
            good.replace(r#""orderId":"CS1","#, ""),
            fresh_query(KEY, &good.replace(r#""orderId":"CS1","#, "")),
            "application/json",
            "000002",
        ),
        (
            "over-long field",
            good.replace("CS1", &"C".repeat(65)),
            fresh_query(KEY, &good.replace("CS1", &"C".repeat(65))),
            "application/json",
            "000002",
        ),
        (
            "unknown activity",
            good.replace("refreshLicenseCode", "newInstance"),
            fresh_query(KEY, &good.replace("refreshLicenseCode", "newInstance")),
            "application/json",
            "000002",
        ),
        (
            "invalid expireTime",
            good.replace("20270101000000", "20271301000000"),
            fresh_query(KEY, &good.replace("20270101000000", "20271301000000")),
            "application/json",
            "000002",
        ),
        (
            "license with a space",
            good.replace("PL105", "PL 105"),
            fresh_query(KEY, &good.replace("PL105", "PL 105")),
            "application/json",
            "000002",
        ),
    ];
    for (name, body, query, content_type, expected) in cases {
        let answer = stack.callback_signed(&body, &query, content_type).await;
        assert_eq!(code(&answer), expected, "{name}: {answer}");
        assert!(
            !answer["resultMsg"].as_str().unwrap_or_default().is_empty(),
            "{name}: a reason is given"
        );
    }
    let big = format!(
        r#"{{"activity":"releaseLicenseCode","license":"PL105","pad":"{}"}}"#,
        "x".repeat(4000)
    );
    let answer = stack
        .callback_signed(&big, &fresh_query(KEY, &big), "application/json")
        .await;
    assert_eq!(code(&answer), "000002", "oversized body: {answer}");

    // A GET on the callback URL is still answered the KooGallery way.
    let response = stack.http.get(stack.callback_url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(code(&response.json().await.unwrap()), "000002");

    assert_eq!(stack.event_count().await, 0, "nothing was appended");
}

#[tokio::test]
async fn a_replayed_nonce_is_refused() {
    let stack = Stack::start(&[]).await;
    let body = status("PL106", "FREEZE");
    let query = fresh_query(KEY, &body);
    assert_eq!(
        code(
            &stack
                .callback_signed(&body, &query, "application/json")
                .await
        ),
        "000000"
    );
    let replay = stack
        .callback_signed(&body, &query, "application/json")
        .await;
    assert_eq!(code(&replay), "000001", "{replay}");
    assert_eq!(
        stack.event_count().await,
        3,
        "registered, frozen, access_changed"
    );
}
