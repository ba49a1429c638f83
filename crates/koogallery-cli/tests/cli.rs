//! The `koogallery` binary reproduces the spec's vectors byte for byte: callback signatures
//! (§3.4) and AK/SK request signatures (§4.4, V1–V5).

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn koogallery(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_koogallery"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

const KEY: &str = "testAccessKey0123456789";
const EXAMPLES: [(&str, &str); 3] = [
    (
        r#"{"activity":"refreshLicenseCode","expireTime":"20230523201932","license":"PL0000000001","orderId":"CS2305231000ABCDE","orderLineId":"CS2305231000ABCDE-000001","productId":"OFFI000000000000000001","scene":"RENEWAL","testFlag":"1"}"#,
        "d7cb2c5389d8ce9a8545b3ae4ab3e56028942883f464d56690585d980b5547a4",
    ),
    (
        r#"{"activity":"updateLicenseCodeStatus","license":"PL0000000001","status":"FREEZE","testFlag":"1"}"#,
        "f571acff6b91c9424f55050e4a24b3fbaf2048762d66a306ad97ee0c02e6e164",
    ),
    (
        r#"{"activity":"releaseLicenseCode","license":"PL0000000001","orderId":"CS2305231000ABCDE","orderLineId":"CS2305231000ABCDE-000001","testFlag":"1"}"#,
        "7db4008f949e0fa98bb4313e207be38c965cc861758c876469e26699473d4b12",
    ),
];

#[test]
fn sign_callback_prints_the_spec_signatures() {
    for (body, signature) in EXAMPLES {
        let output = koogallery(
            &[
                "sign-callback",
                "--key",
                KEY,
                "--nonce",
                "RLLUammMSInlrNWb",
                "--timestamp",
                "1666677988730",
            ],
            body.as_bytes(),
        );
        assert!(output.status.success());
        assert_eq!(
            stdout(&output),
            format!("signature={signature}&timestamp=1666677988730&nonce=RLLUammMSInlrNWb\n")
        );
    }
}

#[test]
fn sign_callback_picks_a_fresh_nonce_and_the_current_time() {
    let body = EXAMPLES[1].0.as_bytes();
    let first = stdout(&koogallery(&["sign-callback", "--key", KEY], body));
    let second = stdout(&koogallery(&["sign-callback", "--key", KEY], body));
    assert_ne!(first, second, "nonces differ");
    let query = first.trim_end();
    let verified = koogallery(&["verify-callback", "--key", KEY, "--query", query], body);
    assert_eq!(
        stdout(&verified),
        "valid\n",
        "a fresh signature verifies against the current time"
    );
}

#[test]
fn verify_callback_accepts_the_examples_and_explains_failures() {
    let (body, signature) = EXAMPLES[0];
    let query = format!("signature={signature}&timestamp=1666677988730&nonce=RLLUammMSInlrNWb");
    let now = "1666677990000";
    let ok = koogallery(
        &[
            "verify-callback",
            "--key",
            KEY,
            "--query",
            &query,
            "--now",
            now,
        ],
        body.as_bytes(),
    );
    assert_eq!(
        (ok.status.code(), stdout(&ok)),
        (Some(0), "valid\n".to_owned())
    );

    let rotated = koogallery(
        &[
            "verify-callback",
            "--key",
            "newKey",
            "--key",
            KEY,
            "--query",
            &query,
            "--now",
            now,
        ],
        body.as_bytes(),
    );
    assert_eq!(
        (rotated.status.code(), stdout(&rotated)),
        (Some(0), "valid (with key 2)\n".to_owned())
    );

    let wrong = koogallery(
        &[
            "verify-callback",
            "--key",
            "otherKey",
            "--query",
            &query,
            "--now",
            now,
        ],
        body.as_bytes(),
    );
    assert_eq!(
        (wrong.status.code(), stdout(&wrong)),
        (
            Some(1),
            "signature does not match any configured access key\n".to_owned()
        )
    );

    let with_newline = koogallery(
        &[
            "verify-callback",
            "--key",
            KEY,
            "--query",
            &query,
            "--now",
            now,
        ],
        format!("{body}\n").as_bytes(),
    );
    assert_eq!(
        with_newline.status.code(),
        Some(1),
        "the body is signed byte for byte"
    );

    let late = koogallery(
        &[
            "verify-callback",
            "--key",
            KEY,
            "--query",
            &query,
            "--now",
            "1666678100000",
        ],
        body.as_bytes(),
    );
    assert_eq!(
        (late.status.code(), stdout(&late)),
        (
            Some(1),
            "timestamp is -111270 ms away from now, outside the ±60000 ms window\n".to_owned()
        )
    );

    let missing = koogallery(
        &[
            "verify-callback",
            "--key",
            KEY,
            "--query",
            "timestamp=1&nonce=x",
        ],
        body.as_bytes(),
    );
    assert_eq!(
        (missing.status.code(), stdout(&missing)),
        (Some(1), "missing query parameter `signature`\n".to_owned())
    );
}

fn sign_request(args: &[&str], body: &[u8]) -> String {
    let mut all = vec!["sign-request"];
    all.extend_from_slice(args);
    let output = koogallery(&all, body);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

#[test]
fn sign_request_reproduces_v1_to_v5() {
    let v1 = sign_request(
        &[
            "--ak",
            "QTWAOYTTINDUT2QVKYUC",
            "--sk",
            "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
            "--method",
            "GET",
            "--url",
            "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
            "--date",
            "20191115T033655Z",
        ],
        b"",
    );
    assert_eq!(
        v1,
        "X-Sdk-Date: 20191115T033655Z\nAuthorization: SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe\n"
    );

    let v2 = sign_request(
        &[
            "--ak",
            "AccessKey",
            "--sk",
            "SecretKey",
            "--method",
            "GET",
            "--url",
            "https://example.huaweicloud.com/path?limit=1",
            "--date",
            "20060102T150405Z",
            "--no-default-headers",
        ],
        b"",
    );
    assert_eq!(
        v2,
        "X-Sdk-Date: 20060102T150405Z\nAuthorization: SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624\n"
    );

    let v3 = sign_request(
        &[
            "--ak",
            "AccessKey",
            "--sk",
            "SecretKey",
            "--method",
            "POST",
            "--url",
            "https://example.huaweicloud.com/path?key=value",
            "--date",
            "20060102T150405Z",
            "--no-default-headers",
        ],
        b"{\"Name\":\"test\",\"Id\":1}\n",
    );
    assert!(v3.ends_with("SignedHeaders=x-sdk-date, Signature=cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59\n"), "{v3}");

    let v4 = sign_request(
        &[
            "--ak",
            "test",
            "--sk",
            "123",
            "--method",
            "POST",
            "--url",
            "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate",
            "--date",
            "20240317T144237Z",
            "--header",
            "x-stage: RELEASE",
        ],
        b"",
    );
    assert!(v4.ends_with("SignedHeaders=content-type;host;x-sdk-date;x-stage, Signature=77595ad624b6e4e49990b8c4e84bf1c287457fca61069c4e60b9b6765b52053d\n"), "{v4}");

    let v5 = sign_request(
        &[
            "--ak",
            "AKEXAMPLE0000000",
            "--sk",
            "SKEXAMPLE0000000000000000000000000000000",
            "--url",
            "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate",
            "--date",
            "20240101T000000Z",
        ],
        br#"{"license":"PLXXXXXX"}"#,
    );
    assert_eq!(
        v5,
        "X-Sdk-Date: 20240101T000000Z\nAuthorization: SDK-HMAC-SHA256 Access=AKEXAMPLE0000000, SignedHeaders=content-type;host;x-sdk-date, Signature=adbbfa36640765237b169d4e0dfd395e312dfdc46230ae159cbda8f2382cb31b\n"
    );
}

#[test]
fn sign_request_can_show_its_canonical_request() {
    let output = koogallery(
        &[
            "sign-request",
            "--ak",
            "AKEXAMPLE0000000",
            "--sk",
            "SKEXAMPLE0000000000000000000000000000000",
            "--url",
            "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate",
            "--date",
            "20240101T000000Z",
            "--show-canonical",
        ],
        br#"{"license":"PLXXXXXX"}"#,
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("POST\n/api/mkp-openapi-public/global/v1/license/activate/\n\ncontent-type:application/json\n"), "{stderr}");
    assert!(
        !stderr.contains("SKEXAMPLE"),
        "the secret key is never printed"
    );
}

#[test]
fn bad_arguments_are_named() {
    let output = koogallery(
        &[
            "sign-request",
            "--ak",
            "a",
            "--sk",
            "b",
            "--url",
            "https://h/",
            "--date",
            "2024-01-01",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--date \"2024-01-01\""));
    let output = koogallery(
        &[
            "sign-request",
            "--ak",
            "a",
            "--sk",
            "b",
            "--url",
            "https://h/",
            "--header",
            "nocolon",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(2));
    let output = koogallery(&["sign-callback", "--key", "k", "--timestamp", "12a"], b"");
    assert_eq!(output.status.code(), Some(2));
    let output = koogallery(&["verify-callback", "--query", "x"], b"");
    assert_eq!(output.status.code(), Some(2), "--key is required");
}
