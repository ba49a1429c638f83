//! Activation and heartbeats end to end: the internal API, the processor, the projector's outbound
//! worker, and the marketplace simulator checking every AK/SK signature.

mod support;

use serde_json::{Value, json};
use support::*;

async fn internal(stack: &Stack, path: &str, body: Value) -> (u16, Value) {
    let response = stack
        .http
        .post(stack.internal_url(path))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn view(stack: &Stack, license: &str) -> Value {
    let response = stack
        .http
        .get(stack.query_url(&format!("/v1/licenses/{license}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap_or(Value::Null)
}

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

    let (status, _) = internal(&stack, "/v1/licenses/PL700/activation", json!({})).await;
    assert_eq!(status, 202);
    eventually(
        "the marketplace to say the buyer has not claimed the code",
        30,
        || async {
            stack
                .event_types("license-PL700")
                .await
                .contains(&"activation_awaiting_claim".to_owned())
                .then_some(())
        },
    )
    .await;

    sim.put("PL700", "claimed").await;
    eventually("the activation to succeed on a retry", 30, || async {
        stack
            .event_types("license-PL700")
            .await
            .contains(&"activated".to_owned())
            .then_some(())
    })
    .await;
    let license = eventually("the view to show the license active", 30, || async {
        let v = view(&stack, "PL700").await;
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
        let (status, body) = internal(
            &stack,
            "/v1/licenses/PL700/usage",
            json!({"account": account}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    eventually("the heartbeat to be acknowledged", 30, || async {
        stack
            .event_types("license-PL700")
            .await
            .contains(&"heartbeat_acknowledged".to_owned())
            .then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
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
}

#[tokio::test]
async fn a_released_code_at_the_marketplace_is_recorded_as_drift() {
    let sim = Simulator::start();
    sim.put("PL701", "claimed").await;
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    internal(&stack, "/v1/licenses/PL701/activation", json!({})).await;
    eventually("the activation", 30, || async {
        stack
            .event_types("license-PL701")
            .await
            .contains(&"activated".to_owned())
            .then_some(())
    })
    .await;
    sim.put("PL701", "released").await;
    internal(
        &stack,
        "/v1/licenses/PL701/usage",
        json!({"account": "alice"}),
    )
    .await;
    eventually("the drift to be recorded", 30, || async {
        stack
            .event_types("license-PL701")
            .await
            .contains(&"drift_detected".to_owned())
            .then_some(())
    })
    .await;
    let v = eventually("the view to show the drift", 30, || async {
        let v = view(&stack, "PL701").await;
        (v["drift"] == true).then_some(v)
    })
    .await;
    assert_eq!(v["market_status"], "RELEASED");
}
