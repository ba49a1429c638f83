//! `koogallery send` and `koogallery probe` against the running backend, as a seller uses them.

mod support;

use std::process::Command;

use support::*;

fn koogallery(args: &[&str]) -> (i32, String) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .join("target")
        });
    let output = Command::new(target.join("debug/koogallery"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test]
async fn send_fires_a_signed_callback_and_reports_the_answer() {
    let stack = Stack::start(&[]).await;
    let url = stack.callback_url();
    let (code, out) = koogallery(&[
        "send",
        "freeze",
        "--url",
        &url,
        "--key",
        KEY,
        "--license",
        "PL600",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#""resultCode":"000000""#), "{out}");
    let (code, _) = koogallery(&[
        "send",
        "renew",
        "--url",
        &url,
        "--key",
        KEY,
        "--license",
        "PL600",
        "--expire",
        "20301231235959",
        "--order",
        "CS77",
    ]);
    assert_eq!(code, 0);
    let (code, out) = koogallery(&[
        "send",
        "release",
        "--url",
        &url,
        "--key",
        "wrongKey",
        "--license",
        "PL600",
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("000001"), "{out}");
    let (code, out) = koogallery(&[
        "send",
        "renew",
        "--url",
        &url,
        "--key",
        KEY,
        "--license",
        "PL600",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--expire"));
    assert_eq!(
        stack.event_types("license-PL600").await,
        ["registered", "frozen", "access_changed", "renewed"]
    );
}

#[tokio::test]
async fn probe_passes_saved_cases_repeatedly_and_fails_with_a_wrong_key() {
    let stack = Stack::start(&[]).await;
    let cases = std::env::temp_dir().join(format!("cases-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &cases,
        r#"[
            {"name": "renewal", "body": {"activity":"refreshLicenseCode","expireTime":"20301231235959","license":"PLPROBE","orderId":"CSP1","orderLineId":"CSP1-1","scene":"RENEWAL","testFlag":"1"}},
            {"name": "freeze", "body": {"activity":"updateLicenseCodeStatus","license":"PLPROBE","status":"FREEZE","testFlag":"1"}},
            {"activity":"releaseLicenseCode","license":"PLPROBE","testFlag":"1"}
        ]"#,
    )
    .unwrap();
    let url = stack.callback_url();
    for round in 0..2 {
        let (code, out) = koogallery(&[
            "probe",
            "--url",
            &url,
            "--key",
            KEY,
            "--cases",
            cases.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "round {round}: {out}");
        assert!(
            out.contains("PASS renewal")
                && out.contains("PASS freeze")
                && out.contains("PASS case 3"),
            "{out}"
        );
        assert!(out.trim_end().ends_with("3 passed, 0 failed"), "{out}");
    }
    let (code, out) = koogallery(&[
        "probe",
        "--url",
        &url,
        "--key",
        "misconfiguredKey",
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL renewal: resultCode 000001"), "{out}");
    assert!(out.trim_end().ends_with("0 passed, 3 failed"), "{out}");
    assert!(
        stack.events("license-PLPROBE").await.is_empty(),
        "probes touch only the sandbox"
    );
    std::fs::remove_file(cases).ok();
}

#[tokio::test]
async fn scenario_plays_a_whole_lifecycle_and_reports_a_wrong_expectation() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    let query = stack.query_url("");
    let scenario = |license: &str, last_expectation: &str| {
        serde_json::json!({
            "callback_url": stack.callback_url(),
            "key": KEY,
            "internal_url": stack.internal_url(""),
            "query_url": query,
            "token": TOKEN,
            "simulator_url": sim.url,
            "license": license,
            "steps": [
                {"marketplace": "unclaimed", "license_info": {"expire_time": "20301231235959", "order_id": "CS9"}},
                {"activate": {}, "expect_http": 202},
                {"wait_event": "activation_awaiting_claim"},
                {"marketplace": "claimed", "license_info": {"expire_time": "20301231235959", "order_id": "CS9"}},
                {"wait_event": "activated"},
                {"usage": {"account": "alice"}, "expect_http": 200},
                {"wait_event": "heartbeat_acknowledged"},
                {"callback": "renew", "expire": "20311231235959", "order": "CS10"},
                {"callback": "freeze"},
                {"expect_status": "frozen"},
                {"callback": "unfreeze"},
                {"callback": "release"},
                {"expect_status": last_expectation, "timeout_seconds": 5}
            ]
        })
    };
    let file =
        std::env::temp_dir().join(format!("scenario-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, scenario("PL900", "released").to_string()).unwrap();
    let (code, out) = koogallery(&["scenario", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("13 passed, 0 failed"), "{out}");

    // A status the license never has again: the step waits, then fails with what it saw.
    std::fs::write(&file, scenario("PL901", "awaiting_claim").to_string()).unwrap();
    let (code, out) = koogallery(&["scenario", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL 13: status \"released\", expected awaiting_claim"),
        "{out}"
    );
    std::fs::remove_file(file).ok();
}
