//! The evidence log end to end (D20): every callback request and every open-API call kept byte
//! for byte (the hash of what was sent equals the hash of what is stored), refusals rate-limited
//! and counted, `000004` answers linked to their decision, and the three-way ledger.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;

/// The exchanges whose body names `license`, once there are at least `count`.
async fn exchanges_of(stack: &Stack, license: &str, count: usize) -> Vec<Value> {
    eventually(&format!("{count} exchanges of {license}"), 30, || async {
        let listed = stack
            .query_ok(&format!("/v1/exchanges?license={license}"))
            .await;
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= count).then_some(items)
    })
    .await
}

/// `count` posts of one forged request, `concurrent` at a time: each answer's code and how long it
/// took.
fn forged_flood<'a>(
    stack: &'a Stack,
    query: &'a str,
    body: &'a str,
    count: usize,
    concurrent: usize,
) -> impl futures_util::Stream<Item = (String, std::time::Duration)> + 'a {
    futures_util::stream::iter(0..count)
        .map(move |_| {
            let (http, url) = (
                stack.http.clone(),
                format!("{}?{query}", stack.callback_url()),
            );
            let body = body.to_owned();
            async move {
                let sent = std::time::Instant::now();
                let answer: Value = http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                (code(&answer).to_owned(), sent.elapsed())
            }
        })
        .buffer_unordered(concurrent)
}

async fn exchange(stack: &Stack, id: &Value) -> Value {
    stack
        .query_ok(&format!("/v1/exchanges/{}", id.as_str().unwrap()))
        .await
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Posts `body` with `query` and a known request id; returns the answer.
async fn post(stack: &Stack, query: &str, body: Vec<u8>) -> Value {
    let response = stack
        .http
        .post(format!("{}?{query}", stack.callback_url()))
        .header("Content-Type", "application/json")
        .header("User-Agent", "KooGallery-Test/1.0")
        .header("X-Forwarded-For", "203.0.113.7")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Checks that the stored request is exactly `sent`, with its hash.
fn assert_stored(stored: &Value, sent: &[u8]) {
    let request = &stored["request"];
    let bytes = STANDARD
        .decode(request["base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, sent, "{stored}");
    assert_eq!(request["sha256"], sha256(sent));
    assert_eq!(stored["request_sha256"], sha256(sent));
}

#[tokio::test]
async fn every_callback_request_is_kept_byte_for_byte_with_our_answer() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[("LICENSING_MAX_BODY_BYTES", "4096")]).await;
    stack.start_projector(&sim.url);

    // Accepted: stored by the processor with its decision.
    let body = renew("PL810", "CS810", "20301231235959", false);
    let answer = stack.callback(&body).await;
    assert_eq!(code(&answer), "000000");
    let listed = exchanges_of(&stack, "PL810", 1).await;
    let stored = exchange(&stack, &listed[0]["exchange_id"]).await;
    assert_stored(&stored, body.as_bytes());
    assert_eq!(stored["direction"], "in");
    assert_eq!(stored["outcome"], "000000");
    assert_eq!(stored["request"]["meta"]["verification"], "valid");
    assert_eq!(stored["request"]["meta"]["key_index"], 0);
    assert_eq!(stored["request"]["json"]["license"], "PL810");
    assert!(
        stored["request"]["meta"]["query"]
            .as_str()
            .unwrap()
            .contains("signature=")
    );
    assert_eq!(stored["decision"]["resultCode"], "000000");
    let response_bytes = STANDARD
        .decode(stored["response"]["base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&response_bytes).unwrap(),
        answer,
        "the stored answer is the one sent"
    );
    // The events name the exchange that caused them.
    let events = stack.events("license-PL810").await;
    assert!(
        events
            .iter()
            .all(|e| e.metadata.exchange_id.map(|id| id.to_string())
                == stored["exchange_id"].as_str().map(str::to_owned))
    );

    // A bad signature: refused at the ingress, handed over, stored with the reason.
    let body = renew("PL811", "CS811", "20301231235959", false);
    let forged = fresh_query("anotherAccessKey0123456789xyz", &body);
    assert_eq!(
        code(&post(&stack, &forged, body.clone().into()).await),
        "000001"
    );
    let listed = exchanges_of(&stack, "PL811", 1).await;
    let stored = exchange(&stack, &listed[0]["exchange_id"]).await;
    assert_stored(&stored, body.as_bytes());
    assert_eq!(
        (
            stored["outcome"].as_str(),
            stored["request"]["meta"]["verification"].as_str(),
            stored["request"]["meta"]["refusal"].as_str(),
        ),
        (Some("000001"), Some("mismatch"), Some("verification"))
    );
    assert_eq!(
        stored["request"]["meta"]["user_agent"],
        "KooGallery-Test/1.0"
    );
    assert_eq!(stored["request"]["meta"]["forwarded_for"], "203.0.113.7");
    assert!(stored["request"]["meta"]["peer"].is_string());
    assert!(stack.events("license-PL811").await.is_empty());

    // A stale timestamp.
    let body = renew("PL812", "CS812", "20301231235959", false);
    let stale = query_at(KEY, &body, now_ms() - 3_600_000);
    assert_eq!(
        code(&post(&stack, &stale, body.clone().into()).await),
        "000001"
    );
    let stored = exchange(
        &stack,
        &exchanges_of(&stack, "PL812", 1).await[0]["exchange_id"],
    )
    .await;
    assert_stored(&stored, body.as_bytes());
    assert_eq!(stored["request"]["meta"]["verification"], "outside_window");

    // An oversized body: stored truncated at the limit, with its real size.
    let padding = "x".repeat(10_000);
    let body =
        format!(r#"{{"activity":"refreshLicenseCode","license":"PL813","pad":"{padding}"}}"#);
    let answer = post(&stack, &fresh_query(KEY, &body), body.clone().into()).await;
    assert_eq!(code(&answer), "000002");
    // A truncated body is not JSON: it names no license, and is found by its outcome.
    let refused = eventually("the oversized request's record", 30, || async {
        let listed = stack
            .query_ok("/v1/exchanges?outcome=000002&direction=in")
            .await;
        listed["items"].get(0).cloned()
    })
    .await;
    assert_eq!(refused["license"], Value::Null);
    let stored = exchange(&stack, &refused["exchange_id"]).await;
    assert_stored(&stored, &body.as_bytes()[..4096]);
    assert_eq!(stored["request"]["size"], body.len());
    assert_eq!(stored["request"]["truncated"], true);
    assert_eq!(stored["request"]["json"], Value::Null);

    // 000004: the processor is stopped, the answer goes out before the decision; the decision
    // joins the same record when the processor comes back.
    stack.processor.take();
    let body = renew("PL814", "CS814", "20301231235959", false);
    let answer = stack.callback(&body).await;
    assert_eq!(code(&answer), "000004");
    stack.start_processor();
    stack.wait_event("license-PL814", "renewed").await;
    let stored = eventually("the 000004 record with its decision", 30, || async {
        let listed = stack.query_ok("/v1/exchanges?license=PL814").await;
        let id = listed["items"].get(0)?["exchange_id"].clone();
        let stored = exchange(&stack, &id).await;
        (stored["decision"]["resultCode"] == "000000").then_some(stored)
    })
    .await;
    assert_stored(&stored, body.as_bytes());
    assert_eq!(stored["outcome"], "000004", "what we answered");
    assert_eq!(stored["response"]["json"]["resultCode"], "000004");
    let events = stack.events("license-PL814").await;
    assert_eq!(
        events[0]
            .metadata
            .exchange_id
            .map(|id| id.to_string())
            .as_deref(),
        stored["exchange_id"].as_str(),
        "the answer and its later outcome are linked"
    );
    assert_eq!(
        stack.query_ok("/v1/exchanges?license=PL814").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "one request, one record"
    );
}

/// Reads a counter from a Prometheus text page (0 when absent).
fn counter(page: &str, name: &str, label: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_flood_of_forged_callbacks_is_answered_in_time_stored_up_to_the_limit_and_counted() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[("LICENSING_EVIDENCE_REFUSED_PER_SECOND", "20")]).await;
    stack.start_projector(&sim.url);
    let started = std::time::Instant::now();
    let body = renew("PL820", "CS820", "20301231235959", false);
    let forged = fresh_query("anotherAccessKey0123456789xyz", &body);
    let flood = forged_flood(&stack, &forged, &body, 2000, 32);
    // Valid callbacks meanwhile.
    let valid = async {
        let mut answers = Vec::new();
        for i in 0..20 {
            let license = format!("PL82{i:02}");
            answers.push(
                code(
                    &stack
                        .callback(&renew(&license, "CS82", "20301231235959", false))
                        .await,
                )
                .to_owned(),
            );
        }
        answers
    };
    let (answers, valid): (Vec<(String, std::time::Duration)>, Vec<String>) =
        tokio::join!(flood.collect(), valid);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(answers.iter().all(|(c, _)| c == "000001"));
    let slowest = answers.iter().map(|(_, d)| *d).max().unwrap();
    assert!(slowest.as_secs_f64() < 5.0, "slowest answer {slowest:?}");
    assert!(valid.iter().all(|c| c == "000000"), "{valid:?}");

    // Everything handed over is stored; the rest is counted. A record is counted once its
    // hand-over has finished, after its answer, so the figures are read once every one of the
    // 2,000 is counted one way or the other.
    let metrics_url = stack.internal_url("/metrics");
    let stored = eventually(
        "every record counted, the handed over ones stored",
        30,
        || async {
            let page = stack
                .http
                .get(&metrics_url)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let handed = counter(
                &page,
                "licensing_evidence_handed_over_total",
                "verification",
            );
            let dropped = counter(&page, "licensing_evidence_dropped_total", "rate_limited");
            let failed = counter(
                &page,
                "licensing_evidence_dropped_total",
                "hand_over_failed",
            );
            assert_eq!(failed, 0.0, "hand-overs failed with the broker up");
            let listed = stack
                .query_ok("/v1/exchanges?license=PL820&limit=1000")
                .await;
            let stored = listed["items"].as_array().unwrap().len() as f64;
            (handed + dropped == 2000.0 && stored == handed).then_some(stored)
        },
    )
    .await;
    // A token bucket of 20/s with a burst of 20.
    let limit = 20.0 * elapsed + 20.0;
    assert!(
        stored <= limit,
        "stored {stored} > {limit} over {elapsed:.1} s"
    );
    assert!(stored >= 20.0, "stored {stored}");
}

async fn internal_post(stack: &Stack, path: &str, body: Value, request: uuid::Uuid) {
    let response = stack
        .http
        .post(stack.internal_url(path))
        .bearer_auth(TOKEN)
        .header("X-Request-Id", request.to_string())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test]
async fn every_open_api_attempt_is_kept_with_its_answer_or_its_error() {
    let sim = Simulator::start();
    sim.put("PL830", "unclaimed").await;
    let mut stack = Stack::start(&[]).await;
    // The simulator is both hosts: a fault on the first attempt sends the call to the fallback.
    stack.start_projector_with(
        &sim.url,
        &[
            ("LICENSING_KOOGALLERY_FALLBACK_URL", &sim.url),
            ("LICENSING_KOOGALLERY_TIMEOUT_MS", "500"),
        ],
    );
    let activation = uuid::Uuid::new_v4();
    internal_post(
        &stack,
        "/v1/licenses/PL830/activation",
        json!({}),
        activation,
    )
    .await;
    stack
        .wait_event("license-PL830", "activation_awaiting_claim")
        .await;
    sim.fault(json!({"status": 503, "count": 1})).await;
    sim.put("PL830", "claimed").await;
    stack.wait_event("license-PL830", "activated").await;
    sim.fault(json!({"hang": true, "count": 1})).await;
    let usage = uuid::Uuid::new_v4();
    internal_post(
        &stack,
        "/v1/licenses/PL830/usage",
        json!({"account": "alice"}),
        usage,
    )
    .await;
    stack
        .wait_event("license-PL830", "heartbeat_acknowledged")
        .await;

    let out = eventually("the outbound exchanges", 30, || async {
        let listed = stack
            .query_ok("/v1/exchanges?license=PL830&direction=out")
            .await;
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .any(|i| i["summary"].as_str().unwrap_or("").starts_with("heartbeat"))
            .then_some(items)
    })
    .await;
    let outcomes: Vec<&str> = out.iter().map(|i| i["outcome"].as_str().unwrap()).collect();
    for expected in ["awaiting_claim", "retry", "success", "timeout"] {
        assert!(outcomes.contains(&expected), "{expected} in {outcomes:?}");
    }
    for item in &out {
        let stored = exchange(&stack, &item["exchange_id"]).await;
        let meta = &stored["request"]["meta"];
        assert_eq!(meta["method"], "POST");
        let sent = STANDARD
            .decode(stored["request"]["base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(stored["request"]["sha256"], sha256(&sent));
        assert_eq!(stored["request"]["json"]["license"], "PL830");
        let headers = meta["headers"].as_array().unwrap();
        assert!(
            headers
                .iter()
                .any(|h| h[0] == "Authorization" && h[1].as_str().unwrap().contains("Signature=")),
            "{headers:?}"
        );
        assert!(
            !stored.to_string().contains(SIM_SK),
            "the SK is never stored"
        );
        match stored["outcome"].as_str().unwrap() {
            "timeout" => {
                assert_eq!(stored["response"]["bytes"], Value::Null);
                assert_eq!(stored["response"]["meta"]["error_kind"], "timeout");
                assert_eq!(meta["host"], "primary");
            }
            "retry" => {
                assert_eq!(stored["response"]["meta"]["status"], 503);
                assert_eq!(meta["host"], "primary");
            }
            _ => {
                assert_eq!(stored["response"]["meta"]["status"], 200);
                let body = STANDARD
                    .decode(stored["response"]["base64"].as_str().unwrap())
                    .unwrap();
                assert_eq!(stored["response"]["sha256"], sha256(&body));
            }
        }
        // One correlation id from the internal request to the call.
        let expected = if meta["call"] == "activate" {
            activation
        } else {
            usage
        };
        assert_eq!(stored["correlation_id"], expected.to_string(), "{stored}");
    }
    // The outcome events name the exchange and carry the request's correlation id.
    let events = stack.events("license-PL830").await;
    let activated = events.iter().find(|e| e.event_type == "activated").unwrap();
    let success = out
        .iter()
        .find(|i| {
            i["outcome"] == "success" && i["summary"].as_str().unwrap().starts_with("activate")
        })
        .unwrap();
    assert_eq!(
        activated
            .metadata
            .exchange_id
            .map(|i| i.to_string())
            .as_deref(),
        success["exchange_id"].as_str()
    );
    assert_eq!(activated.metadata.correlation_id, Some(activation));
    let fallback = exchange(&stack, &success["exchange_id"]).await;
    assert_eq!(fallback["request"]["meta"]["host"], "fallback");
}

#[tokio::test]
async fn the_ledger_shows_what_the_marketplace_said_what_we_concluded_and_what_we_told_it() {
    let sim = Simulator::start();
    sim.put("PL840", "claimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    internal_post(
        &stack,
        "/v1/licenses/PL840/activation",
        json!({}),
        uuid::Uuid::new_v4(),
    )
    .await;
    stack.wait_event("license-PL840", "activated").await;
    internal_post(
        &stack,
        "/v1/licenses/PL840/usage",
        json!({"account": "alice"}),
        uuid::Uuid::new_v4(),
    )
    .await;
    stack
        .wait_event("license-PL840", "heartbeat_acknowledged")
        .await;
    for body in [
        renew("PL840", "CS840", "20311231235959", false),
        status("PL840", "FREEZE"),
        status("PL840", "UNFREEZE"),
        release("PL840"),
    ] {
        assert_eq!(code(&stack.callback(&body).await), "000000");
    }
    stack.wait_event("license-PL840", "released").await;

    let ledger = eventually("the whole ledger", 30, || async {
        let ledger = stack.query_ok("/v1/licenses/PL840/ledger").await;
        let entries = ledger["entries"].as_array().cloned().unwrap_or_default();
        (entries
            .iter()
            .filter(|e| e["kind"] == "callback_answer")
            .count()
            == 4)
            .then_some(entries)
    })
    .await;
    let kinds: Vec<(&str, &str)> = ledger
        .iter()
        .map(|e| (e["side"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    let expected = [
        ("we_concluded", "registered"),
        ("we_concluded", "activation_requested"),
        ("we_told", "activate_request"),
        ("marketplace_said", "activate_answer"),
        ("we_concluded", "activated"),
        ("we_concluded", "access_changed"),
        ("we_concluded", "usage_recorded"),
        ("we_told", "heartbeat_request"),
        ("marketplace_said", "heartbeat_answer"),
        ("we_concluded", "heartbeat_acknowledged"),
        ("marketplace_said", "callback"),
        ("we_concluded", "renewed"),
        ("we_told", "callback_answer"),
        ("marketplace_said", "callback"),
        ("we_concluded", "frozen"),
        ("we_concluded", "access_changed"),
        ("we_told", "callback_answer"),
        ("marketplace_said", "callback"),
        ("we_concluded", "unfrozen"),
        ("we_concluded", "access_changed"),
        ("we_told", "callback_answer"),
        ("marketplace_said", "callback"),
        ("we_concluded", "released"),
        ("we_concluded", "access_changed"),
        ("we_told", "callback_answer"),
    ];
    assert_eq!(kinds, expected, "{ledger:#?}");
    // Every exchange entry names a record that is served.
    for entry in ledger.iter().filter(|e| e["kind"] != "registered") {
        let id = &entry["exchange_id"];
        if !id.is_null() {
            let stored = exchange(&stack, id).await;
            assert_eq!(stored["license"], "PL840");
        }
    }
    // A window narrows it.
    let first_callback = ledger.iter().find(|e| e["kind"] == "callback").unwrap();
    let from = first_callback["at"].as_str().unwrap();
    let narrowed = stack
        .query_ok(&format!(
            "/v1/licenses/PL840/ledger?from={}",
            urlencode(from)
        ))
        .await;
    assert_eq!(narrowed["entries"][0]["kind"], "callback", "{narrowed:#}");
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

const OPS_TOKEN: &str = "ops-token-0123456789abcdefgh";

#[tokio::test]
async fn an_activation_answer_that_disagrees_is_drift_and_a_named_operator_resolves_it() {
    let sim = Simulator::start();
    sim.put("PL850", "claimed").await;
    let tokens = format!("ops:{OPS_TOKEN},{TOKEN}");
    let mut stack = Stack::start(&[("LICENSING_API_TOKENS", &tokens)]).await;
    stack.start_projector(&sim.url);
    // A renewal tells us one expiry; the marketplace's activation answer says another.
    let answer = stack
        .callback(&renew("PL850", "CS850", "20291231235959", false))
        .await;
    assert_eq!(code(&answer), "000000");
    internal_post(
        &stack,
        "/v1/licenses/PL850/activation",
        json!({}),
        uuid::Uuid::new_v4(),
    )
    .await;
    stack.wait_event("license-PL850", "drift_detected").await;
    let drift = stack
        .events("license-PL850")
        .await
        .into_iter()
        .find(|e| e.event_type == "drift_detected")
        .unwrap();
    assert_eq!(drift.payload["expire"]["ours"]["raw"], "20291231235959");
    assert_eq!(drift.payload["expire"]["theirs"]["raw"], "20301231235959");
    assert!(drift.metadata.exchange_id.is_some(), "names the answer");
    eventually("the view to show the drift", 30, || async {
        (stack.query_ok("/v1/licenses/PL850").await["drift"] == true).then_some(())
    })
    .await;

    let resolve = |token: &'static str, body: Value| {
        let (http, url) = (
            stack.http.clone(),
            stack.internal_url("/v1/licenses/PL850/drift/resolve"),
        );
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = resolve(OPS_TOKEN, json!({"accept": "nobody", "note": "x"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_body")));
    let (status, _) = resolve(OPS_TOKEN, json!({"accept": "ours", "note": "   "})).await;
    assert_eq!(status, 400);
    let (status, _) = resolve(
        "wrong-token-0123456789abcdef",
        json!({"accept": "ours", "note": "x"}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = resolve(
        OPS_TOKEN,
        json!({"accept": "marketplace", "note": "the seller console shows 2030"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let resolved = stack
        .events("license-PL850")
        .await
        .into_iter()
        .find(|e| e.event_type == "drift_resolved")
        .unwrap();
    assert_eq!(resolved.payload["actor"], "ops");
    assert_eq!(resolved.payload["accepted"], "marketplace");
    assert_eq!(resolved.metadata.actor.as_deref(), Some("ops"));
    let view = eventually("the view to clear the drift", 30, || async {
        let view = stack.query_ok("/v1/licenses/PL850").await;
        (view["drift"] == false).then_some(view)
    })
    .await;
    assert_eq!(view["expire_time"], "20301231235959");
    // Nothing left: the bare token (named `default`) gets a clear refusal.
    let (status, body) = resolve(TOKEN, json!({"accept": "ours", "note": "again"})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("no_drift")));
}

/// Unzips `zip` with Python's zipfile (an implementation independent of ours) into `dir`.
fn unzip(zip: &[u8], dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let archive = dir.join("pack.zip");
    std::fs::write(&archive, zip).unwrap();
    let status = std::process::Command::new("python3")
        .args(["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; z.extractall(sys.argv[2])"])
        .arg(&archive)
        .arg(dir.join("unpacked"))
        .status()
        .unwrap();
    assert!(status.success(), "python's zipfile reads the pack");
}

/// Checks every hash of an unpacked pack's manifest; returns the manifest.
fn verify_manifest(unpacked: &std::path::Path) -> Value {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    for file in files {
        let bytes = std::fs::read(unpacked.join(file["path"].as_str().unwrap())).unwrap();
        assert_eq!(file["sha256"], sha256(&bytes), "{file}");
        assert_eq!(file["bytes"], bytes.len());
    }
    // Every other file is listed.
    let mut listed: Vec<String> = files
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut present = Vec::new();
    for entry in walk(unpacked) {
        let relative = entry
            .strip_prefix(unpacked)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative != "manifest.json" {
            present.push(relative);
        }
    }
    present.sort();
    assert_eq!(listed, present);
    manifest
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A headless Chromium screenshot of `html`, saved at `png`.
fn screenshot(html: &std::path::Path, png: &std::path::Path) {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a Chromium (Debian package chromium) to open report.html");
    let profile = html.parent().unwrap().join("chromium-profile");
    let output = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let image = std::fs::read(png).unwrap();
    assert!(
        image.starts_with(b"\x89PNG") && image.len() > 10_000,
        "a real screenshot, {} bytes",
        image.len()
    );
}

#[tokio::test]
async fn the_evidence_pack_holds_every_exchange_with_verified_hashes_and_no_secret() {
    let sim = Simulator::start();
    sim.put("PL860", "claimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector_with(&sim.url, &[("LICENSING_CALLBACK_KEYS", KEY)]);
    internal_post(
        &stack,
        "/v1/licenses/PL860/activation",
        json!({}),
        uuid::Uuid::new_v4(),
    )
    .await;
    stack.wait_event("license-PL860", "activated").await;
    for body in [
        renew("PL860", "CS860", "20311231235959", false),
        status("PL860", "FREEZE"),
    ] {
        assert_eq!(code(&stack.callback(&body).await), "000000");
    }
    // A forged one too: in the pack, its signature is found not valid.
    let forged_body = status("PL860", "UNFREEZE");
    let forged = fresh_query("anotherAccessKey0123456789xyz", &forged_body);
    assert_eq!(
        code(&post(&stack, &forged, forged_body.clone().into()).await),
        "000001"
    );
    exchanges_of(&stack, "PL860", 4).await;

    let response = stack
        .http
        .get(stack.query_url("/v1/licenses/PL860/evidence"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let zip = response.bytes().await.unwrap().to_vec();
    for secret in [KEY, SIM_SK, TOKEN] {
        assert!(
            !zip.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the pack holds no secret"
        );
    }
    let dir = std::env::temp_dir().join(format!("evidence-{}", uuid::Uuid::new_v4()));
    unzip(&zip, &dir);
    let unpacked = dir.join("unpacked");
    let manifest = verify_manifest(&unpacked);
    assert_eq!(manifest["license"], "PL860");
    assert!(manifest["created_at"].is_string());
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"report.html") && paths.contains(&"events.json"));
    let inbound: Vec<Value> = paths
        .iter()
        .filter(|p| p.starts_with("exchanges/") && p.ends_with("-in.json"))
        .map(|p| serde_json::from_slice(&std::fs::read(unpacked.join(p)).unwrap()).unwrap())
        .collect();
    assert_eq!(inbound.len(), 2, "the genuine callbacks: {paths:?}");
    assert!(paths.iter().any(|p| p.ends_with("-out.json")));
    let checks: Vec<(Option<bool>, Option<u64>)> = inbound
        .iter()
        .map(|e| {
            (
                e["signature_check"]["valid"].as_bool(),
                e["signature_check"]["key_index"].as_u64(),
            )
        })
        .collect();
    assert_eq!(checks, [(Some(true), Some(0)), (Some(true), Some(0))]);
    // The forged one is a refusal: apart, with its signature found not valid.
    let refused: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| p.starts_with("refusals/"))
        .collect();
    assert_eq!(refused, ["refusals/0001-in.json"]);
    let forged: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join(refused[0])).unwrap()).unwrap();
    assert_eq!(forged["refused"], true);
    assert_eq!(forged["signature_check"]["valid"], false);
    assert_eq!(forged["request"]["base64"], STANDARD.encode(&forged_body));
    let events: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("events.json")).unwrap()).unwrap();
    assert_eq!(
        events.as_array().unwrap().len(),
        stack.events("license-PL860").await.len()
    );
    let report = std::fs::read_to_string(unpacked.join("report.html")).unwrap();
    assert!(report.contains("三方账本") && report.contains("Three-way ledger"));
    assert!(
        report.contains("Refused requests / 被拒请求"),
        "refusals apart"
    );
    screenshot(
        &unpacked.join("report.html"),
        &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("evidence-report.png"),
    );

    // The same pack from the command line.
    let out = dir.join("cli.zip");
    let (status, text) = stack.tool(
        "licensing-projector",
        &["evidence", "PL860", "--out", out.to_str().unwrap()],
        &[("LICENSING_CALLBACK_KEYS", KEY)],
    );
    assert_eq!(status, 0, "{text}");
    let cli_dir = dir.join("cli");
    unzip(&std::fs::read(&out).unwrap(), &cli_dir);
    let cli_manifest = verify_manifest(&cli_dir.join("unpacked"));
    assert_eq!(cli_manifest["files"].as_array().unwrap().len(), paths.len());
    // A code without history is a clear error.
    let none = dir.join("none.zip");
    let (status, text) = stack.tool(
        "licensing-projector",
        &["evidence", "PLNONE", "--out", none.to_str().unwrap()],
        &[],
    );
    assert_eq!(status, 1, "{text}");
    assert!(text.contains("no license PLNONE"), "{text}");
}

/// Runs `licensing-processor replay ARGS` on the stack's database with `extra` settings.
fn replay(stack: &Stack, args: &[&str], extra: &[(&str, &str)]) -> (i32, String) {
    let mut all = vec!["replay"];
    all.extend(args);
    let mut env = vec![("LICENSING_CALLBACK_KEYS", KEY)];
    env.extend(extra);
    stack.tool("licensing-processor", &all, &env)
}

#[tokio::test]
async fn replaying_recorded_traffic_through_todays_code_shows_every_difference() {
    let sim = Simulator::start();
    sim.put("PL870", "claimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    // Recorded in lenient mode: callbacks for codes never activated register them.
    internal_post(
        &stack,
        "/v1/licenses/PL870/activation",
        json!({}),
        uuid::Uuid::new_v4(),
    )
    .await;
    stack.wait_event("license-PL870", "activated").await;
    let bodies = [
        renew("PL870", "CS870", "20311231235959", false),
        status("PL870", "FREEZE"),
        status("PL870", "UNFREEZE"),
        renew("PL871", "CS871", "20311231235959", false),
        status("PL871", "FREEZE"),
        renew("PL872", "CS872", "20311231235959", true),
    ];
    for body in &bodies {
        assert_eq!(code(&stack.callback(body).await), "000000");
    }
    // A repeat, a forged request and a stale one are replayed too.
    assert_eq!(code(&stack.callback(&bodies[0]).await), "000000");
    let forged = fresh_query("anotherAccessKey0123456789xyz", &bodies[1]);
    assert_eq!(
        code(&post(&stack, &forged, bodies[1].clone().into()).await),
        "000001"
    );
    exchanges_of(&stack, "PL870", 6).await;
    exchanges_of(&stack, "PL871", 2).await;

    // Same build, same settings: no difference.
    let (code_same, out) = replay(&stack, &[], &[]);
    assert_eq!(code_same, 0, "{out}");
    assert!(out.contains("8 callbacks replayed, 0 differences"), "{out}");

    // Strict mode over traffic recorded in lenient mode: PL871's callbacks now answer 000003 and
    // register nothing; PL870 (activated before) and the sandbox PL872 are unchanged.
    let (code_strict, out) = replay(&stack, &[], &[("LICENSING_UNKNOWN_LICENSE", "strict")]);
    assert_eq!(code_strict, 1, "{out}");
    let diffs: Vec<&str> = out.lines().filter(|l| l.starts_with("DIFF")).collect();
    assert!(
        diffs.iter().all(|l| l.contains("PL871")),
        "only PL871 differs: {out}"
    );
    assert!(
        diffs
            .iter()
            .any(|l| l.contains("answer 000000 recorded, 000003 now")),
        "{out}"
    );
    assert!(
        diffs.iter().any(|l| l.contains("events [registered")),
        "{out}"
    );
    // Another market time zone changes the decoded expiry of every renewal.
    let (code_zone, out) = replay(&stack, &[], &[("LICENSING_MARKET_TIME_ZONE", "+00:00")]);
    assert_eq!(code_zone, 1, "{out}");
    assert!(out.contains("renewed"), "{out}");
    // One license only: PL870 is not affected by strict mode.
    let (code_one, out) = replay(
        &stack,
        &["--license", "PL870"],
        &[("LICENSING_UNKNOWN_LICENSE", "strict")],
    );
    assert_eq!(code_one, 0, "{out}");
    // Nothing was written.
    assert_eq!(
        stack.event_types("license-PL871").await,
        ["registered", "renewed", "frozen", "access_changed"]
    );
}

#[tokio::test]
async fn the_projector_expires_evidence_older_than_the_setting_by_whole_months() {
    use licensing_store::{Direction, Exchange};
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    let now = time::OffsetDateTime::now_utc();
    let record = |days_ago: i64, license: &str| Exchange {
        id: uuid::Uuid::new_v4(),
        at: now - time::Duration::days(days_ago),
        direction: Direction::In,
        license: Some(license.to_owned()),
        sandbox: false,
        correlation_id: None,
        message_id: None,
        outcome: "000000".to_owned(),
        request: b"{}".to_vec(),
        request_size: 2,
        request_meta: json!({}),
        response: None,
        response_meta: json!({}),
        answered_at: None,
        decision: None,
    };
    let (old, recent) = (record(120, "PLOLD"), record(1, "PLNEW"));
    stack
        .store
        .ensure_evidence_partitions(old.at)
        .await
        .unwrap();
    stack
        .store
        .record_exchanges(&[old.clone(), recent.clone()])
        .await
        .unwrap();
    assert!(stack.store.exchange(old.id).await.unwrap().is_some());
    // Kept 60 days: the month of a 120-day-old exchange ended long before the cutoff.
    stack.start_projector_with(&sim.url, &[("LICENSING_EVIDENCE_RETENTION_DAYS", "60")]);
    eventually("the old month to be dropped", 30, || async {
        stack
            .store
            .exchange(old.id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(stack.store.exchange(recent.id).await.unwrap().is_some());
    // Every month left is the cutoff's month or newer.
    let volume = stack.store.evidence_volume().await.unwrap();
    let cutoff = now - time::Duration::days(60);
    let cutoff_month = format!("{:04}-{:02}", cutoff.year(), u8::from(cutoff.month()));
    assert!(
        volume
            .months
            .iter()
            .all(|(month, _)| *month >= cutoff_month),
        "{volume:?}"
    );
}

#[tokio::test]
async fn refusals_naming_a_license_are_listed_apart_and_never_fill_its_window() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[("LICENSING_EVIDENCE_REFUSED_PER_SECOND", "100000")]).await;
    stack.start_projector(&sim.url);
    for body in [
        renew("PL880", "CS880", "20311231235959", false),
        status("PL880", "FREEZE"),
    ] {
        assert_eq!(code(&stack.callback(&body).await), "000000");
    }
    // More forged requests naming the license than a ledger's whole window holds.
    let body = status("PL880", "UNFREEZE");
    let forged = fresh_query("anotherAccessKey0123456789xyz", &body);
    let answers: Vec<String> = forged_flood(&stack, &forged, &body, 1_050, 16)
        .map(|(code, _)| code)
        .collect()
        .await;
    assert!(answers.iter().all(|c| c == "000001"));
    eventually("the refusals stored", 60, || async {
        let listed = stack
            .query_ok("/v1/exchanges?license=PL880&refused=true&limit=1000")
            .await;
        (listed["items"].as_array().map_or(0, Vec::len) == 1000).then_some(())
    })
    .await;

    let ledger = stack.query_ok("/v1/licenses/PL880/ledger").await;
    let kinds: Vec<&str> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "callback")
        .map(|e| e["summary"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "refreshLicenseCode (verification: valid)",
            "updateLicenseCodeStatus (verification: valid)"
        ],
        "the genuine callbacks alone in the entries"
    );
    assert_eq!(ledger["exchanges_truncated"], false);
    let refusals = ledger["refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 100, "the refusals' own window");
    assert_eq!(ledger["refusals_truncated"], true);
    assert!(
        refusals[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("updateLicenseCodeStatus (verification: mismatch"),
        "{}",
        refusals[0]
    );
    // The exchanges list tells them apart both ways.
    let genuine = stack
        .query_ok("/v1/exchanges?license=PL880&refused=false")
        .await;
    let genuine = genuine["items"].as_array().unwrap();
    assert_eq!(genuine.len(), 2);
    assert!(genuine.iter().all(|e| e["refused"] == false));

    // The pack: the two genuine callbacks among its exchanges, 100 refusals apart.
    let response = stack
        .http
        .get(stack.query_url("/v1/licenses/PL880/evidence"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let dir = std::env::temp_dir().join(format!("evidence-{}", uuid::Uuid::new_v4()));
    unzip(&response.bytes().await.unwrap(), &dir);
    let manifest = verify_manifest(&dir.join("unpacked"));
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let count = |prefix: &str| paths.iter().filter(|p| p.starts_with(prefix)).count();
    assert_eq!(count("exchanges/"), 2, "{paths:?}");
    assert_eq!(count("refusals/"), 100);
    let _ = std::fs::remove_dir_all(&dir);
}
