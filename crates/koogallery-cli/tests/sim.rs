//! `koogallery sim`: the simulated open API verifies AK/SK like the gateway, answers with the
//! marketplace's codes per license state, injects faults, and logs what it received. Driven with
//! the `koogallery` library's own client.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use koogallery::apig::Credentials;
use koogallery::classify::Disposition;
use koogallery::client::{Client, ClientConfig};
use koogallery::openapi::{ActivateRequest, HeartbeatInfo, HeartbeatRequest};
use serde_json::{Value, json};
use url::Url;

const AK: &str = "AKEXAMPLE0000000";
const SK: &str = "SKEXAMPLE0000000000000000000000000000000";

struct Sim {
    child: Child,
    base: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Sim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_koogallery"))
        .args(["sim", "--listen", "127.0.0.1:0", "--ak", AK, "--sk", SK])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("ready line: {line}"));
    let base = format!("http://{}", ready["listen"].as_str().unwrap());
    Sim { child, base }
}

fn client(sim: &Sim, sk: &str) -> Client {
    let mut config = ClientConfig::production(Credentials::new(AK, sk))
        .with_base_url(Url::parse(&sim.base).unwrap());
    config.timeout = Duration::from_millis(800);
    Client::new(config).unwrap()
}

async fn admin(sim: &Sim, method: &str, path: &str, body: Value) -> Value {
    let http = reqwest::Client::new();
    let request = match method {
        "PUT" => http.put(format!("{}{path}", sim.base)).json(&body),
        "POST" => http.post(format!("{}{path}", sim.base)).json(&body),
        "DELETE" => http.delete(format!("{}{path}", sim.base)),
        _ => http.get(format!("{}{path}", sim.base)),
    };
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{method} {path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

fn activate(license: &str) -> ActivateRequest {
    ActivateRequest {
        license: license.into(),
        real_effect_time: None,
    }
}

fn heartbeat(license: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        license: license.into(),
        heartbeat_info: HeartbeatInfo {
            third_party_account: "alice".into(),
            ip: None,
        },
    }
}

#[tokio::test]
async fn activation_and_heartbeat_follow_the_license_state() {
    let sim = start(&[]);
    let c = client(&sim, SK);
    let reply = c.activate(&activate("PL1")).await.unwrap();
    assert_eq!(
        (reply.code(), reply.disposition),
        ("92020005".to_owned(), Disposition::Permanent)
    );

    admin(
        &sim,
        "PUT",
        "/admin/licenses/PL1",
        json!({"state": "unclaimed", "expire_time": "20301231235959", "order_id": "CS42"}),
    )
    .await;
    let reply = c.activate(&activate("PL1")).await.unwrap();
    assert_eq!(
        (reply.code(), reply.disposition),
        ("92020004".to_owned(), Disposition::AwaitingClaim)
    );
    let reply = c.heartbeat(&heartbeat("PL1")).await.unwrap();
    assert_eq!(reply.code(), "92020011", "not activated yet");

    admin(
        &sim,
        "PUT",
        "/admin/licenses/PL1",
        json!({"state": "claimed", "expire_time": "20301231235959", "order_id": "CS42"}),
    )
    .await;
    let reply = c.activate(&activate("PL1")).await.unwrap();
    assert_eq!(reply.disposition, Disposition::Success);
    let info = reply
        .body
        .unwrap()
        .data
        .unwrap()
        .license_code_info
        .parsed
        .unwrap();
    assert_eq!(
        (
            info.status.as_deref(),
            info.expire_time.as_deref(),
            info.order_id.as_deref()
        ),
        (Some("ALIVE"), Some("20301231235959"), Some("CS42"))
    );
    let reply = c.activate(&activate("PL1")).await.unwrap();
    assert_eq!(
        (reply.code(), reply.disposition),
        ("92020003".to_owned(), Disposition::AlreadyActivated)
    );

    let reply = c.heartbeat(&heartbeat("PL1")).await.unwrap();
    assert_eq!(
        reply.body.unwrap().data.unwrap().status.as_deref(),
        Some("ALIVE")
    );
    let mut state = admin(&sim, "GET", "/admin/licenses/PL1", Value::Null).await;
    state["state"] = json!("released");
    admin(&sim, "PUT", "/admin/licenses/PL1", state).await;
    let reply = c.heartbeat(&heartbeat("PL1")).await.unwrap();
    assert_eq!(
        reply.body.unwrap().data.unwrap().status.as_deref(),
        Some("RELEASED")
    );

    let log = admin(&sim, "GET", "/admin/requests", Value::Null).await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 7);
    assert!(
        log.iter()
            .all(|r| r["authorized"] == true
                && r["signed_headers"] == "content-type;host;x-sdk-date")
    );
    assert_eq!(
        log[2]["body"]["heartbeatInfo"]["thirdPartyAccount"],
        "alice"
    );
}

#[tokio::test]
async fn a_wrong_signature_gets_the_gateway_401() {
    let sim = start(&[]);
    let reply = client(&sim, "not-the-secret")
        .activate(&activate("PL1"))
        .await
        .unwrap();
    assert_eq!(
        (reply.http_status, reply.code(), reply.disposition),
        (401, "APIGW.0301".to_owned(), Disposition::Credentials)
    );
    let log = admin(&sim, "GET", "/admin/requests", Value::Null).await;
    assert_eq!(log[0]["authorized"], false);
}

async fn raw_v5(sim: &Sim, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/api/mkp-openapi-public/global/v1/license/activate", sim.base))
        .header("Content-Type", "application/json")
        .header("Host", "mkt.myhuaweicloud.com")
        .header("X-Sdk-Date", "20240101T000000Z")
        .header("Authorization", "SDK-HMAC-SHA256 Access=AKEXAMPLE0000000, SignedHeaders=content-type;host;x-sdk-date, Signature=adbbfa36640765237b169d4e0dfd395e312dfdc46230ae159cbda8f2382cb31b")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_spec_vector_v5_is_accepted_and_an_altered_one_refused() {
    // V5 was signed in 2024: accept any date here, to check the signature itself.
    let sim = start(&["--max-skew-seconds", "999999999"]);
    let accepted = raw_v5(&sim, r#"{"license":"PLXXXXXX"}"#).await;
    assert_eq!(accepted.status(), 200);
    assert_eq!(
        accepted.json::<Value>().await.unwrap()["error_code"],
        "92020005",
        "authorized, then unknown license"
    );
    let altered = raw_v5(&sim, r#"{"license":"PLXXXXXY"}"#).await;
    assert_eq!(altered.status(), 401);
    assert_eq!(
        altered.json::<Value>().await.unwrap()["error_code"],
        "APIGW.0301"
    );

    // With the default skew, the 2024 date itself is refused.
    let strict = start(&[]);
    assert_eq!(
        raw_v5(&strict, r#"{"license":"PLXXXXXX"}"#).await.status(),
        401
    );
}

#[tokio::test]
async fn faults_are_injected_and_cleared() {
    let sim = start(&[]);
    let c = client(&sim, SK);
    admin(
        &sim,
        "POST",
        "/admin/faults",
        json!({"status": 503, "count": 1}),
    )
    .await;
    let reply = c.activate(&activate("PL9")).await.unwrap();
    assert_eq!(
        (reply.http_status, reply.disposition),
        (503, Disposition::Retry)
    );
    assert_eq!(
        c.activate(&activate("PL9")).await.unwrap().code(),
        "92020005",
        "one fault only"
    );

    admin(&sim, "POST", "/admin/faults", json!({"throttle": true})).await;
    let reply = c.activate(&activate("PL9")).await.unwrap();
    assert_eq!(
        (reply.http_status, reply.code(), reply.disposition),
        (429, "APIGW.0308".to_owned(), Disposition::Retry)
    );

    admin(&sim, "POST", "/admin/faults", json!({"hang": true})).await;
    let error = c.activate(&activate("PL9")).await.unwrap_err();
    assert_eq!(error.kind, "timeout");

    admin(&sim, "DELETE", "/admin/faults", Value::Null).await;
    assert_eq!(
        c.activate(&activate("PL9")).await.unwrap().code(),
        "92020005"
    );
}

#[tokio::test]
async fn licenses_can_be_loaded_from_a_file() {
    let file = std::env::temp_dir().join(format!("sim-licenses-{}.json", std::process::id()));
    std::fs::write(
        &file,
        r#"[{"license": "PLF1", "state": "claimed"}, {"license": "PLF2", "state": "expired"}]"#,
    )
    .unwrap();
    let sim = start(&["--licenses", file.to_str().unwrap()]);
    let c = client(&sim, SK);
    assert_eq!(
        c.activate(&activate("PLF1")).await.unwrap().disposition,
        Disposition::Success
    );
    let reply = c.heartbeat(&heartbeat("PLF2")).await.unwrap();
    assert_eq!(
        reply.body.unwrap().data.unwrap().status.as_deref(),
        Some("EXPIRED")
    );
    std::fs::remove_file(file).ok();
}

#[tokio::test]
async fn test_codes_need_no_claim() {
    let sim = start(&[]);
    admin(
        &sim,
        "PUT",
        "/admin/licenses/PLTEST",
        json!({"state": "unclaimed", "test": true}),
    )
    .await;
    let reply = client(&sim, SK)
        .activate(&activate("PLTEST"))
        .await
        .unwrap();
    assert_eq!(reply.disposition, Disposition::Success);
}
